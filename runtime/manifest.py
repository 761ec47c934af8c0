"""Load an export's ``manifest.json`` and verify each artifact before it reaches an interpreter.

from runtime.manifest import load_manifest
m = load_manifest("artifacts/vae2d_corr/export")
entry = m.select(role="decoder", format="tflite", precision="int8", graph="subpixel", batch=1, io="int8")
path = m.verify(entry)          # exists, size and sha256 as recorded, TFLite identifier present
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from .backends import ModelLoadError, check_tflite_bytes
from .errors import VaeEdgeError
from .fileio import sha256_file
from .prior import Prior

MANIFEST_NAME = "manifest.json"


@dataclass
class Manifest:
    folder: Path
    data: dict

    @property
    def model(self) -> str:
        return self.data["model"]

    @property
    def kind(self) -> str:
        return self.data.get("kind", "vae")

    @property
    def prior(self) -> Prior:
        if "prior" not in self.data:
            raise VaeEdgeError(
                f"{self.folder / MANIFEST_NAME} has no prior (model {self.model} is not a VAE)"
            )
        return Prior.from_json(self.data["prior"])

    @property
    def latent_dim(self) -> int:
        return int(self.data["latent_dim"])

    @property
    def artifacts(self) -> list[dict]:
        return self.data["artifacts"]

    def find(self, **criteria) -> list[dict]:
        return [a for a in self.artifacts if all(a.get(k) == v for k, v in criteria.items() if v is not None)]

    def select(self, **criteria) -> dict:
        """Exactly one artifact matching every given field (None means any)."""
        hits = self.find(**criteria)
        if len(hits) != 1:
            wanted = ", ".join(f"{k}={v}" for k, v in criteria.items() if v is not None)
            raise VaeEdgeError(
                f"{len(hits)} artifacts of {self.model} match {wanted}; available: "
                + ", ".join(a["path"] for a in self.artifacts)
            )
        return hits[0]

    def by_path(self, name: str) -> dict:
        for a in self.artifacts:
            if a["path"] == name:
                return a
        raise VaeEdgeError(f"{name} is not listed in {self.folder / MANIFEST_NAME}")

    def verify(self, entry: dict) -> Path:
        """Check the file against the manifest (size, sha256, format identifier); return its path."""
        path = self.folder / entry["path"]
        if not path.is_file():
            raise ModelLoadError(
                f"{path} is missing; copy the whole export folder again or re-run python -m export"
            )
        size = path.stat().st_size
        if size != entry["size_bytes"]:
            raise ModelLoadError(
                f"{path} has {size} bytes but the manifest says {entry['size_bytes']} (truncated copy?); copy it again"
            )
        if sha256_file(path) != entry["sha256"]:
            raise ModelLoadError(
                f"{path} does not match its sha256 in the manifest (corrupt or modified); copy it again"
            )
        if entry["format"] == "tflite":
            with open(path, "rb") as fh:
                check_tflite_bytes(fh.read(8), path)
        return path


def load_manifest(folder: str | os.PathLike) -> Manifest:
    folder = Path(folder)
    if folder.is_file():
        folder = folder.parent
    path = folder / MANIFEST_NAME
    if not path.is_file():
        raise VaeEdgeError(
            f"{path} not found; run python -m export (or copy the export folder with its manifest)"
        )
    try:
        data = json.loads(path.read_text())
        data["artifacts"]  # noqa: B018 - the key every manifest must have
    except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise VaeEdgeError(
            f"{path} is not a valid vae-edge manifest ({type(exc).__name__}); re-run python -m export"
        ) from None
    return Manifest(folder, data)


def find_manifests(artifacts: str | os.PathLike) -> dict[str, Manifest]:
    """Every ``<artifacts>/<model>/export/manifest.json``, by model name."""
    root = Path(artifacts)
    out = {}
    for path in sorted(root.glob(f"*/export/{MANIFEST_NAME}")):
        m = load_manifest(path.parent)
        out[m.model] = m
    return out
