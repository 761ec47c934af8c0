"""Shared fixtures. The real MNIST is required (never skipped): point VAE_EDGE_MNIST at it, or keep it at
../shared/data/mnist.npz beside the checkout."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parents[1]
DEFAULT_MNIST = REPO.parent / "shared" / "data" / "mnist.npz"


@pytest.fixture(scope="session")
def mnist_path() -> Path:
    path = Path(os.environ.get("VAE_EDGE_MNIST") or DEFAULT_MNIST)
    if not path.is_file():
        pytest.fail(
            f"MNIST not found at {path}: set VAE_EDGE_MNIST to the keras-layout mnist.npz", pytrace=False
        )
    return path


@pytest.fixture(scope="session")
def mnist(mnist_path):
    from runtime.data import load_mnist

    return load_mnist(mnist_path)


def pytest_sessionfinish(session, exitstatus):
    """A skipped test counts as a failure: a suite that quietly skips must not pass for green."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None and reporter.stats.get("skipped") and exitstatus == 0:
        session.exitstatus = 1


# One epoch on 1,024 images, by TrainSettings field (tools/fuzz/ondisk.py writes the same as flags).
TINY_SETTINGS = {
    "train_limit": 1024,
    "validation": 0,
    "test_limit": 200,
    "iw_samples": 100,
    "epochs": 1,
    "precision": "float32",
}
TINY_EXPORT_BATCH = 4


@pytest.fixture(scope="session")
def exported(tmp_path_factory, mnist_path) -> Path:
    """artifacts/ with vae2d_corr and the classifier trained for a few steps and exported (batch 1 and 4)."""
    from export.__main__ import main as export_main
    from export.__main__ import parse_args as export_args
    from train.pipeline import train_models
    from train.registry import builtin

    root = tmp_path_factory.mktemp("artifacts")
    train_models(
        models=[builtin(model).config for model in ("vae2d_corr", "classifier")],
        out=root,
        data=mnist_path,
        settings=TINY_SETTINGS,
        progress=False,
        figures=False,
    )
    for model in ("vae2d_corr", "classifier"):
        args = [
            "--model",
            model,
            "--artifacts",
            str(root),
            "--batch",
            str(TINY_EXPORT_BATCH),
            "--calibration-samples",
            "500",
            "--data",
            str(mnist_path),
            "--reports",
            str(root / "reports"),
            "--quiet",
        ]
        assert export_main(export_args(args)) == 0
    return root


def _tiny_rgb_decoder(
    *, batch_size: int | None = None, activation: str | None = None, latent: int = 3, leaky: bool = False
):
    """Not the project's shape: a ``latent``-D latent (3 by default) to a 16x16x3 image (Dense -> 4x4x8 -> two
    stride-2 Conv2DTranspose -> a 3-channel Conv2DTranspose with ``activation``), initial weights, random
    biases. ``leaky``: the Dense's ReLU is a LeakyReLU(0.2) instead (a standalone LEAKY_RELU op)."""
    import keras
    import numpy as np

    layers = keras.layers
    z = keras.Input((latent,), batch_size=batch_size)
    dense = layers.Dense(4 * 4 * 8, activation=None if leaky else "relu")(z)
    x = layers.Reshape((4, 4, 8))(layers.LeakyReLU(0.2)(dense) if leaky else dense)
    x = layers.Conv2DTranspose(8, 3, strides=2, padding="same", activation="relu")(x)
    x = layers.Conv2DTranspose(8, 3, strides=2, padding="same", activation="relu")(x)
    model = keras.Model(z, layers.Conv2DTranspose(3, 3, padding="same", activation=activation)(x))
    rng = np.random.default_rng(2)
    for layer in model.layers:  # nonzero biases: with none the converter keeps each RELU as its own op
        if layer.weights:
            kernel, bias = layer.get_weights()
            layer.set_weights([kernel, rng.normal(0, 0.1, bias.shape).astype(np.float32)])
    return model


@pytest.fixture
def tiny_rgb_decoder():
    """The builder of a small decoder the C generator takes, of a shape the project's models do not have."""
    return _tiny_rgb_decoder
