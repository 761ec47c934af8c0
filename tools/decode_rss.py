"""Peak memory of decoding many latents: streamed ``runtime sample --out x.npy`` vs one ``decode`` call.

    python -m tools.decode_rss --artifacts artifacts --model vae2d_corr --sizes 10000,100000,1000000
    make bench-decode

Each size runs in a fresh process; its peak RSS (ru_maxrss from wait4, that process alone) goes to
reports/decode_rss.{json,md}. The goal: streamed decoding stays flat, the largest size within 300 MB of the
smallest. ``--one-shot-sizes`` adds the old way (the whole batch in one ``decode`` call) for comparison.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from runtime.cli import cli_main, comma_list, parser, positive_int
from runtime.errors import VaeEdgeError
from runtime.fileio import ensure_writable_dir, write_json_atomic, write_text_atomic
from runtime.vocab import VAE_MODELS, Precision

GOAL_MB_ABOVE_SMALLEST = 300
REPO = Path(__file__).resolve().parents[1]
ONE_SHOT = (
    "import sys; from runtime.manifest import load_manifest; from runtime.models import Decoder; "
    "m = load_manifest(sys.argv[1]); "
    "bs = [a['batch'] for a in m.find(role='decoder', format='tflite', precision=sys.argv[3])]; "
    "d = Decoder.from_manifest(m, precision=sys.argv[3], batch=max(bs)); "
    "x = d.decode(m.prior.sample(int(sys.argv[2]), seed=0)); print(x.shape)"
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = parser("python -m tools.decode_rss", __doc__)
    p.add_argument("--artifacts", default="artifacts")
    p.add_argument("--model", default=VAE_MODELS[-1], choices=VAE_MODELS)
    p.add_argument("--precision", default=Precision.INT8.value, choices=[x.value for x in Precision])
    p.add_argument("--sizes", type=comma_list(positive_int), default=[10_000, 100_000, 1_000_000])
    p.add_argument("--one-shot-sizes", type=comma_list(positive_int), default=[10_000, 100_000])
    p.add_argument("--dtype", default="uint8", choices=("float32", "uint8"), help="pixels in the .npy")
    p.add_argument("--reports", default="reports")
    return p.parse_args(argv)


def measure(cmd: list[str]) -> dict:
    """Run ``cmd`` in a fresh process; its own peak RSS and wall time."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t0
    err = proc.stderr.read().decode(errors="replace")
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise VaeEdgeError(f"{' '.join(cmd[:6])} ... failed ({proc.returncode}): {err.strip()[-300:]}")
    return {"peak_rss_mb": usage.ru_maxrss / 1024, "seconds": seconds}


@cli_main
def main(args: argparse.Namespace) -> int:
    reports = ensure_writable_dir(args.reports)
    folder = Path(args.artifacts) / args.model / "export"
    records = []
    with tempfile.TemporaryDirectory(prefix="decode-rss-") as tmp:
        out = Path(tmp) / "images.npy"
        for n in args.sizes:
            cmd = [
                sys.executable,
                "-m",
                "runtime",
                "sample",
                "--artifacts",
                args.artifacts,
                "--model",
                args.model,
                "--precision",
                args.precision,
                "-n",
                str(n),
                "--out",
                str(out),
                "--dtype",
                args.dtype,
            ]
            rec = {"mode": "streamed", "rows": n, **measure(cmd), "file_mb": out.stat().st_size / 1e6}
            out.unlink()
            records.append(rec)
            print(f"streamed {n}: {rec['peak_rss_mb']:.0f} MB, {rec['seconds']:.1f} s", file=sys.stderr)
        for n in args.one_shot_sizes:
            cmd = [sys.executable, "-c", ONE_SHOT, str(folder), str(n), args.precision]
            rec = {"mode": "one decode call", "rows": n, **measure(cmd)}
            records.append(rec)
            print(f"one call {n}: {rec['peak_rss_mb']:.0f} MB, {rec['seconds']:.1f} s", file=sys.stderr)
    streamed = [r for r in records if r["mode"] == "streamed"]
    base = min(streamed, key=lambda r: r["rows"])
    top = max(streamed, key=lambda r: r["rows"])
    growth = top["peak_rss_mb"] - base["peak_rss_mb"]
    goal = {
        "smallest_rows": base["rows"],
        "largest_rows": top["rows"],
        "growth_mb": growth,
        "limit_mb": GOAL_MB_ABOVE_SMALLEST,
        "met": growth <= GOAL_MB_ABOVE_SMALLEST,
    }
    write_json_atomic(
        reports / "decode_rss.json",
        {
            "model": args.model,
            "precision": args.precision,
            "dtype": args.dtype,
            "records": records,
            "goal": goal,
        },
    )
    lines = [
        "# Peak memory of decoding many latents",
        "",
        f"{args.model}, {args.precision} TFLite decoder (largest exported batch), one fresh process per row "
        f"count, peak RSS from wait4. Streamed: `python -m runtime sample -n N --out x.npy --dtype {args.dtype}`"
        " (4096 latents per chunk). One call: `Decoder.decode` on all N latents at once.",
        "",
        "| mode | rows | peak RSS MB | seconds | .npy MB |",
        "|---|---|---|---|---|",
    ]
    for r in records:
        lines.append(
            f"| {r['mode']} | {r['rows']:,} | {r['peak_rss_mb']:.0f} | {r['seconds']:.1f} | "
            f"{r.get('file_mb', 0):.0f} |"
        )
    lines += [
        "",
        f"Streamed growth from {base['rows']:,} to {top['rows']:,} rows: {growth:+.0f} MB (goal ≤ "
        f"{GOAL_MB_ABOVE_SMALLEST} MB: {'met' if goal['met'] else 'NOT met'}).",
    ]
    write_text_atomic(reports / "decode_rss.md", "\n".join(lines) + "\n")
    print(f"decode_rss -> {reports / 'decode_rss.md'}", file=sys.stderr)
    return 0 if goal["met"] else 1


if __name__ == "__main__":
    sys.exit(main(parse_args()))
