"""Train vae-edge's models on MNIST.

    python -m train --model all --data ../shared/data/mnist.npz          # all four, defaults (make train)
    python -m train --model vae2d_corr --epochs 30 --seed 0 --out artifacts/
    python -m train --model vae3d --resume                                 # continue an interrupted run

Outputs go to ``<out>/<model>/``: encoder.keras + decoder.keras (or classifier.keras), config.json,
history.csv, metrics.json, checkpoint.npz and the figures as PNG.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from runtime.cli import cli_main, parser  # noqa: E402
from runtime.errors import InvalidInputError  # noqa: E402
from runtime.fileio import ensure_writable_dir  # noqa: E402
from runtime.prior import validate_covariance  # noqa: E402

from .settings import (
    CLASSIFIER_DEFAULTS,
    CLASSIFIER_EPOCHS,
    DEFAULTS,
    POSTERIORS,
    PRECISIONS,
    VAE_DEFAULTS,
    SettingError,
    TrainSettings,
    check_setting,
    own_defaults,
)  # noqa: E402

MODEL_CHOICES = ("vae2d", "vae3d", "vae2d_corr", "classifier", "all")
# flag dest -> TrainSettings field; every default comes from the dataclass (train/settings.py)
SETTING_FLAGS = {
    "epochs": "epochs",
    "batch_size": "batch_size",
    "lr": "learning_rate",
    "kl_warmup_epochs": "kl_warmup_epochs",
    "seed": "seed",
    "precision": "precision",
    "iw_samples": "iw_samples",
    "train_limit": "train_limit",
    "test_limit": "test_limit",
    "validation": "validation",
    "posterior": "posterior",
    "ema_decay": "ema_decay",
    "adam_beta_2": "adam_beta_2",
    "adam_epsilon": "adam_epsilon",
}
MODEL_FLAGS = {"prior_cov": "prior_cov"}  # flag dest -> model config field


def build_parser() -> argparse.ArgumentParser:
    p = parser("python -m train", __doc__)
    p.add_argument(
        "--model", choices=MODEL_CHOICES, default="all", help="which model to train (default: all)"
    )
    p.add_argument(
        "--epochs",
        type=int,
        default=None,
        help=f"epochs, ≥ 1 (default: {DEFAULTS['epochs']} for VAEs, {CLASSIFIER_EPOCHS} for the classifier)",
    )
    p.add_argument(
        "--data",
        default=None,
        help="MNIST .npz (keras layout) or IDX folder; default $VAE_EDGE_MNIST, else keras download",
    )
    p.add_argument(
        "--out", default="artifacts", help="output root; each model goes to OUT/<model>/ (default: artifacts)"
    )
    p.add_argument(
        "--seed",
        type=int,
        default=DEFAULTS["seed"],
        help=f"seed ≥ 0 for weights, data order and noise (default: {DEFAULTS['seed']})",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue from OUT/<model>/checkpoint.npz if present, with the checkpoint's configuration "
        "(a flag that contradicts it is refused); a finished run with nothing left to continue is left as it "
        "is (said so, exit 0)",
    )
    p.add_argument(
        "--batch-size",
        type=int,
        default=DEFAULTS["batch_size"],
        help=f"default {DEFAULTS['batch_size']}{own_defaults_text('batch_size')}",
    )
    p.add_argument(
        "--lr",
        type=float,
        default=DEFAULTS["learning_rate"],
        help="peak learning rate of the warm-up + cosine schedule (default "
        f"{DEFAULTS['learning_rate']:g} for VAEs, {CLASSIFIER_DEFAULTS['learning_rate']:g} for the classifier)",
    )
    p.add_argument(
        "--ema-decay",
        type=float,
        default=DEFAULTS["ema_decay"],
        help="decay of the weights' moving average, 0 for none; the run keeps the raw or averaged weights, "
        f"whichever has the lower validation -ELBO (default {DEFAULTS['ema_decay']:g}; VAEs only)",
    )
    p.add_argument(
        "--adam-beta-2",
        type=float,
        default=DEFAULTS["adam_beta_2"],
        help=f"Adam's beta_2 (default {DEFAULTS['adam_beta_2']:g} for VAEs, "
        f"{CLASSIFIER_DEFAULTS['adam_beta_2']:g} for the classifier)",
    )
    p.add_argument(
        "--adam-epsilon",
        type=float,
        default=DEFAULTS["adam_epsilon"],
        help=f"Adam's epsilon (default {DEFAULTS['adam_epsilon']:g}{own_defaults_text('adam_epsilon')})",
    )
    p.add_argument(
        "--kl-warmup-epochs",
        type=float,
        default=DEFAULTS["kl_warmup_epochs"],
        help=f"epochs over which the KL weight rises 0 → 1 (default {DEFAULTS['kl_warmup_epochs']:g})",
    )
    p.add_argument(
        "--precision",
        choices=("auto", *PRECISIONS),
        default=DEFAULTS["precision"],
        help=f"compute precision (default {DEFAULTS['precision']}). bfloat16 trains ~1.3x faster on CPUs with "
        "AMX/AVX512-BF16 but ends ~2 nats worse in -ELBO after 5 epochs; auto = bf16 where the CPU has it",
    )
    p.add_argument(
        "--prior-cov",
        default=None,
        help="JSON covariance for vae2d_corr, e.g. '[[1.0,0.4],[0.4,0.5]]' (must be SPD)",
    )
    p.add_argument(
        "--iw-samples",
        type=int,
        default=DEFAULTS["iw_samples"],
        help=f"importance samples K for test_iw_nll, 0 skips it (default: {DEFAULTS['iw_samples']})",
    )
    p.add_argument(
        "--train-limit", type=int, default=None, help="use only the first N training images (smoke runs)"
    )
    p.add_argument("--test-limit", type=int, default=None, help="evaluate on the first N test images only")
    p.add_argument(
        "--validation",
        type=int,
        default=DEFAULTS["validation"],
        help="training images held out (seeded by --seed) for the per-epoch curves and every choice; the test "
        f"split is evaluated once, at the end; 0 trains on all of them (default {DEFAULTS['validation']})",
    )
    p.add_argument(
        "--posterior",
        choices=POSTERIORS,
        default=DEFAULTS["posterior"],
        help="the training sample: diagonal z = μ + σ ⊙ ε from q(z|x) (default), or study z = μ + L ε, the source "
        "study's variant, kept to measure what it costs (docs/correlated_prior.md)",
    )
    p.add_argument(
        "--strategy",
        choices=("default", "mirrored"),
        default="default",
        help="tf.distribute strategy: default (one device) or mirrored (all GPUs)",
    )
    p.add_argument("--no-figures", action="store_true", help="skip the PNG figures")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def own_defaults_text(field: str) -> str:
    """The VAEs whose own default of ``field`` differs, as --help shows them: ", 32 for vae2d, 32 for vae3d"."""
    return "".join(f", {v[field]:g} for {m}" for m, v in VAE_DEFAULTS.items() if field in v)


# Training computes the prior's KL in float32 (bfloat16 under mixed precision) with Σ⁻¹ and log det Σ: Σ's
# eigenvalues must stay where those are finite and accurate. [1e-4, 1e4] is a latent standard deviation of 0.01
# to 100, far beyond any prior worth training; outside it, Σ = 1e-300·I for example, the loss is NaN at once.
PRIOR_EIGENVALUE_RANGE = (1e-4, 1e4)


def trainable_covariance_problem(sigma) -> str | None:
    """Why a symmetric positive-definite Σ cannot be trained with (numerically singular or too wide), or None."""
    import numpy as np

    lo, hi = PRIOR_EIGENVALUE_RANGE
    eig = np.linalg.eigvalsh(np.asarray(sigma, np.float64))
    if eig.min() < lo or eig.max() > hi:
        return (
            f"its eigenvalues {eig.min():.3g} .. {eig.max():.3g} leave [{lo:g}, {hi:g}], where the float32 "
            "training loss stays finite (Σ is numerically singular or too wide); scale it into that range"
        )
    return None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse and validate every flag (one-line error, exit 2, nothing written). ``args.explicit`` maps the
    settings the command line set to their flags, for ``--resume``."""
    p = build_parser()
    args = p.parse_args(argv)
    given = build_parser()  # the same flags with no defaults: what it returns is what the user typed
    for action in given._actions:
        if action.dest in SETTING_FLAGS or action.dest in MODEL_FLAGS:
            action.default = argparse.SUPPRESS
    given_dests = set(vars(given.parse_args(argv)))
    flag = {dest: "--" + dest.replace("_", "-") for dest in (*SETTING_FLAGS, *MODEL_FLAGS)}
    for dest, field in SETTING_FLAGS.items():
        value = getattr(args, dest)
        if value is None or (field == "precision" and value == "auto"):
            continue
        try:
            check_setting(field, value)
        except SettingError as exc:
            p.error(f"{flag[dest]} {exc.reason}")
    if args.train_limit is not None and args.train_limit - args.validation < args.batch_size:
        p.error(
            f"--train-limit {args.train_limit} minus --validation {args.validation} leaves less than one "
            f"--batch-size {args.batch_size}; raise --train-limit or lower --validation"
        )
    args.prior_cov_matrix = None
    if args.prior_cov is not None:
        if args.model not in ("vae2d_corr", "all"):
            p.error("--prior-cov applies to vae2d_corr only (the other VAEs have the prior N(0, I))")
        try:
            cov = json.loads(args.prior_cov)
            sigma = validate_covariance(cov, 2)
            args.prior_cov_matrix = tuple(tuple(float(v) for v in row) for row in sigma)
        except json.JSONDecodeError as exc:
            p.error(f"--prior-cov is not valid JSON ({exc.msg}); write it like '[[1.0,0.4],[0.4,0.5]]'")
        except RecursionError:  # e.g. 50,000 nested brackets: json's decoder gives up on the depth
            p.error(
                "--prior-cov is nested too deeply to be a 2x2 matrix; write it like '[[1.0,0.4],[0.4,0.5]]'"
            )
        except InvalidInputError as exc:
            p.error(f"--prior-cov rejected: {exc}")
        problem = trainable_covariance_problem(sigma)
        if problem:
            p.error(f"--prior-cov rejected: {problem}")
    field_of = {**SETTING_FLAGS, **MODEL_FLAGS}
    args.explicit = {field_of[d]: flag[d] for d in given_dests if d in field_of}
    return args


@cli_main
def main(args: argparse.Namespace) -> int:
    results = run(args)
    print(json.dumps(results, indent=2))
    return 0


def settings_for(
    kind: str, args: argparse.Namespace, precision: str, model: str | None = None
) -> TrainSettings:
    """The TrainSettings of one model from the parsed flags: a flag not given takes the model's own default
    (``CLASSIFIER_DEFAULTS``, ``VAE_DEFAULTS[model]``) where it has one, else the dataclass default."""
    values = {field: getattr(args, dest) for dest, field in SETTING_FLAGS.items()}
    if values["epochs"] is None:
        values["epochs"] = DEFAULTS["epochs"] if kind == "vae" else CLASSIFIER_EPOCHS
    values["precision"] = precision
    explicit = getattr(args, "explicit", None) or {}
    own = own_defaults("classifier" if kind == "classifier" else model)
    if kind == "classifier":
        values["kl_warmup_epochs"] = 0.0
        values["posterior"] = DEFAULTS["posterior"]
        values["ema_decay"] = 0.0
    values.update({k: v for k, v in own.items() if k not in explicit and k != "epochs"})
    return TrainSettings(**values)


def run(args: argparse.Namespace) -> dict:
    # Heavy imports only once the arguments are known to be good (so --help is instant).
    import tensorflow as tf

    from runtime.data import load_mnist

    from .classifier import train_classifier
    from .loop import CHECKPOINT_NAME, read_checkpoint_meta, resolve_precision, resolve_resume
    from .model import PRESETS, VAE_NAMES, ClassifierConfig, VAEConfig
    from .runset import finished_run
    from .vae import train_vae

    names = [*VAE_NAMES, "classifier"] if args.model == "all" else [args.model]
    precision = resolve_precision(args.precision)
    explicit = getattr(args, "explicit", None)
    plans, results = {}, {}
    for n in names:
        cfg = PRESETS[n]
        if n == "vae2d_corr" and getattr(args, "prior_cov_matrix", None):
            cfg = VAEConfig(cfg.name, cfg.latent_dim, args.prior_cov_matrix)
        kind = "classifier" if isinstance(cfg, ClassifierConfig) else "vae"
        settings = settings_for(kind, args, precision, n)
        if args.resume:
            cfg, settings = resolve_resume(
                checkpoint=Path(args.out) / n / CHECKPOINT_NAME,
                name=n,
                model_config=cfg,
                settings=settings,
                explicit=explicit,
            )
            done = finished_run(Path(args.out) / n)
            meta = read_checkpoint_meta(Path(args.out) / n / CHECKPOINT_NAME)
            if done and (meta is None or meta["epoch"] >= settings.epochs):
                # --resume continues an unfinished run; retraining this one would overwrite its files.
                print(
                    f"{n}: {Path(args.out) / n} holds a finished run ({done.run_id}) with nothing left to "
                    "resume; nothing to do (train without --resume to train it again)",
                    file=sys.stderr,
                )
                results[n] = done.metrics
                continue
        plans[n] = (kind, cfg, settings)
    if not plans:
        return _scalars(results)
    data = load_mnist(args.data)
    out_root = ensure_writable_dir(args.out)
    for n in names:
        ensure_writable_dir(out_root / n)
    strategy = (
        tf.distribute.MirroredStrategy() if args.strategy == "mirrored" else tf.distribute.get_strategy()
    )
    for n, (kind, cfg, settings) in plans.items():
        common = {
            "strategy": strategy,
            "resume": args.resume,
            "progress": not args.quiet,
            "figures_enabled": not args.no_figures,
        }
        if kind == "classifier":
            results[n] = train_classifier(cfg, data, out_root / n, settings, **common)
        else:
            results[n] = train_vae(cfg, data, out_root / n, settings, **common)
        summary = {
            k: v
            for k, v in results[n].items()
            if (k.startswith("test_") or k == "active_units") and isinstance(v, int | float)
        }
        print(f"{n}: " + ", ".join(f"{k}={v:.4g}" for k, v in summary.items()), file=sys.stderr)
    return _scalars(results)


def _scalars(results: dict) -> dict:
    return {n: {k: v for k, v in m.items() if not isinstance(v, list | dict)} for n, m in results.items()}


if __name__ == "__main__":
    sys.exit(main(parse_args()))
