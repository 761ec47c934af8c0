"""The study's figures, as PNG files next to each model's artifacts.

Every VAE: manifold grid, latent scatter coloured by digit, loss curves. vae3d adds the 3-D scatter, the
three pairwise projections and decoded z₂ = −1, 0, 1 cross-sections; vae2d_corr adds the tilted manifold
(a grid in ε mapped through z = L ε) and the clusters with the prior's covariance ellipses.
"""

from __future__ import annotations

from pathlib import Path
from statistics import NormalDist

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from runtime.fileio import atomic_path  # noqa: E402

GRID = 15
DIGIT_CMAP = "tab10"


def save(fig, path: Path) -> Path:
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def quantile_axis(n: int = GRID, lo: float = 0.05, hi: float = 0.95) -> np.ndarray:
    """Standard-normal quantiles, so each grid cell covers equal prior mass (as in Kingma & Welling)."""
    return np.array([NormalDist().inv_cdf(p) for p in np.linspace(lo, hi, n)], dtype=np.float32)


def decode(decoder, z: np.ndarray) -> np.ndarray:
    return np.asarray(decoder.predict(z.astype(np.float32), batch_size=256, verbose=0))[..., 0]


def tile(images: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """(rows*cols, 28, 28) -> one (rows*28, cols*28) canvas, row 0 at the top."""
    return images.reshape(rows, cols, 28, 28).transpose(0, 2, 1, 3).reshape(rows * 28, cols * 28)


def grid_latents(
    axis: np.ndarray, latent_dim: int, fixed: dict[int, float] | None = None, dims=(0, 1)
) -> np.ndarray:
    """Grid over two latent dims (row = dim 1 descending, col = dim 0 ascending), others fixed."""
    z = np.zeros((len(axis) * len(axis), latent_dim), np.float32)
    for r, yv in enumerate(axis[::-1]):
        for c, xv in enumerate(axis):
            z[r * len(axis) + c, dims[0]] = xv
            z[r * len(axis) + c, dims[1]] = yv
    for d, v in (fixed or {}).items():
        z[:, d] = v
    return z


def show_canvas(ax, canvas, axis, title, labels=("z₀", "z₁")):
    ext = (axis[0], axis[-1], axis[0], axis[-1])
    ax.imshow(canvas, cmap="Greys_r", extent=ext)
    ax.set_title(title)
    ax.set_xlabel(labels[0])
    ax.set_ylabel(labels[1])


def manifold_grid(decoder, latent_dim, out: Path, fixed=None, title="Latent manifold") -> Path:
    axis = quantile_axis()
    canvas = tile(decode(decoder, grid_latents(axis, latent_dim, fixed)), GRID, GRID)
    fig, ax = plt.subplots(figsize=(8, 8))
    show_canvas(ax, canvas, axis, title)
    return save(fig, out)


def latent_scatter(z_mean, labels, out: Path, title="Test-set posterior means", ellipses_cov=None) -> Path:
    fig, ax = plt.subplots(figsize=(8, 7))
    sc = ax.scatter(
        z_mean[:, 0], z_mean[:, 1], c=labels, cmap=DIGIT_CMAP, s=2, alpha=0.6, vmin=-0.5, vmax=9.5
    )
    fig.colorbar(sc, ax=ax, ticks=range(10), label="digit")
    if ellipses_cov is not None:
        vals, vecs = np.linalg.eigh(np.asarray(ellipses_cov))
        t = np.linspace(0, 2 * np.pi, 200)
        circle = np.stack([np.cos(t), np.sin(t)])
        for k in (1, 2, 3):
            pts = vecs @ (np.sqrt(vals)[:, None] * circle) * k
            ax.plot(pts[0], pts[1], "k--", lw=1, alpha=0.7, label=f"prior {k}σ" if k == 1 else None)
        ax.legend(loc="upper right")
    ax.set_xlabel("z₀")
    ax.set_ylabel("z₁")
    ax.set_title(title)
    ax.set_aspect("equal", adjustable="datalim")
    return save(fig, out)


def loss_curves(history: list[dict], out: Path, title: str) -> Path:
    epochs = [r["epoch"] for r in history]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for key, label in (
        ("train_neg_elbo", "train −ELBO"),
        ("validation_neg_elbo", "validation −ELBO"),
        ("train_objective", "train objective (β-weighted)"),
    ):
        if key in history[0]:
            axes[0].plot(epochs, [r[key] for r in history], label=label, marker=".")
    axes[0].set_xlabel("epoch")
    axes[0].set_ylabel("nats per image")
    axes[0].set_title(f"{title}: loss")
    axes[0].legend()
    for key, label in (("train_bce", "train BCE"), ("validation_bce", "validation BCE")):
        if key in history[0]:
            axes[1].plot(epochs, [r[key] for r in history], label=label, marker=".")
    ax2 = axes[1].twinx()
    for key, label, style in (("train_kl", "train KL", "g--"), ("validation_kl", "validation KL", "r--")):
        if key in history[0]:
            ax2.plot(epochs, [r[key] for r in history], style, label=label)
    axes[1].set_xlabel("epoch")
    axes[1].set_ylabel("BCE (nats)")
    ax2.set_ylabel("KL (nats)")
    axes[1].set_title("reconstruction and KL")
    lines = axes[1].get_legend_handles_labels()
    lines2 = ax2.get_legend_handles_labels()
    axes[1].legend(lines[0] + lines2[0], lines[1] + lines2[1], loc="center right")
    return save(fig, out)


def classifier_curves(history: list[dict], out: Path) -> Path:
    epochs = [r["epoch"] for r in history]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    axes[0].plot(epochs, [r["train_objective"] for r in history], marker=".", label="train cross-entropy")
    if "validation_loss" in history[0]:
        axes[0].plot(
            epochs, [r["validation_loss"] for r in history], marker=".", label="validation cross-entropy"
        )
    axes[0].set_xlabel("epoch")
    axes[0].legend()
    axes[1].plot(epochs, [100 * r["train_accuracy"] for r in history], marker=".", label="train")
    if "validation_accuracy" in history[0]:
        axes[1].plot(
            epochs, [100 * r["validation_accuracy"] for r in history], marker=".", label="validation"
        )
    axes[1].set_xlabel("epoch")
    axes[1].set_ylabel("accuracy (%)")
    axes[1].legend()
    fig.suptitle("Digit classifier")
    return save(fig, out)


def scatter_3d(z_mean, labels, out: Path) -> Path:
    fig = plt.figure(figsize=(8, 7))
    ax = fig.add_subplot(projection="3d")
    sc = ax.scatter(
        z_mean[:, 0],
        z_mean[:, 1],
        z_mean[:, 2],
        c=labels,
        cmap=DIGIT_CMAP,
        s=2,
        alpha=0.5,
        vmin=-0.5,
        vmax=9.5,
    )
    fig.colorbar(sc, ax=ax, ticks=range(10), label="digit", shrink=0.7)
    ax.set_xlabel("z₀")
    ax.set_ylabel("z₁")
    ax.set_zlabel("z₂")
    ax.set_title("vae3d: test-set posterior means")
    return save(fig, out)


def pairwise_projections(z_mean, labels, out: Path) -> Path:
    fig, axes = plt.subplots(1, 3, figsize=(16, 5))
    for ax, (i, j) in zip(axes, ((0, 1), (0, 2), (1, 2)), strict=True):
        ax.scatter(z_mean[:, i], z_mean[:, j], c=labels, cmap=DIGIT_CMAP, s=2, alpha=0.5, vmin=-0.5, vmax=9.5)
        ax.set_xlabel(f"z{'₀₁₂'[i]}")
        ax.set_ylabel(f"z{'₀₁₂'[j]}")
        ax.set_title(f"z{'₀₁₂'[i]} vs z{'₀₁₂'[j]}")
        ax.set_aspect("equal", adjustable="datalim")
    fig.suptitle("vae3d: pairwise projections of the posterior means")
    return save(fig, out)


def cross_sections(decoder, out: Path, values=(-1.0, 0.0, 1.0)) -> Path:
    axis = quantile_axis()
    fig, axes = plt.subplots(1, len(values), figsize=(7 * len(values), 7))
    for ax, v in zip(axes, values, strict=True):
        canvas = tile(decode(decoder, grid_latents(axis, 3, fixed={2: v})), GRID, GRID)
        show_canvas(ax, canvas, axis, f"z₂ = {v:g}")
    fig.suptitle("vae3d: decoded cross-sections of the latent cube")
    return save(fig, out)


def tilted_manifold(decoder, cholesky, z_mean, labels, out: Path) -> Path:
    """A square grid in ε-space mapped through z = L ε: the decoded grid follows the prior's tilt."""
    axis = quantile_axis()
    eps = grid_latents(axis, 2)
    z = eps @ np.asarray(cholesky, np.float32).T
    canvas = tile(decode(decoder, z), GRID, GRID)
    fig, axes = plt.subplots(1, 2, figsize=(16, 7.5))
    axes[0].scatter(
        z_mean[:, 0], z_mean[:, 1], c=labels, cmap=DIGIT_CMAP, s=2, alpha=0.35, vmin=-0.5, vmax=9.5
    )
    zg = z.reshape(GRID, GRID, 2)
    for r in range(GRID):
        axes[0].plot(zg[r, :, 0], zg[r, :, 1], "k-", lw=0.5)
        axes[0].plot(zg[:, r, 0], zg[:, r, 1], "k-", lw=0.5)
    axes[0].set_title("grid z = L ε over the posterior means (tilted by Σ)")
    axes[0].set_xlabel("z₀")
    axes[0].set_ylabel("z₁")
    axes[0].set_aspect("equal", adjustable="datalim")
    show_canvas(axes[1], canvas, axis, "decoded tilted manifold (axes: ε₀, ε₁)", labels=("ε₀", "ε₁"))
    return save(fig, out)


def vae_figures(cfg, decoder, z_mean, labels, history, out_dir: Path) -> list[Path]:
    out_dir = Path(out_dir)
    written = []
    if history:
        written.append(loss_curves(history, out_dir / "loss_curves.png", cfg.name))
    prior = cfg.prior
    if cfg.latent_dim == 2:
        written.append(
            manifold_grid(decoder, 2, out_dir / "manifold.png", title=f"{cfg.name}: latent manifold")
        )
        written.append(
            latent_scatter(
                z_mean,
                labels,
                out_dir / "latent_clusters.png",
                title=f"{cfg.name}: test-set posterior means",
                ellipses_cov=None if prior.is_isotropic else prior.sigma,
            )
        )
        if not prior.is_isotropic:
            written.append(
                tilted_manifold(decoder, prior.cholesky, z_mean, labels, out_dir / "tilted_manifold.png")
            )
    elif cfg.latent_dim == 3:
        written.append(
            manifold_grid(
                decoder,
                3,
                out_dir / "manifold.png",
                fixed={2: 0.0},
                title=f"{cfg.name}: latent manifold at z₂ = 0",
            )
        )
        written.append(
            latent_scatter(
                z_mean,
                labels,
                out_dir / "latent_clusters.png",
                title=f"{cfg.name}: posterior means, z₀ vs z₁",
            )
        )
        written.append(scatter_3d(z_mean, labels, out_dir / "latent_3d.png"))
        written.append(pairwise_projections(z_mean, labels, out_dir / "pairwise_projections.png"))
        written.append(cross_sections(decoder, out_dir / "z2_cross_sections.png"))
    return written
