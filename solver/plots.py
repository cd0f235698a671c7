"""Figures of a sample file: 12-lead ECG, activation map slices, AHA bullseye.

``ecgi plot SAMPLE.h5 -o DIR`` writes them as PNG.  Matplotlib runs with the
Agg backend (no display needed on a cluster node).

Text from outside the program (file names, a sample's condition) goes into a
figure through ``plain_text``: matplotlib reads ``$...$`` as mathematics and
fails while drawing on what it cannot parse (``a$\\frac{1$b.csv``).  Every
figure path a user names is checked with ``check_figure_path`` before any work.
"""
from __future__ import annotations

from pathlib import Path

import h5py
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.backend_bases import FigureCanvasBase  # noqa: E402

from .common.errors import ConfigError  # noqa: E402
from .common.sites import LEAD_NAMES, SITE_NAMES  # noqa: E402

#: Formats matplotlib writes by itself (Agg, PDF, PS, SVG; Pillow for the others);
#: .pgf needs LaTeX, .raw/.rgba are pixel buffers.
FIGURE_SUFFIXES = (".png", ".pdf", ".svg", ".svgz", ".eps", ".ps", ".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".gif")


def plain_text(text: str) -> str:
    """``text`` as matplotlib draws it literally: each ``$`` escaped, so nothing is read as mathtext."""
    return str(text).replace("$", r"\$")


def check_figure_path(path: str | Path, option: str = "--figure") -> Path:
    """A figure file name whose suffix matplotlib can write (it would fail only after the work is done)."""
    path = Path(path)
    suffix = path.suffix.lower()
    writable = set(FIGURE_SUFFIXES) & {f".{s}" for s in FigureCanvasBase.get_supported_filetypes()}
    if suffix not in writable:
        kinds = ", ".join(s for s in FIGURE_SUFFIXES if s in writable)
        what = f"{suffix!r} is not a figure format" if suffix else "has no suffix to name a figure format"
        raise ConfigError(f"{option} {path}: {what}; name a file ending in one of {kinds}")
    return path


#: Standard 4 x 3 layout: columns I-III, aVR-aVF, V1-V3, V4-V6.
ECG_LAYOUT = (("I", "aVR", "V1", "V4"), ("II", "aVL", "V2", "V5"), ("III", "aVF", "V3", "V6"))


def plot_ecg(leads: np.ndarray, dt_ms: float, path: Path, title: str = "",
             background: np.ndarray | None = None) -> Path:
    """12-lead ECG in the standard 4 x 3 layout with a shared amplitude scale;
    ``background`` (same shape, e.g. another volume conductor) in grey behind."""
    t = np.arange(len(leads)) * dt_ms
    limit = np.abs(leads).max() * 1.1 or 1.0
    fig, axes = plt.subplots(3, 4, figsize=(12, 6), sharex=True, sharey=True)
    for r, row in enumerate(ECG_LAYOUT):
        for c, name in enumerate(row):
            ax = axes[r, c]
            i = LEAD_NAMES.index(name)
            if background is not None:
                ax.plot(t, background[:, i], color="0.65", linewidth=0.8)
            ax.plot(t, leads[:, i], color="black", linewidth=0.8)
            ax.set_title(name, loc="left", fontsize=9)
            ax.set_ylim(-limit, limit)
            ax.grid(True, color="#f4b6b6", linewidth=0.5)
    for ax in axes[-1]:
        ax.set_xlabel("time (ms)")
    for ax in axes[:, 0]:
        ax.set_ylabel("mV")
    fig.suptitle(plain_text(title) if title else "12-lead ECG")
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


# (inner radius, segments, start angle of the first): segment k spans 360/n degrees counter-clockwise.
_RINGS = ((3.0, range(1, 7), 60.0), (2.0, range(7, 13), 60.0), (1.0, range(13, 17), 45.0))


def bullseye(ax, values, title: str, cmap: str = "viridis", vmin: float | None = None,
             vmax: float | None = None, label: str = "ms") -> None:
    """The AHA 17-segment bullseye of per-segment values (segment 1 first).

    Rings from outside in: basal (1-6), mid (7-12), apical (13-16), apex (17);
    anterior at the top and septum on the left, as in echocardiography.
    """
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.patches import Wedge

    values = np.asarray(values, dtype=float)
    norm = Normalize(vmin=np.nanmin(values) if vmin is None else vmin, vmax=np.nanmax(values) if vmax is None else vmax)
    colours = matplotlib.colormaps[cmap](norm(values))
    for inner, segments, start in _RINGS:
        span = 360.0 / len(segments)
        for i, segment in enumerate(segments):
            theta = start + i * span
            ax.add_patch(Wedge((0, 0), inner + 1, theta, theta + span, width=1.0, facecolor=colours[segment - 1],
                               edgecolor="white"))
            mid = np.deg2rad(theta + span / 2)
            ax.text((inner + 0.5) * np.cos(mid), (inner + 0.5) * np.sin(mid), str(segment), ha="center",
                    va="center", fontsize=7)
    ax.add_patch(Wedge((0, 0), 1.0, 0, 360, facecolor=colours[16], edgecolor="white"))
    ax.text(0, 0, "17", ha="center", va="center", fontsize=7)
    ax.set(xlim=(-4.2, 4.2), ylim=(-4.2, 4.2), aspect="equal", title=plain_text(title))
    ax.axis("off")
    ax.figure.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=ax, shrink=0.7, label=label)


def plot_bullseye(site_values: np.ndarray, path: Path, title: str = "activation time") -> Path:
    """Bullseye of the AHA01-AHA17 sites' values."""
    aha = np.array([site_values[SITE_NAMES.index(f"AHA{i:02d}")] for i in range(1, 18)])
    fig, ax = plt.subplots(figsize=(5, 4.2))
    bullseye(ax, aha, title, cmap="jet_r")
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
            raise ConfigError(f"{sample_path}: not a synthetic-patient sample (no 'leads' dataset)")
        condition = f.attrs.get("condition", "")
        return [
            plot_ecg(f["leads"][:], float(f["leads"].attrs["dt_ms"]), out_dir / f"{stem}-ecg.png",
                     f"{stem} ({condition})"),
            plot_activation_slices(f["activation_time"][:], f["grid/tissue_ijk"][:], tuple(f["grid"].attrs["shape"]),
                                   out_dir / f"{stem}-activation.png"),
            plot_bullseye(f["act_sites"][:], out_dir / f"{stem}-bullseye.png"),
        ]
