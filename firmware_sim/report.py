"""reports/firmware.md from the records python -m firmware_sim collects."""

from __future__ import annotations

import json
from pathlib import Path

from runtime.vocab import Graph

DEPLOYMENT_GRAPH = Graph.SUBPIXEL  # the graph whose C array export writes
RAM_GOAL_BYTES = 48 * 1024  # the fused plan of the deployment graph


def load_measured(reports: Path) -> dict[tuple[str, str], dict]:
    """The generated-C measurements of ``make firmware`` (reports/firmware_c.json), by (model, graph), if any;
    a file from before targets were measured per core (no ``targets`` in its records) counts as none."""
    path = Path(reports) / "firmware_c.json"
    if not path.is_file():
        return {}
    try:
        records = json.loads(path.read_text())["records"]
        return {(r["model"], r["graph"]): r for r in records if isinstance(r["targets"], dict)}
    except (json.JSONDecodeError, KeyError, TypeError):
        return {}


def measured_on(measured: dict, model: str, target: str, graph: str = DEPLOYMENT_GRAPH) -> dict | None:
    """The deployment graph's emulated measurement on ``target``, if make firmware ran it."""
    m = measured.get((model, graph), {}).get("targets", {}).get(target)
    return m if m and m.get("emulated") else None


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
    lines += [
        "",
        f"RAM goal for the deployment plan (the {DEPLOYMENT_GRAPH} graph where exported): ≤ {RAM_GOAL_BYTES // kb} KB.",
        "",
    ]
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
        "an estimate from each layer's MACs and the MACs-per-cycle figures in `firmware_sim/targets/<target>/target.json` "
        "(engineering estimates; their basis is stated there and below).",
        "",
        "| model | target | fits | RAM free | TFLM arena fits too | est. latency |",
        "|---|---|---|---|---|---|",
    ]
    shown = set()
    for r in records:
        for t, v in r["targets"].items():
            m = measured_on(measured, r["model"], t, r.get("deployment_graph", DEPLOYMENT_GRAPH))
            if m:
                shown.add(t)
            latency = (
                f"{m['estimated_ms']:.1f} ms (measured {m['instructions_per_decode'] / 1e6:.2f} M instructions, "
                f"assumed CPI {m['assumed_cpi']})"
                if m
                else f"{v['latency_ms']:.1f} ms"
            )
            lines.append(
                f"| {r['model']} | {t} | {'yes' if v['fits'] else 'no'} | {v['ram_free_bytes'] / kb:.1f} KB | "
                f"{'yes' if v['tflm_arena_fits'] else 'no'} | {latency} |"
            )
    if shown:
        lines += [
            "",
            f"On {', '.join(sorted(shown))} the instructions are measured where `make firmware` ran "
            "(reports/firmware_c.md): the generated C decoder on QEMU; the milliseconds stay estimates (those "
            "instructions times the cycles per instruction assumed in the target's entry, at its clock). The "
            "other figures are MAC-rate estimates.",
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
        first = records[0]
        for k, layer in enumerate(first["graphs"][first.get("deployment_graph", DEPLOYMENT_GRAPH)]["layers"]):
            lines.append(
                f"| {k} | {layer['op']} | {layer['inputs']} | {layer['output']} | {layer['macs']} | {layer['computes']} |"
            )
    return "\n".join(lines) + "\n"
