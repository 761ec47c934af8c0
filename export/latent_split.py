"""The split latent of the full-int8 TFLite decoders (runtime/latent.py): the Keras model it is converted from,
its calibration latents, and the grid the converted file ended up with.

Why: an int8 latent puts a 2-D latent on a 256-point grid per axis, and on the validation split that grid
alone costs about 1 to 2.5 % of digit agreement (seed 1's vae2d_corr: the float decoder on int8-rounded
latents keeps 97.59 % of its digits). Two int8s per dimension (the grid point and LATENT_SPLIT_RADIX times the
remainder) make the grid 16 times finer; on the validation split (``python -m tools.quant_sweep
--latent-splits 1,8,16,32``, seed-0 Xeon models, ±3.5, p99.9) agreement went from 97.80 / 98.21 / 97.95 % to
98.65 / 98.85 / 98.96 % (vae2d / vae3d / vae2d_corr) and Δ−ELBO from +0.30 / +0.13 / +0.17 to
+0.14 / +0.09 / +0.11 nat; radix 8 and 32 were within 0.1 point of 16.
"""

from __future__ import annotations

import numpy as np

from runtime.latent import METADATA_NAME, LatentSplit

from .convert import _opcode

LATENT_SPLIT_RADIX = 16


def split_latent_model(model, radix: int):
    """A copy of ``model`` that takes the split latent: input (batch, 2d); its first layer, a Dense with kernel
    W, becomes a Dense with kernel [W; W / radix] (same bias, activation and name), the second half then put on
    the int8 values the first half quantizes to, divided by ``radix`` and rounded (:func:`derivable_kernel`).
    The layers after it are ``model``'s own (shared weights). ``model`` must be a chain: Input -> Dense -> one
    layer after another."""
    import keras

    layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    if not layers or not isinstance(layers[0], keras.layers.Dense) or len(model.inputs) != 1:
        raise ValueError("a split latent needs a decoder whose first layer is a Dense on its one input")
    first = layers[0]
    batch, d = model.inputs[0].shape[0], int(model.inputs[0].shape[-1])
    x_in = keras.Input((2 * d,), batch_size=batch, name=model.inputs[0].name)
    dense = keras.layers.Dense(
        first.units,
        activation=first.activation,
        use_bias=first.use_bias,
        name=first.name,
        dtype=first.dtype_policy,
    )
    x = dense(x_in)
    weights = first.get_weights()
    weights[0] = np.concatenate([weights[0], weights[0] / radix])
    dense.set_weights(weights)
    for layer in layers[1:]:
        x = layer(x)
    split = keras.Model(x_in, x, name=model.name)
    _check_same_function(model, split, radix, batch, d)
    weights[0] = derivable_kernel(weights[0][:d], radix)
    dense.set_weights(weights)
    return split


def derivable_kernel(kernel: np.ndarray, radix: int) -> np.ndarray:
    """[W; L] for a split latent's first FULLY_CONNECTED where L's int8 weights are exactly W's int8 weights
    divided by ``radix``, rounded half away from zero: with TFLite's per-tensor scale s = max|W| / 127 (L is
    smaller), W quantizes to q = round(W / s) and L = round(q / radix) * s quantizes to round(q / radix). The C
    generator then stores only W's int8 weights and derives L's as it sums (kernels/dense_row.h), half the
    layer's flash; L is still W / radix to within one int8 step of s. The generator checks the relation on the
    converted file and stores both halves where it does not hold."""
    w = np.asarray(kernel, np.float32)
    scale = np.float32(np.abs(w).max()) / np.float32(127.0)
    if not scale > 0:
        return np.concatenate([w, w])
    q = np.trunc(w / scale + np.copysign(np.float32(0.5), w))
    lo = np.sign(q) * np.floor((np.abs(q) + radix // 2) / radix)
    return np.concatenate([w, (lo * scale).astype(np.float32)])


def _check_same_function(model, split, radix: int, batch: int | None, d: int) -> None:
    """The split model on encoded latents equals the model in float (a non-chain model would not)."""
    rng = np.random.default_rng(0)
    z = rng.standard_normal((batch or 4, d)).astype(np.float32)
    grid = LatentSplit(radix, 0.03, 0)
    want = np.asarray(model(z))
    got = np.asarray(split(grid.encode(z)))
    if got.shape != want.shape or not np.allclose(got, want, rtol=1e-3, atol=1e-4 * (1 + np.abs(want).max())):
        raise ValueError(
            "the decoder is not a chain of layers after its first Dense; cannot split its latent"
        )


def tflite_grid(latents: np.ndarray) -> tuple[float, int]:
    """(scale, zero point) TFLite's min-max calibration gives an int8 tensor holding ``latents`` (and 0)."""
    lo, hi = min(0.0, float(latents.min())), max(0.0, float(latents.max()))
    scale = (hi - lo) / 255.0 or 1.0
    return scale, int(np.clip(round(-128 - lo / scale), -128, 127))


def split_calibration(latents: np.ndarray, radix: int) -> np.ndarray:
    """Calibration inputs of the split model: each latent encoded on the grid its own range gives. The
    converter's grid comes out within rounding of it (both halves lie inside the latents' range)."""
    scale, zero_point = tflite_grid(latents)
    return LatentSplit(radix, scale, zero_point).encode(latents)


def mark_split(model: bytes, radix: int) -> tuple[bytes, LatentSplit]:
    """``model`` with the radix in its metadata, and its split: the grid of its FULLY_CONNECTED's input."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    FULLY_CONNECTED = schema.BuiltinOperator.FULLY_CONNECTED
    obj = flatbuffer_utils.convert_bytearray_to_object(bytearray(model))
    sg = obj.subgraphs[0]
    fc = next(
        (op for op in sg.operators if _opcode(obj.operatorCodes[op.opcodeIndex]) == FULLY_CONNECTED), None
    )
    if fc is None:
        raise ValueError("no FULLY_CONNECTED op in the int8 decoder")
    q = sg.tensors[int(fc.inputs[0])].quantization
    grid = LatentSplit(radix, float(q.scale[0]), int(q.zeroPoint[0]))
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(str(radix).encode(), np.uint8)
    meta = schema.MetadataT()
    meta.name = METADATA_NAME.encode()
    meta.buffer = len(obj.buffers)
    obj.buffers.append(buffer)
    obj.metadata = [*(obj.metadata or []), meta]
    return bytes(flatbuffer_utils.convert_object_to_bytearray(obj)), grid
