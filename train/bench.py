"""Training benchmark: vae-edge's loop against the keras-io reference VAE loop, 2-D and 3-D latents, same data.

    python -m train.bench --epochs 3 --out reports                 # make bench-train (speed, short runs)
    python -m train.bench --epochs 30 --precisions float32         # the quality comparison the README cites

The reference is the keras-io "Variational AutoEncoder" example (a ``keras.Model`` subclass with a custom
``train_step`` and a plain ``fit``), with the same architecture and its example's batch 128, for each latent
size in ``--latents``; vae-edge trains vae2d (2) and vae3d (3) with their own defaults. Both loops train on the
same training images (the training split minus the seeded ``--validation`` hold-out, as ``python -m train`` uses
them) in the same process, and both are scored once on the 10,000 test images with the same −ELBO (BCE from
the decoder's logits + the closed-form KL, one seeded posterior sample). Seconds per epoch are the median over epochs after the first
(which includes tracing). Writes ``<out>/bench_train.json`` and ``<out>/bench_train.md``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from runtime.cli import cli_main, parser  # noqa: E402
from runtime.fileio import ensure_writable_dir, write_json_atomic, write_text_atomic  # noqa: E402

from .registry import BUILTINS  # noqa: E402
from .settings import DEFAULTS, PRECISIONS, SettingError, TrainSettings, check_setting, model_defaults  # noqa: E402

SPEEDUP_GOAL = 1.3  # vae-edge must train at least this much faster per epoch than the reference
# the keras-io example's batch; vae-edge trains at its models' own defaults (vae2d and vae3d: 32)
REFERENCE_BATCH = 128


def isotropic_builtins() -> dict[int, str]:
    """latent size -> the first built-in VAE with the prior N(0, I) at that size (vae2d, vae3d): the models the
    reference, which has no other prior, is compared with."""
    out: dict[int, str] = {}
    for name, entry in BUILTINS.items():
        if entry.kind == "vae" and entry.config.prior_cov is None:
            out.setdefault(entry.config.latent_dim, name)
    return out


MODEL_FOR_LATENTS = isotropic_builtins()


def _comma_list(kind, allowed):
    def parse(text: str):
        try:
            values = [kind(v) for v in text.split(",") if v]
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not a comma list of {', '.join(map(str, allowed))}"
            ) from None
        bad = [v for v in values if v not in allowed]
        if bad or not values:
            raise argparse.ArgumentTypeError(f"{bad or text!r}: choose from {', '.join(map(str, allowed))}")
        return values

    return parse


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = parser("python -m train.bench", __doc__)
    p.add_argument(
        "--epochs", type=int, default=3, help="epochs per loop (default 3; 30 for the quality comparison)"
    )
    p.add_argument("--data", default=None, help="MNIST path (default $VAE_EDGE_MNIST)")
    p.add_argument("--out", default="reports", help="report folder (default reports/)")
    p.add_argument("--seed", type=int, default=DEFAULTS["seed"])
    p.add_argument(
        "--latents",
        type=_comma_list(int, tuple(MODEL_FOR_LATENTS)),
        default=[2, 3],
        help="latent sizes to compare, comma list of 2, 3 (default 2,3)",
    )
    p.add_argument(
        "--precisions",
        type=_comma_list(str, PRECISIONS),
        default=list(PRECISIONS),
        help="vae-edge precisions, comma list (default float32,bfloat16; bfloat16 is skipped on CPUs without it)",
    )
    p.add_argument(
        "--validation",
        type=int,
        default=DEFAULTS["validation"],
        help=f"training images held out, as python -m train does (default {DEFAULTS['validation']})",
    )
    p.add_argument(
        "--vae-edge-runs",
        default=None,
        help="read vae-edge's side from runs already trained (a folder holding vae2d/ and vae3d/, e.g. "
        "artifacts/results/seed-0 after make results) instead of training it again; their settings must be "
        "the defaults with this --epochs, --seed and --validation",
    )
    args = p.parse_args(argv)
    for field in ("epochs", "seed", "validation"):
        try:
            check_setting(field, getattr(args, field))
        except SettingError as exc:
            p.error(f"--{field} {exc.reason}")
    return args


def _reference_decoder(latent_dim: int, activation: str | None):
    import keras
    from keras import layers

    dec_in = keras.Input(shape=(latent_dim,))
    x = layers.Dense(7 * 7 * 64, activation="relu")(dec_in)
    x = layers.Reshape((7, 7, 64))(x)
    x = layers.Conv2DTranspose(64, 3, activation="relu", strides=2, padding="same")(x)
    x = layers.Conv2DTranspose(32, 3, activation="relu", strides=2, padding="same")(x)
    dec_out = layers.Conv2DTranspose(1, 3, activation=activation, padding="same")(x)
    return keras.Model(dec_in, dec_out, name="decoder")


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
    decoder = _reference_decoder(latent_dim, "sigmoid")

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


def reference_neg_elbo(vae, x_test, latent_dim: int, seed: int) -> float:
    """The reference model's test −ELBO as vae-edge measures its own: BCE from the decoder's logits (the same
    weights without the final sigmoid) + the closed-form KL, one seeded posterior sample per image."""
    import numpy as np

    from runtime.quality import bce_per_image_from_logits

    z_mean, z_log_var, _ = vae.encoder.predict(x_test, batch_size=500, verbose=0)
    eps = np.random.default_rng(seed).standard_normal(z_mean.shape).astype(np.float32)
    z = z_mean + np.exp(0.5 * z_log_var) * eps
    logits_model = _reference_decoder(latent_dim, None)
    logits_model.set_weights(vae.decoder.get_weights())
    logits = logits_model.predict(z, batch_size=500, verbose=0)
    kl = -0.5 * (1 + z_log_var - z_mean**2 - np.exp(z_log_var)).astype(np.float64).sum(1)
    return float((bce_per_image_from_logits(x_test, logits) + kl).mean())


def run_reference(x_train, x_test, latent_dim: int, epochs: int, seed: int) -> dict:
    import keras
    import numpy as np

    keras.utils.set_random_seed(seed)
    vae = build_reference_vae(latent_dim)
    x = (x_train.astype(np.float32) / 255.0)[..., None]
    times = []

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.t0 = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            times.append(time.perf_counter() - self.t0)

    vae.fit(x, epochs=epochs, batch_size=REFERENCE_BATCH, verbose=0, callbacks=[Timer()])
    steady = times[1:] or times
    return {
        "loop": "keras-io reference",
        "latent_dim": latent_dim,
        "precision": "float32",
        "seconds_per_epoch": float(np.median(steady)),
        "epoch_seconds": times,
        "batch_size": REFERENCE_BATCH,
        "images_per_s": len(x) / float(np.median(steady)),
        "test_neg_elbo": reference_neg_elbo(
            vae, (x_test.astype(np.float32) / 255.0)[..., None], latent_dim, seed + 1
        ),
    }


def vae_edge_row(run: Path, latent_dim: int, settings: TrainSettings, metrics: dict) -> dict:
    """vae-edge's row of the report from a run folder's history.csv and its metrics."""
    import csv

    import numpy as np

    times = [float(r["train_seconds"]) for r in csv.DictReader((run / "history.csv").open())]
    seconds_per_epoch = float(np.median(times[1:] or times))
    return {
        "loop": "vae-edge",
        "latent_dim": latent_dim,
        "model": MODEL_FOR_LATENTS[latent_dim],
        "precision": settings.precision,
        "seconds_per_epoch": seconds_per_epoch,
        "epoch_seconds": times,
        "batch_size": settings.batch_size,
        "images_per_s": metrics["train_images"] / seconds_per_epoch,
        "test_neg_elbo": metrics["test_neg_elbo"],
        "validation_neg_elbo": metrics.get("validation_neg_elbo"),
    }


def run_vae_edge(data, latent_dim: int, epochs: int, seed: int, precision: str, validation: int) -> dict:
    from .registry import builtin
    from .vae import train_vae

    settings = TrainSettings(  # the model's own defaults (train/registry.py), as python -m train uses them
        **{
            **model_defaults(MODEL_FOR_LATENTS[latent_dim]),
            "epochs": epochs,
            "seed": seed,
            "precision": precision,
            "iw_samples": 0,
            "validation": validation,
        }
    )
    with tempfile.TemporaryDirectory() as tmp:
        metrics = train_vae(
            builtin(MODEL_FOR_LATENTS[latent_dim]).config,
            data,
            Path(tmp),
            settings,
            progress=False,
            figures_enabled=False,
        )
        return vae_edge_row(Path(tmp), latent_dim, settings, metrics)


def read_vae_edge_run(
    folder: Path, latent_dim: int, epochs: int, seed: int, validation: int, **limits: int | None
) -> dict:
    """vae-edge's row from a finished run (``python -m train``'s outputs), refused unless it was trained with
    the defaults and this benchmark's epochs, seed and validation split (``limits``: train_limit, test_limit,
    None for the whole splits, as the benchmark uses them)."""
    import json

    from runtime.errors import VaeEdgeError

    from .runset import verify_run_set

    model = MODEL_FOR_LATENTS[latent_dim]
    run = Path(folder) / model
    run_id = verify_run_set(run)
    stored = TrainSettings.from_json(json.loads((run / "config.json").read_text())["training"])
    wanted = TrainSettings(
        **{
            **model_defaults(model),
            "epochs": epochs,
            "seed": seed,
            "validation": validation,
            "precision": stored.precision,
            "iw_samples": stored.iw_samples,
            **limits,
        }
    )
    differences = stored.differences(wanted)
    if differences:
        field, theirs, ours = differences[0]
        raise VaeEdgeError(
            f"{run} was trained with {field}={theirs!r}, this benchmark needs {field}={ours!r}; "
            "train it with python -m train's defaults or drop --vae-edge-runs"
        )
    metrics = json.loads((run / "metrics.json").read_text())
    return vae_edge_row(run, latent_dim, stored, metrics) | {
        "from_run": {"folder": str(run), "run_id": run_id}
    }


def bench_markdown(report: dict) -> str:
    reused = [r["from_run"] for runs in report["runs"].values() for r in runs if r.get("from_run")]
    md = [
        "# Training: vae-edge vs the keras-io reference loop",
        "",
        f"{report['platform']['cpu']}, {report['platform']['cores']} cores; {report['epochs']} epochs each (the "
        f"reference at its example's batch {REFERENCE_BATCH}, vae-edge at its models' defaults), the same "
        f"{report['train_images']:,} training images ({report['validation_images']:,} held out for validation, seed "
        f"{report['seed']}), {'vae-edge read from earlier runs' if reused else 'same process'}; seconds per "
        "epoch = median after the first epoch (which includes tracing). Test −ELBO: the 10,000 test images, BCE "
        "from logits + closed-form KL, one seeded posterior sample, computed the same way for both loops.",
        "",
        "| latent | loop | precision | batch | s / epoch | images / s | speed-up | test −ELBO |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for latent, runs in report["runs"].items():
        ref = runs[0]
        for r in runs:
            speed = "1.00×" if r is ref else f"{r['speedup']:.2f}×"
            md.append(
                f"| {latent}-D | {r['loop']} | {r['precision']} | {r.get('batch_size', '—')} | "
                f"{r['seconds_per_epoch']:.1f} | "
                f"{r['images_per_s']:.0f} | {speed} | {r['test_neg_elbo']:.2f} |"
            )
    ours = [r for runs in report["runs"].values() for r in runs[1:]]
    md += [
        "",
        f"Speed goal: ≥ {SPEEDUP_GOAL}× per epoch. "
        + "; ".join(
            f"{r['latent_dim']}-D {r['precision']}: {'met' if r['speed_goal_met'] else 'not met'}"
            for r in ours
        )
        + ".",
    ]
    if reused:
        md.append(
            "vae-edge's rows are read from runs trained earlier on this machine by `python -m train` (same "
            "split, default settings): "
            + ", ".join(f"`{r['folder']}` ({r['run_id'][:8]})" for r in reused)
            + "."
        )
    if report["epochs"] < 30:
        md.append(
            "The −ELBO after a short run compares schedules, not final quality (vae-edge warms the KL weight up "
            "over 5 epochs); the 30-epoch comparison is `python -m train.bench --epochs 30 --precisions float32`."
        )
    return "\n".join(md) + "\n"


@cli_main
def main(args: argparse.Namespace) -> int:
    from runtime.bench import cpu_model
    from runtime.data import load_mnist

    from .loop import cpu_has_bf16
    from .provenance import provenance

    data = load_mnist(args.data)
    split = TrainSettings(seed=args.seed, validation=args.validation).split(data.x_train, data.y_train)
    out = ensure_writable_dir(args.out)
    precisions = [p for p in args.precisions if p != "bfloat16" or cpu_has_bf16()]
    runs = {}
    for latent in args.latents:
        reference = run_reference(split.x_train, data.x_test, latent, args.epochs, args.seed)
        if args.vae_edge_runs:
            ours = [read_vae_edge_run(args.vae_edge_runs, latent, args.epochs, args.seed, args.validation)]
        else:
            ours = [
                run_vae_edge(data, latent, args.epochs, args.seed, p, args.validation) for p in precisions
            ]
        for o in ours:
            o["speedup"] = reference["seconds_per_epoch"] / o["seconds_per_epoch"]
            o["speed_goal_met"] = o["speedup"] >= SPEEDUP_GOAL
            o["elbo_not_worse"] = o["test_neg_elbo"] <= reference["test_neg_elbo"]
        runs[str(latent)] = [reference, *ours]
    report = {
        "epochs": args.epochs,
        "reference_batch_size": REFERENCE_BATCH,
        "seed": args.seed,
        "train_images": len(split.x_train),
        "validation_images": len(split.x_validation),
        "test_images": len(data.x_test),
        "platform": {"cpu": cpu_model(), "cores": os.cpu_count(), **provenance()["platform"]},
        "versions": provenance()["versions"],
        "runs": runs,
        "speedup_goal": SPEEDUP_GOAL,
    }
    write_json_atomic(out / "bench_train.json", report)
    md = bench_markdown(report)
    write_text_atomic(out / "bench_train.md", md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main(parse_args()))
