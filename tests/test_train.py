"""End-to-end training on a small slice of the real MNIST: the loss falls, every output is written and
loads back, resume continues from the saved epoch, and bad input fails cleanly with nothing half-written."""

from __future__ import annotations

import json
import math

import keras
import numpy as np
import pytest

from train.__main__ import main, parse_args

SMALL = [
    "--train-limit",
    "3072",
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
    from train.loop import Trainer

    straight, interrupted = tmp_path / "straight", tmp_path / "interrupted"
    args = ["--model", "vae2d", "--no-figures", "--iw-samples", "100", "--epochs", "2"]
    assert train(straight, mnist_path, *args) == 0

    # Kill the second run right after its epoch-1 checkpoint is on disk, as a Ctrl-C or OOM kill would.
    original_save = Trainer.save_checkpoint

    def save_then_die(self, epoch):
        original_save(self, epoch)
        raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "save_checkpoint", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        train(interrupted, mnist_path, *args)
    monkeypatch.setattr(Trainer, "save_checkpoint", original_save)
    assert not (interrupted / "vae2d" / "decoder.keras").exists()
    assert train(interrupted, mnist_path, *args, "--resume") == 0
    rows_a = (straight / "vae2d" / "history.csv").read_text().splitlines()
    rows_b = (interrupted / "vae2d" / "history.csv").read_text().splitlines()
    assert len(rows_b) == 3
    col = rows_a[0].split(",").index("test_neg_elbo")
    for a, b in zip(rows_a[1:], rows_b[1:], strict=True):
        assert float(a.split(",")[col]) == pytest.approx(float(b.split(",")[col]), rel=1e-4)
    wa = keras.models.load_model(straight / "vae2d" / "decoder.keras").get_weights()
    wb = keras.models.load_model(interrupted / "vae2d" / "decoder.keras").get_weights()
    for a, b in zip(wa, wb, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


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
    after = {p.name: p.read_bytes() for p in trained_corr.iterdir() if p.suffix in (".keras", ".json")}
    assert after == before
    assert not list(trained_corr.glob(".*"))


def test_unwritable_output_dir(tmp_path, mnist_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    assert train(blocker / "out", mnist_path, "--model", "vae2d", "--epochs", "1") == 2
    assert "not writable" in capsys.readouterr().err


def test_missing_data(tmp_path, capsys):
    rc = main(
        parse_args(["--data", str(tmp_path / "missing.npz"), "--out", str(tmp_path), "--model", "vae2d"])
    )
    assert rc == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: MNIST not found") and "\n" not in err
    assert not (tmp_path / "vae2d" / "decoder.keras").exists()


def test_non_spd_prior_from_cli(tmp_path, mnist_path, capsys):
    assert train(tmp_path, mnist_path, "--model", "vae2d_corr", "--prior-cov", "[[1, 2], [2, 1]]") == 2
    assert "not positive definite" in capsys.readouterr().err
