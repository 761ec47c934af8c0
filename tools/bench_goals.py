"""Judge a latency bench against vae-edge's own x86 goals: reports/bench.json -> reports/bench_goals.{json,md}.

    python -m tools.bench_goals --reports reports          # make bench runs it after python -m runtime bench

The goals belong to this project's development machine (int8 ≥ 4.5× float32 and ≤ 55 µs at batch 1, ≥ 4×
throughput at batch N, int8 ONNX faster than float ONNX, all at 1 thread); a Raspberry Pi's bench is not judged
by them, so they live here, beside the report that judges them, and not in the installed runtime.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from runtime.cli import cli_main, parser
from runtime.errors import VaeEdgeError
from runtime.fileio import write_json_atomic, write_text_atomic

SPEEDUP_B1_MIN = 4.5
P50_B1_MAX_US = 55
THROUGHPUT_RATIO_MIN = 4


def bench_goals(records: list[dict]) -> dict:
    """The goals, per model, at 1 thread (ai-edge-litert / onnxruntime)."""
    out = {}
    ok = [r for r in records if "error" not in r and r["threads"] == 1]
    for model in sorted({r["model"] for r in ok}):
        rs = [r for r in ok if r["model"] == model]

        def pick(fmt, prec, batch, graph=None, rs=rs):
            hits = [
                r
                for r in rs
                if r["format"] == fmt
                and r["precision"] == prec
                and r["batch"] == batch
                and (graph is None or r["graph"] == graph)
            ]
            return min(hits, key=lambda r: r["p50_us"]) if hits else None

        bN = max(r["batch"] for r in rs)
        f1, i1 = pick("tflite", "float32", 1, "transpose"), pick("tflite", "int8", 1)
        fN, iN = pick("tflite", "float32", bN, "transpose"), pick("tflite", "int8", bN)
        of, oi = pick("onnx", "float32", 1, "transpose"), pick("onnx", "int8", 1)
        g = {}
        if f1 and i1:
            g["best_int8_tflite_b1"] = i1["artifact"]
            g["int8_speedup_b1"] = f1["p50_us"] / i1["p50_us"]
            g["int8_p50_us_b1"] = i1["p50_us"]
            g["goal_speedup_4_5x_met"] = g["int8_speedup_b1"] >= SPEEDUP_B1_MIN
            g["goal_55us_met"] = i1["p50_us"] <= P50_B1_MAX_US
        if fN and iN:
            g["int8_throughput_ratio_bN"] = iN["throughput_per_s"] / fN["throughput_per_s"]
            g["goal_throughput_4x_met"] = g["int8_throughput_ratio_bN"] >= THROUGHPUT_RATIO_MIN
        if of and oi:
            g["best_int8_onnx_b1"] = oi["artifact"]
            g["onnx_int8_speedup_b1"] = of["p50_us"] / oi["p50_us"]
            g["goal_onnx_int8_faster_met"] = oi["p50_us"] < of["p50_us"]
        out[model] = g
    return out


def goals_markdown(goals: dict, platform: dict) -> str:
    lines = [
        "# Latency goals (1 thread)",
        "",
        f"Bench of {platform.get('cpu', '?')} ({platform.get('machine', '?')}).",
        "",
    ]
    for model, g in goals.items():
        parts = []
        if "int8_speedup_b1" in g:
            parts.append(
                f"best int8 TFLite ({g['best_int8_tflite_b1']}) {g['int8_p50_us_b1']:.0f} µs = "
                f"{g['int8_speedup_b1']:.2f}× the float32 TFLite decoder at batch 1 (goal ≥ {SPEEDUP_B1_MIN}×: "
                f"{'met' if g['goal_speedup_4_5x_met'] else 'not met'}; ≤ {P50_B1_MAX_US} µs: {'met' if g['goal_55us_met'] else 'not met'})"
            )
        if "int8_throughput_ratio_bN" in g:
            parts.append(
                f"int8 throughput at batch N {g['int8_throughput_ratio_bN']:.2f}× float (goal ≥ 4×: "
                f"{'met' if g['goal_throughput_4x_met'] else 'not met'})"
            )
        if "onnx_int8_speedup_b1" in g:
            parts.append(
                f"best int8 ONNX ({g['best_int8_onnx_b1']}) {g['onnx_int8_speedup_b1']:.2f}× the float ONNX "
                f"decoder ({'faster' if g['goal_onnx_int8_faster_met'] else 'NOT faster'})"
            )
        lines.append(f"- **{model}**: " + "; ".join(parts) + ".")
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = parser("python -m tools.bench_goals", __doc__)
    p.add_argument("--reports", default="reports", help="folder holding bench.json (default reports/)")
    return p.parse_args(argv)


@cli_main
def main(args: argparse.Namespace) -> int:
    reports = Path(args.reports)
    path = reports / "bench.json"
    try:
        bench = json.loads(path.read_text())
        records, platform = bench["records"], bench["platform"]
    except FileNotFoundError:
        raise VaeEdgeError(f"{path} not found; run python -m runtime bench first") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise VaeEdgeError(
            f"{path} is not a bench report ({type(exc).__name__}); run python -m runtime bench again"
        ) from None
    goals = bench_goals(records)
    write_json_atomic(reports / "bench_goals.json", {"platform": platform, "goals": goals})
    write_text_atomic(reports / "bench_goals.md", goals_markdown(goals, platform))
    met = all(v for g in goals.values() for k, v in g.items() if k.startswith("goal_"))
    print(
        f"bench goals: {'all met' if met else 'NOT all met'} -> {reports / 'bench_goals.md'}", file=sys.stderr
    )
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main(parse_args()))
