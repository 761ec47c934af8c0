"""vae-edge latent explorer: build the static site, serve it on 127.0.0.1, bench it in headless Chromium.

    python -m tools.web build --artifacts artifacts --out dist/web
    python -m tools.web build --artifacts my_artifacts --model my_decoder --out dist/my_web
    python -m tools.web serve --site dist/web --port 8000
    python -m tools.web bench --artifacts artifacts --reports reports

build copies the page, the pinned browser runtime from tools/web/node_modules (npm ci) and each VAE's int8 and
float32 batch-1 decoders with their manifest.json into --out (any exported model: the project's or one exported
with python -m export --decoder; any latent size, grey or RGB images of any size). bench builds the site once per browser runtime,
times decodes in headless Chromium (Debian's chromium) beside the Python runtime, compares each decoder's pixels
with its reference (tools/web/compare.py), and writes reports/web_bench.{json,md} and a screenshot of each
model's page (reports/web_<model>.png); it exits 1, after writing them, when a decoder disagrees with its
reference.
"""

from __future__ import annotations

import argparse
import sys

from runtime.cli import cli_main, comma_list, int_at_least, int_between, parser

from .bench import FIRST_DECODE_LOADS, PRECISIONS, ROUNDS
from .build import DEFAULT_RUNTIME, RUNTIMES


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = parser("python -m tools.web", __doc__)
    sub = p.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="build the static site")
    b.add_argument("--artifacts", default="artifacts", help="folder with <model>/export/manifest.json")
    b.add_argument("--out", default="dist/web", help="output folder, replaced whole (default dist/web)")
    b.add_argument(
        "--runtime", choices=tuple(RUNTIMES), default=DEFAULT_RUNTIME, help=f"default {DEFAULT_RUNTIME}"
    )
    b.add_argument(
        "--model",
        type=comma_list(str),
        default=None,
        help="comma list of exported models to put on the page (the project's or your own, by their folder "
        "under --artifacts; default: every exported VAE)",
    )
    s = sub.add_parser("serve", help="serve a built site on 127.0.0.1")
    s.add_argument("--site", default="dist/web", help="the built site (default dist/web)")
    s.add_argument(
        "--port",
        type=int_between(0, 65535, "a TCP port; 0 picks a free one"),
        default=8000,
        help="port on 127.0.0.1 (default 8000)",
    )
    n = sub.add_parser("bench", help="decode latency in headless Chromium beside the Python runtime")
    n.add_argument("--artifacts", default="artifacts", help="folder with <model>/export/manifest.json")
    n.add_argument("--reports", default="reports", help="report folder (default reports/)")
    n.add_argument(
        "--invokes",
        type=int_at_least(10, "a median needs enough"),
        default=500,
        help="timed batch-1 decodes per decoder (default 500)",
    )
    n.add_argument(
        "--rounds",
        type=int_at_least(1, "at least one round"),
        default=ROUNDS,
        help=f"rounds of --invokes decodes per decoder, page and Python alike; the report gives the lowest "
        f"round p50 (default {ROUNDS})",
    )
    n.add_argument(
        "--loads",
        type=int_at_least(1, "at least one page load"),
        default=FIRST_DECODE_LOADS,
        help=f"page loads per model and runtime, each in a fresh context, for the median first decode "
        f"(default {FIRST_DECODE_LOADS})",
    )
    n.add_argument(
        "--runtimes",
        type=comma_list(str, tuple(RUNTIMES)),
        default=list(RUNTIMES),
        help=f"comma list of browser runtimes to bench (default {','.join(RUNTIMES)})",
    )
    n.add_argument(
        "--chromium", default=None, help="Chromium executable (default $VAE_EDGE_CHROMIUM or chromium)"
    )
    for sp in (b, s, n):  # subparsers print the same one-line errors as the top-level parser
        sp.error = p.error
    return p.parse_args(argv)


def cmd_build(args) -> int:
    from .build import build_site

    models = None if args.model is None else tuple(args.model)
    result = build_site(artifacts=args.artifacts, out=args.out, runtime=args.runtime, models=models)
    for m in result.models:
        print(f"{m.name}: {m.int8} + {m.float32}; {result.site_bytes(m.name) / 1e6:.2f} MB with the runtime")
    print(f"site ({result.runtime} {result.runtime_version}): {result.out}")
    return 0


def cmd_serve(args) -> int:
    from .serve import HOST, make_server

    server = make_server(args.site, args.port)
    print(f"serving {args.site} on http://{HOST}:{server.server_port}/ (Ctrl-C stops)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def cmd_bench(args) -> int:
    from .bench import bench_web, write_reports

    runtimes = tuple(args.runtimes)
    result = bench_web(
        artifacts=args.artifacts,
        reports=args.reports,
        runtimes=runtimes,
        invokes=args.invokes,
        rounds=args.rounds,
        loads=args.loads,
        chromium=args.chromium,
    )
    for path in write_reports(result, args.reports):
        print(path)
    differ = [
        f"{r['runtime']} {r['model']} {p} ({r[p]['artifact']})"
        for r in result.records
        for p in PRECISIONS
        if not r[p]["vs_reference"]["passed"]
    ]
    if differ:
        print(f"web bench: differ from their reference: {'; '.join(differ)}", file=sys.stderr)
    return 1 if differ else 0


@cli_main
def main(args: argparse.Namespace) -> int:
    return {"build": cmd_build, "serve": cmd_serve, "bench": cmd_bench}[args.command](args)


if __name__ == "__main__":
    sys.exit(main(parse_args()))
