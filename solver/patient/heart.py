"""A heart ready to simulate: voxels, surfaces, coordinates, fibres, cell types.

``build_heart`` turns a labelled voxel image (analytic biventricle or a user
anatomy) into a ``Heart``:

1. surfaces: LV and RV endocardium, epicardium, base;
2. harmonic coordinates from Laplace problems on the tissue voxels
   (``solver.patient.laplace``, same partition as the solver): transmural depth
   phi_epi (0 endocardium, 1 epicardium), apico-basal psi (0 apex, 1 base),
   and phi_lv, phi_rv for the septum;
3. the LV frame: centre, long axis (apex to base), septal and anterior axes,
   and each voxel's circumferential angle about the long axis (0 septal,
   90 anterior) — what AHA segments and activation sites are defined in;
4. LDRB fibres and transmural cell-type layers (endo, mid, epi).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
from mpi4py import MPI
from scipy import ndimage

from ..numerics.anatomy import VoxelAnatomy
from .biventricle import (
    LV_CAVITY,
    OUTSIDE,
    RV_CAVITY,
    TISSUE,
    BiventricleShape,
    SurfaceLabels,
    grid_box,
    keep_largest_component,
    regions,
    surface_labels,
)
from ..common.errors import ConfigError
from ..common.limits import DX_MM, check_memory, check_range
from .fibres import FibreAngles, ldrb_fibres
from ..numerics.ionic import ENDO, EPI, MID
from .laplace import solve_laplace, tissue_gradient
from ..numerics.partition import TissueNumbering, number_tissue


@dataclass
class HeartConfig:
    """Anatomy and tissue structure of one heart."""

    dx_mm: float = 1.0
    shape: BiventricleShape = field(default_factory=BiventricleShape)
    #: A user anatomy instead of the analytic shape: a labelled voxel image
    #: (.npy or .h5, see solver.patient.user_anatomy) or a VTK tetrahedral mesh.
    anatomy_file: Optional[Path] = None
    #: Mesh coordinates times this are mm (1000 for a mesh in metres).
    anatomy_scale: float = 1.0
    #: Integer tags of the LV endocardium, RV endocardium and epicardium
    #: triangles of a mesh (None: 1, 2, 3).
    anatomy_surface_tags: Optional[tuple[int, int, int]] = None
    fibres: FibreAngles = field(default_factory=FibreAngles)
    #: Transmural fractions (from the endocardium) of TT06 endo and mid cells.
    endo_fraction: float = 0.3
    mid_fraction: float = 0.3
    #: Fast subendocardial layer standing in for the Purkinje network.
    fast_layer_mm: float = 1.5
    fast_layer_conductivity_factor: float = 8.0
    #: The layer covers the endocardium up to this normalised height (0 apex,
    #: 1 base), as the conduction system does.
    fast_layer_max_height: float = 1.0
    #: Wall between the cavities thinner than this is septum (LV to RV cavity distance).
    max_septal_thickness_mm: float = 10.0
    #: How softly the sites and the roots' centres are read from the voxels
    #: around their points, in voxel sizes (solver.patient.footprint); 0
    #: reads the nearest voxel alone.
    footprint_softness_voxels: float = 0.5
    #: Where the grid lies on the analytic shape: its voxels moved by this
    #: (mm).  Results should not depend on it; a fraction of a voxel measures
    #: how much they do (bench/grid_shift.py).
    grid_offset_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def validate(self) -> None:
        check_range("dx_mm", self.dx_mm, DX_MM, "mm")
        if not (0 <= self.endo_fraction and 0 <= self.mid_fraction and self.endo_fraction + self.mid_fraction <= 1):
            raise ConfigError("endo_fraction and mid_fraction must be >= 0 and sum to at most 1")
        if self.fast_layer_mm < 0 or self.fast_layer_conductivity_factor <= 0:
            raise ConfigError("fast_layer_mm must be >= 0 and fast_layer_conductivity_factor > 0")
        if not 0 <= self.footprint_softness_voxels <= 2:
            raise ConfigError(f"footprint_softness_voxels must be within [0, 2], got {self.footprint_softness_voxels}")
        if any(self.grid_offset_mm) and self.anatomy_file is not None:
            raise ConfigError("grid_offset_mm moves the grid on the analytic shape; leave it at 0 with an anatomy_file")


@dataclass
class LVFrame:
    centre: np.ndarray  #: LV cavity centroid (mm)
    long_axis: np.ndarray  #: unit, apex to base
    septal_axis: np.ndarray  #: unit, LV towards RV, normal to the long axis
    anterior_axis: np.ndarray  #: long x septal... completes a right-handed frame

    def cylindrical(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(height along the long axis, circumferential angle in degrees)."""
        rel = points - self.centre
        height = rel @ self.long_axis
        angle = np.degrees(np.arctan2(rel @ self.anterior_axis, rel @ self.septal_axis))
        return height, angle


@dataclass
class Heart:
    anatomy: VoxelAnatomy
    numbering: TissueNumbering
    surfaces: SurfaceLabels  #: masks over natural tissue voxels
    transmural: np.ndarray  #: phi_epi, natural order
    apicobasal: np.ndarray  #: psi
    phi_lv: np.ndarray
    phi_rv: np.ndarray
    frame: LVFrame
    angle_deg: np.ndarray  #: circumferential angle about the LV axis
    septum: np.ndarray  #: mask: wall between the two cavities
    lv_side: np.ndarray  #: mask: nearer the LV cavity than the RV cavity
    #: Centres (mm) of the LV and RV cavity voxels: the blood pools.
    cavity_positions: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))
    #: See HeartConfig.footprint_softness_voxels; here in mm.
    footprint_softness_mm: float = 0.0

    @property
    def positions(self) -> np.ndarray:
        return self.anatomy.position(self.numbering.ijk)


def cavity_axis(code: np.ndarray, origin: np.ndarray, dx: float) -> tuple[np.ndarray, np.ndarray]:
    """Centroid of the LV cavity and its principal direction (sign arbitrary)."""
    lv = origin + dx * np.argwhere(code == LV_CAVITY)
    centre = lv.mean(axis=0)
    _, _, vt = np.linalg.svd(lv - centre, full_matrices=False)
    return centre, vt[0]


def lv_frame(code: np.ndarray, origin: np.ndarray, dx: float, centre: np.ndarray, axis: np.ndarray,
             apex_point: np.ndarray) -> LVFrame:
    """The LV frame around the cavity axis, oriented away from the apex."""
    if (centre - apex_point) @ axis < 0:
        axis = -axis
    towards_rv = (origin + dx * np.argwhere(code == RV_CAVITY)).mean(axis=0) - centre
    septal = towards_rv - (towards_rv @ axis) * axis
    septal /= np.linalg.norm(septal)
    anterior = np.cross(axis, septal)
    return LVFrame(centre, axis, septal, anterior)


#: Peak memory of ``build_heart`` per voxel of the grid around the heart
#: (measured: 1.19 kB at dx 1.5 mm, 1.24 kB at 0.75 mm; masks, coordinates,
#: Laplace solves and fibres).
HEART_BYTES_PER_VOXEL = 1250


def check_heart_memory(config: HeartConfig) -> None:
    """Refuse a grid that cannot fit in memory before allocating any of it."""
    _, counts = grid_box(config.shape, config.dx_mm, config.grid_offset_mm)
    voxels = float(np.prod(counts.astype(float)))
    check_memory(f"heart: dx_mm {config.dx_mm:g} gives {voxels:.3g} voxels, which", voxels * HEART_BYTES_PER_VOXEL,
                 "choose a larger dx_mm")


def build_heart(config: HeartConfig, comm: MPI.Comm = MPI.COMM_WORLD, code: np.ndarray | None = None,
                origin: np.ndarray | None = None) -> Heart:
    """Voxelise, label and orient a heart; ``code`` overrides the analytic shape."""
    dx = config.dx_mm
    if code is None:
        if config.anatomy_file is not None:
            from .user_anatomy import SurfaceTags, load_labelled_anatomy

            tags = SurfaceTags(*config.anatomy_surface_tags) if config.anatomy_surface_tags else None
            code, origin = load_labelled_anatomy(config.anatomy_file, dx, scale=config.anatomy_scale, surface_tags=tags)
            base_z = None
        else:
            check_heart_memory(config)
            code, origin = regions(config.shape, dx, config.grid_offset_mm)
            base_z = config.shape.base_z_mm
    else:
        base_z = None
    code = code.copy()
    tissue = keep_largest_component(code == TISSUE)
    code[(code == TISSUE) & ~tissue] = OUTSIDE
    for name, value in (("LV cavity", LV_CAVITY), ("RV cavity", RV_CAVITY)):
        if not (code == value).any():
            raise ConfigError(f"heart: the anatomy has no {name} voxels at dx {dx} mm; refine dx")
    if tissue.sum() < 100:
        raise ConfigError(f"heart: only {int(tissue.sum())} tissue voxels at dx {dx} mm; refine dx")
    grid_labels = surface_labels(code, origin, dx, base_z)

    shape = code.shape
    numbering = number_tissue(tissue, comm.Get_size())
    index = tuple(numbering.ijk.T)
    surfaces = SurfaceLabels(*(getattr(grid_labels, f)[index] for f in ("lv_endo", "rv_endo", "epi", "base")))
    placeholder = VoxelAnatomy(dx, origin, tissue, np.zeros(shape + (3,)), np.full(shape, EPI, np.int8), np.ones(shape))
    positions = placeholder.position(numbering.ijk)

    # Apex: the epicardial voxels farthest from the base along the LV cavity's
    # axis (turned to point at the base voxels).
    centre, axis = cavity_axis(code, origin, dx)
    if surfaces.base.any() and (positions[surfaces.base].mean(axis=0) - centre) @ axis < 0:
        axis = -axis
    height = positions @ axis
    epi_height = height[surfaces.epi]
    apex = surfaces.epi & (height <= epi_height.min() + 1.5 * dx)
    apex_point = positions[apex].mean(axis=0)

    def laplace(*boundary):
        return solve_laplace(placeholder, numbering, list(boundary), comm)

    phi_epi = laplace((surfaces.epi, 1.0), (surfaces.lv_endo, 0.0), (surfaces.rv_endo, 0.0))
    phi_lv = laplace((surfaces.epi, 0.0), (surfaces.rv_endo, 0.0), (surfaces.lv_endo, 1.0))
    phi_rv = laplace((surfaces.epi, 0.0), (surfaces.lv_endo, 0.0), (surfaces.rv_endo, 1.0))
    psi = laplace((surfaces.base, 1.0), (apex, 0.0))

    def grad(values):
        return tissue_gradient(values, numbering, shape, dx)

    fibres_natural = ldrb_fibres(grad(psi), phi_epi, grad(phi_epi), phi_lv, grad(phi_lv), phi_rv, grad(phi_rv), config.fibres)
    fibres = np.zeros(shape + (3,))
    fibres[index] = fibres_natural

    cell_type = np.full(shape, EPI, dtype=np.int8)
    types = np.where(phi_epi < config.endo_fraction, ENDO,
                     np.where(phi_epi < config.endo_fraction + config.mid_fraction, MID, EPI)).astype(np.int8)
    cell_type[index] = types

    anatomy = VoxelAnatomy(dx, origin, tissue, fibres, cell_type, np.ones(shape))
    frame = lv_frame(code, origin, dx, centre, axis, apex_point)
    _, angle = frame.cylindrical(positions)
    to_lv, to_rv = cavity_distances(code, dx, numbering)
    septum = to_lv + to_rv <= config.max_septal_thickness_mm + 2 * dx
    return Heart(
        anatomy=anatomy, numbering=numbering, surfaces=surfaces, transmural=phi_epi, apicobasal=psi,
        phi_lv=phi_lv, phi_rv=phi_rv, frame=frame, angle_deg=angle, septum=septum, lv_side=to_lv <= to_rv,
        cavity_positions=origin + dx * np.argwhere((code == LV_CAVITY) | (code == RV_CAVITY)),
        footprint_softness_mm=config.footprint_softness_voxels * dx,
    )


def cavity_distances(code: np.ndarray, dx: float, numbering: TissueNumbering) -> tuple[np.ndarray, np.ndarray]:
    """Distance (mm) of each tissue voxel from the LV and from the RV cavity.

    The septum is the wall on a short path between the two cavities."""
    index = tuple(numbering.ijk.T)
    to_lv = ndimage.distance_transform_edt(code != LV_CAVITY, sampling=dx)[index]
    to_rv = ndimage.distance_transform_edt(code != RV_CAVITY, sampling=dx)[index]
    return to_lv, to_rv

