"""python -m tools.fuzz: the full fuzz run (make fuzz) -> reports/fuzz.{json,md}; exits 1 when a goal is missed.

python -m tools.fuzz --artifacts artifacts --reports reports
python -m tools.fuzz --artifacts artifacts --model-mutations 50 --manifest-mutations 20   # a quick look
python -m tools.fuzz --model-mutations 0 --manifest-mutations 0 --input-mutations 0 --npz-mutations 0 \
    --firmware-mutations 0 --codegen-mutations 500                                      # the C generator alone
"""

from __future__ import annotations

import argparse
import sys

from runtime.cli import cli_main, nonnegative_int, parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = parser("python -m tools.fuzz", __doc__)
    p.add_argument("--artifacts", default="artifacts", help="folder with <model>/export/manifest.json")
    p.add_argument(
        "--model", default=None, help="the VAE to mutate (default vae2d_corr, else the first found)"
    )
    p.add_argument("--data", default=None, help="MNIST .npz whose test split seeds the .npz mutations")
    p.add_argument("--reports", default="reports")
    p.add_argument("--seed", type=nonnegative_int, default=0)
    p.add_argument(
        "--model-mutations", type=nonnegative_int, default=1000, help="per sha256 case (default 1000 + 1000)"
    )
    p.add_argument("--manifest-mutations", type=nonnegative_int, default=200)
    p.add_argument("--input-mutations", type=nonnegative_int, default=200)
    p.add_argument("--npz-mutations", type=nonnegative_int, default=200)
    p.add_argument("--firmware-mutations", type=nonnegative_int, default=100)
    p.add_argument(
        "--codegen-mutations",
        type=nonnegative_int,
        default=500,
        help="edited .tflite graphs through the C generator, each C built with ASan/UBSan and run (no export needed)",
    )
    p.add_argument(
        "--export-mutations",
        type=nonnegative_int,
        default=200,
        help="edited run sets through python -m export (base: the --model folder under --artifacts, else a tiny "
        "run set trained from --data)",
    )
    p.add_argument(
        "--output-path-mutations",
        type=nonnegative_int,
        default=100,
        help="CLIs writing to a read-only folder, a FIFO, a full disk (ulimit -f), a non-empty folder",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p.parse_args(argv)


@cli_main
def main(args: argparse.Namespace) -> int:
    from runtime.data import resolve_path

    from .harness import FuzzConfig, run_fuzz
    from .report import write_reports

    data = resolve_path(args.data)
    cfg = FuzzConfig(
        artifacts=args.artifacts,
        model=args.model,
        data=str(data) if data and data.is_file() else None,
        seed=args.seed,
        model_mutations=args.model_mutations,
        manifest_mutations=args.manifest_mutations,
        input_mutations=args.input_mutations,
        npz_mutations=args.npz_mutations,
        firmware_mutations=args.firmware_mutations,
        codegen_mutations=args.codegen_mutations,
        export_mutations=args.export_mutations,
        output_path_mutations=args.output_path_mutations,
        progress=not args.quiet,
    )
    result = run_fuzz(cfg)
    _, md = write_reports(result, args.reports)
    for target, c in result.counts.items():
        print(f"{target}: " + ", ".join(f"{o} {n}" for o, n in sorted(c.items())), file=sys.stderr)
    missed = [t for t, g in result.to_json()["goals"].items() if not g["met"]]
    print(
        f"fuzz -> {md}" + (f"; goals missed: {', '.join(missed)}" if missed else "; all goals met"),
        file=sys.stderr,
    )
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main(parse_args()))
