"""Compare the page's int8 pixels with the Python runtime's at the level of the int8 logits.

The int8 ONNX decoders end in int8 logits -> DequantizeLinear -> a float Sigmoid. The int8 body is integer
arithmetic, but the float Sigmoid is computed by different kernels in onnxruntime-web (WASM) and onnxruntime
(x86 SIMD), so pixels may differ in their last bits (measured: up to 9e-8). Pixels near 0 change by less than
that when an int8 logit moves one step, so an absolute pixel tolerance alone could not see a different logit:
this module recovers each pixel's int8 logit, logit(p) / scale, and compares those exactly, on every pixel
whose logit is recoverable (not saturated); the saturated rest is covered by the absolute difference.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Above this probability float32 keeps too few bits of 1 - p to recover the logit to a fraction of a step.
RECOVERABLE_BELOW = 1 - 1e-5
# onnxruntime's logistic kernel (MLAS, in both builds) keeps an absolute precision of about 6e-8 near 0 (its
# outputs there are multiples of 2^-24..2^-23), so only brighter pixels carry their logit to a small fraction
# of a step; the darker ones are compared by their absolute difference only.
RECOVERABLE_ABOVE = 1e-4


def sigmoid_input_scale(onnx_path) -> float:
    """The scale of the DequantizeLinear that feeds the graph's Sigmoid (the int8 logits' step)."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(onnx_path)).graph
    producers = {out: node for node in graph.node for out in node.output}
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    sigmoid = next(n for n in graph.node if n.op_type == "Sigmoid")
    dq = producers[sigmoid.input[0]]
    if dq.op_type != "DequantizeLinear":
        raise ValueError(f"{onnx_path}: the Sigmoid's input comes from {dq.op_type}, not DequantizeLinear")
    return float(inits[dq.input[1]])


@dataclass(frozen=True)
class Int8Comparison:
    logits_identical: bool  # every recoverable pixel has the same int8 logit in both
    recovered: float  # fraction of pixels whose logit was recovered (the rest are saturated, near 0 or 1)
    off_grid: float  # largest distance of a recovered logit / scale from an integer (sanity: << 0.5)
    max_abs: float  # largest pixel difference


def _recoverable(x: np.ndarray) -> np.ndarray:
    return (x > RECOVERABLE_ABOVE) & (x < RECOVERABLE_BELOW)


def _recovered_logits(page, python, scale: float):
    """Both pixel arrays as float64, the mask of pixels recoverable in both, and their logits in int8 steps."""
    p = np.asarray(page, np.float64).ravel()
    q = np.asarray(python, np.float64).ravel()
    ok = _recoverable(p) & _recoverable(q)
    with np.errstate(divide="ignore"):
        lp = (np.log(p[ok]) - np.log1p(-p[ok])) / scale
        lq = (np.log(q[ok]) - np.log1p(-q[ok])) / scale
    return p, q, ok, lp, lq


def compare_int8_pixels(page: np.ndarray, python: np.ndarray, scale: float) -> Int8Comparison:
    p, q, ok, lp, lq = _recovered_logits(page, python, scale)
    # A pixel inside the recoverable range in one but not the other is a logit difference near saturation.
    same_side = np.array_equal(_recoverable(p), _recoverable(q))
    return Int8Comparison(
        logits_identical=bool(same_side and np.array_equal(np.round(lp), np.round(lq))),
        recovered=float(ok.mean()),
        off_grid=float(
            max(np.abs(lp - np.round(lp)).max(initial=0), np.abs(lq - np.round(lq)).max(initial=0))
        ),
        max_abs=float(np.abs(p - q).max()),
    )


def max_logit_steps(page: np.ndarray, python: np.ndarray, scale: float) -> int:
    """The largest difference, in int8 logit steps, between two decoders' pixels where both are recoverable."""
    _, _, _, lp, lq = _recovered_logits(page, python, scale)
    return int(np.abs(np.round(lp) - np.round(lq)).max(initial=0))
