"""Library versions and platform, recorded next to every artifact so a result can be reproduced."""

from __future__ import annotations

import importlib.metadata
import platform

LIBRARIES = (
    "numpy",
    "tensorflow-cpu",
    "tensorflow",
    "keras",
    "onnx",
    "tf2onnx",
    "onnxruntime",
    "ai-edge-litert",
)


def library_versions() -> dict[str, str]:
    out = {}
    for name in LIBRARIES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


def provenance() -> dict:
    return {
        "versions": library_versions(),
        "platform": {
            "python": platform.python_version(),
            "machine": platform.machine(),
            "system": platform.system(),
        },
    }
