"""Cartesian voxel anatomy: a tissue mask with per-voxel attributes.

Voxel (i, j, k) has its centre at ``origin + dx * (i, j, k)`` (mm).  Only
tissue voxels carry unknowns; the rest of the bounding box is insulator.
Per-voxel attributes are stored on the full grid (simple indexing, cheap for
the grid sizes a heart needs) and are meaningful inside the tissue only.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import h5py
import numpy as np

from .config import AnatomyConfig, SlabAnatomy
from ..common.errors import ConfigError
from .ionic import CELL_TYPE_CODES


@dataclass
class VoxelAnatomy:
    dx: float  #: voxel size (mm)
    origin: np.ndarray  #: centre of voxel (0, 0, 0) in mm, shape (3,)
    tissue: np.ndarray  #: bool (nx, ny, nz)
    fibres: np.ndarray  #: float64 (nx, ny, nz, 3), unit vectors in tissue
    cell_type: np.ndarray  #: int8 (nx, ny, nz), codes from solver.numerics.ionic
    #: Multiplies both conductivities per voxel (1: normal tissue); a scar
    #: border zone or a fast subendocardial layer changes it.
    conductivity_scale: np.ndarray  #: float64 (nx, ny, nz)
    #: Multiplies the action potential duration per voxel (repolarisation
    #: heterogeneity of models with a continuous APD parameter); None: uniform.
    apd_scale: Optional[np.ndarray] = None  #: float64 (nx, ny, nz)

    def __post_init__(self) -> None:
        shape = self.tissue.shape
        if len(shape) != 3:
            raise ConfigError(f"anatomy: tissue mask must be 3-D, got shape {shape}")
        for name, arr, tail in (
            ("fibres", self.fibres, (3,)),
            ("cell_type", self.cell_type, ()),
            ("conductivity_scale", self.conductivity_scale, ()),
            ("apd_scale", self.apd_scale, ()),
        ):
            if arr is not None and arr.shape != shape + tail:
                raise ConfigError(f"anatomy: {name} has shape {arr.shape}, expected {shape + tail}")
        if not self.tissue.any():
            raise ConfigError("anatomy: the tissue mask is empty; nothing to simulate")
        self.origin = np.asarray(self.origin, dtype=np.float64)

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.tissue.shape  # type: ignore[return-value]

    def position(self, ijk: np.ndarray) -> np.ndarray:
        """Centres (mm) of the voxels with grid indices ``ijk`` (..., 3)."""
        return self.origin + self.dx * np.asarray(ijk, dtype=np.float64)

    def tissue_ijk(self) -> np.ndarray:
        """Grid indices of the tissue voxels in natural (C) order, (n, 3)."""
        return np.argwhere(self.tissue).astype(np.int64)

    def nearest_tissue_voxel(self, point_mm) -> np.ndarray:
        """Grid index of the tissue voxel whose centre is nearest ``point_mm``."""
        ijk = self.tissue_ijk()
        d2 = ((self.position(ijk) - np.asarray(point_mm, dtype=np.float64)) ** 2).sum(axis=1)
        return ijk[int(np.argmin(d2))]


def slab_anatomy(spec: SlabAnatomy, dx: float) -> VoxelAnatomy:
    """A block of ``size_mm`` with voxel centres on its corners and faces.

    Putting centres on the corners lets benchmarks read activation exactly
    at the corner points; the number of voxels per axis is size/dx + 1.
    """
    counts = []
    for axis, length in zip("xyz", spec.size_mm):
        n = length / dx
        if abs(n - round(n)) > 1e-6:
            raise ConfigError(f"anatomy: slab {axis} extent {length} mm is not a whole multiple of dx {dx} mm")
        counts.append(int(round(n)) + 1)
    shape = tuple(counts)
    fibre = np.asarray(spec.fibre_direction, dtype=np.float64)
    fibre = fibre / np.linalg.norm(fibre)
    return VoxelAnatomy(
        dx=dx,
        origin=np.zeros(3),
        tissue=np.ones(shape, dtype=bool),
        fibres=np.broadcast_to(fibre, shape + (3,)).copy(),
        cell_type=np.full(shape, CELL_TYPE_CODES[spec.cell_type], dtype=np.int8),
        conductivity_scale=np.ones(shape),
    )


def save_anatomy(path: str | Path, anatomy: VoxelAnatomy) -> None:
    """Write an anatomy to HDF5 (the format ``voxel_file`` reads)."""
    with h5py.File(path, "w") as f:
        f.attrs["format"] = "ecgi-anatomy"
        f.attrs["dx_mm"] = anatomy.dx
        f.attrs["origin_mm"] = anatomy.origin
        f.create_dataset("tissue", data=anatomy.tissue, compression="gzip")
        f.create_dataset("fibres", data=anatomy.fibres.astype(np.float32), compression="gzip")
        f.create_dataset("cell_type", data=anatomy.cell_type, compression="gzip")
        f.create_dataset("conductivity_scale", data=anatomy.conductivity_scale.astype(np.float32), compression="gzip")


def load_anatomy_file(path: str | Path, dx: float) -> VoxelAnatomy:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"anatomy: voxel file {path} does not exist")
    try:
        with h5py.File(path, "r") as f:
            file_dx = float(f.attrs["dx_mm"])
            if abs(file_dx - dx) > 1e-9 * dx:
                raise ConfigError(f"anatomy: {path} has dx {file_dx} mm but the configuration asks for {dx} mm")
            fibres = f["fibres"][...].astype(np.float64)
            norms = np.linalg.norm(fibres, axis=-1, keepdims=True)
            return VoxelAnatomy(
                dx=file_dx,
                origin=np.asarray(f.attrs["origin_mm"], dtype=np.float64),
                tissue=f["tissue"][...].astype(bool),
                fibres=np.divide(fibres, norms, out=np.zeros_like(fibres), where=norms > 0),
                cell_type=f["cell_type"][...].astype(np.int8),
                conductivity_scale=f["conductivity_scale"][...].astype(np.float64),
            )
    except (OSError, KeyError) as exc:
        raise ConfigError(f"anatomy: cannot read voxel file {path}: {exc}") from None


def build_anatomy(config: AnatomyConfig) -> VoxelAnatomy:
    """The voxel anatomy an ``AnatomyConfig`` describes."""
    if config.slab is not None:
        return slab_anatomy(config.slab, config.dx_mm)
    if config.voxel_file is not None:
        return load_anatomy_file(config.voxel_file.path, config.dx_mm)
    raise ConfigError(f"anatomy: built by {config.built_by!r}; pass the anatomy it built to the simulation")
