"""An integer-only reference of the int8 decoder graph, bit-exact with TensorFlow Lite Micro.

    from firmware_sim.graph import load_graph
    from firmware_sim.reference import IntegerReference
    ref = IntegerReference(load_graph("artifacts/vae2d/export/decoder_subpixel_int8_b1.tflite"))
    image_int8, trace = ref.run(latent_int8, trace=True)

Each op does what TFLM's reference kernel does on an MCU: int8 × int8 products accumulated in int32 with the
input offset, int32 bias, requantization by a Q31 multiplier and a shift (MultiplyByQuantizedMultiplier),
output offset, clamp to the fused activation's range; LOGISTIC and TANH through gemmlowp's fixed-point logistic and
tanh; LEAKY_RELU, RELU and RELU6 as TFLM's int8 kernels requantize or clamp. The multipliers are derived from the
tensors' float scales exactly as TFLM's Prepare() derives them. An op outside the supported set raises
:class:`UnsupportedOpError` naming it — nothing is approximated.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .fixedpoint import (
    gemmlowp_logistic,
    gemmlowp_tanh,
    multiply_by_quantized_multiplier,
    quantize_multiplier,
    rounding_divide_by_pot,
    tflite_round,
)
from .graph import Graph, Op, Tensor, UnsupportedOpError

SUPPORTED_OPS = (
    "FULLY_CONNECTED",
    "RESHAPE",
    "TRANSPOSE_CONV",
    "CONV_2D",
    "DEPTH_TO_SPACE",
    "PAD",
    "LOGISTIC",
    "QUANTIZE",
    "DEQUANTIZE",
    "TANH",
    "LEAKY_RELU",
    "RELU",
    "RELU6",
)
# TFLM registers no RELU_N1_TO_1 kernel (only the fused activation of that name), so there is none here either.
LOGISTIC_INPUT_INTEGER_BITS = 4
TANH_INPUT_INTEGER_BITS = 4  # both kernels' kInputIntegerBits: the input as gemmlowp::FixedPoint<int32, 4>
TANH_OUTPUT_SCALE = 1.0 / 128  # int8 TANH's output: scale 2^-7, zero point 0 (what TFLite requires)


@dataclass
class LayerTrace:
    op: str
    inputs: list[tuple[int, ...]]
    output: tuple[int, ...]
    macs: int
    note: str


def activation_range(t: Tensor, activation: str) -> tuple[int, int]:
    """CalculateActivationRangeQuantized for an int8 output."""
    qmin, qmax = -128, 127
    scale, zp = float(t.scale[0]), int(t.zero_point[0])

    def q(v: float) -> int:
        return zp + int(tflite_round(float(np.float32(v) / np.float32(scale))))

    if activation == "RELU":
        return max(qmin, q(0.0)), qmax
    if activation == "RELU6":
        return max(qmin, q(0.0)), min(qmax, q(6.0))
    if activation == "RELU_N1_TO_1":
        return max(qmin, q(-1.0)), min(qmax, q(1.0))
    if activation in ("NONE", None):
        return qmin, qmax
    raise UnsupportedOpError(f"fused activation {activation} is not supported by the integer reference")


def effective_scale(input_scale: float, filter_scale: float, output_scale: float) -> float:
    """s_in · s_w / s_out with each float32 scale widened to double first, the product and quotient in double.

    Mirrors tflite-micro's ``PopulateConvolutionQuantizationParams`` (kernels/kernel_util.cc: CONV_2D,
    TRANSPOSE_CONV, DEPTHWISE_CONV_2D) and, in the pinned wheel (:data:`firmware_sim.TFLM_VERSION`), the
    FULLY_CONNECTED multiplier of ``CalculateOpDataFullyConnected`` (kernels/fully_connected_common.cc).
    TFLite's builtin kernels take FULLY_CONNECTED's product in float32 instead (the old
    ``GetQuantizedConvolutionMultipler``): for some scale triples the Q31 multipliers differ in the last bits
    and an accumulator on a rounding boundary lands one step apart (tests/test_exactness.py pins such a case).
    """
    return float(np.float32(input_scale)) * float(np.float32(filter_scale)) / float(np.float32(output_scale))


def per_channel_multipliers(
    inp: Tensor, filt: Tensor, out: Tensor, channels: int
) -> tuple[np.ndarray, np.ndarray]:
    """PopulateConvolutionQuantizationParams: the effective scale in double, per output channel."""
    mults, shifts = [], []
    for c in range(channels):
        fs = float(filt.scale[c if len(filt.scale) > 1 else 0])
        m, s = quantize_multiplier(effective_scale(float(inp.scale[0]), fs, float(out.scale[0])))
        mults.append(m)
        shifts.append(s)
    return np.array(mults, np.int64), np.array(shifts, np.int64)


def fully_connected_multiplier(inp: Tensor, filt: Tensor, out: Tensor) -> tuple[int, int]:
    """The per-tensor FULLY_CONNECTED multiplier as the pinned TFLite Micro derives it: the product in double.

    Verified against the wheel, not only read from source: the issue-22 triple (s_in 0.023448158,
    s_w 0.0003446328, s_out 0.00078156206) gives 1421057713·2^-6 here and in TFLM, 1421057652 with a
    float32 product (TFLite's builtin kernels), and accumulator 23066 then requantizes to 239 against 238.
    """
    return quantize_multiplier(
        effective_scale(float(inp.scale[0]), float(filt.scale[0]), float(out.scale[0]))
    )


def rescale_multiplier(input_scale: float, output_scale: float, alpha: float = 1.0) -> tuple[int, int]:
    """QuantizeMultiplier(alpha · s_in / s_out), each float32 widened to double first, the arithmetic in double.

    The int8 RELU (CalculateReluOpData<int8_t>, kernels/activations_common.cc) and LEAKY_RELU
    (CalculateOpDataLeakyRelu, kernels/leaky_relu_common.cc: alpha's multiplier and the identity one) of the
    pinned wheel (:data:`firmware_sim.TFLM_VERSION`). tflite-micro's source at the mirrored commit (90b983c)
    reads ``static_cast<double>(input->params.scale / output->params.scale)`` and ``static_cast<double>(
    input->params.scale * params->alpha / output->params.scale)``, float32 arithmetic, but the wheel's
    _runtime.so widens first (cvtss2sd, then mulsd alpha · s_in and divsd by s_out), and the wheel is what is
    matched: on scales where the two derivations requantize an input one step apart, TFLM gives the double
    one's output (tests/test_exactness.py). ``alpha`` 1.0 is the identity multiplier (a product by 1 is exact).
    """
    return quantize_multiplier(effective_scale(input_scale, alpha, output_scale))


def fixed_point_input(input_scale: float, integer_bits: int) -> tuple[int, int, int]:
    """(multiplier, left shift, radius) taking an int8 input to raw Q(integer_bits).(31 - integer_bits).

    The int8 Prepare() of TFLM's LOGISTIC (kernels/logistic_common.cc) and TANH (kernels/tanh.cc): the real
    multiplier s_in · 2^(31 - integer_bits) in double, std::frexp, the Q31 mantissa rounded by TfLiteRound (no
    QuantizeMultiplier), and CalculateInputRadius (kernels/internal/quantization_util.cc) in double, floored:
    an input at least that far from the zero point saturates without going through the fixed-point function.
    """
    q, left_shift = math.frexp(float(np.float32(input_scale)) * float(1 << (31 - integer_bits)))
    if left_shift < 0:  # CalculateInputRadius would shift 1LL by a negative amount (undefined in C++)
        raise UnsupportedOpError(
            f"an input scale of {input_scale:g} is too small for the fixed-point kernels"
        )
    multiplier = int(tflite_round(q * (1 << 31)))
    radius = math.floor(1.0 * ((1 << integer_bits) - 1) * (1 << (31 - integer_bits)) / (1 << left_shift))
    return multiplier, left_shift, radius


def same_padding(stride: int, in_size: int, filter_size: int, out_size: int) -> int:
    total = max((out_size - 1) * stride + filter_size - in_size, 0)
    return total // 2


def requantize(acc: np.ndarray, mult, shift, zp: int, lo: int, hi: int) -> np.ndarray:
    out = multiply_by_quantized_multiplier(acc, mult, shift) + zp
    return np.clip(out, lo, hi).astype(np.int8)


class IntegerReference:
    def __init__(self, graph: Graph):
        self.graph = graph
        unsupported = sorted({op.kind for op in graph.ops} - set(SUPPORTED_OPS))
        if unsupported:
            raise UnsupportedOpError(
                f"the integer reference does not implement {', '.join(unsupported)} (supported: {', '.join(SUPPORTED_OPS)})"
            )
        for op in graph.ops:
            for i in op.inputs + op.outputs:
                t = graph.tensors[i]
                if op.kind not in ("QUANTIZE", "DEQUANTIZE") and not t.is_constant and t.dtype is not np.int8:
                    raise UnsupportedOpError(
                        f"{op.kind} on a {np.dtype(t.dtype).name} tensor: only int8 graphs are supported"
                    )

    def t(self, i: int) -> Tensor:
        return self.graph.tensors[i]

    def run(self, x: np.ndarray, trace: bool = False):
        """Run one input through the graph; returns the output (and the per-layer trace if asked)."""
        values: dict[int, np.ndarray] = {self.graph.inputs[0]: np.asarray(x)}
        layers = []
        for op in self.graph.ops:
            fn = getattr(self, "_" + op.kind.lower())
            out, macs, note = fn(
                op, [values.get(i) if not self.t(i).is_constant else self.t(i).data for i in op.inputs]
            )
            values[op.outputs[0]] = out
            if trace:
                layers.append(
                    LayerTrace(
                        op.kind,
                        [self.t(i).shape for i in op.inputs if not self.t(i).is_constant],
                        self.t(op.outputs[0]).shape,
                        macs,
                        note,
                    )
                )
        out = values[self.graph.outputs[0]]
        return (out, layers) if trace else out

    # ------------------------------------------------------------------------------------------- ops
    def _fully_connected(self, op: Op, args):
        x, w, b = args[0], args[1], args[2] if len(args) > 2 else None
        inp, filt, out = self.t(op.inputs[0]), self.t(op.inputs[1]), self.t(op.outputs[0])
        if len(filt.scale) > 1:
            raise UnsupportedOpError("per-channel FULLY_CONNECTED is not supported by the integer reference")
        mult, shift = fully_connected_multiplier(inp, filt, out)
        xi = x.reshape(-1, w.shape[1]).astype(np.int64) - int(inp.zero_point[0])
        acc = xi @ (w.astype(np.int64) - int(filt.zero_point[0])).T
        if b is not None:
            acc = acc + b.astype(np.int64)
        lo, hi = activation_range(out, op.options.get("activation"))
        res = requantize(acc, mult, shift, int(out.zero_point[0]), lo, hi).reshape(out.shape)
        return (
            res,
            int(w.size) * xi.shape[0],
            f"acc = Σ w·(x{-int(inp.zero_point[0]):+d}) + b; ×{mult}·2^{shift}; clamp [{lo}, {hi}]",
        )

    def _reshape(self, op: Op, args):
        return args[0].reshape(self.t(op.outputs[0]).shape), 0, "view"

    def _pad(self, op: Op, args):
        x, paddings = args[0], np.asarray(args[1]).reshape(-1, 2)
        out = self.t(op.outputs[0])
        value = int(out.zero_point[0])  # int8 PAD without constant_values pads with the output zero point
        return (
            np.pad(x, [tuple(p) for p in paddings.tolist()], constant_values=value).astype(np.int8),
            0,
            f"pad with {value}",
        )

    def _depth_to_space(self, op: Op, args):
        x = args[0]
        bs = int(op.options["blockSize"])
        n, h, w, c = x.shape
        oc = c // (bs * bs)
        y = x.reshape(n, h, w, bs, bs, oc).transpose(0, 1, 3, 2, 4, 5).reshape(n, h * bs, w * bs, oc)
        return y, 0, f"block {bs}"

    def _bias_requantize(self, op: Op, acc, bias, inp: Tensor, filt: Tensor, out: Tensor):
        """Add the int32 bias, requantize per output channel, clamp to the fused activation (conv kernels)."""
        if bias is not None:
            acc = acc + bias.astype(np.int64)
        mult, shift = per_channel_multipliers(inp, filt, out, acc.shape[-1])
        lo, hi = activation_range(out, op.options.get("activation"))
        return requantize(acc, mult, shift, int(out.zero_point[0]), lo, hi), (lo, hi)

    def _conv_2d(self, op: Op, args):
        x, w, b = args[0], args[1], args[2] if len(args) > 2 else None
        inp, filt, out = self.t(op.inputs[0]), self.t(op.inputs[1]), self.t(op.outputs[0])
        if op.options.get("dilationHFactor", 1) != 1 or op.options.get("dilationWFactor", 1) != 1:
            raise UnsupportedOpError("dilated CONV_2D is not supported by the integer reference")
        sh, sw = int(op.options["strideH"]), int(op.options["strideW"])
        n, h, wd, ic = x.shape
        oc, kh, kw, _ = w.shape
        oh, ow = out.shape[1], out.shape[2]
        if op.options["padding"] == "SAME":
            ph, pw = same_padding(sh, h, kh, oh), same_padding(sw, wd, kw, ow)
        else:
            ph = pw = 0
        zp = int(inp.zero_point[0])
        # Taps outside the image are skipped by the kernel: padding with the zero point contributes (zp - zp) = 0.
        xp = np.full(
            (n, max(h + 2 * ph, (oh - 1) * sh + kh), max(wd + 2 * pw, (ow - 1) * sw + kw), ic), zp, np.int64
        )
        xp[:, ph : ph + h, pw : pw + wd] = x
        xp -= zp
        acc = np.zeros((n, oh, ow, oc), np.int64)
        wf = w.astype(np.int64)
        for fy in range(kh):
            for fx in range(kw):
                patch = xp[:, fy : fy + (oh - 1) * sh + 1 : sh, fx : fx + (ow - 1) * sw + 1 : sw, :]
                acc += patch @ wf[:, fy, fx, :].T
        res, (lo, hi) = self._bias_requantize(op, acc, b, inp, filt, out)
        return (
            res,
            oh * ow * oc * kh * kw * ic * n,
            f"{kh}x{kw} s{sh}, per-channel ×M·2^s; clamp [{lo}, {hi}]",
        )

    def _transpose_conv(self, op: Op, args):
        _, w, x = args[0], args[1], args[2]
        b = args[3] if len(args) > 3 and op.inputs[3] >= 0 else None
        inp, filt, out = self.t(op.inputs[2]), self.t(op.inputs[1]), self.t(op.outputs[0])
        sh, sw = int(op.options["strideH"]), int(op.options["strideW"])
        n, h, wd, ic = x.shape
        oc, kh, kw, _ = w.shape
        oh, ow = out.shape[1], out.shape[2]
        if op.options["padding"] == "SAME":
            ph = same_padding(sh, oh, kh, math.ceil(oh / sh))
            pw = same_padding(sw, ow, kw, math.ceil(ow / sw))
        else:
            ph = pw = 0
        xi = x.astype(np.int64) - int(inp.zero_point[0])
        # The whole-output int32 scratch TFLM allocates; the scatter below is what fills it. Taps that land
        # outside the output are dropped and outputs no tap reaches hold the bias alone (a kernel smaller than
        # its stride), as in TFLM's reference_integer_ops::TransposeConv.
        scratch = np.zeros(
            (n, max((h - 1) * sh + kh, ph + oh), max((wd - 1) * sw + kw, pw + ow), oc), np.int64
        )
        wf = w.astype(np.int64)
        for fy in range(kh):
            for fx in range(kw):
                scratch[:, fy : fy + (h - 1) * sh + 1 : sh, fx : fx + (wd - 1) * sw + 1 : sw, :] += (
                    xi @ wf[:, fy, fx, :].T
                )
        acc = scratch[:, ph : ph + oh, pw : pw + ow, :]
        res, (lo, hi) = self._bias_requantize(op, acc, b, inp, filt, out)
        return (
            res,
            h * wd * ic * kh * kw * oc * n,
            f"{kh}x{kw} s{sh} scatter into int32 scratch {oh}x{ow}x{oc}; clamp [{lo}, {hi}]",
        )

    def _fixed_point_activation(
        self, op: Op, x, function, name: str, bits: int, output_shift: int, offset: int
    ):
        """The int8 eval of TFLM's LOGISTIC and TANH (reference_integer_ops::Logistic, ::Tanh in
        kernels/internal/reference/integer_ops/logistic.h, tanh.h): the centered input saturates to -128 / 127 at
        the radius; otherwise MultiplyByQuantizedMultiplier to raw Q(bits).(31 - bits), the gemmlowp function
        to raw Q0.31, RoundingDivideByPOT(·, output_shift), the output offset, clamp."""
        inp = self.t(op.inputs[0])
        multiplier, left_shift, radius = fixed_point_input(float(inp.scale[0]), bits)
        centered = np.asarray(x, np.int64) - int(inp.zero_point[0])
        q0 = function(multiply_by_quantized_multiplier(centered, multiplier, left_shift), bits)
        y = np.clip(rounding_divide_by_pot(q0, output_shift) + offset, -128, 127)
        y = np.where(centered <= -radius, -128, np.where(centered >= radius, 127, y))
        return (
            y.astype(np.int8),
            0,
            f"gemmlowp fixed-point {name}, input ×{multiplier}·2^{left_shift}, radius {radius}",
        )

    def _logistic(self, op: Op, args):
        """int8 LOGISTIC: TFLM kernels/logistic_common.cc (Prepare) and reference_integer_ops::Logistic."""
        if int(self.t(op.outputs[0]).zero_point[0]) != -128:
            raise UnsupportedOpError("int8 LOGISTIC needs an output zero point of -128")
        return self._fixed_point_activation(
            op, args[0], gemmlowp_logistic, "logistic", LOGISTIC_INPUT_INTEGER_BITS, 31 - 8, -128
        )

    def _tanh(self, op: Op, args):
        """int8 TANH: TFLM kernels/tanh.cc (Prepare: the input multiplier, shift and radius as LOGISTIC's) and
        reference_integer_ops::Tanh (kernels/internal/reference/integer_ops/tanh.h) on gemmlowp::tanh of
        FixedPoint<int32, 4>, the Q0.31 result divided by 2^24 with rounding. The output's quantization is not
        in the arithmetic: TFLM runs the kernel whatever it is, so a graph whose TANH output is not quantized
        as TFLite requires (scale 1/128, zero point 0) would not mean what it says, and is refused."""
        out = self.t(op.outputs[0])
        if float(out.scale[0]) != TANH_OUTPUT_SCALE or int(out.zero_point[0]) != 0:
            raise UnsupportedOpError(
                f"int8 TANH needs its output quantized with scale 1/128 and zero point 0, not scale "
                f"{float(out.scale[0]):g} and zero point {int(out.zero_point[0])}"
            )
        return self._fixed_point_activation(
            op, args[0], gemmlowp_tanh, "tanh", TANH_INPUT_INTEGER_BITS, 31 - 7, 0
        )

    def _leaky_relu(self, op: Op, args):
        """int8 LEAKY_RELU: TFLM kernels/leaky_relu_common.cc (CalculateOpDataLeakyRelu) and
        reference_ops::QuantizeLeakyRelu (kernels/internal/reference/leaky_relu.h).

        Both multipliers are double arithmetic on the float32 scales and alpha, in the pinned wheel
        (:func:`rescale_multiplier`): alpha · s_in / s_out and s_in / s_out. x - zp_in >= 0
        takes the identity multiplier, a negative one alpha's; a negative alpha's multiplier is applied as
        -MultiplyByQuantizedMultiplier(x, -m, shift). Then the output offset and the int8 clamp.
        """
        inp, out = self.t(op.inputs[0]), self.t(op.outputs[0])
        s_in, s_out = float(inp.scale[0]), float(out.scale[0])
        m_alpha, shift_alpha = rescale_multiplier(s_in, s_out, op.options.get("alpha", 0.0))
        m_id, shift_id = rescale_multiplier(s_in, s_out)
        centered = np.asarray(args[0], np.int64) - int(inp.zero_point[0])
        sign = -1 if m_alpha < 0 else 1
        scaled = np.where(
            centered >= 0,
            multiply_by_quantized_multiplier(centered, m_id, shift_id),
            sign * multiply_by_quantized_multiplier(centered, sign * m_alpha, shift_alpha),
        )
        zp_out = int(out.zero_point[0])
        y = np.clip(scaled + zp_out, -128, 127).astype(np.int8)
        note = f"x{-int(inp.zero_point[0]):+d} ×{m_id}·2^{shift_id} (x >= 0) or ×{m_alpha}·2^{shift_alpha}"
        return y, 0, f"{note}; {zp_out:+d}"

    def _relu(self, op: Op, args):
        """int8 RELU: TFLM kernels/activations_common.cc (CalculateReluOpData<int8_t>) and ReluQuantized
        (kernels/activations.h): the multiplier s_in / s_out in double (:func:`rescale_multiplier`),
        zp_out + MultiplyByQuantizedMultiplier(x - zp_in), clamped to [max(-128, zp_out + roundf(0 / s_out)), 127]."""
        inp, out = self.t(op.inputs[0]), self.t(op.outputs[0])
        mult, shift = rescale_multiplier(float(inp.scale[0]), float(out.scale[0]))
        lo, hi = activation_range(out, "RELU")
        centered = np.asarray(args[0], np.int64) - int(inp.zero_point[0])
        y = requantize(centered, mult, shift, int(out.zero_point[0]), lo, hi)
        return y, 0, f"x{-int(inp.zero_point[0]):+d} ×{mult}·2^{shift}; clamp [{lo}, {hi}]"

    def _relu6(self, op: Op, args):
        """int8 RELU6: TFLM kernels/activations_common.cc (Relu6Prepare) and Relu6Quantized (kernels/activations.h).

        A clamp of the input codes to [zp_in, FloatToQuantizedType<int8_t>(6.0f, s_in, zp_in)] (micro_utils.h:
        round(6.0f / s_in) in float32, plus zp_in, clamped to int8) with no requantization: TFLM never reads
        the output's quantization, so neither does this (a converter may give the output other parameters than
        the input's; TFLM's codes are then what the next op reads, and this reproduces them).
        """
        inp = self.t(op.inputs[0])
        # activation_range's float32 quotient and rounding are FloatToQuantizedType's
        lo, hi = activation_range(inp, "RELU6")
        return np.clip(np.asarray(args[0]), lo, hi).astype(np.int8), 0, f"clamp [{lo}, {hi}]"

    def _quantize(self, op: Op, args):
        out = self.t(op.outputs[0])
        x = np.asarray(args[0], np.float32)
        q = np.vectorize(tflite_round)(x / np.float32(out.scale[0])).astype(np.int64) + int(out.zero_point[0])
        return np.clip(q, -128, 127).astype(np.int8), 0, "float -> int8"

    def _dequantize(self, op: Op, args):
        inp = self.t(op.inputs[0])
        return (
            (float(inp.scale[0]) * (args[0].astype(np.float64) - int(inp.zero_point[0]))).astype(np.float32),
            0,
            "int8 -> float",
        )
