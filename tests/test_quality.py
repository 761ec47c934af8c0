"""The runtime check's figures mean what they say: its float −ELBO is training's on the same images and latents
(the BCE in the logits form), and without MNIST it refuses to pass silently."""

from __future__ import annotations

import json

import numpy as np
import pytest

from runtime import Decoder, Encoder, load_manifest
from runtime.__main__ import main, parse_args
from runtime.check import decoder_logits, neg_elbo, reference_entry
from runtime.quality import bce_per_image_from_logits, kl_per_image, logits_from_probabilities

IMAGES = 200


def test_bce_from_logits_is_trainings_form():
    from train.model import bce_sum_from_logits

    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (3, 28, 28, 1)).astype(np.float32)
    logits = rng.normal(0, 25, (3, 28, 28, 1)).astype(np.float32)  # far into both tails
    np.testing.assert_allclose(
        bce_per_image_from_logits(x, logits), np.asarray(bce_sum_from_logits(x, logits)), rtol=1e-5
    )
    # float32 probabilities keep their logits where p and 1 − p are resolved: the whole negative side, and
    # positive logits up to where 1 − p nears float32's step below 1
    resolved = rng.uniform(-40, 8, 1000).astype(np.float32)
    p = 1 / (1 + np.exp(-resolved.astype(np.float64)))
    np.testing.assert_allclose(logits_from_probabilities(p.astype(np.float32)), resolved, atol=2e-3)


def test_check_neg_elbo_equals_training_neg_elbo(exported, mnist):
    import keras

    from train.model import bce_sum_from_logits, bound_log_var, kl_divergence

    m = load_manifest(exported / "vae2d_corr" / "export")
    x = mnist.images("test")[:IMAGES]
    mu, log_var = Encoder.from_manifest(m).encode(x)
    z = mu + np.exp(0.5 * log_var) * np.random.default_rng(0).standard_normal(mu.shape).astype(np.float32)
    kl = kl_per_image(mu, log_var, m.prior.sigma)
    check = neg_elbo(Decoder(m, reference_entry(m)), x.reshape(IMAGES, -1), z, kl)

    decoder = keras.models.load_model(exported / "vae2d_corr" / "decoder.keras")
    logits = keras.Model(decoder.input, decoder.get_layer("dec_logits").output)(z)
    training = float(
        np.mean(bce_sum_from_logits(x, logits) + kl_divergence(mu, bound_log_var(log_var), m.prior))
    )
    assert check == pytest.approx(training, abs=2e-3), (check, training)
    # a decoder that ends at its logits is read before its sigmoid, not through the probabilities
    int8 = Decoder.from_manifest(m, precision="int8")
    assert int8.output_activation == "sigmoid"
    raw = decoder_logits(int8, z)
    np.testing.assert_allclose(1 / (1 + np.exp(-raw)).reshape(IMAGES, 28, 28), int8.decode(z), atol=1e-6)


def test_check_without_data_refuses_unless_no_data(exported, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("VAE_EDGE_MNIST", raising=False)
    reports = tmp_path / "reports"
    args = ["check", "--artifacts", str(exported), "--reports", str(reports), "--samples", "50"]
    assert main(parse_args(args)) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: no MNIST test digits") and "\n" not in err
    assert "neg_elbo_delta_max" in err and "fd_to_real_ratio_max" in err and "--no-data" in err
    assert not reports.exists()

    rc = main(parse_args([*args, "--no-data"]))
    report = json.loads((reports / "check.json").read_text())
    assert rc == (0 if report["passed"] else 1)
    assert report["unchecked_thresholds"] == ["neg_elbo_delta_max", "fd_to_real_ratio_max"]
    assert "NOT CHECKED: neg_elbo_delta_max, fd_to_real_ratio_max" in capsys.readouterr().err
    assert "Not checked (--no-data" in (reports / "check.md").read_text()
