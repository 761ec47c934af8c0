"""Export trained decoders (and encoders, classifier) to TFLite and ONNX, validated, with manifests.

    python -m export --model all --artifacts artifacts/           # make export
    python -m export --model vae2d --batch 64 --data ../shared/data/mnist.npz
    python -m export --decoder my_decoder.keras --name mine --artifacts artifacts/   # your own (docs/byom.md)

Reads ``<artifacts>/<model>/{decoder,encoder}.keras`` + config.json (``classifier.keras`` for the
classifier) and writes ``<artifacts>/<model>/export/``: every artifact, ``manifest.json`` and, for each
VAE, ``<model>_decoder_int8.h/.cc`` (the int8 batch-1 decoder as a C array, and the table that maps its int8
logits to pixels). Then ``reports/export.md``. int8 ranges are calibrated on the encoder's posterior over
training images (MNIST from --data or $VAE_EDGE_MNIST); ``--calibration prior`` needs no data.

``--decoder FILE.keras --name NAME`` exports a decoder of your own (any Keras decoder of the layers listed in
docs/byom.md) into ``<artifacts>/NAME/export/``, the same artifact set and manifest; ``--encoder FILE.keras``
adds its encoder and calibrates on its posterior over MNIST (--data), otherwise on the prior N(0, Σ),
Σ = --prior-cov (default I). Nothing in the files runs: a Lambda or custom layer is refused before loading.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from runtime.cli import cli_main, int_at_least, nonnegative_int, parser  # noqa: E402
from runtime.errors import VaeEdgeError, os_error_line  # noqa: E402
from runtime.vocab import ALL, ALL_MODELS, CLASSIFIER  # noqa: E402

from .byom import check_name, parse_covariance  # noqa: E402

CALIBRATION_SOURCES = ("posterior", "prior")
MIN_CALIBRATION_SAMPLES = 500
MIN_VALIDATION_SAMPLES = 100


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = parser("python -m export", __doc__)
    p.add_argument(
        "--model", choices=(*ALL_MODELS, ALL), default=None, help="the project's model(s) (default all)"
    )
    p.add_argument("--decoder", default=None, help="a Keras decoder of your own (.keras) instead of --model")
    p.add_argument(
        "--name", default=None, help="with --decoder: the model's name, its folder under --artifacts"
    )
    p.add_argument(
        "--encoder", default=None, help="with --decoder: its encoder (.keras), for posterior calibration"
    )
    p.add_argument(
        "--prior-cov",
        type=covariance,
        default=None,
        help='with --decoder: the prior\'s covariance Σ, rows separated by ";", e.g. "1,0.4;0.4,0.5" (default I)',
    )
    p.add_argument("--artifacts", default="artifacts", help="folder holding <model>/ from python -m train")
    p.add_argument(
        "--batch",
        type=int_at_least(2, "batch 1 is always exported"),
        default=64,
        help="static batch of the throughput variants (default 64; batch 1 is always exported)",
    )
    p.add_argument(
        "--calibration",
        choices=CALIBRATION_SOURCES,
        default=None,
        help="int8 calibration latents: encoder posterior on training images (default; needs MNIST) or prior "
        "(the default for --decoder without --encoder)",
    )
    p.add_argument(
        "--calibration-samples",
        type=int_at_least(MIN_CALIBRATION_SAMPLES, "int8 ranges need enough latents"),
        default=5000,
        help=f"latents for int8 calibration (default 5000, >= {MIN_CALIBRATION_SAMPLES})",
    )
    p.add_argument(
        "--data",
        default=None,
        help="MNIST (mnist.npz or IDX folder) for posterior calibration; default $VAE_EDGE_MNIST, else download",
    )
    p.add_argument(
        "--validation-samples",
        type=int_at_least(MIN_VALIDATION_SAMPLES, "too few samples to validate an artifact"),
        default=1000,
        help=f"prior samples for validation (default 1000, >= {MIN_VALIDATION_SAMPLES})",
    )
    p.add_argument(
        "--seed", type=nonnegative_int, default=0, help="seed of the calibration and validation samples"
    )
    p.add_argument(
        "--latent-split",
        type=int,
        choices=(1, 2, 4, 8, 16, 32, 64),
        default=16,
        help="the full-int8 TFLite decoders take each latent dimension as two int8s, the grid point and this "
        "many times the remainder (a grid this many times finer; default 16); 1: one int8 per dimension",
    )
    p.add_argument("--reports", default="reports", help="where export.md goes (default reports/)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    args = p.parse_args(argv)
    if args.decoder is not None:
        if args.model is not None:
            p.error(
                "--model and --decoder exclude each other: export the project's models or your own decoder"
            )
        if args.name is None:
            p.error("--decoder needs --name, the folder its export goes to under --artifacts")
        try:
            check_name(args.name)
        except VaeEdgeError as exc:
            p.error(str(exc))
        if args.calibration == "posterior" and args.encoder is None:
            p.error("--calibration posterior encodes training images with an encoder: pass --encoder")
    else:
        given = [flag for flag, v in (("--name", args.name), ("--encoder", args.encoder)) if v is not None]
        if args.prior_cov is not None:
            given.append("--prior-cov")
        if given:
            p.error(f"{', '.join(given)} only apply with --decoder (the project's models carry their own)")
        args.model = args.model or ALL
        args.calibration = args.calibration or "posterior"
    return args


def covariance(text: str):
    """``--prior-cov``'s rows, or argparse's one-line error."""
    try:
        return parse_covariance(text)
    except VaeEdgeError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("--prior-cov ")) from None


@cli_main
def main(args: argparse.Namespace) -> int:
    """Export each model as its own set. With ``--model all`` a model that fails (missing, corrupt, failing
    validation) keeps its previous export and the others go on; the failures are listed at the end, one line
    each, and the exit code is 2."""
    from .report import write_report

    if args.decoder is not None:
        return export_own(args)
    root = Path(args.artifacts)
    names = list(ALL_MODELS) if args.model == ALL else [args.model]
    if not root.is_dir():
        raise VaeEdgeError(f"artifacts folder {root} not found; train first (make train) or pass --artifacts")
    failures = []
    for name in names:
        if len(names) == 1:
            export_one(args, root, name)  # a single model's error is the CLI's one error line
            continue
        try:
            export_one(args, root, name)
        except VaeEdgeError as exc:
            failures.append(f"{name}: {' '.join(str(exc).split())}")
        except OSError as exc:
            failures.append(f"{name}: {os_error_line(exc)}")
    if len(failures) < len(names):
        report = write_report(root, Path(args.reports))
        print(f"report: {report}", file=sys.stderr)
    if failures:
        print(f"export failed for {len(failures)} of {len(names)} models:", file=sys.stderr)
        for line in failures:
            print(f"  {line}", file=sys.stderr)
        return 2
    return 0


def export_one(args: argparse.Namespace, root: Path, name: str) -> None:
    """Convert, validate and publish one model's artifacts (its previous export stays if anything fails).

    The folder is checked first without TensorFlow (export/preflight.py): an edited config.json or a hostile
    model file is refused in a second, as one line; TensorFlow is imported only for a folder that passed."""
    from .preflight import check_model_folder, quiet_tensorflow_import

    check_model_folder(root / name, name)
    quiet_tensorflow_import()
    from .pipeline import Exporter

    exporter = Exporter(
        model_dir=root / name,
        batches=(1, args.batch),
        calibration_samples=args.calibration_samples,
        validation_samples=args.validation_samples,
        seed=args.seed,
        progress=not args.quiet,
        calibration=args.calibration,
        data=args.data,
        latent_split=args.latent_split,
    )
    manifest = exporter.export_classifier() if name == CLASSIFIER else exporter.export_vae(name)
    print(
        f"{name}: {len(manifest['artifacts'])} artifacts validated -> {root / name / 'export' / 'manifest.json'}",
        file=sys.stderr,
    )


def export_own(args: argparse.Namespace) -> int:
    """``--decoder``: convert, validate and publish a decoder of the user's own (export/byom.py)."""
    from .byom import export_user_decoder

    result = export_user_decoder(
        decoder_path=Path(args.decoder),
        name=args.name,
        artifacts=Path(args.artifacts),
        encoder_path=Path(args.encoder) if args.encoder is not None else None,
        prior_cov=args.prior_cov,
        calibration=args.calibration,
        calibration_samples=args.calibration_samples,
        validation_samples=args.validation_samples,
        batch=args.batch,
        seed=args.seed,
        data=args.data,
        progress=not args.quiet,
    )
    print(
        f"{args.name}: {len(result.artifacts)} artifacts validated -> {result.manifest_path}", file=sys.stderr
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(parse_args()))
