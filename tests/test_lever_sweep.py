"""tools/lever_sweep.py: each lever is the defaults with one change, and the summary pairs seeds against the
same model's baseline. (The JAX training itself needs a GPU machine; docs/levers.md holds its runs.)"""

from __future__ import annotations

import json

import pytest

from tools.lever_sweep import BASELINE_OF, LEVERS, markdown, parse_args, settings_of, summarise, write_report
from train.settings import TrainSettings, model_defaults


def test_every_lever_changes_one_setting_of_the_defaults_and_each_model_has_a_baseline():
    args = parse_args(["--epochs", "3", "--validation", "512"])
    for lever, (model, changes, _) in LEVERS.items():
        s = settings_of(lever, 1, args)
        assert s.seed == 1 and s.epochs == 3 and s.validation == 512
        defaults = model_defaults(model)
        changed = {
            f
            for f, _, _ in s.differences(
                TrainSettings(**{**defaults, "seed": 1, "epochs": 3, "validation": 512})
            )
        }
        assert changed == set(changes), lever
        assert all(defaults[f] != v for f, v in changes.items()), f"{lever} repeats a default"
        assert model in BASELINE_OF and LEVERS[BASELINE_OF[model]][1] == {}
    assert settings_of("vae3d", 0, args).batch_size == model_defaults("vae3d")["batch_size"]


def run(lever, seed, value, raw=None, ema=None, **extra):
    return {
        "lever": lever,
        "seed": seed,
        "validation_neg_elbo": value,
        "validation_neg_elbo_raw": raw if raw is not None else value + 0.1,
        "validation_neg_elbo_ema": ema if ema is not None else value,
        "weights": "ema",
        "device": "cuda:0",
        **extra,
    }


def test_deltas_are_paired_by_seed_against_the_models_own_baseline(tmp_path):
    rows = [
        run("baseline", 0, 149.0),
        run("baseline", 1, 151.0),
        run("beta2_0.999", 0, 150.0),
        run("beta2_0.999", 1, 153.0),
        run("vae3d", 0, 134.0),
        run("vae3d_beta2_0.999", 0, 133.5),
        run("corr_diagonal", 0, 148.0, test_neg_elbo=147.5, test_iw_nll=143.0),
        {"lever": "corr_study", "seed": 0, "error": "RuntimeError: out of memory"},
    ]
    summary = summarise(rows, list(LEVERS))
    assert summary["beta2_0.999"]["delta_vs_baseline"]["values"] == [1.0, 2.0]
    assert summary["beta2_0.999"]["delta_vs_baseline"]["mean"] == pytest.approx(1.5)
    assert summary["beta2_0.999"]["delta_vs_baseline"]["sd"] == pytest.approx(0.7071, abs=1e-4)
    assert summary["vae3d_beta2_0.999"]["delta_vs_baseline"]["values"] == [
        -0.5
    ]  # vae3d's baseline, not vae2d's
    assert "corr_study" not in summary and "lr_1e-3" not in summary  # failed or never run: no row
    assert summary["corr_diagonal"]["test_iw_nll"]["mean"] == 143.0

    args = parse_args(["--seeds", "0,1", "--epochs", "2"])
    report = write_report(args, rows, tmp_path, 1.0)
    stored = json.loads((tmp_path / "lever_sweep.json").read_text())
    assert stored["failed"] == [rows[-1]] and len(stored["runs"]) == len(rows)
    md = (tmp_path / "lever_sweep.md").read_text()
    assert md == markdown(report)
    assert "| beta2_0.999 | vae2d |" in md and "1.50 ± 0.71" in md
    assert "Failed runs: corr_study seed 0: RuntimeError: out of memory" in md


def test_bad_flags_are_one_line(capsys):
    with pytest.raises(SystemExit) as stop:
        parse_args(["--levers", "baseline,warp_drive"])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "warp_drive" in err


def test_without_jax_it_is_one_line_and_writes_nothing(tmp_path, capsys, monkeypatch):
    import importlib.util

    from tools.lever_sweep import main

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "jax" else real(name, *a)
    )
    assert main(parse_args(["--out", str(tmp_path / "out")])) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "JAX is not installed" in err and "KERAS_BACKEND=jax" in err
    assert not (tmp_path / "out").exists()
