"""python -m train's command line without training: a missing data file, flags refused in one line with nothing
written, and every default taken from the settings dataclass and each built-in model's registry entry."""

from __future__ import annotations

import json

import pytest

from runtime.errors import VaeEdgeError
from train.__main__ import main, parse_args
from train.flags import SETTING_FLAGS, given_settings
from train.registry import BUILTINS, vae_names
from train.settings import (
    DEFAULTS,
    PREDATED,
    SettingError,
    TrainSettings,
    model_defaults,
    model_settings,
)


def test_missing_data(tmp_path, capsys):
    rc = main(
        parse_args(["--data", str(tmp_path / "missing.npz"), "--out", str(tmp_path), "--model", "vae2d"])
    )
    assert rc == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: MNIST not found") and "\n" not in err
    assert not (tmp_path / "vae2d" / "decoder.keras").exists()


@pytest.mark.parametrize(
    "flags, fragment",
    [
        (["--epochs", "0"], "--epochs must be ≥ 1, got 0"),
        (["--epochs", "-1"], "--epochs must be ≥ 1, got -1"),
        (["--epochs", "two"], "invalid int value"),
        (["--batch-size", "0"], "--batch-size must be ≥ 1"),
        (["--iw-samples", "-3"], "--iw-samples must be ≥ 0, got -3"),
        (["--lr", "0"], "--lr must be > 0"),
        (["--ema-decay", "1"], "--ema-decay must be < 1, got 1"),
        (["--ema-decay", "-0.1"], "--ema-decay must be ≥ 0"),
        (["--adam-beta-2", "0"], "--adam-beta-2 must be > 0"),
        (["--adam-epsilon", "0"], "--adam-epsilon must be > 0"),
        (["--lr", "inf"], "--lr must be a finite number"),
        (["--kl-warmup-epochs", "-1"], "--kl-warmup-epochs must be ≥ 0"),
        (["--seed", "-5"], "--seed must be ≥ 0"),
        (["--train-limit", "0"], "--train-limit must be ≥ 1"),
        (["--train-limit", "100"], "leaves less than one --batch-size 128"),
        (["--test-limit", "-1"], "--test-limit must be ≥ 1"),
        (["--model", "vae2d_corr", "--prior-cov", "[[1, 2], [2, 1]]"], "not positive definite"),
        (["--model", "vae2d_corr", "--prior-cov", "[[1, 0.4]"], "not valid JSON"),
        (["--model", "vae3d", "--prior-cov", "[[1, 0], [0, 1]]"], "applies to vae2d_corr only"),
        (["--model", "vae2d_corr", "--prior-cov", "1,0.4;0.4"], "not a numeric matrix"),
        (["--model", "vae2d_corr", "--prior-cov", "1,x;x,1"], "not a matrix of numbers"),
        (["--model", "vae4d"], "not a built-in model"),
        (["--model", "vae2d", "--latent-dim", "4"], "'vae2d' is a built-in model"),
        (["--model", "all", "--latent-dim", "4"], "means every built-in model"),
        (["--model", "../up", "--latent-dim", "4"], "is not a model name"),
        (["--model", ".hidden", "--latent-dim", "4"], "is not a model name"),
        (["--model", "vae4d", "--latent-dim", "0"], "--latent-dim"),
        (["--model", "vae4d", "--latent-dim", "513"], "--latent-dim"),
        (["--model", "vae4d", "--latent-dim", "4", "--prior-cov", "1,0;0,1"], "give a 4x4 matrix"),
    ],
)
def test_bad_flag_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys, flags, fragment):
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as stop:
        parse_args(["--out", str(out), *flags])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and fragment in err, err
    assert not out.exists()


def test_defaults_come_from_the_settings_dataclass(capsys):
    args = parse_args([])
    with pytest.raises(SystemExit):
        parse_args(["--help"])
    train_help = capsys.readouterr().out
    for dest, field in SETTING_FLAGS.items():
        if field != "epochs":
            assert getattr(args, dest) == DEFAULTS[field], dest
    assert args.epochs is None and args.explicit == {}

    def settings_of(model, *argv):  # what python -m train ARGV trains MODEL with
        return model_settings(model, given_settings(parse_args(list(argv))))

    assert settings_of("a_new_model") == TrainSettings()  # a model that is not built in: the shared defaults
    classifier = settings_of("classifier")
    own = BUILTINS["classifier"].defaults
    assert classifier.epochs == own["epochs"] != DEFAULTS["epochs"]
    assert classifier.learning_rate == own["learning_rate"] != DEFAULTS["learning_rate"]
    assert classifier.adam_beta_2 == own["adam_beta_2"] != DEFAULTS["adam_beta_2"]
    assert classifier.ema_decay == 0.0
    assert settings_of("classifier", "--lr", "2e-3").learning_rate == 2e-3
    # a VAE's own defaults (its registry entry) apply to that model only, and a flag still wins over them
    assert settings_of("vae3d") == TrainSettings(**BUILTINS["vae3d"].defaults)
    assert settings_of("vae3d").batch_size != DEFAULTS["batch_size"]
    assert settings_of("vae2d_corr") == TrainSettings()
    assert settings_of("vae3d", "--batch-size", "128").batch_size == 128
    assert settings_of("vae3d", "--adam-epsilon", "1e-7").adam_epsilon == 1e-7
    train_help = " ".join(train_help.split())  # argparse wraps the help text
    for model in vae_names():  # --help names every model's own default
        own = BUILTINS[model].defaults
        assert all(f"{value:g} for {model}" in train_help for value in own.values()), model
    assert model_defaults("vae3d")["batch_size"] == BUILTINS["vae3d"].defaults["batch_size"]
    assert model_defaults("classifier")["learning_rate"] == BUILTINS["classifier"].defaults["learning_rate"]
    assert parse_args(["--lr", "2e-3", "--seed", "1"]).explicit == {"learning_rate": "--lr", "seed": "--seed"}
    stored = TrainSettings(seed=3, batch_size=64)
    assert TrainSettings.from_json(json.loads(json.dumps(stored.to_json()))) == stored
    # a copy that predates a field was trained the way the code of its time did (no weight average, Keras Adam)
    assert TrainSettings.from_json({"seed": 3}) == TrainSettings(seed=3, **PREDATED)
    assert PREDATED["ema_decay"] == 0.0 and TrainSettings().ema_decay > 0
    with pytest.raises(VaeEdgeError, match="unknown fields"):
        TrainSettings.from_json({"seed": 3, "dropout": 0.5})
    with pytest.raises(SettingError, match="epochs"):
        TrainSettings(epochs=0)
    with pytest.raises(SettingError, match="min_learning_rate"):
        TrainSettings(learning_rate=1e-6, min_learning_rate=1e-5)
