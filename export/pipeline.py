"""Export one trained model: convert every artifact, validate each against Keras, then publish them as a set.

All files are first written to a staging folder beside ``export/``; only when every artifact has converted,
loaded back in its own runtime and met its tolerance, and the manifest is written, does the staging folder
replace ``export/`` in one step (runtime.fileio.staged_folder). A failure, or a killed process, leaves the
previous export untouched; a leftover staging folder is removed by the next run.
"""

from __future__ import annotations

import datetime as dt
import functools
import os
import warnings
import zipfile
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from runtime.backends import TFLiteModel, open_model, run_batched
from runtime.data import load_mnist
from runtime.errors import VaeEdgeError
from runtime.fileio import (
    ensure_writable_dir,
    sha256_file,
    staged_folder,
    write_json_atomic,
    write_text_atomic,
)
from runtime.manifest import MANIFEST_VERSION
from runtime.models import decoder_pixels
from runtime.vocab import (
    CLASSIFIER,
    IO,
    ArtifactSpec,
    Format,
    Graph,
    Precision,
    Role,
    Tolerance,
)
from train.runset import verify_run_set

from . import carray, convert
from .bounds import DecoderBounds
from .preflight import keras_layers, read_model_config, retrain_hint
from .variants import classifier_variants, decoder_variants, encoder_variants

MANIFEST = "manifest.json"
EXPORT_DIR = "export"
INT_TYPES = {"int8", "int32", "uint8", "int16"}


def load_keras(path: Path, model_name: str, architecture):
    """The trained model at ``path``, rebuilt from the project's own code: no code from the file ever runs.

    A ``.keras`` file carries its architecture as a config that Keras deserialises into layers, and a Lambda
    layer in it is Python that runs when the model is called. So the config is only *read* (plain JSON, to
    refuse a file whose layers differ from ``architecture``, naming the first difference), the model is built
    by ``architecture`` (a ``train/model.py`` builder) and only the weights are read from the file.
    """
    retrain = f"retrain it: python -m train --model {model_name}"
    found = keras_layers(path, model_name)  # plain JSON, size-capped; a hostile archive is a refusal
    model = architecture()
    expected = [(type(layer).__name__, layer.name) for layer in model.layers]
    if found != expected:
        diff = next(
            (
                f"layer {i} is {f[0]} {f[1]!r}, expected {e[0]} {e[1]!r}"
                for i, (f, e) in enumerate(zip(found, expected, strict=False))
                if f != e
            ),
            f"{len(found)} layers, expected {len(expected)}",
        )
        raise VaeEdgeError(
            f"{path} is not a {model_name} of this project's architecture ({diff}); refused without running "
            f"anything from it: {retrain}"
        )
    try:
        with warnings.catch_warnings():
            # Keras only warns when it skips part of a file and leaves those layers freshly initialised.
            warnings.simplefilter("error", UserWarning)
            model.load_weights(path)
    except (ValueError, UserWarning) as exc:  # e.g. a vae3d decoder beside a vae2d config.json
        reason = str(exc).strip().splitlines()[0][:160]
        raise VaeEdgeError(
            f"{path}'s weights do not fit the {model_name} described by config.json ({reason}); the folder "
            f"mixes two models or the file is corrupt: {retrain}"
        ) from None
    except (zipfile.BadZipFile, OSError, KeyError, EOFError) as exc:
        raise VaeEdgeError(f"{path} is corrupt or truncated ({type(exc).__name__}); {retrain}") from None
    return model


def load_config(model_dir: Path, model_name: str):
    """The model's config, its fields checked within bounds (export.preflight) before anything is built."""
    from train.model import config_from_json

    model = read_model_config(model_dir, model_name)
    try:
        return config_from_json(model)
    except (KeyError, TypeError, ValueError) as exc:  # InvalidInputError is a ValueError
        raise VaeEdgeError(
            f"{model_dir / 'config.json'} is unreadable ({exc}); {retrain_hint(model_dir, model_name)}"
        ) from None


@functools.lru_cache(maxsize=1)
def training_images(data: str | os.PathLike | None) -> np.ndarray:
    """MNIST's training images, read once per process (``--model all`` calibrates three VAEs on them)."""
    return load_mnist(data).images("train")


def error_figures(out: np.ndarray, ref: np.ndarray) -> dict:
    err = np.abs(out.astype(np.float64) - ref.astype(np.float64))
    return {"max_abs_err": float(err.max()), "mean_abs_err": float(err.mean())}


def check_tolerance(spec: ArtifactSpec, figures: dict, tolerance: Tolerance | None = None) -> None:
    """``tolerance``: a decoder's, derived from its weights (export/bounds.py); others use ``spec.tolerance``."""
    broken = (tolerance or spec.tolerance).failures(
        max_abs_err=figures["max_abs_err"], mean_abs_err=figures.get("mean_abs_err", 0.0)
    )
    if broken:
        raise VaeEdgeError(
            f"validation failed for {spec.filename}: {broken[0]} against the Keras model; "
            "previous artifacts left untouched"
        )


def check_int8_graph(variant: ArtifactSpec, ops: list[dict]) -> None:
    """Full-integer graphs: every op int8 between the ends; ReLUs fused into their producers."""
    names = [op["op"] for op in ops]
    if "RELU" in names:
        raise VaeEdgeError(
            f"{variant.filename} has a separate RELU op (not fused): the int8 decoder would be ~7x slower"
        )
    inner = ops
    if variant.io is IO.FLOAT:  # float ends: QUANTIZE in; DEQUANTIZE then the float sigmoid out
        tail = [op["op"] for op in ops[-2:]]
        if tail != ["DEQUANTIZE", "LOGISTIC"]:
            raise VaeEdgeError(f"{variant.filename} must end with DEQUANTIZE -> LOGISTIC, ends with {tail}")
        inner = [op for op in ops[:-2] if op["op"] != "QUANTIZE"]
    for op in inner:
        floats = [t for t in op["inputs"] + op["outputs"] if t not in INT_TYPES]
        if floats:
            raise VaeEdgeError(
                f"{variant.filename}: op {op['op']} computes in {floats[0]}; the int8 graph must be integer-only"
            )


def artifact_entry(
    path: Path,
    variant: ArtifactSpec,
    model,
    figures: dict,
    ops: list[str],
    extra: dict,
    tolerance: Tolerance | None = None,
) -> dict:
    return {
        "path": path.name,
        **variant.to_json(),
        "sha256": sha256_file(path),
        "size_bytes": path.stat().st_size,
        "inputs": [t.to_json() for t in model.inputs],
        "outputs": [t.to_json() for t in model.outputs],
        "ops": ops,
        "validation": {
            **figures,
            "tolerance": (tolerance or variant.tolerance).to_json(),
            "passed": True,
        },
        **extra,
    }


class Exporter:
    """Exports one model folder (``<artifacts>/<model>/``) into its ``export/``; numbers are checked by the CLI."""

    def __init__(
        self,
        *,
        model_dir: Path,
        batches: tuple[int, ...],
        calibration_samples: int,
        validation_samples: int,
        seed: int,
        progress: bool,
        calibration: str = "posterior",
        data: str | os.PathLike | None = None,
    ):
        self.calibration, self.data = calibration, data
        self.model_dir, self.batches, self.seed, self.progress = Path(model_dir), batches, seed, progress
        self.calibration_samples, self.validation_samples = calibration_samples, validation_samples
        self.export_dir = ensure_writable_dir(self.model_dir / EXPORT_DIR)

    def _write(self, staging: Path, variant: ArtifactSpec, data: bytes) -> Path:
        path = staging / variant.filename
        path.write_bytes(data)
        return path

    def _bar(self, total: int, desc: str):
        return tqdm(
            total=total,
            desc=desc,
            unit="artifact",
            disable=not self.progress,
            leave=False,
            dynamic_ncols=True,
        )

    # ------------------------------------------------------------------------------------------ VAEs
    def export_vae(self, model_name: str) -> dict:
        from train.model import build_decoder, build_encoder, copy_weights, subpixel_decoder_from

        cfg = load_config(self.model_dir, model_name)
        run_id = verify_run_set(self.model_dir)  # one training run's files, or a one-line refusal
        # A decoder of another latent size fails in load_weights (shape mismatch) with a one-line error.
        decoder = load_keras(self.model_dir / "decoder.keras", model_name, lambda: build_decoder(cfg))
        encoder = load_keras(self.model_dir / "encoder.keras", model_name, lambda: build_encoder(cfg))
        prior = cfg.prior
        calibration = self._calibration_latents(prior, encoder)
        z_val = prior.sample(self.validation_samples, seed=self.seed + 1)
        reference = np.asarray(decoder.predict(z_val, batch_size=250, verbose=0))
        ref_mu, ref_logvar = (np.asarray(a) for a in encoder.predict(reference, batch_size=250, verbose=0))

        builders = {
            (Role.DECODER, Graph.TRANSPOSE): lambda b: copy_weights(
                decoder, build_decoder(cfg, batch_size=b)
            ),
            (Role.DECODER, Graph.SUBPIXEL): lambda b: subpixel_decoder_from(decoder, cfg, b),
            (Role.ENCODER, Graph.NONE): lambda b: copy_weights(encoder, build_encoder(cfg, batch_size=b)),
        }
        keras_models = {}

        def keras_model(role: Role, graph: Graph, batch: int):
            """The Keras model an artifact is converted from, built once per (role, graph, static batch)."""
            if (role, graph, batch) not in keras_models:
                keras_models[role, graph, batch] = builders[role, graph](batch)
            return keras_models[role, graph, batch]

        # The rewrite must be exact in float (to float32 rounding) before any of it is quantized.
        sub = keras_model(Role.DECODER, Graph.SUBPIXEL, self.batches[-1])
        bounds = DecoderBounds(decoder, sub, z_val, calibration, convert.LOGIT_CLIP)
        sub_out = np.concatenate([np.asarray(sub(c)) for c in convert.batches_of(z_val, self.batches[-1])])
        subpixel_err = error_figures(sub_out, reference[: len(sub_out)])["max_abs_err"]
        subpixel_tolerance = bounds.subpixel_rewrite()
        broken = subpixel_tolerance.failures(max_abs_err=subpixel_err, mean_abs_err=0.0)
        if broken:
            raise VaeEdgeError(f"the sub-pixel rewrite differs from the decoder: {broken[0]}")

        specs = decoder_variants(self.batches) + encoder_variants(self.batches)
        entries = []
        onnx_float: dict[tuple[Graph, int], bytes] = {}
        with (
            staged_folder(self.export_dir) as staging,
            self._bar(len(specs) + 1, f"export {model_name}") as bar,
        ):
            for spec in specs:
                model = keras_model(spec.role, spec.graph, spec.batch)
                if spec.role is Role.ENCODER:
                    path = self._write(staging, spec, convert.to_tflite(model, Precision.FLOAT32))
                    entries.append(self._validate_encoder(path, spec, reference, ref_mu, ref_logvar))
                else:
                    path = self._write(
                        staging, spec, self._convert_decoder(spec, model, calibration, onnx_float)
                    )
                    entries.append(
                        self._validate_decoder(path, spec, z_val, reference, bounds.tolerance(spec))
                    )
                bar.update()
            c_files = self._c_array(staging, model_name, entries)
            bar.update()
            manifest = self._manifest(
                model_name, cfg, entries, c_files, (subpixel_err, subpixel_tolerance), run_id
            )
            write_json_atomic(staging / MANIFEST, manifest)
        return manifest

    @staticmethod
    def _convert_decoder(spec: ArtifactSpec, model, calibration: np.ndarray, onnx_float: dict) -> bytes:
        """The artifact's bytes. ``onnx_float`` keeps each float ONNX graph for its int8 (QDQ) sibling."""
        if spec.format is Format.TFLITE:
            data = convert.to_tflite(model, spec.precision, spec.io, calibration)
            return convert.int8_decoder_head(data, spec.io) if spec.precision is Precision.INT8 else data
        key = (spec.graph, spec.batch)
        if key not in onnx_float:
            onnx_float[key] = convert.to_onnx(model)
        if spec.precision is Precision.FLOAT32:
            return onnx_float[key]
        fl = onnx_float[key]
        return convert.quantize_onnx(fl, calibration, convert.onnx_input_name(fl), spec.batch)

    def _calibration_latents(self, prior, encoder) -> np.ndarray:
        """Latents the int8 ranges are calibrated on, clipped to ±CALIBRATION_LATENT_CLIP (see convert.py).

        ``posterior`` (default): z = μ + σ ε from the encoder on random training images — the latents the
        decoder meets in reconstruction; chosen over ``prior`` by digit agreement and pixel error (README,
        Export).
        """
        n = self.calibration_samples
        if self.calibration == "prior":
            z = prior.sample(n, seed=self.seed)
        else:
            images = training_images(self.data)
            if len(images) < n:
                raise VaeEdgeError(
                    f"--calibration-samples {n} exceeds the {len(images)} training images; pass a smaller value"
                )
            pick = np.random.default_rng(self.seed).choice(len(images), n, replace=False)
            mu, log_var = (np.asarray(a) for a in encoder.predict(images[pick], batch_size=250, verbose=0))
            eps = np.random.default_rng(self.seed + 2).standard_normal(mu.shape)
            z = mu + np.exp(0.5 * log_var) * eps
        return np.clip(z, -convert.CALIBRATION_LATENT_CLIP, convert.CALIBRATION_LATENT_CLIP).astype(
            np.float32
        )

    def _validate_decoder(
        self, path: Path, v: ArtifactSpec, z: np.ndarray, reference: np.ndarray, tolerance: Tolerance
    ) -> dict:
        """Run the artifact on the validation latents; its error against Keras must be within ``tolerance``
        (derived from the decoder's weights and the artifact's arithmetic: export/bounds.py)."""
        model = open_model(path)
        out = decoder_pixels(run_batched(model, z, v.batch)[0], v.output_activation)
        figures = error_figures(out, reference)
        figures["samples"] = len(z)
        check_tolerance(v, figures, tolerance)
        ops = []
        if v.format is Format.TFLITE:
            details = TFLiteModel(path, delegates=False).op_details()
            if v.precision is Precision.INT8:
                check_int8_graph(v, details)
            ops = [op["op"] for op in details]
        else:
            ops = model.op_names()
        extra = {"output_activation": v.output_activation} if v.output_activation else {}
        return artifact_entry(path, v, model, figures, ops, extra, tolerance)

    def _validate_encoder(self, path: Path, v: ArtifactSpec, images, ref_mu, ref_logvar) -> dict:
        model = open_model(path)
        outs = run_batched(model, images, v.batch)
        # TFLite may reorder a model's outputs: name each by the Keras output it reproduces.
        roles = []
        for o in outs:
            errs = {"z_mean": np.abs(o - ref_mu).max(), "z_log_var": np.abs(o - ref_logvar).max()}
            roles.append(min(errs, key=errs.get))
        if sorted(roles) != ["z_log_var", "z_mean"]:
            raise VaeEdgeError(
                f"validation failed for {v.filename}: its outputs match neither z_mean nor z_log_var"
            )
        figures = {
            "max_abs_err": float(
                max(
                    np.abs(o - (ref_mu if r == "z_mean" else ref_logvar)).max()
                    for o, r in zip(outs, roles, strict=True)
                )
            ),
            "samples": len(images),
        }
        check_tolerance(v, figures)
        ops = TFLiteModel(path, delegates=False).op_names()
        return artifact_entry(path, v, model, figures, ops, {"output_roles": roles})

    def _c_array(self, staging: Path, model_name: str, entries: list[dict]) -> list[dict]:
        source_spec = ArtifactSpec(Role.DECODER, Format.TFLITE, Precision.INT8, IO.INT8, Graph.SUBPIXEL, 1)
        src = next(e for e in entries if e["path"] == source_spec.filename)
        data = (staging / src["path"]).read_bytes()
        out_q = src["outputs"][0]
        logits_quant = (float(out_q["scale"]), int(out_q["zero_point"]))
        header, source = carray.c_sources(data, model_name, src["path"], src["sha256"], logits_quant)
        if carray.parse_c_array(source) != data:
            raise VaeEdgeError("the generated C array does not round-trip to the .tflite bytes")
        out = []
        for name, text in (
            (f"{model_name}_decoder_int8.h", header),
            (f"{model_name}_decoder_int8.cc", source),
        ):
            p = staging / name
            write_text_atomic(p, text)
            out.append(
                {
                    "path": name,
                    **ArtifactSpec(
                        Role.DECODER, Format.C, Precision.INT8, IO.INT8, Graph.SUBPIXEL, 1
                    ).to_json(),
                    "sha256": sha256_file(p),
                    "size_bytes": p.stat().st_size,
                    "source": src["path"],
                    "symbol": carray.symbol_for(model_name),
                    "pixel_lut_symbol": carray.lut_symbol_for(model_name),
                    "array_bytes": len(data),
                }
            )
        return out

    def _manifest(self, model_name, cfg, entries, c_files, subpixel, run_id: str) -> dict:
        from train.provenance import provenance

        return {
            "manifest_version": MANIFEST_VERSION,
            "model": model_name,
            "kind": "vae",
            "latent_dim": cfg.latent_dim,
            "prior": cfg.prior.to_json(),
            "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "source": {
                "run_id": run_id,
                "decoder": {
                    "path": "../decoder.keras",
                    "sha256": sha256_file(self.model_dir / "decoder.keras"),
                },
                "encoder": {
                    "path": "../encoder.keras",
                    "sha256": sha256_file(self.model_dir / "encoder.keras"),
                },
            },
            "calibration": {
                "samples": self.calibration_samples,
                "seed": self.seed,
                "source": self.calibration,
                "distribution": (
                    "z = μ + σ ε from the encoder on random training images"
                    if self.calibration == "posterior"
                    else "the model's prior N(0, Σ), z = L ε (runtime.prior.Prior.sample)"
                ),
                "latent_clip": convert.CALIBRATION_LATENT_CLIP,
                "logit_clip": convert.LOGIT_CLIP,
            },
            "validation": {
                "samples": self.validation_samples,
                "seed": self.seed + 1,
                "reference": "Keras float32 decoder on the same prior samples",
                "subpixel_float_max_abs_err": subpixel[0],
                "subpixel_float_tolerance": subpixel[1].to_json(),
            },
            "image": {"shape": [28, 28, 1], "range": [0.0, 1.0]},
            **provenance(),
            "artifacts": entries + c_files,
        }

    # ------------------------------------------------------------------------------------------ classifier
    def export_classifier(self) -> dict:
        cfg = load_config(self.model_dir, CLASSIFIER)
        run_id = verify_run_set(self.model_dir)
        from train.model import build_classifier, copy_weights

        keras_model = load_keras(
            self.model_dir / "classifier.keras", CLASSIFIER, lambda: build_classifier(cfg)
        )

        images = (
            np.random.default_rng(self.seed)
            .uniform(0, 1, (self.validation_samples, 28, 28, 1))
            .astype(np.float32)
        )
        ref_logits, ref_features = (
            np.asarray(a) for a in keras_model.predict(images, batch_size=250, verbose=0)
        )
        from train.provenance import provenance

        entries = []
        with staged_folder(self.export_dir) as staging:
            for v in classifier_variants(self.batches):
                static = copy_weights(keras_model, build_classifier(cfg, batch_size=v.batch))
                path = self._write(staging, v, convert.to_tflite(static, Precision.FLOAT32))
                model = open_model(path)
                outs = run_batched(model, images, v.batch)
                roles = ["logits" if o.shape[1] == 10 else "features" for o in outs]
                err = max(
                    float(np.abs(o - (ref_logits if r == "logits" else ref_features)).max())
                    for o, r in zip(outs, roles, strict=True)
                )
                figures = {"max_abs_err": err, "samples": len(images)}
                check_tolerance(v, figures)
                ops = TFLiteModel(path, delegates=False).op_names()
                entries.append(artifact_entry(path, v, model, figures, ops, {"output_roles": roles}))
            manifest = {
                "manifest_version": MANIFEST_VERSION,
                "model": CLASSIFIER,
                "kind": CLASSIFIER,
                "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                "source": {
                    "run_id": run_id,
                    "classifier": {
                        "path": "../classifier.keras",
                        "sha256": sha256_file(self.model_dir / "classifier.keras"),
                    },
                },
                **provenance(),
                "artifacts": entries,
            }
            write_json_atomic(staging / MANIFEST, manifest)
        return manifest
