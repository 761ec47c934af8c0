"""Issue 23, export's remaining items: a model folder a sender edited (config.json fields, its run set's hashes
re-forged to match; a .keras whose config.json is hostile JSON) is one ``error:`` line naming the field and the
fix, exit 2, within seconds and with nothing written; a refusal carries no TensorFlow start-up lines; two
exports into one folder at once both finish.

The folders here are built by hand (a valid run set over stand-in model files): every refusal tested comes
before a weight is read, so no training is needed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
import zipfile
from pathlib import Path

import pytest

from export.__main__ import main, parse_args
from runtime import fileio
from train.runset import run_set_record

REPO = Path(__file__).resolve().parents[1]
MODEL = {
    "name": "vae2d",
    "latent_dim": 2,
    "prior_cov": None,
    "conv_filters": [32, 64],
    "dense_units": 16,
    "kind": "vae",
}


def keras_zip(path: Path, config: bytes | None = None) -> None:
    """A stand-in .keras: the zip layout export reads (config.json), no weights."""
    if config is None:
        config = json.dumps(
            {"config": {"layers": [{"class_name": "Dense", "config": {"name": "x"}}]}}
        ).encode()
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("config.json", config)


def forge(folder: Path, model: dict | None = None) -> None:
    """Write config.json and metrics.json with a run set over the model files as they are now: what a sender
    who edited the folder does, so that the run-set check passes and export's own checks are what is tested."""
    record = run_set_record(folder, "f" * 32, ("encoder.keras", "decoder.keras"))
    config = {"run_set": record, "model": MODEL if model is None else model}
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "metrics.json").write_text(
        json.dumps({"model": folder.name, "run_id": "f" * 32, "run_set": record})
    )


@pytest.fixture
def folder(tmp_path) -> Path:
    model_dir = tmp_path / "artifacts" / "vae2d"
    model_dir.mkdir(parents=True)
    for name in ("encoder.keras", "decoder.keras"):
        keras_zip(model_dir / name)
    forge(model_dir)
    return model_dir


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() if p.is_file() else b"<dir>" for p in root.rglob("*")}


def export(folder: Path, capsys) -> tuple[int, str, float]:
    argv = ["--model", folder.name, "--artifacts", str(folder.parent), "--quiet", "--calibration", "prior"]
    argv += ["--reports", str(folder.parent / "reports")]
    t0 = time.monotonic()
    code = main(parse_args(argv))
    return code, capsys.readouterr().err, time.monotonic() - t0


@pytest.mark.parametrize(
    "field, value, fragment",
    [
        (
            "conv_filters",
            [32],
            "model.conv_filters is [32]; it must be a list of 2 integers, each from 1 to 1024",
        ),
        ("conv_filters", [-1, 64], "model.conv_filters is [-1, 64]; it must be a list of 2 integers"),
        ("conv_filters", [32, 0], "model.conv_filters is [32, 0]"),
        ("conv_filters", "ab", "model.conv_filters is 'ab'"),
        ("conv_filters", [32, 1e12], "model.conv_filters is [32, 1000000000000.0]"),
        ("conv_filters", [32, True], "model.conv_filters is [32, True]"),
        ("dense_units", 0, "model.dense_units is 0; it must be an integer from 1 to 4096"),
        ("dense_units", 16.5, "model.dense_units is 16.5"),
        ("latent_dim", 1e9, "model.latent_dim is 1000000000.0; it must be an integer from 1 to 512"),
        ("latent_dim", 10**9, "model.latent_dim is 1000000000; it must be an integer from 1 to 512"),
        ("latent_dim", "2", "model.latent_dim is '2'"),
        ("kind", "classifier", "model.kind is 'classifier', but this folder holds a vae; it must be 'vae'"),
        ("kind", "gan", "model.kind is 'gan'; it must be one of 'vae', 'classifier'"),
        ("prior_cov", [[1.0, 2.0], [2.0, 1.0]], "model.prior_cov: prior covariance"),
        ("prior_cov", "ab", "model.prior_cov"),
        (
            "prior_cov",
            [[1e308, 0.0], [0.0, 1e308]],
            "model.prior_cov holds 1e+308; its entries must be within",
        ),
        ("name", ["vae2d"], "model.name is ['vae2d']; it must be a string"),
    ],
)
def test_an_edited_config_field_is_one_line_naming_it(folder, capsys, field, value, fragment):
    """Each of these was a traceback (an unpacking ValueError, Keras's ValueError, an AttributeError, a
    ResourceExhaustedError) or, for latent_dim 1e9, a MemoryError after a minute and 11 GB."""
    model = {**MODEL, field: value}
    forge(folder, model)
    before = tree(folder.parent)
    code, err, seconds = export(folder, capsys)
    assert code == 2
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert fragment in err and "retrain it: python -m train --model vae2d" in err, err
    assert tree(folder.parent) == before  # nothing written: no export/, no report, no staging folder
    assert seconds < 10


def test_config_json_without_a_model_object_is_one_line(folder, capsys):
    data = json.loads((folder / "config.json").read_text())
    for model in ([1, 2], None, "vae2d"):
        data["model"] = model
        (folder / "config.json").write_text(json.dumps(data))
        code, err, _ = export(folder, capsys)
        assert code == 2 and err.count("\n") == 1 and "config.json" in err and "model" in err, err


@pytest.mark.parametrize("which", ["decoder.keras", "encoder.keras"])
def test_a_keras_file_whose_config_nests_100000_brackets_is_one_line(folder, capsys, which):
    """json.loads raised RecursionError, past every except clause."""
    keras_zip(folder / which, b"[" * 100_000 + b"]" * 100_000)
    forge(folder)
    code, err, seconds = export(folder, capsys)
    assert code == 2 and err.count("\n") == 1, err
    assert f"{which}'s config.json nests its JSON too deeply" in err and seconds < 10


def test_a_keras_file_announcing_a_huge_config_is_refused_unread(folder, capsys):
    """A zip bomb: 200 MB of spaces compress to 200 kB; export refuses it by the size the zip announces."""
    with zipfile.ZipFile(folder / "decoder.keras", "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("config.json", b" " * (200 << 20))
    forge(folder)
    code, err, _ = export(folder, capsys)
    assert code == 2 and "would unpack to 209715200 bytes" in err, err


def test_a_hostile_metrics_json_is_one_line(folder, capsys):
    (folder / "metrics.json").write_text("[" * 100_000 + "]" * 100_000)
    code, err, _ = export(folder, capsys)
    assert code == 2 and err.count("\n") == 1 and "metrics.json nests its JSON too deeply" in err, err


def test_config_dataclasses_enforce_the_same_bounds():
    """train.model's configs refuse what export refuses (a run started from code cannot build them either)."""
    from runtime.errors import InvalidInputError
    from train.model import ClassifierConfig, VAEConfig, config_from_json

    with pytest.raises(InvalidInputError, match="latent_dim is 1000000000"):
        VAEConfig("big", 10**9)
    with pytest.raises(InvalidInputError, match="conv_filters is \\[32\\]"):
        VAEConfig("x", 2, conv_filters=(32,))
    with pytest.raises(InvalidInputError, match="feature_units is 0"):
        ClassifierConfig(feature_units=0)
    with pytest.raises(InvalidInputError, match="dropout is 1.5"):
        ClassifierConfig(dropout=1.5)
    with pytest.raises(InvalidInputError, match="conv_filters is 'ab'"):
        config_from_json({**MODEL, "conv_filters": "ab"})
    assert config_from_json(MODEL).conv_filters == (32, 64)


# ----------------------------------------------------------------------------- a refusal is one line on stderr
def run_cli(folder: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}  # as a user's shell has it
    argv = ["--model", folder.name, "--artifacts", str(folder.parent), "--quiet", "--calibration", "prior"]
    return subprocess.run(
        [sys.executable, "-m", "export", *argv, "--reports", str(folder.parent / "reports")],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_a_run_set_refusal_is_exactly_one_line_on_stderr(folder):
    """It used to come after four TensorFlow/absl lines ("All log messages before absl::InitializeLog()",
    oneDNN's notice, twice each): the run set is now checked before TensorFlow is imported."""
    metrics = json.loads((folder / "metrics.json").read_text())
    metrics["run_set"]["run_id"] = metrics["run_id"] = "e" * 32
    (folder / "metrics.json").write_text(json.dumps(metrics))
    result = run_cli(folder, timeout=60)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: "), result.stderr
    assert "mixes two trainings" in result.stderr and result.stdout == ""


def test_a_refusal_after_tensorflow_is_loaded_is_exactly_one_line(folder):
    """A model file whose layers differ from the architecture is refused after TensorFlow is imported and the
    architecture built: TensorFlow's load-time lines must not reach stderr either."""
    result = run_cli(folder)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1, result.stderr
    assert "layer 0 is Dense 'x', expected InputLayer 'z'" in result.stderr


# ------------------------------------------------------------------------------- two exports into one folder
CONCURRENT_WRITER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from runtime.fileio import staged_folder

    target, tag = Path(sys.argv[1]), sys.argv[2]
    with staged_folder(target) as staging:
        for i in range(10):
            (staging / f"part{i}.txt").write_text(tag)
            time.sleep(0.15)  # a long export: the other run starts (and clears stale staging) meanwhile
        (staging / "set.txt").write_text(tag)
    """
)


def test_two_concurrent_runs_into_one_folder_both_finish(tmp_path):
    """The later run's staged_folder deleted the earlier one's staging folder, which then failed with "No such
    file or directory ... create its folder". Each staging folder now names its owner's pid and only the
    folders of dead processes are removed: both runs finish, and the folder holds one whole set."""
    target = tmp_path / "export"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    first = subprocess.Popen([sys.executable, "-c", CONCURRENT_WRITER, str(target), "a"], env=env)
    while not list(tmp_path.glob(".export-staging-*")):
        time.sleep(0.01)
    second = subprocess.run(
        [sys.executable, "-c", CONCURRENT_WRITER, str(target), "b"], env=env, capture_output=True, text=True
    )
    assert first.wait(60) == 0 and second.returncode == 0, second.stderr
    tags = {p.read_text() for p in target.iterdir()}
    assert len(tags) == 1 and len(list(target.iterdir())) == 11  # one run's whole set, not a mix
    assert not list(tmp_path.glob(".export-staging-*"))


def test_only_staging_folders_of_dead_processes_are_removed(tmp_path):
    target = tmp_path / "export"
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    dead_pid = int(dead.stdout)
    host = fileio._HOST
    stale = tmp_path / f".export-staging-{host}-{dead_pid}.abcd1234"
    parked = tmp_path / f".export-staging-{host}-{dead_pid}.abcd1234-old"
    legacy = tmp_path / ".export-staging-k3j_9x0a"  # written before staging folders named their owner
    mine = tmp_path / f".export-staging-{host}-{os.getpid()}.mine1234"  # ours, no block fills it: left over
    live = tmp_path / f".export-staging-{host}-{os.getppid()}.live1234"  # pytest's parent: alive
    elsewhere = tmp_path / f".export-staging-otherhost-{dead_pid}.abcd1234"  # another machine's: unknowable
    for path in (stale, parked, legacy, mine, live, elsewhere):
        path.mkdir()
        (path / "f").write_text("x")
    assert sorted(fileio.remove_stale_staging(target)) == sorted([stale, parked, legacy, mine])
    assert live.is_dir() and elsewhere.is_dir()
    with fileio.staged_folder(target) as staging:  # a run of this process keeps its own folder too
        assert staging.name.startswith(f".export-staging-{host}-{os.getpid()}.")
        assert fileio.remove_stale_staging(target) == [] and staging.is_dir()
        (staging / "set.txt").write_text("mine")
    assert (target / "set.txt").read_text() == "mine" and live.is_dir()
