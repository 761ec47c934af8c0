"""tools/bench_goals.py judges a bench report against the project's x86 goals (outside the device package)."""

from __future__ import annotations

import json

from tools.bench_goals import main, parse_args


def record(fmt, precision, graph, batch, p50_us, throughput=None):
    return {
        "model": "vae2d",
        "artifact": f"decoder_{graph}_{precision}_b{batch}.{fmt}",
        "format": fmt,
        "precision": precision,
        "graph": graph,
        "batch": batch,
        "threads": 1,
        "p50_us": p50_us,
        "throughput_per_s": throughput if throughput is not None else batch * 1e6 / p50_us,
    }


def bench(tmp_path, int8_b1_us: float):
    records = [
        record("tflite", "float32", "transpose", 1, 230.0),
        record("tflite", "int8", "subpixel", 1, int8_b1_us),
        record("tflite", "float32", "transpose", 64, 10_000.0),
        record("tflite", "int8", "subpixel", 64, 2_200.0),
        record("onnx", "float32", "transpose", 1, 130.0),
        record("onnx", "int8", "subpixel", 1, 67.0),
        {"model": "vae2d", "artifact": "broken.tflite", "threads": 1, "status": "error", "error": "x"},
    ]
    (tmp_path / "bench.json").write_text(json.dumps({"platform": {"cpu": "test"}, "records": records}))


def test_goals_met_and_missed(tmp_path):
    bench(tmp_path, 35.0)  # 6.6x, 35 µs: every goal met
    assert main(parse_args(["--reports", str(tmp_path)])) == 0
    goals = json.loads((tmp_path / "bench_goals.json").read_text())["goals"]["vae2d"]
    assert goals["int8_speedup_b1"] == 230.0 / 35.0 and goals["goal_throughput_4x_met"]
    assert "met" in (tmp_path / "bench_goals.md").read_text()

    bench(tmp_path, 60.0)  # 3.8x and 60 µs: both batch-1 goals missed
    assert main(parse_args(["--reports", str(tmp_path)])) == 1
    goals = json.loads((tmp_path / "bench_goals.json").read_text())["goals"]["vae2d"]
    assert not goals["goal_speedup_4_5x_met"] and not goals["goal_55us_met"]


def test_missing_bench_is_one_line(tmp_path, capsys):
    assert main(parse_args(["--reports", str(tmp_path)])) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bench.json not found; run python -m runtime bench first" in err[0]
