"""The report of ``ecgi anatomy import``: wall volumes, LV/RV mass ratio and a
figure of three orthogonal slices through the labelled voxels."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .anatomy_import import MYOCARDIUM_G_PER_ML, Anatomy

#: Region code colours: outside, tissue, LV cavity, RV cavity.
CODE_COLOURS = ("#ffffff", "#c0504d", "#4f81bd", "#9bbb59")


def summary_lines(anatomy: Anatomy) -> list[str]:
    """Volumes (mL), wall masses (g) and the LV/RV mass ratio, one fact a line."""
    volumes = anatomy.volumes_ml()
    walls = anatomy.wall_volumes_ml()
    lv_mass, rv_mass = (walls[name] * MYOCARDIUM_G_PER_ML for name in ("LV wall", "RV wall"))
    ratio = lv_mass / rv_mass if rv_mass > 0 else float("inf")
    return [
        f"grid {'x'.join(map(str, anatomy.code.shape))} at dx {anatomy.dx:g} mm, labels: {anatomy.labelled_from}",
        (f"myocardium {volumes['myocardium']:.1f} mL, LV cavity {volumes['LV cavity']:.1f} mL, "
         f"RV cavity {volumes['RV cavity']:.1f} mL"),
        (f"LV wall (with septum) {walls['LV wall']:.1f} mL = {lv_mass:.0f} g, RV free wall {walls['RV wall']:.1f} mL "
         f"= {rv_mass:.0f} g, LV/RV mass ratio {ratio:.2f}"),
    ] + anatomy.notes


def write_figure(anatomy: Anatomy, path: Path) -> None:
    """Three orthogonal slices through the middle of the myocardium, labelled."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    centre = np.round(np.argwhere(anatomy.code > 0).mean(axis=0)).astype(int)
    cmap = ListedColormap(CODE_COLOURS)
    figure, axes = plt.subplots(1, 3, figsize=(12, 4.6))
    names = ("x", "y", "z")
    for axis, ax in enumerate(axes):
        image = np.take(anatomy.code, centre[axis], axis=axis)
        others = [names[a] for a in range(3) if a != axis]
        ax.imshow(image.T, origin="lower", cmap=cmap, vmin=0, vmax=3, interpolation="nearest")
        position = anatomy.origin[axis] + anatomy.dx * centre[axis]
        ax.set_title(f"{names[axis]} = {position:.1f} mm")
        ax.set_xlabel(f"{others[0]} (voxels)")
        ax.set_ylabel(f"{others[1]} (voxels)")
    legend = [Patch(color=c, label=n) for c, n in zip(CODE_COLOURS[1:], ("myocardium", "LV cavity", "RV cavity"))]
    figure.legend(handles=legend, loc="upper right")
    figure.text(0.01, 0.01, "\n".join(summary_lines(anatomy)[:3]), fontsize=8, va="bottom")
    figure.tight_layout(rect=(0, 0.12, 1, 0.95))
    figure.savefig(path, dpi=100)
    plt.close(figure)
