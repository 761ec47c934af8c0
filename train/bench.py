"""Training-speed benchmark: vae-edge's loop against the keras-io reference VAE loop, same run, same data.

    python -m train.bench --epochs 3 --out reports          # make bench-train
    python -m train.bench --epochs 30                        # full runs, also compares test -ELBO

The reference is the keras-io "Variational AutoEncoder" example (a ``keras.Model`` subclass with a custom
``train_step`` and a plain ``fit``), with the same architecture, batch 128 and the 60k training split.
Seconds per epoch are the median over epochs after the first (which includes tracing). Writes
``<out>/bench_train.json`` and ``<out>/bench_train.md``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from runtime.errors import VaeEdgeError  # noqa: E402
from runtime.fileio import ensure_writable_dir, write_json_atomic, write_text_atomic  # noqa: E402

SPEEDUP_GOAL = 1.3  # vae-edge must train at least this much faster per epoch than the reference


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m train.bench", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--epochs", type=int, default=3, help="epochs per loop (default 3; 30 for the quality comparison)"
    )
    p.add_argument("--data", default=None, help="MNIST path (default $VAE_EDGE_MNIST)")
    p.add_argument("--out", default="reports", help="report folder (default reports/)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--precisions",
        default="float32,bfloat16",
        help="vae-edge precisions to time, comma list (bfloat16 is skipped on CPUs without it)",
    )
    return p.parse_args(argv)


def build_reference_vae(latent_dim: int = 2):
    """The keras-io VAE example, verbatim in structure (Sampling layer, VAE.train_step, fit)."""
    import keras
    import tensorflow as tf
    from keras import layers, ops

    class Sampling(layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.seed_generator = keras.random.SeedGenerator(1337)

        def call(self, inputs):
            z_mean, z_log_var = inputs
            eps = keras.random.normal(shape=ops.shape(z_mean), seed=self.seed_generator)
            return z_mean + ops.exp(0.5 * z_log_var) * eps

    enc_in = keras.Input(shape=(28, 28, 1))
    x = layers.Conv2D(32, 3, activation="relu", strides=2, padding="same")(enc_in)
    x = layers.Conv2D(64, 3, activation="relu", strides=2, padding="same")(x)
    x = layers.Flatten()(x)
    x = layers.Dense(16, activation="relu")(x)
    z_mean = layers.Dense(latent_dim, name="z_mean")(x)
    z_log_var = layers.Dense(latent_dim, name="z_log_var")(x)
    z = Sampling()([z_mean, z_log_var])
    encoder = keras.Model(enc_in, [z_mean, z_log_var, z], name="encoder")

    dec_in = keras.Input(shape=(latent_dim,))
    x = layers.Dense(7 * 7 * 64, activation="relu")(dec_in)
    x = layers.Reshape((7, 7, 64))(x)
    x = layers.Conv2DTranspose(64, 3, activation="relu", strides=2, padding="same")(x)
    x = layers.Conv2DTranspose(32, 3, activation="relu", strides=2, padding="same")(x)
    dec_out = layers.Conv2DTranspose(1, 3, activation="sigmoid", padding="same")(x)
    decoder = keras.Model(dec_in, dec_out, name="decoder")

    class VAE(keras.Model):
        def __init__(self, encoder, decoder, **kwargs):
            super().__init__(**kwargs)
            self.encoder, self.decoder = encoder, decoder
            self.total_loss_tracker = keras.metrics.Mean(name="total_loss")

        @property
        def metrics(self):
            return [self.total_loss_tracker]

        def train_step(self, data):
            with tf.GradientTape() as tape:
                z_mean, z_log_var, z = self.encoder(data)
                reconstruction = self.decoder(z)
                reconstruction_loss = ops.mean(
                    ops.sum(keras.losses.binary_crossentropy(data, reconstruction), axis=(1, 2))
                )
                kl_loss = -0.5 * (1 + z_log_var - ops.square(z_mean) - ops.exp(z_log_var))
                kl_loss = ops.mean(ops.sum(kl_loss, axis=1))
                total_loss = reconstruction_loss + kl_loss
            grads = tape.gradient(total_loss, self.trainable_weights)
            self.optimizer.apply_gradients(zip(grads, self.trainable_weights, strict=True))
            self.total_loss_tracker.update_state(total_loss)
            return {"loss": self.total_loss_tracker.result()}

    vae = VAE(encoder, decoder)
    vae.compile(optimizer=keras.optimizers.Adam())
    return vae


def reference_neg_elbo(vae, x_test) -> float:
    import numpy as np

    z_mean, z_log_var, z = vae.encoder.predict(x_test, batch_size=500, verbose=0)
    p = np.clip(vae.decoder.predict(z, batch_size=500, verbose=0), 1e-7, 1 - 1e-7).astype(np.float64)
    bce = -(x_test * np.log(p) + (1 - x_test) * np.log(1 - p)).reshape(len(x_test), -1).sum(1)
    kl = -0.5 * (1 + z_log_var - z_mean**2 - np.exp(z_log_var)).sum(1)
    return float((bce + kl).mean())


def run_reference(data, epochs: int, seed: int) -> dict:
    import keras
    import numpy as np

    keras.utils.set_random_seed(seed)
    vae = build_reference_vae()
    x = data.images("train")
    times = []

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.t0 = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            times.append(time.perf_counter() - self.t0)

    vae.fit(x, epochs=epochs, batch_size=128, verbose=0, callbacks=[Timer()])
    steady = times[1:] or times
    return {
        "seconds_per_epoch": float(np.median(steady)),
        "epoch_seconds": times,
        "images_per_s": len(x) // 128 * 128 / float(np.median(steady)),
        "test_neg_elbo": reference_neg_elbo(vae, data.images("test")),
    }


def run_vae_edge(data, epochs: int, seed: int, precision: str) -> dict:
    import numpy as np

    from .loop import resolve_precision
    from .model import PRESETS
    from .settings import TrainSettings
    from .vae import train_vae

    settings = TrainSettings(epochs=epochs, seed=seed, precision=resolve_precision(precision), iw_samples=0)
    with tempfile.TemporaryDirectory() as tmp:
        metrics = train_vae(
            PRESETS["vae2d"], data, Path(tmp), settings, progress=False, figures_enabled=False
        )
        import csv

        rows = list(csv.DictReader((Path(tmp) / "history.csv").open()))
    times = [float(r["train_seconds"]) for r in rows]
    steady = times[1:] or times
    return {
        "seconds_per_epoch": float(np.median(steady)),
        "epoch_seconds": times,
        "images_per_s": len(data.x_train) // 128 * 128 / float(np.median(steady)),
        "test_neg_elbo": metrics["test_neg_elbo"],
        "precision": settings.precision,
    }


def main(args: argparse.Namespace) -> int:
    try:
        from runtime.bench import cpu_model
        from runtime.data import load_mnist

        from .loop import cpu_has_bf16
        from .provenance import provenance

        out = ensure_writable_dir(args.out)
        data = load_mnist(args.data)
        precisions = [p for p in args.precisions.split(",") if p != "bfloat16" or cpu_has_bf16()]
        reference = run_reference(data, args.epochs, args.seed)
        ours = [run_vae_edge(data, args.epochs, args.seed, p) for p in precisions]
    except VaeEdgeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for o in ours:
        o["speedup"] = reference["seconds_per_epoch"] / o["seconds_per_epoch"]
        o["speed_goal_met"] = o["speedup"] >= SPEEDUP_GOAL
        o["elbo_not_worse"] = o["test_neg_elbo"] <= reference["test_neg_elbo"]
    report = {
        "epochs": args.epochs,
        "batch_size": 128,
        "train_images": len(data.x_train),
        "platform": {"cpu": cpu_model(), "cores": os.cpu_count(), **provenance()["platform"]},
        "versions": provenance()["versions"],
        "reference_keras_io": reference,
        "vae_edge": ours,
        "speedup_goal": SPEEDUP_GOAL,
    }
    write_json_atomic(out / "bench_train.json", report)
    md = [
        "# Training speed: vae-edge vs the keras-io reference loop",
        "",
        f"{report['platform']['cpu']}, {report['platform']['cores']} cores; {args.epochs} epochs each, batch 128, "
        "60k images, same run; seconds per epoch = median after the first epoch (which includes tracing).",
        "",
        "| loop | precision | s / epoch | images / s | speed-up | test −ELBO after the run |",
        "|---|---|---|---|---|---|",
        f"| keras-io reference (`fit` + custom `train_step`) | float32 | {reference['seconds_per_epoch']:.1f} | "
        f"{reference['images_per_s']:.0f} | 1.00× | {reference['test_neg_elbo']:.1f} |",
    ]
    for o in ours:
        md.append(
            f"| vae-edge (`python -m train`) | {o['precision']} | {o['seconds_per_epoch']:.1f} | "
            f"{o['images_per_s']:.0f} | {o['speedup']:.2f}× | {o['test_neg_elbo']:.1f} |"
        )
    md += [
        "",
        f"Goal: ≥ {SPEEDUP_GOAL}× per epoch at equal or better test −ELBO. "
        + "; ".join(f"{o['precision']}: {'met' if o['speed_goal_met'] else 'not met'} on speed" for o in ours)
        + ".",
    ]
    if args.epochs < 30:
        md.append(
            "The −ELBO after a short run compares schedules, not final quality (vae-edge warms the KL weight up "
            "over 5 epochs); the 30-epoch figures are in README."
        )
    write_text_atomic(out / "bench_train.md", "\n".join(md) + "\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main(parse_args()))
