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

from runtime.errors import VaeEdgeError
from runtime.fileio import ensure_writable_dir, write_json_atomic, write_text_atomic

VAE_MODELS = ("vae2d", "vae3d", "vae2d_corr")
DEPLOYMENT_GRAPH = "subpixel"  # the graph whose C array export writes
RAM_GOAL_BYTES = 48 * 1024


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from .targets import load_targets

    p = argparse.ArgumentParser(
        prog="python -m firmware_sim",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    p.add_argument("--model", choices=(*VAE_MODELS, "all"), default="all")
    p.add_argument("--target", choices=(*load_targets(), "all"), default="all")
    p.add_argument("--artifacts", default="artifacts")
    p.add_argument(
        "--latents", type=int, default=1000, help="random int8 latents checked per graph (default 1000)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--reports", default="reports")
    return p.parse_args(argv)


def simulate_graph(path: Path, latents: np.ndarray, targets: dict) -> dict:
    from runtime.backends import TFLiteModel

    from .graph import load_graph
    from .planner import parameter_bytes, plan
    from .reference import IntegerReference
    from .targets import estimate_latency, fits
    from .tflm import TflmModel, smallest_arena

    model_bytes = path.read_bytes()
    graph = load_graph(path)
    reference = IntegerReference(graph)
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


def main(args: argparse.Namespace) -> int:
    from runtime.manifest import load_manifest

    from .targets import load_targets

    try:
        targets = load_targets()
        if args.target != "all":
            targets = {args.target: targets[args.target]}
        names = VAE_MODELS if args.model == "all" else (args.model,)
        reports = ensure_writable_dir(args.reports)
        records = []
        for name in names:
            manifest = load_manifest(Path(args.artifacts) / name / "export")
            rng = np.random.default_rng(args.seed)
            latents = rng.integers(-128, 128, (args.latents, 1, manifest.latent_dim)).astype(np.int8)
            graphs = {}
            for graph in ("transpose", "subpixel"):
                entry = manifest.select(
                    role="decoder", format="tflite", precision="int8", io="int8", batch=1, graph=graph
                )
                graphs[graph] = simulate_graph(manifest.verify(entry), latents, targets)
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
    except VaeEdgeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0 if all(r["bit_exact_vs_tflm"] for r in records) else 1


MEASURED_TARGET = "cortex-m4"


def load_measured(reports: Path) -> dict[tuple[str, str], dict]:
    """The generated-C measurements of ``make firmware`` (reports/firmware_c.json), by (model, graph), if any."""
    import json

    path = Path(reports) / "firmware_c.json"
    if not path.is_file():
        return {}
    try:
        return {(r["model"], r["graph"]): r for r in json.loads(path.read_text())["records"]}
    except (json.JSONDecodeError, KeyError, TypeError):
        return {}


def markdown(records: list[dict], targets: dict, measured: dict | None = None) -> str:
    measured = measured or {}
    kb = 1024
    lines = [
        "# The int8 decoders on microcontrollers",
        "",
        "TFLite Micro (PyPI `tflite-micro`) is the reference: smallest arena by bisection, and the numpy integer "
        "reference must match it bit for bit on random int8 latents. RAM plans: `as_graph` is what TFLM's planner "
        "needs for the graph as exported; `fused` folds PAD and DEPTH_TO_SPACE into the convolutions, runs "
        "RESHAPE as a view and LOGISTIC in place (same arithmetic, fewer buffers).",
        "",
        "| model | graph | TFLM arena | TFLM head / tail | plan as graph | fused plan | flash (.tflite) | MACs | "
        "bit-exact vs TFLM | LiteRT vs TFLM |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in records:
        for gname, g in r["graphs"].items():
            b = g["tflm_arena_breakdown"]
            lines.append(
                f"| {r['model']} | {gname} | {g['tflm_arena_bytes'] / kb:.1f} KB | {b.get('head_bytes', 0) / kb:.1f} / "
                f"{b.get('tail_bytes', 0) / kb:.1f} KB | {g['plans']['as_graph']['arena_bytes'] / kb:.1f} KB | "
                f"{g['planned_ram_bytes'] / kb:.1f} KB | {g['flash_bytes'] / kb:.1f} KB | {g['macs'] / 1e6:.2f} M | "
                f"{'yes' if g['bit_exact_vs_tflm'] else 'NO'} ({g['latents_checked']} latents) | "
                f"{g['litert_vs_tflm']['differing_pixel_fraction']:.2%} of pixels, ≤ {g['litert_vs_tflm']['max_lsb']} LSB |"
            )
    lines += ["", f"RAM goal for the deployment ({DEPLOYMENT_GRAPH}) plan: ≤ {RAM_GOAL_BYTES // kb} KB.", ""]
    for r in records:
        lines.append(
            f"- {r['model']}: fused plan {r['planned_ram_bytes'] / kb:.1f} KB "
            f"({'met' if r['ram_goal_met'] else 'NOT met'}); TFLM needs {r['tflm_arena_bytes'] / kb:.1f} KB."
        )
    lines += [
        "",
        "## Targets",
        "",
        "Fit = fused-plan RAM + 16 KB for the application ≤ the part's RAM, and the .tflite ≤ its flash. Latency is "
        "an estimate from each layer's MACs and the MACs-per-cycle figures in `firmware_sim/targets.json` "
        "(engineering estimates; their basis is stated there and below).",
        "",
        "| model | target | fits | RAM free | TFLM arena fits too | est. latency |",
        "|---|---|---|---|---|---|",
    ]
    for r in records:
        for t, v in r["targets"].items():
            m = measured.get((r["model"], DEPLOYMENT_GRAPH)) if t == MEASURED_TARGET else None
            latency = (
                f"{m['latency_ms_at_80mhz']:.1f} ms (measured: {m['instructions_per_decode'] / 1e6:.2f} M instructions, "
                f"CPI {m['assumed_cpi']})"
                if m
                else f"{v['latency_ms']:.1f} ms"
            )
            lines.append(
                f"| {r['model']} | {t} | {'yes' if v['fits'] else 'no'} | {v['ram_free_bytes'] / kb:.1f} KB | "
                f"{'yes' if v['tflm_arena_fits'] else 'no'} | {latency} |"
            )
    if measured:
        lines += [
            "",
            f"The {MEASURED_TARGET} latency is measured where `make firmware` ran (reports/firmware_c.md): the "
            "generated C decoder's instructions per decode on QEMU's mps2-an386, times the stated cycles per "
            "instruction, at 80 MHz; the other figures remain estimates.",
        ]
    lines += [""] + [f"- **{name}**: {t['description']}. Basis: {t['basis']}." for name, t in targets.items()]
    lines += [
        "",
        "## What the MCU computes (deployment graph, first model)",
        "",
        "| # | op | input | output | MACs | computes |",
        "|---|---|---|---|---|---|",
    ]
    if records:
        for k, layer in enumerate(records[0]["graphs"][DEPLOYMENT_GRAPH]["layers"]):
            lines.append(
                f"| {k} | {layer['op']} | {layer['inputs']} | {layer['output']} | {layer['macs']} | {layer['computes']} |"
            )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main(parse_args()))
