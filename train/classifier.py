"""Training of the MNIST digit classifier that judges generated samples (logits + penultimate features)."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from runtime.data import Mnist

from . import figures
from .loop import Trainer, TrainSettings, dtype_policy, make_dataset
from .model import ClassifierConfig, build_classifier, copy_weights
from .optim import make_optimizer
from .registry import builtin
from .runset import remove_stale_temporaries
from .vae import EVAL_BATCH, publish_run


def make_logits_fn(model):
    @tf.function(reduce_retracing=True)
    def batch(xb):
        logits, _ = model(tf.cast(xb, tf.float32)[..., None] / 255.0, training=False)
        return tf.cast(logits, tf.float32)

    return batch


def evaluate_classifier(logits_fn, x, y, split: str = "test") -> dict:
    logits = np.concatenate([logits_fn(x[i : i + EVAL_BATCH]).numpy() for i in range(0, len(x), EVAL_BATCH)])
    ce = tf.keras.losses.sparse_categorical_crossentropy(y.astype(np.int32), logits, from_logits=True).numpy()
    return {f"{split}_loss": float(ce.mean()), f"{split}_accuracy": float((logits.argmax(1) == y).mean())}


def train_classifier(
    cfg: ClassifierConfig,
    data: Mnist,
    out_dir: Path,
    settings: TrainSettings,
    *,
    strategy=None,
    resume: bool = False,
    progress: bool = True,
    figures_enabled: bool = True,
) -> dict:
    strategy = strategy or tf.distribute.get_strategy()
    remove_stale_temporaries(out_dir)
    keras.utils.set_random_seed(settings.seed)
    split = settings.split(data.x_train, data.y_train)
    x_train, y_train, x_val, y_val = split.x_train, split.y_train, split.x_validation, split.y_validation
    x_test, y_test = data.x_test[: settings.test_limit], data.y_test[: settings.test_limit]
    steps_per_epoch = len(x_train) // settings.batch_size
    with strategy.scope():
        model = build_classifier(cfg, dtype_policy=dtype_policy(settings.precision))
        optimizer = make_optimizer(settings, steps_per_epoch)

    def step(batch, seed):
        xb, yb = batch
        x = tf.cast(xb, tf.float32)[..., None] / 255.0
        with tf.GradientTape() as tape:
            logits, _ = model(x, training=True)
            logits = tf.cast(logits, tf.float32)
            ce = tf.keras.losses.sparse_categorical_crossentropy(yb, logits, from_logits=True)
            loss = tf.reduce_sum(ce) / settings.batch_size
        optimizer.apply_gradients(
            zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables, strict=True)
        )
        correct = tf.cast(tf.equal(tf.argmax(logits, 1, output_type=tf.int32), yb), tf.float32)
        return {
            "objective": tf.reduce_sum(ce),
            "accuracy": tf.reduce_sum(correct),
            "count": tf.cast(tf.shape(x)[0], tf.float32),
        }

    trainer = Trainer(
        name=cfg.name,
        models={"classifier": model},
        optimizer=optimizer,
        step_fn=step,
        settings=settings,
        out_dir=out_dir,
        strategy=strategy,
        progress=progress,
        model_config=cfg.to_json(),
    )
    if resume and trainer.load_checkpoint() and progress:
        print(f"classifier: resuming after epoch {trainer.start_epoch} from {trainer.checkpoint_path}")
    logits_fn = make_logits_fn(model)
    history = trainer.run(
        lambda a, b: make_dataset(x_train, y_train, settings.batch_size, settings.seed, a, b),
        steps_per_epoch,
        # curves on the validation split; the test split is evaluated once, below
        lambda epoch: evaluate_classifier(logits_fn, x_val, y_val, "validation") if len(x_val) else {},
    )
    model32 = copy_weights(model, build_classifier(cfg))
    logits32 = make_logits_fn(model32)
    metrics = {
        "model": "classifier",
        "epochs_trained": len(history),
        **evaluate_classifier(logits32, x_test, y_test),
        **(evaluate_classifier(logits32, x_val, y_val, "validation") if len(x_val) else {}),
        "train_images": len(x_train),
        "validation_images": len(x_val),
        "test_images": len(x_test),
        "target_test_accuracy": builtin(cfg.name).goal.value,  # its goal in train/registry.py
    }
    out_dir = Path(out_dir)
    publish_run(
        out_dir,
        {"classifier.keras": model32},
        cfg,
        settings,
        data,
        history,
        metrics,
        outputs={
            "logits": "(batch, 10) unnormalised class scores",
            "features": f"(batch, {cfg.feature_units}) penultimate ReLU features",
        },
    )
    if figures_enabled and history:
        figures.classifier_curves(history, out_dir / "training_curves.png")
    return metrics
