"""Synthetic int8 TFLite graphs for the exactness checks: single ops with chosen or random quantization, and
whole decoders whose quantization and weights are re-drawn.

    from firmware_sim.synthetic import single_op_case, randomized_decoder
    case = single_op_case("FULLY_CONNECTED", rng, batch=1000, boundary=True)
    case.model      # .tflite bytes: one op, int8 (or float at QUANTIZE's input / DEQUANTIZE's output)
    case.inputs     # (batch, ...) inputs; each op kind takes the whole batch in one invoke

``boundary=True`` (FULLY_CONNECTED, CONV_2D, TRANSPOSE_CONV) picks scale triples whose Q31 multiplier differs
when s_in · s_w is taken in float32 rather than in double, and inputs whose int32 accumulators sit on the
requantization's rounding boundary, where the two multipliers give outputs one step apart: an implementation
that derives the multiplier in any other way than TFLite Micro does fails on them. Everything is drawn from the
``numpy.random.Generator`` passed in, so a seed reproduces every model and input.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .fixedpoint import multiply_by_quantized_multiplier, quantize_multiplier
from .reference import effective_scale, rescale_multiplier

SINGLE_OP_KINDS = (
    "FULLY_CONNECTED",
    "CONV_2D",
    "TRANSPOSE_CONV",
    "LOGISTIC",
    "QUANTIZE",
    "DEQUANTIZE",
    "DEPTH_TO_SPACE",
    "PAD",
    "RESHAPE",
    "TANH",
    "LEAKY_RELU",
    "RELU",
    "RELU6",
)
# int8 -> int8 one value at a time: each model's inputs hold every int8 value (the generator tabulates them).
# TFLite Micro has no RELU_N1_TO_1 kernel (only the fused activation), so it is not among them.
ELEMENTWISE_KINDS = ("TANH", "LEAKY_RELU", "RELU", "RELU6")
BOUNDARY_KINDS = ("FULLY_CONNECTED", "CONV_2D", "TRANSPOSE_CONV")
ACTIVATIONS = ("NONE", "RELU", "RELU6")
# With two input channels weighted 127 and 1, (x0 - zp)·127 + (x1 - zp) reaches every integer within this
# distance of the bias: the construction that puts an accumulator exactly where it is wanted.
REACH = 16000


def _schema():
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

    return schema


@dataclass(frozen=True)
class SingleOpCase:
    kind: str
    model: bytes
    inputs: np.ndarray  # one invoke: the batch is the first axis
    note: str  # what was drawn, for the report


class GraphBuilder:
    """A one-subgraph TFLite model built through the schema's object API (what TFLite Micro reads)."""

    DTYPES = {np.int8: "INT8", np.int32: "INT32", np.float32: "FLOAT32"}

    def __init__(self) -> None:
        s = _schema()
        self.s = s
        self.buffers = [s.BufferT()]
        self.tensors: list = []
        self.operators: list = []
        self.codes: dict[int, int] = {}
        self.code_list: list = []

    def tensor(self, name: str, shape, dtype, *, scale=None, zero_point=None, data=None, dim: int = 0) -> int:
        s = self.s
        t = s.TensorT()
        t.name = name.encode()
        t.shape = np.asarray(shape, np.int32)
        t.type = getattr(s.TensorType, self.DTYPES[dtype])
        t.buffer = 0
        if data is not None:
            b = s.BufferT()
            b.data = np.frombuffer(np.ascontiguousarray(np.asarray(data, dtype)).tobytes(), np.uint8)
            self.buffers.append(b)
            t.buffer = len(self.buffers) - 1
        if scale is not None:
            q = s.QuantizationParametersT()
            q.scale = np.asarray(scale, np.float32).ravel()
            zp = np.zeros(len(q.scale), np.int64) if zero_point is None else zero_point
            q.zeroPoint = np.broadcast_to(np.asarray(zp, np.int64), q.scale.shape).copy()
            q.quantizedDimension = dim
            t.quantization = q
        self.tensors.append(t)
        return len(self.tensors) - 1

    def op(
        self, kind: str, inputs: list[int], outputs: list[int], options=None, options_type: str = ""
    ) -> None:
        s = self.s
        code = getattr(s.BuiltinOperator, kind)
        if code not in self.codes:
            oc = s.OperatorCodeT()
            oc.builtinCode = code
            oc.deprecatedBuiltinCode = min(code, 127)
            oc.version = 1
            self.codes[code] = len(self.code_list)
            self.code_list.append(oc)
        o = s.OperatorT()
        o.opcodeIndex = self.codes[code]
        o.inputs = np.asarray(inputs, np.int32)
        o.outputs = np.asarray(outputs, np.int32)
        if options is not None:
            o.builtinOptionsType = getattr(s.BuiltinOptions, options_type)
            o.builtinOptions = options
        self.operators.append(o)

    def finish(self, inputs: list[int], outputs: list[int]) -> bytes:
        import flatbuffers

        s = self.s
        sg = s.SubGraphT()
        sg.tensors, sg.operators = self.tensors, self.operators
        sg.inputs, sg.outputs = np.asarray(inputs, np.int32), np.asarray(outputs, np.int32)
        m = s.ModelT()
        m.version, m.subgraphs, m.buffers, m.operatorCodes = 3, [sg], self.buffers, self.code_list
        builder = flatbuffers.Builder(1 << 16)
        builder.Finish(m.Pack(builder), file_identifier=b"TFL3")
        return bytes(builder.Output())

    def activation(self, name: str) -> int:
        return getattr(self.s.ActivationFunctionType, name)


# ------------------------------------------------------------------------------------------------- drawing
def _scale(rng, lo: float = 1e-3, hi: float = 0.1) -> float:
    return float(np.float32(np.exp(rng.uniform(np.log(lo), np.log(hi)))))


def _int8(rng, shape) -> np.ndarray:
    return rng.integers(-128, 128, shape).astype(np.int8)


def _weights(rng, shape) -> np.ndarray:
    return rng.integers(-127, 128, shape).astype(np.int8)  # symmetric int8 weights never use -128


def _output_scale(s_in: float, s_w: np.ndarray, fan_in: int, rng) -> float:
    """An output scale that keeps most outputs inside int8 (a random accumulator's spread over ~40 steps)."""
    spread = float(np.sqrt(fan_in)) * 74.0 * 74.0  # sd of a sum of fan_in products of uniform int8 values
    return float(np.float32(s_in * float(np.median(s_w)) * spread / 40.0 * np.exp(rng.uniform(-1.0, 1.0))))


def multiplier_pair(s_in: float, s_w: float, s_out: float) -> tuple[tuple[int, int], tuple[int, int]]:
    """(TFLM's multiplier: the product in double, the multiplier with the product rounded to float32)."""
    single = float(np.float32(s_in) * np.float32(s_w)) / float(np.float32(s_out))
    return quantize_multiplier(effective_scale(s_in, s_w, s_out)), quantize_multiplier(single)


def rescale_multiplier_pair(s_in: float, s_out: float, alpha: float = 1.0):
    """(TFLM's RELU / LEAKY_RELU multiplier: alpha · s_in / s_out in double, the same in float32)."""
    single = float(np.float32(s_in) * np.float32(alpha) / np.float32(s_out))
    return rescale_multiplier(s_in, s_out, alpha), quantize_multiplier(single)


def rescale_boundary(
    rng, kind: str, draws: int = 1024, tries: int = 200
) -> tuple[float, int, float, int, float]:
    """(s_in, zp_in, s_out, zp_out, alpha) for RELU or LEAKY_RELU where an int8 input requantizes one step
    apart with the multiplier taken in float32 (tflite-micro's source) instead of the pinned TFLM's double
    (RELU: the identity multiplier, x >= zp_in; LEAKY_RELU: alpha's, x < zp_in), that input's output inside
    int8 so that no clamp hides it. ``draws`` scale pairs at a time, each over every centered input."""
    centered = np.arange(0, 256) if kind == "RELU" else -np.arange(1, 256)
    for _ in range(tries):
        s_in = np.exp(rng.uniform(np.log(1e-3), 0.0, draws)).astype(np.float32)
        s_out = (s_in * np.exp(rng.uniform(-2.0, 2.0, draws))).astype(np.float32)
        alpha = rng.uniform(0.0, 1.0, draws).astype(np.float32) if kind == "LEAKY_RELU" else np.ones(draws)
        pairs = [rescale_multiplier_pair(*v) for v in zip(s_in, s_out, alpha, strict=True)]
        (m, shift), (m32, shift32) = (np.array([p[k] for p in pairs], np.int64).T for k in (0, 1))
        ours = multiply_by_quantized_multiplier(centered, m[:, None], shift[:, None])
        hit = (ours != multiply_by_quantized_multiplier(centered, m32[:, None], shift32[:, None])) & (
            np.abs(ours) <= 250
        )
        if hit.any():
            row, col = (int(v[0]) for v in np.nonzero(hit))
            c, out = int(centered[col]), int(ours[row, col])
            zp_in = int(rng.integers(max(-128, -128 - c), min(128, 128 - c)))
            zp_out = int(rng.integers(max(-128, -127 - out), min(128, 127 - out)))
            a = float(alpha[row]) if kind == "LEAKY_RELU" else 0.0
            return float(s_in[row]), zp_in, float(s_out[row]), zp_out, a
    raise RuntimeError("no rescale boundary found; raise tries")


def boundary_accumulators(rng, tries: int = 400) -> tuple[float, float, float, int, np.ndarray]:
    """Scales and a bias whose reachable accumulators include some that the two multipliers requantize apart.

    Returns (s_in, s_w, s_out, bias, accumulators); every accumulator lies within REACH of the bias.
    """
    for _ in range(tries):
        s_in, s_w = _scale(rng, 1e-3, 5e-2), _scale(rng, 1e-4, 1e-2)
        bias = int(rng.integers(-REACH, REACH + 1))
        # Every reachable accumulator requantizes inside int8 (zero point 0): nothing on the boundary saturates.
        s_out = float(np.float32(s_in * s_w * (abs(bias) + REACH) / 127.0 * np.exp(rng.uniform(0.0, 0.3))))
        (m_d, sh_d), (m_f, sh_f) = multiplier_pair(s_in, s_w, s_out)
        if (m_d, sh_d) == (m_f, sh_f):
            continue
        acc = np.arange(bias - REACH, bias + REACH + 1, dtype=np.int64)
        hits = acc[
            multiply_by_quantized_multiplier(acc, m_d, sh_d)
            != multiply_by_quantized_multiplier(acc, m_f, sh_f)
        ]
        if len(hits):
            return s_in, s_w, s_out, bias, hits
    raise RuntimeError("no boundary accumulator found; raise tries")


def _split(delta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Inputs (x0, x1) with x0·127 + x1 == delta for |delta| <= REACH (zero points 0)."""
    x0 = np.round(delta / 127.0).astype(np.int64)
    x1 = delta - 127 * x0
    assert np.all(np.abs(x0) <= 127) and np.all(np.abs(x1) <= 127)
    return x0.astype(np.int8), x1.astype(np.int8)


def _boundary_inputs(rng, n: int, bias: int, hits: np.ndarray) -> np.ndarray:
    """n two-channel inputs: half on the boundary accumulators, half anywhere within reach."""
    targets = np.concatenate(
        [rng.choice(hits, n - n // 2), rng.integers(bias - REACH, bias + REACH + 1, n // 2)]
    )
    x0, x1 = _split(targets - bias)
    return np.stack([x0, x1], -1)


# ------------------------------------------------------------------------------------------------ op kinds
def fully_connected_model(
    *,
    weights: np.ndarray,
    bias: np.ndarray,
    batch: int,
    s_in: float,
    zp_in: int,
    s_w: float,
    s_out: float,
    zp_out: int,
    activation: str = "NONE",
) -> bytes:
    """One int8 FULLY_CONNECTED, (batch, K) -> (batch, N), per-tensor symmetric weights (N, K), int32 bias."""
    b = GraphBuilder()
    n, k = weights.shape
    xi = b.tensor("x", (batch, k), np.int8, scale=[s_in], zero_point=[zp_in])
    wi = b.tensor("w", weights.shape, np.int8, scale=[s_w], data=weights)
    bi = b.tensor("b", (n,), np.int32, scale=[np.float32(s_in) * np.float32(s_w)], data=bias)
    yi = b.tensor("y", (batch, n), np.int8, scale=[s_out], zero_point=[zp_out])
    o = b.s.FullyConnectedOptionsT()
    o.fusedActivationFunction = b.activation(activation)
    b.op("FULLY_CONNECTED", [xi, wi, bi], [yi], o, "FullyConnectedOptions")
    return b.finish([xi], [yi])


def _fully_connected(rng, batch: int, boundary: bool) -> SingleOpCase:
    act = "NONE" if boundary else str(rng.choice(ACTIVATIONS))
    if boundary:
        s_in, s_w, s_out, bias, hits = boundary_accumulators(rng)
        zp_in, zp_out = 0, 0
        w, bias_v, x = (
            np.array([[127, 1]], np.int8),
            np.array([bias]),
            _boundary_inputs(rng, batch, bias, hits),
        )
    else:
        k, n = int(rng.integers(1, 65)), int(rng.integers(1, 33))
        s_in, zp_in = _scale(rng), int(rng.integers(-128, 128))
        s_w = _scale(rng, 1e-4, 1e-2)
        s_out, zp_out = _output_scale(s_in, np.array([s_w]), k, rng), int(rng.integers(-128, 128))
        w, x = _weights(rng, (n, k)), _int8(rng, (batch, k))
        bias_v = rng.integers(-(1 << 14), 1 << 14, n)
    model = fully_connected_model(
        weights=w,
        bias=bias_v,
        batch=batch,
        s_in=s_in,
        zp_in=zp_in,
        s_w=s_w,
        s_out=s_out,
        zp_out=zp_out,
        activation=act,
    )
    note = f"{w.shape[1]}->{w.shape[0]} {act} s_in {s_in:.4g} s_w {s_w:.4g} s_out {s_out:.4g}"
    return SingleOpCase("FULLY_CONNECTED", model, x, note + (" (boundary)" if boundary else ""))


def _conv_common(rng, batch: int, boundary: bool, transpose: bool) -> SingleOpCase:
    b = GraphBuilder()
    kind = "TRANSPOSE_CONV" if transpose else "CONV_2D"
    if boundary:
        kh = kw = stride = 1
        padding, act, ic, oc, h, w_ = "VALID", "NONE", 2, 1, 1, 1
        s_in, s_w, s_out, bias, hits = boundary_accumulators(rng)
        zp_in, zp_out = 0, 0
        s_ws = np.array([s_w], np.float32)
        w = np.array([127, 1], np.int8).reshape(1, 1, 1, 2)
        bias_v = np.array([bias])
        x = _boundary_inputs(rng, batch, bias, hits).reshape(batch, 1, 1, 2)
    else:
        kh = int(rng.integers(1, 6 if transpose else 8))
        kw = kh if rng.random() < 0.7 else int(rng.integers(1, 6 if transpose else 8))
        stride = int(rng.integers(1, 3))
        padding, act = str(rng.choice(["SAME", "VALID"])), str(rng.choice(ACTIVATIONS))
        ic, oc = int(rng.integers(1, 9)), int(rng.integers(1, 9))
        h, w_ = int(rng.integers(max(kh, 2), 9)), int(rng.integers(max(kw, 2), 9))
        s_in, zp_in = _scale(rng), int(rng.integers(-128, 128))
        s_ws = np.array([_scale(rng, 1e-4, 1e-2) for _ in range(oc)], np.float32)
        s_out, zp_out = _output_scale(s_in, s_ws, kh * kw * ic, rng), int(rng.integers(-128, 128))
        w, x = _weights(rng, (oc, kh, kw, ic)), _int8(rng, (batch, h, w_, ic))
        bias_v = rng.integers(-(1 << 14), 1 << 14, oc)
    if transpose:
        oh = h * stride if padding == "SAME" else (h - 1) * stride + kh
        ow = w_ * stride if padding == "SAME" else (w_ - 1) * stride + kw
    else:
        oh = -(-h // stride) if padding == "SAME" else (h - kh) // stride + 1
        ow = -(-w_ // stride) if padding == "SAME" else (w_ - kw) // stride + 1
    xi = b.tensor("x", (batch, h, w_, ic), np.int8, scale=[s_in], zero_point=[zp_in])
    wi = b.tensor("w", w.shape, np.int8, scale=s_ws, data=w, dim=0)
    bi = b.tensor("b", (oc,), np.int32, scale=np.float32(s_in) * s_ws, data=bias_v)
    yi = b.tensor("y", (batch, oh, ow, oc), np.int8, scale=[s_out], zero_point=[zp_out])
    if transpose:
        shape_i = b.tensor("output_shape", (4,), np.int32, data=np.array([batch, oh, ow, oc]))
        o = b.s.TransposeConvOptionsT()
        o.padding, o.strideH, o.strideW = getattr(b.s.Padding, padding), stride, stride
        o.fusedActivationFunction = b.activation(act)
        b.op(kind, [shape_i, wi, xi, bi], [yi], o, "TransposeConvOptions")
    else:
        o = b.s.Conv2DOptionsT()
        o.padding, o.strideH, o.strideW = getattr(b.s.Padding, padding), stride, stride
        o.dilationHFactor = o.dilationWFactor = 1
        o.fusedActivationFunction = b.activation(act)
        b.op(kind, [xi, wi, bi], [yi], o, "Conv2DOptions")
    note = f"{h}x{w_}x{ic} k{kh}x{kw} s{stride} {padding} -> {oh}x{ow}x{oc} {act}" + (
        " (boundary)" if boundary else ""
    )
    return SingleOpCase(kind, b.finish([xi], [yi]), x, note)


def _logistic(rng, batch: int) -> SingleOpCase:
    b = GraphBuilder()
    s_in, zp_in = _scale(rng, 1e-3, 1.0), int(rng.integers(-128, 128))
    x = np.resize(np.arange(-128, 128, dtype=np.int8), batch).reshape(batch, 1)  # every int8 value
    xi = b.tensor("x", (batch, 1), np.int8, scale=[s_in], zero_point=[zp_in])
    yi = b.tensor("y", (batch, 1), np.int8, scale=[1.0 / 256], zero_point=[-128])
    b.op("LOGISTIC", [xi], [yi])
    return SingleOpCase("LOGISTIC", b.finish([xi], [yi]), x, f"s_in {s_in:.4g} zp {zp_in}")


def _every_int8(rng, shape) -> np.ndarray:
    """All 256 int8 values in a drawn order, then drawn ones, filling ``shape`` (each value at least once when
    the shape holds 256 or more)."""
    n = int(np.prod(shape))
    values = np.concatenate([rng.permutation(np.arange(-128, 128)), rng.integers(-128, 128, max(n - 256, 0))])
    return values[:n].astype(np.int8).reshape(shape)


def elementwise_model(
    kind: str, *, shape, s_in: float, zp_in: int, s_out: float, zp_out: int, alpha: float = 0.0
) -> bytes:
    """One int8 TANH, LEAKY_RELU (with ``alpha``), RELU or RELU6 of ``shape``."""
    b = GraphBuilder()
    xi = b.tensor("x", shape, np.int8, scale=[s_in], zero_point=[zp_in])
    yi = b.tensor("y", shape, np.int8, scale=[s_out], zero_point=[zp_out])
    if kind == "LEAKY_RELU":
        o = b.s.LeakyReluOptionsT()
        o.alpha = float(np.float32(alpha))
        b.op(kind, [xi], [yi], o, "LeakyReluOptions")
    else:
        b.op(kind, [xi], [yi])
    return b.finish([xi], [yi])


def _elementwise(rng, batch: int, kind: str) -> SingleOpCase:
    """Drawn quantization: TANH's output as TFLite requires it (1/128, 0); RELU6's mostly the input's (TFLM's
    int8 kernel clamps the input codes without requantizing; a quarter of the time the output says [0, 6], as a
    converter may write it, and TFLM ignores), its scale a third of the time one whose 6 / s in
    float32 is within an ulp of a rounding tie; LEAKY_RELU and RELU an output scale within e^±2 of the input's
    and any zero points, LEAKY_RELU an alpha in (0, 1), a third of the time (:func:`rescale_boundary`) where
    a multiplier derived in float32 rather than TFLM's double moves an output."""
    shape = (batch, int(rng.integers(1, 9)))
    s_in, zp_in = _scale(rng, 1e-3, 1.0), int(rng.integers(-128, 128))
    alpha, special = 0.0, ""
    if kind == "TANH":
        s_out, zp_out = 1.0 / 128, 0
    elif kind == "RELU6":
        s_in = _scale(rng, 6.0 / 300, 6.0 / 20)
        if rng.random() < 1 / 3:  # 6 / s_in near k + 1/2: std::round's tie and its neighbours
            tie = np.float32(6.0 / (int(rng.integers(20, 300)) + 0.5))
            s_in = float(np.nextafter(tie, np.float32(rng.choice([0.0, 1.0]))) if rng.random() < 0.5 else tie)
            special = " (near a tie)"
        s_out, zp_out = s_in, zp_in
        if rng.random() < 1 / 4:  # as a converter may write it: [0, 6] on the output, which TFLM never reads
            s_out, zp_out = float(np.float32(6.0 / 255)), -128
            special += " (output quantized unlike the input)"
    elif rng.random() < 1 / 3:
        s_in, zp_in, s_out, zp_out, alpha = rescale_boundary(rng, kind)
        special = " (boundary)"
    else:
        s_out = float(np.float32(s_in * np.exp(rng.uniform(-2.0, 2.0))))
        zp_out = int(rng.integers(-128, 128))
        if kind == "LEAKY_RELU":
            alpha = float(np.float32(rng.uniform(0.0, 1.0)))
    model = elementwise_model(
        kind, shape=shape, s_in=s_in, zp_in=zp_in, s_out=s_out, zp_out=zp_out, alpha=alpha
    )
    note = f"{shape[1]} wide, s_in {s_in:.6g} zp {zp_in} -> s_out {s_out:.6g} zp {zp_out}"
    note += (f" alpha {alpha:.6g}" if kind == "LEAKY_RELU" else "") + special
    return SingleOpCase(kind, model, _every_int8(rng, shape), note)


def _quantize(rng, batch: int) -> SingleOpCase:
    b = GraphBuilder()
    s, zp = _scale(rng, 1e-3, 1.0), int(rng.integers(-128, 128))
    steps = rng.integers(-140 - zp, 140 - zp, batch).astype(np.float32)
    # Half of the values exactly on a rounding tie (k + 1/2 steps, as float32 computes it), some one ulp off.
    ties = (steps + np.float32(0.5)) * np.float32(s)
    ties = np.where(rng.random(batch) < 0.3, np.nextafter(ties, np.float32(rng.choice([-1e9, 1e9]))), ties)
    x = np.where(
        rng.random(batch) < 0.5, ties, steps * np.float32(s) + rng.normal(0, s, batch).astype(np.float32)
    )
    xi = b.tensor("x", (batch, 1), np.float32)
    yi = b.tensor("y", (batch, 1), np.int8, scale=[s], zero_point=[zp])
    b.op("QUANTIZE", [xi], [yi])
    return SingleOpCase(
        "QUANTIZE", b.finish([xi], [yi]), x.astype(np.float32).reshape(batch, 1), f"s {s:.4g} zp {zp}"
    )


def _dequantize(rng, batch: int) -> SingleOpCase:
    b = GraphBuilder()
    s, zp = _scale(rng, 1e-4, 10.0), int(rng.integers(-128, 128))
    xi = b.tensor("x", (batch, 1), np.int8, scale=[s], zero_point=[zp])
    yi = b.tensor("y", (batch, 1), np.float32)
    b.op("DEQUANTIZE", [xi], [yi])
    x = np.resize(np.arange(-128, 128, dtype=np.int8), batch).reshape(batch, 1)
    return SingleOpCase("DEQUANTIZE", b.finish([xi], [yi]), x, f"s {s:.4g} zp {zp}")


def _data_movement(rng, batch: int, kind: str) -> SingleOpCase:
    b = GraphBuilder()
    s, zp = _scale(rng), int(rng.integers(-128, 128))
    h, w, c = (int(v) for v in rng.integers(1, 6, 3))
    if kind == "DEPTH_TO_SPACE":
        block = int(rng.integers(2, 4))
        c *= block * block
        out_shape = (batch, h * block, w * block, c // (block * block))
    elif kind == "PAD":
        pads = rng.integers(0, 3, (4, 2))
        pads[0] = 0
        out_shape = tuple(d + int(p.sum()) for d, p in zip((batch, h, w, c), pads, strict=True))
    else:
        out_shape = (batch, h * w * c)
    xi = b.tensor("x", (batch, h, w, c), np.int8, scale=[s], zero_point=[zp])
    yi = b.tensor("y", out_shape, np.int8, scale=[s], zero_point=[zp])
    if kind == "DEPTH_TO_SPACE":
        o = b.s.DepthToSpaceOptionsT()
        o.blockSize = block
        b.op(kind, [xi], [yi], o, "DepthToSpaceOptions")
        note = f"{h}x{w}x{c} block {block}"
    elif kind == "PAD":
        pi = b.tensor("paddings", (4, 2), np.int32, data=pads)
        b.op(kind, [xi, pi], [yi], b.s.PadOptionsT(), "PadOptions")
        note = f"{h}x{w}x{c} pads {pads[1:].tolist()} zp {zp}"
    else:
        si = b.tensor("shape", (2,), np.int32, data=np.array(out_shape))
        o = b.s.ReshapeOptionsT()
        o.newShape = list(out_shape)
        b.op(kind, [xi, si], [yi], o, "ReshapeOptions")
        note = f"{h}x{w}x{c} -> {out_shape[1]}"
    return SingleOpCase(kind, b.finish([xi], [yi]), _int8(rng, (batch, h, w, c)), note)


def single_op_case(kind: str, rng, *, batch: int, boundary: bool = False) -> SingleOpCase:
    """One op of ``kind`` with drawn shapes, scales and zero points, and ``batch`` inputs for it."""
    if boundary and kind not in BOUNDARY_KINDS:
        raise ValueError(f"boundary cases are built for {', '.join(BOUNDARY_KINDS)}, not {kind}")
    if kind == "FULLY_CONNECTED":
        return _fully_connected(rng, batch, boundary)
    if kind in ("CONV_2D", "TRANSPOSE_CONV"):
        return _conv_common(rng, batch, boundary, transpose=kind == "TRANSPOSE_CONV")
    if kind == "LOGISTIC":
        return _logistic(rng, batch)
    if kind == "QUANTIZE":
        return _quantize(rng, batch)
    if kind == "DEQUANTIZE":
        return _dequantize(rng, batch)
    if kind in ("DEPTH_TO_SPACE", "PAD", "RESHAPE"):
        return _data_movement(rng, batch, kind)
    if kind in ELEMENTWISE_KINDS:
        return _elementwise(rng, batch, kind)
    raise ValueError(f"no synthetic case for {kind} (known: {', '.join(SINGLE_OP_KINDS)})")


# ----------------------------------------------------------------------------------------- whole decoders
DATA_MOVEMENT_OPS = ("RESHAPE", "PAD", "DEPTH_TO_SPACE")


def _feeds_output(sg, obj, names: dict, tensor: int) -> bool:
    """Whether ``tensor`` reaches the graph output through data-movement ops only."""
    outputs = set(int(i) for i in sg.outputs)
    for op in sg.operators:
        code = obj.operatorCodes[op.opcodeIndex]
        if (
            int(op.inputs[0]) == tensor
            and names[max(code.builtinCode, code.deprecatedBuiltinCode)] in DATA_MOVEMENT_OPS
        ):
            nxt = int(op.outputs[0])
            return nxt in outputs or _feeds_output(sg, obj, names, nxt)
    return False


def randomized_decoder(model: bytes, rng) -> bytes:
    """The same int8 decoder graph with every scale, activation zero point, weight and bias drawn anew.

    Weights keep their zero taps (the sub-pixel kernels' structure) and their per-channel layout; a
    data-movement op's output keeps its input's quantization, as the converter writes it; each layer's output
    scale follows its accumulator's spread so that outputs use the int8 range rather than saturate.
    """
    import flatbuffers

    s = _schema()
    obj = s.ModelT.InitFromObj(s.Model.GetRootAsModel(bytearray(model), 0))
    sg = obj.subgraphs[0]
    names = {v: k for k, v in vars(s.BuiltinOperator).items() if not k.startswith("_")}
    tensors = sg.tensors

    def q(i: int):
        return tensors[i].quantization

    def set_buffer(i: int, values: np.ndarray) -> None:
        obj.buffers[tensors[i].buffer].data = np.frombuffer(values.tobytes(), np.uint8)

    first = q(sg.inputs[0])
    first.scale = np.array([_scale(rng, 5e-3, 5e-2)], np.float32)
    first.zeroPoint = np.array([int(rng.integers(-64, 65))], np.int64)
    for op in sg.operators:
        code = obj.operatorCodes[op.opcodeIndex]
        kind = names[max(code.builtinCode, code.deprecatedBuiltinCode)]
        out = int(op.outputs[0])
        if kind in DATA_MOVEMENT_OPS:
            src = q(int(op.inputs[0]))
            q(out).scale, q(out).zeroPoint = src.scale.copy(), src.zeroPoint.copy()
            continue
        if kind not in ("FULLY_CONNECTED", "CONV_2D", "TRANSPOSE_CONV"):
            raise ValueError(f"randomized_decoder does not handle {kind}")
        x_i, w_i = (
            (int(op.inputs[2]), int(op.inputs[1]))
            if kind == "TRANSPOSE_CONV"
            else (int(op.inputs[0]), int(op.inputs[1]))
        )
        b_i = (
            int(op.inputs[3] if kind == "TRANSPOSE_CONV" else op.inputs[2])
            if len(op.inputs) > (3 if kind == "TRANSPOSE_CONV" else 2)
            else -1
        )
        s_in = float(q(x_i).scale[0])
        wt = tensors[w_i]
        w = np.frombuffer(bytes(obj.buffers[wt.buffer].data), np.int8).reshape(tuple(wt.shape))
        nz = w != 0
        new_w = np.where(nz, _weights(rng, w.shape), 0).astype(np.int8)
        new_w = np.where(nz & (new_w == 0), 1, new_w).astype(np.int8)  # a nonzero tap stays nonzero
        set_buffer(w_i, new_w)
        # Per-tensor as exported, or per output channel (what other converters write): per-channel scales give
        # each channel its own shift, which takes the generated C off its shared-shift fast paths.
        channels = int(w.shape[0]) if kind != "FULLY_CONNECTED" and rng.random() < 0.5 else 1
        s_w = np.array([_scale(rng, 1e-3, 3e-2) for _ in range(channels)], np.float32)
        q(w_i).scale = s_w
        q(w_i).zeroPoint = np.zeros(channels, np.int64)
        q(w_i).quantizedDimension = 0
        fan_in = int(nz.reshape(w.shape[0], -1).sum(1).mean())
        s_out = _output_scale(s_in, s_w, max(fan_in, 1), rng)
        if out in set(int(i) for i in sg.outputs) or _feeds_output(sg, obj, names, out):
            s_out = _scale(rng, 0.03, 0.25)  # logits: a trained decoder's span a few tens at most
        q(out).scale = np.array([s_out], np.float32)
        q(out).zeroPoint = np.array([int(rng.integers(-100, 101))], np.int64)
        if b_i >= 0:
            n = int(tensors[b_i].shape[0])
            bias = rng.normal(0, 2000 * np.sqrt(max(fan_in, 1)), n).astype(np.int64).astype(np.int32)
            set_buffer(b_i, bias)
            q(b_i).scale = (
                (np.float32(s_in) * s_w).astype(np.float32)
                if channels == n
                else np.full(n, np.float32(s_in) * s_w[0], np.float32)
            )
            q(b_i).zeroPoint = np.zeros(n, np.int64)
    builder = flatbuffers.Builder(len(model) + 4096)
    builder.Finish(obj.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())
