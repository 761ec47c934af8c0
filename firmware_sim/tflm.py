"""TensorFlow Lite Micro on the host (PyPI ``tflite-micro``): run the int8 decoder, find its smallest arena,
and read the RecordingMicroAllocator's breakdown of that arena."""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
from collections.abc import Iterator

import numpy as np

from runtime.errors import VaeEdgeError

MAX_ARENA_BYTES = 4 << 20


def _runtime():
    try:
        from tflite_micro.python.tflite_micro import runtime
    except ImportError:
        raise VaeEdgeError(
            "TFLite Micro is not installed; pip install tflite-micro (it is in requirements.txt)"
        ) from None
    return runtime


@contextlib.contextmanager
def captured_stderr() -> Iterator[list[str]]:
    """Capture what C++ code writes to fd 2 (TFLM logs and PrintAllocations go there)."""
    out: list[str] = []
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield out
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            out.append(tmp.read().decode(errors="replace"))


class TflmError(VaeEdgeError):
    """TFLite Micro refused the model or failed to run it (arena too small, unsupported op, corrupt graph)."""


class TflmModel:
    def __init__(self, model: bytes, arena_size: int):
        rt = _runtime()
        with captured_stderr() as log:
            try:
                self.interpreter = rt.Interpreter.from_bytes(model, arena_size=arena_size)
            except (RuntimeError, ValueError, TypeError) as exc:
                self.error = f"{exc}"
                raise TflmError(
                    f"TFLite Micro cannot load the model with a {arena_size}-byte arena "
                    f"({' '.join(str(exc).split())[:160]}); re-export it"
                ) from None
        self.log = log

    def run(self, x: np.ndarray) -> np.ndarray:
        try:
            self.interpreter.set_input(np.ascontiguousarray(x), 0)
            self.interpreter.invoke()
            return np.array(self.interpreter.get_output(0))
        except (RuntimeError, ValueError, TypeError, IndexError) as exc:
            raise TflmError(
                f"TFLite Micro failed to run the model ({' '.join(str(exc).split())[:160]}); re-export it"
            ) from None

    def allocations(self) -> dict:
        with captured_stderr() as log:
            self.interpreter.print_allocations()
        return parse_allocations(log[0])


def arena_works(model: bytes, size: int, probe: np.ndarray) -> bool:
    with captured_stderr():
        try:
            TflmModel(model, size).run(probe)
        except TflmError:
            return False
    return True


def smallest_arena(model: bytes, probe: np.ndarray, hi: int = MAX_ARENA_BYTES) -> int:
    """Bisection on the arena size: the smallest size with which TFLM allocates and invokes the model."""
    if not arena_works(model, hi, probe):
        raise VaeEdgeError(f"TFLite Micro cannot run the model even with a {hi}-byte arena (unsupported op?)")
    lo = 0  # invariant: lo fails (or is 0), hi works
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if arena_works(model, mid, probe):
            hi = mid
        else:
            lo = mid
    return hi


def parse_allocations(text: str) -> dict:
    out = {}
    for key in ("total", "head", "tail"):
        m = re.search(rf"Arena allocation {key} (\d+) bytes", text)
        if m:
            out[f"{key}_bytes"] = int(m.group(1))
    for m in re.finditer(r"'([^']+)' used (\d+) bytes", text):
        out[m.group(1)] = int(m.group(2))
    return out
