"""MNIST loading: every source the loader accepts, and a clear one-line error for each bad one."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from runtime.data import ENV_VAR, load_mnist
from runtime.errors import VaeEdgeError


def test_real_mnist_loads_with_expected_layout(mnist):
    assert mnist.x_train.shape == (60000, 28, 28) and mnist.x_test.shape == (10000, 28, 28)
    assert mnist.y_train[:5].tolist() == [5, 0, 4, 1, 9]
    assert mnist.sha256 == "38727c8ccfdb9fde55b8ff2dbf6fba5f26e2366bf8305b4661be9161596ec5cb"
    img = mnist.images("test")
    assert img.shape == (10000, 28, 28, 1) and img.dtype == np.float32 and img.min() >= 0 and img.max() == 1


def test_environment_variable_is_honoured(mnist_path, monkeypatch):
    monkeypatch.setenv(ENV_VAR, str(mnist_path))
    assert load_mnist().source == str(mnist_path)


def write_idx(path, array, gz):
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    data = header + array.astype(np.uint8).tobytes()
    (gzip.open if gz else open)(path, "wb").write(data)


@pytest.mark.parametrize("gz", [True, False])
def test_idx_folder_loads(tmp_path, mnist, gz):
    suffix = ".gz" if gz else ""
    write_idx(tmp_path / f"train-images-idx3-ubyte{suffix}", mnist.x_train[:100], gz)
    write_idx(tmp_path / f"train-labels-idx1-ubyte{suffix}", mnist.y_train[:100], gz)
    write_idx(tmp_path / f"t10k-images-idx3-ubyte{suffix}", mnist.x_test[:50], gz)
    write_idx(tmp_path / f"t10k-labels-idx1-ubyte{suffix}", mnist.y_test[:50], gz)
    loaded = load_mnist(tmp_path)
    np.testing.assert_array_equal(loaded.x_train, mnist.x_train[:100])
    np.testing.assert_array_equal(loaded.y_test, mnist.y_test[:50])


def test_missing_file_says_how_to_supply(tmp_path):
    with pytest.raises(VaeEdgeError, match=f"MNIST not found.*--data PATH or set {ENV_VAR}"):
        load_mnist(tmp_path / "nope.npz")


def test_truncated_npz(tmp_path, mnist_path):
    bad = tmp_path / "mnist.npz"
    bad.write_bytes(mnist_path.read_bytes()[:100_000])
    with pytest.raises(VaeEdgeError, match="not a readable .npz"):
        load_mnist(bad)


def test_truncated_idx(tmp_path, mnist):
    write_idx(tmp_path / "train-images-idx3-ubyte", mnist.x_train[:10], False)
    for name in ("train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        write_idx(tmp_path / name, mnist.x_train[:10] if "images" in name else mnist.y_train[:10], False)
    p = tmp_path / "train-images-idx3-ubyte"
    p.write_bytes(p.read_bytes()[:-7])
    with pytest.raises(VaeEdgeError, match="truncated"):
        load_mnist(tmp_path)


@pytest.mark.parametrize(
    "change, fragment",
    [
        ({"x_train": np.zeros((10, 32, 32), np.uint8)}, r"shape \(10, 32, 32\), expected \(n, 28, 28\)"),
        ({"y_train": np.zeros(9, np.uint8)}, "labels do not match"),
        ({"x_test": np.zeros((10, 28, 28), np.float32)}, "expected uint8"),
        ({"y_test": np.full(10, 12, np.uint8)}, "labels 0..9"),
    ],
)
def test_malformed_arrays(tmp_path, change, fragment):
    arrays = {
        "x_train": np.zeros((10, 28, 28), np.uint8),
        "y_train": np.zeros(10, np.uint8),
        "x_test": np.zeros((10, 28, 28), np.uint8),
        "y_test": np.zeros(10, np.uint8),
    }
    arrays.update(change)
    np.savez(tmp_path / "m.npz", **arrays)
    with pytest.raises(VaeEdgeError, match=fragment):
        load_mnist(tmp_path / "m.npz")


def test_npz_missing_keys(tmp_path):
    np.savez(tmp_path / "m.npz", images=np.zeros((3, 28, 28), np.uint8))
    with pytest.raises(VaeEdgeError, match="lacks the arrays"):
        load_mnist(tmp_path / "m.npz")
