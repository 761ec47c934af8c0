"""Every documented command runs: each `make` target README.md names exists and is listed by `make help`, the
flags the Makefile passes are accepted by the target's own CLI, and the targets no other test runs (bench's
goals on a real bench, firmware, fuzz, bench-decode, web, web-bench) run on the tiny export (conftest.exported)
with small sizes, through the commands `make -n` prints. Covered elsewhere: check (test_runtime), simulate
(test_firmware_sim.test_cli_report), pi-bundle (test_pi_check.test_pi_bundle); pi-check needs root and a Debian
arm64 root, so only its flags are checked here.
"""

from __future__ import annotations

import importlib
import json
import re
import shlex
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# Stands in for $(PY) in `make -n` output, so the project's own commands are told from pip's and venv's.
PY = "PYTHON_UNDER_TEST"


def readme_targets() -> set[str]:
    """Targets of every `make ...` command in README.md's code blocks and inline code (up to a comment or a
    VAR=value)."""
    text = (REPO / "README.md").read_text()
    blocks = re.findall(r"```[a-z]*\n(.*?)```", text, flags=re.S)
    spans = re.findall(r"`(make [^`]+)`", re.sub(r"```.*?```", "", text, flags=re.S))
    targets = set()
    for line in [ln for b in blocks for ln in b.splitlines()] + spans:
        for command in re.findall(r"(?:^|\s)make((?:\s+[a-z][a-z0-9-]*)+)", line.split("#")[0]):
            targets.update(command.split())
    return targets


def makefile_targets() -> set[str]:
    return set(re.findall(r"^([a-z][a-z0-9-]*):", (REPO / "Makefile").read_text(), flags=re.M))


def make_commands(target: str, **variables: str) -> list[tuple[str, list[str]]]:
    """The project commands `make -n TARGET` would run: (module, argv) for each `$(PY) -m module argv...`."""
    done = subprocess.run(
        [
            "make",
            "-n",
            "--no-print-directory",
            target,
            f"PY={PY}",
            *(f"{k}={v}" for k, v in variables.items()),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    commands = []
    for line in done.stdout.splitlines():
        argv = shlex.split(line)
        while argv and "=" in argv[0]:  # an environment prefix such as KERAS_BACKEND=jax
            argv.pop(0)
        # This project's modules only (not pip, venv, ruff or pytest)
        if argv[:2] == [PY, "-m"] and (REPO / argv[2].split(".")[0]).is_dir():
            commands.append((argv[2], argv[3:]))
    return commands


def cli(module: str):
    """The module holding the CLI's parse_args/main (a package's is in its __main__)."""
    mod = importlib.import_module(module)
    return mod if hasattr(mod, "parse_args") else importlib.import_module(f"{module}.__main__")


def run(module: str, argv: list[str]) -> int:
    entry = cli(module)
    return entry.main(entry.parse_args(argv))


DOCUMENTED = sorted(readme_targets())


def test_every_target_readme_names_exists_and_make_help_lists_it():
    named = {
        "bench",
        "firmware",
        "simulate",
        "web",
        "web-bench",
        "fuzz",
        "bench-decode",
        "pi-bundle",
        "pi-check",
    }
    assert named <= set(DOCUMENTED)  # the README parser finds them
    missing = sorted(set(DOCUMENTED) - makefile_targets())
    assert not missing, f"README names make targets the Makefile lacks: {missing}"
    listed = subprocess.run(
        ["make", "--no-print-directory", "help"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    helped = {line.split()[0] for line in listed.splitlines() if line.strip()}
    assert not set(DOCUMENTED) - helped, sorted(set(DOCUMENTED) - helped)


@pytest.mark.parametrize("target", DOCUMENTED)
def test_the_flags_the_makefile_passes_are_accepted(target, tmp_path):
    """Parsing only (nothing runs): a flag renamed in a CLI but not in the Makefile fails here."""
    for module, argv in make_commands(target, ARTIFACTS=str(tmp_path / "a"), REPORTS=str(tmp_path / "r")):
        cli(module).parse_args(argv)  # argparse exits 2 on an unknown flag or a bad value


def small(target: str, extra: list[str], exported, tmp_path, **variables) -> list[tuple[str, list[str]]]:
    """The target's commands on the tiny export, reports in tmp_path, ``extra`` flags appended to each."""
    commands = make_commands(target, ARTIFACTS=str(exported), REPORTS=str(tmp_path), **variables)
    assert commands, f"make -n {target} runs no project command"
    return [(module, [*argv, *extra]) for module, argv in commands]


def test_make_bench_judges_a_real_bench(exported, mnist_path, tmp_path, monkeypatch):
    """check + bench + tools.bench_goals, the last on the bench.json the runtime really writes."""
    monkeypatch.setenv("VAE_EDGE_MNIST", str(mnist_path))  # what the Makefile exports
    (check, check_argv), (bench, bench_argv), (goals, goals_argv) = small("bench", [], exported, tmp_path)
    assert (check, check_argv[0], bench, bench_argv[0], goals) == (
        "runtime",
        "check",
        "runtime",
        "bench",
        "tools.bench_goals",
    )
    rc = run(check, [*check_argv, "--samples", "100", "--test-limit", "100"])
    assert rc == (0 if json.loads((tmp_path / "check.json").read_text())["passed"] else 1)
    assert run(bench, [*bench_argv, "--invokes", "5", "--batch-invokes", "2", "--threads", "1"]) == 0
    rc = run(goals, goals_argv)  # 1 when a goal is missed: on this tiny model and a shared CPU it may be
    judged = json.loads((tmp_path / "bench_goals.json").read_text())["goals"]["vae2d_corr"]
    met = [v for k, v in judged.items() if k.startswith("goal_")]
    assert len(met) == 4 and rc == (0 if all(met) else 1)


def test_make_firmware(exported, tmp_path):
    # --model all (the Makefile's) needs all three VAEs; the tiny export has vae2d_corr only.
    extra = ["--model", "vae2d_corr", "--latents", "20", "--m4-latents", "2"]
    ((module, argv),) = small("firmware", extra, exported, tmp_path)
    assert run(module, argv) == 0
    records = json.loads((tmp_path / "firmware_c.json").read_text())["records"]
    assert {r["graph"] for r in records} == {"transpose", "subpixel"}
    assert all(r["bit_exact_host"] and r["bit_exact_cortex_m4"] for r in records)


def test_make_fuzz(exported, mnist_path, tmp_path):
    extra = [
        *("--model-mutations", "4", "--manifest-mutations", "4", "--input-mutations", "4"),
        *("--npz-mutations", "2", "--firmware-mutations", "2", "--codegen-mutations", "2"),
        *("--export-mutations", "2", "--output-path-mutations", "2", "--quiet"),
    ]
    ((module, argv),) = small("fuzz", extra, exported, tmp_path, VAE_EDGE_MNIST=str(mnist_path))
    assert argv[argv.index("--data") + 1] == str(mnist_path)
    assert run(module, argv) == 0
    counts = json.loads((tmp_path / "fuzz.json").read_text())["counts"]
    assert sum(counts["model_sha_updated"].values()) == 4
    assert all(sum(counts[t].values()) == 2 for t in ("codegen", "export", "output_path"))


def test_make_bench_decode(exported, tmp_path):
    extra = ["--model", "vae2d_corr", "--sizes", "100,300", "--one-shot-sizes", "100"]
    ((module, argv),) = small("bench-decode", extra, exported, tmp_path)
    assert run(module, argv) == 0
    report = json.loads((tmp_path / "decode_rss.json").read_text())
    assert [r["rows"] for r in report["records"]] == [100, 300, 100] and report["goal"]["met"]


def test_make_web(exported, tmp_path):
    # The Makefile writes dist/web in the checkout; here a later --out wins.
    ((module, argv),) = small("web", ["--out", str(tmp_path / "site")], exported, tmp_path)
    assert run(module, argv) == 0
    assert (tmp_path / "site" / "index.html").is_file()
    assert (tmp_path / "site" / "models" / "vae2d_corr" / "decoder_int8.wasm").is_file()


def test_make_web_bench_runs_every_default_runtime(exported, tmp_path):
    """Every browser runtime the bench runs by default, in headless Chromium, each decoder's pixels against its
    reference (issue 22: LiteRT.js's float-I/O int8 graph was handed to the int8-only TFLM reference)."""
    from tools.web.build import RUNTIMES

    flags = "--invokes 10 --rounds 1 --loads 1"
    ((module, argv),) = small("web-bench", [], exported, tmp_path, WEB_BENCH_FLAGS=flags)
    assert argv[-len(flags.split()) :] == flags.split()
    assert cli(module).parse_args(argv).runtimes == list(RUNTIMES)  # the default: all of them
    assert run(module, argv) == 0
    report = json.loads((tmp_path / "web_bench.json").read_text())
    assert [r["runtime"] for r in report["records"]] == list(RUNTIMES)
    for rec in report["records"]:
        for precision in ("int8", "float32"):
            agreement = rec[precision]["vs_reference"]
            assert agreement["passed"], (rec["runtime"], precision, agreement)
    assert (tmp_path / "web_bench.md").is_file() and (tmp_path / "web_vae2d_corr.png").is_file()
