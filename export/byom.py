"""Export a decoder you trained yourself: any Keras decoder built from the allowed layers (docs/byom.md).

    python -m export --decoder my_decoder.keras --name mine --artifacts artifacts/
    python -m export --decoder dec.keras --encoder enc.keras --data ../shared/data/mnist.npz --name mine

    from export.byom import export_user_decoder
    result = export_user_decoder(decoder_path=Path("dec.keras"), name="mine", artifacts=Path("artifacts"))
    result.manifest_path            # artifacts/mine/export/manifest.json

The file is data from outside the project, so no code in it ever runs. Its config.json is read as plain JSON
first and every layer checked against export.preflight.ALLOWED_LAYERS (a Lambda, a custom class or an unknown
activation is one line naming the layer, and nothing is written); only then does Keras load it, with
``safe_mode=True``. The decoder is then rebuilt for conversion (:func:`deployment_model`): a static batch,
every BatchNormalization folded into the Dense or convolution before it, every UpSampling2D as a
NearestUpsampling (:func:`nearest_upsampling_class`) (Keras 3's UpSampling2D converts to TILE, which TFLite Micro lacks; this converts to
RESIZE_NEAREST_NEIGHBOR). Every artifact is validated against the Keras decoder within the bounds of
export/bounds.py, and the full-int8 decoders must load and run in the pinned TFLite Micro (:func:`check_tflm`).
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from runtime.errors import VaeEdgeError
from runtime.fileio import sha256_file
from runtime.prior import Prior
from runtime.vocab import ALL, ALL_MODELS, EXPORT_NAME_PATTERN, IO, ArtifactSpec, Format, Graph, Precision

from .chain import batch_norm_affine, graph_nodes, layer_chain
from .preflight import BYOM_FIX, MAX_WEIGHTS_FILE_BYTES, KerasFile, check_user_keras

if TYPE_CHECKING:  # export.pipeline imports TensorFlow: it is imported once the files passed the checks
    from .pipeline import ExportResult

LINEAR_LAYERS = ("Dense", "Conv2D", "Conv2DTranspose", "DepthwiseConv2D")
# The largest arena the TFLite Micro check offers: larger than any decoder here needs, so a refusal means an op
# TFLM cannot run, not a small arena.
TFLM_CHECK_ARENA_BYTES = 64 << 20
MNIST_SHAPE = (28, 28, 1)


def check_name(name: str) -> str:
    """``--name``: a plain folder name, not one of the project's own models (their folders hold training runs)."""
    if not re.fullmatch(EXPORT_NAME_PATTERN, name) or name in (".", ".."):
        raise VaeEdgeError(
            f"--name {name!r} is not a plain name; use 1-64 letters, digits, _ . - (not starting with . or -)"
        )
    if name in (*ALL_MODELS, ALL):
        raise VaeEdgeError(f"--name {name} is one of the project's own models; choose another name")
    return name


def parse_covariance(text: str) -> tuple[tuple[float, ...], ...]:
    """``--prior-cov "1,0.4;0.4,0.5"``: rows separated by ``;``, entries by ``,``."""
    try:
        rows = tuple(tuple(float(v) for v in row.split(",")) for row in text.split(";"))
    except ValueError:
        raise VaeEdgeError(
            f"--prior-cov {text!r} is not a matrix of numbers; write rows separated by ';', e.g. '1,0.4;0.4,0.5'"
        ) from None
    return rows


def user_prior(cov, latent_dim: int) -> Prior:
    """N(0, Σ) over the decoder's latent size: Σ = ``cov`` (checked symmetric positive definite) or I."""
    if cov is None:
        return Prior.isotropic(latent_dim)
    try:
        return Prior(latent_dim, tuple(tuple(float(v) for v in row) for row in cov))
    except (VaeEdgeError, ValueError) as exc:
        raise VaeEdgeError(f"--prior-cov rejected: {exc}") from None


def private_copy(path: Path, folder: Path, what: str) -> Path:
    """The file copied into ``folder`` (capped in size): what is checked is what Keras loads and what is hashed."""
    if not path.is_file():
        raise VaeEdgeError(f"{what} {path} not found; pass the .keras file your model was saved to")
    if path.stat().st_size > MAX_WEIGHTS_FILE_BYTES:
        raise VaeEdgeError(f"{what} {path} is larger than {MAX_WEIGHTS_FILE_BYTES} bytes; {BYOM_FIX}")
    copy = folder / f"{what.strip('-')}.keras"
    with open(path, "rb") as src, open(copy, "wb") as dst:
        shutil.copyfileobj(src, dst)
    return copy


def load_user_model(info: KerasFile, what: str, shown: Path):
    """Keras loads the checked file with ``safe_mode=True`` and without compiling it."""
    import keras

    try:
        return keras.models.load_model(info.path, compile=False, safe_mode=True)
    except (
        Exception
    ) as exc:  # a checked file that still does not load (bad weights, shape mismatch): one line
        reason = " ".join(str(exc).split())[:200]
        raise VaeEdgeError(
            f"{what} {shown}: Keras cannot load it ({type(exc).__name__}: {reason}); {BYOM_FIX}"
        ) from None


def foldable_batch_norms(model) -> dict[str, object]:
    """{name of the layer before it: BatchNormalization layer} for every BatchNormalization of ``model``;
    one that cannot be folded (not right after a Dense or convolution without activation, used by nothing else)
    is refused."""
    _, nodes, _ = graph_nodes(model)
    producer = {output: layer for layer, _, output, _ in nodes}
    readers: dict[int, int] = {}
    for _, inputs, _, _ in nodes:
        for t in inputs:
            readers[t] = readers.get(t, 0) + 1
    folds = {}
    for layer, inputs, _, _ in nodes:
        if type(layer).__name__ != "BatchNormalization":
            continue
        before = producer.get(inputs[0])
        kind = type(before).__name__ if before is not None else "the input"
        ok = (
            before is not None
            and kind in LINEAR_LAYERS
            and before.get_config()["activation"] == "linear"
            and readers[inputs[0]] == 1
            and before.name not in folds
        )
        if not ok:
            named = f"{kind} {before.name!r}" if before is not None else kind
            if kind in LINEAR_LAYERS and before.get_config()["activation"] != "linear":
                named += f" (activation {before.get_config()['activation']})"
            raise VaeEdgeError(
                f"BatchNormalization {layer.name!r} follows {named}: export folds BatchNormalization into a "
                "Dense or convolution layer right before it that has no activation and feeds nothing else; "
                "move it there (docs/byom.md)"
            )
        folds[before.name] = layer
    return folds


def folded_weights(layer, bn) -> list[np.ndarray]:
    """``layer``'s kernel and bias with the BatchNormalization ``bn`` after it folded in (float64, then float32)."""
    scale, shift, _ = batch_norm_affine(bn)
    weights = [np.asarray(w, np.float64) for w in layer.get_weights()]
    kernel = weights[0]
    kind = type(layer).__name__
    if kind == "Conv2DTranspose":  # (kh, kw, out, in)
        kernel = kernel * scale[None, None, :, None]
    elif kind == "DepthwiseConv2D":  # (kh, kw, in, multiplier): output channel c·multiplier + m
        kernel = kernel * scale.reshape(kernel.shape[2], kernel.shape[3])[None, None]
    else:  # Dense (in, out), Conv2D (kh, kw, in, out)
        kernel = kernel * scale
    bias = weights[1] if len(weights) > 1 else np.zeros_like(scale)
    return [kernel.astype(np.float32), (bias * scale + shift).astype(np.float32)]


@functools.cache
def nearest_upsampling_class():
    """The class NearestUpsampling, defined once on first use: it needs TensorFlow, which this module's
    importers (the CLI, before its checks) must not load."""
    import keras
    import tensorflow as tf

    class NearestUpsampling(keras.layers.Layer):
        """UpSampling2D(size, "nearest") as TensorFlow's ResizeNearestNeighbor: TFLite RESIZE_NEAREST_NEIGHBOR,
        ONNX Resize. The same values: an integer factor repeats each pixel. Asymmetric coordinates (no
        half-pixel centres), because tf2onnx writes half-pixel centres as an attribute ONNX Runtime warns about
        each time it loads the model; export's own layer, never loaded from a file."""

        def __init__(self, size=(2, 2), **kwargs):
            super().__init__(**kwargs)
            self.size = tuple(int(v) for v in size)

        def call(self, x):
            height, width = x.shape[1] * self.size[0], x.shape[2] * self.size[1]
            return tf.raw_ops.ResizeNearestNeighbor(
                images=x, size=[height, width], align_corners=False, half_pixel_centers=False
            )

        def compute_output_shape(self, shape):
            return (shape[0], shape[1] * self.size[0], shape[2] * self.size[1], shape[3])

        def get_config(self):
            return {**super().get_config(), "size": self.size}

    return NearestUpsampling


def deployment_model(model, batch: int | None = None):
    """``model`` rebuilt for conversion: static ``batch``, BatchNormalization folded into the layer before it,
    UpSampling2D as NearestUpsampling (:func:`nearest_upsampling_class`). Every other layer is rebuilt from its config, with its weights."""
    import keras

    folds = foldable_batch_norms(model)
    source, nodes, outs = graph_nodes(model)
    inp = model.inputs[0]
    x_in = keras.Input(tuple(inp.shape[1:]), batch_size=batch, name=inp._keras_history[0].name)
    tensors = {source: x_in}
    for layer, inputs, output, _ in nodes:
        kind = type(layer).__name__
        args = [tensors[t] for t in inputs]
        if kind == "BatchNormalization":  # folded into the layer before it (foldable_batch_norms)
            tensors[output] = args[0]
            continue
        config, weights = layer.get_config(), layer.get_weights()
        if kind == "UpSampling2D":
            rebuilt = nearest_upsampling_class()(config["size"], name=layer.name)
        elif layer.name in folds:
            rebuilt = type(layer).from_config({**config, "use_bias": True})
            weights = folded_weights(layer, folds[layer.name])
        else:
            rebuilt = type(layer).from_config(config)
        tensors[output] = rebuilt(args if kind in ("Add", "Concatenate") else args[0])
        if weights:
            rebuilt.set_weights(weights)
    outputs = [tensors[t] for t in outs]
    return keras.Model(x_in, outputs[0] if len(outputs) == 1 else outputs, name=model.name)


def check_decoder(model) -> str:
    """Refuse a decoder export cannot handle (one line); its output activation (sigmoid, tanh or none)."""
    ins, outs = model.inputs, model.outputs
    if len(ins) != 1 or len(ins[0].shape) != 2 or ins[0].shape[1] is None:
        raise VaeEdgeError(
            f"the decoder takes {[tuple(t.shape) for t in ins]}; it must take one latent vector per row, "
            "shape (batch, latent size)"
        )
    if len(outs) != 1 or len(outs[0].shape) != 4 or any(d is None for d in outs[0].shape[1:]):
        raise VaeEdgeError(
            f"the decoder outputs {[tuple(t.shape) for t in outs]}; it must output one image per row, "
            "shape (batch, height, width, channels)"
        )
    try:
        chain = layer_chain(model)
    except ValueError as exc:
        raise VaeEdgeError(f"the decoder cannot be exported: {exc}; {BYOM_FIX}") from None
    foldable_batch_norms(model)
    return chain.activation


def check_encoder(encoder, decoder) -> None:
    """The encoder must take the decoder's images and give (z_mean, z_log_var) of its latent size."""
    image, latent = tuple(decoder.outputs[0].shape[1:]), decoder.inputs[0].shape[1]
    ins, outs = encoder.inputs, encoder.outputs
    if len(ins) != 1 or tuple(ins[0].shape[1:]) != image:
        raise VaeEdgeError(
            f"the encoder takes {[tuple(t.shape) for t in ins]}, not the decoder's images {image}; pass the "
            "encoder trained with this decoder"
        )
    if len(outs) != 2 or any(tuple(t.shape[1:]) != (latent,) for t in outs):
        raise VaeEdgeError(
            f"the encoder outputs {[tuple(t.shape) for t in outs]}; it must output z_mean and z_log_var, "
            f"each (batch, {latent})"
        )
    try:
        graph_nodes(encoder)
        foldable_batch_norms(encoder)
    except ValueError as exc:
        raise VaeEdgeError(f"the encoder cannot be exported: {exc}; {BYOM_FIX}") from None


def check_tflm(spec: ArtifactSpec, path: Path) -> None:
    """Refuse a full-int8 (int8 I/O) decoder that the pinned TFLite Micro cannot load and run (an op it lacks:
    one line naming it)."""
    if (spec.format, spec.precision, spec.io) != (Format.TFLITE, Precision.INT8, IO.INT8):
        return
    from firmware_sim.tflm import _runtime, captured_stderr

    runtime = _runtime()
    data = path.read_bytes()
    with captured_stderr() as log:
        try:
            interpreter = runtime.Interpreter.from_bytes(data, arena_size=TFLM_CHECK_ARENA_BYTES)
            shape = [spec.batch, *convert_input_shape(data)]
            interpreter.set_input(np.zeros(shape, np.int8), 0)
            interpreter.invoke()
            error = None
        except (RuntimeError, ValueError, TypeError, IndexError) as exc:
            error = " ".join(str(exc).split())
    if error is not None:
        said = [line.strip() for line in log[0].splitlines() if line.strip()]
        missing = [line for line in said if "Didn't find op" in line or "not supported" in line.lower()]
        reason = (missing or said or [error])[0]
        raise VaeEdgeError(
            f"TFLite Micro cannot run {spec.filename} ({reason}); the decoder uses an op microcontrollers lack: "
            f"{BYOM_FIX}"
        )


def convert_input_shape(data: bytes) -> list[int]:
    """The per-row input shape of a TFLite flatbuffer (its first input, without the batch)."""
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(data))
    graph = model.subgraphs[0]
    return [int(d) for d in graph.tensors[int(graph.inputs[0])].shape[1:]]


def export_user_decoder(
    *,
    decoder_path: Path,
    name: str,
    artifacts: Path,
    encoder_path: Path | None = None,
    prior_cov=None,
    calibration: str | None = None,
    calibration_samples: int = 5000,
    validation_samples: int = 1000,
    batch: int = 64,
    seed: int = 0,
    data: str | os.PathLike | None = None,
    progress: bool = False,
) -> ExportResult:
    """Export ``decoder_path`` (and ``encoder_path``) into ``artifacts/<name>/export/``: the artifact set and
    manifest of the project's own models, for a decoder of any allowed layers (module docstring).

    ``calibration``: "posterior" (the encoder on MNIST training images from ``data``; the default with an
    encoder) or "prior" (the default without). ``prior_cov``: Σ of the prior N(0, Σ), rows of numbers (default I).
    Refusals are one-line VaeEdgeErrors, raised before anything is written; TensorFlow is imported only once
    the files passed the plain-JSON check.
    """
    check_name(name)
    calibration = calibration or ("posterior" if encoder_path is not None else "prior")
    if calibration == "posterior" and encoder_path is None:
        raise VaeEdgeError("--calibration posterior encodes training images: pass --encoder, or use prior")
    with tempfile.TemporaryDirectory(prefix="vae-edge-byom-") as tmp:
        copy = private_copy(Path(decoder_path), Path(tmp), "--decoder")
        decoder_file = check_user_keras(copy, "--decoder", shown=Path(decoder_path))
        encoder_file = None
        if encoder_path is not None:
            copy = private_copy(Path(encoder_path), Path(tmp), "--encoder")
            encoder_file = check_user_keras(copy, "--encoder", shown=Path(encoder_path))
        if decoder_file.latent_dim is not None:  # Σ checked against the latent size before TensorFlow starts
            user_prior(prior_cov, decoder_file.latent_dim)
        from .preflight import quiet_tensorflow_import

        quiet_tensorflow_import()
        from .pipeline import EXPORT_DIR, DecoderGraph, calibration_latents, export_decoder

        decoder = load_user_model(decoder_file, "--decoder", Path(decoder_path))
        check_decoder(decoder)
        prior = user_prior(prior_cov, int(decoder.inputs[0].shape[1]))
        encoder = None
        if encoder_file is not None:
            encoder = load_user_model(encoder_file, "--encoder", Path(encoder_path))
            check_encoder(encoder, decoder)
            if calibration == "posterior" and tuple(encoder.inputs[0].shape[1:]) != MNIST_SHAPE:
                raise VaeEdgeError(
                    f"--calibration posterior encodes MNIST training images (28x28x1), but the encoder takes "
                    f"{tuple(encoder.inputs[0].shape[1:])}; pass --calibration prior"
                )
        source = {"decoder": {"path": Path(decoder_path).name, "sha256": sha256_file(decoder_file.path)}}
        if encoder_file is not None:
            source["encoder"] = {"path": Path(encoder_path).name, "sha256": sha256_file(encoder_file.path)}
    cal = calibration_latents(
        source=calibration, prior=prior, samples=calibration_samples, seed=seed, encoder=encoder, data=data
    )
    out_dir = Path(artifacts) / name / EXPORT_DIR
    created = [p for p in (Path(artifacts), out_dir.parent, out_dir) if not p.exists()]
    try:
        return export_decoder(
            decoder=decoder,
            name=name,
            prior=prior,
            out_dir=out_dir,
            calibration=cal,
            # One graph, the decoder as given ("transpose": the decoder as trained), rebuilt for conversion.
            graphs=(
                DecoderGraph(Graph.TRANSPOSE, lambda b: deployment_model(decoder, b), "rebuilt", exact=False),
            ),
            batches=(1, batch),
            validation_samples=validation_samples,
            seed=seed,
            encoder=encoder,
            encoder_build=(lambda b: deployment_model(encoder, b)) if encoder is not None else None,
            source=source,
            fused_relu=False,
            artifact_check=check_tflm,
            progress=progress,
        )
    except BaseException:
        # A refused first export leaves no empty folders behind (a previous export stays: staged_folder).
        for folder in reversed(created):
            with contextlib.suppress(OSError):
                folder.rmdir()  # only if still empty
        raise
