"""Structured edits of a full-int8 decoder .tflite for the C generator's fuzz target (issue 23).

    from tools.fuzz.graph_mutate import edit_tflite, mutate_graph
    data = edit_tflite(data, lambda m, sg: sg.tensors[sg.inputs[0]].shape.__setitem__(1, 300))
    kind, mutated = mutate_graph(data, np.random.default_rng(0))

Byte-level noise mostly breaks the flatbuffer, which the loader refuses long before the generator runs; these
edits go through the schema's object API (as tools/fuzz/mutate.py's structured edits do), so the file stays a
valid flatbuffer and only what it *says* changes: tensor shapes, buffers (their size, their bytes, the index a
tensor points at), strides, kernel and block sizes, paddings, scales, zero points, op inputs and outputs,
options, operator codes, the latent size. Some edits leave a consistent graph (an internal scale, a weight, a
zero point): the generated C must then compute what the numpy reference computes.
"""

from __future__ import annotations

import numpy as np


def _schema():
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

    return schema


def edit_tflite(data: bytes, fn) -> bytes:
    """``fn(model, subgraph)`` edits the unpacked model (schema ModelT) in place; the model is re-packed."""
    import flatbuffers

    schema = _schema()
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(bytearray(data), 0))
    fn(model, model.subgraphs[0])
    builder = flatbuffers.Builder(len(data) + 4096)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def op_kind(model, op) -> str:
    schema = _schema()
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    code = model.operatorCodes[op.opcodeIndex]
    return names.get(max(code.builtinCode, code.deprecatedBuiltinCode), "?")


def ops_of(model, sg, *kinds: str) -> list:
    return [op for op in sg.operators if op_kind(model, op) in kinds]


def weight_tensors(model, sg) -> list[int]:
    """Indices of tensors with data (weights, biases, paddings, shapes)."""
    return [
        i
        for i, t in enumerate(sg.tensors)
        if t.buffer < len(model.buffers) and model.buffers[t.buffer].data is not None
    ]


# Values a hostile file would try: off by one, zero, negative, huge, NaN-ish.
DIM_VALUES = (0, 1, -1, -7, 2, 3, 300, 2000, 100_000, 2**31 - 1)
SCALE_VALUES = (0.0, -0.01, float("nan"), float("inf"), 1e30, 1e-30, 1e-45, 3e38)
STRIDE_VALUES = (0, -1, 1, 2, 3, 4, 100, 1 << 30)


def _pick(rng, seq):
    return seq[int(rng.integers(len(seq)))]


def _m_shape(model, sg, rng) -> str:
    t = _pick(rng, sg.tensors)
    shape = [int(s) for s in t.shape] if t.shape is not None and len(t.shape) else [1]
    k = int(rng.integers(len(shape)))
    shape[k] = int(_pick(rng, DIM_VALUES)) if rng.random() < 0.6 else shape[k] + int(_pick(rng, (-1, 1, 2)))
    t.shape = np.array(shape, np.int32)
    return "shape"


def _m_latent(model, sg, rng) -> str:
    t = sg.tensors[sg.inputs[0]]
    t.shape = np.array([1, int(_pick(rng, (0, 1, 3, 300, 2000, 100_000, -2)))], np.int32)
    return "latent"


def _m_rank(model, sg, rng) -> str:
    t = _pick(rng, sg.tensors)
    shape = list(t.shape) if t.shape is not None else []
    t.shape = np.array(shape[:-1] if shape and rng.random() < 0.5 else [*shape, 1], np.int32)
    return "rank"


def _m_buffer_index(model, sg, rng) -> str:
    t = _pick(rng, sg.tensors)
    t.buffer = int(
        _pick(
            rng,
            (0, len(model.buffers), len(model.buffers) + 5, 10_000, int(rng.integers(len(model.buffers)))),
        )
    )
    return "buffer_index"


def _m_buffer_size(model, sg, rng) -> str:
    idx = weight_tensors(model, sg)
    b = model.buffers[sg.tensors[_pick(rng, idx)].buffer]
    data = np.asarray(b.data, np.uint8)
    n = int(_pick(rng, (-1, 1, -4, 4, -len(data) // 2, len(data))))
    b.data = (
        data[: len(data) + n] if n < 0 else np.concatenate([data, rng.integers(0, 256, n, dtype=np.uint8)])
    )
    return "buffer_size"


def _m_buffer_bytes(model, sg, rng) -> str:
    """Weights or biases overwritten in place (size kept): a consistent graph with other numbers, or biases
    near the int32 limits (the int32 sums of the C must not overflow)."""
    idx = weight_tensors(model, sg)
    b = model.buffers[sg.tensors[_pick(rng, idx)].buffer]
    data = np.asarray(b.data, np.uint8).copy()
    if rng.random() < 0.5:
        k = int(rng.integers(len(data)))
        data[k : k + 4] = rng.integers(0, 256, len(data[k : k + 4]), dtype=np.uint8)
    else:
        data[:] = rng.integers(0, 256, len(data), dtype=np.uint8)
    b.data = data
    return "buffer_bytes"


def _m_stride(model, sg, rng) -> str:
    convs = ops_of(model, sg, "CONV_2D", "TRANSPOSE_CONV")
    o = _pick(rng, convs).builtinOptions
    v = int(_pick(rng, STRIDE_VALUES))
    if rng.random() < 0.5:
        o.strideH = o.strideW = v
    else:
        setattr(o, _pick(rng, ("strideH", "strideW")), v)
    return "stride"


def _m_kernel(model, sg, rng) -> str:
    """A filter of another kernel size (shape and buffer both changed, so the file is self-consistent)."""
    convs = ops_of(model, sg, "CONV_2D", "TRANSPOSE_CONV")
    op = _pick(rng, convs)
    t = sg.tensors[op.inputs[1]]
    oc, kh, kw, ic = (int(s) for s in t.shape)
    kh2 = int(_pick(rng, (1, 2, kh + 1, 5, 40)))
    kw2 = kh2 if rng.random() < 0.7 else int(_pick(rng, (1, 2, kw + 1)))
    t.shape = np.array([oc, kh2, kw2, ic], np.int32)
    w = rng.integers(-127, 128, oc * kh2 * kw2 * ic, dtype=np.int8)
    model.buffers[t.buffer].data = np.frombuffer(w.tobytes(), np.uint8)
    return "kernel"


def _m_padding(model, sg, rng) -> str:
    convs = ops_of(model, sg, "CONV_2D", "TRANSPOSE_CONV")
    o = _pick(rng, convs).builtinOptions
    o.padding = int(_pick(rng, (0, 1, 7)))  # SAME, VALID, not a Padding
    return "padding"


def _m_pad_values(model, sg, rng) -> str:
    pads = ops_of(model, sg, "PAD")
    if not pads:
        return _m_padding(model, sg, rng)
    t = sg.tensors[_pick(rng, pads).inputs[1]]
    v = np.frombuffer(bytes(model.buffers[t.buffer].data), np.int32).copy()
    v[int(rng.integers(len(v)))] = int(_pick(rng, (-1, 0, 1, 2, 5, 1000, -(1 << 31))))
    model.buffers[t.buffer].data = np.frombuffer(v.tobytes(), np.uint8)
    return "pad_values"


def _m_block(model, sg, rng) -> str:
    d2s = ops_of(model, sg, "DEPTH_TO_SPACE")
    if not d2s:
        return _m_stride(model, sg, rng)
    _pick(rng, d2s).builtinOptions.blockSize = int(_pick(rng, (0, -2, 1, 3, 4, 1 << 20)))
    return "block"


def _m_scale(model, sg, rng) -> str:
    quantized = [t for t in sg.tensors if t.quantization is not None and t.quantization.scale is not None]
    q = _pick(rng, quantized).quantization
    scale = np.asarray(q.scale, np.float32).copy()
    r = rng.random()
    if r < 0.4:  # consistent: another plausible scale (the C must follow it exactly)
        scale = scale * np.float32(_pick(rng, (0.5, 1.5, 2.0, 0.9)))
    elif r < 0.85:
        scale[int(rng.integers(len(scale)))] = np.float32(_pick(rng, SCALE_VALUES))
    else:  # per-channel length changed
        scale = np.concatenate([scale, scale[:1]]) if rng.random() < 0.5 else scale[:-1]
    q.scale = scale
    return "scale"


def _m_zero_point(model, sg, rng) -> str:
    quantized = [t for t in sg.tensors if t.quantization is not None and t.quantization.zeroPoint is not None]
    q = _pick(rng, quantized).quantization
    zp = np.asarray(q.zeroPoint, np.int64).copy()
    if len(zp):
        zp[int(rng.integers(len(zp)))] = int(_pick(rng, (-128, 127, 1, -1, 128, -129, 1000, zp[0] + 1)))
    q.zeroPoint = zp
    return "zero_point"


def _m_op_input(model, sg, rng) -> str:
    op = _pick(rng, sg.operators)
    ins = np.asarray(op.inputs, np.int32).copy()
    k = int(rng.integers(len(ins)))
    ins[k] = int(_pick(rng, (999, -1, -5, int(rng.integers(len(sg.tensors))), len(sg.tensors))))
    op.inputs = ins
    return "op_input"


def _m_op_output(model, sg, rng) -> str:
    op = _pick(rng, sg.operators)
    op.outputs = np.array(
        [int(_pick(rng, (999, int(rng.integers(len(sg.tensors))), sg.inputs[0])))], np.int32
    )
    return "op_output"


def _m_io(model, sg, rng) -> str:
    if rng.random() < 0.5:
        sg.inputs = np.array([int(_pick(rng, (999, int(rng.integers(len(sg.tensors))))))], np.int32)
    else:
        sg.outputs = np.array([int(_pick(rng, (999, int(rng.integers(len(sg.tensors))))))], np.int32)
    return "io"


def _m_options(model, sg, rng) -> str:
    op = _pick(rng, sg.operators)
    o = op.builtinOptions
    if o is None or rng.random() < 0.3:
        op.builtinOptions = None
        return "options"
    if hasattr(o, "fusedActivationFunction"):
        o.fusedActivationFunction = int(_pick(rng, (0, 1, 2, 3, 4, 5, 42)))
    elif hasattr(o, "blockSize"):
        o.blockSize = 0
    else:
        op.builtinOptions = None
    return "options"


def _m_opcode(model, sg, rng) -> str:
    op = _pick(rng, sg.operators)
    if rng.random() < 0.5:
        op.opcodeIndex = int(
            _pick(rng, (len(model.operatorCodes), 99, int(rng.integers(len(model.operatorCodes)))))
        )
    else:
        schema = _schema()
        code = model.operatorCodes[op.opcodeIndex]
        code.builtinCode = code.deprecatedBuiltinCode = int(
            _pick(
                rng,
                (
                    schema.BuiltinOperator.CONV_2D,
                    schema.BuiltinOperator.TRANSPOSE_CONV,
                    schema.BuiltinOperator.DEPTH_TO_SPACE,
                    schema.BuiltinOperator.MAX_POOL_2D,
                    schema.BuiltinOperator.PAD,
                ),
            )
        )
    return "opcode"


def _m_dtype(model, sg, rng) -> str:
    schema = _schema()
    t = _pick(rng, sg.tensors)
    t.type = int(
        _pick(
            rng,
            (
                schema.TensorType.INT8,
                schema.TensorType.INT32,
                schema.TensorType.UINT8,
                schema.TensorType.INT16,
                schema.TensorType.FLOAT32,
            ),
        )
    )
    return "dtype"


def _m_quant_dim(model, sg, rng) -> str:
    quantized = [t for t in sg.tensors if t.quantization is not None and t.quantization.scale is not None]
    _pick(rng, quantized).quantization.quantizedDimension = int(_pick(rng, (1, 3, 7)))
    return "quantized_dimension"


MUTATORS = {
    "shape": _m_shape,
    "latent": _m_latent,
    "rank": _m_rank,
    "buffer_index": _m_buffer_index,
    "buffer_size": _m_buffer_size,
    "buffer_bytes": _m_buffer_bytes,
    "stride": _m_stride,
    "kernel": _m_kernel,
    "padding": _m_padding,
    "pad_values": _m_pad_values,
    "block": _m_block,
    "scale": _m_scale,
    "zero_point": _m_zero_point,
    "op_input": _m_op_input,
    "op_output": _m_op_output,
    "io": _m_io,
    "options": _m_options,
    "opcode": _m_opcode,
    "dtype": _m_dtype,
    "quantized_dimension": _m_quant_dim,
}
# Edits that usually leave a consistent graph get more weight: they are the ones whose C is compiled and run.
WEIGHTS = {k: (2.0 if k in ("scale", "zero_point", "buffer_bytes") else 1.0) for k in MUTATORS}


def mutate_graph(data: bytes, rng) -> tuple[str, bytes]:
    """One structured edit (one to three of them a tenth of the time) of a .tflite; (kind, mutated bytes)."""
    names = list(MUTATORS)
    p = np.array([WEIGHTS[k] for k in names])
    n = 1 if rng.random() < 0.9 else int(rng.integers(2, 4))
    kinds: list[str] = []

    def fn(model, sg):
        for _ in range(n):
            kinds.append(MUTATORS[str(rng.choice(names, p=p / p.sum()))](model, sg, rng))

    out = edit_tflite(data, fn)
    return "+".join(kinds), out
