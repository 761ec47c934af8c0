"""A minimal grayscale PNG writer in numpy + zlib, so the runtime can write images without matplotlib or PIL."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np

from .errors import VaeEdgeError
from .fileio import write_bytes_atomic

# A grid of 10,000 digits is 6004 x 6004 pixels (~150 MB while it is built); beyond that a picture is no use to
# look at and memory grows with n (10^12 digits would need 14.6 TiB). An .npy streams any n in bounded memory.
MAX_GRID_IMAGES = 10_000


def check_grid_size(n: int, path: str | Path) -> None:
    """Refuse a PNG grid of more than :data:`MAX_GRID_IMAGES` digits with one line that suggests an .npy."""
    if n > MAX_GRID_IMAGES:
        stem = str(Path(path).with_suffix(".npy"))
        raise VaeEdgeError(
            f"a PNG grid holds at most {MAX_GRID_IMAGES} digits, -n asks for {n}; write an .npy instead "
            f"(--out {stem}), which streams any number of digits in bounded memory"
        )


def encode_png(gray: np.ndarray) -> bytes:
    """(h, w) array in [0, 1] (or uint8) -> PNG bytes, 8-bit grayscale."""
    img = gray if gray.dtype == np.uint8 else (np.clip(gray, 0, 1) * 255 + 0.5).astype(np.uint8)
    h, w = img.shape
    raw = b"".join(b"\x00" + img[r].tobytes() for r in range(h))  # filter type 0 per row

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(raw, 9))
        + chunk(b"IEND", b"")
    )


def tile(images: np.ndarray, cols: int | None = None, pad: int = 2) -> np.ndarray:
    n = len(images)
    cols = cols or int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    h, w = images.shape[1:3]
    canvas = np.zeros((rows * (h + pad) + pad, cols * (w + pad) + pad), np.float32)
    for i, img in enumerate(images):
        r, c = divmod(i, cols)
        canvas[
            pad + r * (h + pad) : pad + r * (h + pad) + h, pad + c * (w + pad) : pad + c * (w + pad) + w
        ] = img
    return canvas


def write_png_grid(images: np.ndarray, path: str | Path, scale: int = 2) -> Path:
    check_grid_size(len(images), path)
    canvas = tile(np.asarray(images).reshape(len(images), 28, 28))
    canvas = np.kron(canvas, np.ones((scale, scale), np.float32))
    return write_bytes_atomic(path, encode_png(canvas))
