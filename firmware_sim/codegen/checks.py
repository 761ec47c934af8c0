"""What the C generator checks before any C exists (issue 23: the C must never trust the file).

:func:`check_graph` recomputes every op's output shape from its input, constants and options and checks it
against the file, with each buffer's size, every index, stride, kernel, block, padding, scale and zero point,
within the bounds below (MAX_*); :func:`check_plan` bounds the multipliers (shift in [-31, 30]) and every
int32 sum the C forms; :func:`check_prior` the manifest's Cholesky factor. A refusal is one
:class:`~firmware_sim.graph.InvalidGraphError` line (UnsupportedOpError for a real but unsupported variant).
"""

from __future__ import annotations

import numpy as np

from runtime.errors import VaeEdgeError

from ..graph import REEXPORT, Graph, InvalidGraphError, Tensor, UnsupportedOpError, operands
from .plan import ELEMENTWISE_OPS, DecoderPlan

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


def check_int8(t: Tensor, what: str) -> None:
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


# (fewest, most) inputs of each op the generator lowers: the activation, then constants (optional bias last).
_ARITY = {
    "FULLY_CONNECTED": (2, 3),
    "RESHAPE": (1, 2),
    "PAD": (2, 2),
    "CONV_2D": (2, 3),
    "TRANSPOSE_CONV": (3, 4),
    "DEPTH_TO_SPACE": (1, 1),
    **{kind: (1, 1) for kind in ELEMENTWISE_OPS},
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
        x_i, o_i = operands(op).x, op.outputs[0]
        if x_i != prev:
            raise UnsupportedOpError(
                f"{where} reads tensor {x_i}, not the previous op's output {prev}: the generator lowers a "
                "chain of ops from the latent to the image"
            )
        x, out = graph.tensors[x_i], graph.tensors[o_i]
        if o_i in produced or out.is_constant:
            raise _refuse(f"{where} writes tensor {o_i} {out.name!r}, which is a constant or already written")
        produced.add(o_i)
        check_int8(out, f"the {op.kind} output")
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
    if op.kind in ELEMENTWISE_OPS:
        return tuple(x.shape)
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
