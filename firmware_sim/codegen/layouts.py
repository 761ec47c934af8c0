"""The weight layouts each instruction set's kernels read (firmware_sim/codegen/kernels/), and which layers
the SIMD kernels take. The portable and Cortex-M DSP kernels read :func:`pack_weights`; the 128-bit SIMD
build its own copy, :func:`simd_weights` (int16, in blocks of 16 output channels, so that two pixels'
activation pairs are broadcast against sixteen channels with no horizontal sums); the WebAssembly relaxed
SIMD build :func:`relaxed_weights` (int8, quads of inputs)."""

from __future__ import annotations

import numpy as np

from .plan import ConvLayer, DecoderPlan


def pack_weights(w: np.ndarray) -> np.ndarray:
    """(OC, ntaps, IC) int8 -> uint32 words: 4 weights a word (byte j = bits 8j..), channel pairs interleaved
    word by word, an odd last channel's words alone (the layout mac_2x2 / mac_1x2 read)."""
    oc = w.shape[0]
    words = np.ascontiguousarray(w.reshape(oc, -1)).view(np.uint8).astype(np.uint32)
    words = words.reshape(oc, -1, 4)
    words = words[..., 0] | (words[..., 1] << 8) | (words[..., 2] << 16) | (words[..., 3] << 24)
    pairs = oc - oc % 2
    out = [words[:pairs].reshape(pairs // 2, 2, -1).transpose(0, 2, 1).reshape(-1)] if pairs else []
    if oc % 2:
        out.append(words[-1])
    return np.concatenate(out).astype(np.uint32)


SIMD_TAPS_MAX = 64  # conv_row_simd's per-phase tap tables


def simd_eligible(c: ConvLayer) -> bool:
    """Whether conv_row_simd (the 128-bit SIMD builds' kernel) takes this layer: 8-input vectors, few taps."""
    return c.in_shape[2] % 8 == 0 and max(len(ph.taps) for ph in c.phases) <= SIMD_TAPS_MAX


def simd_weights(c: ConvLayer) -> tuple[np.ndarray, list[int]]:
    """conv_row_simd's int16 weights and per-phase offsets: per phase, per block of 16 output channels
    [tap][input pair][channel][2], then each channel left over [tap][input]."""
    ic = c.in_shape[2]
    parts, starts, offset = [], [], 0
    for ph in c.phases:
        w = ph.weights.astype(np.int16)  # (OC, ntaps, IC)
        oc, nt, _ = w.shape
        n16 = oc - oc % 16
        blocks = w[:n16].reshape(n16 // 16, 16, nt, ic // 2, 2).transpose(0, 2, 3, 1, 4)
        parts += [blocks.ravel(), w[n16:].ravel()]
        starts.append(offset)
        offset += w.size
    return np.concatenate(parts), starts


def uniform_right_shift(c: ConvLayer) -> int:
    """The layer's one right shift when every channel of every phase has it, else -1 (conv_row_simd's right)."""
    shifts = np.concatenate([ph.shift for ph in c.phases])
    return int(-shifts[0]) if shifts[0] <= 0 and np.all(shifts == shifts[0]) else -1


RELAXED_QUADS_MAX = 512  # conv_row_relaxed's per-pixel list of input groups with a high half (as in the C)


def relaxed_eligible(plan: DecoderPlan) -> bool:
    """Whether conv_row_relaxed (WebAssembly relaxed SIMD) takes every layer: 16-input vectors, few taps, and
    inputs u = value - input zero point in [0, 255] (low 7 bits and high bit as two byte planes), no standalone
    activation (a table). All layers or none: the relaxed build keeps every activation in those planes."""
    producers = [(plan.dense.lo, plan.dense.hi)] + [(c.lo, c.hi) for c in plan.convs[:-1]]
    if plan.dense.lut is not None or any(c.lut is not None for c in plan.convs):
        return False  # the relaxed kernels write their byte planes themselves; a table pass needs int16 rows
    return all(
        c.in_shape[2] % 16 == 0
        and max(len(ph.taps) for ph in c.phases) <= SIMD_TAPS_MAX
        and max(len(ph.taps) for ph in c.phases) * c.in_shape[2] // 4 <= RELAXED_QUADS_MAX
        and lo - c.in_zp >= 0
        and hi - c.in_zp <= 255
        for c, (lo, hi) in zip(plan.convs, producers, strict=True)
    )


def relaxed_weights(c: ConvLayer) -> tuple[np.ndarray, list[int]]:
    """conv_row_relaxed's int8 weights and per-phase offsets: per phase, per block of 16 output channels
    [tap][input quad][channel][4], then each channel left over [tap][input]."""
    parts, starts, offset = [], [], 0
    for ph in c.phases:
        w = ph.weights  # (OC, ntaps, IC) int8
        oc, nt, ic = w.shape
        n16 = oc - oc % 16
        blocks = w[:n16].reshape(n16 // 16, 16, nt, ic // 4, 4).transpose(0, 2, 3, 1, 4)
        parts += [blocks.ravel(), w[n16:].ravel()]
        starts.append(offset)
        offset += w.size
    return np.concatenate(parts).astype(np.int8), starts


def derived_weights(weights: np.ndarray, radix: int) -> np.ndarray:
    """weights / radix rounded half away from zero (kernels/dense_row.h's derived_weight)."""
    w = np.asarray(weights, np.int32)
    return (np.sign(w) * ((np.abs(w) + radix // 2) // radix)).astype(np.int32)


def stored_dense_weights(weights: np.ndarray, radix: int) -> tuple[np.ndarray, int]:
    """The FULLY_CONNECTED weights (outputs, inputs) the C stores, and dense_layer_t's derived_shift: for a split
    latent (``radix`` > 1) whose remainders' weights are exactly derived_weights of the grid points' (export
    makes them so), only the grid points' half and log2(radix); else all of them and 0."""
    w = np.asarray(weights)
    if radix > 1 and w.shape[1] % 2 == 0:
        h = w.shape[1] // 2
        if np.array_equal(w[:, h:].astype(np.int32), derived_weights(w[:, :h], radix)):
            return np.ascontiguousarray(w[:, :h]), int(radix).bit_length() - 1
    return w, 0


def dense_pairs(weights: np.ndarray) -> np.ndarray:
    """FULLY_CONNECTED weights (outputs, inputs) in dense_sum4's layout (kernels/dense_row.h): per group of four
    outputs, per pair of inputs, the four outputs' two weights as int16 (eight lanes for one i32x4.dot_i16x8_s).
    An odd last input is paired with a zero weight; outputs past a multiple of four are left out (dense_row
    takes the vector path only where a row holds a multiple of four values)."""
    w = np.asarray(weights, dtype=np.int16)
    n, d = w.shape
    w = np.pad(w[: n - n % 4], ((0, 0), (0, d % 2)))  # (4g, 2p)
    return w.reshape(-1, 4, w.shape[1] // 2, 2).transpose(0, 2, 1, 3).reshape(-1)
