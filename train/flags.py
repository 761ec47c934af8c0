"""Train vae-edge's models on MNIST.

    python -m train --model all --data ../shared/data/mnist.npz          # all four, defaults (make train)
    python -m train --model vae2d_corr --epochs 30 --seed 0 --out artifacts/
    python -m train --model vae3d --resume                                 # continue an interrupted run
    python -m train --model vae4d_corr --latent-dim 4 --prior-cov "1,0.4,0,0;0.4,1,0,0;0,0,1,0;0,0,0,1"

Outputs go to ``<out>/<model>/``: encoder.keras + decoder.keras (or classifier.keras), config.json,
history.csv, metrics.json, checkpoint.npz and the figures as PNG. ``--latent-dim K`` trains the built-ins'
architecture at latent size K under any new name (prior N(0, I), or N(0, Σ) with ``--prior-cov``), with the
shared training defaults; its folder is a run set like a built-in's.
"""

# This docstring is python -m train's --help. The module holds its flags: the parser, their checks, and what
# they ask train.pipeline.train_models for; python -m train.results --train-flags reads the same flags, so
# they live here and not in train/__main__.py.

from __future__ import annotations

import argparse
import json
from dataclasses import replace

from runtime.cli import int_between, parser
from runtime.errors import InvalidInputError
from runtime.prior import validate_covariance
from runtime.vocab import ALL, CLASSIFIER

from .configcheck import LATENT_DIM
from .registry import BUILTINS, VAEConfig, builtin, name_problem, vae_names
from .settings import DEFAULTS, POSTERIORS, PRECISIONS, SettingError, check_setting, model_defaults

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
    """The parser, its --model choices and per-model defaults read from train/registry.py as it is built."""
    p = parser("python -m train", __doc__)
    classifier = model_defaults(CLASSIFIER)
    p.add_argument(
        "--model",
        default=ALL,
        metavar="NAME",
        help=f"which model to train: {', '.join(BUILTINS)}, {ALL} of them (the default), or a new VAE of "
        "any name with --latent-dim",
    )
    lo, hi = LATENT_DIM
    p.add_argument(
        "--latent-dim",
        type=int_between(lo, hi),
        default=None,
        help="train a new model, named by --model, with the built-ins' architecture at this latent size "
        f"({lo} to {hi}); its prior is N(0, I), or N(0, Σ) with --prior-cov",
    )
    p.add_argument(
        "--epochs",
        type=int,
        default=None,
        help=f"epochs, ≥ 1 (default: {DEFAULTS['epochs']} for VAEs, {classifier['epochs']} for the classifier)",
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
        f"{DEFAULTS['learning_rate']:g} for VAEs, {classifier['learning_rate']:g} for the classifier)",
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
        f"{classifier['adam_beta_2']:g} for the classifier)",
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
        help=f"compute precision (default {DEFAULTS['precision']}). bfloat16: mixed precision (bf16 compute, "
        "float32 variables and saved models) for CPUs with AMX/AVX512-BF16, its speed and its cost in -ELBO not "
        "measured on this code; auto = bfloat16 where the CPU or a GPU has it",
    )
    p.add_argument(
        "--prior-cov",
        default=None,
        help=f"the prior's covariance Σ (symmetric positive definite) for {' or '.join(correlated_builtins())} or "
        "a new model (--latent-dim): rows split by ';', e.g. '1,0.4;0.4,0.5', or JSON, e.g. '[[1.0,0.4],[0.4,0.5]]'",
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
    return "".join(
        f", {BUILTINS[m].defaults[field]:g} for {m}" for m in vae_names() if field in BUILTINS[m].defaults
    )


def correlated_builtins() -> list[str]:
    """The built-in VAEs whose prior is N(0, Σ) with a correlated Σ: --prior-cov replaces their Σ."""
    return [m for m in vae_names() if BUILTINS[m].config.prior_cov is not None]


def parse_matrix(text: str) -> list:
    """--prior-cov's text as nested lists: JSON ('[[1.0,0.4],[0.4,0.5]]') or rows split by ';' and values
    by ',' ('1,0.4;0.4,0.5'). json's and float's errors pass through (the caller names the flag)."""
    if text.lstrip().startswith("["):
        return json.loads(text)
    return [[float(v) for v in row.split(",")] for row in text.split(";")]


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
    if args.latent_dim is None and args.model != ALL and args.model not in BUILTINS:
        p.error(
            f"--model {args.model[:40]!r} is not a built-in model ({', '.join(BUILTINS)}, or {ALL}); "
            "give --latent-dim K to train a new model of that name"
        )
    if args.latent_dim is not None and (problem := name_problem(args.model)):
        p.error(f"--model with --latent-dim names a new model, and {problem}")
    args.prior_cov_matrix = None
    if args.prior_cov is not None:
        args.prior_cov_matrix = _prior_cov(p, args)
    field_of = {**SETTING_FLAGS, **MODEL_FLAGS}
    args.explicit = {field_of[d]: flag[d] for d in given_dests if d in field_of}
    return args


def _prior_cov(p: argparse.ArgumentParser, args: argparse.Namespace) -> tuple[tuple[float, ...], ...]:
    """--prior-cov checked for every model it applies to (a one-line error and exit 2 otherwise)."""
    if args.latent_dim is not None:
        sizes = {args.latent_dim}
    else:
        chosen = [m for m in correlated_builtins() if args.model in (m, ALL)]
        if not chosen:
            p.error(
                f"--prior-cov applies to {' and '.join(correlated_builtins())} only among the built-ins (the other "
                "VAEs have the prior N(0, I)), or to a new model (--latent-dim)"
            )
        sizes = {BUILTINS[m].config.latent_dim for m in chosen}
    example = "'1,0.4;0.4,0.5' or '[[1.0,0.4],[0.4,0.5]]'"
    try:
        cov = parse_matrix(args.prior_cov)
        for size in sorted(sizes):
            sigma = validate_covariance(cov, size)
    except json.JSONDecodeError as exc:
        p.error(f"--prior-cov is not valid JSON ({exc.msg}); write it like {example}")
    except RecursionError:  # e.g. 50,000 nested brackets: json's decoder gives up on the depth
        p.error(f"--prior-cov is nested too deeply to be a matrix; write it like {example}")
    except InvalidInputError as exc:
        p.error(f"--prior-cov rejected: {exc}")
    except ValueError as exc:  # float() of a value in the rows form
        p.error(f"--prior-cov is not a matrix of numbers ({exc}); write it like {example}")
    problem = trainable_covariance_problem(sigma)
    if problem:
        p.error(f"--prior-cov rejected: {problem}")
    return tuple(tuple(float(v) for v in row) for row in sigma)


def given_settings(args: argparse.Namespace) -> dict:
    """The training settings the command line set (by TrainSettings field), and the precision asked for
    ("auto" included); every other setting is the model's own default (train/settings.py model_settings)."""
    given = {field: getattr(args, dest) for dest, field in SETTING_FLAGS.items() if field in args.explicit}
    return {**given, "precision": args.precision}


def model_configs(args: argparse.Namespace) -> list:
    """The configs of the models the flags name, in training order."""
    if args.latent_dim is not None:
        return [VAEConfig(args.model, args.latent_dim, args.prior_cov_matrix)]
    configs = []
    for name in BUILTINS if args.model == ALL else (args.model,):
        cfg = builtin(name).config
        if args.prior_cov_matrix is not None and name in correlated_builtins():
            cfg = replace(cfg, prior_cov=args.prior_cov_matrix)
        configs.append(cfg)
    return configs


def train_options(args: argparse.Namespace) -> dict:
    """The keyword arguments of ``train.pipeline.train_models`` that the parsed flags ask for."""
    return {
        "models": model_configs(args),
        "out": args.out,
        "data": args.data,
        "settings": given_settings(args),
        "resume": args.resume,
        "flags": dict(args.explicit),
        "strategy": args.strategy,
        "progress": not args.quiet,
        "figures": not args.no_figures,
    }
