"""Build, check and measure the generated C decoders: host (gcc, sanitizers, callgrind) and Cortex-M4 (QEMU).

    python -m firmware_sim.measure --artifacts artifacts --reports reports          # make firmware
    python -m firmware_sim.measure --model vae2d --latents 1000 --m4-latents 16

For each model and graph (transposed, sub-pixel): generate ``<model>_decoder.{h,c}`` (firmware_sim.codegen);
compile it for the host with ``gcc -std=c99 -O2 -Wall -Wextra -Werror -fsanitize=address,undefined`` and demand
bit-exact logits against TFLite Micro and the numpy integer reference on random int8 latents; cross-compile it
for the Cortex-M4 (``arm-none-eabi-gcc -mcpu=cortex-m4 -mthumb -mfloat-abi=hard -mfpu=fpv4-sp-d16 -O2``, newlib
semihosting) and run the measurement harness (firmware_sim/mcu/) on QEMU's mps2-an386 with ``-icount shift=0``:
its checksum must equal the host build's; instructions come from the SysTick (processor clock) calibrated in
the same run on a loop of known length; RAM = .data + .bss of the decoder object + the painted-stack high-water
mark of a decode; flash = .text + .rodata. Host instructions per decode: callgrind with collection toggled on
the decode function, and on ``tflite::micro::MicroInterpreter::Invoke()`` for TFLM on the same model.
Writes reports/firmware_c.{json,md}; exits 1 if any check is not bit-exact.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from runtime.cli import cli_main, nonnegative_int, parser, positive_int
from runtime.errors import VaeEdgeError
from runtime.fileio import ensure_writable_dir, write_json_atomic, write_text_atomic
from runtime.vocab import ALL, VAE_MODELS

from .codegen import GRAPHS, GeneratedDecoder, c_identifier, generate, resolve_source

MCU_DIR = Path(__file__).resolve().parent / "mcu"
HOST_FLAGS = ["-std=c99", "-O2", "-Wall", "-Wextra", "-Werror"]
SANITIZE_FLAGS = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all"]
M4_FLAGS = [
    "-mcpu=cortex-m4",
    "-mthumb",
    "-mfloat-abi=hard",
    "-mfpu=fpv4-sp-d16",
    "-O2",
    "-std=c99",
    "-Wall",
    "-Wextra",
    "-Werror",
]
QEMU_CMD = [
    "qemu-system-arm",
    "-M",
    "mps2-an386",
    "-nographic",
    "-semihosting",
    "-icount",
    "shift=0",
    "-kernel",
]
INSTRUCTIONS_PER_TICK = 40  # -icount shift=0: 1 ns per instruction; SysTick at the 25 MHz processor clock
M4_CLOCK_HZ = 80e6
ASSUMED_CPI = 1.25  # Cortex-M4 at 0 wait states: 1-cycle SMLAD/ALU, 2-cycle loads (pipelined back-to-back)
TFLM_INVOKE_SYMBOL = "tflite::micro::MicroInterpreter::Invoke()"


# -------------------------------------------------------------------------------------------------- tools
def missing_tools() -> list[str]:
    """What `make firmware` needs and this machine lacks (commands, and newlib's semihosting specs)."""
    missing = [
        t
        for t in ("gcc", "arm-none-eabi-gcc", "arm-none-eabi-size", "qemu-system-arm", "valgrind")
        if not shutil.which(t)
    ]
    found = ""
    if "arm-none-eabi-gcc" not in missing:
        found = subprocess.run(
            ["arm-none-eabi-gcc", "-print-file-name=rdimon.specs"], capture_output=True, text=True
        ).stdout.strip()
    if not Path(found).is_file():  # newlib's semihosting specs (unknowable without the cross compiler)
        missing.append("newlib (rdimon.specs)")
    return missing


TOOL_PACKAGES = {
    "gcc": "gcc",
    "arm-none-eabi-gcc": "gcc-arm-none-eabi",
    "arm-none-eabi-size": "binutils-arm-none-eabi",
    "qemu-system-arm": "qemu-system-arm",
    "valgrind": "valgrind",
    "newlib (rdimon.specs)": "libnewlib-arm-none-eabi",
}


def require_tools() -> None:
    missing = missing_tools()
    if missing:
        packages = " ".join(dict.fromkeys(TOOL_PACKAGES[t] for t in missing))
        raise VaeEdgeError(
            f"missing {', '.join(missing)}; install them with: "
            f"apt-get update && apt-get install -y --no-install-recommends {packages}"
        )


def _run(cmd: list[str], *, timeout: float = 600, cwd: Path | None = None) -> str:
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=cwd)
    except subprocess.TimeoutExpired:
        raise VaeEdgeError(
            f"{Path(cmd[0]).name} timed out after {timeout:.0f} s: {' '.join(map(str, cmd))}"
        ) from None
    if res.returncode != 0:
        tail = (res.stderr or res.stdout).strip().splitlines()[-12:]
        raise VaeEdgeError(f"{Path(cmd[0]).name} failed (exit {res.returncode}): {' | '.join(tail)}")
    return res.stdout


def _defines(gen: GeneratedDecoder) -> list[str]:
    m = c_identifier(gen.plan.name)
    return [
        f"-I{gen.source.parent}",
        f'-DVAE_EDGE_DECODER_H="{m}_decoder.h"',
        f"-DVAE_EDGE_DECODE={m}_decode",
        f"-DVAE_EDGE_LATENT_DIM={gen.plan.latent_dim}",
    ]


# ---------------------------------------------------------------------------------------------- host side
def build_host_check(gen: GeneratedDecoder, out: Path, *, portable: bool = False) -> Path:
    """host_check under AddressSanitizer and UBSan, warnings as errors: the SSE2 path on x86-64, or the
    portable C path if asked."""
    exe = out / f"host_check{'_portable' if portable else ''}"
    _run(
        [
            "gcc",
            *HOST_FLAGS,
            *SANITIZE_FLAGS,
            *(["-DVAE_EDGE_PORTABLE"] if portable else []),
            *_defines(gen),
            str(gen.source),
            str(MCU_DIR / "host_check.c"),
            "-o",
            str(exe),
        ]
    )
    return exe


def build_host_harness(gen: GeneratedDecoder, out: Path, latents: int, *, portable: bool = False) -> Path:
    """The measurement harness for the host: the SSE2 path on x86-64, or the portable C path if asked."""
    exe = out / f"harness_host_{'portable' if portable else 'native'}_{latents}"
    _run(
        [
            "gcc",
            *HOST_FLAGS,
            *(["-DVAE_EDGE_PORTABLE"] if portable else []),
            "-g",
            *_defines(gen),
            f"-DVAE_EDGE_CHECK_LATENTS={latents}",
            str(gen.source),
            str(MCU_DIR / "harness.c"),
            "-o",
            str(exe),
        ]
    )
    return exe


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


def tflm_invoke_instructions(tflite: Path, arena: int, latent_dim: int, out: Path, invokes: int = 2) -> float:
    script = out / "tflm_invoke.py"
    script.write_text(TFLM_INVOKE_SCRIPT)
    cmd = [sys.executable, str(script), str(tflite), str(arena + 1024), str(invokes), str(latent_dim)]
    return callgrind_instructions(cmd, TFLM_INVOKE_SYMBOL, out) / invokes


# ----------------------------------------------------------------------------------------- Cortex-M4 side
@dataclass(frozen=True)
class M4Build:
    elf: Path
    text_bytes: int  # .text + .rodata of the decoder object
    data_bytes: int
    bss_bytes: int


def arm_size(obj: Path) -> tuple[int, int, int]:
    """(text incl. rodata, data, bss) of an object file, as arm-none-eabi-size's Berkeley format reports."""
    lines = _run(["arm-none-eabi-size", "-B", str(obj)]).strip().splitlines()
    text, data, bss = (int(v) for v in lines[1].split()[:3])
    return text, data, bss


def build_cortex_m4(gen: GeneratedDecoder, out: Path, *, latents: int, portable: bool = False) -> M4Build:
    tag = "portable" if portable else "dsp"
    extra = ["-DVAE_EDGE_PORTABLE"] if portable else []
    obj = out / f"decoder_m4_{tag}.o"
    _run(["arm-none-eabi-gcc", *M4_FLAGS, *extra, "-c", str(gen.source), "-o", str(obj)])
    elf = out / f"harness_m4_{tag}_{latents}.elf"
    _run(
        [
            "arm-none-eabi-gcc",
            *M4_FLAGS,
            *_defines(gen),
            f"-DVAE_EDGE_CHECK_LATENTS={latents}",
            "--specs=rdimon.specs",
            "-nostartfiles",
            "-T",
            str(MCU_DIR / "mps2_an386.ld"),
            str(MCU_DIR / "startup.c"),
            str(MCU_DIR / "harness.c"),
            str(obj),
            "-o",
            str(elf),
        ]
    )
    return M4Build(elf, *arm_size(obj))


def run_qemu(elf: Path, *, timeout: float = 300) -> dict:
    return parse_harness(_run([*QEMU_CMD, str(elf)], timeout=timeout))


def instructions_from_ticks(result: dict, ticks: int) -> float:
    """SysTick ticks -> instructions, with the ratio the same run measured on its calibration loop."""
    per_tick = result["calibration_instructions"] / result["calibration_ticks"]
    return ticks * per_tick


# ------------------------------------------------------------------------------------------------ records
def measure_graph(
    source: Path, graph: str, work: Path, *, latents: int, m4_latents: int, seed: int, callgrind: bool = True
) -> dict:
    gen_dir = work / "generated"
    gen = generate(source=source, out=gen_dir, graph=graph)
    plan = gen.plan
    tflite, _, _, _ = resolve_source(source, graph)
    rng = np.random.default_rng(seed)
    zs = rng.integers(-128, 128, (latents, plan.latent_dim)).astype(np.int8)
    host = check_host(gen, tflite, latents=zs, out=work)
    host_sum = parse_harness(_run([str(build_host_harness(gen, work, m4_latents))]))["checksum"]
    host_portable_sum = parse_harness(_run([str(build_host_harness(gen, work, m4_latents, portable=True))]))[
        "checksum"
    ]
    m4 = build_cortex_m4(gen, work, latents=m4_latents)
    m4_run = run_qemu(m4.elf)
    portable = build_cortex_m4(gen, work, latents=m4_latents, portable=True)
    portable_run = run_qemu(portable.elf)
    m4_instr = instructions_from_ticks(m4_run, m4_run["ticks_total"]) / m4_latents
    portable_instr = instructions_from_ticks(portable_run, portable_run["ticks_total"]) / m4_latents
    ram = m4.data_bytes + m4.bss_bytes + m4_run["stack_bytes"]
    record = {
        "model": plan.name,
        "graph": plan.graph_kind,
        "source": tflite.name,
        "ram_bytes": ram,
        "ram_breakdown": {"data": m4.data_bytes, "bss": m4.bss_bytes, "stack": m4_run["stack_bytes"]},
        "flash_bytes": m4.text_bytes,
        "stored_weights": plan.dense.weights.size + sum(c.stored_weights for c in plan.convs),
        "ring_rows": list(gen.schedule.ring_rows),
        "bit_exact_host": host.bit_exact,
        "mismatched_latents_vs_tflm": host.mismatched_vs_tflm,
        "mismatched_latents_vs_reference": host.mismatched_vs_reference,
        "latents_checked": host.latents_checked,
        "reference_latents_checked": host.reference_latents_checked,
        "host_checksum": host_sum,
        "host_portable_checksum": host_portable_sum,
        "cortex_m4_checksum": m4_run["checksum"],
        "cortex_m4_portable_checksum": portable_run["checksum"],
        "bit_exact_cortex_m4": m4_run["checksum"]
        == host_sum
        == portable_run["checksum"]
        == host_portable_sum,
        "cortex_m4_latents": m4_latents,
        "macs": plan.real_macs,
        "calibration": {
            "instructions": m4_run["calibration_instructions"],
            "ticks": m4_run["calibration_ticks"],
        },
        "instructions_per_decode": round(m4_instr),
        "instructions_per_mac": m4_instr / plan.real_macs,
        "portable_instructions_per_decode": round(portable_instr),
        "latency_ms_at_80mhz": m4_instr * ASSUMED_CPI / M4_CLOCK_HZ * 1e3,
        "assumed_cpi": ASSUMED_CPI,
        "tflm_arena_bytes": host.tflm_arena_bytes,
    }
    if callgrind:
        ours = host_decode_instructions(gen, work)
        tflm = tflm_invoke_instructions(tflite, host.tflm_arena_bytes, plan.latent_dim, work)
        record |= {
            "host_instructions_per_decode": round(ours),
            "tflm_host_instructions_per_decode": round(tflm),
            "host_speedup_vs_tflm": tflm / ours,
        }
    return record


def markdown(records: list[dict]) -> str:
    kb = 1024
    lines = [
        "# The int8 decoders as generated C (python -m firmware_sim.codegen)",
        "",
        "Measured, not estimated. Host: gcc -O2 with AddressSanitizer/UBSan, every logit compared with TFLite Micro "
        "and the numpy integer reference. Cortex-M4: arm-none-eabi-gcc -O2 (DSP path: SMLAD/SXTB16), QEMU 7.2 "
        "mps2-an386 with -icount shift=0; instructions from the SysTick (processor clock), calibrated in the same run "
        "on a loop of known length; RAM = .data + .bss of the decoder object + the stack high-water mark of a decode "
        "(painted stack); flash = .text + .rodata of the decoder object. Host instructions: callgrind, collection "
        "toggled on the decode function and on TFLM's MicroInterpreter::Invoke().",
        "",
        "| model | graph | RAM | flash | TFLM arena | bit-exact host | bit-exact M4 | MACs | M4 instr/decode | "
        "M4 instr/MAC | est. ms @80 MHz | host instr | TFLM host instr | host speed-up |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
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
            f"| {r['model']} | {r['graph']} | {r['ram_bytes'] / kb:.1f} KB | {r['flash_bytes'] / kb:.1f} KB | "
            f"{r['tflm_arena_bytes'] / kb:.1f} KB | {'yes' if r['bit_exact_host'] else 'NO'} ({r['latents_checked']}) | "
            f"{'yes' if r['bit_exact_cortex_m4'] else 'NO'} ({r['cortex_m4_latents']}) | {r['macs'] / 1e6:.2f} M | "
            f"{r['instructions_per_decode'] / 1e6:.2f} M | {r['instructions_per_mac']:.2f} | "
            f"{r['latency_ms_at_80mhz']:.0f} | {host} | {tflm} | {speed} |"
        )
    lines += [
        "",
        f"Latency at 80 MHz assumes {ASSUMED_CPI} cycles per instruction (QEMU counts instructions, not cycles).",
        "MACs are the real multiply-accumulates: stored (non-zero-tap) weights times input pixels inside the image.",
        "",
        "| model | graph | RAM: .data / .bss / stack | ring rows | calibration (instructions / ticks) | "
        "portable-C M4 instr/decode |",
        "|---|---|---|---|---|---|",
    ]
    for r in records:
        b, c = r["ram_breakdown"], r["calibration"]
        lines.append(
            f"| {r['model']} | {r['graph']} | {b['data']} / {b['bss']} / {b['stack']} B | {r['ring_rows']} | "
            f"{c['instructions']} / {c['ticks']} | {r['portable_instructions_per_decode'] / 1e6:.2f} M |"
        )
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = parser("python -m firmware_sim.measure", __doc__)
    p.add_argument("--model", choices=(*VAE_MODELS, ALL), default=ALL)
    p.add_argument("--graph", choices=(*GRAPHS, ALL), default=ALL)
    p.add_argument("--artifacts", default="artifacts")
    p.add_argument(
        "--latents",
        type=positive_int,
        default=1000,
        help="random int8 latents checked on the host (default 1000)",
    )
    p.add_argument(
        "--m4-latents",
        type=positive_int,
        default=16,
        help="latents decoded on the emulated Cortex-M4 (default 16)",
    )
    p.add_argument("--seed", type=nonnegative_int, default=0)
    p.add_argument("--no-callgrind", action="store_true", help="skip the host instruction counts (valgrind)")
    p.add_argument("--build", default=None, help="keep the builds here (default: a temporary folder)")
    p.add_argument("--reports", default="reports")
    return p.parse_args(argv)


@cli_main
def main(args: argparse.Namespace) -> int:
    require_tools()
    names = VAE_MODELS if args.model == ALL else (args.model,)
    graphs = GRAPHS if args.graph == ALL else (args.graph,)
    sources = []
    for name in names:
        folder = Path(args.artifacts) / name / "export"
        if not (folder / "manifest.json").is_file():
            raise VaeEdgeError(f"{folder}/manifest.json not found; run make train export (or pass --model)")
        sources.append(folder)
    reports = ensure_writable_dir(args.reports)
    records = []
    with tempfile.TemporaryDirectory(prefix="vae-edge-firmware-") as tmp:
        root = Path(args.build) if args.build else Path(tmp)
        for folder in sources:
            for graph in graphs:
                work = ensure_writable_dir(root / folder.parent.name / graph)
                rec = measure_graph(
                    folder,
                    graph,
                    work,
                    latents=args.latents,
                    m4_latents=args.m4_latents,
                    seed=args.seed,
                    callgrind=not args.no_callgrind,
                )
                records.append(rec)
                print(
                    f"{rec['model']}/{graph}: RAM {rec['ram_bytes']} B, flash {rec['flash_bytes']} B, bit-exact "
                    f"host {rec['bit_exact_host']} ({rec['latents_checked']}), M4 {rec['bit_exact_cortex_m4']}, "
                    f"{rec['instructions_per_decode']} M4 instructions ({rec['instructions_per_mac']:.2f}/MAC)",
                    file=sys.stderr,
                )
    write_json_atomic(
        reports / "firmware_c.json",
        {"m4_flags": M4_FLAGS, "host_flags": HOST_FLAGS + SANITIZE_FLAGS, "records": records},
    )
    write_text_atomic(reports / "firmware_c.md", markdown(records))
    print(f"firmware_sim.measure -> {reports / 'firmware_c.md'}", file=sys.stderr)
    return 0 if all(r["bit_exact_host"] and r["bit_exact_cortex_m4"] for r in records) else 1


if __name__ == "__main__":
    sys.exit(main(parse_args()))
