"""Figures of a sample file: 12-lead ECG, activation map slices, AHA bullseye.

``ecgi plot SAMPLE.h5 -o DIR`` writes them as PNG.  Matplotlib runs with the
Agg backend (no display needed on a cluster node).
"""
from __future__ import annotations

from pathlib import Path

import h5py
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .sites import LEAD_NAMES, SITE_NAMES  # noqa: E402

#: Standard 4 x 3 layout: columns I-III, aVR-aVF, V1-V3, V4-V6.
_LAYOUT = (("I", "aVR", "V1", "V4"), ("II", "aVL", "V2", "V5"), ("III", "aVF", "V3", "V6"))


def plot_ecg(leads: np.ndarray, dt_ms: float, path: Path, title: str = "") -> Path:
    """12-lead ECG in the standard 4 x 3 layout with a shared amplitude scale."""
    t = np.arange(len(leads)) * dt_ms
    limit = np.abs(leads).max() * 1.1 or 1.0
    fig, axes = plt.subplots(3, 4, figsize=(12, 6), sharex=True, sharey=True)
    for r, row in enumerate(_LAYOUT):
        for c, name in enumerate(row):
            ax = axes[r, c]
            ax.plot(t, leads[:, LEAD_NAMES.index(name)], color="black", linewidth=0.8)
            ax.set_title(name, loc="left", fontsize=9)
            ax.set_ylim(-limit, limit)
            ax.grid(True, color="#f4b6b6", linewidth=0.5)
    for ax in axes[-1]:
        ax.set_xlabel("time (ms)")
    for ax in axes[:, 0]:
        ax.set_ylabel("mV")
    fig.suptitle(title or "12-lead ECG")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_activation_slices(activation: np.ndarray, tissue_ijk: np.ndarray, shape, path: Path, n_slices: int = 5) -> Path:
    """Activation time on short-axis slices (planes of constant z)."""
    grid = np.full(shape, np.nan)
    grid[tuple(tissue_ijk.T)] = activation
    present = np.flatnonzero(~np.isnan(grid).all(axis=(0, 1)))
    ks = np.linspace(present.min(), present.max(), n_slices + 2)[1:-1].round().astype(int)
    vmin, vmax = np.nanmin(activation), np.nanmax(activation)
    fig, axes = plt.subplots(1, n_slices, figsize=(3 * n_slices, 3.4))
    image = None
    for ax, k in zip(axes, ks):
        image = ax.imshow(grid[:, :, k].T, origin="lower", cmap="jet_r", vmin=vmin, vmax=vmax)
        ax.set_title(f"slice z = {k}", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(image, ax=axes, label="activation time (ms)", shrink=0.8)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def bullseye(ax, values: np.ndarray, cmap="jet_r", vmin=None, vmax=None, label: str = ""):
    """AHA 17-segment bullseye of per-segment values (index 0 = segment 1).

    Rings from outside in: basal (1-6), mid (7-12), apical (13-16), apex (17);
    segment 1 (anterior) at the top, septum to the left, as in echocardiography.
    """
    values = np.asarray(values, dtype=float)
    norm = matplotlib.colors.Normalize(vmin=np.nanmin(values) if vmin is None else vmin,
                                       vmax=np.nanmax(values) if vmax is None else vmax)
    colours = matplotlib.colormaps[cmap]
    rings = [(1.0, 0.75, range(0, 6), 60.0, 60.0), (0.75, 0.5, range(6, 12), 60.0, 60.0),
             (0.5, 0.25, range(12, 16), 45.0, 90.0)]
    for outer, inner, segments, start, width in rings:
        for n, seg in enumerate(segments):
            theta = start + n * width  # counter-clockwise from the anterior-septal edge
            wedge = matplotlib.patches.Wedge((0, 0), outer, theta, theta + width, width=outer - inner,
                                             facecolor=colours(norm(values[seg])), edgecolor="white")
            ax.add_patch(wedge)
            mid = np.radians(theta + width / 2)
            r = (outer + inner) / 2
            ax.text(r * np.cos(mid), r * np.sin(mid), f"{values[seg]:.0f}", ha="center", va="center", fontsize=7)
    ax.add_patch(matplotlib.patches.Circle((0, 0), 0.25, facecolor=colours(norm(values[16])), edgecolor="white"))
    ax.text(0, 0, f"{values[16]:.0f}", ha="center", va="center", fontsize=7)
    ax.set_xlim(-1.05, 1.05)
    ax.set_ylim(-1.05, 1.05)
    ax.set_aspect("equal")
    ax.axis("off")
    if label:
        ax.set_title(label, fontsize=9)
    return matplotlib.cm.ScalarMappable(norm=norm, cmap=colours)


def plot_bullseye(site_values: np.ndarray, path: Path, title: str = "activation time (ms)") -> Path:
    """Bullseye of the AHA01-AHA17 sites' values."""
    aha = np.array([site_values[SITE_NAMES.index(f"AHA{i:02d}")] for i in range(1, 18)])
    fig, ax = plt.subplots(figsize=(4, 4))
    mappable = bullseye(ax, aha, label=title)
    fig.colorbar(mappable, ax=ax, shrink=0.7)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_sample(sample_path: str | Path, out_dir: str | Path) -> list[Path]:
    """All figures of one sample file; returns the PNG paths."""
    sample_path, out_dir = Path(sample_path), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = sample_path.stem
    with h5py.File(sample_path, "r") as f:
        if "leads" not in f:
            from .errors import ConfigError

            raise ConfigError(f"{sample_path}: not a synthetic-patient sample (no 'leads' dataset)")
        condition = f.attrs.get("condition", "")
        return [
            plot_ecg(f["leads"][:], float(f["leads"].attrs["dt_ms"]), out_dir / f"{stem}-ecg.png",
                     f"{stem} ({condition})"),
            plot_activation_slices(f["activation_time"][:], f["grid/tissue_ijk"][:], tuple(f["grid"].attrs["shape"]),
                                   out_dir / f"{stem}-activation.png"),
            plot_bullseye(f["act_sites"][:], out_dir / f"{stem}-bullseye.png"),
        ]
