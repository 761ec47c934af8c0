"""The bounds of a model configuration, checked in plain Python before anything is built from it.

A ``config.json`` is data a sender controls (its run set's hashes can be re-forged along with it), and
Keras turns its numbers into tensors without asking: ``conv_filters`` [32, 1e12] asked TensorFlow for
terabytes, ``latent_dim`` 1e9 ran for a minute and took 11 GB before a MemoryError, ``[32]`` and ``"ab"``
failed inside a tuple unpacking. Each field is checked here for its type and a sane range first, and the
first bad one is named with what it must be. TensorFlow-free and side-effect free, so ``python -m export``
refuses a bad folder before it imports TensorFlow, and ``train.model``'s config dataclasses enforce the same
limits when they are constructed.

    from train.configcheck import model_config_problem
    model_config_problem({"kind": "vae", "name": "vae2d", "latent_dim": 0})
    # "model.latent_dim is 0; it must be an integer from 1 to 512"
"""

from __future__ import annotations

import math
from collections.abc import Mapping

# Far above anything this project trains (latent 2-3, filters 32/64, dense 16, features 128), far below what
# exhausts a machine: the largest decoder these allow is a few GB of float32 weights at most.
LATENT_DIM = (1, 512)
CONV_FILTERS = (1, 1024)
DENSE_UNITS = (1, 4096)
FEATURE_UNITS = (1, 4096)
KINDS = ("vae", "classifier")
# A prior variance of 1e308 is finite and positive definite, yet its samples overflow float32 (inf latents,
# NaN pixels): the trained priors' entries are about 1.
PRIOR_COV_MAX = 1e4


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _show(value) -> str:
    """The value as the message quotes it: short, whatever the file held (a million-item list, a huge string)."""
    text = repr(list(value) if isinstance(value, tuple) else value)
    return text if len(text) <= 60 else text[:57] + "..."


def _int_problem(name: str, value, bounds: tuple[int, int]) -> str | None:
    lo, hi = bounds
    if not _is_int(value) or not lo <= value <= hi:
        return f"model.{name} is {_show(value)}; it must be an integer from {lo} to {hi}"
    return None


def _filters_problem(value) -> str | None:
    lo, hi = CONV_FILTERS
    if (
        not isinstance(value, list | tuple)
        or len(value) != 2
        or not all(_is_int(v) and lo <= v <= hi for v in value)
    ):
        return (
            f"model.conv_filters is {_show(value)}; it must be a list of 2 integers, each from {lo} to {hi}"
        )
    return None


def model_config_problem(obj, expected_kind: str | None = None) -> str | None:
    """What is wrong with the ``model`` object of a config.json (or a config dataclass's fields), or None.

    A field the object lacks is not checked: the dataclass default applies (train.model's ``from_json``).
    ``expected_kind``: the kind the folder must hold (a VAE's folder with a classifier's config is refused).
    """
    if not isinstance(obj, Mapping):
        return f"model is {_show(obj)}; it must be an object"
    kind = obj.get("kind", "vae")
    if kind not in KINDS:
        return f"model.kind is {_show(kind)}; it must be one of {', '.join(map(repr, KINDS))}"
    if expected_kind is not None and kind != expected_kind:
        return (
            f"model.kind is {kind!r}, but this folder holds a {expected_kind}; it must be {expected_kind!r}"
        )
    if "name" in obj and not isinstance(obj["name"], str):
        return f"model.name is {_show(obj['name'])}; it must be a string"
    if kind == "vae" and "latent_dim" not in obj:
        return "model.latent_dim is missing; it must be an integer from 1 to 512"
    checks = {"conv_filters": _filters_problem}
    if kind == "vae":
        checks |= {
            "latent_dim": lambda v: _int_problem("latent_dim", v, LATENT_DIM),
            "dense_units": lambda v: _int_problem("dense_units", v, DENSE_UNITS),
        }
    else:
        checks |= {
            "feature_units": lambda v: _int_problem("feature_units", v, FEATURE_UNITS),
            "dropout": lambda v: (
                None
                if isinstance(v, int | float) and not isinstance(v, bool) and 0 <= v < 1
                else f"model.dropout is {_show(v)}; it must be a number from 0 to below 1"
            ),
        }
    for name, check in checks.items():
        if name in obj and (problem := check(obj[name])):
            return problem
    cov = obj.get("prior_cov") if kind == "vae" else None
    if isinstance(cov, list | tuple) and all(isinstance(row, list | tuple) for row in cov):
        values = [v for row in cov for v in row]
        numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
        big = [v for v in values if math.isfinite(v) and abs(v) > PRIOR_COV_MAX] if numbers else []
        if big:  # NaN and inf: runtime.prior.validate_covariance says so, as it does shape and symmetry
            return f"model.prior_cov holds {big[0]!r}; its entries must be within ±{PRIOR_COV_MAX:g}"
    return None
