"""train/registry.py: one entry per built-in model (config, own defaults, goal), the same names as the runtime's
vocabulary, read by every consumer when it runs (a temporary fourth entry reaches the CLIs' choices, defaults
and goals); a model named as a built-in must be that built-in; no library module imports a ``__main__``."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from runtime.errors import VaeEdgeError
from runtime.vocab import ALL_MODELS, CLASSIFIER, VAE_MODELS
from train.registry import (
    BUILTINS,
    Builtin,
    ClassifierConfig,
    Goal,
    VAEConfig,
    builtin,
    name_problem,
    names,
    vae_names,
)
from train.settings import SettingError, TrainSettings, model_settings

REPO = Path(__file__).resolve().parents[1]


def test_the_registry_and_the_runtime_vocabulary_name_the_same_models():
    assert vae_names() == VAE_MODELS
    assert names() == ALL_MODELS
    for name, entry in BUILTINS.items():
        assert entry.name == entry.config.name == name
        assert (entry.kind == "classifier") == (name == CLASSIFIER)
        assert isinstance(model_settings(name), TrainSettings)  # its own defaults are valid settings
        assert entry.goal is not None and entry.goal.figure == (
            "test_accuracy" if name == CLASSIFIER else "test_neg_elbo"
        )


def test_an_entry_refuses_defaults_that_are_not_valid_settings():
    with pytest.raises(ValueError, match=r"\['batch_sise'\] are not TrainSettings fields"):
        Builtin(VAEConfig("x", 2), {"batch_sise": 32})
    with pytest.raises(SettingError, match="batch_size"):
        Builtin(VAEConfig("x", 2), {"batch_size": 0})
    with pytest.raises(ValueError, match="op"):
        Goal("test_neg_elbo", "<", 1.0)
    entry = Builtin(VAEConfig("x", 2), {"batch_size": 32})
    with pytest.raises(TypeError):
        entry.defaults["batch_size"] = 64  # frozen, as the config is
    assert Goal("test_accuracy", "≥", 0.99).met(0.995) and not Goal("test_neg_elbo", "≤", 148.0).met(148.5)
    with pytest.raises(VaeEdgeError, match="not a built-in model; choose one of vae2d, vae3d"):
        builtin("vae4d")


def test_new_model_names_are_checked():
    assert name_problem("vae4d") is None and name_problem("My-model_2") is None
    for bad in ("vae2d", "classifier", "all", "", "../x", ".hidden", "a/b", "x" * 65, "naïve"):
        assert name_problem(bad), bad


@pytest.fixture
def fourth(monkeypatch):
    """A temporary fourth built-in: an isotropic 4-D VAE with its own batch size and goal."""
    entry = Builtin(VAEConfig("vae4d", 4), {"batch_size": 64}, Goal("test_neg_elbo", "≤", 130.0))
    monkeypatch.setitem(BUILTINS, "vae4d", entry)
    return entry


def test_a_fourth_entry_reaches_every_consumer(fourth, capsys):
    from train.bench import isotropic_builtins
    from train.flags import given_settings, model_configs, parse_args
    from train.model import PRESETS
    from train.results import parse_args as results_args

    assert PRESETS["vae4d"] == fourth.config and "vae4d" in vae_names()
    args = parse_args(["--model", "vae4d"])  # a built-in now: no --latent-dim
    assert model_configs(args) == [fourth.config]
    assert model_settings("vae4d", given_settings(args)).batch_size == 64
    assert fourth.config in model_configs(parse_args([]))  # --model all
    assert name_problem("vae4d")  # its name is taken
    with pytest.raises(SystemExit):
        parse_args(["--help"])
    shown = " ".join(capsys.readouterr().out.split())
    assert "vae2d_corr, classifier, vae4d" in shown and "64 for vae4d" in shown
    assert results_args([]).models == [*ALL_MODELS, "vae4d"]
    assert results_args(["--models", "vae4d"]).models == ["vae4d"]
    assert isotropic_builtins()[4] == "vae4d"


def test_a_correlated_entry_takes_prior_cov_too(monkeypatch):
    from train.flags import model_configs, parse_args

    monkeypatch.setitem(
        BUILTINS, "vae3d_corr", Builtin(VAEConfig("vae3d_corr", 3, ((1, 0.5, 0), (0.5, 1, 0), (0, 0, 1))))
    )
    args = parse_args(["--model", "vae3d_corr", "--prior-cov", "1,0.2,0;0.2,1,0;0,0,1"])
    assert model_configs(args)[0].prior_cov == ((1.0, 0.2, 0.0), (0.2, 1.0, 0.0), (0.0, 0.0, 1.0))
    # --model all with one Σ: it must fit every correlated built-in it replaces (a 2x2 cannot be vae3d_corr's)
    with pytest.raises(SystemExit):
        parse_args(["--prior-cov", "1,0.3;0.3,1"])


def test_a_model_named_as_a_built_in_must_be_that_built_in(tmp_path):
    from train.pipeline import config_problem, train_models

    assert config_problem(builtin("vae2d").config) is None
    assert config_problem(VAEConfig("vae2d_corr", 2, ((1.0, 0.1), (0.1, 1.0)))) is None  # another Σ: its flag
    assert config_problem(VAEConfig("vae4d", 4)) is None  # a new model
    assert "latent_dim=2, not 4" in config_problem(VAEConfig("vae2d", 4))
    assert "prior_cov" in config_problem(VAEConfig("vae2d", 2, ((1.0, 0.1), (0.1, 1.0))))
    assert "classifier" in config_problem(ClassifierConfig(name="judge"))
    assert "latent_dim" in config_problem(ClassifierConfig(name="vae2d"))
    out = tmp_path / "out"
    with pytest.raises(VaeEdgeError, match="latent_dim=2, not 4; give the new model another name"):
        train_models(models=[VAEConfig("vae2d", 4)], out=out)
    with pytest.raises(VaeEdgeError, match="name one folder twice"):
        train_models(models=[builtin("vae2d").config] * 2, out=out)
    with pytest.raises(VaeEdgeError, match=r"\['batch'\] are not training settings"):
        train_models(models=[builtin("vae2d").config], out=out, settings={"batch": 3})
    assert not out.exists()


# What may come from a __main__ module: its command line, run in-process as a user would run it (tools/fuzz
# drives the CLIs this way). Anything else there is library code in the wrong place.
CLI_ENTRY_POINTS = {"main", "parse_args"}


def _library_imports_from_main(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[-1] == "__main__":
            found += [
                f"{path.relative_to(REPO)}: {a.name}" for a in node.names if a.name not in CLI_ENTRY_POINTS
            ]
        elif isinstance(node, ast.Import):
            found += [
                f"{path.relative_to(REPO)}: {a.name}" for a in node.names if a.name.endswith("__main__")
            ]
    return found


def test_no_module_imports_library_code_from_a_main_module():
    modules = [
        p
        for top in ("train", "export", "runtime", "firmware_sim", "tools", "tests")
        for p in sorted((REPO / top).rglob("*.py"))
        if p.name != "__main__.py" and "node_modules" not in p.parts
    ]
    assert len(modules) > 50
    assert [line for p in modules for line in _library_imports_from_main(p)] == []
