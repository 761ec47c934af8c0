"""int8 activation ranges: the converter's min–max calibration, then each hidden activation's range narrowed.

TFLiteConverter calibrates every activation tensor to the min and max it sees on the representative latents.
A ReLU feature map's maximum is a rare value (vae2d, Xeon seed 0, latents clipped to ±3: the three hidden maps
reach 12.8, 48.7 and 83.3), so one int8 step is coarse for the values that carry the image. A ``RangeMethod``
other than ``MINMAX`` keeps the converter's calibration pass, reads every hidden activation's values on the same
latents (the float interpreter with all tensors preserved) and replaces its [min, max] by a narrower one: the
clip of least squared int8 error (``MSE``) or the values' quantiles (``P99_9`` etc.). The quantizer then derives
scales, zero points and bias scales from the new ranges exactly as from its own; values past a range saturate
in the producing op. The graph input (CALIBRATION_LATENT_CLIP) and the logits (LOGIT_CLIP) keep their own rules.
Which method export uses was chosen on the validation split (``python -m tools.quant_sweep``, docs/results.md).

Pure: bytes in, bytes out.
"""

from __future__ import annotations

import contextlib
import enum
import os
import sys
from collections.abc import Iterator

import numpy as np
from tensorflow.lite.python.schema_py_generated import BuiltinOperator


class RangeMethod(enum.StrEnum):
    MINMAX = "minmax"  # the converter's calibration as is
    MSE = "mse"  # each hidden activation clipped where its int8 rounding + clipping error is least
    # each hidden activation clipped at its (100 - q) % and q % quantiles
    P99 = "p99"
    P99_9 = "p99.9"
    P99_99 = "p99.99"
    P99_999 = "p99.999"

    @property
    def quantile(self) -> float | None:
        return float(self.value[1:]) if self.value.startswith("p") else None


# Clip candidates as fractions of the calibrated extreme; the search is per tensor and per side.
CLIP_FRACTIONS = np.linspace(0.05, 1.0, 96)
HISTOGRAM_BINS = 40_960


@contextlib.contextmanager
def native_output_silenced() -> Iterator[None]:
    """File descriptors 1 and 2 pointed at /dev/null for the block: what C++ code prints there is dropped
    (a failure still raises, with its message, in Python)."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 1)
            os.dup2(null.fileno(), 2)
        yield
    finally:
        for fd, copy in zip((1, 2), saved, strict=True):
            os.dup2(copy, fd)
            os.close(copy)


def calibrated_model(converter, chunks: list[np.ndarray]) -> bytes:
    """The converter's float model with each tensor's calibrated min/max attached (no quantization yet)."""
    converter._experimental_calibrate_only = True
    converter.representative_dataset = lambda: ([c] for c in chunks)
    return converter.convert()


def quantize_calibrated(calibrated: bytes, *, io_type: str, per_channel: bool = False) -> bytes:
    """What ``converter.convert()`` does after calibrating, with the project's per-tensor options."""
    import tensorflow as tf
    from tensorflow.lite.python import convert

    io = tf.int8 if io_type == "int8" else tf.float32
    with native_output_silenced():  # the quantizer prints its options from C++, past Python's redirects
        return convert.mlir_quantize(
            calibrated,
            disable_per_channel=not per_channel,
            input_data_type=io,
            output_data_type=io,
            disable_per_channel_for_dense_layers=True,
        )


def activation_values(
    calibrated: bytes, chunks: list[np.ndarray], tensors: list[int]
) -> dict[int, np.ndarray]:
    """Every listed tensor's values over the calibration chunks (float interpreter, all tensors preserved)."""
    import tensorflow as tf

    interp = tf.lite.Interpreter(model_content=calibrated, experimental_preserve_all_tensors=True)
    interp.allocate_tensors()
    inp = interp.get_input_details()[0]["index"]
    seen: dict[int, list[np.ndarray]] = {t: [] for t in tensors}
    for chunk in chunks:
        interp.set_tensor(inp, chunk)
        interp.invoke()
        for t in tensors:
            seen[t].append(interp.get_tensor(t).ravel().copy())
    return {t: np.concatenate(v) for t, v in seen.items()}


def int8_error(centers: np.ndarray, counts: np.ndarray, lo: float, hi: float) -> float:
    """Mean squared error of fake-quantizing a histogram's values to int8 over [lo, hi] (TFLite's asymmetric
    scheme: 256 steps of (hi − lo) / 255, zero exactly representable)."""
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    scale = (hi - lo) / 255.0
    if scale == 0.0:
        return float(np.average(centers**2, weights=counts))
    zp = np.clip(np.round(-128 - lo / scale), -128, 127)
    q = np.clip(np.round(centers / scale) + zp, -128, 127)
    return float(np.average((centers - (q - zp) * scale) ** 2, weights=counts))


def mse_range(values: np.ndarray, lo: float, hi: float) -> tuple[float, float]:
    """The [lo', hi'] ⊆ [lo, hi] of least int8 error, each side searched over CLIP_FRACTIONS of its extreme.

    The error is taken over a HISTOGRAM_BINS histogram of the values (bin centres), which resolves an int8 step
    of the narrowest candidate range ~8 times over.
    """
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    if hi == lo:
        return lo, hi
    counts, edges = np.histogram(values, bins=HISTOGRAM_BINS, range=(lo, hi))
    centers = 0.5 * (edges[:-1] + edges[1:])
    best_hi = hi
    if hi > 0:
        errs = [int8_error(centers, counts, lo, f * hi) for f in CLIP_FRACTIONS]
        best_hi = float(CLIP_FRACTIONS[int(np.argmin(errs))] * hi)
    best_lo = lo
    if lo < 0:
        errs = [int8_error(centers, counts, f * lo, best_hi) for f in CLIP_FRACTIONS]
        best_lo = float(CLIP_FRACTIONS[int(np.argmin(errs))] * lo)
    return best_lo, best_hi


def percentile_range(values: np.ndarray, lo: float, hi: float, q: float) -> tuple[float, float]:
    """[lo', hi'] at the values' (100 − q) % and q % quantiles, within [lo, hi] and holding 0."""
    return min(max(float(np.percentile(values, 100 - q)), lo), 0.0), max(
        min(float(np.percentile(values, q)), hi), 0.0
    )


def narrow_ranges(
    calibrated: bytes, chunks: list[np.ndarray], method: RangeMethod = RangeMethod.MSE
) -> tuple[bytes, dict[str, tuple]]:
    """``calibrated`` with each hidden activation's min/max replaced by its ``mse_range``; also returns
    {tensor name: (calibrated range, chosen range)} for the report."""
    from tensorflow.lite.tools import flatbuffer_utils

    obj = flatbuffer_utils.convert_bytearray_to_object(bytearray(calibrated))
    logistic = {
        i
        for i, code in enumerate(obj.operatorCodes)
        if max(code.builtinCode, code.deprecatedBuiltinCode) == BuiltinOperator.LOGISTIC
    }
    subgraph = obj.subgraphs[0]
    keep = {int(i) for i in subgraph.inputs}
    for op in subgraph.operators:
        if op.opcodeIndex in logistic:
            keep.update(int(i) for i in op.inputs)
            keep.update(int(i) for i in op.outputs)
    hidden = [
        i
        for i, t in enumerate(subgraph.tensors)
        if i not in keep
        and t.quantization is not None
        and t.quantization.min is not None
        and len(t.quantization.min) == 1
        and not (obj.buffers[t.buffer].data is not None and len(obj.buffers[t.buffer].data))
    ]
    values = activation_values(calibrated, chunks, hidden)
    chosen: dict[str, tuple] = {}
    for i in hidden:
        q = subgraph.tensors[i].quantization
        lo, hi = float(q.min[0]), float(q.max[0])
        if method is RangeMethod.MSE:
            new_lo, new_hi = mse_range(values[i], lo, hi)
        else:
            new_lo, new_hi = percentile_range(values[i], lo, hi, method.quantile)
        q.min, q.max = np.array([new_lo], np.float32), np.array([new_hi], np.float32)
        name = subgraph.tensors[i].name
        chosen[name.decode() if isinstance(name, bytes) else str(name)] = ((lo, hi), (new_lo, new_hi))
    return bytes(flatbuffer_utils.convert_object_to_bytearray(obj)), chosen
