"""The parts of the emulated-Pi check that need no root: board/QEMU_CPU pairing guards and output comparison.
(The emulated run itself is `make pi-check`: root, binfmt_misc and minutes.)"""

from __future__ import annotations

import numpy as np
import pytest

from runtime.pi_check import (
    BOARDS,
    PiCheckError,
    compare_checks,
    compare_dumps,
    cpuinfo_for,
    dump_outputs,
    validate_pairing,
)

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
