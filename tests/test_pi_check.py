"""The parts of the emulated-Pi check that need no root: board/QEMU_CPU pairing guards and output comparison.
(The emulated run itself is `make pi-check`: root, binfmt_misc and minutes.)"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from runtime.dump import dump_outputs
from runtime.vocab import PLATFORM_TOLERANCE, Precision
from tools.pi.check import (
    BOARDS,
    PiCheckError,
    compare_checks,
    compare_dumps,
    cpuinfo_for,
    output_precisions,
    runtime_requirements,
    validate_pairing,
)

REPO = Path(__file__).resolve().parents[1]
X86_CPUINFO = "processor\t: 0\nvendor_id\t: GenuineIntel\nflags\t\t: fpu vme avx512f\n"


@pytest.mark.parametrize("board", list(BOARDS))
def test_matching_pairs_pass(board):
    b = BOARDS[board]
    validate_pairing(b.qemu_cpu, cpuinfo_for(b))


@pytest.mark.parametrize(
    "qemu_cpu, cpuinfo, fragment",
    [
        (None, cpuinfo_for(BOARDS["pi4"]), "'max' CPU"),
        ("max", cpuinfo_for(BOARDS["pi4"]), "wrong int8 results"),
        ("cortex-a72", X86_CPUINFO, "x86 /proc/cpuinfo"),
        ("cortex-a76", cpuinfo_for(BOARDS["pi4"]), "SIGILL"),
        ("cortex-a72", cpuinfo_for(BOARDS["pi5"]), "SIGILL"),
        ("cortex-a72", "processor : 0\n", "no 'CPU part'"),
        ("neoverse-n1", cpuinfo_for(BOARDS["pi5"]), "not a known Raspberry Pi core"),
    ],
)
def test_bad_pairs_are_refused(qemu_cpu, cpuinfo, fragment):
    with pytest.raises(PiCheckError, match=fragment):
        validate_pairing(qemu_cpu, cpuinfo)


def test_compare_dumps():
    host = {"a": np.array([0.5, 0.25], np.float32), "b": np.array([1, -3], np.int8)}
    same = compare_dumps(host, {k: v.copy() for k, v in host.items()})
    assert same["passed"] and same["max_int8_lsb"] == 0
    near = compare_dumps(host, {"a": host["a"] + 5e-6, "b": host["b"]})
    assert near["passed"]
    far = compare_dumps(host, {"a": host["a"] + 1e-3, "b": np.array([1, -2], np.int8)})
    assert not far["passed"] and far["max_int8_lsb"] == 1 and far["max_float_diff"] > 1e-4
    assert not compare_dumps(host, {"a": host["a"]})["passed"]  # a missing output fails


def test_each_precision_has_its_own_bound():
    """Dynamic-range int8 outputs may move by what the Pi 5 showed (1.75e-3); float32 ones may not; integer
    outputs must be bit-exact whatever the artifact."""
    f32, dyn, i8 = (
        "m::decoder_transpose_float32_b1.tflite",
        "m::decoder_transpose_dynamic_int8_b1.tflite",
        "m::x",
    )
    precisions = {f32: Precision.FLOAT32, dyn: Precision.DYNAMIC_INT8, i8: Precision.INT8}
    host = {
        f"{f32}::0": np.array([0.5, 0.25], np.float32),
        f"{dyn}::0": np.array([0.5, 0.25], np.float32),
        f"{i8}::0": np.array([1, -3], np.int8),
    }
    seen_on_pi5 = {**host, f"{dyn}::0": host[f"{dyn}::0"] + 1.75e-3}
    res = compare_dumps(host, seen_on_pi5, precisions)
    assert res["passed"], res
    row = next(r for r in res["rows"] if r["output"] == f"{dyn}::0")
    assert (
        row["precision"] == "dynamic_int8"
        and row["tolerance"] == PLATFORM_TOLERANCE[Precision.DYNAMIC_INT8].max_abs
    )
    assert not compare_dumps(host, {**host, f"{f32}::0": host[f"{f32}::0"] + 1.75e-3}, precisions)["passed"]
    assert not compare_dumps(host, {**host, f"{dyn}::0": host[f"{dyn}::0"] + 0.25}, precisions)["passed"]
    assert not compare_dumps(host, {**host, f"{i8}::0": np.array([1, -2], np.int8)}, precisions)["passed"]
    assert not compare_dumps(host, {**host, f"{dyn}::0": host[f"{dyn}::0"] * np.nan}, precisions)["passed"]
    # Unknown to the manifests: held to float32's bound.
    assert not compare_dumps(host, seen_on_pi5)["passed"]
    assert PLATFORM_TOLERANCE[Precision.FLOAT32].max_abs <= 1e-5


def test_compare_checks():
    rec = {"model": "m", "artifact": "x", "mean_abs_err": 0.001, "digit_agreement": 0.99, "neg_elbo": 150.0}
    assert compare_checks({"records": [rec]}, {"records": [dict(rec)]})["passed"]
    res = compare_checks({"records": [rec]}, {"records": [{**rec, "neg_elbo": 150.1}]})
    assert not res["passed"] and "neg_elbo" in res["differences"][0]


def test_dump_covers_every_model_artifact(exported):
    dump = dump_outputs(exported, samples=8)
    decoders = [k for k in dump if k.startswith("vae2d_corr::decoder_")]
    assert len(decoders) == 24
    int8 = dump["vae2d_corr::decoder_subpixel_int8_b1.tflite::0"]
    assert int8.dtype == np.int8 and int8.shape == (8, 28, 28, 1)
    assert any(k.startswith("classifier::") for k in dump)
    precisions = output_precisions(exported)
    assert {k.rsplit("::", 1)[0] for k in dump} <= set(precisions)
    assert precisions["vae2d_corr::decoder_transpose_dynamic_int8_b1.tflite"] is Precision.DYNAMIC_INT8


def test_pi_bundle(exported, mnist_path, tmp_path):
    import tarfile

    from runtime.data import load_mnist
    from runtime.manifest import load_manifest
    from tools.pi.bundle import main as bundle_main
    from tools.pi.bundle import parse_args as bundle_args
    from tools.pi.bundle import shipped_runtime_files

    out = tmp_path / "pi.tar.gz"
    assert (
        bundle_main(bundle_args(["--artifacts", str(exported), "--data", str(mnist_path), "--out", str(out)]))
        == 0
    )
    with tarfile.open(out) as tar:
        names = set(tar.getnames())
        tar.extractall(tmp_path / "x", filter="data")
    root = "vae-edge-pi"
    for must in (
        "runtime/pyproject.toml",
        "runtime/__main__.py",
        "runtime/examples/generate_digits.py",
        "artifacts/vae2d_corr/export/manifest.json",
        "artifacts/vae2d_corr/export/decoder_subpixel_int8_b1.tflite",
        "artifacts/classifier/export/manifest.json",
        "mnist_test.npz",
        "README.md",
    ):
        assert f"{root}/{must}" in names, must
    assert not [n for n in names if "__pycache__" in n or n.endswith((".keras", "checkpoint.npz"))]
    packed = {n.removeprefix(f"{root}/runtime/") for n in names if n.startswith(f"{root}/runtime/")}
    assert packed == set(shipped_runtime_files())  # the allowlist, so no host tooling reaches the Pi
    assert not [n for n in names if "tools/" in n or "pi_check" in n]
    test_split = load_mnist(tmp_path / "x" / root / "mnist_test.npz", test_only=True)
    assert test_split.x_test.shape == (10000, 28, 28) and len(test_split.x_train) == 0
    manifest = load_manifest(tmp_path / "x" / root / "artifacts" / "vae2d_corr" / "export")
    for entry in manifest.artifacts:
        manifest.verify(entry)


def test_board_wheels_come_from_the_runtime_package_and_the_project_pins():
    reqs = runtime_requirements()
    assert [r.split("==")[0] for r in reqs] == ["numpy", "ai-edge-litert", "onnxruntime"]
    pins = (REPO / "requirements.txt").read_text()
    assert all(r in pins for r in reqs)
