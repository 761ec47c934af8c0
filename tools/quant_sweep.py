"""int8 calibration levers measured on the validation split: how export sets the int8 decoder's ranges.

    python -m tools.quant_sweep --artifacts artifacts --data ../shared/data/mnist.npz --reports reports
    python -m tools.quant_sweep --models vae2d --ranges minmax,mse --latent-clips 3 --samples 2000   # quick look

For each trained VAE in --artifacts (its decoder.keras, encoder.keras, config.json; the classifier's
classifier.keras) and each lever: the int8 decoder converted as export converts it (transposed graph, int8 I/O,
static batch 64, calibrated on the encoder's posterior of 5,000 training images, logits clipped to ±LOGIT_CLIP,
the LOGISTIC removed), then
- digit agreement: the classifier's digit on the int8 decoder's image against the float decoder's, on
  ``--samples`` prior latents (seed 7: not the seed ``runtime check`` uses);
- Δ−ELBO: the int8 decoder's −ELBO minus the float decoder's on the model's validation split (the training
  images its run held out, seeded by its training seed), the float encoder's posterior sample feeding both.
The test split is never read: export's choice is made here. Levers: the activation-range method
(export/calibrate.py: ``minmax`` is the converter's, ``mse`` the least-error clip per hidden activation), the
latent clip of the calibration latents, which sets the int8 input's range, and the split latent's radix
(export/latent_split.py; 1: one int8 per dimension). Writes
<reports>/quant_sweep.{json,md}.
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
from pathlib import Path

import numpy as np

from export.calibrate import RangeMethod
from runtime.cli import cli_main, comma_list, int_at_least, parser
from runtime.errors import VaeEdgeError
from runtime.fileio import ensure_writable_dir, write_json_atomic, write_text_atomic
from runtime.latent import LatentSplit

MODELS = ("vae2d", "vae3d", "vae2d_corr")
BATCH = 64
AGREEMENT_SEED = 7


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = parser("python -m tools.quant_sweep", __doc__)
    p.add_argument("--artifacts", default="artifacts", help="trained models (default artifacts/)")
    p.add_argument(
        "--data", default=os.environ.get("VAE_EDGE_MNIST"), help="MNIST .npz (default $VAE_EDGE_MNIST)"
    )
    p.add_argument("--reports", default="reports", help="report folder (default reports/)")
    p.add_argument(
        "--models", type=comma_list(str, MODELS), default=list(MODELS), help="comma list (default: all three)"
    )
    p.add_argument(
        "--ranges",
        type=comma_list(str, tuple(RangeMethod)),
        default=["minmax", "mse", "p99", "p99.9", "p99.99"],
        help="activation-range methods, comma list of "
        + ", ".join(RangeMethod)
        + " (default minmax,mse,p99,p99.9,p99.99)",
    )
    p.add_argument(
        "--weights",
        type=comma_list(str, ("tensor", "channel")),
        default=["tensor", "channel"],
        help="convolution weight scales per tensor or per output channel (default tensor,channel)",
    )
    p.add_argument(
        "--latent-clips",
        type=comma_list(float),
        default=[2.5, 3.0, 3.5],
        help="calibration latent clips (default 2.5,3,3.5)",
    )
    p.add_argument(
        "--latent-splits",
        type=comma_list(int),
        default=[1],
        help="latent input radices: 1 feeds the int8 latent as is; R > 1 feeds it as two int8 digits per latent "
        "(the int8 grid point and R times the remainder), a step R times finer (default 1)",
    )
    p.add_argument(
        "--samples", type=int_at_least(BATCH), default=10_000, help="prior samples (default 10000)"
    )
    return p.parse_args(argv)


def run_int8(model: bytes, z: np.ndarray, radix: int = 1) -> np.ndarray:
    """float logits of an int8-I/O decoder (TFLite's builtin kernels; the figures are task-level)."""
    import tensorflow as tf

    interp = tf.lite.Interpreter(model_content=model, num_threads=2)
    interp.allocate_tensors()
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    (s_in, zp_in), (s_out, zp_out) = inp["quantization"], out["quantization"]
    logits = []
    if radix > 1:
        q_all = LatentSplit(radix, s_in, zp_in).quantize(z)
    else:
        q_all = np.clip(np.round(z / s_in) + zp_in, -128, 127).astype(np.int8)
    for i in range(0, len(z) - BATCH + 1, BATCH):
        q = q_all[i : i + BATCH]
        interp.set_tensor(inp["index"], q)
        interp.invoke()
        logits.append((interp.get_tensor(out["index"]).astype(np.float64) - zp_out) * s_out)
    return np.concatenate(logits).reshape(-1, 28 * 28)


def sweep_model(args, name: str, classifier, mnist) -> list[dict]:
    from export import calibrate, convert
    from export.latent_split import split_calibration, split_latent_model
    from export.pipeline import calibration_latents, load_config, load_keras
    from runtime.quality import bce_per_image_from_logits, kl_per_image
    from train.model import build_decoder, build_encoder, copy_weights
    from train.settings import TrainSettings

    model_dir = Path(args.artifacts) / name
    cfg = load_config(model_dir, name)
    decoder = load_keras(model_dir / "decoder.keras", name, lambda: build_decoder(cfg))
    encoder = load_keras(model_dir / "encoder.keras", name, lambda: build_encoder(cfg))
    logits_model = copy_weights(decoder, build_decoder(cfg, logits=True))
    static = copy_weights(decoder, build_decoder(cfg, batch_size=BATCH))
    import json

    settings = TrainSettings.from_json(json.loads((model_dir / "config.json").read_text())["training"])
    x_val = settings.split(mnist.x_train, mnist.y_train).x_validation.astype(np.float32) / 255.0
    x_val = x_val[: len(x_val) // BATCH * BATCH]

    z = cfg.prior.sample(args.samples // BATCH * BATCH, seed=AGREEMENT_SEED)
    float_digits = classify(classifier, sigmoid(logits_model.predict(z, batch_size=500, verbose=0)))
    mu, log_var = (np.asarray(a) for a in encoder.predict(x_val[..., None], batch_size=500, verbose=0))
    eps = np.random.default_rng(AGREEMENT_SEED + 1).standard_normal(mu.shape)
    z_post = (mu + np.exp(0.5 * log_var) * eps).astype(np.float32)
    kl = kl_per_image(mu, log_var, cfg.prior.sigma)
    x_flat = x_val.reshape(len(x_val), -1)
    float_elbo = float(
        np.mean(
            bce_per_image_from_logits(x_flat, logits_model.predict(z_post, batch_size=500, verbose=0)) + kl
        )
    )

    rows = []
    for clip in args.latent_clips:
        calibration = calibration_latents(
            source="posterior",
            prior=cfg.prior,
            samples=5000,
            seed=0,
            encoder=encoder,
            data=args.data,
            latent_clip=clip,
        ).latents
        for method, weights, radix in itertools.product(args.ranges, args.weights, args.latent_splits):
            model, calib = static, calibration
            if radix > 1:
                model, calib = split_latent_model(static, radix), split_calibration(calib, radix)
            tflite = convert.int8_decoder_head(
                convert.to_tflite(
                    model,
                    "int8",
                    "int8",
                    calib,
                    ranges=calibrate.RangeMethod(method),
                    per_channel=weights == "channel",
                ),
                "int8",
            )
            digits = classify(classifier, sigmoid(run_int8(tflite, z, radix)))
            q_elbo = float(np.mean(bce_per_image_from_logits(x_flat, run_int8(tflite, z_post, radix)) + kl))
            row = {
                "model": name,
                "ranges": method,
                "weights": weights,
                "latent_clip": clip,
                "latent_split": radix,
                "digit_agreement": float((digits == float_digits).mean()),
                "neg_elbo_delta": q_elbo - float_elbo,
                "float_neg_elbo": float_elbo,
                "samples": len(z),
                "validation_images": len(x_val),
            }
            print(
                f"{name} ranges={method} weights={weights} clip={clip:g} split={radix}: agreement {row['digit_agreement']:.4f}, "
                f"Δ−ELBO {row['neg_elbo_delta']:+.3f} nat",
                flush=True,
            )
            rows.append(row)
    return rows


def sigmoid(logits) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(logits, np.float64)))


def classify(classifier, images: np.ndarray) -> np.ndarray:
    x = images.reshape(-1, 28, 28, 1).astype(np.float32)
    logits, _ = classifier.predict(x, batch_size=500, verbose=0)
    return np.asarray(logits).argmax(1)


def markdown(rows: list[dict]) -> str:
    lines = [
        "# int8 calibration levers (validation split)",
        "",
        "Command: `python -m tools.quant_sweep` (see its docstring). Agreement on prior samples (seed 7),",
        "Δ−ELBO on each model's validation split; the int8 decoder as export converts it.",
        "",
        "| model | ranges | weight scales | latent clip | latent split | digit agreement | Δ−ELBO (nat) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['ranges']} | per {r['weights']} | ±{r['latent_clip']:g} | {r.get('latent_split', 1)} | {100 * r['digit_agreement']:.2f} % "
            f"| {r['neg_elbo_delta']:+.3f} |"
        )
    return "\n".join(lines) + "\n"


@cli_main
def main(args: argparse.Namespace) -> int:
    import keras

    from runtime.data import load_mnist

    reports = ensure_writable_dir(args.reports)
    clf_path = Path(args.artifacts) / "classifier" / "classifier.keras"
    if not clf_path.is_file():
        raise VaeEdgeError(f"no classifier at {clf_path}; train it: python -m train --model classifier")
    missing = [m for m in args.models if not (Path(args.artifacts) / m / "decoder.keras").is_file()]
    if missing:
        raise VaeEdgeError(
            f"not trained in {args.artifacts}: {', '.join(missing)}; python -m train --model NAME"
        )
    classifier = keras.models.load_model(clf_path, safe_mode=True, compile=False)
    mnist = load_mnist(args.data)
    rows = [row for name in args.models for row in sweep_model(args, name, classifier, mnist)]
    write_json_atomic(reports / "quant_sweep.json", {"rows": rows})
    write_text_atomic(reports / "quant_sweep.md", markdown(rows))
    print(f"wrote {reports / 'quant_sweep.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(parse_args()))
