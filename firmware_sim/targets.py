"""Microcontroller targets as data, and the fit / latency estimate of a graph on them.

One folder per target, ``firmware_sim/targets/<name>/``, holding ``target.json`` and whatever only that target
uses (a linker script, start-up code). A new core is a new folder, nothing else. ``target.json``:

- ``description``, ``clock_hz``, ``ram_bytes``, ``flash_bytes``: the part the verdicts are for (a representative
  chip of that core; "fits" = RAM needed + 16 KB for the application ≤ ``ram_bytes``, flash ≤ ``flash_bytes``);
- ``estimate`` (optional): int8 MACs per cycle per op kind and cycles per output byte of element-wise ops, with
  their ``basis``. Engineering estimates, not measurements: the ISA's peak times an assumed efficiency for
  im2col, requantization and loop overhead. ``python -m firmware_sim`` (``make simulate``) estimates latency
  on the targets that have one; replace the figures with a measured one from a board when you have one;
- ``emulated`` (optional): how ``python -m firmware_sim.measure`` (``make firmware``) builds the generated C
  decoder for the core and runs it on QEMU: ``arch`` (arm or riscv: picks the harness's counter and stack
  code), ``compiler``, ``size`` (binutils' size), ``cflags``, ``kernels`` (the C decoder's inner loops to build,
  each checked bit-exact; the first is the one measured: see measure.KERNELS), ``linker_script`` and
  ``sources`` (start-up; each name is looked up in the target's folder, then in firmware_sim/mcu/, which holds
  what several targets share), ``link_flags``, ``qemu`` (``binary``, ``machine``, ``cpu`` or null, ``args``; the
  ELF follows ``-kernel``), ``memory`` (the board's memory map, where it came from), ``counter`` (how
  instructions are counted: ``systick`` with its ``clock_hz``, whose tick under ``-icount shift=0`` is
  1e9 / clock_hz instructions, or ``instret``, one per instruction; every run checks it on a loop of known
  length), ``cpi`` (``assumed`` cycles per instruction and its ``basis``: milliseconds from it are estimates),
  and ``requires`` (``commands`` and ``compiler_files`` -> the Debian package that provides each).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from runtime.errors import VaeEdgeError

from .graph import Graph

TARGETS_DIR = Path(__file__).with_name("targets")
SHARED_DIR = Path(__file__).with_name("mcu")  # start-up, linker script and harness several targets share
APP_HEADROOM_BYTES = 16 * 1024  # RAM left for the application beside the decoder, for the "fits" verdict
ARCHES = ("arm", "riscv")
COUNTERS = {"arm": ("systick",), "riscv": ("instret",)}  # what harness.c reads on each architecture
ICOUNT = ("-icount", "shift=0")  # one instruction per virtual nanosecond: what the counters' scale rests on


@dataclass(frozen=True)
class Emulation:
    """How one core's decoder is built and run on QEMU (``target.json``'s ``emulated``)."""

    arch: str
    compiler: str
    size: str
    cflags: tuple[str, ...]
    kernels: tuple[str, ...]
    linker_script: Path
    sources: tuple[Path, ...]
    link_flags: tuple[str, ...]
    qemu: tuple[str, ...]  # the command up to and including -kernel; the ELF follows
    machine: str
    memory: str
    counter: str  # systick or instret
    counter_clock_hz: float | None  # systick only
    counter_basis: str
    assumed_cpi: float
    cpi_basis: str
    commands: dict[str, str]  # command -> Debian package
    compiler_files: dict[str, str]  # file the compiler must find (-print-file-name) -> Debian package
    notes: str = ""

    @property
    def instructions_per_tick(self) -> float:
        """What one count of the counter is worth in instructions under -icount shift=0 (nominal; each run
        re-measures it)."""
        return 1e9 / self.counter_clock_hz if self.counter == "systick" else 1.0


@dataclass(frozen=True)
class Target:
    name: str
    folder: Path
    description: str
    clock_hz: float
    ram_bytes: int
    flash_bytes: int
    estimate: dict | None  # macs_per_cycle, elementwise_cycles_per_byte, basis
    emulated: Emulation | None

    def profile(self) -> dict:
        """The flat profile python -m firmware_sim estimates with and writes into reports/firmware.json."""
        return {
            "description": self.description,
            "clock_hz": self.clock_hz,
            "ram_bytes": self.ram_bytes,
            "flash_bytes": self.flash_bytes,
            **(self.estimate or {}),
        }


JSON_NAMES = {str: "string", int: "integer", list: "array", dict: "object"}


def _field(entry: dict, key: str, kind, where: Path):
    if key not in entry:
        raise VaeEdgeError(f"{where}: no '{key}'; every target names it (see firmware_sim/targets.py)")
    value = entry[key]
    if not isinstance(value, kind) or isinstance(value, bool):
        wanted = "a number" if isinstance(kind, tuple) else f"a JSON {JSON_NAMES[kind]}"
        raise VaeEdgeError(f"{where}: '{key}' is {json.dumps(value)[:40]}, not {wanted}")
    return value


def _find_file(name: str, folder: Path, where: Path) -> Path:
    for candidate in (folder / name, SHARED_DIR / name):
        if candidate.is_file():
            return candidate
    raise VaeEdgeError(
        f"{where}: '{name}' is in neither {folder} nor {SHARED_DIR}; add it to the target's folder"
    )


def _emulation(entry: dict, folder: Path, where: Path) -> Emulation:
    arch = _field(entry, "arch", str, where)
    if arch not in ARCHES:
        raise VaeEdgeError(f"{where}: arch '{arch}' is not one of {', '.join(ARCHES)} (the harness's)")
    qemu = _field(entry, "qemu", dict, where)
    args = [str(a) for a in _field(qemu, "args", list, where)]
    if not any(args[k : k + 2] == list(ICOUNT) for k in range(len(args))):
        raise VaeEdgeError(
            f"{where}: qemu args lack '-icount shift=0', which the instruction counter rests on"
        )
    cpu = qemu.get("cpu")
    command = (
        _field(qemu, "binary", str, where),
        "-M",
        _field(qemu, "machine", str, where),
        *(("-cpu", str(cpu)) if cpu else ()),
        *args,
        "-kernel",
    )
    counter = _field(entry, "counter", dict, where)
    kind = _field(counter, "kind", str, where)
    if kind not in COUNTERS[arch]:
        raise VaeEdgeError(
            f"{where}: counter '{kind}' is not what harness.c reads on {arch} ({COUNTERS[arch][0]})"
        )
    clock = float(_field(counter, "clock_hz", (int, float), where)) if kind == "systick" else None
    if clock is not None and clock <= 0:
        raise VaeEdgeError(f"{where}: counter clock_hz must be positive")
    cpi = _field(entry, "cpi", dict, where)
    requires = _field(entry, "requires", dict, where)
    kernels = tuple(_field(entry, "kernels", list, where))
    if not kernels:
        raise VaeEdgeError(f"{where}: 'kernels' is empty; name at least 'portable'")
    return Emulation(
        arch=arch,
        compiler=_field(entry, "compiler", str, where),
        size=_field(entry, "size", str, where),
        cflags=tuple(_field(entry, "cflags", list, where)),
        kernels=kernels,
        linker_script=_find_file(_field(entry, "linker_script", str, where), folder, where),
        sources=tuple(_find_file(s, folder, where) for s in _field(entry, "sources", list, where)),
        link_flags=tuple(_field(entry, "link_flags", list, where)),
        qemu=command,
        machine=qemu["machine"],
        memory=_field(entry, "memory", str, where),
        counter=kind,
        counter_clock_hz=clock,
        counter_basis=_field(counter, "basis", str, where),
        assumed_cpi=float(_field(cpi, "assumed", (int, float), where)),
        cpi_basis=_field(cpi, "basis", str, where),
        commands=dict(requires.get("commands", {})),
        compiler_files=dict(requires.get("compiler_files", {})),
        notes=entry.get("notes", ""),
    )


def load_target(folder: Path) -> Target:
    """One target from its folder; a malformed entry is one VaeEdgeError naming the file and the field."""
    where = Path(folder) / "target.json"
    try:
        entry = json.loads(where.read_text())
    except FileNotFoundError:
        raise VaeEdgeError(f"{where} not found; a target folder holds its target.json") from None
    except json.JSONDecodeError as exc:
        raise VaeEdgeError(f"{where}: not valid JSON ({exc.msg}, line {exc.lineno})") from None
    if not isinstance(entry, dict):
        raise VaeEdgeError(f"{where}: not a JSON object")
    estimate = entry.get("estimate")
    if estimate is not None:
        for key in ("macs_per_cycle", "elementwise_cycles_per_byte"):
            if "default" not in _field(estimate, key, dict, where):
                raise VaeEdgeError(f"{where}: estimate's '{key}' has no 'default' rate")
        _field(estimate, "basis", str, where)
    emulated = entry.get("emulated")
    return Target(
        name=Path(folder).name,
        folder=Path(folder),
        description=_field(entry, "description", str, where),
        clock_hz=float(_field(entry, "clock_hz", (int, float), where)),
        ram_bytes=int(_field(entry, "ram_bytes", int, where)),
        flash_bytes=int(_field(entry, "flash_bytes", int, where)),
        estimate=estimate,
        emulated=_emulation(emulated, Path(folder), where) if emulated is not None else None,
    )


def all_targets(path: Path = TARGETS_DIR) -> dict[str, Target]:
    """Every target folder under ``path``, by name (natural order: cortex-m4 before cortex-m33)."""
    folders = sorted(
        (p for p in Path(path).iterdir() if p.is_dir() and (p / "target.json").is_file()),
        key=lambda p: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", p.name)],
    )
    return {f.name: load_target(f) for f in folders}


def emulated_targets(path: Path = TARGETS_DIR) -> dict[str, Target]:
    return {k: t for k, t in all_targets(path).items() if t.emulated is not None}


def load_targets(path: Path = TARGETS_DIR) -> dict:
    """The flat profiles of the targets with a MAC-rate estimate (what python -m firmware_sim estimates on)."""
    return {k: t.profile() for k, t in all_targets(path).items() if t.estimate is not None}


def estimate_latency(graph: Graph, layer_macs: list[tuple[str, int]], target: dict) -> dict:
    """Cycles per op from its MACs (or, for element-wise ops, its output bytes) and the target's rates."""
    cycles = []
    for op, (kind, macs) in zip(graph.ops, layer_macs, strict=True):
        if macs:
            rate = target["macs_per_cycle"].get(kind, target["macs_per_cycle"]["default"])
            cycles.append(macs / rate)
        else:
            per_byte = target["elementwise_cycles_per_byte"].get(
                kind, target["elementwise_cycles_per_byte"]["default"]
            )
            cycles.append(per_byte * int(np.prod(graph.tensors[op.outputs[0]].shape)))
    total = float(sum(cycles))
    return {
        "cycles": total,
        "ms": total / target["clock_hz"] * 1e3,
        "per_op_ms": [c / target["clock_hz"] * 1e3 for c in cycles],
    }


def fits(ram_needed: int, flash_needed: int, target: dict) -> dict:
    return {
        "fits": ram_needed + APP_HEADROOM_BYTES <= target["ram_bytes"]
        and flash_needed <= target["flash_bytes"],
        "ram_fits": ram_needed + APP_HEADROOM_BYTES <= target["ram_bytes"],
        "flash_fits": flash_needed <= target["flash_bytes"],
        "ram_free_bytes": target["ram_bytes"] - ram_needed,
    }
