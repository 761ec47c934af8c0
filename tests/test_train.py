"""End-to-end training on a small slice of the real MNIST: the loss falls, every output is written and
loads back, resume continues from the saved epoch, and bad input fails cleanly with nothing half-written."""

from __future__ import annotations

import json
import math
import os
import shutil

import keras
import numpy as np
import pytest

from runtime.errors import VaeEdgeError
from train.__main__ import main, parse_args
from train.model import VAEConfig
from train.registry import BUILTINS
from train.settings import (
    DEFAULTS,
    SettingError,
    TrainSettings,
)

SMALL = [
    "--train-limit",
    "3072",
    "--validation",
    "512",
    "--test-limit",
    "512",
    "--iw-samples",
    "100",
    "--quiet",
    "--precision",
    "float32",
]
UNTRAINED_BCE = 784 * math.log(2)  # ≈ 543 nats: a decoder that outputs 0.5 everywhere
# Two epochs on 3,072 images must at least bring the test −ELBO from ≈ 543 below this (seen: ≈ 290).
TWO_EPOCH_NEG_ELBO_BOUND = 330.0
VAE_FILES = [
    "encoder.keras",
    "decoder.keras",
    "config.json",
    "history.csv",
    "metrics.json",
    "checkpoint.npz",
    "loss_curves.png",
    "manifold.png",
    "latent_clusters.png",
]


def train(tmp_path, mnist_path, *extra):
    return main(parse_args(["--data", str(mnist_path), "--out", str(tmp_path), *SMALL, *extra]))


@pytest.fixture(scope="module")
def trained_corr(tmp_path_factory, mnist_path):
    out = tmp_path_factory.mktemp("corr")
    assert train(out, mnist_path, "--model", "vae2d_corr", "--epochs", "2", "--kl-warmup-epochs", "0") == 0
    return out / "vae2d_corr"


def test_loss_falls_and_every_output_loads(trained_corr):
    for name in [*VAE_FILES, "tilted_manifold.png"]:
        assert (trained_corr / name).stat().st_size > 0, name
    metrics = json.loads((trained_corr / "metrics.json").read_text())
    for key in ("test_bce", "test_kl", "test_neg_elbo", "test_iw_nll", "kl_per_dim", "active_units"):
        assert key in metrics
    assert metrics["test_neg_elbo"] < TWO_EPOCH_NEG_ELBO_BOUND < UNTRAINED_BCE
    assert abs(metrics["test_bce"] + metrics["test_kl"] - metrics["test_neg_elbo"]) < 1e-2
    assert metrics["test_iw_nll"] < metrics["test_neg_elbo"] + 1.0  # the IW bound is at least as tight
    history = (trained_corr / "history.csv").read_text().splitlines()
    assert len(history) == 3 and history[0].startswith("epoch,")
    assert "validation_neg_elbo" in history[0] and "test_" not in history[0]  # curves: validation only
    assert (metrics["train_images"], metrics["validation_images"], metrics["test_images"]) == (2560, 512, 512)
    assert metrics["validation_neg_elbo"] < TWO_EPOCH_NEG_ELBO_BOUND
    assert not [k for k in metrics if "best" in k]  # no figure picked per epoch
    config = json.loads((trained_corr / "config.json").read_text())
    assert config["model"]["prior"]["cov"] == [[1.0, 0.4], [0.4, 0.5]]
    np.testing.assert_allclose(
        np.array(config["model"]["prior"]["cholesky"]) @ np.array(config["model"]["prior"]["cholesky"]).T,
        [[1.0, 0.4], [0.4, 0.5]],
        atol=1e-12,
    )
    assert config["data"]["sha256"] and config["training"]["seed"] == 0 and "keras" in config["versions"]
    enc = keras.models.load_model(trained_corr / "encoder.keras")
    dec = keras.models.load_model(trained_corr / "decoder.keras")
    mu, _ = enc(np.zeros((1, 28, 28, 1), np.float32))
    img = np.asarray(dec(np.asarray(mu)))
    assert img.shape == (1, 28, 28, 1) and np.all((img >= 0) & (img <= 1))
    assert not list(trained_corr.glob(".*")), "temporary files left behind"


def test_resume_continues_from_saved_epoch(tmp_path, mnist_path, monkeypatch):
    from train import vae as vae_module
    from train.loop import Trainer

    straight, interrupted = tmp_path / "straight", tmp_path / "interrupted"
    args = ["--model", "vae2d", "--no-figures", "--iw-samples", "100", "--epochs", "2"]
    splits, real_evaluate = [], vae_module.evaluate

    def recording_evaluate(fn, x, seed=1234, split="test"):
        splits.append((split, len(x)))
        return real_evaluate(fn, x, seed, split)

    monkeypatch.setattr(vae_module, "evaluate", recording_evaluate)
    assert train(straight, mnist_path, *args) == 0
    monkeypatch.setattr(vae_module, "evaluate", real_evaluate)
    # On the validation split: two epochs' curves for the raw and the averaged weights (4), the choice between
    # them (2) and the kept weights' final figures (1). The test split: once, at the end.
    assert splits.count(("test", 512)) == 1 and splits.count(("validation", 512)) == 7, splits

    # Kill the second run right after its epoch-1 checkpoint is on disk, as a Ctrl-C or OOM kill would.
    original_save = Trainer.save_checkpoint

    def save_then_die(self, epoch):
        original_save(self, epoch)
        raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "save_checkpoint", save_then_die)
    assert train(interrupted, mnist_path, *args) == 130  # the CLI's answer to an interrupt: nothing published
    monkeypatch.setattr(Trainer, "save_checkpoint", original_save)
    assert not (interrupted / "vae2d" / "decoder.keras").exists()
    stale = interrupted / "vae2d" / ".decoder.keras.q1w2e3r4.keras"  # what a kill -9 mid-save leaves
    stale.write_bytes(b"half a model")
    assert train(interrupted, mnist_path, *args, "--resume") == 0
    assert not stale.exists()
    rows_a = (straight / "vae2d" / "history.csv").read_text().splitlines()
    rows_b = (interrupted / "vae2d" / "history.csv").read_text().splitlines()
    assert len(rows_b) == 3
    col = rows_a[0].split(",").index("validation_neg_elbo")
    for a, b in zip(rows_a[1:], rows_b[1:], strict=True):
        assert float(a.split(",")[col]) == pytest.approx(float(b.split(",")[col]), rel=1e-4)
    wa = keras.models.load_model(straight / "vae2d" / "decoder.keras").get_weights()
    wb = keras.models.load_model(interrupted / "vae2d" / "decoder.keras").get_weights()
    for a, b in zip(wa, wb, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_study_posterior_variant_trains_and_is_recorded(tmp_path, mnist_path):
    tiny = ["--train-limit", "640", "--validation", "128", "--test-limit", "100", "--iw-samples", "20"]
    flags = ["--model", "vae2d_corr", "--epochs", "1", "--no-figures", "--posterior", "study", *tiny]
    assert train(tmp_path, mnist_path, *flags) == 0
    metrics = json.loads((tmp_path / "vae2d_corr" / "metrics.json").read_text())
    config = json.loads((tmp_path / "vae2d_corr" / "config.json").read_text())
    assert metrics["posterior"] == config["training"]["posterior"] == "study"
    assert math.isfinite(metrics["test_neg_elbo"]) and metrics["test_neg_elbo"] < UNTRAINED_BCE
    # IW-NLL with the study's own posterior N(μ, Σ) as proposal: a tighter estimate than its bound
    assert metrics["test_iw_nll"] < metrics["test_neg_elbo"]


def test_a_new_model_trains_at_any_latent_size_into_a_run_set_export_accepts(tmp_path, mnist_path, capsys):
    """``--model NAME --latent-dim K --prior-cov ...``: the built-ins' architecture under a new name, the same
    run-set files as a built-in, and a config.json that records its name, latent size and prior."""
    from export.preflight import check_model_folder
    from train.registry import config_from_json
    from train.runset import verify_run_set

    cov = [[1.0, 0.4, 0.0, 0.0], [0.4, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 0.5]]
    rows = ";".join(",".join(f"{v:g}" for v in row) for row in cov)
    tiny = ["--train-limit", "640", "--validation", "128", "--test-limit", "100", "--iw-samples", "20"]
    flags = ["--model", "digits4", "--latent-dim", "4", "--prior-cov", rows, *tiny]
    assert train(tmp_path, mnist_path, *flags, "--epochs", "1") == 0
    folder = tmp_path / "digits4"
    assert [p.name for p in tmp_path.iterdir()] == ["digits4"]
    run_files = [name for name in VAE_FILES if not name.endswith(".png")]
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [*run_files, "loss_curves.png"]
    )  # no 2-D/3-D plots
    config = json.loads((folder / "config.json").read_text())
    assert (config["model"]["name"], config["model"]["latent_dim"]) == ("digits4", 4)
    assert config["model"]["prior_cov"] == config["model"]["prior"]["cov"] == cov
    assert config_from_json(config["model"]) == VAEConfig("digits4", 4, tuple(map(tuple, cov)))
    assert (
        config["training"]
        == TrainSettings(
            **{
                **DEFAULTS,
                "epochs": 1,
                "train_limit": 640,
                "validation": 128,
                "test_limit": 100,
                "iw_samples": 20,
            }
        ).to_json()
    )  # the shared defaults: a new model has no own ones
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["model"] == "digits4" and len(metrics["kl_per_dim"]) == 4
    assert math.isfinite(metrics["test_neg_elbo"]) and metrics["test_neg_elbo"] < UNTRAINED_BCE
    assert verify_run_set(folder) == metrics["run_id"]
    check_model_folder(folder, "digits4")  # what export checks before it reads a model folder
    decoder = keras.models.load_model(folder / "decoder.keras")
    assert decoder.input_shape == (None, 4) and decoder.output_shape == (None, 28, 28, 1)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    assert train(tmp_path, mnist_path, *flags, "--epochs", "1", "--resume") == 0  # finished: left alone
    assert "nothing to do" in capsys.readouterr().err
    other = ["--model", "digits4", "--latent-dim", "3", "--epochs", "1", "--resume", *tiny]
    assert train(tmp_path, mnist_path, *other) == 2
    assert "trained with latent_dim=4, but this run gives latent_dim=3" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


def test_prior_cov_reads_rows_or_json():
    rows = parse_args(["--model", "vae2d_corr", "--prior-cov", "1,0.3; 0.3,0.5"]).prior_cov_matrix
    assert (
        rows == parse_args(["--model", "vae2d_corr", "--prior-cov", "[[1,0.3],[0.3,0.5]]"]).prior_cov_matrix
    )
    assert rows == ((1.0, 0.3), (0.3, 0.5))


@pytest.mark.parametrize("decay", ["0.5", "0.999"])
def test_the_run_keeps_the_weights_with_the_lower_validation_elbo(tmp_path, mnist_path, decay):
    # 0.999 over 40 steps averages in the near-untrained start (worse); 0.5 follows the last steps closely.
    tiny = ["--train-limit", "1152", "--validation", "256", "--test-limit", "64", "--iw-samples", "0"]
    flags = ["--model", "vae2d", "--epochs", "2", "--no-figures", "--ema-decay", decay, *tiny]
    assert train(tmp_path, mnist_path, *flags) == 0
    m = json.loads((tmp_path / "vae2d" / "metrics.json").read_text())
    raw, ema = m["validation_neg_elbo_raw"], m["validation_neg_elbo_ema"]
    assert raw != ema and m["weights"] == ("ema" if ema < raw else "raw")
    # the kept weights are the ones saved and evaluated: their validation figure is the lower of the two
    assert m["validation_neg_elbo"] == pytest.approx(min(raw, ema), abs=1e-3)
    history = (tmp_path / "vae2d" / "history.csv").read_text().splitlines()
    assert "validation_neg_elbo_ema" in history[0].split(",")
    if decay == "0.999":
        assert m["weights"] == "raw" and ema > raw + 50


def test_validation_split_is_seeded_disjoint_and_optional():
    index = np.arange(60_000)
    split = TrainSettings(seed=0).split(index, index)
    assert (len(split.x_train), len(split.x_validation)) == (55_000, 5_000)
    assert not set(split.x_train) & set(split.x_validation)
    assert sorted({*split.x_train, *split.x_validation}) == index.tolist()
    assert np.array_equal(split.y_validation, split.x_validation)  # labels follow their images
    assert np.array_equal(TrainSettings(seed=0).split(index, index).x_validation, split.x_validation)
    assert not np.array_equal(TrainSettings(seed=1).split(index, index).x_validation, split.x_validation)
    assert np.array_equal(TrainSettings(validation=0).split(index, index).x_train, index)  # all 60,000
    limited = TrainSettings(train_limit=3072, validation=512).split(index, index)
    assert limited.x_train.max() < 3072 and len(limited.x_validation) == 512
    with pytest.raises(SettingError, match="lower --validation"):
        TrainSettings(train_limit=1000, validation=900).split(index, index)


def test_classifier_trains(tmp_path, mnist_path):
    assert train(tmp_path, mnist_path, "--model", "classifier", "--epochs", "2") == 0
    metrics = json.loads((tmp_path / "classifier" / "metrics.json").read_text())
    assert (
        metrics["test_accuracy"] > 0.75
    )  # 48 steps on 3,072 images (seen: 0.85); the full run reaches ≥ 0.99
    model = keras.models.load_model(tmp_path / "classifier" / "classifier.keras")
    assert [tuple(o.shape) for o in model.outputs] == [(None, 10), (None, 128)]


def test_nan_loss_stops_cleanly_and_keeps_old_artifacts(trained_corr, mnist_path, capsys):
    before = {p.name: p.read_bytes() for p in trained_corr.iterdir() if p.suffix in (".keras", ".json")}
    rc = train(trained_corr.parent, mnist_path, "--model", "vae2d_corr", "--epochs", "1", "--lr", "1e12")
    assert rc == 2
    err = capsys.readouterr().err
    assert "NaN" in err and "lower --lr" in err
    # epoch 1 failed: the checkpoint.npz there is the earlier run's, not a "last good epoch" of this one
    assert "saved no checkpoint" in err and "checkpoint.npz" not in err, err
    after = {p.name: p.read_bytes() for p in trained_corr.iterdir() if p.suffix in (".keras", ".json")}
    assert after == before
    assert not list(trained_corr.glob(".*"))


def test_unwritable_output_dir(tmp_path, mnist_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    assert train(blocker / "out", mnist_path, "--model", "vae2d", "--epochs", "1") == 2
    assert "not writable" in capsys.readouterr().err


@pytest.mark.parametrize(
    "flags, field, stored, asked",
    [
        (["--prior-cov", "[[1.0,0.3],[0.3,0.5]]"], "prior_cov", "0.4", "0.3"),
        (["--seed", "1"], "seed", "seed=0", "seed=1"),
        (["--batch-size", "64"], "batch_size", "batch_size=128", "batch_size=64"),
    ],
)
def test_resume_refuses_a_differing_config(trained_corr, mnist_path, capsys, flags, field, stored, asked):
    before = {p.name: p.read_bytes() for p in trained_corr.iterdir() if p.is_file()}
    rc = train(trained_corr.parent, mnist_path, "--model", "vae2d_corr", "--epochs", "2", "--resume", *flags)
    assert rc == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --resume:") and "\n" not in err
    assert f"trained with {field}=" in err and stored in err and asked in err, err
    assert {p.name: p.read_bytes() for p in trained_corr.iterdir() if p.is_file()} == before


def test_resume_takes_the_config_from_the_checkpoint(trained_corr):
    from train.loop import resolve_resume
    from train.model import PRESETS

    custom = VAEConfig("vae2d_corr", 2, ((1.0, 0.2), (0.2, 0.5)))
    cfg, settings = resolve_resume(
        checkpoint=trained_corr / "checkpoint.npz",
        name="vae2d_corr",
        model_config=custom,
        settings=TrainSettings(batch_size=32, seed=5),
        explicit={},  # nothing typed: everything comes from the checkpoint
    )
    assert cfg == PRESETS["vae2d_corr"]
    assert (settings.batch_size, settings.seed, settings.epochs, settings.train_limit) == (128, 0, 2, 3072)
    # a checkpoint written before the whole configuration was stored: its settings, the behaviour of that code
    legacy = trained_corr.parent / "legacy" / "checkpoint.npz"
    legacy.parent.mkdir()
    with np.load(trained_corr / "checkpoint.npz") as ck:
        arrays = {k: ck[k] for k in ck.files}
    meta = json.loads(arrays["meta"].tobytes().decode())
    old_settings = {
        k: v for k, v in meta["config"]["training"].items() if k not in ("validation", "posterior")
    }
    meta = {
        "epoch": meta["epoch"],
        "history": meta["history"],
        "settings": old_settings,
        "name": meta["name"],
    }
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    np.savez(legacy, **arrays)
    cfg, old = resolve_resume(
        checkpoint=legacy, name="vae2d_corr", model_config=custom, settings=TrainSettings(), explicit={}
    )
    assert cfg == custom and (old.validation, old.posterior, old.train_limit) == (0, "diagonal", 3072)
    with pytest.raises(VaeEdgeError, match="belongs to 'vae2d_corr', not 'vae2d'"):
        resolve_resume(
            checkpoint=trained_corr / "checkpoint.npz",
            name="vae2d",
            model_config=PRESETS["vae2d"],
            settings=settings,
            explicit={},
        )


def test_run_set_is_verified(trained_corr, tmp_path):
    from train.runset import verify_run_set

    run_id = json.loads((trained_corr / "metrics.json").read_text())["run_id"]
    assert verify_run_set(trained_corr) == run_id
    assert json.loads((trained_corr / "config.json").read_text())["run_set"]["run_id"] == run_id
    mixed = tmp_path / "vae2d_corr"
    shutil.copytree(trained_corr, mixed)
    (mixed / "encoder.keras").write_bytes((mixed / "encoder.keras").read_bytes() + b"other run")
    with pytest.raises(VaeEdgeError, match=r"encoder\.keras does not belong to run"):
        verify_run_set(mixed)
    shutil.copy(trained_corr / "encoder.keras", mixed / "encoder.keras")
    config = json.loads((mixed / "config.json").read_text())
    config["run_set"]["run_id"] = "0" * 32
    (mixed / "config.json").write_text(json.dumps(config))
    with pytest.raises(VaeEdgeError, match="config.json belongs to run 0{32} and metrics.json to run"):
        verify_run_set(mixed)
    (mixed / "metrics.json").unlink()
    with pytest.raises(VaeEdgeError, match=r"metrics\.json is missing"):
        verify_run_set(mixed)


@pytest.mark.parametrize("killed_at", [1, 2, 3, 4, 5])
def test_a_publish_killed_at_any_write_leaves_no_set_that_verifies_as_new(
    tmp_path, mnist, monkeypatch, killed_at
):
    """Five renames publish a run (encoder, decoder, config, history, metrics): killed before any of them, the
    folder is either the complete old run or refused by verify_run_set — never taken for the new run."""
    import runtime.fileio
    from train.model import PRESETS, build_decoder, build_encoder
    from train.runset import verify_run_set
    from train.vae import publish_run

    cfg = PRESETS["vae2d"]
    models = {"encoder.keras": build_encoder(cfg), "decoder.keras": build_decoder(cfg)}
    settings = TrainSettings(epochs=1, train_limit=128, test_limit=10)
    old = publish_run(tmp_path, models, cfg, settings, mnist, [], {"model": "vae2d"})
    for model in models.values():  # the next run's weights (keras writes identical weights byte-identically)
        model.set_weights([w + 1 for w in model.get_weights()])
    real_replace, calls = os.replace, []

    def replace_then_die(src, dst):
        calls.append(dst)
        if len(calls) == killed_at:
            raise KeyboardInterrupt  # as a kill between two renames
        real_replace(src, dst)

    monkeypatch.setattr(runtime.fileio.os, "replace", replace_then_die)
    with pytest.raises(KeyboardInterrupt):
        publish_run(tmp_path, models, cfg, settings, mnist, [], {"model": "vae2d"})
    monkeypatch.setattr(runtime.fileio.os, "replace", real_replace)
    if killed_at == 1:
        assert verify_run_set(tmp_path) == old  # nothing replaced yet: the old run, complete
    else:
        with pytest.raises(VaeEdgeError, match="mixes two trainings"):
            verify_run_set(tmp_path)
    assert not list(tmp_path.glob(".*")), "temporary files left behind"
    new = publish_run(tmp_path, models, cfg, settings, mnist, [], {"model": "vae2d"})
    assert verify_run_set(tmp_path) == new != old


def test_stale_temporaries_are_removed(tmp_path):
    from train.runset import remove_stale_temporaries

    stale = [tmp_path / ".encoder.keras.k2j4_x9a.keras", tmp_path / ".metrics.json.ab12cd34.tmp"]
    kept = [tmp_path / "encoder.keras", tmp_path / ".notes", tmp_path / "metrics.json"]
    for p in stale + kept:
        p.write_text("x")
    assert sorted(remove_stale_temporaries(tmp_path)) == sorted(stale)
    assert all(p.exists() for p in kept) and not any(p.exists() for p in stale)


def test_bench_reads_vae_edge_from_a_finished_run_and_refuses_other_settings(tmp_path, mnist_path):
    from train.bench import read_vae_edge_run

    tiny = ["--train-limit", "640", "--validation", "128", "--test-limit", "100", "--iw-samples", "0"]
    assert train(tmp_path, mnist_path, "--model", "vae2d", "--epochs", "2", "--no-figures", *tiny) == 0
    limits = {"train_limit": 640, "test_limit": 100}
    row = read_vae_edge_run(tmp_path, 2, epochs=2, seed=0, validation=128, **limits)
    metrics = json.loads((tmp_path / "vae2d" / "metrics.json").read_text())
    assert row["test_neg_elbo"] == metrics["test_neg_elbo"] and len(row["epoch_seconds"]) == 2
    assert row["from_run"]["run_id"] == metrics["run_id"]
    assert row["batch_size"] == BUILTINS["vae2d"].defaults["batch_size"]  # its own, not the reference's 128
    from train.bench import REFERENCE_BATCH, bench_markdown

    reference = {
        "loop": "keras-io reference",
        "latent_dim": 2,
        "precision": "float32",
        "batch_size": REFERENCE_BATCH,
    }
    reference |= {"seconds_per_epoch": 2.0, "images_per_s": 320.0, "test_neg_elbo": 200.0}
    ours = row | {"speedup": 2.0 / row["seconds_per_epoch"], "speed_goal_met": False}
    report = {
        "epochs": 2,
        "seed": 0,
        "train_images": 512,
        "validation_images": 128,
        "runs": {"2": [reference, ours]},
    }
    md = bench_markdown(report | {"platform": {"cpu": "test CPU", "cores": 2}})
    assert f"| 2-D | keras-io reference | float32 | {REFERENCE_BATCH} |" in md
    assert f"| 2-D | vae-edge | float32 | {row['batch_size']} |" in md and "read from earlier runs" in md
    with pytest.raises(VaeEdgeError, match="trained with epochs=2, this benchmark needs epochs=30"):
        read_vae_edge_run(tmp_path, 2, epochs=30, seed=0, validation=128, **limits)
    with pytest.raises(VaeEdgeError, match="train_limit=640"):
        read_vae_edge_run(tmp_path, 2, epochs=2, seed=0, validation=128)


def test_reference_loop_is_scored_like_vae_edge(mnist):
    """The keras-io reference is trained on the given images and scored with the logits-form BCE from the very
    weights it trained (its decoder rebuilt without the final sigmoid)."""
    from runtime.quality import bce_per_image
    from train.bench import reference_neg_elbo, run_reference

    result = run_reference(mnist.x_train[:128], mnist.x_test[:64], latent_dim=3, epochs=1, seed=0)
    assert result["latent_dim"] == 3 and result["images_per_s"] > 0
    assert math.isfinite(result["test_neg_elbo"]) and result["test_neg_elbo"] < UNTRAINED_BCE + 50
    from train.bench import build_reference_vae

    vae = build_reference_vae(2)
    x = mnist.images("test")[:64]
    z_mean, z_log_var, _ = vae.encoder.predict(x, verbose=0)
    z = z_mean + np.exp(0.5 * z_log_var) * np.random.default_rng(7).standard_normal(z_mean.shape)
    kl = -0.5 * (1 + z_log_var - z_mean**2 - np.exp(z_log_var)).sum(1)
    by_probabilities = float((bce_per_image(x, vae.decoder.predict(z, verbose=0)) + kl).mean())
    assert reference_neg_elbo(vae, x, 2, seed=7) == pytest.approx(by_probabilities, abs=1e-3)


def test_results_summarise_runs_over_seeds(trained_corr, tmp_path, capsys):
    from train.results import main as results_main
    from train.results import parse_args as results_args

    base = json.loads((trained_corr / "metrics.json").read_text())["test_neg_elbo"]
    for seed, shift in ((0, 0.0), (1, 1.0), (2, 5.0)):
        folder = tmp_path / "runs" / f"seed-{seed}" / "vae2d_corr"
        shutil.copytree(trained_corr, folder)
        metrics = json.loads((folder / "metrics.json").read_text())
        metrics["test_neg_elbo"] = base + shift
        (folder / "metrics.json").write_text(json.dumps(metrics))
    args = [
        "--collect-only",
        "--models",
        "vae2d_corr",
        "--out",
        str(tmp_path / "runs"),
        "--reports",
        str(tmp_path),
    ]
    assert results_main(results_args(args)) == 0
    report = json.loads((tmp_path / "results.json").read_text())
    fig = report["models"]["vae2d_corr"]["figures"]["test_neg_elbo"]
    assert fig["mean"] == pytest.approx(base + 2.0) and fig["sd"] == pytest.approx(math.sqrt(7.0))
    assert (fig["min"], fig["max"]) == (pytest.approx(base), pytest.approx(base + 5.0))
    assert report["models"]["vae2d_corr"]["goal"]["met"] is False and report["platform"]["cpu"]
    md = (tmp_path / "results.md").read_text()
    stored = json.loads((trained_corr / "metrics.json").read_text())
    kept = 3 if stored["weights"] == "ema" else 0
    gain = stored["validation_neg_elbo_raw"] - stored["validation_neg_elbo_ema"]
    assert f"vae2d_corr: the weights' moving average was kept in {kept} of 3 runs" in md
    assert f"{gain:+.3f}, {gain:+.3f}, {gain:+.3f}" in md
    # a run whose files do not belong together is refused, not averaged in
    (tmp_path / "runs" / "seed-2" / "vae2d_corr" / "decoder.keras").write_bytes(b"another run")
    assert results_main(results_args(args)) == 2
    assert "does not belong to run" in capsys.readouterr().err


def test_a_folder_from_before_run_sets_can_be_adopted_once(trained_corr, tmp_path, capsys):
    from train.runset import main as runset_main
    from train.runset import parse_args as runset_args

    legacy = tmp_path / "vae2d_corr"
    shutil.copytree(trained_corr, legacy)
    for name in ("config.json", "metrics.json"):  # as the code before run sets wrote them
        record = json.loads((legacy / name).read_text())
        record.pop("run_set"), record.pop("run_id", None)
        (legacy / name).write_text(json.dumps(record))
    assert runset_main(runset_args(["verify", str(legacy)])) == 2
    assert "carries no readable run set" in capsys.readouterr().err
    assert runset_main(runset_args(["adopt", str(legacy)])) == 0
    assert runset_main(runset_args(["verify", str(legacy)])) == 0
    assert runset_main(runset_args(["adopt", str(legacy)])) == 2  # never over an existing set
    assert "already carries a run set" in capsys.readouterr().err
