"""The analytic biventricular heart: truncated ellipsoids, voxelised at any dx.

Heart frame (mm): the LV long axis is z with the apex at negative z and the
base plane at z = ``base_z``; the RV lies on the +x side (so +x points from
the LV towards the septum and the RV) and +y is anterior.

* LV: ellipsoid centred at the origin, outer radii (22, 22, 45), wall 5 mm;
* RV: ellipsoid centred at (10, 0, 0), outer radii (32, 23, 43), wall 4 mm;
  its cavity is the part of the inner ellipsoid outside the LV, so it never
  cuts the LV wall (which forms the septum);
* both truncated at the base plane z = 10.

Labels are the tissue voxels facing each cavity, the outside, or the base.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..common.errors import ConfigError

Vector3 = tuple[float, float, float]

# Voxel region codes in a labelled image (user anatomies use the same codes).
OUTSIDE, TISSUE, LV_CAVITY, RV_CAVITY = 0, 1, 2, 3


@dataclass
class BiventricleShape:
    lv_radii_mm: Vector3 = (25.0, 25.0, 48.0)
    lv_wall_mm: float = 9.0
    rv_centre_mm: Vector3 = (12.0, 0.0, 0.0)
    rv_radii_mm: Vector3 = (34.0, 24.0, 45.0)
    rv_wall_mm: float = 4.5
    base_z_mm: float = 10.0

    def validate(self) -> None:
        if min(self.lv_radii_mm) <= self.lv_wall_mm:
            raise ConfigError(f"lv_wall_mm ({self.lv_wall_mm}) must be smaller than every LV radius {self.lv_radii_mm}")
        if min(self.rv_radii_mm) <= self.rv_wall_mm:
            raise ConfigError(f"rv_wall_mm ({self.rv_wall_mm}) must be smaller than every RV radius {self.rv_radii_mm}")
        if self.lv_wall_mm <= 0 or self.rv_wall_mm <= 0:
            raise ConfigError("wall thicknesses must be positive")
        if not -self.lv_radii_mm[2] < self.base_z_mm < self.lv_radii_mm[2]:
            raise ConfigError(f"base_z_mm ({self.base_z_mm}) must cut the LV (|z| < {self.lv_radii_mm[2]})")


def _inside(points: np.ndarray, centre, radii) -> np.ndarray:
    return (((points - np.asarray(centre)) / np.asarray(radii)) ** 2).sum(axis=-1) <= 1.0


def grid_box(shape: BiventricleShape, dx: float, offset_mm=(0.0, 0.0, 0.0)) -> tuple[np.ndarray, np.ndarray]:
    """Origin (mm) and voxel counts of the grid around the heart (``regions``),
    known before any voxel is allocated."""
    rv_c, rv_r = np.asarray(shape.rv_centre_mm), np.asarray(shape.rv_radii_mm)
    lv_r = np.asarray(shape.lv_radii_mm)
    lo = np.minimum(-lv_r, rv_c - rv_r) - 2 * dx + np.asarray(offset_mm)
    hi = np.maximum(lv_r, rv_c + rv_r) + 2 * dx
    hi[2] = shape.base_z_mm + 2 * dx
    return lo, np.floor((hi - lo) / dx).astype(int) + 1


def regions(shape: BiventricleShape, dx: float, offset_mm=(0.0, 0.0, 0.0)) -> tuple[np.ndarray, np.ndarray]:
    """Region code per voxel (OUTSIDE, TISSUE, LV_CAVITY, RV_CAVITY) and the
    grid origin (centre of voxel 0, 0, 0) in mm, moved by ``offset_mm``.  One
    empty voxel layer surrounds the heart so every surface has an outside
    neighbour."""
    rv_c, rv_r = np.asarray(shape.rv_centre_mm), np.asarray(shape.rv_radii_mm)
    lv_r = np.asarray(shape.lv_radii_mm)
    lo, counts = grid_box(shape, dx, offset_mm)
    axes = [lo[a] + dx * np.arange(counts[a]) for a in range(3)]
    points = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1)

    below_base = points[..., 2] <= shape.base_z_mm
    lv_outer = _inside(points, (0, 0, 0), lv_r)
    lv_inner = _inside(points, (0, 0, 0), lv_r - shape.lv_wall_mm)
    rv_outer = _inside(points, rv_c, rv_r)
    rv_inner = _inside(points, rv_c, rv_r - shape.rv_wall_mm) & ~lv_outer

    code = np.full(points.shape[:3], OUTSIDE, dtype=np.int8)
    code[(lv_outer | rv_outer) & below_base] = TISSUE
    code[lv_inner & below_base] = LV_CAVITY
    code[rv_inner & below_base] = RV_CAVITY
    return code, lo


def keep_largest_component(tissue: np.ndarray) -> np.ndarray:
    """Drop voxels not face-connected to the bulk (isolated specks at coarse dx)."""
    labels, n = ndimage.label(tissue)
    if n <= 1:
        return tissue
    sizes = ndimage.sum(tissue, labels, index=np.arange(1, n + 1))
    return labels == (1 + int(np.argmax(sizes)))


@dataclass
class SurfaceLabels:
    """Boolean masks over the grid: tissue voxels on each surface."""

    lv_endo: np.ndarray
    rv_endo: np.ndarray
    epi: np.ndarray
    base: np.ndarray


def surface_labels(code: np.ndarray, origin: np.ndarray, dx: float, base_z: float | None) -> SurfaceLabels:
    """Tissue voxels face-adjacent to each cavity, the outside and the base.

    A voxel next to the outside counts as base (not epicardium) when it lies
    in the top voxel layer below ``base_z`` (None: the top layer of tissue).
    """
    tissue = code == TISSUE
    cross = ndimage.generate_binary_structure(3, 1)

    def touching(region: np.ndarray) -> np.ndarray:
        return tissue & ndimage.binary_dilation(region, structure=cross)

    outside = touching(code == OUTSIDE)
    z = origin[2] + dx * np.arange(code.shape[2])
    top = z.max() if base_z is None else base_z
    tissue_z = np.where(tissue.any(axis=(0, 1)))[0]
    top_layer_z = min(top, z[tissue_z.max()]) if len(tissue_z) else top
    base = outside & (z[None, None, :] > top_layer_z - dx * 1.01)
    return SurfaceLabels(
        lv_endo=touching(code == LV_CAVITY),
        rv_endo=touching(code == RV_CAVITY),
        epi=outside & ~base,
        base=base,
    )
