"""The training loop shared by the VAEs and the classifier: seeded, checkpointed every epoch, resumable.

One epoch = one seeded shuffle of the training split (less the validation hold-out), in batches of
``batch_size``, ``steps_per_call`` steps per ``tf.function`` call (so Python runs once per chunk, not per
step). After every epoch the weights and optimizer state go to ``checkpoint.npz`` atomically, so a killed run
loses at most one epoch and ``resume=True`` continues bit-for-bit on the same data order and noise (seeds
derive from seed + epoch).

Everything runs under a ``tf.distribute`` strategy (the default one here): a multi-GPU user passes a
``MirroredStrategy`` and nothing else changes.
"""

from __future__ import annotations

import io
import json
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import fields, replace
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from tqdm.auto import tqdm

from runtime.errors import VaeEdgeError
from runtime.fileio import atomic_path

from .settings import TrainSettings

CHECKPOINT_NAME = "checkpoint.npz"
# Settings a checkpoint written before they existed was trained with (the behaviour of that code).
LEGACY_SETTINGS: dict = {"validation": 0, "posterior": "diagonal"}


def cpu_has_bf16() -> bool:
    """True where oneDNN has bf16 matrix units (AMX or AVX512-BF16), where mixed bf16 is meant to train faster
    (not measured on this code: README, Training)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def resolve_precision(requested: str) -> str:
    if requested == "auto":
        return "bfloat16" if cpu_has_bf16() or tf.config.list_physical_devices("GPU") else "float32"
    if requested not in ("float32", "bfloat16"):
        raise VaeEdgeError(f"unknown precision {requested!r}; use auto, float32 or bfloat16")
    return requested


def dtype_policy(precision: str) -> str | None:
    return "mixed_bfloat16" if precision == "bfloat16" else None


def make_dataset(
    x: np.ndarray, y: np.ndarray | None, batch_size: int, seed: int, first_epoch: int, last_epoch: int
) -> tf.data.Dataset:
    """Batches of uint8 images (and labels) for epochs ``first_epoch .. last_epoch - 1`` back to back.

    Each epoch is its own permutation seeded by (seed, epoch), so a resumed run sees exactly the batches
    the uninterrupted run would have; one dataset for the whole run keeps the step function traced once.
    """
    steps = len(x) // batch_size
    orders = [
        np.random.default_rng([seed, e]).permutation(len(x))[: steps * batch_size]
        for e in range(first_epoch, last_epoch)
    ]
    index = np.concatenate(orders).astype(np.int32) if orders else np.zeros(0, np.int32)
    images = tf.constant(x)
    labels = None if y is None else tf.constant(y.astype(np.int32))
    ds = tf.data.Dataset.from_tensor_slices(index).batch(batch_size, drop_remainder=True)
    if labels is None:
        ds = ds.map(lambda i: tf.gather(images, i))
    else:
        ds = ds.map(lambda i: (tf.gather(images, i), tf.gather(labels, i)))
    return ds.prefetch(2)


def corrupt_checkpoint(path: Path, what: str) -> VaeEdgeError:
    """The one-line error for a checkpoint that cannot be continued, with the two ways to start over."""
    return VaeEdgeError(
        f"checkpoint {path} is corrupt ({what}); delete it to start over, or train without --resume into "
        "another --out"
    )


def check_checkpoint_meta(meta, path: Path) -> dict:
    """``meta`` if it describes a resumable run (an epoch count ≥ 0 with one history row per epoch), else a
    one-line error: an epoch of -5 or "x", or a history of 5, would fail deep in the loop."""
    if not isinstance(meta, dict):
        raise corrupt_checkpoint(path, f"its metadata is {type(meta).__name__}, not an object")
    epoch, history = meta.get("epoch"), meta.get("history")
    if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
        raise corrupt_checkpoint(path, f"epoch {epoch!r}, expected a whole number ≥ 0")
    if not isinstance(history, list) or not all(isinstance(row, dict) for row in history):
        raise corrupt_checkpoint(path, f"history {str(history)[:40]!r}, expected a list of epoch rows")
    if len(history) != epoch:
        raise corrupt_checkpoint(path, f"{len(history)} history rows for {epoch} epochs")
    if not isinstance(meta.get("name"), str):
        raise corrupt_checkpoint(path, f"model name {meta.get('name')!r}")
    return meta


def read_checkpoint_meta(path: Path) -> dict | None:
    """The metadata of ``checkpoint.npz`` (epoch, history, configuration) without its arrays; None if absent.
    Metadata that cannot describe a run is a one-line error (:func:`check_checkpoint_meta`)."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        with np.load(path) as ck:
            meta = json.loads(ck["meta"].tobytes().decode())
    except Exception as exc:
        raise VaeEdgeError(
            f"checkpoint {path} cannot be read ({type(exc).__name__}: {exc}); "
            "delete it to start over, or train without --resume into another --out"
        ) from None
    return check_checkpoint_meta(meta, path)


def stored_config(meta: dict, path: Path) -> dict:
    """{"model": model config JSON or None, "training": TrainSettings} of a checkpoint's metadata.

    Checkpoints written before the full configuration was stored hold only the training settings.
    """
    try:
        config = meta.get("config") or {"model": None, "training": meta.get("settings", {})}
        training = {**LEGACY_SETTINGS, **config["training"]} if "config" not in meta else config["training"]
        model = config.get("model")
        if not isinstance(training, dict) or not isinstance(model, dict | None):
            raise TypeError("config.training and config.model must be objects")
    except (KeyError, TypeError, AttributeError) as exc:
        raise corrupt_checkpoint(path, f"configuration: {type(exc).__name__}: {exc}") from None
    try:
        settings = TrainSettings.from_json(training)
    except VaeEdgeError as exc:
        raise VaeEdgeError(f"checkpoint {path}: {exc}; train into another --out") from None
    except TypeError as exc:  # a setting of the wrong JSON type that the dataclass's checks did not name
        raise corrupt_checkpoint(path, f"training settings: {exc}") from None
    return {"model": model, "training": settings}


def resolve_resume(
    *, checkpoint: Path, name: str, model_config, settings: TrainSettings, explicit: dict[str, str] | None
):
    """The (model config, settings) a ``--resume`` run continues with: the checkpoint's own.

    ``explicit`` maps each field set on the command line to its flag (None: every field counts as set). A
    field the command line did not set takes the checkpoint's value; one it set to a different value is
    refused with a one-line error naming the field and both values. Without a checkpoint nothing changes.
    """
    from .model import config_from_json

    meta = read_checkpoint_meta(checkpoint)
    if meta is None:
        return model_config, settings
    if meta.get("name") != name:
        raise VaeEdgeError(
            f"checkpoint {checkpoint} belongs to {meta.get('name')!r}, not {name!r}; use another --out"
        )
    stored = stored_config(meta, checkpoint)

    def refuse(field, theirs, mine):
        flag = (explicit or {}).get(field)
        fix = f"drop {flag} to continue that run, or" if flag else "to start over,"
        raise VaeEdgeError(
            f"--resume: {checkpoint} was trained with {field}={theirs!r}, but {flag or 'this run'} gives "
            f"{field}={mine!r}; {fix} train into another --out"
        )

    updates = {}
    for field, mine, theirs in settings.differences(stored["training"]):
        if explicit is None or field in explicit:
            refuse(field, theirs, mine)
        updates[field] = theirs
    settings = replace(settings, **updates)
    if stored["model"] is not None:
        try:
            theirs_cfg = config_from_json(stored["model"])
        except VaeEdgeError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise corrupt_checkpoint(
                checkpoint, f"model configuration: {type(exc).__name__}: {exc}"
            ) from None
        for f in fields(model_config):
            mine, theirs = getattr(model_config, f.name), getattr(theirs_cfg, f.name)
            if mine != theirs and (f.name != "prior_cov" or explicit is None or f.name in explicit):
                refuse(f.name, theirs, mine)
        model_config = theirs_cfg
    return model_config, settings


class InterruptFlag:
    """Ctrl-C (SIGINT) during training sets ``requested``; the loop stops at its next check (after each chunk
    of steps, and after each epoch's checkpoint) by raising KeyboardInterrupt there.

    Python's own handler raises KeyboardInterrupt wherever the main thread happens to be, and inside a
    ``__del__`` (tqdm's, when the previous epoch's bar is collected) that exception is printed and dropped:
    training went on and exited 0. A second Ctrl-C raises at once. Outside the main thread (signals cannot be
    handled there) it does nothing.
    """

    def __init__(self):
        self.requested = False
        self._previous = None
        self._installed = False

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self) -> InterruptFlag:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
            self._installed = True
        return self

    def __exit__(self, *exc) -> None:
        if self._installed:
            # None: the previous handler was not set from Python; Python's default is the sensible one.
            signal.signal(
                signal.SIGINT, self._previous if self._previous is not None else signal.default_int_handler
            )


class Trainer:
    """Runs epochs of a step function, with progress bar, NaN guard, per-epoch checkpoint and resume.

    ``step_fn(batch, step_seed) -> dict[str, per-replica sum]`` computes the losses of one batch and applies
    the gradients; the dict must hold ``count`` (images in the batch) and ``objective`` (the summed
    training objective). Everything else in the dict is summed too and reported per image.
    """

    def __init__(
        self,
        *,
        name: str,
        models: dict[str, keras.Model],
        optimizer: keras.optimizers.Optimizer,
        step_fn: Callable,
        settings: TrainSettings,
        out_dir: Path,
        strategy: tf.distribute.Strategy,
        progress: bool = True,
        model_config: dict | None = None,
    ):
        self.name, self.models, self.optimizer, self.settings = name, models, optimizer, settings
        # JSON-normalised (tuples -> lists) so that it compares equal to the copy read back from a checkpoint
        self.model_config = None if model_config is None else json.loads(json.dumps(model_config))
        self.out_dir, self.strategy, self.progress = Path(out_dir), strategy, progress
        self.step_fn = step_fn
        self.history: list[dict] = []
        self.start_epoch = 0
        with strategy.scope():
            self.optimizer.build(self.trainable_variables)
        self._chunk = tf.function(self._run_chunk, reduce_retracing=True)

    @property
    def trainable_variables(self):
        return [v for m in self.models.values() for v in m.trainable_variables]

    @property
    def checkpoint_path(self) -> Path:
        return self.out_dir / CHECKPOINT_NAME

    # ------------------------------------------------------------------ checkpointing
    def save_checkpoint(self, epoch: int) -> None:
        arrays = {}
        for mname, model in self.models.items():
            for i, w in enumerate(model.get_weights()):
                arrays[f"model/{mname}/{i}"] = w
        for i, v in enumerate(self.optimizer.variables):
            arrays[f"opt/{i}"] = np.asarray(v.numpy())
        meta = {
            "epoch": epoch,
            "history": self.history,
            "config": {"model": self.model_config, "training": self.settings.to_json()},
            "name": self.name,
        }
        arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
        with atomic_path(self.checkpoint_path, suffix=".npz") as tmp:
            np.savez(tmp, **arrays)

    def load_checkpoint(self) -> bool:
        """Restore weights, optimizer state and history; False when there is no checkpoint yet."""
        path = self.checkpoint_path
        if not path.exists():
            return False
        try:
            with np.load(path) as ck:
                meta = json.loads(ck["meta"].tobytes().decode())
                for mname, model in self.models.items():
                    n = len(model.get_weights())
                    model.set_weights([ck[f"model/{mname}/{i}"] for i in range(n)])
                for i, v in enumerate(self.optimizer.variables):
                    v.assign(ck[f"opt/{i}"])
        except Exception as exc:
            raise VaeEdgeError(
                f"checkpoint {path} cannot be restored ({type(exc).__name__}: {exc}); "
                "delete it to start over, or train without --resume into another --out"
            ) from None
        check_checkpoint_meta(meta, path)
        if meta.get("name") != self.name:
            raise VaeEdgeError(
                f"checkpoint {path} belongs to {meta.get('name')!r}, not {self.name!r}; use another --out"
            )
        stored = stored_config(meta, path)
        # python -m train resolves its flags against the checkpoint first (resolve_resume); this guards
        # library callers: a run continues only with the configuration it started with.
        for field, mine, theirs in self.settings.differences(stored["training"]):
            raise VaeEdgeError(
                f"checkpoint {path} was trained with {field}={theirs!r}, this run has {field}={mine!r}; "
                "resume with the checkpoint's settings, or train into another --out"
            )
        if stored["model"] is not None and self.model_config is not None:
            for field in sorted(set(stored["model"]) | set(self.model_config)):
                if stored["model"].get(field) != self.model_config.get(field):
                    raise VaeEdgeError(
                        f"checkpoint {path} holds a model with {field}={stored['model'].get(field)!r}, this run "
                        f"has {field}={self.model_config.get(field)!r}; train into another --out"
                    )
        self.start_epoch = int(meta["epoch"])
        self.history = meta["history"]
        return True

    # ------------------------------------------------------------------ the loop
    def _run_chunk(self, iterator, n_steps, seed):
        def one_step(i):
            batch = next(iterator)
            per_replica = self.strategy.run(
                self.step_fn, args=(batch, tf.stack([seed, tf.cast(i, tf.int64)]))
            )
            return {
                k: self.strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None)
                for k, v in per_replica.items()
            }

        totals = one_step(0)  # the first step outside the loop fixes the structure of the running sums
        for i in tf.range(1, n_steps):
            reduced = one_step(i)
            totals = {k: totals[k] + reduced[k] for k in totals}
        return totals

    def run(
        self,
        make_run_dataset: Callable[[int, int], tf.data.Dataset],
        steps_per_epoch: int,
        end_of_epoch: Callable[[int], dict],
    ) -> list[dict]:
        """Train from ``start_epoch`` to ``settings.epochs``.

        ``make_run_dataset(first, last)`` yields the batches of epochs first..last-1 back to back;
        ``end_of_epoch(epoch)`` returns the evaluation columns of the history row.
        """
        with InterruptFlag() as interrupts:
            return self._run(make_run_dataset, steps_per_epoch, end_of_epoch, interrupts)

    def _kept(self, epoch: int) -> str:
        """What a run stopped in ``epoch`` (0-based) leaves to resume from."""
        if epoch == 0:  # epoch 0 never completed: a checkpoint.npz there is an older run's, not this one's
            return "no epoch had completed, so this run saved no checkpoint"
        return f"the last completed epoch ({epoch}) is in {self.checkpoint_path} (--resume continues it)"

    def _run(self, make_run_dataset, steps_per_epoch, end_of_epoch, interrupts: InterruptFlag) -> list[dict]:
        s = self.settings
        dataset = make_run_dataset(self.start_epoch, s.epochs)
        iterator = iter(self.strategy.experimental_distribute_dataset(dataset))
        for epoch in range(self.start_epoch, s.epochs):
            t0 = time.perf_counter()
            sums: dict[str, float] = {}
            bar = tqdm(
                total=steps_per_epoch,
                desc=f"{self.name} epoch {epoch + 1}/{s.epochs}",
                unit="step",
                disable=not self.progress,
                leave=False,
                dynamic_ncols=True,
            )
            done = 0
            while done < steps_per_epoch:
                n = min(s.steps_per_call, steps_per_epoch - done)
                chunk_seed = tf.constant(s.seed * 1_000_003 + epoch * 10_007 + done, tf.int64)
                totals = self._chunk(iterator, tf.constant(n), chunk_seed)
                for k, v in totals.items():
                    sums[k] = sums.get(k, 0.0) + float(v)
                done += n
                if not np.isfinite(sums["objective"]):
                    bar.close()
                    raise VaeEdgeError(
                        f"{self.name}: the training loss became NaN/inf in epoch {epoch + 1} (step {done}); "
                        f"lower --lr or check the data and --prior-cov; {self._kept(epoch)}"
                    )
                if interrupts.requested:
                    bar.close()
                    print(
                        f"{self.name}: interrupted in epoch {epoch + 1}; {self._kept(epoch)}", file=sys.stderr
                    )
                    raise KeyboardInterrupt
                bar.update(n)
                bar.set_postfix(loss=f"{sums['objective'] / sums['count']:.2f}")
            bar.close()
            train_seconds = time.perf_counter() - t0
            count = sums.pop("count")
            row = {"epoch": epoch + 1, "lr": float(self.optimizer.learning_rate)}
            row.update({f"train_{k}": v / count for k, v in sums.items()})
            row["train_seconds"] = train_seconds
            row["train_images_per_s"] = count / train_seconds
            row.update(end_of_epoch(epoch))
            self.history.append(row)
            self.save_checkpoint(epoch + 1)
            if interrupts.requested:
                print(f"{self.name}: interrupted; {self._kept(epoch + 1)}", file=sys.stderr)
                raise KeyboardInterrupt
            if self.progress:
                shown = {
                    k: v
                    for k, v in row.items()
                    if k.startswith(("train_objective", "validation_", "accuracy"))
                }
                tqdm.write(
                    f"{self.name} epoch {epoch + 1}/{s.epochs}: "
                    + ", ".join(f"{k}={v:.4g}" for k, v in shown.items())
                    + f" ({train_seconds:.1f}s)"
                )
        return self.history


def history_csv(history: list[dict]) -> str:
    if not history:
        return ""
    keys = list(dict.fromkeys(k for row in history for k in row))
    buf = io.StringIO()
    buf.write(",".join(keys) + "\n")
    for row in history:
        buf.write(
            ",".join(
                "" if row.get(k) is None else f"{row[k]:.6g}" if isinstance(row[k], float) else str(row[k])
                for k in keys
            )
            + "\n"
        )
    return buf.getvalue()
