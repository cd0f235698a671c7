"""The torso volume conductor: lead fields by reciprocity.

The potential an electrode records, relative to the ground electrode (RL),
is a weighted sum of the heart's current sources I_m (uA/mm^3):

    phi_e - phi_RL = integral over the heart of Z_e(x) I_m(x) dV

By Helmholtz's reciprocity theorem Z_e is the potential field (mV per uA)
that a unit current injected at electrode e and withdrawn at RL sets up in
the torso: one Laplace problem per electrode,

    -div(sigma grad Z_e) = delta_e   in the torso,   Z_e = 0 at RL,
    sigma grad Z_e . n = 0           on the skin (the air insulates),

independent of the heart and its activation, so the lead fields are solved
once per torso and reused for every patient placed in it (and cached on
disk).  In an infinite homogeneous medium Z_e = 1 / (4 pi sigma |x - x_e|):
the insulating skin is what raises surface potentials (three-fold at the
surface of a sphere) and gives the limb leads their clinical share.

The torso is an elliptic cylinder with rounded ends (mm, torso frame: x to
the patient's right, y anterior, z superior, origin at the heart centre),
voxelised at ``dx_mm`` and discretised with the 7-point finite-volume
Laplacian (harmonic-mean face conductivities).  Optional inhomogeneities:
lungs (two ellipsoids beside the heart, 0.05 S/m) and the ventricles' blood
pools (0.7 S/m, from the heart's cavities).  Electrodes sit on the
skin voxel nearest to their nominal position: the limb electrodes where the
limbs join the torso (shoulders, left hip), as Wilson's limb leads see them.

The systems are solved with PETSc's CG and algebraic multigrid under the
options prefix ``torso_`` (e.g. ``-torso_ksp_rtol 1e-10``).
"""
from __future__ import annotations

import hashlib
import json
import os
from collections import OrderedDict
from dataclasses import asdict, dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import scipy.sparse

from ..common.errors import ConfigError, SolverError
from ..common.limits import TORSO_DX_MM, check_range

Vector3 = tuple[float, float, float]
GROUND = "RL"
CACHE_VERSION = 1


@dataclass
class TorsoGeometry:
    """A homogeneous torso with optional lungs (mm, torso frame)."""

    #: Centre of the elliptic cross-section (x, y) relative to the heart centre.
    centre_mm: tuple[float, float] = (0.0, -10.0)
    #: Semi-axes of the cross-section: half width (x) and half depth (y).
    semi_axes_mm: tuple[float, float] = (170.0, 120.0)
    #: Lower and upper ends (z), each rounded over ``end_rounding_mm``.
    bottom_mm: float = -420.0
    top_mm: float = 260.0
    end_rounding_mm: float = 60.0
    #: Grid spacing of the volume conductor (the heart has its own, finer grid).
    dx_mm: float = 5.0
    conductivity_S_per_m: float = 0.2
    lungs: bool = False
    lung_conductivity_S_per_m: float = 0.05
    #: The ventricles' blood (0.7 S/m): a torso voxel is blood where the
    #: heart's cavities fill at least half of it.  Depends on the heart, so
    #: its lead fields are solved (and cached) per anatomy and placement.
    blood_pools: bool = False
    blood_conductivity_S_per_m: float = 0.7

    def validate(self) -> None:
        check_range("torso: dx_mm", self.dx_mm, TORSO_DX_MM, "mm")
        if not (self.dx_mm > 0 and self.conductivity_S_per_m > 0 and self.lung_conductivity_S_per_m > 0
                and self.blood_conductivity_S_per_m > 0):
            raise ConfigError("torso: dx_mm and conductivities must be positive")
        if min(self.semi_axes_mm) <= 4 * self.dx_mm or self.top_mm - self.bottom_mm <= 8 * self.dx_mm:
            raise ConfigError(f"torso: the torso must span many voxels of {self.dx_mm} mm; lower dx_mm")
        if not self.bottom_mm < 0 < self.top_mm:
            raise ConfigError("torso: bottom_mm must be below and top_mm above the heart centre (z = 0)")


@dataclass
class TorsoGrid:
    origin: np.ndarray  #: centre of voxel (0, 0, 0), mm
    dx: float
    conductivity: np.ndarray  #: S/m per voxel, 0 outside the body

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.conductivity.shape  # type: ignore[return-value]

    @property
    def inside(self) -> np.ndarray:
        return self.conductivity > 0

    @cached_property
    def skin(self) -> np.ndarray:
        """Grid indices (m, 3) of the body voxels that touch the air."""
        air_neighbour = np.zeros_like(self.inside)
        for axis in range(3):
            for shift in (1, -1):
                air_neighbour |= ~np.roll(self.inside, shift, axis=axis)
        return np.argwhere(self.inside & air_neighbour)

    def index_coordinates(self, points: np.ndarray) -> np.ndarray:
        """Fractional grid indices (3, n) of points (n, 3), for interpolation."""
        return ((np.asarray(points) - self.origin) / self.dx).T


#: Lungs: ellipsoids (centre, semi-axes) in mm, either side of the heart.
_LUNGS = (((95.0, -30.0, 60.0), (65.0, 75.0, 130.0)), ((-120.0, -45.0, 70.0), (45.0, 60.0, 115.0)))


def voxelise(geometry: TorsoGeometry, blood: np.ndarray | None = None, blood_voxel_mm: float = 0.0) -> TorsoGrid:
    """Conductivity per voxel of the torso's bounding box (plus one empty
    layer); ``blood``: centres (mm, torso frame) of cavity voxels of size
    ``blood_voxel_mm``, used when the geometry has blood pools."""
    g, h = geometry, geometry.dx_mm
    (cx, cy), (a, b) = g.centre_mm, g.semi_axes_mm
    lo = np.array([cx - a, cy - b, g.bottom_mm]) - 2 * h
    hi = np.array([cx + a, cy + b, g.top_mm]) + 2 * h
    axes = [lo[i] + h * np.arange(int(np.floor((hi[i] - lo[i]) / h)) + 1) for i in range(3)]
    x, y, z = np.meshgrid(*axes, indexing="ij")
    # Rounded ends: the cross-section shrinks like a quarter ellipse near each end.
    distance_to_end = np.minimum(z - g.bottom_mm, g.top_mm - z)
    r = np.clip(distance_to_end / g.end_rounding_mm, 0.0, 1.0)
    shrink = np.sqrt(np.clip(1.0 - (1.0 - r) ** 2, 0.0, 1.0))
    ellipse = ((x - cx) / a) ** 2 + ((y - cy) / b) ** 2
    body = (ellipse <= shrink**2) & (distance_to_end >= 0)
    sigma = np.where(body, g.conductivity_S_per_m, 0.0)
    if g.lungs:
        for centre, semi in _LUNGS:
            lung = ((((np.stack([x, y, z], -1) - centre) / semi) ** 2).sum(-1) <= 1.0) & body
            sigma[lung] = g.lung_conductivity_S_per_m
    grid = TorsoGrid(lo, h, sigma)
    if g.blood_pools and blood is not None and len(blood):
        index = np.round(grid.index_coordinates(blood)).astype(int)
        inside = np.all((index >= 0) & (index < np.array(sigma.shape)[:, None]), axis=0)
        flat = np.ravel_multi_index(index[:, inside], sigma.shape)
        filled = np.bincount(flat, minlength=sigma.size).reshape(sigma.shape) * (blood_voxel_mm / h) ** 3
        sigma[(filled >= 0.5) & (sigma > 0)] = g.blood_conductivity_S_per_m
    return grid


def skin_voxel(grid: TorsoGrid, point: np.ndarray) -> np.ndarray:
    """Grid index of the body voxel nearest to ``point`` that touches the air."""
    positions = grid.origin + grid.dx * grid.skin
    return grid.skin[np.argmin(((positions - np.asarray(point)) ** 2).sum(axis=1))]


def _laplacian_rows(grid: TorsoGrid, rows: np.ndarray) -> scipy.sparse.csr_matrix:
    """Rows ``rows`` (flat indices) of -div(sigma grad .) times the voxel
    volume (uA per mV): sigma_face * h on each face between body voxels.
    Outside voxels get an identity row (they are decoupled)."""
    shape, h = grid.shape, grid.dx
    sigma = grid.conductivity.ravel()
    ijk = np.array(np.unravel_index(rows, shape)).T
    r_idx, c_idx, vals = [], [], []
    diagonal = np.zeros(len(rows))
    for axis in range(3):
        for step in (1, -1):
            nb = ijk.copy()
            nb[:, axis] += step
            ok = (nb[:, axis] >= 0) & (nb[:, axis] < shape[axis])
            nb_flat = np.where(ok, np.ravel_multi_index(np.clip(nb, 0, np.array(shape) - 1).T, shape), 0)
            sa, sb = sigma[rows], np.where(ok, sigma[nb_flat], 0.0)
            total = sa + sb
            face = np.divide(2 * sa * sb, total, out=np.zeros_like(total), where=total > 0) * h
            coupled = ok & (face > 0)
            r_idx.append(np.flatnonzero(coupled))
            c_idx.append(nb_flat[coupled])
            vals.append(-face[coupled])
            diagonal += face
    outside = sigma[rows] == 0
    diagonal[outside] = 1.0
    local = np.arange(len(rows))
    return scipy.sparse.csr_matrix(
        (np.concatenate(vals + [diagonal]), (np.concatenate(r_idx + [local]), np.concatenate(c_idx + [rows]))),
        shape=(len(rows), int(np.prod(shape))),
    )


def solve_lead_fields(grid: TorsoGrid, electrodes: dict[str, np.ndarray], comm,
                      rtol: float = 1e-9) -> dict[str, np.ndarray]:
    """Z_e on the torso grid (mV per uA) for each electrode, RL grounded.

    Returned on every rank; the rows are split over ``comm``'s ranks."""
    from petsc4py import PETSc

    n = int(np.prod(grid.shape))
    rank, size = comm.Get_rank(), comm.Get_size()
    start, end = (n * rank) // size, (n * (rank + 1)) // size
    local = _laplacian_rows(grid, np.arange(start, end))
    ground = int(np.ravel_multi_index(skin_voxel(grid, electrodes[GROUND]), grid.shape))
    local.sort_indices()
    itype = PETSc.IntType
    matrix = PETSc.Mat().createAIJ(size=((end - start, n), (end - start, n)),
                                   csr=(local.indptr.astype(itype), local.indices.astype(itype), local.data), comm=comm)
    matrix.assemble()
    # Dirichlet Z = 0 at the ground electrode, eliminated symmetrically so
    # that the operator stays symmetric positive definite for CG.
    matrix.zeroRowsColumns([ground] if start <= ground < end else [], diag=1.0)

    ksp = PETSc.KSP().create(comm=comm)
    ksp.setOptionsPrefix("torso_")
    ksp.setOperators(matrix)
    ksp.setType("cg")
    ksp.getPC().setType("gamg")
    ksp.setTolerances(rtol=rtol, max_it=2000)
    ksp.setFromOptions()
    x, b = matrix.createVecs()
    gather, full = PETSc.Scatter.toAll(x)
    fields = {}
    for name, point in electrodes.items():
        if name == GROUND:
            fields[name] = np.zeros(grid.shape)
            continue
        b.set(0.0)
        source = int(np.ravel_multi_index(skin_voxel(grid, point), grid.shape))
        if start <= source < end:
            b.setValue(source, 1.0)  # 1 uA injected at the electrode
        b.assemble()
        x.set(0.0)
        ksp.solve(b, x)
        if ksp.getConvergedReason() < 0:
            raise SolverError(f"torso lead field of {name} did not converge (PETSc reason {ksp.getConvergedReason()})")
        gather.scatter(x, full, addv=PETSc.InsertMode.INSERT, mode=PETSc.ScatterMode.FORWARD)
        fields[name] = full.getArray().copy().reshape(grid.shape)
    for obj in (ksp, matrix, x, b, gather, full):
        obj.destroy()
    return fields


def cache_dir() -> Path:
    return Path(os.environ.get("ECGI_CACHE_DIR") or Path.home() / ".cache" / "ecgi") / "lead-fields"


def _cache_key(geometry: TorsoGeometry, electrodes: dict[str, np.ndarray], grid: TorsoGrid | None) -> str:
    description = {"version": CACHE_VERSION, "geometry": asdict(geometry),
                   "electrodes": {k: [float(c) for c in v] for k, v in sorted(electrodes.items())}}
    if grid is not None:  # blood pools: the conductivity depends on the heart
        description["conductivity"] = hashlib.sha256(grid.conductivity.tobytes()).hexdigest()
    return hashlib.sha256(json.dumps(description, sort_keys=True).encode()).hexdigest()[:16]


#: Lead fields solved or read by this process, newest last (each torso's
#: fields take about 40 MB).
_MEMORY: "OrderedDict[str, tuple[TorsoGrid, dict[str, np.ndarray]]]" = OrderedDict()
MEMORY_ENTRIES = 4


def lead_fields(geometry: TorsoGeometry, electrodes: dict[str, np.ndarray], comm, use_cache: bool = True,
                blood: np.ndarray | None = None, blood_voxel_mm: float = 0.0) -> tuple[TorsoGrid, dict[str, np.ndarray]]:
    """The torso grid and its lead fields: from this process's memory, the
    disk cache, or solved (and cached) once for every later patient (of the
    same anatomy and placement when the torso has blood pools)."""
    from ..common.files import write_bytes_atomic

    grid = voxelise(geometry, blood, blood_voxel_mm) if geometry.blood_pools else None
    key = _cache_key(geometry, electrodes, grid)
    if use_cache and key in _MEMORY:
        _MEMORY.move_to_end(key)
        return _MEMORY[key]
    if grid is None:
        grid = voxelise(geometry)
    path = cache_dir() / f"{key}.npz"
    fields = None
    if use_cache and comm.Get_rank() == 0 and path.exists():
        try:
            with np.load(path) as stored:
                fields = {name: stored[name].astype(np.float64) for name in electrodes}
        except (OSError, ValueError, KeyError):
            fields = None  # unreadable cache entry: solve again
    fields = comm.bcast(fields, root=0) if use_cache else None
    if fields is None:
        # Rounded as the cache stores them: a patient's ECG must not depend
        # on whether its lead fields were solved now or read from the cache.
        fields = {k: v.astype(np.float32).astype(np.float64) for k, v in solve_lead_fields(grid, electrodes, comm).items()}
        if use_cache and comm.Get_rank() == 0:
            import io

            buffer = io.BytesIO()
            np.savez(buffer, **{k: v.astype(np.float32) for k, v in fields.items()})
            write_bytes_atomic(path, buffer.getvalue())
    if use_cache:
        _MEMORY[key] = (grid, fields)
        while len(_MEMORY) > MEMORY_ENTRIES:
            _MEMORY.popitem(last=False)
    return grid, fields


def sample_fields(grid: TorsoGrid, fields: dict[str, np.ndarray], names, points: np.ndarray) -> np.ndarray:
    """(n_electrodes, n_points) lead-field values at points inside the torso
    (trilinear interpolation)."""
    from scipy.ndimage import map_coordinates

    coords = grid.index_coordinates(points)
    inside = map_coordinates(grid.inside.astype(float), coords, order=0, mode="constant", cval=0.0)
    if len(points) and inside.min() < 1:
        raise ConfigError("torso: part of the heart lies outside the torso; check torso.offset_mm and the torso size")
    return np.stack([map_coordinates(fields[name], coords, order=1, mode="nearest") for name in names])
