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
    from train.data import load_mnist

    return load_mnist(mnist_path)


def pytest_sessionfinish(session, exitstatus):
    """A skipped test counts as a failure: a suite that quietly skips must not pass for green."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None and reporter.stats.get("skipped") and exitstatus == 0:
        session.exitstatus = 1
