"""The validation bounds (export/bounds.py) on 52 decoders of varied weights, through the exporter's own convert
and validate code: no correct conversion fails, and a wrong one does."""

from __future__ import annotations

import numpy as np
import pytest

from export import convert
from export.bounds import DecoderBounds
from export.pipeline import Exporter
from runtime.errors import VaeEdgeError
from runtime.vocab import VAE_MODELS, ArtifactSpec, Graph
from train.model import PRESETS, build_decoder, subpixel_decoder_from

BATCH = 4
SAMPLES = 16  # validation latents per decoder: the bounds' logic is the same at 1000
SCALES = (0.5, 1.0, 2.0, 4.0)  # × the Keras initialisation
SEEDS = range(13)  # 13 seeds × 4 scales = 52 decoders, the graph alternating
KINDS = (  # every (format, precision, io) the exporter validates with its own bound
    ("tflite", "float32", "float"),
    ("tflite", "float16", "float"),
    ("tflite", "dynamic_int8", "float"),
    ("tflite", "int8", "int8"),
    ("onnx", "int8", "float"),
)
ONNX_EVERY = 4  # tf2onnx is the slowest converter: int8 ONNX on every 4th decoder (13 of them)
CALIBRATION = 128


def random_decoder(seed: int, scale: float):
    """A decoder at ``scale`` × Keras's initial weights, with random biases (the initial ones are zero)."""
    cfg = PRESETS[VAE_MODELS[seed % len(VAE_MODELS)]]
    decoder = build_decoder(cfg, batch_size=BATCH)
    rng = np.random.default_rng(seed)
    for layer in decoder.layers:
        if layer.weights:
            kernel, bias = layer.get_weights()
            layer.set_weights([kernel * scale, rng.normal(0, 0.1 * scale, bias.shape).astype(np.float32)])
    return cfg, decoder


class Case:
    """One decoder, its validation latents and reference pixels, and its bounds: what export_vae sets up."""

    def __init__(self, seed: int, scale: float, exporter: Exporter):
        self.cfg, self.decoder = random_decoder(seed, scale)
        self.graph = (Graph.TRANSPOSE, Graph.SUBPIXEL)[seed % 2]
        self.subpixel = subpixel_decoder_from(self.decoder, self.cfg, BATCH)
        self.z = self.cfg.prior.sample(SAMPLES, seed=seed + 1)
        calibration = np.clip(self.cfg.prior.sample(CALIBRATION, seed=seed), -3, 3).astype(np.float32)
        self.calibration = calibration
        self.reference = np.asarray(self.decoder.predict(self.z, batch_size=BATCH, verbose=0))
        self.bounds = DecoderBounds(self.decoder, self.subpixel, self.z, calibration, convert.LOGIT_CLIP)
        self.exporter = exporter

    def model(self):
        return self.decoder if self.graph is Graph.TRANSPOSE else self.subpixel

    def validate(self, spec: ArtifactSpec, model, tmp_path) -> dict:
        """Convert ``model`` as the exporter does and validate it against this case's reference and bound."""
        data = Exporter._convert_decoder(spec, model, self.calibration, {})
        path = tmp_path / spec.filename
        path.write_bytes(data)
        entry = self.exporter._validate_decoder(
            path, spec, self.z, self.reference, self.bounds.tolerance(spec)
        )
        return entry["validation"]


@pytest.fixture(scope="module")
def exporter(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bounds")
    return Exporter(
        model_dir=folder,
        batches=(BATCH,),
        calibration_samples=500,
        validation_samples=SAMPLES,
        seed=0,
        progress=False,
    )


def test_no_correct_conversion_fails(exporter, tmp_path):
    """52 decoders (4 weight scales, both graphs, three latent sizes) × every validated kind: all pass."""
    ratios: dict[str, list[float]] = {}
    failures, dynamic_max_err = [], 0.0
    for seed in SEEDS:
        for scale in SCALES:
            case = Case(seed, scale, exporter)
            err = np.abs(
                np.asarray(case.subpixel.predict(case.z, batch_size=BATCH, verbose=0)) - case.reference
            )
            assert err.max() <= case.bounds.subpixel_rewrite().max_abs
            for fmt, precision, io in KINDS:
                if fmt == "onnx" and (seed + SCALES.index(scale)) % ONNX_EVERY:
                    continue
                spec = ArtifactSpec("decoder", fmt, precision, io, case.graph, BATCH)
                try:
                    v = case.validate(spec, case.model(), tmp_path)
                except VaeEdgeError as exc:
                    failures.append(f"seed {seed} scale {scale}: {exc}")
                    continue
                key = "max_abs" if "max_abs" in v["tolerance"] else "mean_abs"
                ratio = v[f"{key}_err"] / v["tolerance"][key]
                ratios.setdefault(f"{fmt} {precision} ({key})", []).append(ratio)
                if precision == "dynamic_int8":
                    dynamic_max_err = max(dynamic_max_err, v["max_abs_err"])
    # The figures runtime/vocab.py quotes (pytest -s shows them).
    print({k: f"error/bound max {max(r):.3g} median {np.median(r):.3g}" for k, r in ratios.items()})
    print(f"dynamic-range int8: max abs error {dynamic_max_err:.3g}")
    assert len(SEEDS) * len(SCALES) >= 50
    assert not failures, failures


@pytest.mark.parametrize(
    "kind, wrong",
    [
        (("tflite", "float32", "float"), "weights"),
        (("tflite", "float16", "float"), "weights"),
        (("onnx", "float32", "float"), "bias"),
        (("tflite", "dynamic_int8", "float"), "bias"),
        (("tflite", "int8", "int8"), "bias"),
        (("onnx", "int8", "float"), "bias"),
    ],
)
def test_a_wrong_conversion_fails(exporter, tmp_path, kind, wrong):
    """The artifact of a decoder with 3% of noise on its weights, or its logits' bias moved by 1, against the
    original's reference and bound: validation must fail."""
    case = Case(7, 1.0, exporter)
    model = build_decoder(case.cfg, batch_size=BATCH)
    rng = np.random.default_rng(0)
    for layer in model.layers:
        if layer.weights:
            kernel, bias = case.decoder.get_layer(layer.name).get_weights()
            if wrong == "weights":
                kernel = kernel * (1 + 0.03 * rng.standard_normal(kernel.shape)).astype(np.float32)
            elif layer.name == "dec_logits":
                bias = bias + 1.0
            layer.set_weights([kernel, bias])
    spec = ArtifactSpec("decoder", *kind, Graph.TRANSPOSE, BATCH)
    with pytest.raises(VaeEdgeError, match=f"validation failed for {spec.filename}"):
        case.validate(spec, model, tmp_path)
