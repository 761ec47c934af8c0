"""Read a .tflite flatbuffer into a plain graph (tensors, ops, options) with the schema tflite-micro ships."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from runtime.errors import VaeEdgeError

TFLITE_DTYPES = {0: np.float32, 2: np.int32, 3: np.uint8, 4: np.int64, 7: np.int16, 9: np.int8}


class UnsupportedOpError(VaeEdgeError):
    """The graph uses an op (or an op variant) the integer reference does not implement."""


class InvalidGraphError(UnsupportedOpError):
    """The graph contradicts itself or its weights (a hand-edited or corrupted file): a shape, a buffer, an
    index, a scale or an option that no converter writes. A subclass of UnsupportedOpError, so a caller that
    refuses unsupported graphs refuses these too."""


REEXPORT = "re-export the decoder with python -m export"


@dataclass
class Tensor:
    index: int
    name: str
    shape: tuple[int, ...]
    dtype: type
    scale: np.ndarray  # float32, one per tensor or per channel
    zero_point: np.ndarray  # int64
    quantized_dimension: int
    data: np.ndarray | None  # constant tensors only

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape)) * np.dtype(self.dtype).itemsize

    @property
    def is_constant(self) -> bool:
        return self.data is not None


@dataclass
class Op:
    index: int
    kind: str  # BuiltinOperator name, e.g. CONV_2D
    inputs: list[int]
    outputs: list[int]
    options: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Operands:
    """Which inputs of an op are its activation, its weights and its bias (-1: the op has none)."""

    x: int
    weights: int = -1
    bias: int = -1


# Ops with weights, and where their (activation, weights, bias) sit among their inputs; the bias is optional.
_WEIGHTED = {"FULLY_CONNECTED": (0, 1, 2), "CONV_2D": (0, 1, 2), "TRANSPOSE_CONV": (2, 1, 3)}


def operands(op: Op) -> Operands:
    """An op's activation, weights and bias as tensor indices: TRANSPOSE_CONV's inputs are (output shape,
    filter, activation[, bias]), FULLY_CONNECTED's and CONV_2D's (activation, weights[, bias]); any other op
    reads its activation first. What the C generator (int8) and the browser's float decoder both read."""
    x, w, b = (op.inputs[k] if 0 <= k < len(op.inputs) else -1 for k in _WEIGHTED.get(op.kind, (0, -1, -1)))
    return Operands(x, w, b)


@dataclass
class Graph:
    tensors: list[Tensor]
    ops: list[Op]
    inputs: list[int]
    outputs: list[int]
    size_bytes: int
    # The model's metadata entries (name -> bytes), e.g. export's vae_edge_latent_split_radix.
    metadata: dict[str, bytes] = field(default_factory=dict)


def _schema():
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

    return schema


def _names(cls) -> dict[int, str]:
    return {v: k for k, v in vars(cls).items() if not k.startswith("_") and isinstance(v, int)}


def load_graph(path: str | Path) -> Graph:
    """Parse ``path``; a corrupt or hand-edited flatbuffer is one :class:`VaeEdgeError` naming the file."""
    data = Path(path).read_bytes()
    try:
        return _parse(path, data)
    except VaeEdgeError:
        raise
    except Exception as exc:  # flatbuffers and numpy raise anything (struct.error, IndexError, ValueError...)
        raise VaeEdgeError(
            f"{path} is not a readable TFLite flatbuffer ({type(exc).__name__} while reading its graph); "
            "re-export it with python -m export"
        ) from None


def _parse(path: str | Path, data: bytes) -> Graph:
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise VaeEdgeError(
            f"{path} is not a TFLite model (no TFL3 identifier); re-export it with python -m export"
        )
    schema = _schema()
    try:
        model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(bytearray(data), 0))
    except Exception as exc:  # a corrupt flatbuffer raises anything from struct.error to IndexError
        raise VaeEdgeError(
            f"{path} is not a readable TFLite flatbuffer ({type(exc).__name__}); re-export it"
        ) from None
    if len(model.subgraphs) != 1:
        raise UnsupportedOpError(
            f"{path} has {len(model.subgraphs)} subgraphs; the reference runs single-graph models"
        )
    op_names = _names(schema.BuiltinOperator)
    act_names = _names(schema.ActivationFunctionType)
    pad_names = _names(schema.Padding)
    sg = model.subgraphs[0]
    n_tensors, n_buffers = len(sg.tensors or []), len(model.buffers or [])
    tensors = []
    for i, t in enumerate(sg.tensors or []):
        q = t.quantization
        name = (t.name or b"").decode(errors="replace") if isinstance(t.name, bytes) else (t.name or "")
        dtype = TFLITE_DTYPES.get(t.type)
        if dtype is None:
            raise UnsupportedOpError(
                f"tensor {t.name!r} has TFLite type {t.type}, which the reference does not support"
            )
        shape = tuple(int(s) for s in (t.shape if t.shape is not None else ()))
        if any(s < 0 for s in shape):
            raise InvalidGraphError(
                f"{path}: tensor {i} {name!r} has a negative dimension {shape}; {REEXPORT}"
            )
        # Buffer 0 is the schema's empty sentinel; an index past the buffer table is a corrupt file (it used to
        # read as "no data", i.e. a weight tensor without weights).
        if t.buffer >= n_buffers:
            raise InvalidGraphError(
                f"{path}: tensor {i} {name!r} refers to buffer {t.buffer} of {n_buffers}; {REEXPORT}"
            )
        buf = model.buffers[t.buffer].data
        const = None
        if buf is not None and len(buf):
            need = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
            if len(buf) != need:
                raise InvalidGraphError(
                    f"{path}: tensor {i} {name!r} of shape {shape} ({np.dtype(dtype).name}) needs {need} bytes "
                    f"but its buffer holds {len(buf)}; {REEXPORT}"
                )
            const = np.frombuffer(bytes(bytearray(buf)), dtype=dtype).reshape(shape)
        tensors.append(
            Tensor(
                index=i,
                name=name,
                shape=shape,
                dtype=dtype,
                scale=np.asarray(q.scale if q is not None and q.scale is not None else [0.0], np.float32),
                zero_point=np.asarray(
                    q.zeroPoint if q is not None and q.zeroPoint is not None else [0], np.int64
                ),
                quantized_dimension=int(q.quantizedDimension) if q is not None else 0,
                data=const,
            )
        )
    ops = []
    codes = model.operatorCodes or []
    for k, op in enumerate(sg.operators or []):
        if not 0 <= op.opcodeIndex < len(codes):
            raise InvalidGraphError(
                f"{path}: op {k} has operator code {op.opcodeIndex} of {len(codes)}; {REEXPORT}"
            )
        code = codes[op.opcodeIndex]
        kind = op_names.get(max(code.builtinCode, code.deprecatedBuiltinCode), f"OP_{code.builtinCode}")
        inputs = [int(i) for i in (op.inputs if op.inputs is not None else [])]
        outputs = [int(i) for i in (op.outputs if op.outputs is not None else [])]
        # -1 marks an omitted optional input (a convolution without bias); anything else must be a tensor.
        bad = [i for i in inputs if not -1 <= i < n_tensors] + [i for i in outputs if not 0 <= i < n_tensors]
        if bad:
            raise InvalidGraphError(
                f"{path}: op {k} ({kind}) refers to tensor {bad[0]} of {n_tensors}; {REEXPORT}"
            )
        opts = {}
        o = op.builtinOptions
        if o is not None:
            for key, value in vars(o).items():
                if key == "fusedActivationFunction":
                    opts["activation"] = act_names.get(value, str(value))
                elif key == "padding":
                    opts["padding"] = pad_names.get(value, str(value))
                elif isinstance(value, (int, float, bool)):
                    opts[key] = value
        ops.append(Op(k, kind, inputs, outputs, opts))
    ios = [int(i) for i in (sg.inputs if sg.inputs is not None else [])]
    ios_out = [int(i) for i in (sg.outputs if sg.outputs is not None else [])]
    bad = [i for i in ios + ios_out if not 0 <= i < n_tensors]
    if bad:
        raise InvalidGraphError(
            f"{path}: the graph's input or output is tensor {bad[0]} of {n_tensors}; {REEXPORT}"
        )
    metadata = {}
    for entry in model.metadata or []:
        name = entry.name.decode(errors="replace") if isinstance(entry.name, bytes) else str(entry.name or "")
        if not 0 <= entry.buffer < n_buffers:
            raise InvalidGraphError(
                f"{path}: metadata {name!r} refers to buffer {entry.buffer} of {n_buffers}; {REEXPORT}"
            )
        buf = model.buffers[entry.buffer].data
        metadata[name] = bytes(np.asarray(buf, np.uint8)) if buf is not None else b""
    return Graph(tensors, ops, ios, ios_out, len(data), metadata)
