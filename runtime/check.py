"""Quality check: every quantized decoder against its float32 decoder on the same prior samples.

    python -m runtime check --artifacts artifacts --data ../shared/data/mnist.npz --samples 10000

For each VAE and each quantized decoder (float16, dynamic-range int8, int8; TFLite and ONNX; both graphs and
batches): pixel mean/max abs error and PSNR against the float32 TFLite decoder; digit agreement of the
classifier between float and quantized samples; Fréchet distance of the classifier's features to the float
samples and to the real test digits; class histogram; and the test-split negative ELBO with the float encoder
feeding each decoder (the cost of quantization in nats). Exits 1 when a decoder breaks a threshold below.

A decoder brought by the user (python -m export --decoder) is checked as far as it can be: pixel errors and PSNR
always (errors on the [0, 1] scale of its image range: [-1, 1] for tanh; a linear output's on the float decoder's
own range); digit agreement and Fréchet distances only for 28x28x1 images (what the classifier takes); the
−ELBO only with an exported encoder, a sigmoid output and MNIST. Each record lists what was not measured and
why (``not_measured``), and check.md says it per model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import VaeEdgeError
from .manifest import Manifest
from .models import Classifier, Decoder, Encoder
from .quality import (
    bce_per_image_from_logits,
    frechet_distance,
    kl_per_image,
    logits_from_probabilities,
    psnr_db,
)
from .vocab import Role

DIGIT_AGREEMENT_MIN = 0.97
MEAN_ABS_ERR_MAX = 0.01
NEG_ELBO_DELTA_MAX = 1.0  # nats per image
FD_TO_REAL_RATIO_MAX = 1.05  # quantized samples' distance to real digits within 5% of the float decoder's
THRESHOLDS = {
    "digit_agreement_min": DIGIT_AGREEMENT_MIN,
    "mean_abs_err_max": MEAN_ABS_ERR_MAX,
    "neg_elbo_delta_max": NEG_ELBO_DELTA_MAX,
    "fd_to_real_ratio_max": FD_TO_REAL_RATIO_MAX,
}
QUANTIZED = ("float16", "dynamic_int8", "int8")
# The thresholds that need MNIST's test digits: without them the check cannot judge these.
DATA_THRESHOLDS = ("neg_elbo_delta_max", "fd_to_real_ratio_max")


def decoder_logits(decoder: Decoder, z: np.ndarray) -> np.ndarray:
    """The decoder's pre-sigmoid output: its raw output where it ends at its logits (manifest
    ``output_activation: sigmoid``), else recovered from its probabilities."""
    if decoder.output_activation == "sigmoid":
        return decoder.raw_output(np.asarray(z, dtype=np.float32)).astype(np.float64)
    return logits_from_probabilities(decoder.decode(z))


def neg_elbo(decoder: Decoder, x: np.ndarray, z: np.ndarray, kl: np.ndarray) -> float:
    """Mean −ELBO of images ``x`` with posterior samples ``z`` and their KL, the BCE in training's logits form
    (so the float decoder's figure is training's on the same images and latents)."""
    return float(np.mean(bce_per_image_from_logits(x, decoder_logits(decoder, z)) + kl))


MNIST_SHAPE = (28, 28, 1)  # what the classifier and the MNIST encoder data take


@dataclass(frozen=True)
class Coverage:
    """What the check measures for one model (beyond pixel errors and PSNR, always), and why not the rest."""

    digits: bool  # digit agreement, class histogram and Fréchet distance to the float decoder
    fd_to_real: bool
    neg_elbo: bool
    not_measured: tuple[str, ...]


def coverage(manifest: Manifest, *, classifier: bool, data: bool) -> Coverage:
    """Which measures ``manifest``'s decoders can have, given a loaded classifier and MNIST test digits."""
    shape = tuple(manifest.image_shape)
    mnist_shaped = shape == MNIST_SHAPE
    has_encoder = bool(manifest.find(role=Role.ENCODER))
    sigmoid = manifest.output_activation == "sigmoid"
    digits = classifier and mnist_shaped
    neg = data and has_encoder and mnist_shaped and sigmoid
    missing = []
    if not digits:
        why = (
            f"its images are {'x'.join(map(str, shape))}, the classifier takes 28x28x1"
            if not mnist_shaped
            else "no classifier export under the artifacts folder"
        )
        missing.append(f"digit agreement and Fréchet distances: {why}")
    elif not data:
        missing.append("Fréchet distance to real digits: no MNIST test digits (--no-data)")
    if not neg:
        why = (
            "no encoder exported"
            if not has_encoder
            else f"its images are {'x'.join(map(str, shape))}, the test data is 28x28x1 MNIST"
            if not mnist_shaped
            else f"its output is {manifest.output_activation}, the −ELBO is the Bernoulli (sigmoid) one"
            if not sigmoid
            else "no MNIST test digits (--no-data)"
        )
        missing.append(f"Δ−ELBO: {why}")
    return Coverage(digits=digits, fd_to_real=digits and data, neg_elbo=neg, not_measured=tuple(missing))


def value_span(manifest: Manifest, ref_images: np.ndarray) -> float:
    """The width of the decoder's image range (1 for sigmoid, 2 for tanh); a linear output's: the float
    decoder's own min..max on the check's samples (1 where that is empty)."""
    if manifest.image_range is not None:
        lo, hi = manifest.image_range
        return float(hi - lo)
    span = float(ref_images.max() - ref_images.min())
    return span if span > 0 else 1.0


def quantized_decoders(manifest: Manifest) -> list[dict]:
    """The manifest entries the check compares with the float32 decoder."""
    return [
        a
        for a in manifest.artifacts
        if a["role"] == "decoder" and a["format"] in ("tflite", "onnx") and a["precision"] in QUANTIZED
    ]


def reference_entry(manifest: Manifest) -> dict:
    floats = manifest.find(role="decoder", format="tflite", precision="float32", graph="transpose")
    if not floats:
        raise VaeEdgeError(
            f"{manifest.model}: no float32 TFLite decoder (graph transpose) to check the others against; "
            "re-run python -m export"
        )
    return max(floats, key=lambda a: a["batch"])


def check_model(
    manifest: Manifest,
    classifier: Classifier,
    samples: int,
    seed: int,
    test_images: np.ndarray | None,
    real_features: np.ndarray | None,
    num_threads: int | None = None,
    progress=None,
) -> list[dict]:
    prior = manifest.prior
    cover = coverage(manifest, classifier=classifier is not None, data=test_images is not None)
    quantized = quantized_decoders(manifest)
    if not quantized:
        raise VaeEdgeError(f"{manifest.model}: no quantized decoder to check; re-run python -m export")
    z = prior.sample(samples, seed=seed)
    ref_entry = reference_entry(manifest)
    ref_decoder = Decoder(manifest, ref_entry, num_threads)
    ref_images = ref_decoder.decode(z)
    span = value_span(manifest, ref_images)
    if cover.digits:
        ref_logits, ref_features = classifier.predict(ref_images)
        ref_digits = ref_logits.argmax(1)

    recon = None
    if cover.neg_elbo:
        encoder = Encoder.from_manifest(manifest, num_threads=num_threads)
        mu, log_var = encoder.encode(test_images)
        eps = np.random.default_rng(seed + 1).standard_normal(mu.shape).astype(np.float32)
        z_post = mu + np.exp(0.5 * log_var) * eps
        kl = kl_per_image(mu, log_var, prior.sigma)
        recon = {"z": z_post, "kl": kl, "x": test_images.reshape(len(test_images), -1)}
        ref_neg_elbo = neg_elbo(ref_decoder, recon["x"], z_post, kl)

    def base_record(entry):
        return {
            "model": manifest.model,
            "artifact": entry["path"],
            "format": entry["format"],
            "precision": entry["precision"],
            "graph": entry["graph"],
            "io": entry["io"],
            "batch": entry["batch"],
            "samples": samples,
            "reference": ref_entry["path"],
            "image_shape": list(manifest.image_shape),
            "value_span": span,
            "not_measured": list(cover.not_measured),
        }

    fd_float_real = (
        frechet_distance(ref_features, real_features)
        if cover.fd_to_real and real_features is not None
        else None
    )
    baseline = {
        **base_record(ref_entry),
        "role": "reference",
        "class_histogram": np.bincount(ref_digits, minlength=10).tolist() if cover.digits else None,
        "fd_to_real": fd_float_real,
        "mean_abs_err": 0.0,
        "max_abs_err": 0.0,
        "digit_agreement": 1.0 if cover.digits else None,
        "neg_elbo": ref_neg_elbo if recon else None,
        "neg_elbo_delta": 0.0 if recon else None,
        "passed": True,
        "failures": [],
        "status": "ok",
    }
    records = [baseline]
    for entry in quantized:
        try:
            decoder = Decoder(manifest, entry, num_threads)
            images = decoder.decode(z)
        except VaeEdgeError as exc:  # one bad file: record it and check the others
            rec = error_record(base_record(entry), exc)
            records.append(rec)
            if progress:
                progress(rec)
            continue
        # Errors and PSNR on the [0, 1] scale of the image range (the project's sigmoid images: as they are).
        err = np.abs(images.astype(np.float64) - ref_images) / span
        rec = {
            **base_record(entry),
            "role": "quantized",
            "mean_abs_err": float(err.mean()),
            "max_abs_err": float(err.max()),
            "psnr_db": psnr_db(images, ref_images, peak=span),
            "digit_agreement": None,
            "fd_to_float": None,
            "class_histogram": None,
            "fd_to_real": None,
            "neg_elbo": None,
            "neg_elbo_delta": None,
        }
        if cover.digits:
            logits, features = classifier.predict(images)
            digits = logits.argmax(1)
            rec["digit_agreement"] = float((digits == ref_digits).mean())
            rec["fd_to_float"] = frechet_distance(features, ref_features)
            rec["class_histogram"] = np.bincount(digits, minlength=10).tolist()
        if fd_float_real is not None:
            rec["fd_to_real"] = frechet_distance(features, real_features)
            rec["fd_to_real_float"] = fd_float_real
            rec["fd_to_real_ratio"] = rec["fd_to_real"] / fd_float_real
        if recon:
            rec["neg_elbo"] = neg_elbo(decoder, recon["x"], recon["z"], recon["kl"])
            rec["neg_elbo_float"] = ref_neg_elbo
            rec["neg_elbo_delta"] = rec["neg_elbo"] - ref_neg_elbo
        rec["failures"] = failures_of(rec)
        rec["passed"] = not rec["failures"]
        rec["status"] = "ok"
        records.append(rec)
        if progress:
            progress(rec)
    return records


ERROR_FIELDS = (
    "mean_abs_err",
    "max_abs_err",
    "psnr_db",
    "digit_agreement",
    "fd_to_float",
    "fd_to_real",
    "fd_to_real_ratio",
    "neg_elbo",
    "neg_elbo_delta",
)


def error_record(base: dict, exc: Exception) -> dict:
    """A decoder (or a whole model) that could not be checked: status "error", the one-line reason, no figures."""
    error = " ".join(str(exc).split())
    return {
        **base,
        "role": base.get("role", "quantized"),
        **dict.fromkeys(ERROR_FIELDS),
        "status": "error",
        "error": error,
        "passed": False,
        "failures": [error],
    }


def model_error_record(model: str, exc: Exception, samples: int = 0) -> dict:
    """A whole model that could not be checked (bad manifest, reference decoder or encoder)."""
    base = {"model": model, "artifact": "(all decoders)", "role": "quantized", "samples": samples}
    base.update(dict.fromkeys(("format", "precision", "graph", "io", "batch", "reference")))
    base["not_measured"] = []
    return error_record(base, exc)


def check_model_or_record(manifest: Manifest, *args, **kwargs) -> list[dict]:
    """``check_model``, or one error record for the model when it cannot be checked at all."""
    try:
        return check_model(manifest, *args, **kwargs)
    except VaeEdgeError as exc:
        return [model_error_record(manifest.model, exc, args[1] if len(args) > 1 else 0)]


def failures_of(rec: dict) -> list[str]:
    out = []
    if rec.get("digit_agreement") is not None and not rec["digit_agreement"] >= DIGIT_AGREEMENT_MIN:
        out.append(f"digit agreement {rec['digit_agreement']:.3f} < {DIGIT_AGREEMENT_MIN}")
    if not rec["mean_abs_err"] <= MEAN_ABS_ERR_MAX:
        out.append(f"mean abs error {rec['mean_abs_err']:.4f} > {MEAN_ABS_ERR_MAX}")
    if rec.get("neg_elbo_delta") is not None and not rec["neg_elbo_delta"] <= NEG_ELBO_DELTA_MAX:
        out.append(f"-ELBO increase {rec['neg_elbo_delta']:.3f} > {NEG_ELBO_DELTA_MAX} nat")
    if rec.get("fd_to_real_ratio") is not None and not rec["fd_to_real_ratio"] <= FD_TO_REAL_RATIO_MAX:
        out.append(
            f"Fréchet distance to real digits {rec['fd_to_real_ratio']:.3f}x the float decoder's > {FD_TO_REAL_RATIO_MAX}x"
        )
    return out


def check_markdown(records: list[dict], *, samples: int, seed: int, unchecked: list[str] = ()) -> str:
    """reports/check.md: one row per decoder, then the verdict."""
    failed = [r for r in records if not r["passed"]]

    def f(v, spec):
        return "—" if v is None else format(v, spec)

    lines = [
        "# Quality of the quantized decoders",
        "",
        f"Every quantized decoder against the float32 TFLite decoder on the same {samples} prior samples "
        f"(seed {seed}). Thresholds: {THRESHOLDS}. Pixel errors and PSNR on the [0, 1] scale of each model's "
        "image range. −ELBO: test split, float encoder feeding each decoder. —: not measured (see below).",
        "",
        "| model | artifact | mean abs err | max abs err | PSNR dB | digit agreement | FD to float | FD to real | "
        "FD real ratio | −ELBO | Δ −ELBO | passed |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in records:
        lines.append(
            f"| {r['model']} | {r['artifact']}{' (reference)' if r['role'] == 'reference' else ''} | "
            f"{f(r['mean_abs_err'], '.4f')} | {f(r['max_abs_err'], '.3f')} | {f(r.get('psnr_db'), '.1f')} | "
            f"{f(r['digit_agreement'], '.4f')} | {f(r.get('fd_to_float'), '.3f')} | {f(r.get('fd_to_real'), '.2f')} | "
            f"{f(r.get('fd_to_real_ratio'), '.3f')} | {f(r.get('neg_elbo'), '.2f')} | {f(r.get('neg_elbo_delta'), '+.3f')} | "
            f"{'yes' if r['passed'] else 'NO: ' + '; '.join(r['failures'])} |"
        )
    gaps = {r["model"]: r["not_measured"] for r in records if r.get("not_measured")}
    if gaps:
        lines += ["", "Not measured:", ""]
        lines += [f"- {model}: {'; '.join(items)}." for model, items in gaps.items()]
    quantized = [r for r in records if r["role"] != "reference"]
    verdict = (
        "no decoder checked" if not quantized else "all passed" if not failed else f"{len(failed)} failed"
    )
    lines += ["", f"Result: {verdict}."]
    if unchecked:
        lines.append(f"Not checked (--no-data, no MNIST test digits): {', '.join(unchecked)}.")
    return "\n".join(lines) + "\n"
