"""Training, evaluation and outputs of one VAE (a built-in of train/registry.py, or any VAEConfig).

Training objective: BCE summed over the 784 pixels + β·KL, averaged over the batch, with β warming up
from 0 to 1 over the first ``kl_warmup_epochs`` (so a latent dimension is not switched off before the
decoder has learned to use it). Every reported figure is the plain negative ELBO (β = 1).
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from runtime.data import Mnist
from runtime.fileio import atomic_path, write_json_atomic, write_text_atomic

from . import figures
from .loop import Trainer, TrainSettings, dtype_policy, history_csv, make_dataset
from .model import (
    VAEConfig,
    bce_sum_from_logits,
    bound_log_var,
    build_decoder,
    build_encoder,
    copy_weights,
    kl_marginal_per_dim,
    kl_terms_per_dim,
    log_normal_diag,
    log_normal_full,
    log_prior,
    reparameterize,
    study_sample,
)
from .optim import make_optimizer
from .provenance import provenance
from .runset import new_run_id, remove_stale_temporaries, run_set_record

EVAL_BATCH = 500
ACTIVE_UNIT_THRESHOLD = 0.01  # Burda et al. 2016: a unit is active when Var_x(E_q[z_u | x]) > 0.01


def _images(x_uint8):
    return tf.cast(x_uint8, tf.float32)[..., None] / 255.0


def posterior_sample(z_mean, z_log_var, eps, prior, posterior: str):
    """The training (and evaluation) sample: z = μ + σ ⊙ ε, or the study's z = μ + L ε."""
    if posterior == "study":
        return study_sample(z_mean, eps, prior)
    return reparameterize(z_mean, z_log_var, eps)


def make_step(
    cfg: VAEConfig,
    encoder,
    decoder_logits,
    optimizer,
    kl_warmup_steps: int,
    global_batch: int,
    posterior: str = "diagonal",
):
    prior = cfg.prior

    def step(x_uint8, seed):
        x = _images(x_uint8)
        replica = tf.distribute.get_replica_context().replica_id_in_sync_group
        seed = seed + tf.stack([tf.constant(0, tf.int64), tf.cast(replica, tf.int64) * 1_000_000])
        if kl_warmup_steps > 0:
            beta = tf.minimum(1.0, tf.cast(optimizer.iterations, tf.float32) / float(kl_warmup_steps))
        else:
            beta = tf.constant(1.0)
        with tf.GradientTape() as tape:
            z_mean, z_log_var = encoder(x, training=True)
            z_log_var = bound_log_var(z_log_var)
            eps = tf.random.stateless_normal(tf.shape(z_mean), seed=seed)
            z = posterior_sample(z_mean, z_log_var, eps, prior, posterior)
            bce = bce_sum_from_logits(x, decoder_logits(z, training=True))
            kl = tf.reduce_sum(kl_terms_per_dim(z_mean, z_log_var, prior), axis=1)
            objective = bce + beta * kl
            loss = tf.reduce_sum(objective) / global_batch
        variables = encoder.trainable_variables + decoder_logits.trainable_variables
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables, strict=True))
        return {
            "objective": tf.reduce_sum(objective),
            "bce": tf.reduce_sum(bce),
            "kl": tf.reduce_sum(kl),
            "neg_elbo": tf.reduce_sum(bce + kl),
            "beta": beta * tf.cast(tf.shape(x)[0], tf.float32),
            "count": tf.cast(tf.shape(x)[0], tf.float32),
        }

    return step


def make_eval_fn(cfg: VAEConfig, encoder, decoder_logits, posterior: str = "diagonal"):
    """A traced function: (uint8 images, seed) -> (BCE, KL per dim, z_mean, marginal KLs). Build it once per
    model. The sample is the one training used, so for ``posterior="study"`` the −ELBO is the study's bound."""
    prior = cfg.prior

    @tf.function(reduce_retracing=True)
    def batch_terms(xb, s):
        x = _images(xb)
        z_mean, z_log_var = encoder(x, training=False)
        z_log_var = bound_log_var(z_log_var)
        eps = tf.random.stateless_normal(tf.shape(z_mean), seed=s)
        z = posterior_sample(z_mean, z_log_var, eps, prior, posterior)
        bce = bce_sum_from_logits(x, decoder_logits(z, training=False))
        kl = kl_terms_per_dim(z_mean, z_log_var, prior)
        return bce, kl, z_mean, kl_marginal_per_dim(z_mean, z_log_var, prior)

    return batch_terms


@dataclass(frozen=True)
class SplitEvaluation:
    """One split's figures (one posterior sample per image, seeded): mean BCE, KL and negative ELBO per image,
    the KL per latent dimension (the joint KL's row split, and the true marginal KLs), the posterior means'
    variance per dimension and the count of active units."""

    split: str  # "test" | "validation"
    bce: float
    kl: float
    neg_elbo: float
    # The joint KL's row split (exactly the per-unit KL for Σ = I; for a correlated Σ, log det Σ shared
    # equally and the cross terms μᵢ(Σ⁻¹μ)ᵢ included, so one entry can be negative), and the true
    # marginal KLs KL(N(μᵢ, σᵢ²) ‖ N(0, Σᵢᵢ)), whose sum is not the joint KL when Σ is correlated.
    kl_per_dim: tuple[float, ...]
    kl_marginal_per_dim: tuple[float, ...]
    active_unit_variance: tuple[float, ...]
    active_units: int
    z_mean: np.ndarray  # (images, latent_dim) posterior means, for the latent figures; not in the JSON

    def losses(self, suffix: str = "") -> dict:
        """``<split>_bce``, ``<split>_kl``, ``<split>_neg_elbo`` (each + ``suffix``): the history's columns."""
        return {
            f"{self.split}_bce{suffix}": self.bce,
            f"{self.split}_kl{suffix}": self.kl,
            f"{self.split}_neg_elbo{suffix}": self.neg_elbo,
        }

    def to_json(self) -> dict:
        """The losses and the per-dimension figures, as metrics.json records them."""
        return {
            **self.losses(),
            "kl_per_dim": list(self.kl_per_dim),
            "kl_marginal_per_dim": list(self.kl_marginal_per_dim),
            "active_unit_variance": list(self.active_unit_variance),
            "active_units": self.active_units,
        }


def evaluate(batch_terms, x_test: np.ndarray, seed: int = 1234, split: str = "test") -> SplitEvaluation:
    """BCE, KL and negative ELBO per image of one split (one posterior sample, seeded), KL per dimension,
    posterior means and the active-unit variances."""
    bces, kls, means, marginals = [], [], [], []
    for i in range(0, len(x_test), EVAL_BATCH):
        bce, kl, mu, marginal = batch_terms(x_test[i : i + EVAL_BATCH], tf.constant([seed, i], tf.int64))
        bces.append(bce.numpy())
        kls.append(kl.numpy())
        means.append(mu.numpy())
        marginals.append(marginal.numpy())
    bce, kl, mu, marginal = (np.concatenate(a) for a in (bces, kls, means, marginals))
    kl_per_dim = kl.mean(axis=0)
    variance = mu.var(axis=0)
    return SplitEvaluation(
        split=split,
        bce=float(bce.mean()),
        kl=float(kl.sum(axis=1).mean()),
        neg_elbo=float((bce + kl.sum(axis=1)).mean()),
        kl_per_dim=tuple(float(v) for v in kl_per_dim),
        kl_marginal_per_dim=tuple(float(v) for v in marginal.mean(axis=0)),
        active_unit_variance=tuple(float(v) for v in variance),
        active_units=int((variance > ACTIVE_UNIT_THRESHOLD).sum()),
        z_mean=mu,
    )


def importance_weighted_nll(
    cfg: VAEConfig,
    encoder,
    decoder_logits,
    x_test: np.ndarray,
    samples: int = 100,
    seed: int = 4321,
    images_per_batch: int = 50,
    posterior: str = "diagonal",
) -> float:
    """−log p(x) estimated with K importance samples from q(z|x) (Burda et al. 2016), nats per image.

    log p(x) ≈ logsumexp_k [log p(x|z_k) + log p(z_k) − log q(z_k|x)] − log K; a lower bound that tightens
    with K, so this NLL is ≤ the single-sample negative ELBO up to noise.
    """
    prior = cfg.prior
    d = cfg.latent_dim

    @tf.function(reduce_retracing=True)
    def batch_nll(xb, s):
        x = _images(xb)
        n = tf.shape(x)[0]
        z_mean, z_log_var = encoder(x, training=False)
        z_log_var = bound_log_var(z_log_var)
        eps = tf.random.stateless_normal(tf.stack([samples, n, d]), seed=s)
        if posterior == "study":  # proposal q′ = N(μ, Σ), the posterior the study trained with
            z = study_sample(z_mean[None], eps, prior)  # (K, n, d)
            log_q = log_normal_full(z, z_mean[None], prior)
        else:
            z = z_mean[None] + tf.exp(0.5 * z_log_var)[None] * eps  # (K, n, d)
            log_q = log_normal_diag(z, z_mean[None], z_log_var[None])
        logits = decoder_logits(tf.reshape(z, (-1, d)), training=False)
        x_rep = tf.reshape(tf.broadcast_to(x[None], tf.concat([[samples], tf.shape(x)], 0)), (-1, 28, 28, 1))
        log_px_z = -tf.reshape(bce_sum_from_logits(x_rep, logits), (samples, n))
        log_w = log_px_z + log_prior(z, prior) - log_q
        return -(tf.reduce_logsumexp(log_w, axis=0) - math.log(samples))

    nll = [
        batch_nll(x_test[i : i + images_per_batch], tf.constant([seed, i], tf.int64)).numpy()
        for i in range(0, len(x_test), images_per_batch)
    ]
    return float(np.concatenate(nll).mean())


@contextlib.contextmanager
def averaged_weights(optimizer: keras.optimizers.Optimizer, variables: list):
    """Within the block the variables hold the optimizer's moving averages; the raw values come back after."""
    raw = [v.numpy() for v in variables]
    optimizer.finalize_variable_values(variables)
    try:
        yield
    finally:
        for v, value in zip(variables, raw, strict=True):
            v.assign(value)


def choose_weights(optimizer, variables: list, settings: TrainSettings, validation_neg_elbo) -> dict:
    """Leave the variables holding the weights the run keeps and say which, with the figures that chose.

    Without a moving average the raw weights stay. With one, the averaged weights are kept when their
    validation −ELBO (``validation_neg_elbo()``, evaluated on the current variables) is lower than the raw
    weights', or when there is no validation split to judge on.
    """
    if not settings.ema_decay:
        return {"weights": "raw"}
    if not settings.validation:
        optimizer.finalize_variable_values(variables)
        return {"weights": "ema", "weights_chosen_on": "no validation split: the average is kept"}
    raw_figure = validation_neg_elbo()
    with averaged_weights(optimizer, variables):
        ema_figure = validation_neg_elbo()
    if ema_figure < raw_figure:
        optimizer.finalize_variable_values(variables)
    return {
        "weights": "ema" if ema_figure < raw_figure else "raw",
        "weights_chosen_on": "validation_neg_elbo",
        "validation_neg_elbo_raw": raw_figure,
        "validation_neg_elbo_ema": ema_figure,
    }


def train_vae(
    cfg: VAEConfig,
    data: Mnist,
    out_dir: Path,
    settings: TrainSettings,
    *,
    strategy: tf.distribute.Strategy | None = None,
    resume: bool = False,
    progress: bool = True,
    figures_enabled: bool = True,
) -> dict:
    """Train ``cfg`` on MNIST and write every output under ``out_dir``; returns the metrics dict."""
    strategy = strategy or tf.distribute.get_strategy()
    remove_stale_temporaries(out_dir)
    iw_samples = settings.iw_samples
    keras.utils.set_random_seed(settings.seed)
    split = settings.split(data.x_train, data.y_train)
    x_train, x_val = split.x_train, split.x_validation
    x_test = data.x_test[: settings.test_limit]
    global_batch = settings.batch_size
    steps_per_epoch = len(x_train) // global_batch
    policy = dtype_policy(settings.precision)
    with strategy.scope():
        encoder = build_encoder(cfg, dtype_policy=policy)
        decoder_logits = build_decoder(cfg, dtype_policy=policy, logits=True)
        optimizer = make_optimizer(settings, steps_per_epoch)
    step = make_step(
        cfg,
        encoder,
        decoder_logits,
        optimizer,
        int(settings.kl_warmup_epochs * steps_per_epoch),
        global_batch,
        settings.posterior,
    )
    trainer = Trainer(
        name=cfg.name,
        models={"encoder": encoder, "decoder": decoder_logits},
        optimizer=optimizer,
        step_fn=step,
        settings=settings,
        out_dir=out_dir,
        strategy=strategy,
        progress=progress,
        model_config=cfg.to_json(),
    )
    if resume and trainer.load_checkpoint() and progress:
        print(f"{cfg.name}: resuming after epoch {trainer.start_epoch} from {trainer.checkpoint_path}")

    eval_fn = make_eval_fn(cfg, encoder, decoder_logits, settings.posterior)
    variables = trainer.trainable_variables

    def validation_row(suffix=""):
        return evaluate(eval_fn, x_val, seed=settings.seed + 1, split="validation").losses(suffix)

    def end_of_epoch(epoch):
        # The curves and every choice use the validation split; the test split is evaluated once, below.
        if not len(x_val):
            return {}
        row = validation_row()
        if settings.ema_decay:
            with averaged_weights(optimizer, variables):
                row.update(validation_row("_ema"))
        return row

    history = trainer.run(
        lambda a, b: make_dataset(x_train, None, global_batch, settings.seed, a, b),
        steps_per_epoch,
        end_of_epoch,
    )

    kept = choose_weights(optimizer, variables, settings, lambda: validation_row()["validation_neg_elbo"])
    # Final models in float32 whatever the training precision: that is what gets evaluated and exported.
    encoder32 = copy_weights(encoder, build_encoder(cfg))
    decoder32 = copy_weights(decoder_logits, build_decoder(cfg))
    decoder32_logits = keras.Model(decoder32.input, decoder32.get_layer("dec_logits").output)
    final_eval = make_eval_fn(cfg, encoder32, decoder32_logits, settings.posterior)
    test = evaluate(final_eval, x_test, seed=settings.seed + 1)
    z_mean = test.z_mean
    validation = {}
    if len(x_val):
        validation = evaluate(final_eval, x_val, seed=settings.seed + 1, split="validation").losses()
    metrics = {
        "model": cfg.name,
        "posterior": settings.posterior,
        "epochs_trained": len(history),
        **kept,
        **test.to_json(),
        **validation,
        # iw_samples=0 skips the estimate (the training benchmark needs only the ELBO).
        "test_iw_nll": importance_weighted_nll(
            cfg,
            encoder32,
            decoder32_logits,
            x_test,
            samples=iw_samples,
            seed=settings.seed + 2,
            posterior=settings.posterior,
        )
        if iw_samples
        else None,
        "iw_samples": iw_samples,
        "train_images": len(x_train),
        "validation_images": len(x_val),
        "test_images": len(x_test),
        "units": "nats per image",
    }
    if history:
        metrics["mean_train_seconds_per_epoch"] = float(np.mean([r["train_seconds"] for r in history]))
    write_outputs(cfg, out_dir, encoder32, decoder32, settings, data, history, metrics)
    if figures_enabled:
        figures.vae_figures(cfg, decoder32, z_mean, data.y_test[: len(x_test)], history, out_dir)
    return metrics


def save_keras_atomic(model: keras.Model, path: Path) -> None:
    with atomic_path(path, suffix=".keras") as tmp:
        model.save(tmp)


def write_outputs(cfg, out_dir, encoder, decoder, settings, data, history, metrics) -> None:
    publish_run(
        out_dir,
        {"encoder.keras": encoder, "decoder.keras": decoder},
        cfg,
        settings,
        data,
        history,
        metrics,
    )


def publish_run(out_dir: Path, models: dict, cfg, settings, data, history, metrics, **extra) -> str:
    """Write the model files, then config.json, history.csv and metrics.json (last) as one run set.

    config.json and metrics.json carry the same run id and the sha256 of each model file
    (train/runset.py), so a folder left mixed by a kill between two writes is refused by verify_run_set.
    Adds ``run_id`` to ``metrics`` and returns it.
    """
    out_dir = Path(out_dir)
    run_id = new_run_id()
    for name, model in models.items():
        save_keras_atomic(model, out_dir / name)
    run_set = run_set_record(out_dir, run_id, tuple(models))
    metrics["run_id"] = run_id
    write_run_record(out_dir, cfg, settings, data, history, {**metrics, "run_set": run_set}, run_set, **extra)
    return run_id


def write_run_record(out_dir: Path, cfg, settings, data, history, metrics, run_set: dict, **extra) -> None:
    """config.json (run set, model, training settings, data provenance, library versions), history.csv, then
    metrics.json, written last: it completes the run set."""
    out_dir = Path(out_dir)
    write_json_atomic(
        out_dir / "config.json",
        {
            "run_set": run_set,
            "model": cfg.to_json(),
            "training": settings.to_json(),
            "data": {
                "source": data.source,
                "sha256": data.sha256,
                "train_images": len(data.x_train[: settings.train_limit]) - settings.validation,
                "validation_images": settings.validation,
                "validation_split": "seeded by training.seed (train/settings.py TrainSettings.split)",
                "test_images": len(data.x_test[: settings.test_limit]),
            },
            **extra,
            **provenance(),
        },
    )
    write_text_atomic(out_dir / "history.csv", history_csv(history))
    write_json_atomic(out_dir / "metrics.json", metrics)
