"""Load an export's ``manifest.json`` and verify each artifact before it reaches an interpreter.

from runtime.manifest import load_manifest
m = load_manifest("artifacts/vae2d_corr/export")
entry = m.select(role="decoder", format="tflite", precision="int8", graph="subpixel", batch=1, io="int8")
path = m.verify(entry)          # exists, size and sha256 as recorded, TFLite identifier present

``load_manifest`` validates the whole file against its schema first (version, required fields and their
types, artifact paths that stay inside the export folder), so a hand-edited or corrupt manifest is one
:class:`ManifestError` naming the field, never a KeyError deep inside the runtime.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from .backends import ModelLoadError, check_tflite_bytes
from .errors import InvalidInputError, VaeEdgeError
from .latent import LatentSplit
from .prior import Prior
from .vocab import Graph

MANIFEST_NAME = "manifest.json"
# Manifests without "manifest_version" are version 1; a newer one needs a newer runtime. This runtime reads
# versions up to MANIFEST_VERSION:
#   1  the project's MNIST models: a VAE's images are 28x28x1 sigmoid probabilities in [0, 1] (implied).
#   2  adds "image": {"shape": [H, W, C], "range": [lo, hi] or null, "activation": sigmoid | tanh | none}, for
#      decoders brought by the user (python -m export --decoder). Exporters write the lowest version that
#      describes the model, so the project's own manifests stay version 1 and older runtimes keep reading them.
MANIFEST_VERSION = 2
MNIST_MANIFEST_VERSION = 1
MODEL_FORMATS = ("tflite", "onnx")
KINDS = ("vae", "classifier")
# A decoder's output activation: the function between its last linear layer and its output ("none": the output
# is that layer's value). Sigmoid decoders end their full-int8 graphs at int8 logits (output_activation
# "sigmoid" in those entries); tanh and none stay in the graph.
SIGMOID, TANH, NONE = "sigmoid", "tanh", "none"
OUTPUT_ACTIVATIONS = (SIGMOID, TANH, NONE)
# The values each output activation produces (none: unbounded).
IMAGE_RANGES = {SIGMOID: (0.0, 1.0), TANH: (-1.0, 1.0), NONE: None}
MNIST_IMAGE_SHAPE = (28, 28, 1)
# Decoder graphs in the order a device prefers them.
DEPLOYMENT_GRAPHS = (Graph.SUBPIXEL, Graph.TRANSPOSE)
MAX_IMAGE_SIDE = 4096


class ManifestError(VaeEdgeError):
    """manifest.json is unreadable, violates the schema, or points outside its export folder."""


def _where(path: Path, field: str) -> str:
    return f"{path}: field {field!r}"


def _require(obj: dict, key: str, types, path: Path, prefix: str = "", optional: bool = False):
    field = f"{prefix}{key}"
    if key not in obj:
        if optional:
            return None
        raise ManifestError(
            f"{_where(path, field)} is missing; re-run python -m export or copy the folder again"
        )
    value = obj[key]
    # bool is an int subclass: a manifest saying "batch": true is as wrong as "batch": "1".
    if isinstance(value, bool) and bool not in (types if isinstance(types, tuple) else (types,)):
        ok = False
    else:
        ok = isinstance(value, types)
    if not ok:
        names = " or ".join(t.__name__ for t in (types if isinstance(types, tuple) else (types,)))
        raise ManifestError(
            f"{_where(path, field)} must be {names}, got {type(value).__name__}; re-run python -m export"
        )
    return value


def safe_artifact_path(folder: Path, name: str, where: str = "") -> Path:
    """``folder / name`` if it stays inside ``folder``: no absolute path, no ``..``, no symlink that leads out.

    A manifest is data from whoever sent the folder: following ``../../x`` or ``/etc/x`` would read (and
    pi-bundle would pack) files the export never wrote.
    """
    label = f"{where}: " if where else ""
    parts = name.replace("\\", "/").split("/")
    if not name or "\x00" in name or Path(name).is_absolute() or ".." in parts or name.startswith("/"):
        raise ManifestError(
            f"{label}artifact path {name!r} is not a plain file name inside {folder}; re-run python -m export"
        )
    root = folder.resolve()
    target = (root / name).resolve()
    if target == root or root not in target.parents:
        raise ManifestError(
            f"{label}artifact path {name!r} resolves outside the export folder {folder}; re-run python -m export"
        )
    return folder / name


def _validate_tensor(t, path: Path, field: str) -> None:
    if not isinstance(t, dict):
        raise ManifestError(f"{_where(path, field)} must be an object, got {type(t).__name__}")
    _require(t, "name", str, path, f"{field}.")
    shape = _require(t, "shape", list, path, f"{field}.")
    if not shape or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape):
        raise ManifestError(
            f"{_where(path, field + '.shape')} must be a list of positive integers, got {shape}"
        )
    _require(t, "dtype", str, path, f"{field}.")
    scale = _require(t, "scale", (int, float), path, f"{field}.", optional=True)
    if scale is not None and not (scale > 0 and scale < float("inf")):
        raise ManifestError(f"{_where(path, field + '.scale')} must be a positive finite number, got {scale}")
    _require(t, "zero_point", int, path, f"{field}.", optional=True)


def _validate_image(data: dict, path: Path, version: int) -> None:
    """The optional "image" object: its shape (three sides), range and, from version 2, output activation."""
    image = _require(data, "image", dict, path, optional=True)
    if image is None:
        return
    shape = _require(image, "shape", list, path, "image.", optional=True)
    if shape is not None and (
        len(shape) != 3
        or not all(isinstance(d, int) and not isinstance(d, bool) and 0 < d <= MAX_IMAGE_SIDE for d in shape)
    ):
        raise ManifestError(
            f"{_where(path, 'image.shape')} must be [height, width, channels], each from 1 to {MAX_IMAGE_SIDE}, "
            f"got {shape}; re-run python -m export"
        )
    activation = _require(image, "activation", str, path, "image.", optional=True)
    if activation is not None and (version < 2 or activation not in OUTPUT_ACTIVATIONS):
        raise ManifestError(
            f"{_where(path, 'image.activation')} is {activation!r}; expected one of {', '.join(OUTPUT_ACTIVATIONS)} "
            "in a version 2 manifest; re-run python -m export"
        )
    value_range = _require(image, "range", (list, type(None)), path, "image.", optional=True)
    if value_range is not None and (
        len(value_range) != 2
        or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value_range)
        or not value_range[0] < value_range[1]
    ):
        raise ManifestError(
            f"{_where(path, 'image.range')} must be [low, high] with low < high, got {value_range}"
        )


def validate_manifest(data, path: Path) -> None:
    """Raise :class:`ManifestError` naming the first field that breaks the schema."""
    if not isinstance(data, dict):
        raise ManifestError(
            f"{path} must hold a JSON object, got {type(data).__name__}; re-run python -m export"
        )
    version = _require(data, "manifest_version", int, path, optional=True)
    if version is not None and not 1 <= version <= MANIFEST_VERSION:
        raise ManifestError(
            f"{_where(path, 'manifest_version')} is {version}; this runtime reads versions 1..{MANIFEST_VERSION}: "
            "update the runtime or re-export"
        )
    model = _require(data, "model", str, path)
    if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", model) or model in (".", ".."):
        # The model name becomes a folder name in reports and in pi-bundle's tarball.
        raise ManifestError(f"{_where(path, 'model')} {model!r} is not a plain name (letters, digits, _ . -)")
    kind = _require(data, "kind", str, path, optional=True) or "vae"
    if kind not in KINDS:
        raise ManifestError(f"{_where(path, 'kind')} is {kind!r}; expected one of {', '.join(KINDS)}")
    if kind == "vae":
        latent_dim = _require(data, "latent_dim", int, path)
        if latent_dim < 1:
            raise ManifestError(f"{_where(path, 'latent_dim')} must be >= 1, got {latent_dim}")
        prior = _require(data, "prior", dict, path)
        try:
            p = Prior.from_json(prior)
        except (InvalidInputError, KeyError, TypeError, ValueError) as exc:
            raise ManifestError(
                f"{_where(path, 'prior')} is not a valid prior ({exc}); re-run python -m export"
            ) from None
        if p.latent_dim != latent_dim:
            raise ManifestError(
                f"{_where(path, 'prior')} has {p.latent_dim} dimensions but latent_dim is {latent_dim}"
            )
    if kind == "vae":
        _validate_image(data, path, version or 1)
    artifacts = _require(data, "artifacts", list, path)
    seen = set()
    for i, a in enumerate(artifacts):
        at = f"artifacts[{i}]"
        if not isinstance(a, dict):
            raise ManifestError(f"{_where(path, at)} must be an object, got {type(a).__name__}")
        name = _require(a, "path", str, path, f"{at}.")
        at = f"artifacts[{i}] ({name})"
        safe_artifact_path(path.parent, name, _where(path, f"{at}.path"))
        if name in seen:
            raise ManifestError(f"{_where(path, at)} is listed twice; re-run python -m export")
        seen.add(name)
        for key in ("role", "format", "sha256"):
            _require(a, key, str, path, f"{at}.")
        size = _require(a, "size_bytes", int, path, f"{at}.")
        if size < 0:
            raise ManifestError(f"{_where(path, at + '.size_bytes')} must be >= 0, got {size}")
        batch = _require(a, "batch", int, path, f"{at}.", optional=True)
        if batch is not None and batch < 1:
            raise ManifestError(f"{_where(path, at + '.batch')} must be >= 1, got {batch}")
        if a["format"] not in MODEL_FORMATS:
            continue  # C sources and other side files: checked by size and sha256 only
        for key in ("precision", "graph", "io"):
            _require(a, key, (str, type(None)), path, f"{at}.", optional=key != "precision")
        if batch is None:
            _require(a, "batch", int, path, f"{at}.")
        for key in ("inputs", "outputs"):
            tensors = _require(a, key, list, path, f"{at}.")
            if not tensors:
                raise ManifestError(f"{_where(path, f'{at}.{key}')} is empty; re-run python -m export")
            for j, t in enumerate(tensors):
                _validate_tensor(t, path, f"{at}.{key}[{j}]")
        if a["role"] in ("encoder", "classifier"):
            roles = _require(a, "output_roles", list, path, f"{at}.")
            if len(roles) != len(a["outputs"]) or not all(isinstance(r, str) for r in roles):
                raise ManifestError(
                    f"{_where(path, at + '.output_roles')} must name each of the {len(a['outputs'])} outputs"
                )
        _require(a, "output_activation", (str, type(None)), path, f"{at}.", optional=True)
        split = _require(a, "latent_split", dict, path, f"{at}.", optional=True)
        if split is not None:
            try:
                LatentSplit.from_json(split)
            except (InvalidInputError, KeyError, TypeError, ValueError) as exc:
                raise ManifestError(
                    f"{_where(path, at + '.latent_split')} is not a valid latent split ({exc}); re-run python -m export"
                ) from None


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
    def image_shape(self) -> tuple[int, int, int]:
        """(height, width, channels) of the decoder's images: MNIST's 28x28x1 unless the manifest says."""
        shape = self.data.get("image", {}).get("shape")
        return tuple(shape) if shape else MNIST_IMAGE_SHAPE

    @property
    def output_activation(self) -> str:
        """The decoder's output activation (sigmoid, tanh or none): sigmoid unless the manifest says."""
        return self.data.get("image", {}).get("activation") or SIGMOID

    @property
    def image_range(self) -> tuple[float, float] | None:
        """The range of the decoder's output values (None: unbounded, a linear output)."""
        image = self.data.get("image", {})
        if "range" in image:
            return None if image["range"] is None else tuple(image["range"])
        return IMAGE_RANGES[self.output_activation]

    @property
    def artifacts(self) -> list[dict]:
        return self.data["artifacts"]

    @property
    def deployment_graph(self) -> Graph | None:
        """The decoder graph a device runs: the sub-pixel rewrite where the export has it (the project's models),
        else the one graph of a decoder brought with ``python -m export --decoder``; None without decoders."""
        graphs = {a.get("graph") for a in self.artifacts if a.get("role") == "decoder"}
        return next((g for g in DEPLOYMENT_GRAPHS if g in graphs), None)

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
        """Check the file against the manifest (size, sha256, format identifier); return its path.

        For a file to load, use :meth:`read_verified`: a path checked now may hold other bytes when it is
        opened again."""
        return self.read_verified(entry)[0]

    def read_verified(self, entry: dict) -> tuple[Path, bytes]:
        """The file's path and its bytes, read once and checked against the manifest (size, sha256, format
        identifier). Load a model from these bytes, never by reading the path again: a file swapped between
        the check and a second read would load unchecked."""
        path = safe_artifact_path(self.folder, entry["path"], str(self.folder / MANIFEST_NAME))
        if not path.is_file():
            raise ModelLoadError(
                f"{path} is missing; copy the whole export folder again or re-run python -m export"
            )
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size  # before reading: a wrong size is refused without reading it
            data = fh.read(entry["size_bytes"] + 1) if size == entry["size_bytes"] else b""
        if size != entry["size_bytes"] or len(data) != size:
            got = size if size != entry["size_bytes"] else len(data)
            raise ModelLoadError(
                f"{path} has {got} bytes but the manifest says {entry['size_bytes']} (truncated copy?); copy it again"
            )
        if hashlib.sha256(data).hexdigest() != entry["sha256"]:
            raise ModelLoadError(
                f"{path} does not match its sha256 in the manifest (corrupt or modified); copy it again"
            )
        if entry["format"] == "tflite":
            check_tflite_bytes(data[:8], path)
        return path, data


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
        data = json.loads(path.read_bytes().decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise ManifestError(
            f"{path} is not a valid vae-edge manifest ({type(exc).__name__}); re-run python -m export"
        ) from None
    validate_manifest(data, path)
    return Manifest(folder, data)


def find_manifests(artifacts: str | os.PathLike, errors: dict | None = None) -> dict[str, Manifest]:
    """Every ``<artifacts>/<model>/export/manifest.json``, by model name.

    With ``errors`` (a dict), a manifest that does not load is recorded there (folder name -> the error)
    and skipped, so one bad model does not stop a run over all of them; without it, the error is raised.
    """
    root = Path(artifacts)
    out = {}
    for path in sorted(root.glob(f"*/export/{MANIFEST_NAME}")):
        try:
            m = load_manifest(path.parent)
        except VaeEdgeError as exc:
            if errors is None:
                raise
            errors[path.parent.parent.name] = exc
            continue
        out[m.model] = m
    return out
