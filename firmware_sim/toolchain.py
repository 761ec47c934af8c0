"""The builds behind ``make firmware`` (firmware_sim/measure.py): the tools it needs, running them, and compiling
the generated C decoder with the measurement harness.

Host: host_check (firmware_sim/mcu/host_check.c) under AddressSanitizer and UBSan, and the measurement harness
(firmware_sim/mcu/harness.c), each on the SSE2 path or the portable C path. Each emulated target
(firmware_sim/targets/): the decoder object for one kernel of its entry, built with the entry's compiler and
flags once the compiler is seen to define what the kernel needs, and sized (.text + .rodata, .data, .bss); and
the harness ELF linked with the entry's start-up and linker script. firmware_sim/measure.py runs, checks and
counts what these build.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from runtime.errors import VaeEdgeError

from .codegen import GeneratedDecoder, c_identifier
from .targets import SHARED_DIR, TARGETS_DIR, Target, emulated_targets, load_target

MCU_DIR = SHARED_DIR  # harness.c, host_check.c and what several targets share
HOST_FLAGS = ["-std=c99", "-O2", "-Wall", "-Wextra", "-Werror"]
SANITIZE_FLAGS = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all"]
# The C decoder's inner loops a target may build (target.json's "kernels"), as compiler flags, and the macro the
# compiler must define for the loops to be the ones named (the generated C falls back to portable C silently).
# The generated C prefers Helium (kernels/mve.h) where the core has it, so "dsp" says -DVAE_EDGE_NO_HELIUM:
# on the Cortex-M55 that builds the M4's SMLAD loops, elsewhere it changes nothing.
KERNELS = {
    "helium": {"flags": (), "needs": "__ARM_FEATURE_MVE"},
    "dsp": {"flags": ("-DVAE_EDGE_NO_HELIUM",), "needs": "__ARM_FEATURE_DSP"},
    "portable": {"flags": ("-DVAE_EDGE_PORTABLE",), "needs": None},
}

# The Cortex-M4 as the names tests, the example app and README's commands use (targets/cortex-m4/target.json).
CORTEX_M4 = load_target(TARGETS_DIR / "cortex-m4")
M4_FLAGS = list(CORTEX_M4.emulated.cflags)
QEMU_CMD = list(CORTEX_M4.emulated.qemu)  # ends with -kernel: append the ELF
INSTRUCTIONS_PER_TICK = CORTEX_M4.emulated.instructions_per_tick  # 40: SysTick at the 25 MHz processor clock


# -------------------------------------------------------------------------------------------------- tools
HOST_TOOLS = {"gcc": "gcc", "valgrind": "valgrind"}


def missing_tools(targets: dict[str, Target] | None = None) -> dict[str, str]:
    """What `make firmware` needs for ``targets`` (default: every emulated one) and this machine lacks: each
    missing command or compiler file -> the Debian package that provides it."""
    targets = emulated_targets() if targets is None else targets
    missing = {t: p for t, p in HOST_TOOLS.items() if not shutil.which(t)}
    for target in targets.values():
        emu = target.emulated
        if emu is None:
            continue
        missing |= {t: p for t, p in emu.commands.items() if not shutil.which(t)}
        for name, package in emu.compiler_files.items():
            found = ""
            if shutil.which(emu.compiler):
                found = subprocess.run(
                    [emu.compiler, f"-print-file-name={name}"], capture_output=True, text=True
                ).stdout.strip()
            if not Path(found).is_file():  # unknowable without the cross compiler: name its package too
                missing[f"{package} ({name})"] = package
    return missing


def require_tools(targets: dict[str, Target] | None = None) -> None:
    missing = missing_tools(targets)
    if missing:
        packages = " ".join(dict.fromkeys(missing.values()))
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
        f"-DVAE_EDGE_INPUT_SIZE={gen.plan.input_size}",
        f"-DVAE_EDGE_OUTPUT_SIZE={gen.plan.out_size}",
    ]


# -------------------------------------------------------------------------------------------- host builds
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


# ------------------------------------------------------------------------------------------ target builds
@dataclass(frozen=True)
class TargetBuild:
    target: str
    kernel: str
    elf: Path
    text_bytes: int  # .text + .rodata of the decoder object
    data_bytes: int
    bss_bytes: int


def object_size(target: Target, obj: Path) -> tuple[int, int, int]:
    """(text incl. rodata, data, bss) of an object file, as binutils' size reports them (Berkeley format)."""
    lines = _run([target.emulated.size, "-B", str(obj)]).strip().splitlines()
    text, data, bss = (int(v) for v in lines[1].split()[:3])
    return text, data, bss


def _check_kernel(target: Target, kernel: str) -> list[str]:
    """The kernel's flags, once the compiler is seen to define the macro its loops need."""
    emu = target.emulated
    if kernel not in KERNELS:
        raise VaeEdgeError(
            f"{target.folder / 'target.json'}: kernel '{kernel}' is not one of {', '.join(KERNELS)} "
            "(firmware_sim/toolchain.py's KERNELS)"
        )
    spec = KERNELS[kernel]
    if spec["needs"]:
        macros = _run([emu.compiler, *emu.cflags, "-dM", "-E", "-x", "c", "/dev/null"])
        if not re.search(rf"^#define {spec['needs']}\b", macros, re.M):
            raise VaeEdgeError(
                f"{target.name}: {emu.compiler} {' '.join(emu.cflags)} does not define {spec['needs']}, so the "
                f"'{kernel}' kernel would build as portable C; add the extension to cflags or drop the kernel"
            )
    return list(spec["flags"])


def build_target(
    target: Target,
    gen: GeneratedDecoder,
    out: Path,
    *,
    latents: int,
    kernel: str,
    defines: tuple[str, ...] = (),
) -> TargetBuild:
    """The decoder object (sized) and the harness ELF for one target and kernel; ``defines`` go to the harness
    (e.g. -DVAE_EDGE_CALIBRATION_LOOPS=N)."""
    emu = target.emulated
    if emu is None:
        raise VaeEdgeError(f"{target.name} has no 'emulated' entry; it can only be estimated (make simulate)")
    extra = _check_kernel(target, kernel)
    obj = out / f"decoder_{target.name}_{kernel}.o"
    _run([emu.compiler, *emu.cflags, *extra, "-c", str(gen.source), "-o", str(obj)])
    tag = "".join(d.replace("-DVAE_EDGE_", "_").replace("=", "") for d in defines)
    elf = out / f"harness_{target.name}_{kernel}_{latents}{tag}.elf"
    _run(
        [
            emu.compiler,
            *emu.cflags,
            *extra,
            *_defines(gen),
            f"-DVAE_EDGE_CHECK_LATENTS={latents}",
            *defines,
            *emu.link_flags,
            "-T",
            str(emu.linker_script),
            *map(str, emu.sources),
            str(MCU_DIR / "harness.c"),
            str(obj),
            "-o",
            str(elf),
        ]
    )
    return TargetBuild(target.name, kernel, elf, *object_size(target, obj))


def build_cortex_m4(gen: GeneratedDecoder, out: Path, *, latents: int, portable: bool = False) -> TargetBuild:
    return build_target(CORTEX_M4, gen, out, latents=latents, kernel="portable" if portable else "dsp")
