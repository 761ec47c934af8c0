"""Generate a self-contained C99 int8 decoder from a full-int8 batch-1 ``.tflite`` decoder, bit-exact with TFLM.

    python -m firmware_sim.codegen artifacts/vae2d/export --graph subpixel --out build/firmware
    python -m firmware_sim.codegen path/to/decoder_transpose_int8_b1.tflite --name vae2d --out build/fw

Writes ``<model>_decoder.h`` and ``<model>_decoder.c``: ``<model>_decode(z_int8, logits_int8)`` (integer only, no
malloc, static buffers sized here), ``<model>_sample(z_float, pixels)`` (latent quantization, decode, the
256-entry pixel table), the prior's Cholesky factor and the latent quantization in the header.

How: the graph is lowered to a chain of *phase convolutions* over logical images (rows × columns × channels).
Output pixel (P·Y + py, P·X + px) of a layer reads input pixels (Q·Y + dy, Q·X + dx) for the taps (dy, dx) of
its phase (py, px); pixels outside the input contribute nothing. A stride-2 TRANSPOSE_CONV in gather form, a
PAD → CONV_2D → DEPTH_TO_SPACE sub-pixel layer and a stride-1 convolution are all this one form, so both graphs
share one kernel; taps whose weights are all zero (the sub-pixel kernels' padding) are not stored. Every layer
computes one output row at a time when its consumer asks for it, so each activation lives in a ring of a few
rows. The arithmetic is the one :mod:`firmware_sim.reference` reproduces (int32 sums, int32 bias, TFLite's
MultiplyByQuantizedMultiplier per output channel, output zero point, clamp); integer sums are exact, so the
order of accumulation does not change a byte. :func:`run_plan` evaluates the lowered form in numpy, so the
lowering is checked against the reference without a compiler.

The C picks its inner loops at compile time: Cortex-M4 DSP (SMLAD), portable C (``-DVAE_EDGE_PORTABLE``), and
128-bit SIMD on x86 (SSE2) and WebAssembly (``-msimd128``). The SIMD build reads its own copy of the weights
(int16, in blocks of 16 output channels, :func:`simd_weights`) so that two pixels' activation pairs can be
broadcast against sixteen channels with no horizontal sums; WebAssembly also requantizes four outputs at once.

The graph is not trusted (issue 23): before any C is written, :func:`check_graph` recomputes every op's output
shape from its input, constants and options and checks it against the file, with each buffer's size, every
index, stride, kernel, block, padding, scale and zero point, within the bounds below (MAX_*); :func:`check_plan`
bounds the multipliers (shift in [-31, 30]) and every int32 sum the C forms. A refusal is one
:class:`~firmware_sim.graph.InvalidGraphError` line; the .h and .c are replaced together or not at all.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from runtime.cli import cli_main, parser
from runtime.errors import VaeEdgeError
from runtime.vocab import Graph as GraphKind

from .fixedpoint import multiply_by_quantized_multiplier
from .graph import REEXPORT, Graph, InvalidGraphError, Tensor, UnsupportedOpError, load_graph
from .reference import (
    activation_range,
    fully_connected_multiplier,
    per_channel_multipliers,
    same_padding,
)

GRAPHS = (GraphKind.TRANSPOSE.value, GraphKind.SUBPIXEL.value)
IMAGE_SHAPE = (28, 28, 1)
SUPPORTED_OPS = ("FULLY_CONNECTED", "RESHAPE", "PAD", "CONV_2D", "TRANSPOSE_CONV", "DEPTH_TO_SPACE")

# What the generator accepts from a graph (issue 23: the C must never trust the file). The project's decoders
# are far inside every bound (latent 2-3, 7x7..28x28 images of <= 64 channels, 3x3 kernels, stride 2, about
# 40 KB of weights); the bounds keep a hostile file from asking for gigabytes of C or of numpy.
MAX_LATENT_DIM = 512  # the header holds the prior's D x D Cholesky factor
MAX_DIM = 4096  # any dimension of any activation or weight tensor
MAX_IMAGE_VALUES = 1 << 20  # H·W·C of any activation (run_plan holds whole images)
MAX_KERNEL = 16  # kernel rows and columns
MAX_STRIDE = 8  # TRANSPOSE_CONV stride, DEPTH_TO_SPACE block
MAX_PAD = 16  # PAD on each side
MAX_WEIGHT_BYTES = 4 << 20  # all weights and biases: more than a Cortex-M4's flash
SCALE_RANGE = (1e-12, 1e6)  # any quantization scale the generator reads
ACTIVATIONS = ("NONE", "RELU", "RELU6", "RELU_N1_TO_1")
# The largest |int32 sum| a requantization may see: the C adds the output zero point (up to 128 in size) to
# MultiplyByQuantizedMultiplier's result in int32, so the sum (shifted left by a positive shift) must leave
# that room; then no int32 operation of the generated C can overflow (UBSan's "signed integer overflow").
ACC_LIMIT = 2**31 - 256
# (x - input zero point) of an int8 x and an int8 zero point.
MAX_INPUT_OFFSET = 255


# ------------------------------------------------------------------------------------------- lowered form
@dataclass(frozen=True)
class DenseLayer:
    """FULLY_CONNECTED (per-tensor) whose output is read as an image of ``out_shape`` (H, W, C)."""

    weights: np.ndarray  # (N, D) int8
    bias: np.ndarray  # (N,) int64
    in_zp: int
    mult: int
    shift: int
    out_zp: int
    lo: int
    hi: int
    out_shape: tuple[int, int, int]

    @property
    def real_macs(self) -> int:
        return int(self.weights.size)


@dataclass(frozen=True)
class Phase:
    taps: tuple[tuple[int, int], ...]  # (dy, dx) in input pixels, relative to (Q·Y, Q·X)
    weights: np.ndarray  # (OC, ntaps, IC) int8
    bias: np.ndarray  # (OC,) int64
    mult: np.ndarray  # (OC,) int64
    shift: np.ndarray  # (OC,) int64


@dataclass(frozen=True)
class ConvLayer:
    """out[P·Y+py, P·X+px, c] = requantize(bias + Σ_taps Σ_i w · (in[Q·Y+dy, Q·X+dx, i] − in_zp))."""

    kind: str  # the TFLite op it came from, for reports
    in_shape: tuple[int, int, int]
    in_zp: int
    out_shape: tuple[int, int, int]
    P: int
    Q: int
    phases: tuple[Phase, ...]  # index py·P + px
    out_zp: int
    lo: int
    hi: int

    def phase_pixels(self, py: int, px: int) -> tuple[int, int]:
        oh, ow, _ = self.out_shape
        return (oh - py + self.P - 1) // self.P, (ow - px + self.P - 1) // self.P

    @property
    def real_macs(self) -> int:
        """Products of a real (stored) weight and an input pixel inside the image."""
        ih, iw, ic = self.in_shape
        total = 0
        for p, ph in enumerate(self.phases):
            ny, nx = self.phase_pixels(p // self.P, p % self.P)
            ys, xs = np.arange(ny) * self.Q, np.arange(nx) * self.Q
            for dy, dx in ph.taps:
                inside = int(np.count_nonzero((ys + dy >= 0) & (ys + dy < ih))) * int(
                    np.count_nonzero((xs + dx >= 0) & (xs + dx < iw))
                )
                total += inside * ic * ph.weights.shape[0]
        return total

    @property
    def stored_weights(self) -> int:
        return int(sum(ph.weights.size for ph in self.phases))


@dataclass(frozen=True)
class DecoderPlan:
    name: str
    graph_kind: str
    source: str
    source_sha256: str
    latent_dim: int
    latent_scale: float
    latent_zp: int
    logits_scale: float
    logits_zp: int
    dense: DenseLayer
    convs: tuple[ConvLayer, ...]

    @property
    def real_macs(self) -> int:
        return self.dense.real_macs + sum(c.real_macs for c in self.convs)


# ----------------------------------------------------------------------------------------------- lowering
@dataclass
class _View:
    """How a graph tensor maps onto a lowered layer's logical output image: physical pixel (y, x), channel
    (qy·b + qx)·C + i is logical pixel (b·(y − pad_t) + qy, b·(x − pad_l) + qx), channel i."""

    layer: int
    block: int
    pad_t: int
    pad_l: int


def _check_int8(t: Tensor, what: str) -> None:
    if t.dtype is not np.int8:
        raise UnsupportedOpError(
            f"{what} is {np.dtype(t.dtype).name}, not int8: give a full-int8 decoder "
            "(decoder_<graph>_int8_b1.tflite from python -m export), not a float or dynamic-range model"
        )


def _refuse(what: str) -> InvalidGraphError:
    return InvalidGraphError(
        f"{what}; the C generator refuses it (a corrupted or hand-edited model?): {REEXPORT}"
    )


def _check_quant(t: Tensor, what: str, *, per_channel: int = 0) -> None:
    """Scales finite and within SCALE_RANGE; an activation (per_channel 0) per-tensor with an int8 zero point,
    a weight tensor one scale or one per output channel (``per_channel``) with zero points 0."""
    scale, zp = np.asarray(t.scale, np.float64), np.asarray(t.zero_point)
    n = len(scale)
    if per_channel:
        if n not in (1, per_channel) or len(zp) not in (1, n):
            raise _refuse(
                f"{what} has {n} scales and {len(zp)} zero points for {per_channel} output channels"
            )
        if n > 1 and t.quantized_dimension != 0:
            raise _refuse(
                f"{what} is quantized along dimension {t.quantized_dimension}, not its output channels"
            )
        if np.any(zp != 0):
            raise UnsupportedOpError(f"{what} has nonzero zero points (asymmetric weights are not supported)")
    elif n != 1 or len(zp) != 1:
        raise _refuse(f"{what} has {n} scales and {len(zp)} zero points; an activation has one of each")
    elif not -128 <= int(zp[0]) <= 127:
        raise _refuse(f"{what} has zero point {int(zp[0])}, outside int8's -128..127")
    lo, hi = SCALE_RANGE
    bad = [float(v) for v in scale if not (np.isfinite(v) and lo <= v <= hi)]
    if bad:
        raise _refuse(f"{what}: scale {bad[0]:.6g}, not a finite number within [{lo:g}, {hi:g}]")


def _check_shape(shape: tuple[int, ...], what: str) -> None:
    if any(not 1 <= d <= MAX_DIM for d in shape):
        raise _refuse(f"{what} has shape {shape}; every dimension must be within 1..{MAX_DIM}")


def _const(graph: Graph, i: int, what: str, dtype, rank: int) -> Tensor:
    """The constant tensor ``i`` of ``dtype`` and ``rank`` dimensions (its buffer's size is checked on load)."""
    if i < 0:
        raise _refuse(f"{what} is missing")
    t = graph.tensors[i]
    if not t.is_constant:
        raise _refuse(f"{what} (tensor {i} {t.name!r}) has no data; it must be a constant of the file")
    if t.dtype is not dtype or len(t.shape) != rank:
        raise _refuse(
            f"{what} (tensor {i} {t.name!r}) is {np.dtype(t.dtype).name} of shape {t.shape}; "
            f"it must be {np.dtype(dtype).name} with {rank} dimensions"
        )
    return t


def _option(op, key: str, kind=int):
    if key not in op.options:
        raise _refuse(f"op {op.index} ({op.kind}) has no {key} option")
    return kind(op.options[key])


def _activation_input(op) -> int:
    return op.inputs[2] if op.kind == "TRANSPOSE_CONV" else op.inputs[0]


# (fewest, most) inputs of each op the generator lowers: the activation, then constants (optional bias last).
_ARITY = {
    "FULLY_CONNECTED": (2, 3),
    "RESHAPE": (1, 2),
    "PAD": (2, 2),
    "CONV_2D": (2, 3),
    "TRANSPOSE_CONV": (3, 4),
    "DEPTH_TO_SPACE": (1, 1),
}


def check_graph(graph: Graph) -> None:
    """Everything the lowering and the emitted C rely on, checked against the file's own numbers before any
    C exists; raises one InvalidGraphError (UnsupportedOpError for a real but unsupported variant) naming it.

    How: the ops must form one chain from the latent to the image (each reads the previous op's output);
    every op's constants are present, typed and shaped as the op's rules say (FULLY_CONNECTED weights (N, D)
    with D the latent size, convolution filters whose input channels are the image's, biases one int32 per
    output channel); each op's output shape is recomputed from its input and options and must equal the
    tensor's; strides, blocks, kernels, pads and every dimension are within this module's bounds; every scale
    is finite and in range, every activation zero point int8, data-movement ops keep their input's
    quantization (as converters write them). :func:`check_plan` then bounds the multipliers and sums."""
    if len(graph.inputs) != 1 or len(graph.outputs) != 1:
        raise UnsupportedOpError("the C generator needs a decoder with one input and one output")
    tin = graph.tensors[graph.inputs[0]]
    if len(tin.shape) == 2 and tin.shape[0] == 1 and not 1 <= tin.shape[1] <= MAX_LATENT_DIM:
        raise _refuse(f"the latent size is {tin.shape[1]}; the generator takes 1..{MAX_LATENT_DIM}")
    if tin.is_constant:
        raise _refuse("the model input is a constant")
    produced = {graph.inputs[0]}
    prev = graph.inputs[0]
    weight_bytes = 0
    for op in graph.ops:
        if op.kind not in _ARITY:
            continue  # lower() names the unsupported op
        lo, hi = _ARITY[op.kind]
        where = f"op {op.index} ({op.kind})"
        if not lo <= len(op.inputs) <= hi or len(op.outputs) != 1:
            raise _refuse(f"{where} has {len(op.inputs)} inputs and {len(op.outputs)} outputs")
        x_i, o_i = _activation_input(op), op.outputs[0]
        if x_i != prev:
            raise UnsupportedOpError(
                f"{where} reads tensor {x_i}, not the previous op's output {prev}: the generator lowers a "
                "chain of ops from the latent to the image"
            )
        x, out = graph.tensors[x_i], graph.tensors[o_i]
        if o_i in produced or out.is_constant:
            raise _refuse(f"{where} writes tensor {o_i} {out.name!r}, which is a constant or already written")
        produced.add(o_i)
        _check_int8(out, f"the {op.kind} output")
        _check_quant(x, f"the {op.kind} input {x.name!r}")
        _check_quant(out, f"the {op.kind} output {out.name!r}")
        _check_shape(x.shape, f"the {op.kind} input {x.name!r}")
        _check_shape(out.shape, f"the {op.kind} output {out.name!r}")
        if "activation" in op.options and op.options["activation"] not in ACTIVATIONS:
            raise _refuse(f"{where} has fused activation {op.options['activation']}")
        expect = _expected_shape(graph, op, x, where)
        if tuple(out.shape) != expect:
            raise _refuse(
                f"{where} computes shape {expect} from its input {x.shape}, but its output tensor says {out.shape}"
            )
        if int(np.prod(out.shape, dtype=np.int64)) > MAX_IMAGE_VALUES:
            raise _refuse(f"{where} outputs {out.shape}, more than {MAX_IMAGE_VALUES} values")
        # The C passes moved values through unchanged; TFLite's kernels assume (and converters write) the same
        # quantization on both sides of RESHAPE, PAD and DEPTH_TO_SPACE.
        moves = op.kind in ("RESHAPE", "PAD", "DEPTH_TO_SPACE")
        if moves and not (
            np.array_equal(x.scale, out.scale) and np.array_equal(x.zero_point, out.zero_point)
        ):
            raise _refuse(f"{where} changes the quantization of the values it moves")
        weight_bytes += sum(
            graph.tensors[i].nbytes for i in op.inputs if i >= 0 and graph.tensors[i].is_constant
        )
        prev = o_i
    if graph.ops and prev != graph.outputs[0]:
        raise UnsupportedOpError("the model output is not the last op's output: the generator lowers a chain")
    if weight_bytes > MAX_WEIGHT_BYTES:
        raise _refuse(f"the graph holds {weight_bytes} bytes of constants, more than {MAX_WEIGHT_BYTES}")


def _expected_shape(graph: Graph, op, x: Tensor, where: str) -> tuple[int, ...]:
    """The output shape ``op`` computes from its input ``x`` and its constants and options (checking those)."""
    t = graph.tensors
    if op.kind == "FULLY_CONNECTED":
        if len(x.shape) != 2 or x.shape[0] != 1:
            raise _refuse(f"{where} reads shape {x.shape}; the generator needs a (1, D) latent")
        w = _const(graph, op.inputs[1], f"the {where} weights", np.int8, 2)
        _check_shape(w.shape, f"the {where} weights")
        n, d = w.shape
        if d != x.shape[1]:
            raise _refuse(f"the {where} weights {w.shape} do not match the latent size {x.shape[1]}")
        _check_quant(w, f"the {where} weights", per_channel=1)
        _check_bias(graph, op, 2, n, where)
        return (1, n)
    if len(x.shape) != 4 and op.kind != "RESHAPE":
        raise _refuse(f"{where} reads shape {x.shape}; the generator needs an image (1, H, W, C)")
    if op.kind == "RESHAPE":
        out = t[op.outputs[0]].shape
        if int(np.prod(out, dtype=np.int64)) != int(np.prod(x.shape, dtype=np.int64)):
            raise _refuse(f"{where} reshapes {x.shape} to {out}: the sizes differ")
        return tuple(out)
    _, h, w_, c = x.shape
    if op.kind == "PAD":
        dtype = t[op.inputs[1]].dtype if op.inputs[1] >= 0 else np.int32
        pads = _const(graph, op.inputs[1], f"the {where} paddings", dtype, 2).data
        if dtype not in (np.int32, np.int64):
            raise _refuse(f"the {where} paddings are {np.dtype(dtype).name}, not int32")
        if pads.shape != (4, 2) or pads.min() < 0 or pads.max() > MAX_PAD:
            raise _refuse(f"the {where} paddings {pads.tolist()} are not (4, 2) values within 0..{MAX_PAD}")
        return tuple(int(s + a + b) for s, (a, b) in zip(x.shape, pads.tolist(), strict=True))
    if op.kind == "DEPTH_TO_SPACE":
        b = _option(op, "blockSize")
        if not 1 <= b <= MAX_STRIDE or c % (b * b):
            raise _refuse(f"{where} has block size {b} for {c} channels")
        return (1, h * b, w_ * b, c // (b * b))
    transpose = op.kind == "TRANSPOSE_CONV"
    filt = _const(graph, op.inputs[1], f"the {where} filter", np.int8, 4)
    _check_shape(filt.shape, f"the {where} filter")
    oc, kh, kw, ic = filt.shape
    if ic != c:
        raise _refuse(f"the {where} filter {filt.shape} reads {ic} channels; its input {x.shape} has {c}")
    if kh > MAX_KERNEL or kw > MAX_KERNEL:
        raise _refuse(f"the {where} kernel is {kh}x{kw}; the generator takes up to {MAX_KERNEL}x{MAX_KERNEL}")
    _check_quant(filt, f"the {where} filter", per_channel=oc)
    _check_bias(graph, op, 3 if transpose else 2, oc, where)
    sh, sw = _option(op, "strideH"), _option(op, "strideW")
    if not (1 <= sh <= MAX_STRIDE and 1 <= sw <= MAX_STRIDE):
        raise _refuse(f"{where} has strides {sh}x{sw}; the generator takes 1..{MAX_STRIDE}")
    padding = _option(op, "padding", str)
    if padding not in ("SAME", "VALID"):
        raise _refuse(f"{where} has padding {padding}, neither SAME nor VALID")
    if not transpose:
        if (
            sh != 1
            or sw != 1
            or op.options.get("dilationHFactor", 1) != 1
            or op.options.get("dilationWFactor", 1) != 1
        ):
            raise UnsupportedOpError("CONV_2D is supported with stride 1 and no dilation")
        if padding == "SAME":
            return (1, h, w_, oc)
        if kh > h or kw > w_:
            raise _refuse(f"{where} has a {kh}x{kw} VALID kernel on a {h}x{w_} image")
        return (1, h - kh + 1, w_ - kw + 1, oc)
    expect = (1, h * sh, w_ * sw, oc) if padding == "SAME" else (1, (h - 1) * sh + kh, (w_ - 1) * sw + kw, oc)
    shape_t = _const(graph, op.inputs[0], f"the {where} output shape", np.int32, 1)
    if tuple(int(v) for v in shape_t.data) != tuple(t[op.outputs[0]].shape):
        raise _refuse(
            f"the {where} output shape tensor {shape_t.data.tolist()} differs from its output {t[op.outputs[0]].shape}"
        )
    return expect


def _check_bias(graph: Graph, op, k: int, n: int, where: str) -> None:
    if len(op.inputs) > k and op.inputs[k] >= 0:
        b = _const(graph, op.inputs[k], f"the {where} bias", np.int32, 1)
        if b.shape != (n,):
            raise _refuse(f"the {where} bias has shape {b.shape}; it needs one value per output ({n})")


def _check_multipliers(mult, shift, what: str) -> None:
    """TFLM's QuantizeMultiplier gives a Q31 multiplier in [2^30, 2^31) and a shift in [-31, 30]; the C's
    MultiplyByQuantizedMultiplier shifts by at most 31 either way. A real scale ratio outside [2^-32, 2^30)
    leaves that range (or quantizes to a zero multiplier)."""
    mult, shift = np.asarray(mult), np.asarray(shift)
    if np.any(mult <= 0) or np.any(mult >= 2**31) or np.any(shift < -31) or np.any(shift > 30):
        raise _refuse(
            f"{what} has an input·weight/output scale ratio whose multiplier/shift "
            f"({int(mult.flat[0])}, {int(shift.flat[0])}) is outside what MultiplyByQuantizedMultiplier takes"
        )


def check_plan(plan: DecoderPlan) -> None:
    """Multipliers and shifts within MultiplyByQuantizedMultiplier's range, and every int32 sum of the emitted
    C (bias + Σ w·(x − zp), then the left shift) bounded by ACC_LIMIT for every input, so the C never
    overflows (undefined behaviour) where the int64 reference would not."""
    d = plan.dense
    _check_multipliers(d.mult, d.shift, "the FULLY_CONNECTED layer")
    bound = np.abs(d.bias) + MAX_INPUT_OFFSET * np.abs(d.weights.astype(np.int64)).sum(1)
    _check_sums(bound, d.shift, "the FULLY_CONNECTED layer")
    for k, c in enumerate(plan.convs, start=1):
        for ph in c.phases:
            _check_multipliers(ph.mult, ph.shift, f"layer {k} ({c.kind})")
            w = np.abs(ph.weights.astype(np.int64)).reshape(len(ph.bias), -1).sum(1)
            _check_sums(np.abs(ph.bias) + MAX_INPUT_OFFSET * w, ph.shift, f"layer {k} ({c.kind})")
    if len(plan.convs) > 64:
        raise _refuse(f"the graph has {len(plan.convs)} convolutions")


def _check_sums(bound: np.ndarray, shift, what: str) -> None:
    left = np.maximum(np.asarray(shift, np.int64), 0)
    if np.any(bound.astype(object) * (2 ** left.astype(object)) > ACC_LIMIT):
        raise _refuse(
            f"{what}: its bias plus weights can reach int32 sums beyond ±{ACC_LIMIT} (the C would overflow)"
        )


def check_prior(cholesky, latent_dim: int) -> np.ndarray:
    """The manifest's prior Cholesky factor as the header's D x D float array (identity when there is none)."""
    if cholesky is None:
        return np.eye(latent_dim)
    L = np.asarray(cholesky, np.float64)
    if L.shape != (latent_dim, latent_dim) or not np.all(np.isfinite(L)) or np.abs(L).max() > 1e30:
        raise VaeEdgeError(
            f"the manifest's prior Cholesky factor has shape {L.shape} (finite: {bool(np.all(np.isfinite(L)))}) "
            f"but the decoder's latent size is {latent_dim}; the manifest does not belong to this model: {REEXPORT}"
        )
    return L


def lower(
    graph: Graph, *, name: str, graph_kind: str, source: str = "", source_sha256: str = ""
) -> DecoderPlan:
    """The graph as one DenseLayer and a chain of ConvLayers (raises UnsupportedOpError naming what is not)."""
    if len(graph.inputs) != 1 or len(graph.outputs) != 1:
        raise UnsupportedOpError("the C generator needs a decoder with one input and one output")
    tin, tout = graph.tensors[graph.inputs[0]], graph.tensors[graph.outputs[0]]
    _check_int8(tin, f"the model input {tin.name!r}")
    _check_int8(tout, f"the model output {tout.name!r}")
    unsupported = sorted({op.kind for op in graph.ops} - set(SUPPORTED_OPS))
    if unsupported:
        raise UnsupportedOpError(
            f"the C generator does not implement {', '.join(unsupported)} (supported: {', '.join(SUPPORTED_OPS)}); "
            "generate from the int8-I/O decoders python -m export writes"
        )
    if len(tin.shape) != 2 or tin.shape[0] != 1:
        raise UnsupportedOpError(
            f"the model input has shape {tin.shape}; the generator needs a batch-1 (1, D) latent"
        )
    if tuple(tout.shape[1:]) != IMAGE_SHAPE or tout.shape[0] != 1:
        raise UnsupportedOpError(
            f"the model output has shape {tout.shape}; the generator needs (1, 28, 28, 1)"
        )
    check_graph(graph)
    consumers: dict[int, list] = {}
    for op in graph.ops:
        for i in op.inputs:
            if i >= 0 and not graph.tensors[i].is_constant:
                consumers.setdefault(i, []).append(op)

    def only_consumer(tensor: int):
        ops = consumers.get(tensor, [])
        if len(ops) > 1:
            raise UnsupportedOpError(
                f"tensor {graph.tensors[tensor].name!r} feeds {len(ops)} ops; the generator streams a chain"
            )
        return ops[0] if ops else None

    dense: DenseLayer | None = None
    dense_rows = None
    convs: list[ConvLayer] = []
    views: dict[int, _View] = {}
    layer_shapes: list[tuple[int, int, int]] = []
    for op in graph.ops:
        t = graph.tensors
        if op.kind == "FULLY_CONNECTED":
            if dense is not None or op.inputs[0] != graph.inputs[0]:
                raise UnsupportedOpError(
                    "the generator needs exactly one FULLY_CONNECTED, on the latent input"
                )
            inp, filt, out = t[op.inputs[0]], t[op.inputs[1]], t[op.outputs[0]]
            _check_int8(out, "the FULLY_CONNECTED output")
            if len(filt.scale) > 1 or int(filt.zero_point[0]) != 0:
                raise UnsupportedOpError(
                    "per-channel or asymmetric FULLY_CONNECTED weights are not supported"
                )
            mult, shift = fully_connected_multiplier(inp, filt, out)
            lo, hi = activation_range(out, op.options.get("activation"))
            bias = t[op.inputs[2]].data if len(op.inputs) > 2 and op.inputs[2] >= 0 else None
            n = filt.shape[0]
            dense_rows = dict(
                weights=np.asarray(filt.data, np.int8).reshape(n, -1),
                bias=np.zeros(n, np.int64) if bias is None else bias.astype(np.int64),
                in_zp=int(inp.zero_point[0]),
                mult=mult,
                shift=shift,
                out_zp=int(out.zero_point[0]),
                lo=lo,
                hi=hi,
            )
            dense = DenseLayer(**dense_rows, out_shape=(1, 1, n))
            layer_shapes.append((1, 1, n))
            views[op.outputs[0]] = _View(0, 1, 0, 0)
        elif op.kind == "RESHAPE":
            v = views.get(op.inputs[0])
            if v is None or v.layer != 0 or len(convs):
                raise UnsupportedOpError("RESHAPE is supported only on the FULLY_CONNECTED output")
            shape = t[op.outputs[0]].shape
            if len(shape) != 4 or shape[0] != 1:
                raise UnsupportedOpError(f"RESHAPE to {shape}: the generator needs (1, H, W, C)")
            dense = DenseLayer(**dense_rows, out_shape=tuple(int(s) for s in shape[1:]))
            layer_shapes[0] = dense.out_shape
            views[op.outputs[0]] = _View(0, 1, 0, 0)
        elif op.kind == "PAD":
            v = views.get(op.inputs[0])
            pads = np.asarray(t[op.inputs[1]].data).reshape(-1, 2)
            if v is None or pads.shape[0] != 4 or pads[0].any() or pads[3].any():
                raise UnsupportedOpError("PAD is supported only on the rows and columns of an activation")
            views[op.outputs[0]] = _View(
                v.layer, v.block, v.pad_t + int(pads[1, 0]), v.pad_l + int(pads[2, 0])
            )
        elif op.kind == "DEPTH_TO_SPACE":
            v = views.get(op.inputs[0])
            if v is None or v.block != int(op.options["blockSize"]) or v.pad_t or v.pad_l:
                raise UnsupportedOpError("DEPTH_TO_SPACE is supported only right after a CONV_2D")
            views[op.outputs[0]] = _View(v.layer, 1, 0, 0)
        else:  # CONV_2D or TRANSPOSE_CONV
            nxt = only_consumer(op.outputs[0])
            bo = int(nxt.options["blockSize"]) if nxt is not None and nxt.kind == "DEPTH_TO_SPACE" else 1
            if bo == 1 and _feeds_subpixel_conv(graph, op, nxt, only_consumer):
                # Sub-pixel chain: this output's channels are the 2x2 phases of the image the next convolution
                # reads. Stored as that image, the next layer's taps are the real ones (no zero blocks) and its
                # rows stream at the image's resolution.
                bo = 2
            layer = _lower_conv(graph, op, views, layer_shapes, bo)
            convs.append(layer)
            layer_shapes.append(layer.out_shape)
            views[op.outputs[0]] = _View(len(convs), bo, 0, 0)
    if dense is None or not convs:
        raise UnsupportedOpError("the generator needs a FULLY_CONNECTED followed by convolutions")
    v = views.get(graph.outputs[0])
    if v is None or v.layer != len(convs) or v.block != 1 or convs[-1].out_shape != IMAGE_SHAPE:
        raise UnsupportedOpError("the model output is not the last convolution's 28x28x1 image")
    if convs[0].in_shape != dense.out_shape:
        raise UnsupportedOpError("the first convolution does not read the FULLY_CONNECTED output image")
    plan = DecoderPlan(
        name=name,
        graph_kind=graph_kind,
        source=source,
        source_sha256=source_sha256,
        latent_dim=int(tin.shape[1]),
        latent_scale=float(tin.scale[0]),
        latent_zp=int(tin.zero_point[0]),
        logits_scale=float(tout.scale[0]),
        logits_zp=int(tout.zero_point[0]),
        dense=dense,
        convs=tuple(convs),
    )
    check_plan(plan)
    return plan


def _feeds_subpixel_conv(graph: Graph, op, nxt, only_consumer) -> bool:
    """True when ``op`` (a convolution) feeds a CONV_2D whose output goes through DEPTH_TO_SPACE(2)."""
    if op.kind != "CONV_2D" or nxt is None or nxt.kind != "CONV_2D":
        return False
    if graph.tensors[op.outputs[0]].shape[-1] % 4:
        return False
    after = only_consumer(nxt.outputs[0])
    return after is not None and after.kind == "DEPTH_TO_SPACE" and int(after.options["blockSize"]) == 2


def _lower_conv(graph: Graph, op, views: dict, layer_shapes: list, bo: int) -> ConvLayer:
    t = graph.tensors
    transpose = op.kind == "TRANSPOSE_CONV"
    x_i, w_i = (op.inputs[2], op.inputs[1]) if transpose else (op.inputs[0], op.inputs[1])
    b_i = (
        (op.inputs[3] if len(op.inputs) > 3 else -1)
        if transpose
        else (op.inputs[2] if len(op.inputs) > 2 else -1)
    )
    inp, filt, out = t[x_i], t[w_i], t[op.outputs[0]]
    for tensor, what in ((inp, "input"), (out, "output")):
        _check_int8(tensor, f"the {op.kind} {what}")
    v = views.get(x_i)
    if v is None:
        raise UnsupportedOpError(f"{op.kind} reads a tensor the generator did not produce")
    if np.any(np.asarray(filt.zero_point) != 0):
        raise UnsupportedOpError(f"{op.kind} with asymmetric weights is not supported")
    w = np.asarray(filt.data, np.int64)  # (OC', kh, kw, IC')
    oc_phys, kh, kw, ic_phys = w.shape
    _, h, wd, _ = inp.shape
    _, oh, ow, _ = out.shape
    sh, sw = int(op.options["strideH"]), int(op.options["strideW"])
    bias = t[b_i].data.astype(np.int64) if b_i >= 0 else np.zeros(oc_phys, np.int64)
    mult, shift = per_channel_multipliers(inp, filt, out, oc_phys)
    lo, hi = activation_range(out, op.options.get("activation"))
    src_shape = layer_shapes[v.layer]
    taps: dict[tuple[int, int], dict[tuple[int, int], np.ndarray]] = {}  # phase -> tap -> (OC, IC)
    if transpose:
        if sh != sw or v.block != 1 or v.pad_t or v.pad_l or bo != 1:
            raise UnsupportedOpError("TRANSPOSE_CONV is supported with equal strides, on an unpadded image")
        ph = same_padding(sh, oh, kh, -(-oh // sh)) if op.options["padding"] == "SAME" else 0
        pw = same_padding(sw, ow, kw, -(-ow // sw)) if op.options["padding"] == "SAME" else 0
        if (h - 1) * sh + kh - ph < oh or (wd - 1) * sw + kw - pw < ow:
            raise UnsupportedOpError("TRANSPOSE_CONV with this padding/shape combination is not supported")
        P, Q, oc, ic = sh, 1, oc_phys, ic_phys
        for py in range(P):
            for px in range(P):
                d = taps.setdefault((py, px), {})
                for ky in range(kh):
                    if (py + ph - ky) % P:
                        continue
                    for kx in range(kw):
                        if (px + pw - kx) % P:
                            continue
                        d[((py + ph - ky) // P, (px + pw - kx) // P)] = w[:, ky, kx, :]
        chan = {(py, px): np.arange(oc) for py in range(P) for px in range(P)}
    else:
        if (
            sh != 1
            or sw != 1
            or op.options.get("dilationHFactor", 1) != 1
            or op.options.get("dilationWFactor", 1) != 1
        ):
            raise UnsupportedOpError("CONV_2D is supported with stride 1 and no dilation")
        ph = same_padding(1, h, kh, oh) if op.options["padding"] == "SAME" else 0
        pw = same_padding(1, wd, kw, ow) if op.options["padding"] == "SAME" else 0
        bi = v.block
        if ic_phys % (bi * bi) or oc_phys % (bo * bo):
            raise UnsupportedOpError("CONV_2D channels do not divide into the depth-to-space blocks")
        P, Q, oc, ic = bo, bi, oc_phys // (bo * bo), ic_phys // (bi * bi)
        pht, plt = ph + v.pad_t, pw + v.pad_l
        chan = {}
        for cy in range(bo):
            for cx in range(bo):
                rows = np.arange(oc) + (cy * bo + cx) * oc
                chan[(cy, cx)] = rows
                d = taps.setdefault((cy, cx), {})
                for ky in range(kh):
                    for kx in range(kw):
                        for qy in range(bi):
                            for qx in range(bi):
                                cols = np.arange(ic) + (qy * bi + qx) * ic
                                d[(bi * (ky - pht) + qy, bi * (kx - plt) + qx)] = w[rows][:, ky, kx, :][
                                    :, cols
                                ]
    in_shape = (src_shape[0], src_shape[1], src_shape[2])
    if (v.pad_t or v.pad_l) and v.block != 1:
        raise UnsupportedOpError("PAD of a depth-to-space view is not supported")
    if in_shape[2] != ic or in_shape[0] > h * v.block or in_shape[1] > wd * v.block:
        raise UnsupportedOpError(
            f"{op.kind} reads {(h, wd, ic_phys)}, which does not match the image {in_shape}"
        )
    if ic % 4:
        raise UnsupportedOpError(f"{op.kind} reads {ic} channels; the generator needs a multiple of 4")
    phases = []
    for py in range(P):
        for px in range(P):
            d = taps[(py, px)]
            keep = sorted(k for k, m in d.items() if np.any(m))
            rows = chan[(py, px)]
            if not keep:  # a phase with no real tap: its outputs are the bias alone
                keep = [sorted(d)[0]]
            phases.append(
                Phase(
                    taps=tuple(keep),
                    weights=np.stack([d[k] for k in keep], axis=1).astype(np.int8),
                    bias=bias[rows],
                    mult=np.asarray(mult)[rows],
                    shift=np.asarray(shift)[rows],
                )
            )
    return ConvLayer(
        kind=op.kind,
        in_shape=in_shape,
        in_zp=int(inp.zero_point[0]),
        out_shape=(oh * bo, ow * bo, oc),
        P=P,
        Q=Q,
        phases=tuple(phases),
        out_zp=int(out.zero_point[0]),
        lo=lo,
        hi=hi,
    )


def run_plan(plan: DecoderPlan, z: np.ndarray) -> np.ndarray:
    """The lowered decoder in numpy (whole images, no streaming): int8 (1, 28, 28, 1) logits for one int8 latent."""
    d = plan.dense
    acc = d.weights.astype(np.int64) @ (np.asarray(z, np.int64).reshape(-1) - d.in_zp) + d.bias
    x = np.clip(multiply_by_quantized_multiplier(acc, d.mult, d.shift) + d.out_zp, d.lo, d.hi).reshape(
        d.out_shape
    )
    for layer in plan.convs:
        ih, iw, ic = layer.in_shape
        m = 4 * max(layer.Q, 1) + 4
        xp = np.zeros((ih + 2 * m, iw + 2 * m, ic), np.int64)
        xp[m : m + ih, m : m + iw] = x.astype(np.int64) - layer.in_zp
        out = np.zeros(layer.out_shape, np.int64)
        P, Q = layer.P, layer.Q
        for p, ph in enumerate(layer.phases):
            py, px = divmod(p, P)
            ny, nx = layer.phase_pixels(py, px)
            acc = np.broadcast_to(ph.bias, (ny, nx, len(ph.bias))).copy()
            for k, (dy, dx) in enumerate(ph.taps):
                patch = xp[m + dy : m + dy + Q * (ny - 1) + 1 : Q, m + dx : m + dx + Q * (nx - 1) + 1 : Q]
                acc += patch @ ph.weights[:, k, :].astype(np.int64).T
            q = multiply_by_quantized_multiplier(acc, ph.mult, ph.shift) + layer.out_zp
            out[py::P, px::P] = np.clip(q, layer.lo, layer.hi)
        x = out
    return x.astype(np.int8).reshape(1, *IMAGE_SHAPE)


# ------------------------------------------------------------------------------------------ row schedule
@dataclass(frozen=True)
class Schedule:
    ring_rows: tuple[
        int, ...
    ]  # rows kept of each stored image (the dense output, then each conv but the last)
    need_hi: tuple[tuple[int, ...], ...]  # per conv, per py: the largest dy (rows of input beyond Q·Y)


def schedule(plan: DecoderPlan) -> Schedule:
    """Simulate the pull order of the generated C and size each ring to the rows that must stay alive."""
    shapes = [plan.dense.out_shape] + [c.out_shape for c in plan.convs]
    need_lo, need_hi = [], []
    for c in plan.convs:
        lo_py, hi_py = [], []
        for py in range(c.P):
            dys = [dy for px in range(c.P) for dy, _ in c.phases[py * c.P + px].taps]
            lo_py.append(min(dys))
            hi_py.append(max(dys))
        need_lo.append(lo_py)
        need_hi.append(hi_py)
    done = [0] * len(shapes)
    span = [1] * len(shapes)

    def rows_needed(k: int, r: int) -> tuple[int, int]:
        c = plan.convs[k - 1]
        base = c.Q * (r // c.P)
        ih = c.in_shape[0]
        return max(0, base + need_lo[k - 1][r % c.P]), min(ih - 1, base + need_hi[k - 1][r % c.P])

    def ensure(k: int, upto: int) -> None:
        while done[k] <= upto:
            r = done[k]
            if k > 0:
                lo, hi = rows_needed(k, r)
                ensure(k - 1, hi)
                if hi >= lo:
                    span[k - 1] = max(span[k - 1], done[k - 1] - lo)
            done[k] += 1

    ensure(len(shapes) - 1, shapes[-1][0] - 1)
    return Schedule(
        ring_rows=tuple(min(s, shapes[k][0]) for k, s in enumerate(span[:-1])),
        need_hi=tuple(tuple(h) for h in need_hi),
    )


# -------------------------------------------------------------------------------------------- C emission
def c_identifier(name: str) -> str:
    ident = re.sub(r"[^0-9a-zA-Z_]", "_", name)
    return ident if not ident[:1].isdigit() else "m_" + ident


def _array(ctype: str, name: str, values, per_line: int = 16, static: bool = True) -> str:
    vals = [str(int(v)) for v in np.asarray(values).reshape(-1)]
    if not vals:
        vals = ["0"]
    lines = [", ".join(vals[i : i + per_line]) for i in range(0, len(vals), per_line)]
    storage = "static const" if static else "const"
    return f"{storage} {ctype} {name}[{len(vals)}] = {{\n  " + ",\n  ".join(lines) + "\n};\n"


def _smallest_int(values) -> str:
    v = np.asarray(values)
    for ctype, bits in (("int8_t", 8), ("int16_t", 16)):
        if v.size and v.min() >= -(2 ** (bits - 1)) and v.max() < 2 ** (bits - 1):
            return ctype
    return "int32_t"


def pack_weights(w: np.ndarray) -> np.ndarray:
    """(OC, ntaps, IC) int8 -> uint32 words: 4 weights a word (byte j = bits 8j..), channel pairs interleaved
    word by word, an odd last channel's words alone (the layout mac_2x2 / mac_1x2 read)."""
    oc = w.shape[0]
    words = np.ascontiguousarray(w.reshape(oc, -1)).view(np.uint8).astype(np.uint32)
    words = words.reshape(oc, -1, 4)
    words = words[..., 0] | (words[..., 1] << 8) | (words[..., 2] << 16) | (words[..., 3] << 24)
    pairs = oc - oc % 2
    out = [words[:pairs].reshape(pairs // 2, 2, -1).transpose(0, 2, 1).reshape(-1)] if pairs else []
    if oc % 2:
        out.append(words[-1])
    return np.concatenate(out).astype(np.uint32)


def _words(name: str, words: np.ndarray, per_line: int = 8) -> str:
    vals = [f"0x{int(v):08x}u" for v in words]
    lines = [", ".join(vals[i : i + per_line]) for i in range(0, len(vals), per_line)]
    return f"static const uint32_t {name}[{len(vals)}] = {{\n  " + ",\n  ".join(lines) + "\n};\n"


def _float(v: float) -> str:
    return f"{float(np.float32(v))!r}f"


KERNELS_C = r"""
/* Each layer's row function is the generic one below inlined with that layer's constants (strides, channel
 * counts), which is what lets the compiler keep the multiply-accumulate loops in registers. */
#if defined(__GNUC__)
#define VAE_EDGE_INLINE static inline __attribute__((always_inline))
#define VAE_EDGE_ALIGN4 __attribute__((aligned(4)))
#else
#define VAE_EDGE_INLINE static inline
#define VAE_EDGE_ALIGN4
#endif
/* ---- integer helpers: TFLite's arithmetic (the default build, double rounding) ---- */
static inline int32_t rounding_divide_by_pot(int32_t x, int exponent) {
  const int32_t mask = (int32_t)(((uint32_t)1 << exponent) - 1u);
  const int32_t remainder = x & mask;
  const int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
  return (x >> exponent) + (remainder > threshold ? 1 : 0);
}

/* MultiplyByQuantizedMultiplier for a multiplier in (0, 2^31): SaturatingRoundingDoublingHighMul is then
 * (a * m + 2^30) >> 31 exactly (its round-half-away-from-zero division, rewritten as one floor shift; the
 * saturating case needs m == INT32_MIN, which the generator never emits), then RoundingDivideByPOT. */
static inline int32_t multiply_by_quantized_multiplier(int32_t x, int32_t multiplier, int shift) {
  const int left = shift > 0 ? shift : 0;
  const int right = shift > 0 ? 0 : -shift;
  const int32_t a = (int32_t)((uint32_t)x << left);
  const int32_t high = (int32_t)(((int64_t)a * (int64_t)multiplier + (INT64_C(1) << 30)) >> 31);
  return rounding_divide_by_pot(high, right);
}

static inline int32_t requantize(int32_t acc, int32_t multiplier, int shift, int32_t zero_point, int32_t lo,
                                 int32_t hi) {
  int32_t v = multiply_by_quantized_multiplier(acc, multiplier, shift) + zero_point;
  v = v < lo ? lo : v;
  return v > hi ? hi : v;
}

/* Weights are packed four int8 to a uint32_t word, byte j = bits 8j..8j+7 (by value, any endianness). For a
 * pair of output channels the words alternate: channel c's word g, then channel c+1's word g; an odd last
 * channel's words follow alone. Activations between layers are int16 (value - the next layer's input zero
 * point), so the multiply-accumulate loops read them in place: no im2col copy. */
#if defined(__ARM_FEATURE_DSP) && !defined(VAE_EDGE_PORTABLE)
#include <arm_acle.h>
#define VAE_EDGE_DSP 1
#define VAE_EDGE_SIMD128 0
/* Of four channels c0..c3 an activation row holds c0 c2 c1 c3: the int16 pairs (c0, c2) and (c1, c3) line up
 * with the pairs SXTB16 and SXTB16 ROR #8 make of a weight word, so no weight needs reordering. */
#define ACT_INDEX(c) (((c) & ~3) | ((((c) & 1) << 1) | (((c) >> 1) & 1)))

static inline uint32_t sxtb16_ror8(uint32_t x) {
  uint32_t r;
  __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(x));
  return r;
}

/* Two int16 activations as one word. Activation rows start word-aligned and hold an even number of int16,
 * so these loads are aligned (and the compiler may pair them into LDRD); may_alias because the rows are
 * int16_t arrays. */
typedef uint32_t __attribute__((may_alias, aligned(4))) act_word_t;
#define load32(p) (*(const act_word_t *)(const void *)(p))

/* Two pixels (x, x + sb) x two channels (interleaved words w), n inputs: 16 MACs per step. */
#define MAC_2X2_STEP(W, X)                        \
  do {                                            \
    const uint32_t u = (W)[0], v = (W)[1];        \
    const uint32_t pe = load32(X), po = load32((X) + 2); \
    const uint32_t qe = load32((X) + sb), qo = load32((X) + sb + 2); \
    uint32_t e = __sxtb16(u), o = sxtb16_ror8(u); \
    a0 = __smlad(e, pe, a0);                      \
    a0 = __smlad(o, po, a0);                      \
    a1 = __smlad(e, qe, a1);                      \
    a1 = __smlad(o, qo, a1);                      \
    e = __sxtb16(v);                              \
    o = sxtb16_ror8(v);                           \
    a2 = __smlad(e, pe, a2);                      \
    a2 = __smlad(o, po, a2);                      \
    a3 = __smlad(e, qe, a3);                      \
    a3 = __smlad(o, qo, a3);                      \
  } while (0)

VAE_EDGE_INLINE const uint32_t *mac_2x2_c(const uint32_t *w, const int16_t *x, int sb, int n, int32_t acc[4]) {
  int32_t a0 = acc[0], a1 = acc[1], a2 = acc[2], a3 = acc[3];
  int i;
  for (i = n >> 3; i > 0; --i) {
    MAC_2X2_STEP(w, x);
    MAC_2X2_STEP(w + 2, x + 4);
    w += 4;
    x += 8;
  }
  if (n & 4) {
    MAC_2X2_STEP(w, x);
    w += 2;
  }
  acc[0] = a0;
  acc[1] = a1;
  acc[2] = a2;
  acc[3] = a3;
  return w;
}

/* One channel (consecutive words w), two pixels (x, x + sb): acc[0], acc[1]. */
VAE_EDGE_INLINE const uint32_t *mac_1x2_c(const uint32_t *w, const int16_t *x, int sb, int n, int32_t acc[2]) {
  int32_t a0 = acc[0], a1 = acc[1];
  const uint32_t *end = w + n / 4;
  while (w < end) {
    const uint32_t u = *w++;
    const uint32_t e = __sxtb16(u), o = sxtb16_ror8(u);
    a0 = __smlad(e, load32(x), a0);
    a0 = __smlad(o, load32(x + 2), a0);
    a1 = __smlad(e, load32(x + sb), a1);
    a1 = __smlad(o, load32(x + sb + 2), a1);
    x += 4;
  }
  acc[0] = a0;
  acc[1] = a1;
  return w;
}

/* Two channels (interleaved words w), one pixel x: acc[0] and acc[2]. 8 MACs a pass: LDRD weights, LDRD inputs,
 * 4 SXTB16, 4 SMLAD (inline asm: GCC pairs neither load). */
VAE_EDGE_INLINE const uint32_t *mac_2x1(const uint32_t *w, const int16_t *x, int n, int32_t *acc) {
  int32_t a0 = acc[0], a2 = acc[2];
  uint32_t u, v, e, p0, p1;
  int passes = n >> 2;
  if (passes > 0) {
    __asm__ volatile(
        "1:\n\t"
        "ldrd %[u], %[v], [%[w]], #8\n\t"
        "ldrd %[p0], %[p1], [%[x]], #8\n\t"
        "sxtb16 %[e], %[u]\n\t"
        "sxtb16 %[u], %[u], ror #8\n\t"
        "smlad %[a0], %[e], %[p0], %[a0]\n\t"
        "smlad %[a0], %[u], %[p1], %[a0]\n\t"
        "sxtb16 %[e], %[v]\n\t"
        "sxtb16 %[v], %[v], ror #8\n\t"
        "smlad %[a2], %[e], %[p0], %[a2]\n\t"
        "smlad %[a2], %[v], %[p1], %[a2]\n\t"
        "subs %[n], %[n], #1\n\t"
        "bne 1b\n\t"
        : [w] "+r"(w), [x] "+r"(x), [n] "+r"(passes), [a0] "+r"(a0), [a2] "+r"(a2), [u] "=&r"(u), [v] "=&r"(v),
          [e] "=&r"(e), [p0] "=&r"(p0), [p1] "=&r"(p1)
        :
        : "cc", "memory");
  }
  acc[0] = a0;
  acc[2] = a2;
  return w;
}

/* One channel, one pixel: acc[0]. */
VAE_EDGE_INLINE const uint32_t *mac_1x1(const uint32_t *w, const int16_t *x, int n, int32_t *acc) {
  int32_t a0 = acc[0];
  int i;
  for (i = n >> 2; i > 0; --i) {
    const uint32_t u = *w++;
    a0 = __smlad(__sxtb16(u), load32(x), a0);
    a0 = __smlad(sxtb16_ror8(u), load32(x + 2), a0);
    x += 4;
  }
  acc[0] = a0;
  return w;
}
#elif (defined(__SSE2__) || defined(__wasm_simd128__)) && !defined(VAE_EDGE_PORTABLE)
#define VAE_EDGE_DSP 0
#define VAE_EDGE_SIMD128 1 /* conv_row_simd below */
/* 128-bit SIMD path, x86 hosts (SSE2 PMADDWD) and WebAssembly SIMD (i32x4.dot_i16x8_s, the same operation):
 * natural channel order like the portable path, 8 inputs a step. */
#define ACT_INDEX(c) (c)
#if defined(__SSE2__)
#include <emmintrin.h>
typedef __m128i v128;
#define V_ZERO() _mm_setzero_si128()
#define V_LOAD(p) _mm_loadu_si128((const __m128i *)(const void *)(p))
#define V_LOAD64(p) _mm_loadl_epi64((const __m128i *)(const void *)(p))
#define V_LOAD32(u) _mm_cvtsi32_si128((int)(u))
#define V_ADD32(a, b) _mm_add_epi32(a, b)
#define V_MADD16(a, b) _mm_madd_epi16(a, b)
#define V_DUP_LO64(v) _mm_unpacklo_epi64(v, v)
#define V_DUP_HI64(v) _mm_unpackhi_epi64(v, v)
static inline v128 widen_lo(v128 v) { return _mm_srai_epi16(_mm_unpacklo_epi8(v, v), 8); }
static inline v128 widen_hi(v128 v) { return _mm_srai_epi16(_mm_unpackhi_epi8(v, v), 8); }
static inline int32_t lanes01(v128 v) { return _mm_cvtsi128_si32(v) + _mm_cvtsi128_si32(_mm_srli_si128(v, 4)); }
static inline int32_t lanes23(v128 v) { return lanes01(_mm_srli_si128(v, 8)); }
#else
#include <wasm_simd128.h>
typedef v128_t v128;
#define V_ZERO() wasm_i32x4_splat(0)
#define V_LOAD(p) wasm_v128_load(p)
#define V_LOAD64(p) wasm_v128_load64_zero(p)
#define V_LOAD32(u) wasm_i32x4_make((int32_t)(u), 0, 0, 0)
#define V_ADD32(a, b) wasm_i32x4_add(a, b)
#define V_MADD16(a, b) wasm_i32x4_dot_i16x8(a, b)
#define V_DUP_LO64(v) wasm_i64x2_shuffle(v, v, 0, 0)
#define V_DUP_HI64(v) wasm_i64x2_shuffle(v, v, 1, 1)
static inline v128 widen_lo(v128 v) { return wasm_i16x8_extend_low_i8x16(v); }
static inline v128 widen_hi(v128 v) { return wasm_i16x8_extend_high_i8x16(v); }
static inline int32_t lanes01(v128 v) { return wasm_i32x4_extract_lane(v, 0) + wasm_i32x4_extract_lane(v, 1); }
static inline int32_t lanes23(v128 v) { return wasm_i32x4_extract_lane(v, 2) + wasm_i32x4_extract_lane(v, 3); }
#endif

VAE_EDGE_INLINE const uint32_t *mac_2x2(const uint32_t *w, const int16_t *x, int sb, int n, int32_t acc[4]) {
  v128 sa = V_ZERO(), sq = V_ZERO();
  int i = 0;
  for (; i + 8 <= n; i += 8, w += 4) { /* 16 weight bytes: c[i..i+3] c'[i..i+3] c[i+4..i+7] c'[i+4..i+7] */
    const v128 wv = V_LOAD(w);
    const v128 w0 = widen_lo(wv), w1 = widen_hi(wv);
    const v128 xa = V_LOAD(x + i);
    const v128 xb = V_LOAD(x + sb + i);
    sa = V_ADD32(sa, V_MADD16(w0, V_DUP_LO64(xa)));
    sa = V_ADD32(sa, V_MADD16(w1, V_DUP_HI64(xa)));
    sq = V_ADD32(sq, V_MADD16(w0, V_DUP_LO64(xb)));
    sq = V_ADD32(sq, V_MADD16(w1, V_DUP_HI64(xb)));
  }
  if (i < n) { /* four inputs left: c[i..i+3] c'[i..i+3] */
    const v128 w0 = widen_lo(V_LOAD64(w));
    const v128 xa = V_LOAD64(x + i);
    const v128 xb = V_LOAD64(x + sb + i);
    sa = V_ADD32(sa, V_MADD16(w0, V_DUP_LO64(xa)));
    sq = V_ADD32(sq, V_MADD16(w0, V_DUP_LO64(xb)));
    w += 2;
  }
  acc[0] += lanes01(sa);
  acc[1] += lanes01(sq);
  acc[2] += lanes23(sa);
  acc[3] += lanes23(sq);
  return w;
}

VAE_EDGE_INLINE const uint32_t *mac_1x2(const uint32_t *w, const int16_t *x, int sb, int n, int32_t acc[2]) {
  v128 sa = V_ZERO(), sq = V_ZERO();
  int i = 0;
  for (; i + 8 <= n; i += 8, w += 2) {
    const v128 w0 = widen_lo(V_LOAD64(w));
    sa = V_ADD32(sa, V_MADD16(w0, V_LOAD(x + i)));
    sq = V_ADD32(sq, V_MADD16(w0, V_LOAD(x + sb + i)));
  }
  if (i < n) {
    const v128 w0 = widen_lo(V_LOAD32(*w));
    sa = V_ADD32(sa, V_MADD16(w0, V_LOAD64(x + i)));
    sq = V_ADD32(sq, V_MADD16(w0, V_LOAD64(x + sb + i)));
    w += 1;
  }
  acc[0] += lanes01(sa) + lanes23(sa);
  acc[1] += lanes01(sq) + lanes23(sq);
  return w;
}

VAE_EDGE_INLINE const uint32_t *mac_2x1(const uint32_t *w, const int16_t *x, int n, int32_t *acc) {
  v128 sa = V_ZERO();
  int i = 0;
  for (; i + 8 <= n; i += 8, w += 4) {
    const v128 wv = V_LOAD(w);
    const v128 xa = V_LOAD(x + i);
    sa = V_ADD32(sa, V_MADD16(widen_lo(wv), V_DUP_LO64(xa)));
    sa = V_ADD32(sa, V_MADD16(widen_hi(wv), V_DUP_HI64(xa)));
  }
  if (i < n) {
    const v128 w0 = widen_lo(V_LOAD64(w));
    const v128 xa = V_LOAD64(x + i);
    sa = V_ADD32(sa, V_MADD16(w0, V_DUP_LO64(xa)));
    w += 2;
  }
  acc[0] += lanes01(sa);
  acc[2] += lanes23(sa);
  return w;
}

VAE_EDGE_INLINE const uint32_t *mac_1x1(const uint32_t *w, const int16_t *x, int n, int32_t *acc) {
  v128 sa = V_ZERO();
  int i = 0;
  for (; i + 8 <= n; i += 8, w += 2) {
    const v128 w0 = widen_lo(V_LOAD64(w));
    sa = V_ADD32(sa, V_MADD16(w0, V_LOAD(x + i)));
  }
  if (i < n) {
    const v128 w0 = widen_lo(V_LOAD32(*w));
    sa = V_ADD32(sa, V_MADD16(w0, V_LOAD64(x + i)));
    w += 1;
  }
  acc[0] += lanes01(sa) + lanes23(sa);
  return w;
}
#else
#define VAE_EDGE_DSP 0
#define VAE_EDGE_SIMD128 0
/* Portable path: activations in natural channel order, plain C; the same integer sums as the DSP path, added
 * in another order (integer addition is exact, so the bytes are the same). */
#define ACT_INDEX(c) (c)

static inline int32_t weight_byte(uint32_t word, int j) { return (int32_t)(int8_t)(uint8_t)(word >> (8 * j)); }

VAE_EDGE_INLINE const uint32_t *mac_2x2(const uint32_t *w, const int16_t *x, int sb, int n, int32_t acc[4]) {
  int32_t a0 = acc[0], a1 = acc[1], a2 = acc[2], a3 = acc[3];
  int g, j;
  for (g = 0; g < n / 4; ++g, w += 2, x += 4) {
    for (j = 0; j < 4; ++j) {
      const int32_t u = weight_byte(w[0], j), v = weight_byte(w[1], j);
      const int32_t p = x[j], q = x[sb + j];
      a0 += u * p;
      a1 += u * q;
      a2 += v * p;
      a3 += v * q;
    }
  }
  acc[0] = a0;
  acc[1] = a1;
  acc[2] = a2;
  acc[3] = a3;
  return w;
}

VAE_EDGE_INLINE const uint32_t *mac_1x2(const uint32_t *w, const int16_t *x, int sb, int n, int32_t acc[2]) {
  int32_t a0 = acc[0], a1 = acc[1];
  int g, j;
  for (g = 0; g < n / 4; ++g, ++w, x += 4) {
    for (j = 0; j < 4; ++j) {
      const int32_t u = weight_byte(w[0], j);
      a0 += u * x[j];
      a1 += u * x[sb + j];
    }
  }
  acc[0] = a0;
  acc[1] = a1;
  return w;
}

VAE_EDGE_INLINE const uint32_t *mac_2x1(const uint32_t *w, const int16_t *x, int n, int32_t *acc) {
  int32_t a0 = acc[0], a2 = acc[2];
  int g, j;
  for (g = 0; g < n / 4; ++g, w += 2, x += 4) {
    for (j = 0; j < 4; ++j) {
      a0 += weight_byte(w[0], j) * x[j];
      a2 += weight_byte(w[1], j) * x[j];
    }
  }
  acc[0] = a0;
  acc[2] = a2;
  return w;
}

VAE_EDGE_INLINE const uint32_t *mac_1x1(const uint32_t *w, const int16_t *x, int n, int32_t *acc) {
  int32_t a0 = acc[0];
  int g, j;
  for (g = 0; g < n / 4; ++g, ++w, x += 4) {
    for (j = 0; j < 4; ++j) a0 += weight_byte(w[0], j) * x[j];
  }
  acc[0] = a0;
  return w;
}
#endif

/*@ASM_KERNELS@*/
/* One layer's constants: taps per phase, weights [phase][tap][channel pair][in-channel] of the real taps. */
typedef struct {
  int in_h, in_w, in_c, in_rows;    /* input image and the rows its ring keeps */
  const int16_t *in;                /* ring of in_rows rows of in_w x in_c (row r at r % in_rows) */
  int out_w, out_c, P, Q;
  int32_t out_zp, lo, hi;
  int32_t next_neg_zp;              /* the next layer's -input zero point (int16 output), unused for logits */
  const int8_t *tap_start;          /* P*P + 1 offsets into dy/dx */
  const int8_t *dy, *dx;
  const int32_t *w_start;           /* P*P offsets (in words) into w */
  const uint32_t *w;
  const int32_t *bias, *mult;       /* [phase][channel], or [channel] when param_stride is 0 */
  const int8_t *shift;
  int param_stride;
} conv_layer_t;

/* Output row r of a phase convolution: int16 (value - next zero point) into out16, or int8 logits into out8.
 * Two output pixels at a time, tap by tap: their input vectors are read in place from the ring (adjacent
 * there); a tap outside the image is skipped for the pixel it misses, as TFLite skips it. acc[] holds the
 * int32 sums of the two pixels for every output channel. */
VAE_EDGE_INLINE void conv_row(const conv_layer_t *L, int r, int16_t *out16, int8_t *out8, int32_t *acc) {
  const int py = r % L->P, Y = r / L->P;
  const int sb = L->Q * L->in_c;
  const int words_per_tap = L->out_c * L->in_c / 4;
  int px;
  for (px = 0; px < L->P; ++px) {
    const int p = py * L->P + px;
    const int t0 = L->tap_start[p], t1 = L->tap_start[p + 1];
    const int32_t *bias = L->bias + p * L->param_stride, *mult = L->mult + p * L->param_stride;
    const int8_t *shift = L->shift + p * L->param_stride;
    const int nx = (L->out_w - px + L->P - 1) / L->P;
    int X;
    for (X = 0; X < nx; X += 2) {
      const int two = X + 1 < nx;
      const size_t oa = (size_t)(L->P * X + px) * (size_t)L->out_c, ob = oa + (size_t)L->P * (size_t)L->out_c;
      const uint32_t *w = L->w + L->w_start[p];
      int c, t;
      for (c = 0; c < L->out_c; ++c) acc[2 * c] = acc[2 * c + 1] = bias[c];
      for (t = t0; t < t1; ++t) {
        const int iy = L->Q * Y + L->dy[t], ia = L->Q * X + L->dx[t], ib = ia + L->Q;
        const int16_t *row, *x;
        int a_ok, b_ok;
        if (iy < 0 || iy >= L->in_h) {
          w += words_per_tap;
          continue;
        }
        row = L->in + (size_t)(iy % L->in_rows) * (size_t)L->in_w * (size_t)L->in_c;
        a_ok = ia >= 0 && ia < L->in_w;
        b_ok = two && ib >= 0 && ib < L->in_w;
        if (a_ok && b_ok) { /* both pixels: the pair is adjacent in the row */
          x = row + (size_t)ia * (size_t)L->in_c;
          for (c = 0; c + 1 < L->out_c; c += 2) w = mac_2x2(w, x, sb, L->in_c, acc + 2 * c);
          if (c < L->out_c) w = mac_1x2(w, x, sb, L->in_c, acc + 2 * c);
        } else if (a_ok || b_ok) { /* one pixel (image edge, or a lone last pixel) */
          const int one = a_ok ? 0 : 1;
          x = row + (size_t)(a_ok ? ia : ib) * (size_t)L->in_c;
          for (c = 0; c + 1 < L->out_c; c += 2) w = mac_2x1(w, x, L->in_c, acc + 2 * c + one);
          if (c < L->out_c) w = mac_1x1(w, x, L->in_c, acc + 2 * c + one);
        } else {
          w += words_per_tap;
        }
      }
      if (out16 && L->out_c % 4 == 0) { /* four channels at a time: their places ACT_INDEX(0..3) are constants */
        const int32_t nz = L->next_neg_zp, zp = L->out_zp, lo = L->lo, hi = L->hi;
        for (c = 0; c < L->out_c; c += 4) {
          int16_t *pa = out16 + oa + c, *pb = out16 + ob + c;
          const int32_t *s = acc + 2 * c;
          pa[ACT_INDEX(0)] = (int16_t)(requantize(s[0], mult[c], shift[c], zp, lo, hi) + nz);
          pa[ACT_INDEX(1)] = (int16_t)(requantize(s[2], mult[c + 1], shift[c + 1], zp, lo, hi) + nz);
          pa[ACT_INDEX(2)] = (int16_t)(requantize(s[4], mult[c + 2], shift[c + 2], zp, lo, hi) + nz);
          pa[ACT_INDEX(3)] = (int16_t)(requantize(s[6], mult[c + 3], shift[c + 3], zp, lo, hi) + nz);
          if (two) {
            pb[ACT_INDEX(0)] = (int16_t)(requantize(s[1], mult[c], shift[c], zp, lo, hi) + nz);
            pb[ACT_INDEX(1)] = (int16_t)(requantize(s[3], mult[c + 1], shift[c + 1], zp, lo, hi) + nz);
            pb[ACT_INDEX(2)] = (int16_t)(requantize(s[5], mult[c + 2], shift[c + 2], zp, lo, hi) + nz);
            pb[ACT_INDEX(3)] = (int16_t)(requantize(s[7], mult[c + 3], shift[c + 3], zp, lo, hi) + nz);
          }
        }
      } else {
        for (c = 0; c < L->out_c; ++c) {
          const int32_t va = requantize(acc[2 * c], mult[c], shift[c], L->out_zp, L->lo, L->hi);
          const int32_t vb = requantize(acc[2 * c + 1], mult[c], shift[c], L->out_zp, L->lo, L->hi);
          if (out16) {
            out16[oa + ACT_INDEX(c)] = (int16_t)(va + L->next_neg_zp);
            if (two) out16[ob + ACT_INDEX(c)] = (int16_t)(vb + L->next_neg_zp);
          } else {
            out8[oa + c] = (int8_t)va;
            if (two) out8[ob + c] = (int8_t)vb;
          }
        }
      }
    }
  }
}

#if VAE_EDGE_SIMD128
#if defined(__wasm_simd128__)
#define VAE_EDGE_REQUANTIZE4 1
#define V_LOAD32_SPLAT(p) wasm_v128_load32_splat(p)
#define V_STORE(p, v) wasm_v128_store(p, v)
/* clang unrolls a loop of known trip count fully and hoists its loads; V8 then spills the accumulators. */
#define VAE_EDGE_NO_UNROLL _Pragma("clang loop unroll(disable)")

/* requantize() of four lanes that share one right shift (a shift <= 0): SaturatingRoundingDoublingHighMul's
 * 64-bit products (a multiplier in (0, 2^31) cannot saturate) plus 2^30, doubled so that each high half is
 * the product shifted right by 31; then RoundingDivideByPOT, the zero point, the clamp and the next layer's
 * offset. The same integers as requantize(), lane by lane. */
static inline v128 requantize4(v128 acc, v128 mult, int right, int32_t zp, int32_t lo, int32_t hi, int32_t nz) {
  const v128 half = wasm_i64x2_splat((int64_t)1 << 30);
  v128 pl = wasm_i64x2_add(wasm_i64x2_extmul_low_i32x4(acc, mult), half);
  v128 ph = wasm_i64x2_add(wasm_i64x2_extmul_high_i32x4(acc, mult), half);
  v128 x;
  pl = wasm_i64x2_add(pl, pl);
  ph = wasm_i64x2_add(ph, ph);
  x = wasm_i32x4_shuffle(pl, ph, 1, 3, 5, 7);
  if (right > 0) {
    const int32_t mask = (int32_t)(((uint32_t)1 << right) - 1u);
    const v128 rem = wasm_v128_and(x, wasm_i32x4_splat(mask));
    const v128 thr = wasm_i32x4_sub(wasm_i32x4_splat(mask >> 1), wasm_i32x4_shr(x, 31)); /* +1 below zero */
    x = wasm_i32x4_sub(wasm_i32x4_shr(x, right), wasm_i32x4_gt(rem, thr));               /* gt is -1 */
  }
  x = wasm_i32x4_min(wasm_i32x4_max(wasm_i32x4_add(x, wasm_i32x4_splat(zp)), wasm_i32x4_splat(lo)),
                     wasm_i32x4_splat(hi));
  return wasm_i32x4_add(x, wasm_i32x4_splat(nz));
}
#else
#define VAE_EDGE_REQUANTIZE4 0
static inline v128 load32_splat(const int16_t *p) {
  int32_t v;
  memcpy(&v, p, sizeof v);
  return _mm_set1_epi32(v);
}
#define V_LOAD32_SPLAT(p) load32_splat(p)
#define V_STORE(p, v) _mm_storeu_si128((__m128i *)(void *)(p), v)
#if defined(__clang__)
#define VAE_EDGE_NO_UNROLL _Pragma("clang loop unroll(disable)")
#else
#define VAE_EDGE_NO_UNROLL
#endif
#endif

/* Four lanes of int32 sums (bias included) -> int16 (value - next zero point) at out[0..3]. */
VAE_EDGE_INLINE void store4(int16_t *out, v128 sums, const int32_t *mult, const int8_t *shift, int right,
                            int32_t zp, int32_t lo, int32_t hi, int32_t nz) {
  int32_t s[4];
  int j;
#if VAE_EDGE_REQUANTIZE4
  if (right >= 0) {
    const v128 v = requantize4(sums, V_LOAD(mult), right, zp, lo, hi, nz);
    wasm_v128_store64_lane(out, wasm_i16x8_narrow_i32x4(v, v), 0);
    return;
  }
#endif
  (void)right;
  V_STORE(s, sums);
  for (j = 0; j < 4; ++j) out[j] = (int16_t)(requantize(s[j], mult[j], shift[j], zp, lo, hi) + nz);
}

#define SIMD_TAPS_MAX 64
/* conv_row for 128-bit SIMD. Sixteen output channels x two pixels at a time in eight i32x4 accumulators of
 * four channels each, over all taps: per pair of inputs, the pixel's two int16 activations are broadcast to
 * every lane and multiplied (PMADDWD / i32x4.dot_i16x8_s) with the sixteen channels' weights of those two
 * inputs, so the sums need no horizontal reduction. Weights int16, per phase: per block of 16 channels
 * [tap][input pair][channel][2], then each channel left over [tap][input] (done one at a time, as are the
 * int8 logits). right: the layer's one right shift, or -1 when its shifts differ (then store4 reads each). */
VAE_EDGE_INLINE void conv_row_simd(const conv_layer_t *L, const int16_t *w16, const int32_t *w16_start, int r,
                                   int16_t *out16, int8_t *out8, int right) {
  const int py = r % L->P, Y = r / L->P;
  const int C = L->in_c, OC = L->out_c, blocks = out16 ? OC / 16 : 0;
  const int sb = L->Q * C;
  const int32_t nz = L->next_neg_zp, zp = L->out_zp, lo = L->lo, hi = L->hi;
  int px;
  for (px = 0; px < L->P; ++px) {
    const int p = py * L->P + px;
    const int t0 = L->tap_start[p], nt = L->tap_start[p + 1] - t0;
    const int32_t *bias = L->bias + p * L->param_stride, *mult = L->mult + p * L->param_stride;
    const int8_t *shift = L->shift + p * L->param_stride;
    const int nx = (L->out_w - px + L->P - 1) / L->P;
    int X;
    for (X = 0; X < nx; X += 2) {
      const int two = X + 1 < nx;
      const size_t oa = (size_t)(L->P * X + px) * (size_t)OC, ob = oa + (size_t)L->P * (size_t)OC;
      const int16_t *xs[SIMD_TAPS_MAX];
      int which[SIMD_TAPS_MAX]; /* bit 0: pixel a reads this tap, bit 1: pixel b; xs[t] is a's input, else b's */
      int t, blk, c;
      for (t = 0; t < nt; ++t) {
        const int iy = L->Q * Y + L->dy[t0 + t], ia = L->Q * X + L->dx[t0 + t], ib = ia + L->Q;
        const int row_ok = iy >= 0 && iy < L->in_h;
        const int a_ok = row_ok && ia >= 0 && ia < L->in_w, b_ok = row_ok && two && ib >= 0 && ib < L->in_w;
        which[t] = a_ok | (b_ok << 1);
        xs[t] = which[t] ? L->in + ((size_t)(iy % L->in_rows) * (size_t)L->in_w + (size_t)(a_ok ? ia : ib)) * (size_t)C
                         : L->in;
      }
      for (blk = 0; blk < blocks; ++blk) {
        const int16_t *w = w16 + w16_start[p] + (size_t)blk * (size_t)nt * (size_t)C * 16;
        v128 a0 = V_ZERO(), a1 = V_ZERO(), a2 = V_ZERO(), a3 = V_ZERO();
        v128 b0 = V_ZERO(), b1 = V_ZERO(), b2 = V_ZERO(), b3 = V_ZERO();
        c = 16 * blk;
        for (t = 0; t < nt; ++t, w += 16 * C) {
          const int16_t *x = xs[t], *wk = w;
          int k;
          if (which[t] == 3) {
            VAE_EDGE_NO_UNROLL for (k = 0; k < C; k += 2, wk += 32) {
              const v128 xa = V_LOAD32_SPLAT(x + k), xb = V_LOAD32_SPLAT(x + sb + k);
              v128 wv = V_LOAD(wk);
              a0 = V_ADD32(a0, V_MADD16(wv, xa));
              b0 = V_ADD32(b0, V_MADD16(wv, xb));
              wv = V_LOAD(wk + 8);
              a1 = V_ADD32(a1, V_MADD16(wv, xa));
              b1 = V_ADD32(b1, V_MADD16(wv, xb));
              wv = V_LOAD(wk + 16);
              a2 = V_ADD32(a2, V_MADD16(wv, xa));
              b2 = V_ADD32(b2, V_MADD16(wv, xb));
              wv = V_LOAD(wk + 24);
              a3 = V_ADD32(a3, V_MADD16(wv, xa));
              b3 = V_ADD32(b3, V_MADD16(wv, xb));
            }
          } else if (which[t] == 1) {
            VAE_EDGE_NO_UNROLL for (k = 0; k < C; k += 2, wk += 32) {
              const v128 xa = V_LOAD32_SPLAT(x + k);
              a0 = V_ADD32(a0, V_MADD16(V_LOAD(wk), xa));
              a1 = V_ADD32(a1, V_MADD16(V_LOAD(wk + 8), xa));
              a2 = V_ADD32(a2, V_MADD16(V_LOAD(wk + 16), xa));
              a3 = V_ADD32(a3, V_MADD16(V_LOAD(wk + 24), xa));
            }
          } else if (which[t] == 2) {
            VAE_EDGE_NO_UNROLL for (k = 0; k < C; k += 2, wk += 32) {
              const v128 xb = V_LOAD32_SPLAT(x + k);
              b0 = V_ADD32(b0, V_MADD16(V_LOAD(wk), xb));
              b1 = V_ADD32(b1, V_MADD16(V_LOAD(wk + 8), xb));
              b2 = V_ADD32(b2, V_MADD16(V_LOAD(wk + 16), xb));
              b3 = V_ADD32(b3, V_MADD16(V_LOAD(wk + 24), xb));
            }
          }
        }
        store4(out16 + oa + c, V_ADD32(a0, V_LOAD(bias + c)), mult + c, shift + c, right, zp, lo, hi, nz);
        store4(out16 + oa + c + 4, V_ADD32(a1, V_LOAD(bias + c + 4)), mult + c + 4, shift + c + 4, right, zp, lo, hi, nz);
        store4(out16 + oa + c + 8, V_ADD32(a2, V_LOAD(bias + c + 8)), mult + c + 8, shift + c + 8, right, zp, lo, hi, nz);
        store4(out16 + oa + c + 12, V_ADD32(a3, V_LOAD(bias + c + 12)), mult + c + 12, shift + c + 12, right, zp, lo, hi, nz);
        if (two) {
          store4(out16 + ob + c, V_ADD32(b0, V_LOAD(bias + c)), mult + c, shift + c, right, zp, lo, hi, nz);
          store4(out16 + ob + c + 4, V_ADD32(b1, V_LOAD(bias + c + 4)), mult + c + 4, shift + c + 4, right, zp, lo, hi, nz);
          store4(out16 + ob + c + 8, V_ADD32(b2, V_LOAD(bias + c + 8)), mult + c + 8, shift + c + 8, right, zp, lo, hi, nz);
          store4(out16 + ob + c + 12, V_ADD32(b3, V_LOAD(bias + c + 12)), mult + c + 12, shift + c + 12, right, zp, lo, hi, nz);
        }
      }
      for (c = 16 * blocks; c < OC; ++c) { /* channels left over (all of them for int8 logits): one at a time */
        const int16_t *w = w16 + w16_start[p] + (size_t)c * (size_t)nt * (size_t)C;
        v128 a0 = V_ZERO(), b0 = V_ZERO();
        int32_t va, vb;
        for (t = 0; t < nt; ++t, w += C) {
          const int16_t *x = xs[t];
          int k;
          if (which[t] == 3) {
            for (k = 0; k < C; k += 8) {
              const v128 wv = V_LOAD(w + k);
              a0 = V_ADD32(a0, V_MADD16(wv, V_LOAD(x + k)));
              b0 = V_ADD32(b0, V_MADD16(wv, V_LOAD(x + sb + k)));
            }
          } else if (which[t] == 1) {
            for (k = 0; k < C; k += 8) a0 = V_ADD32(a0, V_MADD16(V_LOAD(w + k), V_LOAD(x + k)));
          } else if (which[t] == 2) {
            for (k = 0; k < C; k += 8) b0 = V_ADD32(b0, V_MADD16(V_LOAD(w + k), V_LOAD(x + k)));
          }
        }
        va = requantize(lanes01(a0) + lanes23(a0) + bias[c], mult[c], shift[c], zp, lo, hi);
        vb = requantize(lanes01(b0) + lanes23(b0) + bias[c], mult[c], shift[c], zp, lo, hi);
        if (out16) {
          out16[oa + c] = (int16_t)(va + nz);
          if (two) out16[ob + c] = (int16_t)(vb + nz);
        } else {
          out8[oa + c] = (int8_t)va;
          if (two) out8[ob + c] = (int8_t)vb;
        }
      }
    }
  }
}
#if defined(__wasm_simd128__) && defined(VAE_EDGE_RELAXED_DOT) && VAE_EDGE_RELAXED_OK
#define VAE_EDGE_RELAXED 1 /* conv_row_relaxed below */
#define RELAXED_QUADS_MAX 512
/* i32x4.relaxed_dot_i8x16_i7x16_add_s(a, b, acc): per i32 lane, acc plus the four products of a's signed bytes
 * and b's bytes. Relaxed SIMD leaves b's top bit to the engine (read signed or unsigned, pairs of products
 * saturated or not), so its value is only fixed when every byte of b is in [0, 127]: the only b passed here.
 * clang 14 has no builtin for the instruction, so this function computes it exactly in SIMD128 and
 * tools/web/wasm.py replaces each call of it with the instruction (0xfd 0x113); unpatched, the module gives
 * the same integers, only slower. const: it reads no memory, so clang keeps values in locals across it. */
v128 vae_edge_relaxed_dot(v128 a, v128 b, v128 acc);
__attribute__((noinline, const)) v128 vae_edge_relaxed_dot(v128 a, v128 b, v128 acc) {
  const v128 ae = wasm_i16x8_shr(wasm_i16x8_shl(a, 8), 8), ao = wasm_i16x8_shr(a, 8);
  const v128 be = wasm_i16x8_shr(wasm_i16x8_shl(b, 8), 8), bo = wasm_i16x8_shr(b, 8);
  return wasm_i32x4_add(acc, wasm_i32x4_add(wasm_i32x4_dot_i16x8(ae, be), wasm_i32x4_dot_i16x8(ao, bo)));
}
#define V_DOT8(a, b, acc) vae_edge_relaxed_dot(a, b, acc)

/* The four lanes' sum plus b, modulo 2^32 (partial sums may wrap; the whole sum fits in int32). */
static inline int32_t lanes_sum(v128 v, int32_t b) {
  return (int32_t)((uint32_t)wasm_i32x4_extract_lane(v, 0) + (uint32_t)wasm_i32x4_extract_lane(v, 1) +
                   (uint32_t)wasm_i32x4_extract_lane(v, 2) + (uint32_t)wasm_i32x4_extract_lane(v, 3) + (uint32_t)b);
}

/* Activations between layers are u = value - the next layer's input zero point, in [0, 255] (relaxed_eligible),
 * kept as two byte planes of the ring: low = u & 127 (in place) and high = (u & 128) / 2, 64 or 0 (one plane
 * further: the ring's second half). Then sum_i w_i u_i = dot(w, low) + 2 dot(w, high): every b in [0, 127]. */
static inline void store_planes(int8_t *out, size_t plane, v128 u8) {
  V_STORE(out, wasm_v128_and(u8, wasm_i8x16_splat(127)));
  V_STORE(out + plane, wasm_v128_and(wasm_i8x16_lt(u8, V_ZERO()), wasm_i8x16_splat(64))); /* top bit set: 64 */
}

/* Sixteen channels' int32 sums (bias included) -> out[0..15]: int8 logits (plane 0), else the two planes. */
VAE_EDGE_INLINE void store16_u8(int8_t *out, size_t plane, v128 s0, v128 s1, v128 s2, v128 s3,
                                const int32_t *mult, const int8_t *shift, int right, int32_t zp, int32_t lo,
                                int32_t hi, int32_t nz) {
  int32_t s[16];
  uint8_t u[16];
  int j;
  if (right >= 0) { /* [lo, hi] (+ nz) lies in int8 (or [0, 255]): the saturating narrows change nothing */
    s0 = requantize4(s0, V_LOAD(mult), right, zp, lo, hi, nz);
    s1 = requantize4(s1, V_LOAD(mult + 4), right, zp, lo, hi, nz);
    s2 = requantize4(s2, V_LOAD(mult + 8), right, zp, lo, hi, nz);
    s3 = requantize4(s3, V_LOAD(mult + 12), right, zp, lo, hi, nz);
    s0 = wasm_i16x8_narrow_i32x4(s0, s1);
    s2 = wasm_i16x8_narrow_i32x4(s2, s3);
    if (plane) store_planes(out, plane, wasm_u8x16_narrow_i16x8(s0, s2));
    else V_STORE(out, wasm_i8x16_narrow_i16x8(s0, s2));
    return;
  }
  V_STORE(s, s0);
  V_STORE(s + 4, s1);
  V_STORE(s + 8, s2);
  V_STORE(s + 12, s3);
  for (j = 0; j < 16; ++j) u[j] = (uint8_t)(requantize(s[j], mult[j], shift[j], zp, lo, hi) + nz);
  if (plane) store_planes(out, plane, V_LOAD(u));
  else V_STORE(out, V_LOAD(u));
}

/* conv_row_relaxed for a layer of fewer than 16 output channels (the int8 logits): channel by channel, tap by
 * tap over the phase's whole row of output pixels, the tap's weights in registers and each pixel's four partial
 * sums in acc[] (summed and requantized at the end). A pixel's input with a high half adds its two dot products
 * with the high plane as conv_row_relaxed does. */
#define RELAXED_ROW_MAX 128
VAE_EDGE_INLINE void conv_row_relaxed_narrow(const conv_layer_t *L, const int8_t *w7, const int32_t *w7_start,
                                             int r, int8_t *out, size_t out_plane) {
  const int py = r % L->P, Y = r / L->P, Q = L->Q;
  const int C = L->in_c, OC = L->out_c;
  const size_t plane = (size_t)L->in_rows * (size_t)L->in_w * (size_t)C;
  const int8_t *in = (const int8_t *)(const void *)L->in;
  v128 acc[RELAXED_ROW_MAX];
  int px;
  for (px = 0; px < L->P; ++px) {
    const int p = py * L->P + px;
    const int t0 = L->tap_start[p], nt = L->tap_start[p + 1] - t0;
    const int32_t *bias = L->bias + p * L->param_stride, *mult = L->mult + p * L->param_stride;
    const int8_t *shift = L->shift + p * L->param_stride;
    const int nx = (L->out_w - px + L->P - 1) / L->P;
    int c, t, X, k;
    for (c = 0; c < OC; ++c) {
      const int8_t *w = w7 + w7_start[p] + (size_t)c * (size_t)nt * (size_t)C;
      for (X = 0; X < nx; ++X) acc[X] = V_ZERO();
      for (t = 0; t < nt; ++t, w += C) {
        const int iy = Q * Y + L->dy[t0 + t], dx = L->dx[t0 + t], last = L->in_w - 1 - dx;
        const int x0 = dx < 0 ? (Q - 1 - dx) / Q : 0; /* the pixels X with 0 <= Q X + dx < in_w */
        const int x1 = last < 0 ? 0 : (last / Q + 1 < nx ? last / Q + 1 : nx);
        const int8_t *row;
        if (iy < 0 || iy >= L->in_h) continue;
        row = in + ((size_t)(iy % L->in_rows) * (size_t)L->in_w + (size_t)dx) * (size_t)C;
        for (X = x0; X < x1; ++X) {
          const int8_t *x = row + (size_t)(Q * X) * (size_t)C;
          v128 s = acc[X], any = V_ZERO();
          for (k = 0; k < C; k += 16) {
            s = V_DOT8(V_LOAD(w + k), V_LOAD(x + k), s);
            any = wasm_v128_or(any, V_LOAD(x + plane + k));
          }
          if (wasm_v128_any_true(any)) {
            for (k = 0; k < C; k += 16) {
              const v128 wv = V_LOAD(w + k), h = V_LOAD(x + plane + k);
              s = V_DOT8(wv, h, V_DOT8(wv, h, s));
            }
          }
          acc[X] = s;
        }
      }
      for (X = 0; X < nx; ++X) {
        const int32_t v = requantize(lanes_sum(acc[X], bias[c]), mult[c], shift[c], L->out_zp, L->lo, L->hi);
        const size_t o = (size_t)(L->P * X + px) * (size_t)OC + (size_t)c;
        if (out_plane) {
          const int32_t u = v + L->next_neg_zp;
          out[o] = (int8_t)(u & 127);
          out[o + out_plane] = (int8_t)((u & 128) >> 1);
        } else {
          out[o] = (int8_t)v;
        }
      }
    }
  }
}

/* conv_row for WebAssembly relaxed SIMD: one int8 dot product per four multiply-accumulates, exact.
 * a = the weights (signed bytes), b = the inputs' low plane, four inputs broadcast to the lanes of sixteen
 * channels (two pixels at a time, as conv_row_simd). The inputs of a pixel's tap with a high half (u >= 128,
 * rare after a ReLU) are listed by groups of four while the taps are set up, and added after: two dot
 * products with their high plane (64 each) per group. Weights per phase: per block of 16 output channels
 * [tap][input quad][channel][4], then each channel left over (all of them for the int8 logits) [tap][input]. */
VAE_EDGE_INLINE void conv_row_relaxed(const conv_layer_t *L, const int8_t *w7, const int32_t *w7_start, int r,
                                      int8_t *out, size_t out_plane, int right) {
  const int py = r % L->P, Y = r / L->P;
  const int C = L->in_c, OC = L->out_c, blocks = OC / 16;
  const int sb = L->Q * C;
  const size_t plane = (size_t)L->in_rows * (size_t)L->in_w * (size_t)C; /* low plane -> high plane */
  const int8_t *in = (const int8_t *)(const void *)L->in;
  const int32_t zp = L->out_zp, lo = L->lo, hi = L->hi, nz = L->next_neg_zp;
  int px;
  if (OC < 16 && L->out_w <= RELAXED_ROW_MAX) {
    conv_row_relaxed_narrow(L, w7, w7_start, r, out, out_plane);
    return;
  }
  for (px = 0; px < L->P; ++px) {
    const int p = py * L->P + px;
    const int t0 = L->tap_start[p], nt = L->tap_start[p + 1] - t0;
    const int32_t *bias = L->bias + p * L->param_stride, *mult = L->mult + p * L->param_stride;
    const int8_t *shift = L->shift + p * L->param_stride;
    const int nx = (L->out_w - px + L->P - 1) / L->P;
    int X;
    for (X = 0; X < nx; X += 2) {
      const int two = X + 1 < nx;
      const size_t oa = (size_t)(L->P * X + px) * (size_t)OC, ob = oa + (size_t)L->P * (size_t)OC;
      const int8_t *xs[SIMD_TAPS_MAX];
      int which[SIMD_TAPS_MAX]; /* bit 0: pixel a reads this tap, bit 1: pixel b; xs[t] is a's input, else b's */
      int high[SIMD_TAPS_MAX];  /* bit 0: a's input at this tap has a high half, bit 1: b's */
      int32_t qa[RELAXED_QUADS_MAX], qb[RELAXED_QUADS_MAX]; /* groups with a high half: t * C + input */
      int na = 0, nb = 0, t, blk, c, k;
      for (t = 0; t < nt; ++t) {
        const int iy = L->Q * Y + L->dy[t0 + t], ia = L->Q * X + L->dx[t0 + t], ib = ia + L->Q;
        const int row_ok = iy >= 0 && iy < L->in_h;
        const int a_ok = row_ok && ia >= 0 && ia < L->in_w, b_ok = row_ok && two && ib >= 0 && ib < L->in_w;
        const int8_t *x;
        which[t] = a_ok | (b_ok << 1);
        x = which[t] ? in + ((size_t)(iy % L->in_rows) * (size_t)L->in_w + (size_t)(a_ok ? ia : ib)) * (size_t)C : in;
        xs[t] = x;
        high[t] = 0;
        if (which[t]) { /* one test of the tap's high planes, then (rarely) the groups */
          const int8_t *ha = x + plane, *hb = (a_ok ? x + sb : x) + plane;
          v128 any = V_ZERO();
          if (a_ok)
            for (k = 0; k < C; k += 16) any = wasm_v128_or(any, V_LOAD(ha + k));
          if (b_ok)
            for (k = 0; k < C; k += 16) any = wasm_v128_or(any, V_LOAD(hb + k));
          if (!wasm_v128_any_true(any)) continue;
        }
        for (k = 0; k < C && which[t]; k += 16) {
          const int ma = a_ok ? wasm_i8x16_bitmask(wasm_i8x16_shl(V_LOAD(x + plane + k), 1)) : 0;
          const int mb = b_ok ? wasm_i8x16_bitmask(wasm_i8x16_shl(V_LOAD((a_ok ? x + sb : x) + plane + k), 1)) : 0;
          int j;
          if (!(ma | mb)) continue;
          high[t] |= (ma ? 1 : 0) | (mb ? 2 : 0);
          for (j = 0; j < 16; j += 4) {
            if ((ma >> j) & 15) qa[na++] = t * C + k + j;
            if ((mb >> j) & 15) qb[nb++] = t * C + k + j;
          }
        }
      }
      for (blk = 0; blk < blocks; ++blk) {
        const int8_t *w = w7 + w7_start[p] + (size_t)blk * (size_t)nt * (size_t)C * 16;
        v128 a0, a1, a2, a3, b0, b1, b2, b3;
        int e;
        c = 16 * blk;
        a0 = b0 = V_LOAD(bias + c);
        a1 = b1 = V_LOAD(bias + c + 4);
        a2 = b2 = V_LOAD(bias + c + 8);
        a3 = b3 = V_LOAD(bias + c + 12);
        for (t = 0; t < nt; ++t) {
          const int8_t *x = xs[t], *wk = w + (size_t)t * (size_t)C * 16;
          if (which[t] == 3) {
            VAE_EDGE_NO_UNROLL for (k = 0; k < C; k += 4, wk += 64) {
              const v128 xa = V_LOAD32_SPLAT(x + k), xb = V_LOAD32_SPLAT(x + sb + k);
              v128 wv = V_LOAD(wk);
              a0 = V_DOT8(wv, xa, a0);
              b0 = V_DOT8(wv, xb, b0);
              wv = V_LOAD(wk + 16);
              a1 = V_DOT8(wv, xa, a1);
              b1 = V_DOT8(wv, xb, b1);
              wv = V_LOAD(wk + 32);
              a2 = V_DOT8(wv, xa, a2);
              b2 = V_DOT8(wv, xb, b2);
              wv = V_LOAD(wk + 48);
              a3 = V_DOT8(wv, xa, a3);
              b3 = V_DOT8(wv, xb, b3);
            }
          } else if (which[t] == 1) {
            VAE_EDGE_NO_UNROLL for (k = 0; k < C; k += 4, wk += 64) {
              const v128 xa = V_LOAD32_SPLAT(x + k);
              a0 = V_DOT8(V_LOAD(wk), xa, a0);
              a1 = V_DOT8(V_LOAD(wk + 16), xa, a1);
              a2 = V_DOT8(V_LOAD(wk + 32), xa, a2);
              a3 = V_DOT8(V_LOAD(wk + 48), xa, a3);
            }
          } else if (which[t] == 2) {
            VAE_EDGE_NO_UNROLL for (k = 0; k < C; k += 4, wk += 64) {
              const v128 xb = V_LOAD32_SPLAT(x + k);
              b0 = V_DOT8(V_LOAD(wk), xb, b0);
              b1 = V_DOT8(V_LOAD(wk + 16), xb, b1);
              b2 = V_DOT8(V_LOAD(wk + 32), xb, b2);
              b3 = V_DOT8(V_LOAD(wk + 48), xb, b3);
            }
          }
        }
        for (e = 0; e < na; ++e) { /* the high halves: 2 * dot(w, 64 or 0) = 128 w where u >= 128 */
          const int tq = qa[e] / C, iq = qa[e] - tq * C;
          const v128 h = V_LOAD32_SPLAT(xs[tq] + plane + iq);
          const int8_t *wk = w + (size_t)qa[e] * 16;
          v128 wv = V_LOAD(wk);
          a0 = V_DOT8(wv, h, V_DOT8(wv, h, a0));
          wv = V_LOAD(wk + 16);
          a1 = V_DOT8(wv, h, V_DOT8(wv, h, a1));
          wv = V_LOAD(wk + 32);
          a2 = V_DOT8(wv, h, V_DOT8(wv, h, a2));
          wv = V_LOAD(wk + 48);
          a3 = V_DOT8(wv, h, V_DOT8(wv, h, a3));
        }
        for (e = 0; e < nb; ++e) {
          const int tq = qb[e] / C, iq = qb[e] - tq * C;
          const v128 h = V_LOAD32_SPLAT((which[tq] == 3 ? xs[tq] + sb : xs[tq]) + plane + iq);
          const int8_t *wk = w + (size_t)qb[e] * 16;
          v128 wv = V_LOAD(wk);
          b0 = V_DOT8(wv, h, V_DOT8(wv, h, b0));
          wv = V_LOAD(wk + 16);
          b1 = V_DOT8(wv, h, V_DOT8(wv, h, b1));
          wv = V_LOAD(wk + 32);
          b2 = V_DOT8(wv, h, V_DOT8(wv, h, b2));
          wv = V_LOAD(wk + 48);
          b3 = V_DOT8(wv, h, V_DOT8(wv, h, b3));
        }
        store16_u8(out + oa + c, out_plane, a0, a1, a2, a3, mult + c, shift + c, right, zp, lo, hi, nz);
        if (two) store16_u8(out + ob + c, out_plane, b0, b1, b2, b3, mult + c, shift + c, right, zp, lo, hi, nz);
      }
      for (c = 16 * blocks; c < OC; ++c) { /* channels left over (all of them for int8 logits): one at a time */
        const int8_t *w = w7 + w7_start[p] + (size_t)c * (size_t)nt * (size_t)C;
        v128 a0 = V_ZERO(), b0 = V_ZERO();
        int32_t va, vb;
        for (t = 0; t < nt; ++t, w += C) {
          const int8_t *x = xs[t];
          if (which[t] == 3) {
            for (k = 0; k < C; k += 16) {
              const v128 wv = V_LOAD(w + k);
              a0 = V_DOT8(wv, V_LOAD(x + k), a0);
              b0 = V_DOT8(wv, V_LOAD(x + sb + k), b0);
            }
          } else if (which[t] == 1) {
            for (k = 0; k < C; k += 16) a0 = V_DOT8(V_LOAD(w + k), V_LOAD(x + k), a0);
          } else if (which[t] == 2) {
            for (k = 0; k < C; k += 16) b0 = V_DOT8(V_LOAD(w + k), V_LOAD(x + k), b0);
          }
          if (high[t] & 1) {
            for (k = 0; k < C; k += 16) {
              const v128 wv = V_LOAD(w + k), h = V_LOAD(x + plane + k);
              a0 = V_DOT8(wv, h, V_DOT8(wv, h, a0));
            }
          }
          if (high[t] & 2) {
            const int8_t *xb = which[t] == 3 ? x + sb : x;
            for (k = 0; k < C; k += 16) {
              const v128 wv = V_LOAD(w + k), h = V_LOAD(xb + plane + k);
              b0 = V_DOT8(wv, h, V_DOT8(wv, h, b0));
            }
          }
        }
        va = requantize(lanes_sum(a0, bias[c]), mult[c], shift[c], zp, lo, hi) + (out_plane ? nz : 0);
        vb = requantize(lanes_sum(b0, bias[c]), mult[c], shift[c], zp, lo, hi) + (out_plane ? nz : 0);
        if (out_plane) {
          out[oa + c] = (int8_t)(va & 127);
          out[oa + c + out_plane] = (int8_t)((va & 128) >> 1);
          if (two) {
            out[ob + c] = (int8_t)(vb & 127);
            out[ob + c + out_plane] = (int8_t)((vb & 128) >> 1);
          }
        } else {
          out[oa + c] = (int8_t)va;
          if (two) out[ob + c] = (int8_t)vb;
        }
      }
    }
  }
}
#endif /* relaxed */
#endif /* VAE_EDGE_SIMD128 */
#ifndef VAE_EDGE_REQUANTIZE4
#define VAE_EDGE_REQUANTIZE4 0
#endif
#ifndef VAE_EDGE_RELAXED
#define VAE_EDGE_RELAXED 0
#endif
"""


ASM_HALF_STEP = """\
    "ldr %[u], [%[w]], #4\\n\\t"
    "ldrd %[p0], %[p1], [%[x]], #8\\n\\t"
    "ldrd %[q0], %[q1], [%[x], #{qoff}]\\n\\t"
    "sxtb16 %[e], %[u]\\n\\t"
    "sxtb16 %[u], %[u], ror #8\\n\\t"
    "smlad %[a0], %[e], %[p0], %[a0]\\n\\t"
    "smlad %[a1], %[e], %[q0], %[a1]\\n\\t"
    "smlad %[a0], %[u], %[p1], %[a0]\\n\\t"
    "smlad %[a1], %[u], %[q1], %[a1]\\n\\t"
    "ldr %[u], [%[w]], #4\\n\\t"
    "sxtb16 %[e], %[u]\\n\\t"
    "sxtb16 %[u], %[u], ror #8\\n\\t"
    "smlad %[a2], %[e], %[p0], %[a2]\\n\\t"
    "smlad %[a3], %[e], %[q0], %[a3]\\n\\t"
    "smlad %[a2], %[u], %[p1], %[a2]\\n\\t"
    "smlad %[a3], %[u], %[q1], %[a3]\\n\\t"
"""


ASM_1X2_HALF = """\
    "ldr %[u], [%[w]], #4\\n\\t"
    "ldrd %[p0], %[p1], [%[x]], #8\\n\\t"
    "ldrd %[q0], %[q1], [%[x], #{qoff}]\\n\\t"
    "sxtb16 %[e], %[u]\\n\\t"
    "sxtb16 %[u], %[u], ror #8\\n\\t"
    "smlad %[a0], %[e], %[p0], %[a0]\\n\\t"
    "smlad %[a1], %[e], %[q0], %[a1]\\n\\t"
    "smlad %[a0], %[u], %[p1], %[a0]\\n\\t"
    "smlad %[a1], %[u], %[q1], %[a1]\\n\\t"
"""


def asm_kernels(strides: list[int]) -> str:
    """Cortex-M4 2x2 kernels with the pixel stride as an LDRD offset (one per stride the model uses), and the
    mac_2x2 that picks one (folded at compile time, the stride being a layer constant). 32 MACs a pass:
    4 LDR + 4 LDRD + 8 SXTB16 + 16 SMLAD + SUBS/BNE, the loads paired, which GCC does not do for the C."""
    out = ["#if VAE_EDGE_DSP\n"]
    for sb in strides:
        if not 8 <= 2 * sb <= 1020 + 8:
            continue
        half = ASM_HALF_STEP.replace("{qoff}", str(2 * sb - 8))
        out.append(
            f"""VAE_EDGE_INLINE const uint32_t *mac_2x2_sb{sb}(const uint32_t *w, const int16_t *x, int n, int32_t acc[4]) {{
  int32_t a0 = acc[0], a1 = acc[1], a2 = acc[2], a3 = acc[3];
  uint32_t u, e, p0, p1, q0, q1;
  int passes = n >> 3;
  __asm__ volatile(
    "1:\\n\\t"
{half}{half}    "subs %[n], %[n], #1\\n\\t"
    "bne 1b\\n\\t"
    : [w] "+r"(w), [x] "+r"(x), [n] "+r"(passes), [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2), [a3] "+r"(a3),
      [u] "=&r"(u), [e] "=&r"(e), [p0] "=&r"(p0), [p1] "=&r"(p1), [q0] "=&r"(q0), [q1] "=&r"(q1)
    :
    : "cc", "memory");
  acc[0] = a0;
  acc[1] = a1;
  acc[2] = a2;
  acc[3] = a3;
  return w;
}}

"""
        )
    for sb in strides:
        if not 8 <= 2 * sb <= 1020 + 8:
            continue
        out.append(
            f"""VAE_EDGE_INLINE const uint32_t *mac_1x2_sb{sb}(const uint32_t *w, const int16_t *x, int n, int32_t acc[2]) {{
  int32_t a0 = acc[0], a1 = acc[1];
  uint32_t u, e, p0, p1, q0, q1;
  int passes = n >> 3;
  __asm__ volatile(
    "1:\\n\\t"
{ASM_1X2_HALF.replace("{qoff}", str(2 * sb - 8))}{ASM_1X2_HALF.replace("{qoff}", str(2 * sb - 8))}    "subs %[n], %[n], #1\\n\\t"
    "bne 1b\\n\\t"
    : [w] "+r"(w), [x] "+r"(x), [n] "+r"(passes), [a0] "+r"(a0), [a1] "+r"(a1),
      [u] "=&r"(u), [e] "=&r"(e), [p0] "=&r"(p0), [p1] "=&r"(p1), [q0] "=&r"(q0), [q1] "=&r"(q1)
    :
    : "cc", "memory");
  acc[0] = a0;
  acc[1] = a1;
  return w;
}}

"""
        )
    out.append(
        "VAE_EDGE_INLINE const uint32_t *mac_1x2(const uint32_t *w, const int16_t *x, int sb, int n, int32_t acc[2]) {\n"
    )
    for sb in strides:
        if 8 <= 2 * sb <= 1020 + 8:
            out.append(f"  if (sb == {sb} && n >= 8 && (n & 7) == 0) return mac_1x2_sb{sb}(w, x, n, acc);\n")
    out.append("  return mac_1x2_c(w, x, sb, n, acc);\n}\n\n")
    out.append(
        "VAE_EDGE_INLINE const uint32_t *mac_2x2(const uint32_t *w, const int16_t *x, int sb, int n, int32_t acc[4]) {\n"
    )
    for sb in strides:
        if 8 <= 2 * sb <= 1020 + 8:
            out.append(f"  if (sb == {sb} && n >= 8 && (n & 7) == 0) return mac_2x2_sb{sb}(w, x, n, acc);\n")
    out.append("  return mac_2x2_c(w, x, sb, n, acc);\n}\n#endif\n\n")
    return "".join(out)


SIMD_TAPS_MAX = 64  # conv_row_simd's per-phase tap tables


def simd_eligible(c: ConvLayer) -> bool:
    """Whether conv_row_simd (the 128-bit SIMD builds' kernel) takes this layer: 8-input vectors, few taps."""
    return c.in_shape[2] % 8 == 0 and max(len(ph.taps) for ph in c.phases) <= SIMD_TAPS_MAX


def simd_weights(c: ConvLayer) -> tuple[np.ndarray, list[int]]:
    """conv_row_simd's int16 weights and per-phase offsets: per phase, per block of 16 output channels
    [tap][input pair][channel][2], then each channel left over [tap][input]."""
    ic = c.in_shape[2]
    parts, starts, offset = [], [], 0
    for ph in c.phases:
        w = ph.weights.astype(np.int16)  # (OC, ntaps, IC)
        oc, nt, _ = w.shape
        n16 = oc - oc % 16
        blocks = w[:n16].reshape(n16 // 16, 16, nt, ic // 2, 2).transpose(0, 2, 3, 1, 4)
        parts += [blocks.ravel(), w[n16:].ravel()]
        starts.append(offset)
        offset += w.size
    return np.concatenate(parts), starts


def uniform_right_shift(c: ConvLayer) -> int:
    """The layer's one right shift when every channel of every phase has it, else -1 (conv_row_simd's right)."""
    shifts = np.concatenate([ph.shift for ph in c.phases])
    return int(-shifts[0]) if shifts[0] <= 0 and np.all(shifts == shifts[0]) else -1


RELAXED_QUADS_MAX = 512  # conv_row_relaxed's per-pixel list of input groups with a high half (as in the C)


def relaxed_eligible(plan: DecoderPlan) -> bool:
    """Whether conv_row_relaxed (WebAssembly relaxed SIMD) takes every layer: 16-input vectors, few taps, and
    inputs u = value - input zero point in [0, 255] (low 7 bits and high bit as two byte planes). All layers or
    none: the relaxed build keeps every activation in those planes."""
    producers = [(plan.dense.lo, plan.dense.hi)] + [(c.lo, c.hi) for c in plan.convs[:-1]]
    return all(
        c.in_shape[2] % 16 == 0
        and max(len(ph.taps) for ph in c.phases) <= SIMD_TAPS_MAX
        and max(len(ph.taps) for ph in c.phases) * c.in_shape[2] // 4 <= RELAXED_QUADS_MAX
        and lo - c.in_zp >= 0
        and hi - c.in_zp <= 255
        for c, (lo, hi) in zip(plan.convs, producers, strict=True)
    )


def relaxed_weights(c: ConvLayer) -> tuple[np.ndarray, list[int]]:
    """conv_row_relaxed's int8 weights and per-phase offsets: per phase, per block of 16 output channels
    [tap][input quad][channel][4], then each channel left over [tap][input]."""
    parts, starts, offset = [], [], 0
    for ph in c.phases:
        w = ph.weights  # (OC, ntaps, IC) int8
        oc, nt, ic = w.shape
        n16 = oc - oc % 16
        blocks = w[:n16].reshape(n16 // 16, 16, nt, ic // 4, 4).transpose(0, 2, 3, 1, 4)
        parts += [blocks.ravel(), w[n16:].ravel()]
        starts.append(offset)
        offset += w.size
    return np.concatenate(parts).astype(np.int8), starts


def _preprocessor_choice(branches: list[tuple[str, str]], default: str) -> str:
    """``#if A`` text ``#elif B`` text ... ``#else`` default ``#endif`` (default alone when there are none)."""
    if not branches:
        return default
    out = "".join(f"#{'if' if i == 0 else 'elif'} {cond}\n{text}" for i, (cond, text) in enumerate(branches))
    return f"{out}#else\n{default}#endif\n"


def emit_c(
    plan: DecoderPlan, *, prior_cholesky: np.ndarray | None = None, prior_note: str = ""
) -> tuple[str, str]:
    """(header, source) of the generated decoder. Deterministic: the same plan gives the same bytes."""
    from export.carray import pixel_lut

    m = c_identifier(plan.name)
    M = m.upper()
    sched = schedule(plan)
    D = plan.latent_dim
    L = check_prior(prior_cholesky, D)
    d = plan.dense
    lut = pixel_lut(plan.logits_scale, plan.logits_zp)
    relaxed = relaxed_eligible(plan)
    shapes = [d.out_shape] + [c.out_shape for c in plan.convs]
    ring_values = [sched.ring_rows[k] * shapes[k][1] * shapes[k][2] for k in range(len(sched.ring_rows))]
    acc_values = 2 * max(c.out_shape[2] for c in plan.convs)
    static_bytes = 2 * sum(ring_values) + 4 * acc_values + D
    provenance = f"{plan.source} (sha256 {plan.source_sha256})" if plan.source else "a TFLite decoder"
    guard = f"VAE_EDGE_{M}_DECODER_H_"
    chol = ", ".join(_float(v) for v in L.reshape(-1))
    header = f"""/* Generated by python -m firmware_sim.codegen from {provenance}, {plan.graph_kind} graph. Do not edit.
 *
 * int8 decoder of {plan.name}, bit-exact with TensorFlow Lite Micro: integer arithmetic only, no malloc,
 * {static_bytes} bytes of static buffers, weights in const arrays ({plan.real_macs} multiply-accumulates per decode).
 *
 *   int8_t logits[{M}_PIXELS];
 *   {m}_decode(z_int8, logits);             // z_int8[i] = quantized latent, see {M}_LATENT_SCALE
 *   uint8_t pixels[{M}_PIXELS];
 *   {m}_sample(z_float, pixels);            // quantize z, decode, grey 0..255 (0 = black)
 *
 * Drawing from the prior N(0, S): z = L eps with eps ~ N(0, I) and L = {m}_prior_cholesky (row-major, lower).
 */
#ifndef {guard}
#define {guard}

#include <stdint.h>

#define {M}_LATENT_DIM {D}
#define {M}_IMAGE_ROWS 28
#define {M}_IMAGE_COLS 28
#define {M}_PIXELS 784
/* Latent quantization: z_int8 = clamp(round(z / scale) + zero_point, -128, 127). */
#define {M}_LATENT_SCALE {_float(plan.latent_scale)}
#define {M}_LATENT_ZERO_POINT ({plan.latent_zp})
/* Output logits: logit = scale * (q - zero_point); pixel = {m}_pixel_lut[q + 128]. */
#define {M}_LOGITS_SCALE {_float(plan.logits_scale)}
#define {M}_LOGITS_ZERO_POINT ({plan.logits_zp})
#define {M}_STATIC_RAM_BYTES {static_bytes}

/* The prior's Cholesky factor L (S = L L^T){(", " + prior_note) if prior_note else ""}. */
extern const float {m}_prior_cholesky[{D * D}];
/* round(255 * sigmoid(logit)) for q = -128 .. 127. */
extern const uint8_t {m}_pixel_lut[256];

/* Decode one int8 latent into 28x28 int8 logits (row-major). Returns 0. */
int {m}_decode(const int8_t z[{M}_LATENT_DIM], int8_t logits[{M}_PIXELS]);
/* Quantize a float latent as the model's input expects. */
void {m}_quantize_latent(const float z[{M}_LATENT_DIM], int8_t z_int8[{M}_LATENT_DIM]);
/* Quantize, decode and map through the pixel table: 784 grey levels. */
void {m}_sample(const float z[{M}_LATENT_DIM], uint8_t pixels[{M}_PIXELS]);

#endif /* {guard} */
"""
    parts = [
        f"/* Generated by python -m firmware_sim.codegen from {provenance}, {plan.graph_kind} graph. Do not edit. */\n",
        f'#include "{m}_decoder.h"\n\n#include <string.h>\n',
        f"/* Whether every layer suits conv_row_relaxed (WebAssembly relaxed SIMD, -DVAE_EDGE_RELAXED_DOT). */\n"
        f"#define VAE_EDGE_RELAXED_OK {int(relaxed)}\n",
        KERNELS_C.replace(
            "/*@ASM_KERNELS@*/\n", asm_kernels(sorted({c.Q * c.in_shape[2] for c in plan.convs}))
        ),
        "\n/* ---- model constants ---- */\n",
        f"const float {m}_prior_cholesky[{D * D}] = {{{chol}}};\n",
        _array("uint8_t", f"{m}_pixel_lut", lut, static=False),
        _array("int8_t", "dense_w", d.weights),
        _array(_smallest_int(d.bias), "dense_bias", d.bias),
    ]
    strides = []
    simd_layers = [simd_eligible(c) for c in plan.convs]
    for k, c in enumerate(plan.convs, start=1):
        tap_start, dys, dxs, w_start, ws = [0], [], [], [], []
        offset = 0
        for ph in c.phases:
            dys += [t[0] for t in ph.taps]
            dxs += [t[1] for t in ph.taps]
            tap_start.append(len(dys))
            w_start.append(offset)
            ws.append(
                np.concatenate([pack_weights(ph.weights[:, t : t + 1, :]) for t in range(len(ph.taps))])
            )
            offset += ws[-1].size
        shared = all(
            np.array_equal(getattr(ph, f), getattr(c.phases[0], f))
            for ph in c.phases
            for f in ("bias", "mult", "shift")
        )
        params = c.phases[:1] if shared else c.phases
        if max(abs(v) for v in dys + dxs) > 127 or tap_start[-1] > 127:
            raise UnsupportedOpError("a layer has taps the generator's int8 tap tables cannot hold")
        weight_branches = []
        if relaxed:
            w7, w7_start = relaxed_weights(c)
            weight_branches.append(
                (
                    "VAE_EDGE_RELAXED",
                    _array("int8_t", f"l{k}_w7", w7)
                    + _array("int32_t", f"l{k}_w7_start", w7_start)
                    + f"#define l{k}_w ((const uint32_t *)0) /* conv_row_relaxed reads l{k}_w7 */\n",
                )
            )
        if simd_layers[k - 1]:
            w16, w16_start = simd_weights(c)
            weight_branches.append(
                (
                    "VAE_EDGE_SIMD128",
                    _array("int16_t", f"l{k}_w16", w16)
                    + _array("int32_t", f"l{k}_w16_start", w16_start)
                    + f"#define l{k}_w ((const uint32_t *)0) /* conv_row_simd reads l{k}_w16 */\n",
                )
            )
        words = _preprocessor_choice(weight_branches, _words(f"l{k}_w", np.concatenate(ws)))
        parts += [
            f"\n/* layer {k}: {c.kind}, {c.in_shape} -> {c.out_shape}, {c.P}x{c.P} phases, "
            f"{c.stored_weights} real weights */\n",
            _array("int8_t", f"l{k}_tap_start", tap_start),
            _array("int8_t", f"l{k}_dy", dys),
            _array("int8_t", f"l{k}_dx", dxs),
            _array("int32_t", f"l{k}_w_start", w_start),
            words,
            _array("int32_t", f"l{k}_bias", np.concatenate([ph.bias for ph in params])),
            _array("int32_t", f"l{k}_mult", np.concatenate([ph.mult for ph in params])),
            _array("int8_t", f"l{k}_shift", np.concatenate([ph.shift for ph in params])),
        ]
        strides.append(0 if shared else c.out_shape[2])
    parts.append(
        "\n/* ---- activations: a ring of rows per image; the last layer writes the caller's logits ---- */\n"
    )
    parts.append(f"static int8_t latent[{D}];\n")
    for k, rows in enumerate(sched.ring_rows):
        parts.append(
            f"static int16_t ring{k}[{ring_values[k]}] VAE_EDGE_ALIGN4; /* {rows} rows of {shapes[k][1]}x{shapes[k][2]} */\n"
        )
    acc_decl = f"static int32_t acc[{acc_values}];\n"
    if all(simd_layers):  # the SIMD kernel keeps its sums in registers
        acc_decl = f"#if !VAE_EDGE_SIMD128\n{acc_decl}#endif\n"
    parts.append(f"{acc_decl}static int rows_done[{len(shapes)}];\n")
    parts.append("static int8_t *logits_out;\n")
    for k, c in enumerate(plan.convs, start=1):
        parts.append(
            f"static const conv_layer_t layer{k} = {{{c.in_shape[0]}, {c.in_shape[1]}, {c.in_shape[2]}, "
            f"{sched.ring_rows[k - 1]}, ring{k - 1}, {c.out_shape[1]}, {c.out_shape[2]}, {c.P}, {c.Q}, "
            f"{c.out_zp}, {c.lo}, {c.hi}, {-plan.convs[k].in_zp if k < len(plan.convs) else 0}, l{k}_tap_start, l{k}_dy, l{k}_dx, l{k}_w_start, l{k}_w, "
            f"l{k}_bias, l{k}_mult, l{k}_shift, {strides[k - 1]}}};\n"
        )
    dh, dw, dc = d.out_shape
    dense_simd = ""
    if d.shift <= 0 and (dw * dc) % 4 == 0:  # requantize4: a shared right shift, whole vectors of 4 outputs
        dense_simd = f"""#if VAE_EDGE_REQUANTIZE4
  for (j = 0; j < {dw * dc}; j += 4) {{
    int32_t sums[4];
    int q;
    v128 v;
    for (q = 0; q < 4; ++q) {{
      const int n = r * {dw * dc} + j + q;
      int32_t sum = dense_bias[n];
      for (i = 0; i < {D}; ++i) sum += (int32_t)dense_w[n * {D} + i] * ((int32_t)latent[i] - ({d.in_zp}));
      sums[q] = sum;
    }}
    v = requantize4(V_LOAD(sums), wasm_i32x4_splat({d.mult}), {-d.shift}, {d.out_zp}, {d.lo}, {d.hi}, {-plan.convs[0].in_zp});
    wasm_v128_store64_lane(out + j, wasm_i16x8_narrow_i32x4(v, v), 0);
  }}
  return;
#endif
"""
    if relaxed:  # conv_row_relaxed reads u = value - zero point in two byte planes of ring0
        nz = -plan.convs[0].in_zp
        sums = f"""    int32_t sum = dense_bias[n];
    for (i = 0; i < {D}; ++i) sum += (int32_t)dense_w[n * {D} + i] * ((int32_t)latent[i] - ({d.in_zp}));
"""
        if d.shift <= 0 and (dw * dc) % 4 == 0:
            store = f"""  for (j = 0; j < {dw * dc}; j += 4) {{
    int32_t sums[4];
    int q;
    v128 v;
    for (q = 0; q < 4; ++q) {{
      const int n = r * {dw * dc} + j + q;
  {sums.replace(chr(10) + "    ", chr(10) + "      ")}      sums[q] = sum;
    }}
    v = requantize4(V_LOAD(sums), wasm_i32x4_splat({d.mult}), {-d.shift}, {d.out_zp}, {d.lo}, {d.hi}, {nz});
    v = wasm_i16x8_narrow_i32x4(v, v);
    v = wasm_u8x16_narrow_i16x8(v, v);
    wasm_v128_store32_lane(out8 + j, wasm_v128_and(v, wasm_i8x16_splat(127)), 0);
    wasm_v128_store32_lane(out8 + j + {ring_values[0]}, wasm_v128_and(wasm_i8x16_lt(v, wasm_i8x16_splat(0)), wasm_i8x16_splat(64)), 0);
  }}
"""
        else:
            store = f"""  for (j = 0; j < {dw * dc}; ++j) {{
    const int n = r * {dw * dc} + j;
{sums}    sum = requantize(sum, {d.mult}, {d.shift}, {d.out_zp}, {d.lo}, {d.hi}) + ({nz});
    out8[j] = (int8_t)(sum & 127);
    out8[j + {ring_values[0]}] = (int8_t)((sum & 128) >> 1);
  }}
"""
        dense_simd = f"""#if VAE_EDGE_RELAXED
  int8_t *out8 = (int8_t *)(void *)ring0 + (size_t)(r % {sched.ring_rows[0]}) * {dw * dc}; /* bytes, not out */
  (void)out;
{store}  return;
#endif
{dense_simd}"""
    parts.append(
        f"""
/* Row r of the FULLY_CONNECTED output image ({dh}x{dw}x{dc}). */
static void dense_row(int r, int16_t *out) {{
  int j, i;
{dense_simd}  for (j = 0; j < {dw * dc}; ++j) {{
    const int n = r * {dw * dc} + j;
    int32_t sum = dense_bias[n];
    for (i = 0; i < {D}; ++i) sum += (int32_t)dense_w[n * {D} + i] * ((int32_t)latent[i] - ({d.in_zp}));
    out[j - j % {dc} + ACT_INDEX(j % {dc})] =
        (int16_t)(requantize(sum, {d.mult}, {d.shift}, {d.out_zp}, {d.lo}, {d.hi}) + ({-plan.convs[0].in_zp}));
  }}
}}

static void ensure0(int upto) {{
  while (rows_done[0] <= upto) {{
    dense_row(rows_done[0], ring0 + (size_t)(rows_done[0] % {sched.ring_rows[0]}) * {dw * dc});
    rows_done[0]++;
  }}
}}
"""
    )
    n = len(plan.convs)
    for k, c in enumerate(plan.convs, start=1):
        need = ", ".join(str(h) for h in sched.need_hi[k - 1])
        oh, ow, oc = c.out_shape
        if k < n:
            dest = f"ring{k} + (size_t)(r % {sched.ring_rows[k]}) * {ow * oc}, NULL"
        else:
            dest = f"NULL, logits_out + (size_t)r * {ow * oc}"
        right = uniform_right_shift(c)
        call_branches = []
        if relaxed:
            dest8 = (  # the ring's low plane, its high plane one plane further (ring_values[k] bytes)
                f"(int8_t *)(void *)ring{k} + (size_t)(r % {sched.ring_rows[k]}) * {ow * oc}, {ring_values[k]}"
                if k < n
                else f"logits_out + (size_t)r * {ow * oc}, 0"
            )
            call_branches.append(
                (
                    "VAE_EDGE_RELAXED",
                    f"    conv_row_relaxed(&layer{k}, l{k}_w7, l{k}_w7_start, r, {dest8}, {right});\n",
                )
            )
        if simd_layers[k - 1]:
            call_branches.append(
                (
                    "VAE_EDGE_SIMD128",
                    f"    conv_row_simd(&layer{k}, l{k}_w16, l{k}_w16_start, r, {dest}, {right});\n",
                )
            )
        call = _preprocessor_choice(call_branches, f"    conv_row(&layer{k}, r, {dest}, acc);\n").rstrip("\n")
        parts.append(
            f"""
static void ensure{k}(int upto) {{
  static const int8_t need_hi[{c.P}] = {{{need}}};
  while (rows_done[{k}] <= upto) {{
    const int r = rows_done[{k}];
    const int hi = {c.Q} * (r / {c.P}) + need_hi[r % {c.P}];
    ensure{k - 1}(hi < {c.in_shape[0] - 1} ? hi : {c.in_shape[0] - 1});
{call}
    rows_done[{k}]++;
  }}
}}
"""
        )
    parts.append(
        f"""
int {m}_decode(const int8_t z[{M}_LATENT_DIM], int8_t logits[{M}_PIXELS]) {{
  memcpy(latent, z, sizeof latent);
  memset(rows_done, 0, sizeof rows_done);
  logits_out = logits;
  ensure{n}({plan.convs[-1].out_shape[0] - 1});
  return 0;
}}

void {m}_quantize_latent(const float z[{M}_LATENT_DIM], int8_t z_int8[{M}_LATENT_DIM]) {{
  int i;
  for (i = 0; i < {M}_LATENT_DIM; ++i) {{
    /* TFLite's QUANTIZE: round half away from zero of z / scale (float), plus the zero point, clamped. */
    const float v = z[i] / {M}_LATENT_SCALE;
    float r;
    if (!(v == v)) r = 0.0f;
    else if (v > 1000.0f) r = 1000.0f;
    else if (v < -1000.0f) r = -1000.0f;
    else {{
      r = (float)(int32_t)v; /* truncation toward zero; the difference below is exact */
      if (v >= 0.0f && v - r >= 0.5f) r += 1.0f;
      else if (v < 0.0f && r - v >= 0.5f) r -= 1.0f;
    }}
    {{
      int32_t q = (int32_t)r + {M}_LATENT_ZERO_POINT;
      z_int8[i] = (int8_t)(q < -128 ? -128 : q > 127 ? 127 : q);
    }}
  }}
}}

void {m}_sample(const float z[{M}_LATENT_DIM], uint8_t pixels[{M}_PIXELS]) {{
  int8_t zq[{M}_LATENT_DIM];
  int i;
  {m}_quantize_latent(z, zq);
  {m}_decode(zq, (int8_t *)pixels); /* logits written in place, then mapped to grey levels */
  for (i = 0; i < {M}_PIXELS; ++i) pixels[i] = {m}_pixel_lut[(int8_t)pixels[i] + 128];
}}
"""
    )
    return header, "".join(parts)


# --------------------------------------------------------------------------------------------- front door
@dataclass(frozen=True)
class GeneratedDecoder:
    header: Path
    source: Path
    plan: DecoderPlan
    schedule: Schedule


def resolve_source(source: str | Path, graph: str) -> tuple[Path, str, np.ndarray | None, str]:
    """(tflite path, model name, prior Cholesky or None, graph kind) for an export folder or a .tflite file."""
    from runtime.manifest import MANIFEST_NAME, load_manifest

    src = Path(source)
    if src.is_dir():
        manifest = load_manifest(src)
        entry = manifest.select(
            role="decoder", format="tflite", precision="int8", io="int8", batch=1, graph=graph
        )
        path = manifest.verify(entry)
        return path, manifest.model, np.asarray(manifest.prior.cholesky), graph
    if not src.is_file():
        raise VaeEdgeError(
            f"{src} not found; give an export folder (artifacts/<model>/export) or a .tflite decoder"
        )
    chol = None
    name = src.stem
    if (src.parent / MANIFEST_NAME).is_file():
        manifest = load_manifest(src.parent)
        if manifest.kind == "vae":
            chol, name = np.asarray(manifest.prior.cholesky), manifest.model
    kind = next((g for g in GRAPHS if f"_{g}_" in src.name), graph)
    return src, name, chol, kind


def generate(
    *, source: str | Path, out: str | Path, graph: str = "subpixel", name: str | None = None
) -> GeneratedDecoder:
    """Lower and emit ``<name>_decoder.{h,c}`` into ``out``; nothing is written if anything fails."""
    from runtime.fileio import ensure_writable_dir

    path, model_name, chol, kind = resolve_source(source, graph)
    data = path.read_bytes()
    g = load_graph(path)
    plan = lower(
        g,
        name=name or model_name,
        graph_kind=kind,
        source=path.name,
        source_sha256=hashlib.sha256(data).hexdigest(),
    )
    note = "" if chol is not None else "identity: no vae-edge manifest beside the model"
    header, source_text = emit_c(plan, prior_cholesky=chol, prior_note=note)
    out_dir = ensure_writable_dir(out)
    m = c_identifier(plan.name)
    h_path, c_path = out_dir / f"{m}_decoder.h", out_dir / f"{m}_decoder.c"
    write_files_together({h_path: header, c_path: source_text})
    return GeneratedDecoder(h_path, c_path, plan, schedule(plan))


def write_files_together(files: dict[Path, str]) -> None:
    """Replace several files of one folder as a set: the old set or the new set, never a mix (a new .h beside
    an old .c no longer compiles).

    How: every file is written and fsynced to a temporary sibling first (a full disk fails here, with nothing
    replaced); each existing target is hard-linked to a backup; then the temporaries are renamed over the
    targets. Should a rename fail, the targets already replaced get their backups back (or are removed when
    there was none). Whatever happens, no temporary or backup is left behind. A process killed between two
    renames can still leave a mix; nothing short of a staged folder for the whole output folder avoids that,
    and the output folder holds other models' files."""
    import os
    import tempfile

    from runtime.fileio import replaceable_target

    for target in files:  # a device, pipe or folder in a target's place is refused before anything is written
        replaceable_target(target)
    temps: dict[Path, Path] = {}
    backups: dict[Path, Path | None] = {}
    done: list[Path] = []
    try:
        for target, text in files.items():
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
            temps[target] = Path(tmp)
            with os.fdopen(fd, "wb") as fh:
                fh.write(text.encode("utf-8"))
                fh.flush()
                os.fsync(fh.fileno())
        for target in files:
            backups[target] = None
            if target.is_file():
                backup = temps[target].with_suffix(".old")
                os.link(target, backup)
                backups[target] = backup
        for target in files:
            os.replace(temps[target], target)
            done.append(target)
    except BaseException:
        for target in reversed(done):  # put the old set back
            with _ignore_os_errors():
                if backups.get(target) is not None:
                    os.replace(backups[target], target)
                else:
                    target.unlink()
        raise
    finally:
        for path in [*temps.values(), *(b for b in backups.values() if b is not None)]:
            with _ignore_os_errors():
                path.unlink(missing_ok=True)


def _ignore_os_errors():
    import contextlib

    return contextlib.suppress(OSError)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = parser("python -m firmware_sim.codegen", __doc__)
    p.add_argument(
        "source", help="an export folder (artifacts/<model>/export) or a full-int8 batch-1 .tflite decoder"
    )
    p.add_argument(
        "--graph", choices=GRAPHS, default="subpixel", help="which decoder graph of an export folder"
    )
    p.add_argument(
        "--name",
        default=None,
        help="C prefix (default: the model name from the manifest, else the file stem)",
    )
    p.add_argument("--out", default="build/firmware", help="folder for <name>_decoder.{h,c}")
    return p.parse_args(argv)


@cli_main
def main(args: argparse.Namespace) -> int:
    gen = generate(source=args.source, out=args.out, graph=args.graph, name=args.name)
    plan = gen.plan
    print(
        f"{plan.name}/{plan.graph_kind}: {gen.source} ({plan.real_macs} MACs per decode, rings "
        f"{', '.join(str(r) for r in gen.schedule.ring_rows)} rows)",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(parse_args()))
