"""A memory planner for the int8 graph: tensor lifetimes, per-op scratch, and a greedy offset plan.

Two plans per graph:
- ``as_graph``: every op's output is its own buffer and TRANSPOSE_CONV holds its whole-output int32 scratch —
  what TFLite Micro's greedy planner does (compare with its measured arena head);
- ``fused``: what hand-written firmware does with the same arithmetic: RESHAPE is a view, PAD is folded into the
  next convolution (out-of-image taps read the zero point), DEPTH_TO_SPACE is folded into the convolution before
  it (each output channel is written straight to its sub-pixel position), LOGISTIC runs in place.

Placement is TFLM's greedy rule: largest buffer first, each at the lowest offset that overlaps no placed buffer
alive at the same time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .graph import Graph

ALIGN = 16


@dataclass
class Buffer:
    name: str
    size: int
    first: int  # op index that writes it (-1: graph input)
    last: int  # last op index that reads it
    offset: int = 0


def _align(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


def scratch_bytes(graph: Graph, op) -> int:
    if op.kind == "TRANSPOSE_CONV":
        return int(np.prod(graph.tensors[op.outputs[0]].shape)) * 4  # int32 accumulator per output element
    return 0


def buffers_for(graph: Graph, fused: bool) -> list[Buffer]:
    n_ops = len(graph.ops)
    alias: dict[int, int] = {}  # tensor -> tensor whose buffer it is
    if fused:
        for op in graph.ops:
            if op.kind in ("RESHAPE", "LOGISTIC", "PAD"):
                alias[op.outputs[0]] = op.inputs[0]  # a view, in place, or read with implicit padding
            elif op.kind == "DEPTH_TO_SPACE":
                alias[op.inputs[0]] = op.outputs[0]  # the conv writes straight into the depth-to-space layout

    def root(t: int) -> int:
        while t in alias:
            t = alias[t]
        return t

    life: dict[int, list[int]] = {}
    for t in graph.inputs:
        life[root(t)] = [-1, -1]
    for k, op in enumerate(graph.ops):
        if fused and op.kind in ("PAD", "RESHAPE", "DEPTH_TO_SPACE"):
            continue  # no buffer of its own and no work of its own
        for t in op.inputs:
            if t < 0 or graph.tensors[t].is_constant:
                continue
            r = root(t)
            life.setdefault(r, [k, k])[1] = k
        for t in op.outputs:
            r = root(t)
            life.setdefault(r, [k, k])
            life[r][1] = max(life[r][1], k)
    for t in graph.outputs:
        life[root(t)][1] = n_ops
    bufs = [
        Buffer(graph.tensors[t].name or f"t{t}", _align(graph.tensors[t].nbytes), a, b)
        for t, (a, b) in life.items()
    ]
    for k, op in enumerate(graph.ops):
        s = scratch_bytes(graph, op)
        if s:
            bufs.append(Buffer(f"scratch:{op.kind}#{k}", _align(s), k, k))
    return bufs


def greedy_plan(bufs: list[Buffer]) -> int:
    """Place buffers (largest first) at the lowest non-conflicting offset; return the arena size."""
    placed: list[Buffer] = []
    for b in sorted(bufs, key=lambda b: (-b.size, b.first)):
        overlapping = sorted(
            (p for p in placed if not (p.last < b.first or b.last < p.first)), key=lambda p: p.offset
        )
        offset = 0
        for p in overlapping:
            if offset + b.size <= p.offset:
                break
            offset = max(offset, p.offset + p.size)
        b.offset = offset
        placed.append(b)
    return max((b.offset + b.size for b in placed), default=0)


def largest_live_set(bufs: list[Buffer], n_ops: int) -> int:
    """The lower bound any plan must meet: the most bytes alive at one op."""
    return max((sum(b.size for b in bufs if b.first <= k <= b.last) for k in range(-1, n_ops + 1)), default=0)


def plan(graph: Graph, fused: bool) -> dict:
    bufs = buffers_for(graph, fused)
    arena = greedy_plan(bufs)
    return {
        "arena_bytes": arena,
        "largest_live_set_bytes": largest_live_set(bufs, len(graph.ops)),
        "buffers": [
            {"name": b.name, "bytes": b.size, "first_op": b.first, "last_op": b.last, "offset": b.offset}
            for b in sorted(bufs, key=lambda b: b.offset)
        ],
    }


def parameter_bytes(graph: Graph) -> int:
    """Bytes of weights and biases (what a hand-written firmware keeps in flash)."""
    return sum(
        t.nbytes
        for t in graph.tensors
        if t.is_constant and t.dtype in (np.int8, np.int32) and t.data.size > 8
    )
