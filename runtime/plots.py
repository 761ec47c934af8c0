"""PNG figures for the runtime reports. matplotlib is optional on a Pi: without it, figures are skipped."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .fileio import atomic_path


def available() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    plt = _plt()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path


def decoded_grid(rows: dict[str, np.ndarray], path: Path, title: str) -> Path:
    """One row per decoder: the same latents decoded, side by side."""
    plt = _plt()
    names = list(rows)
    n = len(next(iter(rows.values())))
    fig, axes = plt.subplots(len(names), 1, figsize=(n * 0.7 + 3, len(names) * 0.8 + 0.6))
    axes = np.atleast_1d(axes)
    for ax, name in zip(axes, names, strict=True):
        ax.imshow(np.concatenate(list(rows[name]), axis=1), cmap="Greys_r", vmin=0, vmax=1)
        ax.set_yticks([])
        ax.set_xticks([])
        ax.set_ylabel(name, rotation=0, ha="right", va="center", fontsize=8)
    fig.suptitle(title)
    return _save(fig, path)


def latency_bars(records: list[dict], path: Path, title: str) -> Path:
    plt = _plt()
    recs = sorted(records, key=lambda r: r["p50_us"])
    labels = [f"{r['model']}/{r['artifact']}" for r in recs]
    fig, ax = plt.subplots(figsize=(9, 0.28 * len(recs) + 1.2))
    colors = [
        "tab:green" if r["precision"] == "int8" else "tab:orange" if "int8" in r["precision"] else "tab:blue"
        for r in recs
    ]
    ax.barh(range(len(recs)), [r["p50_us"] for r in recs], color=colors)
    ax.errorbar(
        [r["p50_us"] for r in recs],
        range(len(recs)),
        xerr=[[0] * len(recs), [r["p99_us"] - r["p50_us"] for r in recs]],
        fmt="none",
        ecolor="k",
        lw=0.8,
    )
    ax.set_yticks(range(len(recs)))
    ax.set_yticklabels(labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("latency per invoke, µs (bar p50, whisker p99)")
    ax.set_title(title)
    return _save(fig, path)
