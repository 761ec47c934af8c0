"""Interpreters for exported models, with no TensorFlow needed.

TFLite models load through a fallback chain: ``ai_edge_litert`` (the maintained LiteRT wheel, with XNNPACK
for int8), then ``tflite_runtime`` (abandoned at 2.14: numpy < 2, Python ≤ 3.11, cannot read TF 2.21's
dynamic-range models), then ``tf.lite`` if TensorFlow happens to be installed. ONNX models load through
``onnxruntime`` (an optional extra). Every model takes and returns float arrays: int8 tensors are quantized
and dequantized with the tensor's own scale and zero point.

Before anything reaches an interpreter, the file is checked (exists, non-empty, TFLite identifier / ONNX
protobuf), so a truncated or corrupt model raises :class:`ModelLoadError` instead of crashing the process.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import InvalidInputError, VaeEdgeError

TFLITE_IDENTIFIER = b"TFL3"  # bytes 4..8 of every TFLite flatbuffer
TFLITE_BACKENDS = ("ai_edge_litert", "tflite_runtime", "tensorflow")


class ModelLoadError(VaeEdgeError):
    """A model file is missing, truncated, corrupt, or no interpreter for it is installed."""


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple[int, ...]
    dtype: str
    scale: float = 0.0
    zero_point: int = 0

    @property
    def quantized(self) -> bool:
        return self.dtype in ("int8", "uint8") and self.scale > 0

    def to_json(self) -> dict:
        out = {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}
        if self.quantized:
            out.update(scale=self.scale, zero_point=self.zero_point)
        return out


def quantize(x: np.ndarray, info: TensorInfo) -> np.ndarray:
    """float -> int8/uint8 with round-half-away-from-zero as TFLite's QUANTIZE does, saturating."""
    v = (np.asarray(x, np.float32) / np.float32(info.scale)).astype(np.float64)
    q = np.trunc(v + np.copysign(0.5, v)) + info.zero_point  # np.round would round ties to even
    lim = np.iinfo(info.dtype)
    return np.clip(q, lim.min, lim.max).astype(info.dtype)


def dequantize(q: np.ndarray, info: TensorInfo) -> np.ndarray:
    return ((q.astype(np.int32) - info.zero_point) * np.float32(info.scale)).astype(np.float32)


DELEGATE_BANNER = "Created TensorFlow Lite XNNPACK delegate"


@contextlib.contextmanager
def without_delegate_banner():
    """Drop LiteRT's ``INFO: Created TensorFlow Lite XNNPACK delegate for CPU.`` from file descriptor 2.

    Its C++ prints that line when it first creates the delegate, so a CLI that then refuses (a full disk while
    writing a sample) showed two lines where one ``error:`` line is promised. Whatever else the native code
    writes meanwhile is passed on to stderr. Where stderr has no file descriptor (captured by a test) there is
    nothing to redirect."""
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):
        yield
        return
    sys.stderr.flush()
    saved = os.dup(fd)
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), fd)
        try:
            yield
        finally:
            os.dup2(saved, fd)
            os.close(saved)
            tmp.seek(0)
            kept = [
                line
                for line in tmp.read().decode(errors="replace").splitlines(keepends=True)
                if DELEGATE_BANNER not in line
            ]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()


def import_tflite_interpreter(preferred: tuple[str, ...] = TFLITE_BACKENDS):
    """Return (Interpreter class, backend name) from the first importable backend of the chain."""
    errors = []
    for name in preferred:
        try:
            if name == "ai_edge_litert":
                return importlib.import_module("ai_edge_litert.interpreter").Interpreter, name
            if name == "tflite_runtime":
                return importlib.import_module("tflite_runtime.interpreter").Interpreter, name
            if name == "tensorflow":
                return importlib.import_module("tensorflow").lite.Interpreter, name
        except ImportError as exc:  # also catches a blocked import (ModuleNotFoundError)
            errors.append(f"{name}: {exc}")
    raise ModelLoadError(
        "no TFLite interpreter is installed (tried " + "; ".join(errors) + "); pip install ai-edge-litert"
    )


def check_tflite_bytes(data: bytes, path: Path) -> None:
    if len(data) < 8 or data[4:8] != TFLITE_IDENTIFIER:
        raise ModelLoadError(
            f"{path} is not a TFLite model (no TFL3 identifier; truncated or corrupt?); re-export it with python -m export"
        )


def read_model_file(path: str | os.PathLike) -> bytes:
    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"model file {path} not found; run python -m export or copy the artifacts again")
    data = path.read_bytes()
    if not data:
        raise ModelLoadError(f"model file {path} is empty; re-export or re-copy it")
    return data


class TFLiteModel:
    """One TFLite model: float in, float out, int8 handled through the tensors' quantization parameters."""

    format = "tflite"

    def __init__(
        self,
        path: str | os.PathLike,
        num_threads: int | None = None,
        backends: tuple[str, ...] = TFLITE_BACKENDS,
        delegates: bool = True,
        data: bytes | None = None,
    ):
        """``delegates=False`` runs the builtin reference kernels without XNNPACK (used to list the real ops).
        ``data``: the file's bytes, already read and verified (``Manifest.read_verified``); the path then
        only names the model in messages and is not read again."""
        self.path = Path(path)
        data = read_model_file(self.path) if data is None else data
        check_tflite_bytes(data, self.path)
        interpreter_cls, self.backend = import_tflite_interpreter(backends)
        kwargs = {}
        if not delegates:
            resolver = getattr(importlib.import_module(interpreter_cls.__module__), "OpResolverType", None)
            if resolver is not None:
                kwargs["experimental_op_resolver_type"] = resolver.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        try:
            # The interpreter verifies the flatbuffer and raises ValueError on a malformed one.
            with without_delegate_banner():
                self.interpreter = interpreter_cls(model_content=data, num_threads=num_threads, **kwargs)
                self.interpreter.allocate_tensors()
            # Tensor details of a corrupt file can hold anything (a bad dtype enum raises TypeError).
            self.inputs = [self._info(d) for d in self.interpreter.get_input_details()]
            self.outputs = [self._info(d) for d in self.interpreter.get_output_details()]
            self._in_idx = [d["index"] for d in self.interpreter.get_input_details()]
            self._out_idx = [d["index"] for d in self.interpreter.get_output_details()]
        except (ValueError, RuntimeError, TypeError, KeyError, IndexError, OverflowError) as exc:
            raise ModelLoadError(
                f"{self.path} cannot be loaded by {self.backend} ({one_line(exc)}); re-export it"
            ) from None

    @staticmethod
    def _info(d) -> TensorInfo:
        scale, zp = d.get("quantization", (0.0, 0))
        return TensorInfo(
            d["name"], tuple(int(s) for s in d["shape"]), np.dtype(d["dtype"]).name, float(scale), int(zp)
        )

    def op_details(self) -> list[dict]:
        """[{op, inputs: [dtype], outputs: [dtype]}] in execution order (XNNPACK shows up as DELEGATE)."""
        try:
            ops = self.interpreter._get_ops_details()
        except AttributeError:  # older interpreters lack the private helper
            return []
        return [
            {
                "op": op["op_name"],
                "inputs": [np.dtype(t).name for t in op.get("operand_types", [])],
                "outputs": [np.dtype(t).name for t in op.get("result_types", [])],
            }
            for op in ops
        ]

    def op_names(self) -> list[str]:
        return [op["op"] for op in self.op_details()]

    def run_raw(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        """Tensors in their own dtypes (int8 stays int8)."""
        if len(arrays) != len(self._in_idx):
            raise InvalidInputError(f"{self.path} takes {len(self._in_idx)} input(s), got {len(arrays)}")
        for idx, arr, info in zip(self._in_idx, arrays, self.inputs, strict=True):
            try:
                self.interpreter.set_tensor(idx, arr)
            except (ValueError, RuntimeError, TypeError) as exc:
                raise InvalidInputError(
                    f"{self.path} input {info.name!r} wants {info.dtype} {info.shape}; "
                    f"got {getattr(arr, 'dtype', type(arr).__name__)} {getattr(arr, 'shape', '')} ({one_line(exc)})"
                ) from None
        try:
            self.interpreter.invoke()
            return [self.interpreter.get_tensor(i).copy() for i in self._out_idx]
        except (ValueError, RuntimeError) as exc:
            raise ModelLoadError(
                f"{self.path} failed to run in {self.backend} ({one_line(exc)}); the file is corrupt or "
                "was not written by python -m export: re-export it"
            ) from None

    def run(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        """Float arrays in, float arrays out."""
        raw = [
            quantize(a, info) if info.quantized else np.asarray(a, info.dtype)
            for a, info in zip(arrays, self.inputs, strict=True)
        ]
        return [
            dequantize(o, info) if info.quantized else o.astype(np.float32)
            for o, info in zip(self.run_raw(raw), self.outputs, strict=True)
        ]


class OnnxModel:
    """One ONNX model through onnxruntime (QDQ int8 models take and return float)."""

    format = "onnx"
    backend = "onnxruntime"

    def __init__(self, path: str | os.PathLike, num_threads: int | None = None, data: bytes | None = None):
        """``data``: the file's bytes, already read and verified; the path is then not read again."""
        self.path = Path(path)
        data = read_model_file(self.path) if data is None else data
        try:
            import onnxruntime as ort
        except ImportError:
            raise ModelLoadError(
                f"{self.path} is an ONNX model but onnxruntime is not installed; pip install 'vae-edge-runtime[onnx]' "
                "(or onnxruntime), or pick a TFLite artifact"
            ) from None
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        if num_threads:
            opts.intra_op_num_threads = num_threads
            opts.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(data, sess_options=opts, providers=["CPUExecutionProvider"])
            self.inputs = [
                TensorInfo(
                    i.name, tuple(d if isinstance(d, int) else -1 for d in i.shape), _onnx_dtype(i.type)
                )
                for i in self.session.get_inputs()
            ]
            self.outputs = [
                TensorInfo(
                    o.name, tuple(d if isinstance(d, int) else -1 for d in o.shape), _onnx_dtype(o.type)
                )
                for o in self.session.get_outputs()
            ]
        except Exception as exc:  # onnxruntime raises its own exception types for malformed protobufs
            raise ModelLoadError(
                f"{self.path} cannot be loaded by onnxruntime ({type(exc).__name__}: {one_line(exc)}); re-export it"
            ) from None

    def op_names(self) -> list[str]:
        import onnx

        return [n.op_type for n in onnx.load_from_string(self.path.read_bytes()).graph.node]

    def run(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        if len(arrays) != len(self.inputs):
            raise InvalidInputError(f"{self.path} takes {len(self.inputs)} input(s), got {len(arrays)}")
        try:
            feed = {info.name: np.asarray(a, np.float32) for info, a in zip(self.inputs, arrays, strict=True)}
        except (ValueError, TypeError) as exc:
            raise InvalidInputError(f"{self.path}: inputs must be float arrays ({one_line(exc)})") from None
        try:
            outs = self.session.run(None, feed)
        except Exception as exc:  # onnxruntime's own Fail / InvalidArgument / RuntimeException types
            kind = type(exc).__name__
            if kind in ("InvalidArgument", "InvalidGraph") and "input" in str(exc).lower():
                raise InvalidInputError(f"{self.path} refused its input ({kind}: {one_line(exc)})") from None
            raise ModelLoadError(
                f"{self.path} failed to run in onnxruntime ({kind}: {one_line(exc)}); the file is corrupt or "
                "was not written by python -m export: re-export it"
            ) from None
        return [np.asarray(o, np.float32) for o in outs]

    run_raw = run


def one_line(exc: BaseException, limit: int = 200) -> str:
    """An interpreter's message on one line (they span several, with C++ file names), cut to ``limit``."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _onnx_dtype(type_str: str) -> str:
    return {"tensor(float)": "float32", "tensor(int8)": "int8", "tensor(uint8)": "uint8"}.get(
        type_str, type_str
    )


def run_batched(model, x: np.ndarray, batch: int) -> list[np.ndarray]:
    """Run a static-batch model over all rows of ``x``: the last chunk is padded with copies of its last row
    (rows of a batch are independent) and the padding's outputs are dropped."""
    outs = []
    for i in range(0, len(x), batch):
        chunk = x[i : i + batch]
        n = len(chunk)
        if n < batch:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], batch - n, axis=0)])
        outs.append([o[:n] for o in model.run([chunk])])
    return [np.concatenate(parts) for parts in zip(*outs, strict=True)]


def open_model(path: str | os.PathLike, num_threads: int | None = None):
    """TFLiteModel or OnnxModel by the file's extension."""
    suffix = Path(path).suffix.lower()
    if suffix == ".tflite":
        return TFLiteModel(path, num_threads)
    if suffix == ".onnx":
        return OnnxModel(path, num_threads)
    raise InvalidInputError(f"{path}: unknown model format {suffix!r}; expected .tflite or .onnx")
