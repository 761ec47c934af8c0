"""firmware_sim/targets/: the target entries load; every emulated core (Cortex-M4, M7, M33, M55 on QEMU's mps2/mps3
boards, RV32IMAC on virt) builds the tests' tiny model as generated C, decodes it bit-exact with the host (each
kernel its entry lists) and counts instructions on a counter checked against loops of known length; make
simulate's table takes the measured instructions; a malformed or miscalibrated entry is one line. Fails (never
skips) without the cross compilers and QEMU (.ci/run installs them)."""

from __future__ import annotations

import json
import shutil

import pytest

from firmware_sim import measure
from firmware_sim.__main__ import main as simulate_main
from firmware_sim.__main__ import parse_args as simulate_args
from firmware_sim.codegen import generate
from firmware_sim.targets import TARGETS_DIR, all_targets, emulated_targets, load_target, load_targets
from runtime.errors import VaeEdgeError

EMULATED = ("cortex-m4", "cortex-m7", "cortex-m33", "cortex-m55", "rv32imac")
MCU_LATENTS = 2


@pytest.fixture(scope="session")
def firmware_c(exported, tmp_path_factory):
    """make firmware's command on the tiny vae2d_corr, sub-pixel graph, every target: (exit code, json, md)."""
    measure.require_tools()
    out = tmp_path_factory.mktemp("firmware_c")
    argv = ["--model", "vae2d_corr", "--graph", "subpixel", "--artifacts", str(exported), "--latents", "10"]
    argv += ["--mcu-latents", str(MCU_LATENTS), "--no-callgrind", "--reports", str(out)]
    rc = measure.main(measure.parse_args(argv))
    return rc, json.loads((out / "firmware_c.json").read_text()), (out / "firmware_c.md").read_text(), out


@pytest.fixture(scope="session")
def decoder(exported, tmp_path_factory):
    return generate(
        source=exported / "vae2d_corr" / "export", out=tmp_path_factory.mktemp("gen"), graph="subpixel"
    )


def test_entries_load_and_simulate_keeps_its_profiles():
    targets = all_targets()
    assert tuple(emulated_targets()) == EMULATED
    assert list(targets) == ["cortex-m4", "cortex-m7", "cortex-m33", "cortex-m55", "esp32-s3", "rv32imac"]
    # make simulate estimates on the targets with a MAC-rate profile, with the figures it always had.
    profiles = load_targets()
    assert list(profiles) == ["cortex-m4", "cortex-m7", "esp32-s3"]
    assert profiles["cortex-m4"]["clock_hz"] == 80e6 and profiles["cortex-m4"]["ram_bytes"] == 131072
    assert profiles["esp32-s3"]["macs_per_cycle"]["CONV_2D"] == 4.0
    # The names tests/test_codegen.py and README's commands use still describe the Cortex-M4.
    assert measure.INSTRUCTIONS_PER_TICK == 40
    assert (
        measure.QEMU_CMD[:3] == ["qemu-system-arm", "-M", "mps2-an386"] and measure.QEMU_CMD[-1] == "-kernel"
    )
    assert "-mcpu=cortex-m4" in measure.M4_FLAGS


def test_one_table_model_by_target(firmware_c):
    rc, report, md, _ = firmware_c
    assert rc == 0
    (rec,) = report["records"]
    assert (
        list(rec["targets"]) == list(all_targets())
        and rec["bit_exact_targets"]
        and rec["bit_exact_cortex_m4"]
    )
    esp = rec["targets"]["esp32-s3"]
    assert not esp["emulated"] and esp["estimated_ms_from_macs"] > 0
    rows = [line for line in md.splitlines() if line.startswith("| vae2d_corr | subpixel | ")]
    main_rows = {row.split(" | ")[2]: row for row in rows if row.count(" | ") == 10}
    assert set(main_rows) == set(all_targets())
    assert "not emulated" in main_rows["esp32-s3"] and "estimate from MACs" in main_rows["esp32-s3"]
    for name in EMULATED:
        assert "| yes (2) |" in main_rows[name] and "(estimate, CPI" in main_rows[name]


@pytest.mark.parametrize("name", EMULATED)
def test_core_is_bit_exact_and_its_counter_calibrated(firmware_c, name):
    _, report, _, _ = firmware_c
    (rec,) = report["records"]
    t, emu = rec["targets"][name], all_targets()[name].emulated
    assert t["emulated"] and t["machine"] == emu.machine and t["latents"] == MCU_LATENTS
    # Every kernel's checksum of every logit equals the host builds' (SSE2 and portable).
    assert list(t["checksums"]) == list(emu.kernels)
    assert set(t["checksums"].values()) == {rec["host_checksum"]} == {rec["host_portable_checksum"]}
    assert t["bit_exact"]
    cal = t["calibration"]
    assert cal["instructions"] == 400_000
    assert abs(cal["ticks"] * cal["nominal_instructions_per_tick"] - 400_000) <= 400
    # The tiny model has the full architecture: millions of instructions, one to a few dozen per MAC (scalar
    # kernels), under one with Helium's eight-lane VMLADAVA.
    low = 0.25 if t["kernel"] == "helium" else 1
    assert t["instructions_per_decode"] > 1_000_000 and low < t["instructions_per_mac"] < 20
    assert t["estimated_ms"] == pytest.approx(
        t["instructions_per_decode"] * t["assumed_cpi"] / t["clock_hz"] * 1e3
    )
    b = t["ram_breakdown"]
    assert b["data"] == 0 and b["bss"] > 0 and 0 < b["stack"] < 4096 and t["flash_bytes"] > 0
    assert t["ram_bytes"] == b["data"] + b["bss"] + b["stack"] and t["fits"]
    if (
        "dsp" in emu.kernels
    ):  # the SMLAD kernel executes fewer instructions than portable C, for the same bytes
        k = t["kernel_instructions_per_decode"]
        assert k["dsp"] < k["portable"]
    if name == "cortex-m55":  # Helium is the kernel measured (and checked above) on the M55, fewer still
        k = t["kernel_instructions_per_decode"]
        assert t["kernel"] == "helium" and k["helium"] < k["dsp"]


@pytest.mark.parametrize("name", EMULATED)
def test_counter_reads_a_shorter_loop(decoder, tmp_path, name):
    """A loop of a quarter of the length reads a quarter of the counts, at the entry's nominal scale."""
    target = all_targets()[name]
    build = measure.build_target(
        target,
        decoder,
        tmp_path,
        latents=1,
        kernel=target.emulated.kernels[-1],
        defines=("-DVAE_EDGE_CALIBRATION_LOOPS=25000",),
    )
    result = measure.run_target(target, build.elf)
    cal = measure.calibration(target, result)
    assert cal.instructions == 100_000 and result["latents"] == 1
    assert abs(cal.ticks * target.emulated.instructions_per_tick - 100_000) <= 100


def test_a_miscalibrated_entry_is_refused(decoder, tmp_path):
    """A new core is a new folder; one whose counter clock is wrong fails its calibration loop with one line."""
    folder = tmp_path / "m4-wrong-clock"
    shutil.copytree(TARGETS_DIR / "cortex-m4", folder)
    entry = json.loads((folder / "target.json").read_text())
    entry["emulated"]["counter"]["clock_hz"] = 20_000_000  # the board's SysTick runs at 25 MHz
    (folder / "target.json").write_text(json.dumps(entry))
    target = load_target(folder)  # its linker script and start-up come from firmware_sim/mcu/
    with pytest.raises(VaeEdgeError) as exc:
        measure.measure_target(target, decoder, tmp_path, latents=1, host_checksums=["0"])
    msg = str(exc.value)
    assert "\n" not in msg and "expected 8000" in msg and str(folder / "target.json") in msg


def _edited(tmp_path, edit, name="cortex-m4"):
    folder = tmp_path / f"edited-{name}"
    shutil.copytree(TARGETS_DIR / name, folder)
    entry = json.loads((folder / "target.json").read_text())
    edit(entry)
    (folder / "target.json").write_text(json.dumps(entry))
    return folder


@pytest.mark.parametrize(
    "edit, expect",
    [
        (lambda e: e.pop("clock_hz"), "no 'clock_hz'"),
        (lambda e: e.update(clock_hz="80M"), "'clock_hz' is \"80M\", not a number"),
        (lambda e: e["emulated"]["qemu"].update(args=["-nographic", "-semihosting"]), "-icount shift=0"),
        (lambda e: e["emulated"]["counter"].update(kind="instret"), "not what harness.c reads on arm"),
        (lambda e: e["emulated"].update(linker_script="nope.ld"), "'nope.ld' is in neither"),
        (lambda e: e["emulated"].update(arch="xtensa"), "arch 'xtensa'"),
        (lambda e: e["estimate"]["macs_per_cycle"].pop("default"), "no 'default' rate"),
    ],
)
def test_bad_entry_is_one_line(tmp_path, edit, expect):
    folder = _edited(tmp_path, edit)
    with pytest.raises(VaeEdgeError) as exc:
        load_target(folder)
    assert expect in str(exc.value) and "\n" not in str(exc.value)
    (folder / "target.json").write_text("{not json")
    with pytest.raises(VaeEdgeError, match="not valid JSON"):
        load_target(folder)


@pytest.mark.parametrize(
    "edit, expect",
    [
        # A Cortex-M3 has no DSP extension: the "dsp" kernel would silently build as portable C.
        (lambda e: e["emulated"].update(cflags=["-mcpu=cortex-m3", "-mthumb", "-O2"]), "__ARM_FEATURE_DSP"),
        (lambda e: e["emulated"].update(kernels=["sve"]), "kernel 'sve' is not one of helium, dsp, portable"),
        # A Cortex-M4 has no Helium: the "helium" kernel would silently build as the DSP one.
        (lambda e: e["emulated"].update(kernels=["helium"]), "__ARM_FEATURE_MVE"),
    ],
)
def test_a_kernel_the_core_cannot_build_is_refused(decoder, tmp_path, edit, expect):
    target = load_target(_edited(tmp_path, edit))
    with pytest.raises(VaeEdgeError, match=expect):
        measure.build_target(target, decoder, tmp_path, latents=1, kernel=target.emulated.kernels[0])


def test_missing_tools_name_every_core_package(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(VaeEdgeError) as exc:
        measure.require_tools()
    msg = str(exc.value)
    for package in (
        "gcc-arm-none-eabi",
        "libnewlib-arm-none-eabi",
        "qemu-system-arm",
        "gcc-riscv64-unknown-elf",
    ):
        assert package in msg
    for package in ("picolibc-riscv64-unknown-elf", "qemu-system-misc", "valgrind"):
        assert package in msg


def test_simulate_report_takes_the_measured_instructions(firmware_c, exported):
    """make simulate after make firmware: its targets table shows each emulated core's measured instructions
    (milliseconds still labelled as resting on an assumed CPI), the others the MAC-rate estimate."""
    _, report, _, reports = firmware_c
    argv = [
        "--model",
        "vae2d_corr",
        "--artifacts",
        str(exported),
        "--latents",
        "5",
        "--reports",
        str(reports),
    ]
    assert simulate_main(simulate_args(argv)) == 0
    md = (reports / "firmware.md").read_text()
    measured = report["records"][0]["targets"]
    for name in ("cortex-m4", "cortex-m7"):
        row = next(line for line in md.splitlines() if line.startswith(f"| vae2d_corr | {name} |"))
        m = measured[name]
        assert (
            f"{m['estimated_ms']:.1f} ms (measured {m['instructions_per_decode'] / 1e6:.2f} M instructions"
            in row
        )
    esp = next(line for line in md.splitlines() if line.startswith("| vae2d_corr | esp32-s3 |"))
    assert "measured" not in esp
    assert "the milliseconds stay estimates" in md
