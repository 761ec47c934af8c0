"""Read a .tflite flatbuffer into a plain graph (tensors, ops, options) with the schema tflite-micro ships."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from runtime.errors import VaeEdgeError

TFLITE_DTYPES = {0: np.float32, 2: np.int32, 3: np.uint8, 4: np.int64, 7: np.int16, 9: np.int8}


class UnsupportedOpError(VaeEdgeError):
    """The graph uses an op (or an op variant) the integer reference does not implement."""


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


@dataclass
class Graph:
    tensors: list[Tensor]
    ops: list[Op]
    inputs: list[int]
    outputs: list[int]
    size_bytes: int


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
    tensors = []
    for i, t in enumerate(sg.tensors):
        q = t.quantization
        buf = model.buffers[t.buffer].data if t.buffer < len(model.buffers) else None
        dtype = TFLITE_DTYPES.get(t.type)
        if dtype is None:
            raise UnsupportedOpError(
                f"tensor {t.name!r} has TFLite type {t.type}, which the reference does not support"
            )
        const = None
        if buf is not None and len(buf):
            const = np.frombuffer(bytes(bytearray(buf)), dtype=dtype).reshape(tuple(t.shape))
        tensors.append(
            Tensor(
                index=i,
                name=(t.name or b"").decode() if isinstance(t.name, bytes) else (t.name or ""),
                shape=tuple(int(s) for s in t.shape),
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
    for k, op in enumerate(sg.operators):
        code = model.operatorCodes[op.opcodeIndex]
        kind = op_names.get(max(code.builtinCode, code.deprecatedBuiltinCode), f"OP_{code.builtinCode}")
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
        ops.append(Op(k, kind, [int(i) for i in op.inputs], [int(i) for i in op.outputs], opts))
    return Graph(tensors, ops, [int(i) for i in sg.inputs], [int(i) for i in sg.outputs], len(data))
