"""MNIST loading for vae-edge (numpy only: the runtime uses it on a Raspberry Pi, training uses it too).

Where the data comes from, in order:
  1. an explicit path (the ``--data`` flag);
  2. the ``VAE_EDGE_MNIST`` environment variable;
  3. the keras cache / download (``keras.datasets.mnist.load_data()``), for machines with internet.

A path may be an ``.npz`` in the keras layout (x_train, y_train, x_test, y_test) or a folder holding the
four LeCun IDX files, raw or gzipped. Everything is checked (shapes, dtypes, label range) and a problem
gives one line naming the fix.
"""

from __future__ import annotations

import gzip
import importlib
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import VaeEdgeError
from .fileio import sha256_file

ENV_VAR = "VAE_EDGE_MNIST"
HOW_TO_SUPPLY = f"pass --data PATH or set {ENV_VAR}=PATH (an .npz in the keras layout or a folder with the four MNIST IDX files)"
IDX_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}


@dataclass(frozen=True)
class Mnist:
    x_train: np.ndarray  # uint8 (n, 28, 28)
    y_train: np.ndarray  # uint8 (n,)
    x_test: np.ndarray
    y_test: np.ndarray
    source: str
    sha256: str | None

    def images(self, split: str) -> np.ndarray:
        """float32 (n, 28, 28, 1) in [0, 1]."""
        x = self.x_train if split == "train" else self.x_test
        return (x.astype(np.float32) / 255.0)[..., None]


def resolve_path(path: str | os.PathLike | None) -> Path | None:
    if path:
        return Path(path)
    env = os.environ.get(ENV_VAR)
    return Path(env) if env else None


def load_mnist(path: str | os.PathLike | None = None, test_only: bool = False) -> Mnist:
    """Load and validate MNIST from ``path``, ``$VAE_EDGE_MNIST`` or the keras cache (see module doc).

    ``test_only`` accepts an .npz holding just x_test and y_test (what ``make pi-bundle`` ships); the train
    split is then empty.
    """
    resolved = resolve_path(path)
    if test_only and resolved is not None and resolved.is_file():
        arrays = _load_npz(resolved, keys=("x_test", "y_test"))
        arrays.update(x_train=np.zeros((0, 28, 28), np.uint8), y_train=np.zeros(0, np.uint8))
        _validate(arrays, str(resolved), splits=("test",))
        return Mnist(**arrays, source=str(resolved), sha256=sha256_file(resolved))
    if resolved is None:
        arrays, source, digest = _load_keras(), "keras.datasets.mnist", None
    elif resolved.is_dir():
        arrays, source, digest = _load_idx_dir(resolved), str(resolved), None
    elif resolved.is_file():
        arrays, source, digest = _load_npz(resolved), str(resolved), sha256_file(resolved)
    else:
        raise VaeEdgeError(f"MNIST not found at {resolved}; {HOW_TO_SUPPLY}")
    _validate(arrays, source)
    return Mnist(**arrays, source=source, sha256=digest)


def _load_keras() -> dict:
    try:
        # Imported by name so that the runtime never imports Keras unless a user without a path asks for it.
        keras = importlib.import_module("keras")
        (x_train, y_train), (x_test, y_test) = keras.datasets.mnist.load_data()
    except Exception as exc:  # no internet, proxy, broken cache: all end the same way for the user
        raise VaeEdgeError(
            f"MNIST could not be downloaded by keras ({type(exc).__name__}); {HOW_TO_SUPPLY}"
        ) from None
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}


def _load_npz(path: Path, keys=tuple(IDX_FILES)) -> dict:
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [k for k in keys if k not in npz.files]
            if missing:
                raise VaeEdgeError(
                    f"{path} lacks the arrays {missing}; expected the keras layout x_train, y_train, x_test, y_test"
                )
            return {k: npz[k] for k in keys}
    except VaeEdgeError:
        raise
    except Exception as exc:  # noqa: BLE001 - a corrupt zip member fails in zlib, zipfile, numpy's header parser...
        reason = " ".join(str(exc).split())[:160]
        raise VaeEdgeError(
            f"{path} is not a readable .npz ({type(exc).__name__}: {reason}); re-copy the file or {HOW_TO_SUPPLY}"
        ) from None


def _read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            data = fh.read()
    except (OSError, EOFError) as exc:
        raise VaeEdgeError(f"{path} cannot be read ({exc}); re-copy the IDX file") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise VaeEdgeError(f"{path} is not an unsigned-byte IDX file (bad magic); re-copy it")
    ndim = data[3]
    header = 4 + 4 * ndim
    if ndim not in (1, 3) or len(data) < header:  # MNIST holds labels (n,) and images (n, 28, 28)
        raise VaeEdgeError(
            f"{path} has a {ndim}-dimensional IDX header{' cut short' if len(data) < header else ''}; MNIST "
            "files are 1-dimensional (labels) or 3-dimensional (images): re-copy it"
        )
    dims = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = math.prod(dims)  # Python integers: numpy's int64 product of 65536⁴ wraps to 0
    if len(data) - header != expected:
        raise VaeEdgeError(f"{path} is truncated: {len(data) - header} bytes of data, header says {expected}")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def _load_idx_dir(folder: Path) -> dict:
    arrays = {}
    for key, stem in IDX_FILES.items():
        candidates = [
            folder / stem,
            folder / f"{stem}.gz",
            folder / stem.replace("-idx", ".idx"),
            folder / f"{stem.replace('-idx', '.idx')}.gz",
        ]
        found = next((c for c in candidates if c.is_file()), None)
        if found is None:
            raise VaeEdgeError(
                f"{folder} has no {stem}[.gz]; put the four MNIST IDX files there or {HOW_TO_SUPPLY}"
            )
        arrays[key] = _read_idx(found)
    return arrays


def _validate(arrays: dict, source: str, splits=("train", "test")) -> None:
    for split in splits:
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.ndim != 3 or x.shape[1:] != (28, 28):
            raise VaeEdgeError(
                f"{source}: x_{split} has shape {x.shape}, expected (n, 28, 28); {HOW_TO_SUPPLY}"
            )
        if y.shape != (x.shape[0],):
            raise VaeEdgeError(
                f"{source}: y_{split} has shape {y.shape} but x_{split} holds {x.shape[0]} images; the labels do not match"
            )
        if x.dtype != np.uint8:
            raise VaeEdgeError(f"{source}: x_{split} is {x.dtype}, expected uint8 pixels 0..255")
        if not np.issubdtype(y.dtype, np.integer) or (y.size and (y.min() < 0 or y.max() > 9)):
            raise VaeEdgeError(f"{source}: y_{split} must hold integer labels 0..9")
        if x.shape[0] == 0:
            raise VaeEdgeError(f"{source}: the {split} split is empty")
