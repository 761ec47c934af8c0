"""Training levers measured one at a time, three seeds each, on the validation split, on the JAX backend (a GPU).

    KERAS_BACKEND=jax python -m tools.lever_sweep --data mnist.npz --out reports --workers 8
    python -m tools.lever_sweep --levers baseline,batch_64 --seeds 0 --epochs 1 --train-limit 2048  # smoke run

Why a second loop: one 30-epoch run of ``python -m train`` takes ~10 minutes on a 2-core CPU, so eleven levers ×
three seeds do not fit beside the training table; on one GPU this sweep takes minutes. It is not a second model:
the encoder and decoder are ``train/model.py``'s builders, the loss terms its ``keras.ops`` functions (soft-clamped
log σ², logits-form BCE, closed-form KL against N(0, Σ), the diagonal or the study's sample), the optimizer and
schedule ``train/optim.py``'s, the split ``TrainSettings.split``, the data order ``train/loop.py``'s seeded
permutations, β's warm-up the same. What differs: the step is a jitted JAX function over Keras's stateless calls
instead of a ``tf.function``, and the noise comes from JAX's generator, so a figure here differs from
``python -m train``'s by seed noise, not by method.

Each lever is its model's defaults (``train.settings.model_defaults``: what ``python -m train`` uses) with one
setting changed.
Every run reports the validation −ELBO of its raw weights and of their moving average, and the kept one (the
lower, as ``python -m train`` chooses); the test split is evaluated only for the two posteriors of vae2d_corr
(``study`` lever: the study's z = μ + L ε against vae-edge's diagonal sample), whose test −ELBO and IW-NLL the
README and docs/correlated_prior.md cite. Writes ``<out>/lever_sweep.json`` and ``<out>/lever_sweep.md``.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import replace
from multiprocessing import get_context
from pathlib import Path

from runtime.cli import cli_main, comma_list, int_at_least, parser
from runtime.errors import VaeEdgeError
from runtime.fileio import ensure_writable_dir, write_json_atomic, write_text_atomic

# name -> (model, TrainSettings changes, what it tests). "baseline" is vae2d's defaults unchanged; every lever
# starts from its model's defaults (train.settings.model_defaults: vae3d's batch size is its own).
LEVERS: dict[str, tuple[str, dict, str]] = {
    "baseline": ("vae2d", {}, "the defaults of python -m train"),
    "lr_1e-3": ("vae2d", {"learning_rate": 1e-3}, "the earlier peak learning rate"),
    "lr_5e-3": ("vae2d", {"learning_rate": 5e-3}, "a higher peak learning rate"),
    "batch_64": ("vae2d", {"batch_size": 64}, "twice the updates per epoch"),
    "batch_256": ("vae2d", {"batch_size": 256}, "half the updates per epoch"),
    "kl_warmup_0": ("vae2d", {"kl_warmup_epochs": 0.0}, "no KL warm-up"),
    "kl_warmup_10": ("vae2d", {"kl_warmup_epochs": 10.0}, "a longer KL warm-up"),
    "beta2_0.999": ("vae2d", {"adam_beta_2": 0.999}, "Adam's β₂ 0.999 (Keras's) instead of 0.99"),
    "beta2_0.9999": ("vae2d", {"adam_beta_2": 0.9999}, "Adam's β₂ 0.9999"),
    "epsilon_1e-4": ("vae2d", {"adam_epsilon": 1e-4}, "Adam's ε 1e-4 instead of 1e-7"),
    "ema_0.9998": ("vae2d", {"ema_decay": 0.9998}, "a slower weight average"),
    "vae3d": ("vae3d", {}, "vae3d, the defaults"),
    "vae3d_beta2_0.999": ("vae3d", {"adam_beta_2": 0.999}, "vae3d, Adam's β₂ 0.999"),
    "corr_beta2_0.999": ("vae2d_corr", {"adam_beta_2": 0.999}, "vae2d_corr, Adam's β₂ 0.999"),
    "corr_diagonal": ("vae2d_corr", {}, "vae2d_corr, vae-edge's sample z = μ + σ ⊙ ε"),
    "corr_study": ("vae2d_corr", {"posterior": "study"}, "vae2d_corr, the study's sample z = μ + L ε"),
}
BASELINE_OF = {
    "vae2d": "baseline",
    "vae3d": "vae3d",
    "vae2d_corr": "corr_diagonal",
}  # Δ is taken against these
TEST_EVALUATED = ("corr_diagonal", "corr_study")  # the only runs whose test split is evaluated
EVAL_BATCH = 500


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = parser("python -m tools.lever_sweep", __doc__)
    p.add_argument(
        "--data", default=os.environ.get("VAE_EDGE_MNIST"), help="MNIST .npz (default $VAE_EDGE_MNIST)"
    )
    p.add_argument("--out", default="reports", help="report folder (default reports/)")
    p.add_argument(
        "--levers",
        type=comma_list(str, tuple(LEVERS)),
        default=list(LEVERS),
        help="comma list of levers (default: all): " + ", ".join(LEVERS),
    )
    p.add_argument("--seeds", type=comma_list(int_at_least(0)), default=[0, 1, 2], help="default 0,1,2")
    p.add_argument("--epochs", type=int_at_least(1), default=None, help="default: TrainSettings' (30)")
    p.add_argument("--train-limit", type=int_at_least(1), default=None, help="first N training images")
    p.add_argument("--test-limit", type=int_at_least(1), default=None, help="first N test images")
    p.add_argument(
        "--validation", type=int_at_least(0), default=None, help="held-out training images (default 5000)"
    )
    p.add_argument(
        "--iw-samples", type=int_at_least(0), default=100, help="K of the test IW-NLL (default 100)"
    )
    p.add_argument(
        "--matmul-precision",
        choices=("highest", "default"),
        default="highest",
        help="JAX's float32 matmul/convolution precision: highest (true float32, default) or default (TF32 on "
        "recent NVIDIA GPUs, as the first sweeps ran)",
    )
    p.add_argument("--workers", type=int_at_least(1), default=1, help="runs at a time, one process each")
    return p.parse_args(argv)


def settings_of(lever: str, seed: int, args: argparse.Namespace):
    """The lever's TrainSettings: its model's defaults (as python -m train gives them) with its changes."""
    from train.settings import TrainSettings, model_defaults

    model = LEVERS[lever][0]
    base = {
        **model_defaults(model),
        "seed": seed,
        "train_limit": args.train_limit,
        "test_limit": args.test_limit,
    }
    if args.epochs:
        base["epochs"] = args.epochs
    if args.validation is not None:
        base["validation"] = args.validation
    return replace(TrainSettings(**base), **LEVERS[lever][1])


def run_one(lever: str, seed: int, args: argparse.Namespace) -> dict:
    """:func:`train_one`, with a failure returned as an error row (some exceptions do not pickle back)."""
    try:
        return train_one(lever, seed, args)
    except Exception as exc:
        return {"lever": lever, "seed": seed, "error": f"{type(exc).__name__}: {exc}"}


def train_one(lever: str, seed: int, args: argparse.Namespace) -> dict:
    """Train one (lever, seed) and evaluate it; runs in a worker process with the JAX backend."""
    os.environ["KERAS_BACKEND"] = "jax"
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    import jax
    import jax.numpy as jnp
    import keras
    import numpy as np

    from runtime.data import load_mnist
    from train.model import (
        PRESETS,
        bce_sum_from_logits,
        bound_log_var,
        build_decoder,
        build_encoder,
        kl_terms_per_dim,
        log_normal_diag,
        log_normal_full,
        log_prior,
        reparameterize,
        study_sample,
    )
    from train.optim import make_optimizer

    if keras.backend.backend() != "jax":
        raise RuntimeError("set KERAS_BACKEND=jax before anything imports keras")
    # Full float32 products, as the CPU computes them: on an NVIDIA GPU, JAX's default precision may run float32
    # matmuls and convolutions with TF32 products (10-bit mantissas). The first sweeps (docs/levers.md) ran with that default, and
    # their β₂ result did not carry over to TensorFlow on the CPU.
    jax.config.update("jax_default_matmul_precision", args.matmul_precision)
    t0 = time.perf_counter()
    cfg = PRESETS[LEVERS[lever][0]]
    s = settings_of(lever, seed, args)
    data = load_mnist(args.data)
    split = s.split(data.x_train, data.y_train)
    x_train, x_val = split.x_train, split.x_validation
    x_test = data.x_test[: s.test_limit]
    steps = len(x_train) // s.batch_size
    keras.utils.set_random_seed(s.seed)
    encoder, decoder = build_encoder(cfg), build_decoder(cfg, logits=True)
    optimizer = make_optimizer(s, steps)
    variables = encoder.trainable_variables + decoder.trainable_variables
    optimizer.build(variables)
    n_enc = len(encoder.trainable_variables)
    prior = cfg.prior
    warmup_steps = int(s.kl_warmup_epochs * steps)

    def images(xb):
        return jnp.asarray(xb, jnp.float32)[..., None] / 255.0

    def terms(tv, x, eps, posterior):
        (z_mean, z_log_var), _ = encoder.stateless_call(tv[:n_enc], [], x)
        z_log_var = bound_log_var(z_log_var)
        z = (
            study_sample(z_mean, eps, prior)
            if posterior == "study"
            else reparameterize(z_mean, z_log_var, eps)
        )
        logits, _ = decoder.stateless_call(tv[n_enc:], [], z)
        return bce_sum_from_logits(x, logits), jnp.sum(kl_terms_per_dim(z_mean, z_log_var, prior), axis=1)

    def loss(tv, x, eps, beta):
        bce, kl = terms(tv, x, eps, s.posterior)
        return jnp.sum(bce + beta * kl) / s.batch_size, jnp.sum(bce + kl)

    grad = jax.value_and_grad(loss, has_aux=True)
    x_dev = jnp.asarray(x_train)
    key = jax.random.key(s.seed)

    @jax.jit
    def epoch_fn(tv, ov, order, first_step):
        def body(i, carry):
            tv, ov, total = carry
            step = first_step + i
            x = images(x_dev[order[i]])
            eps = jax.random.normal(jax.random.fold_in(key, step), (s.batch_size, cfg.latent_dim))
            beta = jnp.minimum(1.0, step / warmup_steps) if warmup_steps else 1.0
            (_, neg_elbo), g = grad(tv, x, eps, beta)
            tv, ov = optimizer.stateless_apply(ov, g, tv)
            return tv, ov, total + neg_elbo

        return jax.lax.fori_loop(0, order.shape[0], body, (tv, ov, 0.0))

    @jax.jit
    def eval_batch(tv, xb, k):
        x = images(xb)
        eps = jax.random.normal(k, (x.shape[0], cfg.latent_dim))
        bce, kl = terms(tv, x, eps, s.posterior)
        return jnp.sum(bce + kl)

    def neg_elbo(tv, x_split, tag):
        total = 0.0
        for i in range(0, len(x_split), EVAL_BATCH):
            k = jax.random.fold_in(jax.random.key(s.seed + 1), tag * 1_000_000 + i)
            total += float(eval_batch(tv, x_split[i : i + EVAL_BATCH], k))
        return total / len(x_split)

    @jax.jit
    def iw_batch(tv, xb, k):
        x = images(xb)
        n, d = x.shape[0], cfg.latent_dim
        (z_mean, z_log_var), _ = encoder.stateless_call(tv[:n_enc], [], x)
        z_log_var = bound_log_var(z_log_var)
        eps = jax.random.normal(k, (args.iw_samples, n, d))
        if s.posterior == "study":
            z = study_sample(z_mean[None], eps, prior)
            log_q = log_normal_full(z, z_mean[None], prior)
        else:
            z = z_mean[None] + jnp.exp(0.5 * z_log_var)[None] * eps
            log_q = log_normal_diag(z, z_mean[None], z_log_var[None])
        logits, _ = decoder.stateless_call(tv[n_enc:], [], z.reshape(-1, d))
        x_rep = jnp.broadcast_to(x[None], (args.iw_samples, *x.shape)).reshape(-1, 28, 28, 1)
        log_w = -bce_sum_from_logits(x_rep, logits).reshape(args.iw_samples, n) + log_prior(z, prior) - log_q
        return -jnp.sum(jax.scipy.special.logsumexp(log_w, axis=0) - math.log(args.iw_samples))

    tv = [v.value for v in variables]
    ov = [v.value for v in optimizer.variables]
    curve = []
    for epoch in range(s.epochs):
        order = np.random.default_rng([s.seed, epoch]).permutation(len(x_train))[: steps * s.batch_size]
        tv, ov, total = epoch_fn(tv, ov, jnp.asarray(order.reshape(steps, s.batch_size)), epoch * steps)
        curve.append(float(total) / (steps * s.batch_size))
        if not math.isfinite(curve[-1]):
            return {"lever": lever, "seed": seed, "error": f"loss not finite in epoch {epoch + 1}"}
    position = {id(v): i for i, v in enumerate(optimizer.variables)}
    averages = getattr(optimizer, "_model_variables_moving_average", None) if s.ema_decay else None
    ema_tv = [ov[position[id(a)]] for a in averages] if averages else None
    row = {
        "lever": lever,
        "seed": seed,
        "model": cfg.name,
        "settings": s.to_json(),
        "train_neg_elbo_last_epoch": curve[-1],
        "train_curve": curve,
        "validation_neg_elbo_raw": neg_elbo(tv, x_val, 1),
    }
    row["validation_neg_elbo_ema"] = neg_elbo(ema_tv, x_val, 1) if ema_tv else None
    use_ema = ema_tv is not None and row["validation_neg_elbo_ema"] < row["validation_neg_elbo_raw"]
    row["weights"] = "ema" if use_ema else "raw"
    kept = ema_tv if use_ema else tv
    row["validation_neg_elbo"] = min(
        v for v in (row["validation_neg_elbo_raw"], row["validation_neg_elbo_ema"]) if v
    )
    if lever in TEST_EVALUATED:
        row["test_neg_elbo"] = neg_elbo(kept, x_test, 2)
        if args.iw_samples:
            total = 0.0
            for i in range(0, len(x_test), 50):
                k = jax.random.fold_in(jax.random.key(s.seed + 2), i)
                total += float(iw_batch(kept, x_test[i : i + 50], k))
            row["test_iw_nll"] = total / len(x_test)
    row["seconds"] = time.perf_counter() - t0
    row["device"] = str(jax.devices()[0])
    return row


def summarise(rows: list[dict], levers: list[str]) -> dict:
    def stats(values):
        mean = sum(values) / len(values)
        sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
        return {"mean": mean, "sd": sd, "values": values}

    out = {}
    for lever in levers:
        done = sorted((r for r in rows if r["lever"] == lever and "error" not in r), key=lambda r: r["seed"])
        if not done:
            continue
        entry = {"model": LEVERS[lever][0], "changes": LEVERS[lever][1], "what": LEVERS[lever][2]}
        entry["seeds"] = [r["seed"] for r in done]
        for figure in (
            "validation_neg_elbo",
            "validation_neg_elbo_raw",
            "validation_neg_elbo_ema",
            "test_neg_elbo",
            "test_iw_nll",
        ):
            values = [r[figure] for r in done if isinstance(r.get(figure), float)]
            if len(values) == len(done):
                entry[figure] = stats(values)
        entry["weights_kept"] = [r["weights"] for r in done]
        out[lever] = entry
    for entry in out.values():
        base = out.get(BASELINE_OF[entry["model"]])
        if base and "validation_neg_elbo" in entry and "validation_neg_elbo" in base:
            paired = [
                v - base["validation_neg_elbo"]["values"][base["seeds"].index(seed)]
                for seed, v in zip(entry["seeds"], entry["validation_neg_elbo"]["values"], strict=True)
                if seed in base["seeds"]
            ]
            entry["delta_vs_baseline"] = stats(paired) if paired else None
    return out


def markdown(report: dict) -> str:
    def cell(fig):
        return "—" if not fig else f"{fig['mean']:.2f} ± {fig['sd']:.2f}"

    lines = [
        "# Training levers, one at a time (validation split)",
        "",
        f"`{report['command']}` on {report['device']}; seeds {report['seeds']}, {report['epochs']} epochs, "
        "JAX backend (tools/lever_sweep.py: train/'s model, losses, optimizer and split; JAX's noise). "
        "Validation −ELBO of the kept weights (raw or moving average, the lower), mean ± sd over seeds; "
        "Δ is paired by seed against the same model's baseline ("
        + ", ".join(f"{m}: {b}" for m, b in BASELINE_OF.items())
        + "; negative is better). Nats per image.",
        "",
        "| lever | model | what | validation −ELBO | Δ vs baseline | raw | moving average | kept |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for lever, e in report["levers"].items():
        lines.append(
            f"| {lever} | {e['model']} | {e['what']} | {cell(e.get('validation_neg_elbo'))} | {cell(e.get('delta_vs_baseline'))} | "
            f"{cell(e.get('validation_neg_elbo_raw'))} | {cell(e.get('validation_neg_elbo_ema'))} | "
            f"{', '.join(e['weights_kept'])} |"
        )
    corr = [lever for lever in TEST_EVALUATED if lever in report["levers"]]
    if corr:
        lines += [
            "",
            "## The study's sample against vae-edge's (vae2d_corr, test split evaluated once per run)",
            "",
            "| run | validation −ELBO | test −ELBO | test IW-NLL |",
            "|---|---|---|---|",
        ]
        for lever in corr:
            e = report["levers"][lever]
            lines.append(
                f"| {lever} ({e['what']}) | {cell(e.get('validation_neg_elbo'))} | {cell(e.get('test_neg_elbo'))} | "
                f"{cell(e.get('test_iw_nll'))} |"
            )
    if report["failed"]:
        lines += [
            "",
            "Failed runs: "
            + "; ".join(f"{r['lever']} seed {r['seed']}: {r['error']}" for r in report["failed"]),
        ]
    return "\n".join(lines) + "\n"


@cli_main
def main(args: argparse.Namespace) -> int:
    import importlib.util

    from runtime.data import load_mnist

    if importlib.util.find_spec("jax") is None:
        raise VaeEdgeError(
            "the lever sweep trains on the JAX backend and JAX is not installed; install it (pip install "
            "'jax[cuda12]' on a GPU machine) and run with KERAS_BACKEND=jax"
        )
    load_mnist(args.data)  # a missing data file is one line here, not one per worker
    out = ensure_writable_dir(args.out)
    jobs = [(lever, seed) for lever in args.levers for seed in args.seeds]
    rows, t0 = [], time.perf_counter()

    def record(lever, seed, result):
        try:
            row = result()
        except Exception as exc:  # one failed run is reported, the others still count
            row = {"lever": lever, "seed": seed, "error": f"{type(exc).__name__}: {exc}"}
        rows.append(row)
        write_report(args, rows, out, time.perf_counter() - t0)
        shown = (
            row.get("error") or f"validation −ELBO {row['validation_neg_elbo']:.2f} ({row['seconds']:.0f} s)"
        )
        print(f"[{len(rows)}/{len(jobs)}] {lever} seed {seed}: {shown}", flush=True)

    if args.workers == 1:
        for lever, seed in jobs:
            record(lever, seed, lambda lever=lever, seed=seed: run_one(lever, seed, args))
    else:
        with ProcessPoolExecutor(args.workers, mp_context=get_context("spawn")) as pool:
            futures = {pool.submit(run_one, lever, seed, args): (lever, seed) for lever, seed in jobs}
            for future in as_completed(futures):
                record(*futures[future], future.result)
    report = write_report(args, rows, out, time.perf_counter() - t0)
    print(markdown(report))
    return 0 if len(rows) == len(jobs) and not report["failed"] else 1


def write_report(args: argparse.Namespace, rows: list[dict], out: Path, seconds: float) -> dict:
    """lever_sweep.{json,md} of the runs done so far (written after every run: a cut-off sweep keeps them)."""
    good = [r for r in rows if "error" not in r]
    report = {
        "command": "python -m tools.lever_sweep " + " ".join(sys.argv[1:]),
        "device": good[0]["device"] if good else "none",
        "matmul_precision": args.matmul_precision,
        "seeds": args.seeds,
        "epochs": settings_of("baseline", 0, args).epochs,
        "seconds": seconds,
        "levers": summarise(rows, args.levers),
        "failed": [r for r in rows if "error" in r],
        "runs": rows,
    }
    write_json_atomic(Path(out) / "lever_sweep.json", report)
    write_text_atomic(Path(out) / "lever_sweep.md", markdown(report))
    return report


if __name__ == "__main__":
    sys.exit(main(parse_args()))
