"""Flags that would lie are refused when parsed: one ``error:`` line, exit code 2, nothing written."""

from __future__ import annotations

import importlib

import pytest

BAD_FLAGS = [
    ("export", ["--batch", "1"]),
    ("export", ["--batch", "0"]),
    ("export", ["--calibration-samples", "10"]),
    ("export", ["--validation-samples", "0"]),
    ("export", ["--seed", "-1"]),
    ("export", ["--model", "vae4d"]),
    ("runtime", ["sample", "-n", "0"]),
    ("runtime", ["sample", "--precision", "int4"]),
    ("runtime", ["check", "--samples", "0"]),
    ("runtime", ["check", "--samples", "-5"]),
    ("runtime", ["check", "--test-limit", "0"]),
    ("runtime", ["check", "--threads", "0"]),
    ("runtime", ["bench", "--threads", "0"]),
    ("runtime", ["bench", "--threads", "1,x"]),
    ("runtime", ["bench", "--invokes", "0"]),
    ("runtime", ["bench", "--batch-invokes", "-1"]),
    ("runtime", ["bench", "--formats", "bogus"]),
    ("runtime", ["bench", "--formats", "tflite,"]),
    ("firmware_sim", ["--latents", "0"]),
    ("firmware_sim", ["--latents", "-3"]),
    ("firmware_sim", ["--target", "z80"]),
    ("runtime.examples.generate_digits", ["--export", "x", "-n", "0"]),
    ("runtime.examples.generate_digits", ["--export", "x", "--every", "-1"]),
    ("tools.pi.check", ["--boards", "pi3"]),
    ("tools.pi.check", ["--check-samples", "0"]),
    ("firmware_sim.measure", ["--latents", "0"]),
    ("firmware_sim.measure", ["--m4-latents", "-1"]),
    ("firmware_sim.codegen", ["x.tflite", "--graph", "bogus"]),
    ("tools.web", ["bench", "--invokes", "5"]),
    ("tools.web", ["bench", "--rounds", "0"]),
    ("tools.web", ["bench", "--runtimes", "webgpu"]),
    ("tools.web", ["serve", "--port", "-1"]),
    ("train", ["--epochs", "0"]),
    ("train", ["--epochs", "-1"]),
    ("train", ["--batch-size", "0"]),
    ("train", ["--iw-samples", "-3"]),
    ("train", ["--validation", "-1"]),
    ("train", ["--seed", "-1"]),
    ("train", ["--model", "vae4d"]),
    ("train", ["--model", "vae4d", "--latent-dim", "0"]),
    ("train", ["--model", "vae3d", "--latent-dim", "3"]),
    ("train.bench", ["--epochs", "0"]),
    ("train.results", ["--seeds", "x"]),
    ("train.results", ["--models", "vae4d"]),
]


@pytest.mark.parametrize("module, argv", BAD_FLAGS, ids=[" ".join([m, *a]) for m, a in BAD_FLAGS])
def test_bad_flag_is_one_line_exit_2_nothing_written(module, argv, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    cli = importlib.import_module(module)
    if not hasattr(cli, "parse_args"):  # a package: its command line is in __main__
        cli = importlib.import_module(f"{module}.__main__")
    with pytest.raises(SystemExit) as stop:
        cli.parse_args(argv)
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    flag = [a for a in argv if a.startswith("-") and not a.lstrip("-").isdigit()][-1]
    assert flag in err[0], err  # names the flag
    assert list(tmp_path.iterdir()) == []


def test_cli_main_maps_os_errors_to_one_line(tmp_path, capsys):
    from runtime.cli import cli_main

    @cli_main
    def main(args) -> int:
        open(tmp_path / "missing" / "file.txt")  # noqa: SIM115 - the OSError is the point
        return 0

    assert main(None) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "missing/file.txt" in err[0] and "No such file" in err[0]
