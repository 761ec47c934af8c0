"""Simulate deploying the int8 decoders on microcontrollers, with TensorFlow Lite Micro as the reference.

    python -m firmware_sim --model all --target all --artifacts artifacts      # make simulate
    python -m firmware_sim --model vae2d --target cortex-m4 --latents 1000

For each model's full-int8 batch-1 decoders (transposed and sub-pixel graphs, from the export manifest): run
them in the real TFLite Micro interpreter and find the smallest arena by bisection (with its breakdown); run the
numpy integer reference on the same random int8 latents and demand bit-exactness with TFLM; plan the memory
(TFLM-like and fused); estimate fit and latency on each target. Writes reports/firmware.{json,md}; exits 1 if the
reference and TFLM disagree on any latent.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from runtime.cli import cli_main, nonnegative_int, parser, positive_int
from runtime.errors import VaeEdgeError
from runtime.fileio import ensure_writable_dir, write_json_atomic, write_text_atomic
from runtime.vocab import ALL, IO, VAE_MODELS, Format, Graph, Precision, Role

from .report import DEPLOYMENT_GRAPH, RAM_GOAL_BYTES, load_measured, markdown


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from .targets import load_targets

    p = parser("python -m firmware_sim", __doc__)
    p.add_argument("--model", choices=(*VAE_MODELS, ALL), default=ALL)
    p.add_argument("--target", choices=(*load_targets(), ALL), default=ALL)
    p.add_argument("--artifacts", default="artifacts")
    p.add_argument(
        "--latents",
        type=positive_int,
        default=1000,
        help="random int8 latents checked per graph (default 1000)",
    )
    p.add_argument("--seed", type=nonnegative_int, default=0)
    p.add_argument("--reports", default="reports")
    return p.parse_args(argv)


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
            "differing_pixel_fraction": litert_pixels / (len(latents) * 784),
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


@cli_main
def main(args: argparse.Namespace) -> int:
    from runtime.manifest import load_manifest
    from runtime.models import Decoder

    from .targets import load_targets

    targets = load_targets()
    if args.target != ALL:
        targets = {args.target: targets[args.target]}
    names = VAE_MODELS if args.model == ALL else (args.model,)
    reports = ensure_writable_dir(args.reports)
    records = []
    for name in names:
        manifest = load_manifest(Path(args.artifacts) / name / "export")
        rng = np.random.default_rng(args.seed)
        latents = rng.integers(-128, 128, (args.latents, 1, manifest.latent_dim)).astype(np.int8)
        graphs = {}
        for graph in (Graph.TRANSPOSE, Graph.SUBPIXEL):
            entry = manifest.select(
                role=Role.DECODER,
                format=Format.TFLITE,
                precision=Precision.INT8,
                io=IO.INT8,
                batch=1,
                graph=graph,
            )
            # The runtime's load checks the file's sha256 and its tensors against the manifest, and
            # LiteRT verifies the flatbuffer, before TFLite Micro (which does not) reads the bytes.
            graphs[graph] = simulate_graph(Decoder(manifest, entry).model.path, latents, targets)
            g = graphs[graph]
            print(
                f"{name}/{graph}: TFLM arena {g['tflm_arena_bytes']} B, fused plan {g['planned_ram_bytes']} B, "
                f"bit-exact {g['bit_exact_vs_tflm']} on {g['latents_checked']} latents",
                file=sys.stderr,
            )
        dep = graphs[DEPLOYMENT_GRAPH]
        records.append(
            {
                "model": name,
                "deployment_graph": DEPLOYMENT_GRAPH,
                "tflm_arena_bytes": dep["tflm_arena_bytes"],
                "planned_ram_bytes": dep["planned_ram_bytes"],
                "flash_bytes": dep["flash_bytes"],
                "bit_exact_vs_tflm": all(g["bit_exact_vs_tflm"] for g in graphs.values()),
                "latents_checked": args.latents,
                "ram_goal_bytes": RAM_GOAL_BYTES,
                "ram_goal_met": dep["planned_ram_bytes"] <= RAM_GOAL_BYTES,
                "targets": {
                    t: {k: v for k, v in r.items() if k != "per_op_ms"} for t, r in dep["targets"].items()
                },
                "graphs": graphs,
            }
        )
    measured = load_measured(reports)
    write_json_atomic(reports / "firmware.json", {"targets": targets, "records": records})
    write_text_atomic(reports / "firmware.md", markdown(records, targets, measured))
    print(f"firmware_sim -> {reports / 'firmware.md'}", file=sys.stderr)
    return 0 if all(r["bit_exact_vs_tflm"] for r in records) else 1


if __name__ == "__main__":
    sys.exit(main(parse_args()))
