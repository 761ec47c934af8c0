"""Training settings: the one place where every shared training default and every rule on a value is stated.

``TrainSettings`` is a frozen dataclass validated in ``__post_init__``; ``python -m train`` takes its argparse
defaults from the dataclass's fields and validates each flag with the same rules (:func:`check_setting`) at
parse time; ``from_json`` reads a stored copy (config.json, checkpoint.npz) field by field. A built-in model's
own defaults are in its entry in train/registry.py; :func:`model_settings` puts the three together. No
TensorFlow here, so ``--help`` and flag errors are instant.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields

import numpy as np

from runtime.errors import InvalidInputError
from runtime.vocab import CLASSIFIER

PRECISIONS = ("float32", "bfloat16")
# How the training sample is drawn: "diagonal" z = μ + σ ⊙ ε from q(z|x) = N(μ, diag σ²) (vae-edge);
# "study" z = μ + L ε (the source study's variant, kept to measure what it costs; docs/correlated_prior.md).
POSTERIORS = ("diagonal", "study")
# Values that reproduce the behaviour of the code before a field existed: a stored copy (checkpoint.npz,
# config.json) that lacks the field was trained that way.
PREDATED = {"ema_decay": 0.0, "adam_beta_2": 0.999, "adam_epsilon": 1e-7}


class SettingError(InvalidInputError):
    """A training setting with an impossible value; ``field`` names the dataclass field."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field, self.reason = field, message


def _int(value, minimum: int, optional: bool = False) -> str | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        return f"must be an integer ≥ {minimum}, got {value!r}"
    return None if value >= minimum else f"must be ≥ {minimum}, got {value}"


def _float(value, minimum: float, strict: bool) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return f"must be a finite number, got {value!r}"
    if strict and not value > minimum:
        return f"must be > {minimum:g}, got {value:g}"
    if not strict and not value >= minimum:
        return f"must be ≥ {minimum:g}, got {value:g}"
    return None


def _unit_interval(value, allow_zero: bool) -> str | None:
    problem = _float(value, 0.0, strict=not allow_zero)
    if problem:
        return problem
    return None if value < 1.0 else f"must be < 1, got {value:g}"


def _choice(value, choices) -> str | None:
    return None if value in choices else f"must be one of {', '.join(choices)}, got {value!r}"


RULES = {
    "epochs": lambda v: _int(v, 1),
    "batch_size": lambda v: _int(v, 1),
    "learning_rate": lambda v: _float(v, 0.0, strict=True),
    "min_learning_rate": lambda v: _float(v, 0.0, strict=False),
    "lr_warmup_epochs": lambda v: _float(v, 0.0, strict=False),
    "kl_warmup_epochs": lambda v: _float(v, 0.0, strict=False),
    "seed": lambda v: _int(v, 0),
    "precision": lambda v: _choice(v, PRECISIONS),
    "steps_per_call": lambda v: _int(v, 1),
    "train_limit": lambda v: _int(v, 1, optional=True),
    "test_limit": lambda v: _int(v, 1, optional=True),
    "iw_samples": lambda v: _int(v, 0),
    "validation": lambda v: _int(v, 0),
    "posterior": lambda v: _choice(v, POSTERIORS),
    "ema_decay": lambda v: _unit_interval(v, allow_zero=True),
    "adam_beta_2": lambda v: _unit_interval(v, allow_zero=False),
    "adam_epsilon": lambda v: _float(v, 0.0, strict=True),
}


def check_setting(field: str, value) -> None:
    """Raise :class:`SettingError` when ``value`` is impossible for ``field`` (the CLI calls it per flag)."""
    problem = RULES[field](value) if field in RULES else None
    if problem:
        raise SettingError(field, problem)


VALIDATION_SEED_TAG = 5_000_011  # keeps the split's random stream apart from the other uses of the seed


@dataclass(frozen=True)
class Split:
    x_train: np.ndarray
    y_train: np.ndarray
    x_validation: np.ndarray
    y_validation: np.ndarray


@dataclass(frozen=True)
class TrainSettings:
    epochs: int = 30  # VAEs; the classifier's own default is its entry's in train/registry.py
    batch_size: int = 128
    # The peak of the warm-up / hold / cosine schedule: 3e-3 beat 1e-3 on the validation split (docs/results.md, Training).
    learning_rate: float = 3e-3
    min_learning_rate: float = 1e-5
    lr_warmup_epochs: float = 1.0
    kl_warmup_epochs: float = 5.0  # β rises linearly 0 → 1; reported figures are always the plain ELBO
    seed: int = 0
    precision: str = "float32"  # or "bfloat16" (mixed: bf16 compute, float32 variables)
    steps_per_call: int = 20
    train_limit: int | None = None  # use only the first N training images (tests, smoke runs)
    test_limit: int | None = None
    iw_samples: int = 100  # K for the importance-weighted NLL on the test split (0 skips it)
    # Training images held out (seeded by ``seed``) for per-epoch curves and every choice; the test split is
    # evaluated once, at the end. 0 trains on all training images.
    validation: int = 5000
    posterior: str = (
        "diagonal"  # the training sample (POSTERIORS); "study" only to measure the study's variant
    )
    # Exponential moving average of the weights (0 = none). At the end of a run the raw or the averaged
    # weights are kept, whichever has the lower validation −ELBO (the averaged ones without a validation split).
    ema_decay: float = 0.999
    # Adam's β₂: 0.99 beat Keras's 0.999 on vae2d's validation split in the GPU lever sweep; with TensorFlow on a
    # CPU the two measured the same (docs/levers.md).
    adam_beta_2: float = 0.99
    adam_epsilon: float = 1e-7  # Adam's ε (Keras default)

    def __post_init__(self):
        for f in fields(self):
            check_setting(f.name, getattr(self, f.name))
        if self.min_learning_rate > self.learning_rate:
            raise SettingError(
                "min_learning_rate",
                f"{self.min_learning_rate:g} is above the peak learning rate {self.learning_rate:g}",
            )

    def split(self, x: np.ndarray, y: np.ndarray) -> Split:
        """The training images (first ``train_limit``) split into training and validation parts.

        ``validation`` images are drawn by a permutation seeded by ``seed``; both parts keep MNIST's order.
        Raises a one-line error when fewer than one batch of training images would remain.
        """
        x, y = x[: self.train_limit], y[: self.train_limit]
        if len(x) - self.validation < self.batch_size:
            raise SettingError(
                "validation",
                f"holding out {self.validation} of {len(x)} training images leaves less than one batch of "
                f"{self.batch_size}; lower --validation (0 trains on all of them)",
            )
        order = np.random.default_rng([VALIDATION_SEED_TAG, self.seed]).permutation(len(x))
        held, kept = np.sort(order[: self.validation]), np.sort(order[self.validation :])
        return Split(x[kept], y[kept], x[held], y[held])

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, obj: dict) -> TrainSettings:
        """Read a stored copy: known fields by name, unknown keys refused. A field the copy predates takes
        the value that reproduces the code of its time (``PREDATED``), else the default."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(obj) - names)
        if unknown:
            raise InvalidInputError(
                f"stored training settings hold unknown fields {unknown}; they were written by a newer vae-edge"
            )
        return cls(**{**PREDATED, **{k: v for k, v in obj.items() if k in names}})

    def differences(self, other: TrainSettings) -> list[tuple[str, object, object]]:
        """(field, self's value, other's value) for every field where the two differ."""
        return [
            (f.name, getattr(self, f.name), getattr(other, f.name))
            for f in fields(self)
            if getattr(self, f.name) != getattr(other, f.name)
        ]


DEFAULTS = {f.name: f.default for f in fields(TrainSettings)}


def own_defaults(model: str | None) -> dict:
    """The values where one model's defaults differ from TrainSettings' (a built-in's entry in
    train/registry.py; a model that is not built in has none)."""
    from .registry import BUILTINS  # imported here: the registry checks its entries with this module's rules

    entry = BUILTINS.get(model)
    return dict(entry.defaults) if entry else {}


def model_defaults(model: str) -> dict:
    """The defaults of one model: TrainSettings' with the model's own values over them."""
    return {**DEFAULTS, **own_defaults(model)}


# Settings that shape a VAE's objective or the weights it keeps, which the classifier's loop has no use for:
# the classifier trains with these whatever the flags say.
CLASSIFIER_FIXED = {"kl_warmup_epochs": 0.0, "posterior": DEFAULTS["posterior"], "ema_decay": 0.0}


def model_settings(model: str, given: Mapping[str, object] | None = None) -> TrainSettings:
    """One model's TrainSettings: :func:`model_defaults` with ``given`` (the settings a user set, by field name)
    over them; the classifier keeps ``CLASSIFIER_FIXED``."""
    values = {**model_defaults(model), **(given or {})}
    if model == CLASSIFIER:
        values.update(CLASSIFIER_FIXED)
    return TrainSettings(**values)
