"""Export trained decoders (and encoders, classifier) to TFLite and ONNX, validated, with manifests.

    python -m export --model all --artifacts artifacts/           # make export
    python -m export --model vae2d --batch 64 --data ../shared/data/mnist.npz

Reads ``<artifacts>/<model>/{decoder,encoder}.keras`` + config.json (``classifier.keras`` for the
classifier) and writes ``<artifacts>/<model>/export/``: every artifact, ``manifest.json`` and, for each
VAE, ``<model>_decoder_int8.h/.cc`` (the int8 batch-1 decoder as a C array, and the table that maps its int8
logits to pixels). Then ``reports/export.md``. int8 ranges are calibrated on the encoder's posterior over
training images (MNIST from --data or $VAE_EDGE_MNIST); ``--calibration prior`` needs no data.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from runtime.errors import VaeEdgeError  # noqa: E402

VAE_MODELS = ("vae2d", "vae3d", "vae2d_corr")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m export",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    p.add_argument("--model", choices=(*VAE_MODELS, "classifier", "all"), default="all")
    p.add_argument("--artifacts", default="artifacts", help="folder holding <model>/ from python -m train")
    p.add_argument(
        "--batch", type=int, default=64, help="static batch of the throughput variants (default 64)"
    )
    p.add_argument(
        "--calibration",
        choices=("posterior", "prior"),
        default="posterior",
        help="int8 calibration latents: encoder posterior on training images (default; needs MNIST) or prior",
    )
    p.add_argument(
        "--calibration-samples", type=int, default=5000, help="latents for int8 calibration (>= 500)"
    )
    p.add_argument(
        "--data",
        default=None,
        help="MNIST (mnist.npz or IDX folder) for posterior calibration; default $VAE_EDGE_MNIST, else download",
    )
    p.add_argument(
        "--validation-samples", type=int, default=1000, help="prior samples for validation (default 1000)"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the calibration and validation samples")
    p.add_argument("--reports", default="reports", help="where export.md goes (default reports/)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p.parse_args(argv)


def main(args: argparse.Namespace) -> int:
    from .pipeline import Exporter
    from .report import write_report

    root = Path(args.artifacts)
    names = [*VAE_MODELS, "classifier"] if args.model == "all" else [args.model]
    try:
        if args.batch < 2:
            raise VaeEdgeError(
                "--batch is the throughput batch and must be >= 2 (batch 1 is always exported)"
            )
        if not root.is_dir():
            raise VaeEdgeError(
                f"artifacts folder {root} not found; train first (make train) or pass --artifacts"
            )
        manifests = {}
        for name in names:
            exporter = Exporter(
                root / name,
                (1, args.batch),
                args.calibration_samples,
                args.validation_samples,
                args.seed,
                progress=not args.quiet,
                calibration=args.calibration,
                data=args.data,
            )
            manifests[name] = (
                exporter.export_classifier() if name == "classifier" else exporter.export_vae(name)
            )
            n = len(manifests[name]["artifacts"])
            print(
                f"{name}: {n} artifacts validated -> {root / name / 'export' / 'manifest.json'}",
                file=sys.stderr,
            )
        report = write_report(root, Path(args.reports))
        print(f"report: {report}", file=sys.stderr)
    except VaeEdgeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(parse_args()))
