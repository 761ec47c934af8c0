"""Train models into one output folder: the library function that ``python -m train`` and
``python -m train.results`` call.

    from train.pipeline import train_models
    from train.registry import VAEConfig, builtin
    trained = train_models(
        models=[builtin("vae2d").config, VAEConfig("vae4d", 4)],
        out="artifacts",
        data="../shared/data/mnist.npz",
        settings={"epochs": 5, "seed": 1},      # the rest: each model's own defaults (train/registry.py)
    )
    trained[1].metrics["test_neg_elbo"], trained[1].folder   # artifacts/vae4d

Each model goes to ``<out>/<name>/`` as one run set (model files, config.json, history.csv, metrics.json,
checkpoint.npz and the figures). A model named as a built-in must be that built-in (only a correlated prior's Σ
may differ); any other name is a new model of the same architecture (train/registry.py ``name_problem``).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from types import MappingProxyType

from runtime.errors import VaeEdgeError
from runtime.vocab import CLASSIFIER

from .registry import BUILTINS, ClassifierConfig, VAEConfig, name_problem
from .settings import DEFAULTS, TrainSettings, model_settings

STRATEGIES = ("default", "mirrored")


@dataclass(frozen=True)
class TrainedModel:
    """One model's outcome: its folder and its metrics (metrics.json's content)."""

    name: str
    folder: Path
    metrics: Mapping[str, object]
    trained: bool  # False: --resume found a finished run with nothing left to continue and left it as it was

    def scalars(self) -> dict:
        """The metrics without their lists and objects (what ``python -m train`` prints)."""
        return {k: v for k, v in self.metrics.items() if not isinstance(v, list | dict)}


def config_problem(cfg: VAEConfig | ClassifierConfig) -> str | None:
    """Why ``cfg`` cannot be trained under its name, or None: a built-in's name on another architecture or latent
    size would put a different model in that built-in's folder, which every later stage reads as the built-in."""
    entry = BUILTINS.get(cfg.name)
    if entry is None:
        if cfg.kind != "vae":
            return f"{cfg.name!r}: a classifier trains as the built-in {CLASSIFIER!r} only"
        return name_problem(cfg.name)
    mine, theirs = cfg, entry.config
    for f in fields(theirs):
        if f.name == "prior_cov" and theirs.prior_cov is not None:
            continue  # a correlated built-in takes any Σ of its size (--prior-cov); the prior check sizes it
        if getattr(mine, f.name, None) != getattr(theirs, f.name):
            return (
                f"{cfg.name!r} is a built-in model with {f.name}={getattr(theirs, f.name)!r}, not "
                f"{getattr(mine, f.name, None)!r}; give the new model another name"
            )
    return None


def train_models(
    *,
    models: Sequence[VAEConfig | ClassifierConfig],
    out: str | os.PathLike,
    data: str | os.PathLike | None = None,
    settings: Mapping[str, object] | None = None,
    resume: bool = False,
    flags: Mapping[str, str] | None = None,
    strategy: str = "default",
    progress: bool = True,
    figures: bool = True,
) -> tuple[TrainedModel, ...]:
    """Train ``models`` in order into ``<out>/<name>/``; returns one :class:`TrainedModel` each, in that order.

    ``settings``: the training settings the caller sets, by ``TrainSettings`` field (``"precision"`` may be
    ``"auto"``: bfloat16 where the CPU or a GPU has it); every other setting is the model's own default.
    ``data``: MNIST (.npz or IDX folder; None: $VAE_EDGE_MNIST, else keras downloads it). ``resume``: continue
    each model from its checkpoint with the checkpoint's configuration; a field named in ``flags`` (field -> the
    name its refusal quotes, such as the CLI's flag; default: every key of ``settings``, and ``prior_cov``) that
    contradicts the checkpoint is refused, one that is not takes the checkpoint's value. ``strategy``: "default"
    (one device) or "mirrored" (all GPUs). Raises VaeEdgeError, before anything is written, for a model that
    cannot be trained under its name or impossible settings.
    """
    settings = dict(settings or {})
    unknown = sorted(set(settings) - {f.name for f in fields(TrainSettings)})
    if unknown:
        raise VaeEdgeError(f"settings {unknown} are not training settings (train/settings.py TrainSettings)")
    if strategy not in STRATEGIES:
        raise VaeEdgeError(f"strategy {strategy!r}: use {' or '.join(STRATEGIES)}")
    names = [cfg.name for cfg in models]
    if len(set(names)) != len(names):
        raise VaeEdgeError(f"models {names} name one folder twice; give each model its own name")
    for cfg in models:
        if problem := config_problem(cfg):
            raise VaeEdgeError(problem)
    explicit = dict(flags) if flags is not None else {**{k: k for k in settings}, "prior_cov": "prior_cov"}

    # Heavy imports only once the arguments are known to be good.
    import tensorflow as tf

    from runtime.data import load_mnist
    from runtime.fileio import ensure_writable_dir

    from .classifier import train_classifier
    from .loop import CHECKPOINT_NAME, read_checkpoint_meta, resolve_precision, resolve_resume
    from .runset import finished_run
    from .vae import train_vae

    given = {**settings, "precision": resolve_precision(settings.get("precision", DEFAULTS["precision"]))}
    out_root = Path(out)
    plans, done = {}, {}
    for cfg in models:
        n = cfg.name
        run_settings = model_settings(n, given)
        if resume:
            checkpoint = out_root / n / CHECKPOINT_NAME
            cfg, run_settings = resolve_resume(
                checkpoint=checkpoint, name=n, model_config=cfg, settings=run_settings, explicit=explicit
            )
            finished = finished_run(out_root / n)
            meta = read_checkpoint_meta(checkpoint)
            if finished and (meta is None or meta["epoch"] >= run_settings.epochs):
                # --resume continues an unfinished run; retraining this one would overwrite its files.
                print(
                    f"{n}: {out_root / n} holds a finished run ({finished.run_id}) with nothing left to "
                    "resume; nothing to do (train without --resume to train it again)",
                    file=sys.stderr,
                )
                done[n] = TrainedModel(n, out_root / n, MappingProxyType(finished.metrics), trained=False)
                continue
        plans[n] = (cfg, run_settings)
    if plans:
        mnist = load_mnist(data)
        out_root = ensure_writable_dir(out)
        for n in names:
            ensure_writable_dir(out_root / n)
        tf_strategy = (
            tf.distribute.MirroredStrategy() if strategy == "mirrored" else tf.distribute.get_strategy()
        )
        common = {"strategy": tf_strategy, "resume": resume, "progress": progress, "figures_enabled": figures}
        for n, (cfg, run_settings) in plans.items():
            if isinstance(cfg, ClassifierConfig):
                metrics = train_classifier(cfg, mnist, out_root / n, run_settings, **common)
            else:
                metrics = train_vae(cfg, mnist, out_root / n, run_settings, **common)
            done[n] = TrainedModel(n, out_root / n, MappingProxyType(metrics), trained=True)
            summary = {
                k: v
                for k, v in metrics.items()
                if (k.startswith("test_") or k == "active_units") and isinstance(v, int | float)
            }
            print(f"{n}: " + ", ".join(f"{k}={v:.4g}" for k, v in summary.items()), file=sys.stderr)
    return tuple(done[n] for n in names)
