"""vae-edge runtime CLI (TensorFlow-free): sample, check quantized decoders, bench latency.

    python -m runtime sample --artifacts artifacts --model vae2d_corr --precision int8 -n 16 --out digits.png
    python -m runtime check --artifacts artifacts --data ../shared/data/mnist.npz --samples 10000
    python -m runtime bench --artifacts artifacts --invokes 1000

check writes reports/check.{json,md} and one PNG per model (float vs each quantized decoder on the same
latents) and exits 1 when a quantized decoder breaks a threshold; bench writes reports/bench.{json,md} and
reports/latency.png.
"""

from __future__ import annotations

import argparse
import os
import sys

from .errors import VaeEdgeError
from .fileio import ensure_writable_dir, write_json_atomic, write_text_atomic

VAE_MODELS = ("vae2d", "vae3d", "vae2d_corr")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m runtime",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    sub = p.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--artifacts", default="artifacts", help="folder with <model>/export/manifest.json")
    common.add_argument("--model", choices=(*VAE_MODELS, "all"), default="all")
    common.add_argument("--reports", default="reports", help="report folder (default reports/)")
    common.add_argument("--seed", type=int, default=0)

    s = sub.add_parser("sample", parents=[common], help="decode prior samples to a PNG grid")
    s.add_argument("-n", type=int, default=16, help="how many digits")
    s.add_argument("--precision", default="int8", choices=("float32", "float16", "dynamic_int8", "int8"))
    s.add_argument("--format", default="tflite", choices=("tflite", "onnx"))
    s.add_argument("--out", default="samples.png")

    c = sub.add_parser("check", parents=[common], help="quality of every quantized decoder vs float32")
    c.add_argument("--samples", type=int, default=10000, help="prior samples per decoder (default 10000)")
    c.add_argument(
        "--data", default=None, help="MNIST .npz for real test digits and the ELBO (default $VAE_EDGE_MNIST)"
    )
    c.add_argument("--test-limit", type=int, default=None, help="use only the first N test images")
    c.add_argument(
        "--no-data",
        action="store_true",
        help="check without MNIST: the -ELBO and Fréchet-to-real thresholds are then not checked (said so in "
        "the report); without this flag a check that has no data refuses to run",
    )
    c.add_argument("--threads", type=int, default=None, help="interpreter threads (default: all cores)")

    b = sub.add_parser("bench", parents=[common], help="latency and throughput of every decoder")
    b.add_argument("--invokes", type=int, default=1000, help="timed invokes at batch 1 (default 1000)")
    b.add_argument("--batch-invokes", type=int, default=50, help="timed invokes at batch N (default 50)")
    b.add_argument("--threads", default=None, help="comma list of thread counts (default: 1 and all cores)")
    b.add_argument("--formats", default="tflite,onnx", help="comma list of formats to bench")
    b.add_argument(
        "--no-isolate",
        action="store_true",
        help="bench in this process instead of a fresh one per artifact (peak RSS is then shared)",
    )
    return p.parse_args(argv)


def main(args: argparse.Namespace) -> int:
    try:
        return {"sample": cmd_sample, "check": cmd_check, "bench": cmd_bench}[args.command](args)
    except VaeEdgeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def manifests_for(args) -> dict:
    from .manifest import find_manifests

    found = {k: v for k, v in find_manifests(args.artifacts).items() if v.kind == "vae"}
    names = VAE_MODELS if args.model == "all" else (args.model,)
    missing = [n for n in names if n not in found]
    if args.model != "all" and missing or not found:
        raise VaeEdgeError(
            f"no export of {', '.join(missing) or 'any model'} under {args.artifacts}; run make export "
            "or copy the artifacts folder"
        )
    return {n: found[n] for n in names if n in found}


def cmd_sample(args) -> int:
    from .models import Decoder
    from .png import write_png_grid

    if args.model == "all":
        raise VaeEdgeError("sample needs one --model (vae2d, vae3d or vae2d_corr)")
    m = manifests_for(args)[args.model]
    decoder = Decoder.from_manifest(m, precision=args.precision, format=args.format)
    images = decoder.decode(m.prior.sample(args.n, seed=args.seed))
    out = write_png_grid(images, args.out)
    print(f"{args.n} digits from {decoder.name} -> {out}")
    return 0


def cmd_check(args) -> int:
    from . import plots
    from .check import DATA_THRESHOLDS, THRESHOLDS, check_model
    from .data import load_mnist, resolve_path
    from .manifest import find_manifests
    from .models import Classifier, Decoder

    manifests = manifests_for(args)
    all_manifests = find_manifests(args.artifacts)
    if "classifier" not in all_manifests:
        raise VaeEdgeError(
            f"no classifier export under {args.artifacts}; run python -m export --model classifier"
        )
    classifier = Classifier.from_manifest(all_manifests["classifier"], num_threads=args.threads)
    test_images = real_features = None
    unchecked = list(DATA_THRESHOLDS) if args.no_data else []
    if not args.no_data and not resolve_path(args.data):
        raise VaeEdgeError(
            f"no MNIST test digits (--data or $VAE_EDGE_MNIST), so {' and '.join(DATA_THRESHOLDS)} cannot be "
            "checked; pass --data PATH, or --no-data to check the other thresholds only"
        )
    if not args.no_data:
        mnist = load_mnist(args.data, test_only=True)
        test_images = mnist.images("test")[: args.test_limit]
        real_features = classifier.predict(test_images)[1]
    else:
        print(f"WARNING --no-data: NOT CHECKED: {', '.join(unchecked)}", file=sys.stderr)
    reports = ensure_writable_dir(args.reports)
    records = []
    for name, m in manifests.items():
        print(
            f"{name}: checking {sum(1 for a in m.artifacts if a['role'] == 'decoder')} decoders on "
            f"{args.samples} prior samples",
            file=sys.stderr,
        )
        recs = check_model(
            m,
            classifier,
            args.samples,
            args.seed,
            test_images,
            real_features,
            args.threads,
            progress=lambda r: print(
                f"  {r['artifact']}: {'ok' if r['passed'] else 'FAIL'}", file=sys.stderr
            ),
        )
        records += recs
        if plots.available():
            z = m.prior.sample(12, seed=args.seed + 7)
            rows = {
                r["artifact"]: Decoder(m, m.by_path(r["artifact"])).decode(z)
                for r in recs
                if r["batch"] == recs[0]["batch"] or r["role"] == "reference"
            }
            plots.decoded_grid(
                rows, reports / f"check_{name}.png", f"{name}: the same latents, float32 vs quantized"
            )
    failed = [r for r in records if not r["passed"]]
    from .bench import platform_info

    write_json_atomic(
        reports / "check.json",
        {
            "thresholds": THRESHOLDS,
            "samples": args.samples,
            "seed": args.seed,
            "platform": platform_info(),
            "records": records,
            "unchecked_thresholds": unchecked,
            "passed": not failed,
        },
    )
    write_text_atomic(reports / "check.md", check_markdown(records, args, failed))
    print(
        f"check: {len(records) - len(manifests)} quantized decoders, {len(failed)} failed -> {reports / 'check.md'}",
        file=sys.stderr,
    )
    for r in failed:
        print(f"FAIL {r['model']}/{r['artifact']}: {'; '.join(r['failures'])}", file=sys.stderr)
    if unchecked:
        print(f"WARNING --no-data: NOT CHECKED: {', '.join(unchecked)}", file=sys.stderr)
    return 1 if failed else 0


def check_markdown(records, args, failed) -> str:
    from .check import DATA_THRESHOLDS, THRESHOLDS

    def f(v, spec):
        return "—" if v is None else format(v, spec)

    lines = [
        "# Quality of the quantized decoders",
        "",
        f"Every quantized decoder against the float32 TFLite decoder on the same {args.samples} prior samples "
        f"(seed {args.seed}). Thresholds: {THRESHOLDS}. −ELBO: test split, float encoder feeding each decoder.",
        "",
        "| model | artifact | mean abs err | max abs err | PSNR dB | digit agreement | FD to float | FD to real | "
        "FD real ratio | −ELBO | Δ −ELBO | passed |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in records:
        lines.append(
            f"| {r['model']} | {r['artifact']}{' (reference)' if r['role'] == 'reference' else ''} | "
            f"{f(r['mean_abs_err'], '.4f')} | {f(r['max_abs_err'], '.3f')} | {f(r.get('psnr_db'), '.1f')} | "
            f"{f(r['digit_agreement'], '.4f')} | {f(r.get('fd_to_float'), '.3f')} | {f(r.get('fd_to_real'), '.2f')} | "
            f"{f(r.get('fd_to_real_ratio'), '.3f')} | {f(r.get('neg_elbo'), '.2f')} | {f(r.get('neg_elbo_delta'), '+.3f')} | "
            f"{'yes' if r['passed'] else 'NO: ' + '; '.join(r['failures'])} |"
        )
    lines += ["", f"Result: {'all passed' if not failed else f'{len(failed)} failed'}."]
    if getattr(args, "no_data", False):
        lines.append(f"Not checked (--no-data, no MNIST test digits): {', '.join(DATA_THRESHOLDS)}.")
    return "\n".join(lines) + "\n"


def cmd_bench(args) -> int:
    from . import plots
    from .bench import bench_all, platform_info

    manifests = manifests_for(args)
    threads = (
        sorted({1, os.cpu_count() or 1})
        if args.threads is None
        else [int(t) for t in args.threads.split(",")]
    )
    formats = set(args.formats.split(","))
    jobs = [
        (str(m.folder), a["path"], t, args.invokes, args.batch_invokes, args.seed)
        for m in manifests.values()
        for a in m.artifacts
        if a["role"] == "decoder" and a["format"] in formats
        for t in threads
    ]
    print(f"bench: {len(jobs)} runs ({len(threads)} thread settings)", file=sys.stderr)
    records = bench_all(
        jobs,
        isolate=not args.no_isolate,
        progress=lambda r: print(
            f"  {r.get('model', '?')}/{r['artifact']} t{r['threads']}: "
            + (
                f"p50 {r['p50_us']:.0f} µs, {r['throughput_per_s']:.0f}/s" if "error" not in r else r["error"]
            ),
            file=sys.stderr,
        ),
    )
    reports = ensure_writable_dir(args.reports)
    info = platform_info()
    goals = bench_goals(records)
    write_json_atomic(reports / "bench.json", {"platform": info, "records": records, "goals": goals})
    write_text_atomic(reports / "bench.md", bench_markdown(records, info, goals))
    ok = [r for r in records if "error" not in r]
    if plots.available() and ok:
        plots.latency_bars(
            [r for r in ok if r["batch"] == 1 and r["threads"] == 1],
            reports / "latency.png",
            f"batch 1, 1 thread — {info['cpu']} ({info['machine']})",
        )
    print(f"bench -> {reports / 'bench.md'}", file=sys.stderr)
    return 1 if len(ok) < len(records) else 0


def bench_goals(records: list[dict]) -> dict:
    """The issue's goals, per model, at 1 thread (ai-edge-litert / onnxruntime)."""
    out = {}
    ok = [r for r in records if "error" not in r and r["threads"] == 1]
    for model in sorted({r["model"] for r in ok}):
        rs = [r for r in ok if r["model"] == model]

        def pick(fmt, prec, batch, graph=None, rs=rs):
            hits = [
                r
                for r in rs
                if r["format"] == fmt
                and r["precision"] == prec
                and r["batch"] == batch
                and (graph is None or r["graph"] == graph)
            ]
            return min(hits, key=lambda r: r["p50_us"]) if hits else None

        bN = max(r["batch"] for r in rs)
        f1, i1 = pick("tflite", "float32", 1, "transpose"), pick("tflite", "int8", 1)
        fN, iN = pick("tflite", "float32", bN, "transpose"), pick("tflite", "int8", bN)
        of, oi = pick("onnx", "float32", 1, "transpose"), pick("onnx", "int8", 1)
        g = {}
        if f1 and i1:
            g["best_int8_tflite_b1"] = i1["artifact"]
            g["int8_speedup_b1"] = f1["p50_us"] / i1["p50_us"]
            g["int8_p50_us_b1"] = i1["p50_us"]
            g["goal_speedup_4_5x_met"] = g["int8_speedup_b1"] >= 4.5
            g["goal_55us_met"] = i1["p50_us"] <= 55
        if fN and iN:
            g["int8_throughput_ratio_bN"] = iN["throughput_per_s"] / fN["throughput_per_s"]
            g["goal_throughput_4x_met"] = g["int8_throughput_ratio_bN"] >= 4
        if of and oi:
            g["best_int8_onnx_b1"] = oi["artifact"]
            g["onnx_int8_speedup_b1"] = of["p50_us"] / oi["p50_us"]
            g["goal_onnx_int8_faster_met"] = oi["p50_us"] < of["p50_us"]
        out[model] = g
    return out


def bench_markdown(records, info, goals) -> str:
    lines = [
        "# Decoder latency",
        "",
        f"Platform: {info['cpu']}, {info['cores']} cores, {info['machine']}, {info['system']}, Python "
        f"{info['python']}; " + ", ".join(f"{k} {v}" for k, v in info["versions"].items()) + ".",
        "",
        "| model | artifact | backend | threads | batch | p50 µs | p90 µs | p99 µs | images/s | load ms | size KB | peak RSS MB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in records:
        if "error" in r:
            lines.append(
                f"| {r.get('model', '?')} | {r['artifact']} | — | {r['threads']} | — | {r['error']} |||||||"
            )
            continue
        lines.append(
            f"| {r['model']} | {r['artifact']} | {r['backend']} | {r['threads']} | {r['batch']} | "
            f"{r['p50_us']:.0f} | {r['p90_us']:.0f} | {r['p99_us']:.0f} | {r['throughput_per_s']:.0f} | "
            f"{r['load_ms']:.1f} | {r['size_bytes'] / 1024:.0f} | {r['peak_rss_kb'] / 1024:.0f} |"
        )
    lines += ["", "## Goals (1 thread)", ""]
    for model, g in goals.items():
        parts = []
        if "int8_speedup_b1" in g:
            parts.append(
                f"best int8 TFLite ({g['best_int8_tflite_b1']}) {g['int8_p50_us_b1']:.0f} µs = "
                f"{g['int8_speedup_b1']:.2f}× the float32 TFLite decoder at batch 1 (goal ≥ 4.5×: "
                f"{'met' if g['goal_speedup_4_5x_met'] else 'not met'}; ≤ 55 µs: {'met' if g['goal_55us_met'] else 'not met'})"
            )
        if "int8_throughput_ratio_bN" in g:
            parts.append(
                f"int8 throughput at batch N {g['int8_throughput_ratio_bN']:.2f}× float (goal ≥ 4×: "
                f"{'met' if g['goal_throughput_4x_met'] else 'not met'})"
            )
        if "onnx_int8_speedup_b1" in g:
            parts.append(
                f"best int8 ONNX ({g['best_int8_onnx_b1']}) {g['onnx_int8_speedup_b1']:.2f}× the float ONNX "
                f"decoder ({'faster' if g['goal_onnx_int8_faster_met'] else 'NOT faster'})"
            )
        lines.append(f"- **{model}**: " + "; ".join(parts) + ".")
    return "\n".join(lines) + "\n"


def cli() -> int:
    """Console-script entry point (``vae-edge-runtime check ...`` after ``pip install ./runtime``)."""
    return main(parse_args())


if __name__ == "__main__":
    sys.exit(cli())
