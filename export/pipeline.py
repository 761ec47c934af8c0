"""Export one trained model: convert every artifact, validate each against Keras, then publish them as a set.

:func:`export_decoder` is the seam: any Keras decoder (a prior, calibration latents, the graphs to convert)
in, the full artifact set and manifest out, as an :class:`ExportResult`. Two callers: :class:`Exporter`, the
glue for this project's trained models (run set, models rebuilt from train/model.py, the sub-pixel rewrite, the
encoder's posterior calibration), and export/byom.py for a decoder the user brings (python -m export --decoder).

    result = export_decoder(decoder=dec, name="mine", prior=Prior.isotropic(8), out_dir=Path("out/export"),
                            calibration=calibration_latents(source="prior", prior=..., samples=5000, seed=0),
                            graphs=(DecoderGraph(Graph.TRANSPOSE, lambda batch: static_copy(dec, batch)),))

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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
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
)
from runtime.manifest import IMAGE_RANGES, MANIFEST_VERSION, MNIST_MANIFEST_VERSION
from runtime.vocab import (
    CLASSIFIER,
    ArtifactSpec,
    Format,
    Graph,
    Precision,
    Role,
    Tolerance,
)
from train.runset import verify_run_set

from . import convert

# The per-artifact steps moved to export/artifacts.py; all their names stay importable from here, those this
# module does not use too (tests/test_byom.py imports convert_decoder and validate_decoder from here).
from .artifacts import (  # noqa: F401
    INT_TYPES,
    array_only_sources,
    artifact_entry,
    c_array_files,
    check_int8_graph,
    check_tolerance,
    convert_decoder,
    error_figures,
    output_activation_of,
    validate_decoder,
    validate_encoder,
)
from .bounds import SIGMOID, DecoderBounds
from .latent_split import LATENT_SPLIT_RADIX, mark_split, split_calibration, split_latent_model
from .preflight import keras_layers, read_model_config, retrain_hint
from .variants import classifier_variants, decoder_variants, encoder_variants

MANIFEST = "manifest.json"
EXPORT_DIR = "export"


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


@dataclass(frozen=True)
class Calibration:
    """The latents the int8 ranges are calibrated on (already clipped) and how they were drawn."""

    latents: np.ndarray
    source: str  # "posterior" | "prior"
    seed: int
    latent_clip: float = convert.CALIBRATION_LATENT_CLIP

    @property
    def distribution(self) -> str:
        if self.source == "posterior":
            return "z = μ + σ ε from the encoder on random training images"
        return "the model's prior N(0, Σ), z = L ε (runtime.prior.Prior.sample)"

    def to_json(self, activation: str = SIGMOID) -> dict:
        return {
            "samples": len(self.latents),
            "seed": self.seed,
            "source": self.source,
            "distribution": self.distribution,
            "latent_clip": self.latent_clip,
            "activation_ranges": convert.INT8_RANGES,  # export/calibrate.py's RangeMethod
            # Only a sigmoid's input is narrowed (convert.clip_logistic_input_range).
            "logit_clip": convert.LOGIT_CLIP if activation == SIGMOID else None,
        }


def calibration_latents(
    *,
    source: str,
    prior,
    samples: int,
    seed: int,
    encoder=None,
    data: str | os.PathLike | None = None,
    latent_clip: float = convert.CALIBRATION_LATENT_CLIP,
) -> Calibration:
    """Latents the int8 ranges are calibrated on, clipped to ±``latent_clip`` (CALIBRATION_LATENT_CLIP, see
    convert.py).

    ``posterior``: z = μ + σ ε from ``encoder`` on random MNIST training images (``data``) — the latents the
    decoder meets in reconstruction; chosen over ``prior`` by digit agreement and pixel error (README,
    Export). ``prior``: the prior's samples; needs neither an encoder nor data.
    """
    if source == "prior":
        z = prior.sample(samples, seed=seed)
    else:
        images = training_images(data)
        if len(images) < samples:
            raise VaeEdgeError(
                f"--calibration-samples {samples} exceeds the {len(images)} training images; pass a smaller value"
            )
        pick = np.random.default_rng(seed).choice(len(images), samples, replace=False)
        mu, log_var = (np.asarray(a) for a in encoder.predict(images[pick], batch_size=250, verbose=0))
        eps = np.random.default_rng(seed + 2).standard_normal(mu.shape)
        z = mu + np.exp(0.5 * log_var) * eps
    latents = np.clip(z, -latent_clip, latent_clip).astype(np.float32)
    return Calibration(latents, source, seed, latent_clip)


@dataclass(frozen=True)
class DecoderGraph:
    """One graph a decoder's artifacts are converted from.

    ``build(batch)``: the Keras model at that static batch. ``rewrite``: None when it is the decoder itself;
    else the name of the rewrite, checked against the decoder in float before anything is converted and recorded
    in the manifest as ``<rewrite>_float_max_abs_err``. ``exact``: the rewrite moves weights without rounding
    them (the sub-pixel kernels); False when it computes new ones (BatchNormalization folded), and the bounds
    then add the rewrite's exact distance from the decoder (export/bounds.py).
    """

    graph: Graph
    build: Callable[[int], object]
    rewrite: str | None = None
    exact: bool = True


@dataclass(frozen=True)
class ExportResult:
    """What :func:`export_decoder` published: the folder, its manifest (as written) and the artifact files."""

    name: str
    export_dir: Path
    manifest: dict

    @property
    def manifest_path(self) -> Path:
        return self.export_dir / MANIFEST

    @property
    def artifacts(self) -> tuple[str, ...]:
        return tuple(a["path"] for a in self.manifest["artifacts"])


def _bar(total: int, desc: str, progress: bool):
    return tqdm(
        total=total, desc=desc, unit="artifact", disable=not progress, leave=False, dynamic_ncols=True
    )


def export_decoder(
    *,
    decoder,
    name: str,
    prior,
    out_dir: str | os.PathLike,
    calibration: Calibration,
    graphs: Sequence[DecoderGraph],
    batches: tuple[int, ...] = (1, 64),
    validation_samples: int = 1000,
    seed: int = 0,
    encoder=None,
    encoder_build: Callable[[int], object] | None = None,
    source: dict | None = None,
    manifest_version: int = MANIFEST_VERSION,
    fused_relu: bool = True,
    artifact_check: Callable[[ArtifactSpec, Path], None] | None = None,
    progress: bool = False,
    latent_split: int = 1,
) -> ExportResult:
    """Convert a Keras decoder into every artifact, validate each against it, and publish them with a manifest.

    Writes ``out_dir`` (staged: it is replaced in one step when everything passed, and left untouched on any
    failure): per graph of ``graphs`` and static batch of ``batches``, the TFLite float32, float16,
    dynamic-range int8 and int8 (int8 and float I/O) decoders (the sub-pixel graph: float32 and int8) and ONNX
    float32 and int8; the encoder (``encoder`` rebuilt by ``encoder_build``) as float32 TFLite when given;
    the last graph's full-int8 batch-1 decoder as a C array; ``manifest.json``. Each decoder artifact is checked
    against ``decoder`` on ``validation_samples`` prior samples within the bound its weights give
    (export/bounds.py), and then by ``artifact_check(spec, path)`` when given (a VaeEdgeError refuses the set).

    ``decoder``'s output activation (sigmoid, tanh or none) and image shape come from its layers;
    ``manifest_version`` 1 writes the MNIST schema (28×28×1 sigmoid images, implied), 2 records the image's
    shape, range and activation. ``source``: the manifest's record of where the models came from.
    ``latent_split``: a radix > 1 makes the full-int8 TFLite decoders take the split latent (two int8s per
    dimension, export/latent_split.py; the manifest entry's ``latent_split`` says how to encode); 1 keeps one
    int8 per dimension.
    """
    export_dir = ensure_writable_dir(out_dir)
    z_val = prior.sample(validation_samples, seed=seed + 1)
    reference = np.asarray(decoder.predict(z_val, batch_size=250, verbose=0))
    if encoder is not None:
        ref_mu, ref_logvar = (np.asarray(a) for a in encoder.predict(reference, batch_size=250, verbose=0))

    by_graph = {g.graph: g for g in graphs}
    keras_models = {}

    def keras_model(role: Role, graph: Graph, batch: int):
        """The Keras model an artifact is converted from, built once per (role, graph, static batch)."""
        if (role, graph, batch) not in keras_models:
            build = encoder_build if role is Role.ENCODER else by_graph[graph].build
            keras_models[role, graph, batch] = build(batch)
        return keras_models[role, graph, batch]

    # A rewrite must be exact in float (to float32 rounding) before any of it is quantized.
    rewritten = {g.graph: keras_model(Role.DECODER, g.graph, batches[-1]) for g in graphs if g.rewrite}
    bounds = DecoderBounds(
        decoder,
        None,
        z_val,
        calibration.latents,
        convert.LOGIT_CLIP,
        graphs={g.graph: rewritten.get(g.graph, decoder) for g in graphs},
        inexact={g.graph for g in graphs if not g.exact},
    )
    activation = bounds.activation
    image_shape = [int(d) for d in decoder.outputs[0].shape[1:]]
    if manifest_version < 2 and (image_shape != [28, 28, 1] or activation != SIGMOID):
        raise ValueError("manifest version 1 describes 28x28x1 sigmoid decoders only")
    rewrite_figures = {}
    for g in graphs:
        if not g.rewrite:
            continue
        model = rewritten[g.graph]
        out = np.concatenate([np.asarray(model(c)) for c in convert.batches_of(z_val, batches[-1])])
        err = error_figures(out, reference[: len(out)])["max_abs_err"]
        tolerance = bounds.rewrite(g.graph)
        broken = tolerance.failures(max_abs_err=err, mean_abs_err=0.0)
        if broken:
            what = "the sub-pixel rewrite" if g.graph is Graph.SUBPIXEL else f"the {g.rewrite} graph"
            raise VaeEdgeError(f"{what} differs from the decoder: {broken[0]}")
        rewrite_figures[f"{g.rewrite}_float_max_abs_err"] = err
        rewrite_figures[f"{g.rewrite}_float_tolerance"] = tolerance.to_json()

    specs = [s for s in decoder_variants(batches) if s.graph in by_graph]
    if encoder is not None:
        specs += encoder_variants(batches)
    entries = []
    onnx_float: dict[tuple[Graph, int], bytes] = {}
    split_calib = split_calibration(calibration.latents, latent_split) if latent_split > 1 else None
    with staged_folder(export_dir) as staging, _bar(len(specs) + 1, f"export {name}", progress) as bar:
        for spec in specs:
            model = keras_model(spec.role, spec.graph, spec.batch)
            path = staging / spec.filename
            if spec.role is Role.ENCODER:
                path.write_bytes(convert.to_tflite(model, Precision.FLOAT32))
                entries.append(validate_encoder(path, spec, reference, ref_mu, ref_logvar))
            elif latent_split > 1 and spec.format is Format.TFLITE and spec.precision is Precision.INT8:
                model = split_latent_model(model, latent_split)
                data = convert_decoder(spec, model, split_calib, onnx_float, activation)
                data, grid = mark_split(data, latent_split)
                path.write_bytes(data)
                entry = validate_decoder(
                    path,
                    spec,
                    grid.encode(z_val),
                    reference,
                    bounds.tolerance(spec),
                    activation=activation,
                    fused_relu=fused_relu,
                )
                entries.append({**entry, "latent_split": grid.to_json()})
            else:
                path.write_bytes(convert_decoder(spec, model, calibration.latents, onnx_float, activation))
                entries.append(
                    validate_decoder(
                        path,
                        spec,
                        z_val,
                        reference,
                        bounds.tolerance(spec),
                        activation=activation,
                        fused_relu=fused_relu,
                    )
                )
                if artifact_check is not None:
                    artifact_check(spec, path)
            bar.update()
        c_files = c_array_files(staging, name, entries, graphs[-1].graph, activation)
        bar.update()
        value_range = IMAGE_RANGES[activation]
        image = {"shape": image_shape, "range": list(value_range) if value_range else None}
        if manifest_version >= 2:
            image["activation"] = activation
        from train.provenance import provenance

        manifest = {
            "manifest_version": manifest_version,
            "model": name,
            "kind": "vae",
            "latent_dim": prior.latent_dim,
            "prior": prior.to_json(),
            "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "source": source or {},
            "calibration": calibration.to_json(activation),
            "validation": {
                "samples": validation_samples,
                "seed": seed + 1,
                "reference": "Keras float32 decoder on the same prior samples",
                **rewrite_figures,
            },
            "image": image,
            **provenance(),
            "artifacts": entries + c_files,
        }
        write_json_atomic(staging / MANIFEST, manifest)
    return ExportResult(name, export_dir, manifest)


class Exporter:
    """Exports one model folder (``<artifacts>/<model>/``) into its ``export/``; numbers are checked by the CLI.

    The glue between this project's trained models and :func:`export_decoder`: the run set, the models rebuilt
    from train/model.py, the sub-pixel rewrite and the encoder's posterior calibration."""

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
        latent_split: int = LATENT_SPLIT_RADIX,
    ):
        self.calibration, self.data, self.latent_split = calibration, data, latent_split
        self.model_dir, self.batches, self.seed, self.progress = Path(model_dir), batches, seed, progress
        self.calibration_samples, self.validation_samples = calibration_samples, validation_samples
        self.export_dir = ensure_writable_dir(self.model_dir / EXPORT_DIR)

    def _write(self, staging: Path, variant: ArtifactSpec, data: bytes) -> Path:
        path = staging / variant.filename
        path.write_bytes(data)
        return path

    # Kept for callers of the per-artifact steps (tests/test_tolerance.py): export/artifacts.py's functions.
    _convert_decoder = staticmethod(convert_decoder)

    def _validate_decoder(self, path: Path, v: ArtifactSpec, z, reference, tolerance: Tolerance) -> dict:
        return validate_decoder(path, v, z, reference, tolerance)

    # ------------------------------------------------------------------------------------------ VAEs
    def export_vae(self, model_name: str) -> dict:
        from train.model import build_decoder, build_encoder, copy_weights, subpixel_decoder_from

        cfg = load_config(self.model_dir, model_name)
        run_id = verify_run_set(self.model_dir)  # one training run's files, or a one-line refusal
        # A decoder of another latent size fails in load_weights (shape mismatch) with a one-line error.
        decoder = load_keras(self.model_dir / "decoder.keras", model_name, lambda: build_decoder(cfg))
        encoder = load_keras(self.model_dir / "encoder.keras", model_name, lambda: build_encoder(cfg))
        calibration = calibration_latents(
            source=self.calibration,
            prior=cfg.prior,
            samples=self.calibration_samples,
            seed=self.seed,
            encoder=encoder,
            data=self.data,
        )
        result = export_decoder(
            decoder=decoder,
            name=model_name,
            prior=cfg.prior,
            out_dir=self.export_dir,
            calibration=calibration,
            graphs=(
                DecoderGraph(
                    Graph.TRANSPOSE, lambda b: copy_weights(decoder, build_decoder(cfg, batch_size=b))
                ),
                DecoderGraph(
                    Graph.SUBPIXEL, lambda b: subpixel_decoder_from(decoder, cfg, b), rewrite="subpixel"
                ),
            ),
            batches=self.batches,
            validation_samples=self.validation_samples,
            seed=self.seed,
            encoder=encoder,
            encoder_build=lambda b: copy_weights(encoder, build_encoder(cfg, batch_size=b)),
            latent_split=self.latent_split,
            source={
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
            manifest_version=MNIST_MANIFEST_VERSION,  # older runtimes read these manifests
            progress=self.progress,
        )
        return result.manifest

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
                "manifest_version": MNIST_MANIFEST_VERSION,
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
