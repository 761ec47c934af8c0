"""Sample-quality measures in numpy: PSNR, Fréchet distance of classifier features, per-image BCE and KL."""

from __future__ import annotations

import numpy as np

BCE_EPS = 1e-7  # as keras' binary_crossentropy clips: an int8 output can be exactly 0


def psnr_db(a: np.ndarray, b: np.ndarray, peak: float = 1.0) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(peak**2 / mse)


def _sqrtm_psd(m: np.ndarray) -> np.ndarray:
    vals, vecs = np.linalg.eigh((m + m.T) / 2)
    return (vecs * np.sqrt(np.clip(vals, 0, None))) @ vecs.T


def frechet_distance(feats_a: np.ndarray, feats_b: np.ndarray) -> float:
    """‖μa − μb‖² + tr(Σa + Σb − 2 (Σa^½ Σb Σa^½)^½): FID's formula on the classifier's features."""
    a, b = feats_a.astype(np.float64), feats_b.astype(np.float64)
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root_a = _sqrtm_psd(cov_a)
    cross = np.linalg.eigvalsh(root_a @ cov_b @ root_a)
    trace_sqrt = float(np.sum(np.sqrt(np.clip(cross, 0, None))))
    return float(np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a) + np.trace(cov_b) - 2 * trace_sqrt)


def bce_per_image_from_logits(x: np.ndarray, logits: np.ndarray) -> np.ndarray:
    """Binary cross-entropy summed over pixels, per image (nats), from the decoder's logits: the exact form
    training uses (train/model.py ``bce_sum_from_logits``), max(l, 0) − l·x + log(1 + e^−|l|), in float64."""
    x = x.reshape(len(x), -1).astype(np.float64)
    logits = logits.reshape(len(logits), -1).astype(np.float64)
    return (np.maximum(logits, 0) - logits * x + np.log1p(np.exp(-np.abs(logits)))).sum(1)


def logits_from_probabilities(p: np.ndarray) -> np.ndarray:
    """log p − log(1 − p) in float64, for decoders that output probabilities. Exact wherever float32 resolves
    p and 1 − p; a float32 probability rounded to 1 (logit ≳ 16.6) or to 0 is taken at the nearest value
    float32 can hold, so such pixels carry an error only where the image is neither 0 nor 1 there."""
    p = np.clip(p.astype(np.float64), np.finfo(np.float32).tiny, 1.0 - np.finfo(np.float32).epsneg)
    return np.log(p) - np.log1p(-p)


def bce_per_image(x: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Binary cross-entropy summed over pixels, per image (nats), from probabilities clipped as keras does
    (the keras-io reference's own loss); the check uses :func:`bce_per_image_from_logits`."""
    x = x.reshape(len(x), -1).astype(np.float64)
    p = np.clip(p.reshape(len(p), -1).astype(np.float64), BCE_EPS, 1 - BCE_EPS)
    return -(x * np.log(p) + (1 - x) * np.log1p(-p)).sum(1)


def kl_per_image(mu: np.ndarray, log_var: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """KL(N(μ, diag σ²) ‖ N(0, Σ)) per image, the closed form train/ uses."""
    inv = np.linalg.inv(sigma)
    k = sigma.shape[0]
    var = np.exp(log_var.astype(np.float64))
    mu = mu.astype(np.float64)
    return 0.5 * (
        var @ np.diag(inv)
        + np.einsum("ni,ij,nj->n", mu, inv, mu)
        - k
        + np.linalg.slogdet(sigma)[1]
        - log_var.sum(1)
    )
