"""Build, check and measure the generated C decoders: host (gcc, sanitizers, callgrind) and every emulated
microcontroller of firmware_sim/targets/ (QEMU).

    python -m firmware_sim.measure --artifacts artifacts --reports reports          # make firmware
    python -m firmware_sim.measure --model vae2d --target cortex-m33 --latents 1000 --mcu-latents 16

For each model and graph (transposed, sub-pixel): generate ``<model>_decoder.{h,c}`` (firmware_sim.codegen);
compile it for the host with ``gcc -std=c99 -O2 -Wall -Wextra -Werror -fsanitize=address,undefined`` and demand
bit-exact logits against TFLite Micro and the numpy integer reference on random int8 latents. Then, for each
target with an ``emulated`` entry (Cortex-M4 on mps2-an386, M7 on mps2-an500, M33 on mps2-an505, M55 on
mps3-an547, RV32IMAC on virt; firmware_sim/targets.py describes the entry): cross-compile every kernel the entry
lists with its compiler and flags, link the measurement harness (firmware_sim/mcu/harness.c) with its start-up
and linker script, and run it on QEMU with ``-icount shift=0``. Each build's checksum must equal the host
builds'; instructions come from the entry's counter (SysTick or instret), checked in the same run against a loop
of known length; RAM = .data + .bss of the decoder object + the painted-stack high-water mark of a decode;
flash = .text + .rodata. Milliseconds are instructions × the entry's assumed CPI / its clock: an estimate. A
target without an emulator (ESP32-S3) gets only the MAC-rate estimate of ``make simulate``. Host instructions
per decode: callgrind with collection toggled on the decode function, and on
``tflite::micro::MicroInterpreter::Invoke()`` for TFLM on the same model. Writes reports/firmware_c.{json,md};
exits 1 if any check is not bit-exact.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from runtime.cli import cli_main, nonnegative_int, parser, positive_int
from runtime.errors import VaeEdgeError
from runtime.fileio import ensure_writable_dir, write_json_atomic, write_text_atomic
from runtime.vocab import ALL, EXPORT_NAME_PATTERN

from .codegen import GRAPHS, GeneratedDecoder, c_identifier, exported_sources, generate, resolve_source
from .graph import UnsupportedOpError
from .targets import Target, all_targets, fits

# The builds moved to firmware_sim/toolchain.py; all their names stay importable from here, those this module
# does not use too (tests, tools/fuzz and firmware_sim/targets/*/target.json name them as measure's).
from .toolchain import (  # noqa: F401
    CORTEX_M4,
    HOST_FLAGS,
    HOST_TOOLS,
    INSTRUCTIONS_PER_TICK,
    KERNELS,
    M4_FLAGS,
    MCU_DIR,
    QEMU_CMD,
    SANITIZE_FLAGS,
    TargetBuild,
    _defines,
    _run,
    build_cortex_m4,
    build_host_check,
    build_host_harness,
    build_target,
    missing_tools,
    object_size,
    require_tools,
)

TFLM_INVOKE_SYMBOL = "tflite::micro::MicroInterpreter::Invoke()"
CALIBRATION_TOLERANCE = 1e-3  # of the calibration loop's instructions (400 of 400,000 by default)


# ---------------------------------------------------------------------------------------------- host side
def parse_harness(text: str) -> dict:
    out = {}
    for key, value in re.findall(r"^(\w+) ([0-9a-fA-F]+)\s*$", text, re.M):
        out[key] = value if key == "checksum" else int(value)
    return out


@dataclass(frozen=True)
class HostCheck:
    latents_checked: int  # against TFLite Micro
    reference_latents_checked: int  # the first ones of those, also against the numpy reference
    mismatched_vs_tflm: int
    mismatched_vs_reference: int
    tflm_arena_bytes: int

    @property
    def bit_exact(self) -> bool:
        return self.mismatched_vs_tflm == 0 and self.mismatched_vs_reference == 0


def check_host(
    gen: GeneratedDecoder,
    tflite: Path,
    *,
    latents: np.ndarray,
    out: Path,
    reference_latents: int | None = None,
    portable: bool = False,
) -> HostCheck:
    """Decode every latent with the sanitized host build; compare every logit with TFLM, and those of the first
    ``reference_latents`` (default: all) with the numpy reference too (about 20-30 ms a latent)."""
    from .graph import load_graph
    from .reference import IntegerReference
    from .tflm import TflmModel, smallest_arena

    exe = build_host_check(gen, out, portable=portable)
    z_path, o_path = out / "latents.bin", out / "logits.bin"
    latents = np.ascontiguousarray(latents.reshape(len(latents), -1).astype(np.int8))
    latents.tofile(z_path)
    _run([str(exe), str(z_path), str(o_path)], timeout=600)
    ours = np.fromfile(o_path, np.int8).reshape(len(latents), -1)
    data = tflite.read_bytes()
    arena = smallest_arena(data, latents[:1])
    tflm = TflmModel(data, arena)
    reference = IntegerReference(load_graph(tflite))
    n_ref = len(latents) if reference_latents is None else min(reference_latents, len(latents))
    bad_tflm = bad_ref = 0
    for k, z in enumerate(latents):
        z1 = z.reshape(1, -1)
        bad_tflm += int(np.any(tflm.run(z1).reshape(-1) != ours[k]))
        if k < n_ref:
            bad_ref += int(np.any(reference.run(z1).reshape(-1) != ours[k]))
    return HostCheck(len(latents), n_ref, bad_tflm, bad_ref, arena)


def _callgrind_total(out_file: Path) -> int:
    text = out_file.read_text()
    m = re.search(r"^summary:\s+(\d+)", text, re.M) or re.search(r"^totals:\s+(\d+)", text, re.M)
    if not m:
        raise VaeEdgeError(f"callgrind wrote no instruction total to {out_file}")
    return int(m.group(1))


def callgrind_instructions(cmd: list[str], toggle: str, out: Path, *, timeout: float = 900) -> int:
    """Instructions executed inside ``toggle`` (a function name) while ``cmd`` runs under callgrind."""
    cg = out / f"callgrind.{abs(hash((tuple(cmd), toggle))) % 10**8}.out"
    _run(
        [
            "valgrind",
            "--tool=callgrind",
            "--collect-atstart=no",
            f"--toggle-collect={toggle}",
            f"--callgrind-out-file={cg}",
            *cmd,
        ],
        timeout=timeout,
    )
    return _callgrind_total(cg)


def host_decode_instructions(gen: GeneratedDecoder, out: Path, decodes: int = 2) -> float:
    exe = build_host_harness(gen, out, decodes)
    total = callgrind_instructions([str(exe)], f"{c_identifier(gen.plan.name)}_decode", out)
    return total / decodes


TFLM_INVOKE_SCRIPT = """
import sys
import numpy as np
from tflite_micro.python.tflite_micro import runtime
data = open(sys.argv[1], "rb").read()
interpreter = runtime.Interpreter.from_bytes(data, arena_size=int(sys.argv[2]))
for k in range(int(sys.argv[3])):
    interpreter.set_input(np.full((1, int(sys.argv[4])), k - 64, np.int8), 0)
    interpreter.invoke()
"""


def tflm_invoke_instructions(tflite: Path, arena: int, input_size: int, out: Path, invokes: int = 2) -> float:
    script = out / "tflm_invoke.py"
    script.write_text(TFLM_INVOKE_SCRIPT)
    cmd = [sys.executable, str(script), str(tflite), str(arena + 1024), str(invokes), str(input_size)]
    return callgrind_instructions(cmd, TFLM_INVOKE_SYMBOL, out) / invokes


# ------------------------------------------------------------------------------------------ emulated targets
@dataclass(frozen=True)
class Calibration:
    instructions: int  # the loop's, known from its length
    ticks: int  # what the counter read over it
    nominal_instructions_per_tick: float  # from target.json's counter

    @property
    def instructions_per_tick(self) -> float:
        return self.instructions / self.ticks

    @property
    def error(self) -> float:
        """How far the nominal scale is from what the loop measured, as a share of its instructions."""
        return abs(self.ticks * self.nominal_instructions_per_tick - self.instructions) / self.instructions


def run_target(target: Target, elf: Path, *, timeout: float = 300) -> dict:
    """The harness's report from one QEMU run (checksum, calibration, ticks, stack)."""
    return parse_harness(_run([*target.emulated.qemu, str(elf)], timeout=timeout))


def run_qemu(elf: Path, *, timeout: float = 300) -> dict:
    """A Cortex-M4 ELF on mps2-an386."""
    return run_target(CORTEX_M4, elf, timeout=timeout)


def calibration(target: Target, result: dict) -> Calibration:
    """The run's calibration loop against the counter's nominal scale; a counter off by more than 0.1% (a
    wrong clock_hz, or QEMU without -icount shift=0) is refused, since every count of the run rests on it."""
    cal = Calibration(
        result["calibration_instructions"],
        result["calibration_ticks"],
        target.emulated.instructions_per_tick,
    )
    if cal.ticks <= 0 or cal.error > CALIBRATION_TOLERANCE:
        raise VaeEdgeError(
            f"{target.name}: the counter read {cal.ticks} over a loop of {cal.instructions} instructions, "
            f"expected {cal.instructions / cal.nominal_instructions_per_tick:.0f}; check 'counter' in "
            f"{target.folder / 'target.json'}"
        )
    return cal


def instructions_from_ticks(result: dict, ticks: int) -> float:
    """Counter ticks -> instructions, with the ratio the same run measured on its calibration loop."""
    per_tick = result["calibration_instructions"] / result["calibration_ticks"]
    return ticks * per_tick


def measure_target(
    target: Target, gen: GeneratedDecoder, work: Path, *, latents: int, host_checksums: list[str]
) -> dict:
    """Every kernel of one emulated target: built, run, calibrated, checksums against the host's. RAM, flash and
    instructions are those of the first kernel (the one the target would ship)."""
    emu = target.emulated
    runs = {}
    for kernel in emu.kernels:
        build = build_target(target, gen, work, latents=latents, kernel=kernel)
        result = run_target(target, build.elf)
        if result.get("latents") != latents or "checksum" not in result:
            raise VaeEdgeError(f"{target.name}: the harness reported {result} instead of {latents} decodes")
        runs[kernel] = (build, result, calibration(target, result))
    build, result, cal = runs[emu.kernels[0]]
    instructions = {
        k: instructions_from_ticks(r, r["ticks_total"]) / latents for k, (_, r, _) in runs.items()
    }
    per_decode = instructions[emu.kernels[0]]
    ram = build.data_bytes + build.bss_bytes + result["stack_bytes"]
    plan = gen.plan
    checksums = {k: r["checksum"] for k, (_, r, _) in runs.items()}
    return {
        "emulated": True,
        "machine": emu.machine,
        "kernel": emu.kernels[0],
        "latents": latents,
        "ram_bytes": ram,
        "ram_breakdown": {"data": build.data_bytes, "bss": build.bss_bytes, "stack": result["stack_bytes"]},
        "flash_bytes": build.text_bytes,
        **fits(ram, build.text_bytes, target.profile()),
        "checksums": checksums,
        "bit_exact": len(set(checksums.values()) | set(host_checksums)) == 1,
        "calibration": {
            "instructions": cal.instructions,
            "ticks": cal.ticks,
            "instructions_per_tick": cal.instructions_per_tick,
            "nominal_instructions_per_tick": cal.nominal_instructions_per_tick,
        },
        "instructions_per_decode": round(per_decode),
        "instructions_per_mac": per_decode / plan.real_macs,
        "kernel_instructions_per_decode": {k: round(v) for k, v in instructions.items()},
        "clock_hz": target.clock_hz,
        "assumed_cpi": emu.assumed_cpi,
        "estimated_ms": per_decode * emu.assumed_cpi / target.clock_hz * 1e3,
    }


def estimate_target(target: Target, graph, trace) -> dict:
    """A target without an emulator: the MAC-rate latency estimate of make simulate, nothing measured."""
    from .targets import estimate_latency

    lat = estimate_latency(graph, [(layer.op, layer.macs) for layer in trace], target.profile())
    return {"emulated": False, "estimated_ms_from_macs": lat["ms"], "clock_hz": target.clock_hz}


# ------------------------------------------------------------------------------------------------ records
def measure_graph(
    source: Path,
    graph: str,
    work: Path,
    *,
    latents: int,
    mcu_latents: int,
    seed: int,
    targets: dict[str, Target] | None = None,
    callgrind: bool = True,
) -> dict:
    from .graph import load_graph
    from .reference import IntegerReference

    targets = all_targets() if targets is None else targets
    gen_dir = work / "generated"
    gen = generate(source=source, out=gen_dir, graph=graph)
    plan = gen.plan
    tflite, _, _, _ = resolve_source(source, graph)
    rng = np.random.default_rng(seed)
    zs = rng.integers(-128, 128, (latents, plan.input_size)).astype(np.int8)
    host = check_host(gen, tflite, latents=zs, out=work)
    host_sum = parse_harness(_run([str(build_host_harness(gen, work, mcu_latents))]))["checksum"]
    host_portable_sum = parse_harness(_run([str(build_host_harness(gen, work, mcu_latents, portable=True))]))[
        "checksum"
    ]
    per_target = {}
    for name, target in targets.items():
        if target.emulated is not None:
            per_target[name] = measure_target(
                target, gen, work, latents=mcu_latents, host_checksums=[host_sum, host_portable_sum]
            )
        elif target.estimate is not None:
            g = load_graph(tflite)
            _, trace = IntegerReference(g).run(zs[:1].reshape(1, -1), trace=True)
            per_target[name] = estimate_target(target, g, trace)
    record = {
        "model": plan.name,
        "graph": plan.graph_kind,
        "source": tflite.name,
        "stored_weights": plan.dense.weights.size + sum(c.stored_weights for c in plan.convs),
        "ring_rows": list(gen.schedule.ring_rows),
        "macs": plan.real_macs,
        "bit_exact_host": host.bit_exact,
        "mismatched_latents_vs_tflm": host.mismatched_vs_tflm,
        "mismatched_latents_vs_reference": host.mismatched_vs_reference,
        "latents_checked": host.latents_checked,
        "reference_latents_checked": host.reference_latents_checked,
        "host_checksum": host_sum,
        "host_portable_checksum": host_portable_sum,
        "tflm_arena_bytes": host.tflm_arena_bytes,
        "targets": per_target,
        "bit_exact_targets": all(t["bit_exact"] for t in per_target.values() if t["emulated"]),
    }
    if "cortex-m4" in per_target:  # the field's name before the other cores (tests and README read it)
        record["bit_exact_cortex_m4"] = per_target["cortex-m4"]["bit_exact"]
    if callgrind:
        ours = host_decode_instructions(gen, work)
        tflm = tflm_invoke_instructions(tflite, host.tflm_arena_bytes, plan.input_size, work)
        record |= {
            "host_instructions_per_decode": round(ours),
            "tflm_host_instructions_per_decode": round(tflm),
            "host_speedup_vs_tflm": tflm / ours,
        }
    return record


def model_name(text: str) -> str:
    """--model: ``all`` or a name that can be a folder under --artifacts (checked before anything runs)."""
    if text != ALL and (not re.fullmatch(EXPORT_NAME_PATTERN, text) or text in (".", "..")):
        raise argparse.ArgumentTypeError(f"{text!r} is not a model name (letters, digits, '_', '.' and '-')")
    return text


def target_summary(target: Target) -> dict:
    """What reports/firmware_c.json says of a target: its part, and how it was built, run and counted."""
    out = {"description": target.description, "clock_hz": target.clock_hz, "ram_bytes": target.ram_bytes}
    out["flash_bytes"] = target.flash_bytes
    emu = target.emulated
    if emu is None:
        return out | {"emulated": False, "estimate_basis": (target.estimate or {}).get("basis", "")}
    return out | {
        "emulated": True,
        "compiler": emu.compiler,
        "cflags": list(emu.cflags),
        "kernels": list(emu.kernels),
        "qemu": list(emu.qemu),
        "memory": emu.memory,
        "counter": emu.counter,
        "counter_basis": emu.counter_basis,
        "assumed_cpi": emu.assumed_cpi,
        "cpi_basis": emu.cpi_basis,
        "notes": emu.notes,
    }


def _yes(ok: bool) -> str:
    return "yes" if ok else "NO"


def markdown(records: list[dict], targets: dict[str, Target]) -> str:
    kb = 1024
    lines = [
        "# The int8 decoders as generated C (python -m firmware_sim.codegen)",
        "",
        "Host: gcc -O2 with AddressSanitizer/UBSan, every logit compared with TFLite Micro and the numpy integer "
        "reference. Each emulated core: its compiler and flags (firmware_sim/targets/<core>/target.json), the "
        "measurement harness run on QEMU with -icount shift=0; its checksum of every logit must equal the host's "
        "(bit-exact); instructions from the core's counter, checked in the same run on a loop of known length; "
        "RAM = .data + .bss of the decoder object + the stack high-water mark of a decode (painted stack); flash "
        "= .text + .rodata of the decoder object; fits = RAM + 16 KB for the application ≤ the part's RAM and "
        "flash ≤ its flash. QEMU counts instructions, not cycles: **milliseconds are estimates** (instructions × "
        "an assumed CPI at the part's clock, both stated below); for a core not emulated, the MAC-rate estimate "
        "of make simulate.",
        "",
        "| model | graph | target | kernel | RAM | flash | fits (RAM / flash) | bit-exact | instr/decode | "
        "instr/MAC | est. ms |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in records:
        for name, t in r["targets"].items():
            head = f"| {r['model']} | {r['graph']} | {name} |"
            if not t["emulated"]:
                lines.append(
                    f"{head} - | - | - | - | not emulated | - | - | "
                    f"{t['estimated_ms_from_macs']:.1f} (estimate from MACs) |"
                )
                continue
            lines.append(
                f"{head} {t['kernel']} | {t['ram_bytes'] / kb:.1f} KB | {t['flash_bytes'] / kb:.1f} KB | "
                f"{_yes(t['ram_fits'])} / {_yes(t['flash_fits'])} | {_yes(t['bit_exact'])} ({t['latents']}) | "
                f"{t['instructions_per_decode'] / 1e6:.2f} M | {t['instructions_per_mac']:.2f} | "
                f"{t['estimated_ms']:.1f} (estimate, CPI {t['assumed_cpi']} @ {t['clock_hz'] / 1e6:.0f} MHz) |"
            )
    lines += [
        "",
        "MACs are the real multiply-accumulates: stored (non-zero-tap) weights times input pixels inside the image.",
        "",
        "| model | graph | MACs | TFLM arena | bit-exact host | host instr | TFLM host instr | host speed-up |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in records:
        host = (
            f"{r['host_instructions_per_decode'] / 1e6:.2f} M" if "host_instructions_per_decode" in r else "-"
        )
        tflm = (
            f"{r['tflm_host_instructions_per_decode'] / 1e6:.1f} M"
            if "tflm_host_instructions_per_decode" in r
            else "-"
        )
        speed = f"{r['host_speedup_vs_tflm']:.1f}x" if "host_speedup_vs_tflm" in r else "-"
        lines.append(
            f"| {r['model']} | {r['graph']} | {r['macs'] / 1e6:.2f} M | {r['tflm_arena_bytes'] / kb:.1f} KB | "
            f"{_yes(r['bit_exact_host'])} ({r['latents_checked']}) | {host} | {tflm} | {speed} |"
        )
    lines += [
        "",
        "| model | graph | target | RAM: .data / .bss / stack | ring rows | calibration (instructions / counts) | "
        "instr/decode per kernel |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in records:
        for name, t in r["targets"].items():
            if not t["emulated"]:
                continue
            b, c = t["ram_breakdown"], t["calibration"]
            per_kernel = ", ".join(
                f"{k} {v / 1e6:.2f} M" for k, v in t["kernel_instructions_per_decode"].items()
            )
            lines.append(
                f"| {r['model']} | {r['graph']} | {name} | {b['data']} / {b['bss']} / {b['stack']} B | "
                f"{r['ring_rows']} | {c['instructions']} / {c['ticks']} | {per_kernel} |"
            )
    lines += ["", "## Targets", ""]
    for name, t in targets.items():
        emu = t.emulated
        if emu is None:
            lines.append(f"- **{name}**: {t.description}. Not emulated: estimate only.")
            continue
        lines.append(
            f"- **{name}**: {t.description}. QEMU `{' '.join(emu.qemu[:3])}`; `{emu.compiler} "
            f"{' '.join(emu.cflags)}`; kernels {', '.join(emu.kernels)}{f' ({emu.notes})' if emu.notes else ''}. "
            f"Memory: {emu.memory}. Counter: {emu.counter_basis}. Assumed CPI {emu.assumed_cpi}: {emu.cpi_basis}."
        )
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = parser("python -m firmware_sim.measure", __doc__)
    p.add_argument(
        "--model",
        type=model_name,
        default=ALL,
        help="an exported model under --artifacts: a built-in or your own (default: all of them)",
    )
    p.add_argument(
        "--graph", choices=(*GRAPHS, ALL), default=ALL, help="default: every int8 graph the export has"
    )
    p.add_argument(
        "--target",
        choices=(*all_targets(), ALL),
        default=ALL,
        help="one target of firmware_sim/targets/ (default: all; those not emulated are estimated)",
    )
    p.add_argument("--artifacts", default="artifacts")
    p.add_argument(
        "--latents",
        type=positive_int,
        default=1000,
        help="random int8 latents checked on the host (default 1000)",
    )
    p.add_argument(
        "--mcu-latents",
        "--m4-latents",
        dest="mcu_latents",
        type=positive_int,
        default=16,
        help="latents decoded on each emulated core (default 16)",
    )
    p.add_argument("--seed", type=nonnegative_int, default=0)
    p.add_argument("--no-callgrind", action="store_true", help="skip the host instruction counts (valgrind)")
    p.add_argument("--build", default=None, help="keep the builds here (default: a temporary folder)")
    p.add_argument("--reports", default="reports")
    return p.parse_args(argv)


@cli_main
def main(args: argparse.Namespace) -> int:
    targets = all_targets()
    if args.target != ALL:
        targets = {args.target: targets[args.target]}
    require_tools({k: t for k, t in targets.items() if t.emulated is not None})
    sources = exported_sources(Path(args.artifacts), args.model, args.graph)
    reports = ensure_writable_dir(args.reports)
    records, skipped = [], []
    with tempfile.TemporaryDirectory(prefix="vae-edge-firmware-") as tmp:
        root = Path(args.build) if args.build else Path(tmp)
        for folder, graphs in sources:
            for graph in graphs:
                work = ensure_writable_dir(root / folder.parent.name / graph)
                try:
                    rec = measure_graph(
                        folder,
                        graph,
                        work,
                        latents=args.latents,
                        mcu_latents=args.mcu_latents,
                        seed=args.seed,
                        targets=targets,
                        callgrind=not args.no_callgrind,
                    )
                except UnsupportedOpError as exc:
                    if args.model != ALL:
                        raise
                    # --model all over a folder with a user's decoder the generator cannot take yet: say so
                    # and measure the others.
                    skipped.append({"model": folder.parent.name, "graph": graph, "reason": str(exc)})
                    print(f"skipped {folder.parent.name}/{graph}: {exc}", file=sys.stderr)
                    continue
                records.append(rec)
                cores = ", ".join(
                    f"{n} {'bit-exact' if t['bit_exact'] else 'NOT bit-exact'} "
                    f"{t['instructions_per_decode'] / 1e6:.2f} M instr, {t['ram_bytes']} B RAM"
                    for n, t in rec["targets"].items()
                    if t["emulated"]
                )
                print(
                    f"{rec['model']}/{graph}: bit-exact host {rec['bit_exact_host']} ({rec['latents_checked']}); "
                    f"{cores}",
                    file=sys.stderr,
                )
    write_json_atomic(
        reports / "firmware_c.json",
        {
            "host_flags": HOST_FLAGS + SANITIZE_FLAGS,
            "targets": {k: target_summary(t) for k, t in targets.items()},
            "records": records,
            "skipped": skipped,
        },
    )
    md = markdown(records, targets)
    if skipped:
        md += "\n## Not generated\n\n" + "".join(
            f"- {s['model']}/{s['graph']}: {s['reason']}\n" for s in skipped
        )
    write_text_atomic(reports / "firmware_c.md", md)
    print(f"firmware_sim.measure -> {reports / 'firmware_c.md'}", file=sys.stderr)
    if not records:
        raise VaeEdgeError("the C generator took none of the exported decoders (reasons above)")
    return 0 if all(r["bit_exact_host"] and r["bit_exact_targets"] for r in records) else 1


if __name__ == "__main__":
    sys.exit(main(parse_args()))
