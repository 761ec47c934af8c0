"""Microcontroller target profiles (``targets.json``) and the fit / latency estimate of a graph on them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .graph import Graph

TARGETS_FILE = Path(__file__).with_name("targets.json")
APP_HEADROOM_BYTES = 16 * 1024  # RAM left for the application beside the decoder, for the "fits" verdict


def load_targets(path: Path = TARGETS_FILE) -> dict:
    return json.loads(Path(path).read_text())["targets"]


def estimate_latency(graph: Graph, layer_macs: list[tuple[str, int]], target: dict) -> dict:
    """Cycles per op from its MACs (or, for element-wise ops, its output bytes) and the target's rates."""
    cycles = []
    for op, (kind, macs) in zip(graph.ops, layer_macs, strict=True):
        if macs:
            rate = target["macs_per_cycle"].get(kind, target["macs_per_cycle"]["default"])
            cycles.append(macs / rate)
        else:
            per_byte = target["elementwise_cycles_per_byte"].get(
                kind, target["elementwise_cycles_per_byte"]["default"]
            )
            cycles.append(per_byte * int(np.prod(graph.tensors[op.outputs[0]].shape)))
    total = float(sum(cycles))
    return {
        "cycles": total,
        "ms": total / target["clock_hz"] * 1e3,
        "per_op_ms": [c / target["clock_hz"] * 1e3 for c in cycles],
    }


def fits(ram_needed: int, flash_needed: int, target: dict) -> dict:
    return {
        "fits": ram_needed + APP_HEADROOM_BYTES <= target["ram_bytes"]
        and flash_needed <= target["flash_bytes"],
        "ram_fits": ram_needed + APP_HEADROOM_BYTES <= target["ram_bytes"],
        "flash_fits": flash_needed <= target["flash_bytes"],
        "ram_free_bytes": target["ram_bytes"] - ram_needed,
    }
