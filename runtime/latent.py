"""How a full-int8 decoder takes its latent: one int8 per dimension, or two (a split latent).

One int8 per dimension puts the latent on a grid of 256 points per axis (step 0.026 for a ±3.5 range); a 2-D
latent packs ten digit classes, so a few percent of prior samples sit within one step of a class boundary and
decode as another digit (docs/results.md). A *split* latent gives each dimension two int8 inputs of the same
scale and zero point: the grid point ``hi`` and ``radix`` times what it leaves, ``lo = radix * (z - hi)``. The
decoder's first FULLY_CONNECTED takes both, with weights ``[W; W / radix]``, so ``W hi + (W / radix) lo = W z``
on a grid ``radix`` times finer. Still one int8 graph of plain TFLite ops: TFLite Micro, the numpy reference
and the generated C run it unchanged; only the latent's encoding differs.

    split = LatentSplit.from_json(entry["latent_split"])     # the manifest entry of an int8 decoder
    q = split.quantize(z)                                    # (n, d) float -> (n, 2d) int8, as the C does

:meth:`LatentSplit.quantize` is bit-exact with the generated C's ``<model>_quantize_latent`` (float32
arithmetic, TFLite's QUANTIZE rounding: half away from zero).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import InvalidInputError

# The TFLite metadata entry that makes a split decoder self-describing (export writes it, the C generator
# reads it): the radix as ASCII digits. The grid is the first FULLY_CONNECTED input's own quantization.
METADATA_NAME = "vae_edge_latent_split_radix"


def quantize_float32(x: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """TFLite's QUANTIZE of float32 values to int8: round half away from zero of x / scale (float32), plus the
    zero point, clamped; as the generated C's ``quantize_input``."""
    v = (np.asarray(x, np.float32) / np.float32(scale)).astype(np.float64)
    v = np.clip(np.nan_to_num(v, nan=0.0), -1000.0, 1000.0)
    return np.clip(np.trunc(v + np.copysign(0.5, v)) + zero_point, -128, 127).astype(np.int8)


@dataclass(frozen=True)
class LatentSplit:
    """A split latent's encoding: ``radix`` (a power of two, so ``radix * (z - hi)`` rounds nothing) and the
    int8 grid (``scale``, ``zero_point``) both halves share."""

    radix: int
    scale: float
    zero_point: int

    def __post_init__(self):
        r = self.radix
        if not isinstance(r, int) or isinstance(r, bool) or r < 2 or r & (r - 1):
            raise InvalidInputError(f"latent split radix must be a power of two >= 2, got {r!r}; re-export")
        if not (0 < self.scale < float("inf")):
            raise InvalidInputError(f"latent split scale must be positive and finite, got {self.scale!r}")
        if not (-128 <= self.zero_point <= 127):
            raise InvalidInputError(f"latent split zero point must be an int8, got {self.zero_point!r}")

    @classmethod
    def from_json(cls, data: dict) -> LatentSplit:
        return cls(int(data["radix"]), float(data["scale"]), int(data["zero_point"]))

    def to_json(self) -> dict:
        return {"radix": self.radix, "scale": self.scale, "zero_point": self.zero_point}

    def _halves(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        z = np.asarray(z, np.float32)
        q_hi = quantize_float32(z, self.scale, self.zero_point)
        hi = (q_hi.astype(np.int32) - self.zero_point).astype(np.float32) * np.float32(self.scale)
        return q_hi, (z - hi) * np.float32(self.radix)

    def quantize(self, z: np.ndarray) -> np.ndarray:
        """(n, d) float latents -> (n, 2d) int8: the d grid points, then the d remainders."""
        q_hi, lo = self._halves(z)
        return np.concatenate([q_hi, quantize_float32(lo, self.scale, self.zero_point)], axis=-1)

    def encode(self, z: np.ndarray) -> np.ndarray:
        """(n, d) float latents -> (n, 2d) float32 for a float-input graph whose QUANTIZE gives :meth:`quantize`."""
        q_hi, lo = self._halves(z)
        hi = (q_hi.astype(np.int32) - self.zero_point).astype(np.float32) * np.float32(self.scale)
        return np.concatenate([hi, lo], axis=-1).astype(np.float32)

    def decode(self, q: np.ndarray) -> np.ndarray:
        """(n, 2d) int8 -> (n, d): the latent the decoder sees, hi + lo / radix."""
        q = np.asarray(q, np.int32) - self.zero_point
        d = q.shape[-1] // 2
        return (q[..., :d] + q[..., d:] / self.radix) * self.scale
