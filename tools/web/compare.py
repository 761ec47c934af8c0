"""Compare the page's pixels with the reference the decoder it ran must match, at the level of the int8 logits.

Which reference depends on the file the page's decoder is (or was compiled from), never on the runtime's name:

    int8 I/O .tflite (vae-edge-wasm's int8 module)   TFLite Micro's int8 logits (firmware_sim's numpy reference)
    float I/O int8 (ONNX QDQ, TFLite ``_fio``)        runtime.Decoder's int8 logits on the same file
    float32                                          runtime.Decoder's pixels on the same file, within 1e-5

The float-I/O int8 decoders end in int8 logits -> DequantizeLinear / DEQUANTIZE -> a float Sigmoid / LOGISTIC.
The int8 body is integer arithmetic, but the float sigmoid is computed by different kernels in the browser's
WASM build and the Python runtime's x86 build, so pixels may differ in their last bits (measured: up to 9e-8).
Pixels near 0 change by less than that when an int8 logit moves one step, so an absolute pixel tolerance alone
could not see a different logit: this module recovers each pixel's int8 logit, logit(p) / scale, and compares
those exactly, on every pixel whose logit is recoverable (not saturated); the saturated rest is covered by the
absolute difference.
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


# Stated bounds on the largest pixel difference from the reference (docs/results.md, "In the browser").
INT8_MAX_ABS = 1e-6  # identical int8 logits; only the float sigmoid after them may differ (9e-8 measured)
FLOAT32_MAX_ABS = 1e-5  # other kernels sum in another order (4.2e-7 measured on the trained models)


def sigmoid_input_scale(path) -> float:
    """The step of the int8 logits a float-I/O int8 decoder dequantizes before its sigmoid: the scale of the
    ONNX DequantizeLinear that feeds its Sigmoid, or of the int8 tensor the TFLite DEQUANTIZE before its
    LOGISTIC reads."""
    if str(path).endswith(".tflite"):
        return _tflite_sigmoid_input_scale(path)
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    producers = {out: node for node in graph.node for out in node.output}
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    sigmoid = next(n for n in graph.node if n.op_type == "Sigmoid")
    dq = producers[sigmoid.input[0]]
    if dq.op_type != "DequantizeLinear":
        raise ValueError(f"{path}: the Sigmoid's input comes from {dq.op_type}, not DequantizeLinear")
    return float(inits[dq.input[1]])


def _tflite_sigmoid_input_scale(path) -> float:
    from firmware_sim.graph import load_graph

    g = load_graph(path)
    producers = {out: op for op in g.ops for out in op.outputs}
    logistic = next(op for op in g.ops if op.kind == "LOGISTIC")
    dq = producers.get(logistic.inputs[0])
    if dq is None or dq.kind != "DEQUANTIZE":
        raise ValueError(f"{path}: the LOGISTIC's input does not come from DEQUANTIZE")
    return float(g.tensors[dq.inputs[0]].scale[0])


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


@dataclass(frozen=True)
class Agreement:
    """How the page's pixels for some latents compare with their reference (see the module docstring)."""

    reference: str  # what the page was compared with
    max_abs: float  # largest pixel difference from the reference
    tolerance: float  # the stated bound on max_abs
    logits_identical: bool | None  # int8: every recoverable int8 logit equals the reference's; None: float32
    recovered: float | None  # int8: fraction of pixels whose logit was recovered
    passed: bool  # logits identical (int8) and max_abs within tolerance


def page_agreement(manifest, entry: dict, z: np.ndarray, page: np.ndarray, python: np.ndarray) -> Agreement:
    """Compare ``page`` (the page's pixels for latents ``z``, one row each) with the reference of ``entry``,
    the export's decoder the page ran or was compiled from; ``python`` is ``runtime.Decoder``'s pixels of
    ``entry`` for the same latents.

    An int8-I/O graph can only be the source of vae-edge-wasm's module, which runs TFLite Micro's arithmetic:
    its logits are compared with firmware_sim's integer reference (which runs int8 graphs only). A float-I/O
    int8 graph (QUANTIZE / DEQUANTIZE around the int8 body, or ONNX QDQ) is run by the browser runtime with the
    same kernels' arithmetic as the Python runtime's: compared with its int8 logits."""
    page = np.asarray(page, np.float32).reshape(len(z), -1)
    python = np.asarray(python, np.float32).reshape(len(z), -1)
    path = manifest.folder / entry["path"]
    if entry["precision"] != "int8":
        max_abs = float(np.abs(page - python).max())
        return Agreement(
            "runtime.Decoder, same file", max_abs, FLOAT32_MAX_ABS, None, None, max_abs <= FLOAT32_MAX_ABS
        )
    if entry["io"] == "int8":
        from .wasm import tflm_pixels

        reference, step = tflm_pixels(path, z)
        name = "TFLite Micro (firmware_sim's integer reference)"
    else:
        reference, step, name = python, sigmoid_input_scale(path), "runtime.Decoder, same file"
    same = compare_int8_pixels(page, reference, step)
    return Agreement(
        name,
        same.max_abs,
        INT8_MAX_ABS,
        same.logits_identical,
        same.recovered,
        same.logits_identical and same.max_abs <= INT8_MAX_ABS,
    )
