"""Prove the Raspberry Pi path on an emulated one: the runtime alone, installed from aarch64 wheels, in a Debian 12
arm64 root run through qemu-user, must reproduce the host's outputs (``make pi-check``; needs root).

    sudo python -m tools.pi.check --artifacts artifacts --data ../shared/data/mnist.npz --boards pi4,pi5
    python -m tools.pi.check dump --artifacts DIR --out outputs.npz     # (runs inside the emulated board)

Steps: register qemu-aarch64 with binfmt_misc (fix-binary flag); build once, cached outside the repository, a
Debian 12 arm64 root with ``debootstrap --variant=minbase --include=python3,python3-venv,python3-pip``; download
the runtime's aarch64 wheels on the host and install only them, offline, into a venv in the root; copy the
``make pi-bundle`` tarball in; then for each board mount /proc and /sys, bind an arm64 /proc/cpuinfo of that
board over the host's, set ``QEMU_CPU`` to the matching core, and run the dump, the check and the bench there.

Established on this machine: XNNPACK only runs with /sys mounted and an arm64 cpuinfo; with QEMU's default
``max`` CPU the emulated SME path returns wrong int8 results; with the host's x86 cpuinfo the interpreters crash;
a mismatched cpuinfo/QEMU_CPU pair dies with SIGILL. :func:`validate_pairing` refuses each of those.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tomllib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from runtime.cli import cli_main, comma_list, parser, positive_int
from runtime.dump import dump_outputs
from runtime.errors import VaeEdgeError
from runtime.vocab import ALL, PLATFORM_TOLERANCE, VAE_MODELS, Precision

# The float32 reference decoder itself differs across ISAs by up to ~1e-5 per pixel (summation order), so the
# check's figures agree to these absolute tolerances, not to the last bit (seen on the emulated Pi 4: 8e-8 on
# pixel errors, 8e-6 nats on the ELBO, 2e-7 on Fréchet distances, digit agreement identical; the emulated Pi 5
# moved one Fréchet distance of ~190 by 1.5e-4, hence 1e-3 there). The −ELBO feeds the float encoder's latents
# (up to 3.8e-6 apart across ISAs) to every decoder; where that flips the rounding of an int8 activation, a
# reconstruction moves by whole steps: the int8 ONNX sub-pixel decoders moved it by 2.0e-3 nats on both boards
# while their outputs on identical latents were bit-identical to the host's. Hence 5e-3 nats there.
CHECK_FIGURE_ATOL = {
    "mean_abs_err": 1e-6,
    "max_abs_err": 1e-5,
    "digit_agreement": 0.0,
    "fd_to_float": 1e-3,
    "fd_to_real": 1e-3,
    "neg_elbo": 5e-3,
    "neg_elbo_delta": 5e-3,
    "psnr_db": 1e-2,
}
DEBIAN_SUITE = "bookworm"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
WHEEL_PLATFORMS = (
    "manylinux_2_28_aarch64",
    "manylinux_2_27_aarch64",
    "manylinux_2_17_aarch64",
    "manylinux2014_aarch64",
)

REPO = Path(__file__).resolve().parents[2]


def runtime_requirements(repo: Path = REPO) -> list[str]:
    """The wheels a board installs: the names runtime/pyproject.toml depends on (with its ``onnx`` extra),
    each at the exact version requirements.txt pins for the whole project (one pin file, read twice)."""
    project = tomllib.loads((repo / "runtime" / "pyproject.toml").read_text())["project"]
    pins = {}
    for line in (repo / "requirements.txt").read_text().splitlines():
        name, sep, version = line.split("#")[0].strip().partition("==")
        if sep:
            pins[canonical(name)] = version.strip()
    out = []
    for req in [*project["dependencies"], *project["optional-dependencies"]["onnx"]]:
        name = canonical(re.split(r"[<>=!~\[; ]", req, maxsplit=1)[0])
        if name not in pins:
            raise PiCheckError(
                f"runtime/pyproject.toml needs {name}, which requirements.txt does not pin; pin it"
            )
        out.append(f"{name}=={pins[name]}")
    return out


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


BUILD_REQUIREMENTS = ("setuptools==80.9.0", "wheel==0.45.1")  # to build ./runtime offline in the root
BINFMT_CONF = Path("/usr/lib/binfmt.d/qemu-aarch64.conf")
BINFMT_DIR = Path("/proc/sys/fs/binfmt_misc")


@dataclass(frozen=True)
class Board:
    name: str
    qemu_cpu: str
    cpu_part: str  # MIDR part number that /proc/cpuinfo reports for this core
    features: str


BOARDS = {
    "pi4": Board("Raspberry Pi 4 (Cortex-A72)", "cortex-a72", "0xd08", "fp asimd evtstrm crc32 cpuid"),
    "pi5": Board(
        "Raspberry Pi 5 (Cortex-A76)",
        "cortex-a76",
        "0xd0b",
        "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp",
    ),
}
QEMU_CPU_PARTS = {"cortex-a72": "0xd08", "cortex-a76": "0xd0b", "cortex-a53": "0xd03", "cortex-a55": "0xd05"}


class PiCheckError(VaeEdgeError):
    pass


def cpuinfo_for(board: Board, cores: int = 4) -> str:
    block = (
        "processor\t: {i}\nBogoMIPS\t: 108.00\nFeatures\t: {f}\nCPU implementer\t: 0x41\nCPU architecture: 8\n"
        "CPU variant\t: 0x0\nCPU part\t: {p}\nCPU revision\t: 1\n\n"
    )
    return (
        "".join(block.format(i=i, f=board.features, p=board.cpu_part) for i in range(cores))
        + f"Model\t\t: {board.name}\n"
    )


def validate_pairing(qemu_cpu: str | None, cpuinfo: str) -> None:
    """Refuse every combination seen to fail: no QEMU_CPU or ``max``, an x86 cpuinfo, a mismatched core."""
    if not qemu_cpu or qemu_cpu == "max":
        raise PiCheckError(
            f"QEMU_CPU={qemu_cpu or '(unset)'}: QEMU's default 'max' CPU emulates SME and returns wrong "
            "int8 results; set it to the board's core (cortex-a72 for a Pi 4, cortex-a76 for a Pi 5)"
        )
    if (
        re.search(r"^(vendor_id|flags)\s*:", cpuinfo, re.M)
        or "GenuineIntel" in cpuinfo
        or "AuthenticAMD" in cpuinfo
    ):
        raise PiCheckError(
            "the emulated board would see the host's x86 /proc/cpuinfo (the interpreters crash on it); "
            "bind an arm64 cpuinfo over /proc/cpuinfo"
        )
    parts = set(re.findall(r"^CPU part\s*:\s*(0x[0-9a-fA-F]+)", cpuinfo, re.M))
    if not parts:
        raise PiCheckError("the cpuinfo names no 'CPU part'; it is not an arm64 cpuinfo")
    expected = QEMU_CPU_PARTS.get(qemu_cpu)
    if expected is None:
        raise PiCheckError(
            f"QEMU_CPU={qemu_cpu} is not a known Raspberry Pi core ({', '.join(QEMU_CPU_PARTS)})"
        )
    if parts != {expected}:
        raise PiCheckError(
            f"cpuinfo says CPU part {sorted(parts)} but QEMU_CPU={qemu_cpu} is part {expected}: a "
            "mismatched pair dies with SIGILL; use the same board for both"
        )


def output_precisions(artifacts: Path) -> dict[str, Precision]:
    """``<model>::<file>`` -> the artifact's precision, for every artifact the bundle's manifests list."""
    from runtime.manifest import find_manifests

    return {
        f"{name}::{entry['path']}": Precision(entry["precision"])
        for name, m in find_manifests(artifacts).items()
        for entry in m.artifacts
    }


def compare_dumps(host: dict, board: dict, precisions: dict[str, Precision] | None = None) -> dict:
    """Each output of the board against the host's: integer outputs bit-exact, float outputs within the
    PLATFORM_TOLERANCE of their artifact's precision (``precisions`` from :func:`output_precisions`; an
    artifact it does not name is held to float32's)."""
    precisions = precisions or {}
    rows, worst_float, worst_lsb, missing = [], 0.0, 0, sorted(set(host) - set(board))
    for key in sorted(set(host) & set(board)):
        a, b = host[key], board[key]
        if a.dtype.kind == "f":
            err = float(np.abs(a.astype(np.float64) - b).max())
            precision = precisions.get(key.rsplit("::", 1)[0], Precision.FLOAT32)
            tolerance = PLATFORM_TOLERANCE[precision]
            worst_float = max(worst_float, err)
            rows.append(
                {
                    "output": key,
                    "kind": "float",
                    "precision": precision.value,
                    "max_abs_diff": err,
                    "tolerance": tolerance.max_abs,
                    "passed": tolerance.passed(err),
                }
            )
        else:
            lsb = int(np.abs(a.astype(np.int32) - b.astype(np.int32)).max())
            worst_lsb = max(worst_lsb, lsb)
            rows.append({"output": key, "kind": "int8", "max_lsb_diff": lsb, "passed": lsb == 0})
    return {
        "rows": rows,
        "max_float_diff": worst_float,
        "max_int8_lsb": worst_lsb,
        "missing": missing,
        "passed": not missing and all(r["passed"] for r in rows),
    }


def compare_checks(host: dict, board: dict) -> dict:
    h = {(r["model"], r["artifact"]): r for r in host["records"]}
    worst: dict[str, float] = {}
    diffs = []
    for r in board["records"]:
        ref = h.get((r["model"], r["artifact"]))
        if ref is None:
            diffs.append(f"{r['model']}/{r['artifact']} missing on the host")
            continue
        for k, atol in CHECK_FIGURE_ATOL.items():
            a, b = ref.get(k), r.get(k)
            if a is None or b is None:
                continue
            d = abs(a - b)
            worst[k] = max(worst.get(k, 0.0), d)
            if d > atol:
                diffs.append(f"{r['model']}/{r['artifact']} {k}: host {a:.8g}, board {b:.8g}")
    return {
        "max_abs_diff": worst,
        "differences": diffs,
        "passed": not diffs and len(board["records"]) == len(h),
    }


# ------------------------------------------------------------------------------------------ host side
def sh(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=True, text=True, capture_output=True, **kw)


def ensure_binfmt() -> None:
    if os.geteuid() != 0:
        raise PiCheckError("pi-check needs root (debootstrap, chroot, mounts, binfmt_misc); run it with sudo")
    for tool in ("debootstrap", "chroot", "mount"):
        if shutil.which(tool) is None:
            raise PiCheckError(f"{tool} not found; apt-get install debootstrap qemu-user-static")
    if not BINFMT_CONF.exists():
        raise PiCheckError(f"{BINFMT_CONF} not found; apt-get install qemu-user-static")
    if not (BINFMT_DIR / "register").exists():
        sh(["mount", "-t", "binfmt_misc", "binfmt_misc", str(BINFMT_DIR)])
    entry = BINFMT_DIR / "qemu-aarch64"
    if not entry.exists():
        (BINFMT_DIR / "register").write_text(BINFMT_CONF.read_text().strip())
    text = entry.read_text()
    flags = re.search(r"^flags: (\w*)", text, re.M)
    if "enabled" not in text or not flags or "F" not in flags.group(1):
        raise PiCheckError(
            "qemu-aarch64 is registered with binfmt_misc without the F (fix-binary) flag, so it "
            "cannot run inside a chroot; re-register it from " + str(BINFMT_CONF)
        )


def ensure_root(cache: Path, log) -> Path:
    root = cache / f"debian-{DEBIAN_SUITE}-arm64"
    if (root / ".vae-edge-ready").exists():
        return root
    tmp = cache / f"debian-{DEBIAN_SUITE}-arm64.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    log(f"building the arm64 root in {root} (once; a few minutes)")
    sh(
        [
            "debootstrap",
            "--arch=arm64",
            "--variant=minbase",
            "--include=python3,python3-venv,python3-pip",
            DEBIAN_SUITE,
            str(tmp),
            DEBIAN_MIRROR,
        ]
    )
    (tmp / ".vae-edge-ready").write_text("ok\n")
    shutil.rmtree(root, ignore_errors=True)
    tmp.rename(root)
    return root


def ensure_wheels(cache: Path, log) -> Path:
    wheels = cache / "wheels-aarch64"
    if wheels.is_dir() and any(wheels.glob("ai_edge_litert-*.whl")) and any(wheels.glob("wheel-*.whl")):
        return wheels
    log("downloading the runtime's aarch64 wheels")
    plat = [a for p in WHEEL_PLATFORMS for a in ("--platform", p)]
    sh(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "-q",
            "--only-binary=:all:",
            *plat,
            "--platform",
            "any",
            "--python-version",
            "3.11",
            "--implementation",
            "cp",
            "-d",
            str(wheels),
            *runtime_requirements(),
            *BUILD_REQUIREMENTS,
        ]
    )
    return wheels


class Mounted:
    """/proc and /sys inside the root, with the board's cpuinfo bound over /proc/cpuinfo; undone on exit."""

    def __init__(self, root: Path, cpuinfo: Path):
        self.root, self.cpuinfo, self.done = root, cpuinfo, []

    def __enter__(self):
        # A run killed mid-way leaves its mounts behind: clear them first (deepest first).
        stale = [
            line.split()[1]
            for line in Path("/proc/mounts").read_text().splitlines()
            if line.split()[1].startswith(str(self.root) + "/")
        ]
        for target in sorted(stale, reverse=True):
            subprocess.run(["umount", "-l", target], check=False)
        for args, target in (
            (["-t", "proc", "proc"], "proc"),
            (["-t", "sysfs", "sysfs"], "sys"),
            (["--bind", str(self.cpuinfo)], "proc/cpuinfo"),
        ):
            sh(["mount", *args, str(self.root / target)])
            self.done.append(self.root / target)
        return self

    def __exit__(self, *exc):
        for target in reversed(self.done):
            subprocess.run(["umount", "-l", str(target)], check=False)


def run_on_board(root: Path, board_key: str, commands: list[str], log) -> None:
    board = BOARDS[board_key]
    cpuinfo = root / "opt" / f"cpuinfo-{board_key}"
    cpuinfo.write_text(cpuinfo_for(board))
    validate_pairing(board.qemu_cpu, cpuinfo.read_text())
    env = {
        "PATH": "/opt/venv/bin:/usr/bin:/bin",
        "HOME": "/root",
        "QEMU_CPU": board.qemu_cpu,
        "PYTHONDONTWRITEBYTECODE": "1",
        "LANG": "C.UTF-8",
    }
    with Mounted(root, cpuinfo):
        chroot = (
            shutil.which("chroot") or "/usr/sbin/chroot"
        )  # resolved on the host: env's PATH is the board's
        seen = sh([chroot, str(root), "/bin/cat", "/proc/cpuinfo"], env=env).stdout
        validate_pairing(env["QEMU_CPU"], seen)
        for cmd in commands:
            log(f"[{board_key}] {cmd}")
            res = subprocess.run(
                [chroot, str(root), "/bin/sh", "-c", cmd], env=env, text=True, capture_output=True
            )
            allowed = (
                (0, 1) if " runtime check " in f" {cmd} " else (0,)
            )  # check exits 1 on a broken threshold
            if res.returncode not in allowed:
                raise PiCheckError(f"[{board_key}] '{cmd}' failed ({res.returncode}): {res.stderr[-1500:]}")


def pi_check(
    *,
    artifacts: str,
    data: str | None,
    boards: list[str],
    cache: str,
    check_samples: int,
    bench_model: str,
    reports: str,
    reuse: bool,
) -> int:
    """Build (or reuse) the emulated boards, run the runtime there and on the host, compare; 0 when all match."""
    from .bundle import build_bundle

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    ensure_binfmt()
    cache = Path(cache).expanduser()
    cache.mkdir(parents=True, exist_ok=True)
    root = ensure_root(cache, log)
    wheels = ensure_wheels(cache, log)
    opt = root / "opt"
    reuse = reuse and all((opt / "out" / b / "bench.json").exists() for b in boards)
    if not reuse:
        bundle = build_bundle(Path(artifacts), data, cache / "vae-edge-pi.tar.gz")
        for sub in ("vae-edge-pi", "wheels", "out"):
            shutil.rmtree(opt / sub, ignore_errors=True)
        shutil.copytree(wheels, opt / "wheels")
        with tarfile.open(bundle) as tar:
            tar.extractall(opt, filter="data")
        (opt / "out").mkdir()
    check_args = f"--samples {check_samples} --test-limit {check_samples} --seed 0"
    setup = [
        "test -x /opt/venv/bin/python || python3 -m venv /opt/venv",
        "pip install -q --no-index --find-links /opt/wheels " + " ".join(BUILD_REQUIREMENTS),
        "pip install -q --no-index --find-links /opt/wheels --no-build-isolation --force-reinstall "
        "'/opt/vae-edge-pi/runtime[onnx]'",
        'python -c \'import importlib.util as u, sys; sys.exit(1 if u.find_spec("tensorflow") or '
        'u.find_spec("keras") else 0)\'',
    ]
    results = {b: opt / "out" / b for b in boards}
    for i, b in enumerate([] if reuse else boards):
        out = f"/opt/out/{b}"
        cmds = (setup if i == 0 else []) + [
            f"mkdir -p {out} && cd /opt/vae-edge-pi",
            f"cd /opt/vae-edge-pi && python -m runtime dump --artifacts artifacts --out {out}/dump.npz",
            f"cd /opt/vae-edge-pi && python -m runtime check --artifacts artifacts --data mnist_test.npz "
            f"--reports {out} {check_args}",
            f"cd /opt/vae-edge-pi && python -m runtime bench --artifacts artifacts --reports {out} --invokes 20 "
            f"--batch-invokes 2 --threads 1 --model {bench_model} --formats tflite --no-isolate",
        ]
        run_on_board(root, b, cmds, log)
    # The host runs the same dump and check on the same bundle.
    host_dir = cache / "host-out"
    shutil.rmtree(host_dir, ignore_errors=True)
    host_dir.mkdir()
    art = opt / "vae-edge-pi" / "artifacts"
    np.savez(host_dir / "dump.npz", **dump_outputs(art))
    subprocess.run(  # exits 1 when a decoder breaks a threshold: the figures are still what we compare
        [
            sys.executable,
            "-m",
            "runtime",
            "check",
            "--artifacts",
            str(art),
            "--data",
            str(opt / "vae-edge-pi" / "mnist_test.npz"),
            "--reports",
            str(host_dir),
            *check_args.split(),
        ],
        check=False,
        capture_output=True,
    )
    host_dump = dict(np.load(host_dir / "dump.npz"))
    host_check = json.loads((host_dir / "check.json").read_text())
    report = {
        "boards": {},
        "criteria": {
            "float_max_abs": {p.value: t.max_abs for p, t in PLATFORM_TOLERANCE.items()},
            "int8": "bit-exact",
            "check_figures_atol": CHECK_FIGURE_ATOL,
        },
        "check_samples": check_samples,
    }
    precisions = output_precisions(art)
    for b, d in results.items():
        dump = compare_dumps(host_dump, dict(np.load(d / "dump.npz")), precisions)
        check = compare_checks(host_check, json.loads((d / "check.json").read_text()))
        bench = json.loads((d / "bench.json").read_text())
        report["boards"][b] = {
            "board": BOARDS[b].name,
            "qemu_cpu": BOARDS[b].qemu_cpu,
            "outputs": dump,
            "check": check,
            "platform": bench["platform"],
            "bench_records": bench["records"],
            "passed": dump["passed"] and check["passed"],
        }
    reports = Path(reports)
    reports.mkdir(parents=True, exist_ok=True)
    (reports / "pi_check.json").write_text(json.dumps(report, indent=2, default=float))
    (reports / "pi_check.md").write_text(pi_markdown(report))
    log(f"pi-check -> {reports / 'pi_check.md'}")
    return 0 if all(v["passed"] for v in report["boards"].values()) else 1


def pi_markdown(report: dict) -> str:
    lines = [
        "# The runtime on emulated Raspberry Pis",
        "",
        "Debian 12 arm64 root under qemu-user, the runtime installed alone from aarch64 wheels (no TensorFlow), "
        "the `make pi-bundle` artifacts. Pass criteria: every artifact loads; float outputs within "
        + ", ".join(f"{t.max_abs:g} ({p})" for p, t in PLATFORM_TOLERANCE.items())
        + " of the host's, by the artifact's precision; int8 outputs bit-exact; the check's figures equal the host's "
        f"within the absolute tolerances {CHECK_FIGURE_ATOL} on {report['check_samples']} samples. Emulated timings are recorded "
        "but **meaningless for speed**.",
        "",
        "| board | QEMU_CPU | outputs compared | max float diff | max int8 LSB | check figures | result |",
        "|---|---|---|---|---|---|---|",
    ]
    for b in report["boards"].values():
        o, c = b["outputs"], b["check"]
        lines.append(
            f"| {b['board']} | {b['qemu_cpu']} | {len(o['rows'])} | {o['max_float_diff']:.2e} | "
            f"{o['max_int8_lsb']} | "
            + ", ".join(f"{k} {v:.1e}" for k, v in c["max_abs_diff"].items())
            + " | "
            f"{'PASS' if b['passed'] else 'FAIL'} |"
        )
    for key, b in report["boards"].items():
        bad = (
            [r for r in b["outputs"]["rows"] if not r["passed"]]
            + b["outputs"]["missing"]
            + b["check"]["differences"]
        )
        if bad:
            lines += ["", f"## {key}: differences", ""] + [f"- {x}" for x in bad[:50]]
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = parser("python -m tools.pi.check", __doc__)
    p.add_argument("--artifacts", default="artifacts")
    p.add_argument("--data", default=None, help="MNIST .npz (default $VAE_EDGE_MNIST)")
    p.add_argument(
        "--boards",
        type=comma_list(str, tuple(BOARDS)),
        default=list(BOARDS),
        help="comma list of: " + ", ".join(BOARDS),
    )
    p.add_argument(
        "--cache",
        default=os.environ.get("VAE_EDGE_PI_CACHE", "~/.cache/vae-edge/pi"),
        help="where the arm64 root and wheels are cached (outside the repository)",
    )
    p.add_argument(
        "--check-samples", type=positive_int, default=100, help="prior samples for the emulated check"
    )
    p.add_argument(
        "--bench-model",
        default=VAE_MODELS[-1],
        choices=(*VAE_MODELS, ALL),
        help="model whose decoders the emulated bench times (emulated timings mean nothing for speed)",
    )
    p.add_argument("--reports", default="reports")
    p.add_argument(
        "--reuse",
        action="store_true",
        help="compare the boards' outputs from the last run again instead of re-running the emulation",
    )
    return p.parse_args(argv)


@cli_main
def main(args: argparse.Namespace) -> int:
    try:
        return pi_check(
            artifacts=args.artifacts,
            bench_model=args.bench_model,
            boards=args.boards,
            cache=args.cache,
            check_samples=args.check_samples,
            data=args.data,
            reports=args.reports,
            reuse=args.reuse,
        )
    except subprocess.CalledProcessError as exc:
        raise VaeEdgeError(
            f"{' '.join(map(str, exc.cmd[:3]))}… failed ({exc.returncode}): {(exc.stderr or '')[-800:]}"
        ) from None


if __name__ == "__main__":
    sys.exit(main(parse_args()))
