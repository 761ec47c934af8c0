"""Simulate deploying the int8 decoders on microcontrollers, with TensorFlow Lite Micro as the reference.

    python -m firmware_sim --model all --target all --artifacts artifacts      # make simulate
    python -m firmware_sim --model vae2d --target cortex-m4 --latents 1000
    python -m firmware_sim --artifacts byom --model mine                    # a decoder of your own

For each model's full-int8 batch-1 decoders (transposed and sub-pixel graphs, from the export manifest): run
them in the real TFLite Micro interpreter and find the smallest arena by bisection (with its breakdown); run the
numpy integer reference on the same random int8 latents and demand bit-exactness with TFLM; plan the memory
(TFLM-like and fused); estimate fit and latency on each target. Writes reports/firmware.{json,md}; exits 1 if the
reference and TFLM disagree on any latent. The simulation itself is firmware_sim/simulate.py.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from runtime.cli import cli_main, nonnegative_int, parser, positive_int
from runtime.fileio import ensure_writable_dir, write_json_atomic, write_text_atomic
from runtime.vocab import ALL

from .report import load_measured, markdown


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from .targets import load_targets

    p = parser("python -m firmware_sim", __doc__)
    p.add_argument(
        "--model",
        default=ALL,
        help="an exported model under --artifacts: a built-in or your own (default: all of them)",
    )
    p.add_argument("--target", choices=(*load_targets(), ALL), default=ALL)
    p.add_argument("--artifacts", default="artifacts")
    p.add_argument(
        "--latents",
        type=positive_int,
        default=1000,
        help="random int8 latents checked per graph (default 1000)",
    )
    p.add_argument("--seed", type=nonnegative_int, default=0)
    p.add_argument("--reports", default="reports")
    return p.parse_args(argv)


@cli_main
def main(args: argparse.Namespace) -> int:
    from runtime.errors import VaeEdgeError
    from runtime.manifest import load_manifest

    from .codegen import exported_sources
    from .graph import UnsupportedOpError
    from .simulate import simulate_model
    from .targets import load_targets

    targets = load_targets()
    if args.target != ALL:
        targets = {args.target: targets[args.target]}
    # Every exported VAE (or the one named), the built-ins first: one line naming the fix when there is none.
    folders = [folder for folder, _ in exported_sources(Path(args.artifacts), args.model, ALL)]
    reports = ensure_writable_dir(args.reports)
    records, skipped = [], []
    for folder in folders:
        name = load_manifest(folder).model
        try:
            records.append(
                simulate_model(
                    export_dir=folder, name=name, latents=args.latents, seed=args.seed, targets=targets
                )
            )
        except UnsupportedOpError as exc:
            if args.model != ALL:
                raise
            # --model all over a folder with a user's decoder the integer reference cannot run yet: say so and
            # simulate the others.
            skipped.append({"model": name, "reason": str(exc)})
            print(f"skipped {name}: {exc}", file=sys.stderr)
    if not records:
        raise VaeEdgeError("the integer reference took none of the exported decoders (reasons above)")
    measured = load_measured(reports)
    md = markdown(records, targets, measured)
    if skipped:
        md += "\n## Not simulated\n\n" + "".join(f"- {s['model']}: {s['reason']}\n" for s in skipped)
    write_json_atomic(reports / "firmware.json", {"targets": targets, "records": records, "skipped": skipped})
    write_text_atomic(reports / "firmware.md", md)
    print(f"firmware_sim -> {reports / 'firmware.md'}", file=sys.stderr)
    return 0 if all(r["bit_exact_vs_tflm"] for r in records) else 1


if __name__ == "__main__":
    sys.exit(main(parse_args()))
