"""The loss terms and priors as DEVELOPERS.md states them: closed-form KL against Monte Carlo, the
isotropic special case, the generation sampler's covariance, and Σ validation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from runtime.errors import InvalidInputError
from runtime.prior import Prior
from train.model import (
    PRESETS,
    VAEConfig,
    bce_sum_from_logits,
    build_classifier,
    build_decoder,
    build_encoder,
    kl_divergence,
    kl_terms_per_dim,
    log_normal_diag,
    log_prior,
)
from train.registry import vae_names

MC_SAMPLES = 400_000
MC_SIGMAS = 5.0  # the closed form must lie within 5 Monte-Carlo standard errors of the estimate


def random_spd(rng, d):
    a = rng.standard_normal((d, d))
    return a @ a.T + 0.5 * np.eye(d)


@pytest.mark.parametrize("d", [2, 3])
def test_kl_closed_form_matches_monte_carlo(d):
    rng = np.random.default_rng(d)
    prior = Prior.from_cov(random_spd(rng, d))
    mu = rng.standard_normal((1, d)).astype(np.float32)
    log_var = rng.uniform(-2, 1, (1, d)).astype(np.float32)
    closed = float(np.asarray(kl_divergence(mu, log_var, prior))[0])
    z = (mu + np.exp(0.5 * log_var) * rng.standard_normal((MC_SAMPLES, d))).astype(np.float32)
    log_ratio = np.asarray(log_normal_diag(z, mu, log_var)) - np.asarray(log_prior(z, prior))
    estimate, stderr = log_ratio.mean(), log_ratio.std() / math.sqrt(MC_SAMPLES)
    assert abs(closed - estimate) < MC_SIGMAS * stderr + 1e-4, (closed, estimate, stderr)


def test_kl_with_identity_equals_isotropic_formula():
    rng = np.random.default_rng(7)
    mu = rng.standard_normal((64, 3)).astype(np.float32)
    log_var = rng.uniform(-3, 2, (64, 3)).astype(np.float32)
    per_dim = np.asarray(kl_terms_per_dim(mu, log_var, Prior.isotropic(3)))
    iso = -0.5 * (1 + log_var - mu**2 - np.exp(log_var))
    np.testing.assert_allclose(per_dim, iso, rtol=1e-5, atol=1e-5)


def test_correlated_kl_differs_from_isotropic():
    mu = np.array([[1.0, -1.0]], np.float32)
    log_var = np.zeros((1, 2), np.float32)
    iso = float(np.asarray(kl_divergence(mu, log_var, Prior.isotropic(2)))[0])
    corr = float(np.asarray(kl_divergence(mu, log_var, PRESETS["vae2d_corr"].prior))[0])
    assert abs(iso - corr) > 0.1


def test_generation_sampler_covariance_matches_sigma():
    prior = PRESETS["vae2d_corr"].prior
    z = prior.sample(200_000, seed=3)
    np.testing.assert_allclose(np.cov(z.T), prior.sigma, atol=0.01)
    np.testing.assert_allclose(z.mean(0), 0, atol=0.01)
    np.testing.assert_allclose(prior.cholesky @ prior.cholesky.T, prior.sigma, atol=1e-12)
    assert prior.sample(5, seed=1).tolist() == prior.sample(5, seed=1).tolist()


@pytest.mark.parametrize(
    "cov, fragment",
    [
        (((1.0, 2.0), (2.0, 1.0)), "not positive definite"),
        (((1.0, 0.4), (0.3, 0.5)), "not symmetric"),
        (((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)), "latent size is 2"),
        (((1.0, float("nan")), (float("nan"), 1.0)), "NaN"),
    ],
)
def test_bad_covariance_is_refused(cov, fragment):
    with pytest.raises(InvalidInputError, match=fragment):
        VAEConfig("bad", 2, cov)


def test_bce_from_logits_matches_probability_form():
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (4, 28, 28, 1)).astype(np.float32)
    logits = rng.normal(0, 3, (4, 28, 28, 1)).astype(np.float32)
    p = 1 / (1 + np.exp(-logits.astype(np.float64)))
    ref = -(x * np.log(p) + (1 - x) * np.log(1 - p)).reshape(4, -1).sum(1)
    np.testing.assert_allclose(np.asarray(bce_sum_from_logits(x, logits)), ref, rtol=1e-5)


@pytest.mark.parametrize("name", [*vae_names(), "a_new_5d"])
def test_architecture_shapes(name):
    cfg = PRESETS[name] if name in PRESETS else VAEConfig(name, 5)  # any latent size: the same architecture
    enc, dec = build_encoder(cfg), build_decoder(cfg, batch_size=4)
    mu, log_var = enc(np.zeros((4, 28, 28, 1), np.float32))
    assert mu.shape == log_var.shape == (4, cfg.latent_dim)
    assert dec.input_shape == (4, cfg.latent_dim)
    out = np.asarray(dec(np.zeros((4, cfg.latent_dim), np.float32)))
    assert out.shape == (4, 28, 28, 1) and out.min() >= 0 and out.max() <= 1
    kinds = [type(layer).__name__ for layer in dec.layers]
    assert kinds.count("Conv2DTranspose") == 3 and "Dense" in kinds
    assert [la.filters for la in enc.layers if type(la).__name__ == "Conv2D"] == [32, 64]


def test_classifier_has_logits_and_features():
    model = build_classifier(PRESETS["classifier"])
    logits, features = model(np.zeros((2, 28, 28, 1), np.float32))
    assert logits.shape == (2, 10) and features.shape == (2, 128)


# ------------------------------------------------------------------ checks against independent numpy densities
def numpy_log_gaussian(z, mean, cov):
    """log N(z; mean, cov) written from scratch (eigendecomposition), sharing nothing with train/model.py."""
    vals, vecs = np.linalg.eigh(np.asarray(cov, np.float64))
    proj = (np.asarray(z, np.float64) - mean) @ vecs
    return -0.5 * (np.sum(proj**2 / vals, axis=-1) + np.sum(np.log(vals)) + len(vals) * math.log(2 * math.pi))


@pytest.mark.parametrize(
    "cov", [np.eye(2), np.array(PRESETS["vae2d_corr"].prior_cov)], ids=["identity", "study"]
)
def test_kl_matches_monte_carlo_with_independent_densities(cov):
    rng = np.random.default_rng(11)
    mu = np.array([[0.7, -1.2]], np.float32)
    log_var = np.array([[-1.5, -0.4]], np.float32)
    closed = float(np.asarray(kl_divergence(mu, log_var, Prior.from_cov(cov)))[0])
    z = mu[0] + np.exp(0.5 * log_var[0]) * rng.standard_normal((MC_SAMPLES, 2))
    log_ratio = numpy_log_gaussian(z, mu[0], np.diag(np.exp(log_var[0]))) - numpy_log_gaussian(z, 0.0, cov)
    estimate, stderr = log_ratio.mean(), log_ratio.std() / math.sqrt(MC_SAMPLES)
    assert abs(closed - estimate) < MC_SIGMAS * stderr + 1e-4, (closed, estimate, stderr)


def test_importance_weighted_nll_against_quadrature():
    """A toy VAE whose likelihood is known by quadrature: 12 pixels depend linearly (in logits) on a 2-D latent
    with the study's prior Σ, the other 772 are constant; the encoder is a fixed, deliberately poor proposal.
    The IW estimate must fall as K grows and never drop below the exact −log p(x)."""
    import keras
    from keras import layers

    from train.vae import importance_weighted_nll

    cov = np.array(PRESETS["vae2d_corr"].prior_cov)
    rng = np.random.default_rng(0)
    live, images = 12, 60
    w = np.zeros((2, 784), np.float32)
    w[:, :live] = rng.normal(0, 1.5, (2, live))
    b = np.full(784, -4.0, np.float32)
    b[:live] = rng.normal(0, 0.5, live)
    x_in = keras.Input((28, 28, 1))
    flat = layers.Flatten()(x_in)
    const = keras.initializers.Constant
    mean = layers.Dense(2, kernel_initializer="zeros", bias_initializer=const([0.4, -0.3]))(flat)
    log_var = layers.Dense(
        2, kernel_initializer="zeros", bias_initializer=const([math.log(0.5), math.log(0.3)])
    )(flat)
    encoder = keras.Model(x_in, [mean, log_var])
    z_in = keras.Input((2,))
    dense = layers.Dense(784)
    decoder_logits = keras.Model(z_in, dense(z_in))
    dense.set_weights([w, b])
    z = rng.standard_normal((images, 2)) @ np.linalg.cholesky(cov).T
    x = (rng.uniform(size=(images, 784)) < 1 / (1 + np.exp(-(z @ w + b)))).astype(np.float64)

    def log_bernoulli(x, logits):
        return -(x * np.logaddexp(0, -logits) + (1 - x) * np.logaddexp(0, logits))

    grid = np.linspace(-7, 7, 201)
    cell = (grid[1] - grid[0]) ** 2
    zz = np.stack(np.meshgrid(grid, grid, indexing="ij"), -1).reshape(-1, 2)
    log_joint = log_bernoulli(x[:, None, :live], (zz @ w[:, :live] + b[:live])[None]).sum(-1)
    log_joint += numpy_log_gaussian(zz, 0.0, cov)[None]
    peak = log_joint.max(axis=1, keepdims=True)
    log_px = peak[:, 0] + np.log(np.exp(log_joint - peak).sum(axis=1) * cell)
    log_px += log_bernoulli(x[:, live:], b[live:].astype(np.float64)).sum(axis=1)
    exact = float(-log_px.mean())

    cfg = VAEConfig("toy", 2, PRESETS["vae2d_corr"].prior_cov)
    uint8_images = (x * 255).astype(np.uint8).reshape(images, 28, 28)
    estimates = [
        importance_weighted_nll(cfg, encoder, decoder_logits, uint8_images, samples=k, seed=1)
        for k in (1, 8, 64)
    ]
    assert estimates[0] > estimates[1] > estimates[2] > exact, (estimates, exact)
    assert estimates[2] - exact < 0.5  # and it does close in on the exact value


def test_log_var_soft_clamp_bounds_and_leaves_normal_values():
    from train.model import LOG_VAR_MAX, LOG_VAR_MIN, bound_log_var

    wild = np.array([[-1e6, -500.0], [-40.0, 30.0], [200.0, 1e6]], np.float32)
    bounded = np.asarray(bound_log_var(wild))
    assert np.all(bounded >= LOG_VAR_MIN) and np.all(bounded <= LOG_VAR_MAX) and np.all(np.isfinite(bounded))
    assert np.all(np.diff(bounded.ravel()) >= 0)  # monotone
    kl = np.asarray(kl_divergence(np.zeros((3, 2), np.float32), bounded, PRESETS["vae2d_corr"].prior))
    assert np.all(np.isfinite(kl)) and np.all(np.isfinite(np.exp(0.5 * bounded)))
    normal = np.linspace(-20, 2, 2001, dtype=np.float32)[:, None]
    np.testing.assert_allclose(np.asarray(bound_log_var(normal)), normal, atol=1e-4)


def test_study_objective_is_a_looser_bound_with_a_constant_penalty():
    """docs/correlated_prior.md: KL(N(μ, diag σ²) ‖ N(0, Σ)) = KL(q′ ‖ p) + KL(N(0, diag σ²) ‖ N(0, Σ)) with
    q′ = N(μ, Σ), so the study's objective is −ELBO(q′) plus a penalty in σ alone, least at σᵢ² = 1/(Σ⁻¹)ᵢᵢ."""
    from train.model import study_sample

    prior = PRESETS["vae2d_corr"].prior
    inv = np.linalg.inv(prior.sigma)
    rng = np.random.default_rng(5)
    mu = rng.normal(size=(8, 2)).astype(np.float32)
    log_var = rng.uniform(-3, 1, (8, 2)).astype(np.float32)
    kl_q_prime = 0.5 * np.einsum("ni,ij,nj->n", mu, inv, mu)  # KL(N(μ, Σ) ‖ N(0, Σ))
    penalty = np.asarray(kl_divergence(np.zeros_like(mu), log_var, prior))
    np.testing.assert_allclose(np.asarray(kl_divergence(mu, log_var, prior)), kl_q_prime + penalty, rtol=1e-5)
    best = np.log(1 / np.diag(inv))[None].astype(np.float32)
    np.testing.assert_allclose(np.exp(best[0]), [0.68, 0.34], rtol=1e-6)
    least = float(np.asarray(kl_divergence(np.zeros((1, 2), np.float32), best, prior))[0])
    assert least == pytest.approx(0.5 * math.log(1 / 0.68), abs=1e-5) and round(least, 3) == 0.193
    nearby = best + rng.normal(0, 0.3, (200, 2)).astype(np.float32)
    assert np.all(np.asarray(kl_divergence(np.zeros_like(nearby), nearby, prior)) >= least - 1e-6)
    # the study's sample has the prior's covariance around μ whatever σ is
    eps = rng.standard_normal((200_000, 2)).astype(np.float32)
    z = np.asarray(study_sample(np.full((200_000, 2), [1.0, -2.0], np.float32), eps, prior))
    np.testing.assert_allclose(np.cov(z.T), prior.sigma, atol=0.01)
    np.testing.assert_allclose(z.mean(0), [1.0, -2.0], atol=0.01)


def test_configs_round_trip_through_json_with_dataclass_defaults():
    import json

    from train.model import ClassifierConfig, config_from_json

    for cfg in PRESETS.values():
        assert config_from_json(json.loads(json.dumps(cfg.to_json()))) == cfg
    assert VAEConfig.from_json({"name": "vae2d", "latent_dim": 2}) == PRESETS["vae2d"]  # older copies
    assert ClassifierConfig.from_json({"kind": "classifier"}) == PRESETS["classifier"]
