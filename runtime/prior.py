"""Latent priors N(0, Σ) in numpy: validation, Cholesky factor and seeded sampling z = L ε.

Isotropic priors are the special case Σ = I. This module is the single definition of a prior that
train/, export/ and the TensorFlow-free runtime share.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import InvalidInputError


def validate_covariance(cov, latent_dim: int) -> np.ndarray:
    """Return Σ as a float64 (d, d) array, or raise a clear error if it is not a symmetric positive-definite d×d matrix."""
    try:
        sigma = np.asarray(cov, dtype=np.float64)
    except (TypeError, ValueError):
        raise InvalidInputError(
            f"prior covariance {cov!r} is not a numeric matrix; give a {latent_dim}x{latent_dim} list"
        ) from None
    if sigma.shape != (latent_dim, latent_dim):
        raise InvalidInputError(
            f"prior covariance has shape {sigma.shape} but the latent size is {latent_dim}; "
            f"give a {latent_dim}x{latent_dim} matrix"
        )
    if not np.all(np.isfinite(sigma)):
        raise InvalidInputError("prior covariance holds NaN or inf; give finite values")
    if not np.allclose(sigma, sigma.T, rtol=0, atol=1e-12):
        raise InvalidInputError(
            f"prior covariance {sigma.tolist()} is not symmetric; make Σ[i][j] == Σ[j][i]"
        )
    eigmin = float(np.linalg.eigvalsh(sigma).min())
    if eigmin <= 0:
        raise InvalidInputError(
            f"prior covariance {sigma.tolist()} is not positive definite (smallest eigenvalue {eigmin:.3g}); "
            "give a symmetric positive-definite matrix"
        )
    return sigma


@dataclass(frozen=True)
class Prior:
    """N(0, Σ) over a ``latent_dim``-dimensional latent space."""

    latent_dim: int
    cov: tuple[tuple[float, ...], ...]

    @classmethod
    def isotropic(cls, latent_dim: int) -> Prior:
        return cls(
            latent_dim, tuple(tuple(float(i == j) for j in range(latent_dim)) for i in range(latent_dim))
        )

    @classmethod
    def from_cov(cls, cov) -> Prior:
        sigma = np.asarray(cov, dtype=np.float64)
        d = sigma.shape[0] if sigma.ndim == 2 else -1
        sigma = validate_covariance(sigma, d if d > 0 else 0)
        return cls(d, tuple(tuple(float(v) for v in row) for row in sigma))

    def __post_init__(self):
        validate_covariance(self.cov, self.latent_dim)

    @property
    def sigma(self) -> np.ndarray:
        return np.asarray(self.cov, dtype=np.float64)

    @property
    def cholesky(self) -> np.ndarray:
        """Lower-triangular L with Σ = L Lᵀ."""
        return np.linalg.cholesky(self.sigma)

    @property
    def is_isotropic(self) -> bool:
        return bool(np.array_equal(self.sigma, np.eye(self.latent_dim)))

    def sample(self, n: int, seed: int | None = 0) -> np.ndarray:
        """Draw ``n`` latents z = L ε, ε ~ N(0, I), as float32 (n, d)."""
        eps = np.random.default_rng(seed).standard_normal((n, self.latent_dim))
        return (eps @ self.cholesky.T).astype(np.float32)

    def sample_chunks(self, n: int, seed: int | None = 0, chunk_rows: int = 4096):
        """The rows of ``sample(n, seed)``, yielded ``chunk_rows`` at a time (same numbers, bounded memory):
        the generator fills its normals in order, so consecutive draws continue one long draw."""
        rng = np.random.default_rng(seed)
        for start in range(0, n, chunk_rows):
            eps = rng.standard_normal((min(chunk_rows, n - start), self.latent_dim))
            yield (eps @ self.cholesky.T).astype(np.float32)

    def to_json(self) -> dict:
        return {
            "kind": "isotropic" if self.is_isotropic else "correlated",
            "mean": [0.0] * self.latent_dim,
            "cov": [list(r) for r in self.cov],
            "cholesky": self.cholesky.tolist(),
        }

    @classmethod
    def from_json(cls, obj: dict) -> Prior:
        return cls.from_cov(obj["cov"])
