"""The lowered form the C is emitted from: a FULLY_CONNECTED layer read as an image, then a chain of *phase
convolutions* (see the package docstring). Built by :func:`firmware_sim.codegen.lowering.lower`, evaluated in
numpy by :func:`firmware_sim.codegen.lowering.run_plan`, written as C by :mod:`firmware_sim.codegen.emit`."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from runtime.vocab import Graph as GraphKind

GRAPHS = (GraphKind.TRANSPOSE.value, GraphKind.SUBPIXEL.value)
# The built-in decoders' image; the generator takes any (H, W, C) output (DecoderPlan.out_shape).
IMAGE_SHAPE = (28, 28, 1)
# Standalone int8 -> int8 activations: each is a table of its 256 outputs (firmware_sim.reference computes it with
# TFLite Micro's arithmetic), applied to the output of the layer before it.
ELEMENTWISE_OPS = ("LOGISTIC", "TANH", "LEAKY_RELU", "RELU", "RELU6")
SUPPORTED_OPS = (
    "FULLY_CONNECTED",
    "RESHAPE",
    "PAD",
    "CONV_2D",
    "TRANSPOSE_CONV",
    "DEPTH_TO_SPACE",
    *ELEMENTWISE_OPS,
)


@dataclass(frozen=True)
class DenseLayer:
    """FULLY_CONNECTED (per-tensor) whose output is read as an image of ``out_shape`` (H, W, C)."""

    weights: np.ndarray  # (N, D) int8
    bias: np.ndarray  # (N,) int64
    in_zp: int
    mult: int
    shift: int
    out_zp: int
    lo: int
    hi: int
    out_shape: tuple[int, int, int]
    # The standalone activations after it as one table: output value of requantized value q at q + 128 (int8),
    # or None. The values the next layer reads are the table's (its input zero point is theirs).
    lut: np.ndarray | None = None

    @property
    def real_macs(self) -> int:
        return int(self.weights.size)


@dataclass(frozen=True)
class Phase:
    taps: tuple[tuple[int, int], ...]  # (dy, dx) in input pixels, relative to (Q·Y, Q·X)
    weights: np.ndarray  # (OC, ntaps, IC) int8
    bias: np.ndarray  # (OC,) int64
    mult: np.ndarray  # (OC,) int64
    shift: np.ndarray  # (OC,) int64


@dataclass(frozen=True)
class ConvLayer:
    """out[P·Y+py, P·X+px, c] = requantize(bias + Σ_taps Σ_i w · (in[Q·Y+dy, Q·X+dx, i] − in_zp))."""

    kind: str  # the TFLite op it came from, for reports
    in_shape: tuple[int, int, int]
    in_zp: int
    out_shape: tuple[int, int, int]
    P: int
    Q: int
    phases: tuple[Phase, ...]  # index py·P + px
    out_zp: int
    lo: int
    hi: int
    lut: np.ndarray | None = None  # as DenseLayer.lut

    def phase_pixels(self, py: int, px: int) -> tuple[int, int]:
        oh, ow, _ = self.out_shape
        return (oh - py + self.P - 1) // self.P, (ow - px + self.P - 1) // self.P

    @property
    def real_macs(self) -> int:
        """Products of a real (stored) weight and an input pixel inside the image."""
        ih, iw, ic = self.in_shape
        total = 0
        for p, ph in enumerate(self.phases):
            ny, nx = self.phase_pixels(p // self.P, p % self.P)
            ys, xs = np.arange(ny) * self.Q, np.arange(nx) * self.Q
            for dy, dx in ph.taps:
                inside = int(np.count_nonzero((ys + dy >= 0) & (ys + dy < ih))) * int(
                    np.count_nonzero((xs + dx >= 0) & (xs + dx < iw))
                )
                total += inside * ic * ph.weights.shape[0]
        return total

    @property
    def stored_weights(self) -> int:
        return int(sum(ph.weights.size for ph in self.phases))


@dataclass(frozen=True)
class DecoderPlan:
    name: str
    graph_kind: str
    source: str
    source_sha256: str
    input_size: int  # int8 inputs per decode: latent_dim, or 2 * latent_dim for a split latent
    latent_scale: float
    latent_zp: int
    logits_scale: float
    logits_zp: int
    dense: DenseLayer
    convs: tuple[ConvLayer, ...]
    # 1: one int8 per latent dimension; a power of two R >= 2: the split latent (runtime/latent.py), the
    # grid point then R times the remainder, both on (latent_scale, latent_zp).
    latent_split: int = 1
    # The standalone activation that ends the graph (LOGISTIC, TANH, ...), "" when the output is a layer's own
    # (a sigmoid decoder's logits): what the pixel table maps to grey levels.
    output_op: str = ""

    @property
    def latent_dim(self) -> int:
        return self.input_size // 2 if self.latent_split > 1 else self.input_size

    @property
    def real_macs(self) -> int:
        return self.dense.real_macs + sum(c.real_macs for c in self.convs)

    @property
    def out_shape(self) -> tuple[int, int, int]:
        """(H, W, C) of the int8 logits one decode writes, row-major (NHWC without the batch)."""
        return self.convs[-1].out_shape

    @property
    def out_size(self) -> int:
        h, w, c = self.out_shape
        return h * w * c
