"""A minimal PNG writer in numpy + zlib (8-bit grey or RGB), so the runtime can write images without matplotlib
or PIL.

    write_png_grid(images, "grid.png", value_range=(0.0, 1.0))   # (n, H, W), (n, H, W, 1) grey; (n, H, W, 3) RGB

Other channel counts are written grey, each image's channels side by side.
"""

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
MAX_GRID_PIXELS = (
    MAX_GRID_IMAGES * 28 * 28 * 3
)  # images of any shape: as many pixel values as 10,000 RGB digits


def check_grid_size(n: int, path: str | Path) -> None:
    """Refuse a PNG grid of more than :data:`MAX_GRID_IMAGES` digits with one line that suggests an .npy."""
    if n > MAX_GRID_IMAGES:
        stem = str(Path(path).with_suffix(".npy"))
        raise VaeEdgeError(
            f"a PNG grid holds at most {MAX_GRID_IMAGES} digits, -n asks for {n}; write an .npy instead "
            f"(--out {stem}), which streams any number of digits in bounded memory"
        )


def check_grid_pixels(n: int, image_shape: tuple[int, ...], path: str | Path) -> None:
    """Refuse a grid of more than :data:`MAX_GRID_PIXELS` pixel values (large images) with one line."""
    values = n * int(np.prod(image_shape))
    if values > MAX_GRID_PIXELS:
        raise VaeEdgeError(
            f"a PNG grid of {n} images of {'x'.join(map(str, image_shape))} holds {values} pixel values, more than "
            f"{MAX_GRID_PIXELS}; pass a smaller -n or write an .npy (--out {Path(path).with_suffix('.npy')})"
        )


def encode_png(gray: np.ndarray) -> bytes:
    """(h, w) grey or (h, w, 3) RGB array in [0, 1] (or uint8) -> PNG bytes, 8 bits per sample."""
    img = gray if gray.dtype == np.uint8 else (np.clip(gray, 0, 1) * 255 + 0.5).astype(np.uint8)
    if img.ndim == 3 and img.shape[2] != 3:
        raise VaeEdgeError(f"a PNG image is (h, w) grey or (h, w, 3) RGB, got {img.shape}")
    h, w = img.shape[:2]
    color_type = 2 if img.ndim == 3 else 0
    raw = b"".join(
        b"\x00" + np.ascontiguousarray(img[r]).tobytes() for r in range(h)
    )  # filter type 0 per row

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, color_type, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(raw, 9))
        + chunk(b"IEND", b"")
    )


def tile(images: np.ndarray, cols: int | None = None, pad: int = 2) -> np.ndarray:
    """(n, h, w[, c]) -> one (rows·(h + pad) + pad, cols·(w + pad) + pad[, c]) canvas, zeros between."""
    n = len(images)
    cols = cols or int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    h, w = images.shape[1:3]
    canvas = np.zeros((rows * (h + pad) + pad, cols * (w + pad) + pad, *images.shape[3:]), np.float32)
    for i, img in enumerate(images):
        r, c = divmod(i, cols)
        canvas[
            pad + r * (h + pad) : pad + r * (h + pad) + h, pad + c * (w + pad) : pad + c * (w + pad) + w
        ] = img
    return canvas


def to_unit(images: np.ndarray, value_range: tuple[float, float] | None = (0.0, 1.0)) -> np.ndarray:
    """Images of ``value_range`` mapped onto [0, 1] (None: an unbounded output, mapped from its own min..max)."""
    x = np.asarray(images, np.float32)
    lo, hi = value_range if value_range is not None else (float(x.min()), float(x.max()))
    if (lo, hi) == (0.0, 1.0):
        return x
    return (x - lo) / (hi - lo) if hi > lo else np.zeros_like(x)


def displayable(images: np.ndarray) -> np.ndarray:
    """(n, h, w[, c]) -> (n, h, w) grey or (n, h, w, 3) RGB: one channel is grey, three RGB, any other count
    grey with each image's channels side by side."""
    x = np.asarray(images)
    if x.ndim == 3:
        return x
    if x.ndim != 4:
        raise VaeEdgeError(f"images must be (n, h, w) or (n, h, w, c), got {x.shape}")
    n, h, w, c = x.shape
    if c == 1:
        return x[..., 0]
    if c == 3:
        return x
    return x.transpose(0, 1, 3, 2).reshape(n, h, c * w)


def write_png_grid(
    images: np.ndarray,
    path: str | Path,
    scale: int = 2,
    *,
    value_range: tuple[float, float] | None = (0.0, 1.0),
) -> Path:
    """A grid PNG of (n, h, w) or (n, h, w, c) images whose values lie in ``value_range`` (None: their own
    min..max): grey for one channel, RGB for three."""
    check_grid_size(len(images), path)
    check_grid_pixels(len(images), np.shape(images)[1:], path)
    canvas = tile(displayable(to_unit(images, value_range)))
    canvas = canvas.repeat(scale, axis=0).repeat(scale, axis=1)
    return write_bytes_atomic(path, encode_png(canvas))
