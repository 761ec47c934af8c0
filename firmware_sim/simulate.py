"""What ``python -m firmware_sim`` computes for one model: its int8 decoders run in TFLite Micro (smallest arena
and its breakdown), the numpy integer reference checked bit-exact against TFLM on random int8 latents, the
memory plans, and fit and latency per target.

    from firmware_sim.simulate import simulate_model
    from firmware_sim.targets import load_targets
    record = simulate_model(export_dir="artifacts/vae2d/export", name="vae2d", latents=100, seed=0,
                            targets=load_targets())
    record["bit_exact_vs_tflm"], record["planned_ram_bytes"]

A record is what reports/firmware.json holds per model. :func:`integer_reference` is the numpy reference of one
graph, proven on one latent (tools/fuzz runs it on mutated files).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from runtime.errors import VaeEdgeError
from runtime.vocab import IO, Format, Graph, Precision, Role

from .report import DEPLOYMENT_GRAPH, RAM_GOAL_BYTES


def integer_reference(path: Path, graph, probe: np.ndarray):
    """The numpy integer reference of ``graph``, proven on one latent; a graph it cannot run (corrupt or
    edited: tensor shapes that do not chain, out-of-range indices) is one VaeEdgeError naming the file."""
    from .reference import IntegerReference

    try:
        reference = IntegerReference(graph)
        reference.run(probe)
    except VaeEdgeError:
        raise
    except (
        ValueError,
        IndexError,
        KeyError,
        TypeError,
        ZeroDivisionError,
        OverflowError,
        AttributeError,
    ) as exc:
        raise VaeEdgeError(
            f"{path}: the integer reference cannot run this graph ({type(exc).__name__}: "
            f"{' '.join(str(exc).split())[:160]}); the file is corrupt or edited: re-export it"
        ) from None
    return reference


def simulate_graph(path: Path, latents: np.ndarray, targets: dict) -> dict:
    from runtime.backends import TFLiteModel

    from .graph import load_graph
    from .planner import parameter_bytes, plan
    from .targets import estimate_latency, fits
    from .tflm import TflmModel, smallest_arena

    model_bytes = path.read_bytes()
    graph = load_graph(path)
    reference = integer_reference(path, graph, latents[0])
    arena = smallest_arena(model_bytes, latents[0])
    tflm = TflmModel(model_bytes, arena)
    breakdown = tflm.allocations()
    litert = TFLiteModel(path, num_threads=1, delegates=False)
    mismatched, max_lsb, litert_pixels, litert_max = 0, 0, 0, 0
    out_values = int(np.prod(graph.tensors[graph.outputs[0]].shape))
    for z in latents:
        ours, micro = reference.run(z), tflm.run(z)
        diff = np.abs(ours.astype(np.int32) - micro.astype(np.int32))
        if diff.max() > 0:
            mismatched += 1
            max_lsb = max(max_lsb, int(diff.max()))
        lite = litert.run_raw([z])[0]
        ldiff = np.abs(lite.astype(np.int32) - micro.astype(np.int32))
        litert_pixels += int(np.count_nonzero(ldiff))
        litert_max = max(litert_max, int(ldiff.max()))
    _, trace = reference.run(latents[0], trace=True)
    plans = {"as_graph": plan(graph, fused=False), "fused": plan(graph, fused=True)}
    flash = graph.size_bytes
    per_target = {}
    for name, t in targets.items():
        lat = estimate_latency(graph, [(layer.op, layer.macs) for layer in trace], t)
        per_target[name] = {
            **fits(plans["fused"]["arena_bytes"], flash, t),
            "latency_ms": lat["ms"],
            "per_op_ms": lat["per_op_ms"],
            "tflm_arena_fits": arena + 16 * 1024 <= t["ram_bytes"],
        }
    return {
        "path": path.name,
        "ops": [op.kind for op in graph.ops],
        "tflm_arena_bytes": arena,
        "tflm_arena_breakdown": breakdown,
        "bit_exact_vs_tflm": mismatched == 0,
        "latents_checked": len(latents),
        "mismatched_latents": mismatched,
        "max_lsb_diff_vs_tflm": max_lsb,
        "litert_vs_tflm": {
            "differing_pixel_fraction": litert_pixels / (len(latents) * out_values),
            "max_lsb": litert_max,
        },
        "plans": {k: {kk: vv for kk, vv in v.items()} for k, v in plans.items()},
        "planned_ram_bytes": plans["fused"]["arena_bytes"],
        "flash_bytes": flash,
        "parameter_bytes": parameter_bytes(graph),
        "macs": int(sum(layer.macs for layer in trace)),
        "layers": [
            {
                "op": layer.op,
                "inputs": layer.inputs,
                "output": layer.output,
                "macs": layer.macs,
                "computes": layer.note,
            }
            for layer in trace
        ],
        "targets": per_target,
    }


def simulate_model(*, export_dir: str | Path, name: str, latents: int, seed: int, targets: dict) -> dict:
    """Simulate the full-int8 batch-1 decoder graphs of one export folder (both of the project's models; the one
    graph of a decoder brought with python -m export --decoder) on ``latents`` random int8 latents (seeded by
    ``seed``) for ``targets`` (firmware_sim.targets); the record reports/firmware.json holds. The deployment
    graph is the sub-pixel one where the export has it."""
    from runtime.errors import VaeEdgeError
    from runtime.manifest import load_manifest
    from runtime.models import Decoder

    manifest = load_manifest(export_dir)
    rng = np.random.default_rng(seed)
    exported = [
        g
        for g in (Graph.TRANSPOSE, Graph.SUBPIXEL)
        if manifest.find(
            role=Role.DECODER, format=Format.TFLITE, precision=Precision.INT8, io=IO.INT8, batch=1, graph=g
        )
    ]
    if not exported:
        raise VaeEdgeError(f"{export_dir} has no full-int8 batch-1 TFLite decoder to simulate; re-export it")
    graphs = {}
    z = None
    for graph in exported:
        entry = manifest.select(
            role=Role.DECODER,
            format=Format.TFLITE,
            precision=Precision.INT8,
            io=IO.INT8,
            batch=1,
            graph=graph,
        )
        if z is None:  # random int8 inputs: latent_dim of them, or 2 * latent_dim for a split latent
            z = rng.integers(-128, 128, (latents, 1, entry["inputs"][0]["shape"][1])).astype(np.int8)
        # The runtime's load checks the file's sha256 and its tensors against the manifest, and
        # LiteRT verifies the flatbuffer, before TFLite Micro (which does not) reads the bytes.
        graphs[graph] = simulate_graph(Decoder(manifest, entry).model.path, z, targets)
        g = graphs[graph]
        print(
            f"{name}/{graph}: TFLM arena {g['tflm_arena_bytes']} B, fused plan {g['planned_ram_bytes']} B, "
            f"bit-exact {g['bit_exact_vs_tflm']} on {g['latents_checked']} latents",
            file=sys.stderr,
        )
    deployment = DEPLOYMENT_GRAPH if DEPLOYMENT_GRAPH in graphs else exported[0]
    dep = graphs[deployment]
    return {
        "model": name,
        "deployment_graph": str(deployment),
        "tflm_arena_bytes": dep["tflm_arena_bytes"],
        "planned_ram_bytes": dep["planned_ram_bytes"],
        "flash_bytes": dep["flash_bytes"],
        "bit_exact_vs_tflm": all(g["bit_exact_vs_tflm"] for g in graphs.values()),
        "latents_checked": latents,
        "ram_goal_bytes": RAM_GOAL_BYTES,
        "ram_goal_met": dep["planned_ram_bytes"] <= RAM_GOAL_BYTES,
        "targets": {t: {k: v for k, v in r.items() if k != "per_op_ms"} for t, r in dep["targets"].items()},
        "graphs": graphs,
    }
