"""tools/fuzz: a seeded subset of `make fuzz` on the tiny export (see conftest.exported), plus the harness's own
ability to tell a crash, a hang and a traceback apart. The full run (1,000 + 1,000 model mutations, 200
manifests, inputs and .npz files) is `make fuzz`; its counts go to reports/fuzz.{json,md}."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tools.fuzz import mutate
from tools.fuzz.harness import CODEGEN_FAILURES, FAILURES, FuzzConfig, Worker, run_fuzz
from tools.fuzz.report import write_reports


def test_fuzz_subset_has_no_crash_traceback_or_detectable_silent_change(exported, mnist_path, tmp_path):
    cfg = FuzzConfig(
        artifacts=str(exported),
        data=str(mnist_path),
        seed=12,
        model_mutations=60,
        manifest_mutations=60,
        input_mutations=80,
        npz_mutations=40,
        firmware_mutations=8,
        codegen_mutations=0,  # its own test below
        export_mutations=0,  # and the on-disk targets theirs
        output_path_mutations=0,
    )
    result = run_fuzz(cfg)
    expected = {
        "model_sha_updated": 60,
        "model_sha_stale": 60,
        "manifest": 60,
        "manifest_cli": 30,  # the VAE's manifests (every other one) also through python -m runtime sample
        "input": 80,
        "npz": 40,
        "firmware": 8,
    }
    assert {t: sum(c.values()) for t, c in result.counts.items()} == expected
    for target in expected:
        assert result.failures(target) == 0, (target, result.counts[target], result.examples.get(target))
        assert result.counts[target].get("refused", 0) > 0, target  # the mutations do bite
    for target in ("manifest", "manifest_cli", "input", "npz"):
        assert result.counts[target].get("escape_accepted", 0) == 0
    # Without the updated sha256 every mutated file is refused before it reaches an interpreter.
    assert {o: n for o, n in result.counts["model_sha_stale"].items() if n} == {"refused": 60}
    js, md = write_reports(result, tmp_path / "reports")
    report = json.loads(js.read_text())
    assert report["goals"]["model_sha_updated"]["met"] and "| model_sha_updated | 60 |" in md.read_text()


def test_codegen_subset_has_no_traceback_crash_or_out_of_bounds(tmp_path):
    """30 edited decoder graphs through python -m firmware_sim.codegen (no export needed): each refused with one
    line and its output folder untouched, or C that builds under ASan/UBSan, runs and equals the reference."""
    cfg = FuzzConfig(
        artifacts=str(tmp_path / "no-export"),
        seed=23,
        model_mutations=0,
        manifest_mutations=0,
        input_mutations=0,
        npz_mutations=0,
        firmware_mutations=0,
        codegen_mutations=30,
        export_mutations=0,
        output_path_mutations=0,
    )
    result = run_fuzz(cfg)
    c = result.counts["codegen"]
    assert sum(c.values()) == 30
    assert result.failures("codegen") == 0, (c, result.examples.get("codegen"))
    assert c["refused"] > 0 and c.get("ran", 0) > 0, c  # the edits bite, and some C is built and checked
    assert set(CODEGEN_FAILURES) >= {"out_of_bounds", "undefined_behaviour", "silently_wrong", "half_written"}
    js, _ = write_reports(result, tmp_path / "reports")
    assert json.loads(js.read_text())["goals"]["codegen"]["met"]


def test_worker_counts_a_segfault_a_hang_and_a_traceback(tmp_path):
    worker = Worker(tmp_path / "worker.log")
    try:
        assert worker.run("selftest", action="segfault")[0] == "crash"
        assert worker.run("selftest", action="hang", timeout=2)[0] == "hang"
        status, payload = worker.run("selftest", action="raise")
        assert status == "traceback" and "KeyError" in payload
        assert worker.run("selftest", action="fine") == ("ok", {"action": "fine"})  # restarted after each
        assert worker.restarts == 2
    finally:
        worker.close()
    assert set(FAILURES) >= {"crash", "hang", "traceback", "silent_diff_io_detectable"}


@pytest.mark.parametrize("fmt", ["tflite", "onnx"])
def test_model_mutations_are_seeded_and_always_change_the_file(exported, fmt):
    folder = exported / "vae2d_corr" / "export"
    data = (folder / f"decoder_transpose_float32_b1.{fmt}").read_bytes()
    runs = [
        [mutate.mutate_model(data, fmt, rng) for _ in range(15)]
        for rng in (np.random.default_rng(5), np.random.default_rng(5))
    ]
    assert runs[0] == runs[1]
    assert all(out != data for _, out in runs[0])
    assert any(kind.startswith("structured_") for kind, _ in runs[0])


def test_export_and_output_path_subset_destroy_nothing(exported, tmp_path):
    """A seeded subset of the on-disk targets (tools/fuzz/ondisk.py) on the tiny export: edited run sets through
    python -m export (each refused with one line and the artifacts byte-identical, or exported whole), and CLIs
    writing to a read-only folder, a FIFO, a full disk or a non-empty folder. No traceback, crash, hang, and
    nothing destroyed or half-written."""
    from tools.fuzz.harness import ON_DISK_FAILURES

    cfg = FuzzConfig(
        artifacts=str(exported),
        seed=3,
        model_mutations=0,
        manifest_mutations=0,
        input_mutations=0,
        npz_mutations=0,
        firmware_mutations=0,
        codegen_mutations=0,
        export_mutations=24,
        output_path_mutations=16,
    )
    result = run_fuzz(cfg)
    assert {t: sum(c.values()) for t, c in result.counts.items()} == {"export": 24, "output_path": 16}
    for target in ("export", "output_path"):
        for kind, c in result.by_kind[target].items():
            bad = {o: c.get(o, 0) for o in ("traceback", "crash", "hang", "destructive", "half_written")}
            assert not any(bad.values()), (target, kind, c, result.examples[target])
        assert result.counts[target]["refused"] > 0, result.counts[target]
        assert result.counts[target].get("refusal_not_one_line", 0) == 0, result.examples[target]
    assert set(ON_DISK_FAILURES) >= {"destructive", "half_written"}
    js, _ = write_reports(result, tmp_path / "reports")
    assert json.loads(js.read_text())["goals"]["export"]["met"]
