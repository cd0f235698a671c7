"""Anisotropic conduction: the 19-point finite-volume diffusion operator.

For each tissue voxel a, (div sigma grad V)_a is the sum of the fluxes through
its six faces divided by its volume.  Through the face shared with the
neighbour b = a + s e_d (s = +-1, d the face normal axis):

    flux / h^2 = s * sum_m sigma_dm * dV/dx_m   (evaluated on the face)

* sigma on the face is the mean of the fibre tensors of a and b, times the
  harmonic mean of their conductivity scales (see ``face_conductivity``);
* the normal derivative is s (V_b - V_a) / h;
* a tangential derivative (m != d) is the mean of the central differences
  across a and across b along m, each falling back to a one-sided
  difference where a neighbour is not tissue and dropped where neither is.

A face towards a non-tissue voxel carries no flux.  Every flux is a linear
combination of differences of V, so rows sum to zero (a uniform field is a
steady state and charge is conserved); with fibres along a grid axis the
off-diagonal tensor entries vanish, the stencil reduces to 7 points and the
matrix is symmetric.  The cross terms couple a voxel to its 12 edge
neighbours: 1 + 6 + 12 = 19 points.

Conductivities are in S/m (= mS/mm); dividing by chi * Cm (uF/mm^3) gives
the operator in mV/ms per mV, i.e. 1/ms, ready for dV/dt = A V.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse
from mpi4py import MPI
from petsc4py import PETSc

from .anatomy import VoxelAnatomy
from .config import TissueConductivity
from .partition import TissueNumbering


def conductivity_tensors(anatomy: VoxelAnatomy, ijk: np.ndarray, sigma: TissueConductivity) -> np.ndarray:
    """sigma_t I + (sigma_l - sigma_t) f f^T at voxels ``ijk``, shape (m, 3, 3),
    without the voxels' conductivity scale."""
    f = anatomy.fibres[tuple(ijk.T)]
    outer = f[:, :, None] * f[:, None, :]
    eye = np.eye(3)[None]
    return sigma.transverse * eye + (sigma.longitudinal - sigma.transverse) * outer


def face_conductivity(anatomy: VoxelAnatomy, a: np.ndarray, b: np.ndarray, sigma: TissueConductivity) -> np.ndarray:
    """Conductivity on the faces between voxels ``a`` and ``b`` (m, 3, 3).

    The mean of the two fibre tensors, times the harmonic mean of the two
    conductivity scales: a face next to non-conducting scar (scale 0) passes
    no current, and a face inside uniform tissue keeps its plain mean.
    """
    sa = anatomy.conductivity_scale[tuple(a.T)]
    sb = anatomy.conductivity_scale[tuple(b.T)]
    total = sa + sb
    scale = np.divide(2.0 * sa * sb, total, out=np.zeros_like(total), where=total > 0)
    tensors = 0.5 * (conductivity_tensors(anatomy, a, sigma) + conductivity_tensors(anatomy, b, sigma))
    return scale[:, None, None] * tensors


def _lookup(grid: np.ndarray, ijk: np.ndarray) -> np.ndarray:
    """Index stored in ``grid`` at ``ijk``, -1 outside the grid."""
    inside = np.all((ijk >= 0) & (ijk < np.array(grid.shape)), axis=1)
    out = np.full(len(ijk), -1, dtype=np.int64)
    out[inside] = grid[tuple(ijk[inside].T)]
    return out


def _tangential_derivative(grid, ijk, index, axis, h):
    """dV/dx_axis at voxels ``ijk`` as (which voxel, column, coefficient) triplets."""
    step = np.zeros(3, dtype=np.int64)
    step[axis] = 1
    plus, minus = _lookup(grid, ijk + step), _lookup(grid, ijk - step)
    has_plus, has_minus = plus >= 0, minus >= 0
    both = has_plus & has_minus
    only_plus = has_plus & ~has_minus
    only_minus = has_minus & ~has_plus
    rows = np.arange(len(ijk))
    parts = [
        (rows[both], plus[both], 0.5 / h),
        (rows[both], minus[both], -0.5 / h),
        (rows[only_plus], plus[only_plus], 1.0 / h),
        (rows[only_plus], index[only_plus], -1.0 / h),
        (rows[only_minus], index[only_minus], 1.0 / h),
        (rows[only_minus], minus[only_minus], -1.0 / h),
    ]
    which = np.concatenate([p[0] for p in parts])
    cols = np.concatenate([p[1] for p in parts])
    coef = np.concatenate([np.full(len(p[0]), p[2]) for p in parts])
    return which, cols, coef


def stencil_entries(
    anatomy: VoxelAnatomy,
    numbering: TissueNumbering,
    sigma: TissueConductivity,
    rows_natural: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row, column, value) triplets of div(sigma grad .) for the given rows.

    Rows and columns are PETSc indices; duplicates are to be summed.
    """
    grid = numbering.petsc_index_grid
    h = anatomy.dx
    a_ijk = numbering.ijk[rows_natural]
    a_idx = numbering.petsc_of_natural[rows_natural]
    rows, cols, vals = [], [], []
    for d in range(3):
        for s in (1, -1):
            b_ijk = a_ijk.copy()
            b_ijk[:, d] += s
            b_idx = _lookup(grid, b_ijk)
            face = b_idx >= 0
            A, B = a_ijk[face], b_ijk[face]
            iA, iB = a_idx[face], b_idx[face]
            sigma_face = face_conductivity(anatomy, A, B, sigma)
            normal = sigma_face[:, d, d] / h**2
            rows += [iA, iA]
            cols += [iB, iA]
            vals += [normal, -normal]
            for m in range(3):
                if m == d:
                    continue
                weight = s * sigma_face[:, d, m] / (2.0 * h)
                for X, iX in ((A, iA), (B, iB)):
                    which, c, coef = _tangential_derivative(grid, X, iX, m, h)
                    rows.append(iA[which])
                    cols.append(c)
                    vals.append(weight[which] * coef)
    return np.concatenate(rows), np.concatenate(cols), np.concatenate(vals)


@dataclass
class DiffusionOperator:
    matrix: PETSc.Mat  #: A with dV/dt = A V, in 1/ms
    #: Largest dt (ms) for which forward Euler diffusion is stable.  By
    #: Gershgorin's theorem rho(A) <= max_i sum_j |A_ij|, and forward Euler
    #: needs dt * rho(A) <= 2; for the isotropic 7-point stencil this bound
    #: is exact (dt <= h^2 / (6 D)).
    explicit_dt_limit: float


def assemble_diffusion_operator(
    anatomy: VoxelAnatomy,
    numbering: TissueNumbering,
    sigma: TissueConductivity,
    chi_cm: float,
    comm: MPI.Comm,
) -> DiffusionOperator:
    """Assemble the distributed operator once; each rank builds its own rows.

    ``chi_cm`` is surface-to-volume ratio times membrane capacitance
    (uF/mm^3).  The anatomy is replicated on every rank.
    """
    rank = comm.Get_rank()
    start, end = numbering.owned_range(rank)
    rows, cols, vals = stencil_entries(anatomy, numbering, sigma, numbering.owned_natural(rank))
    n_local, n = end - start, numbering.n
    local = scipy.sparse.csr_matrix((vals / chi_cm, (rows - start, cols)), shape=(n_local, n))
    local.sum_duplicates()
    local.sort_indices()
    int_type = PETSc.IntType
    matrix = PETSc.Mat().createAIJ(
        size=((n_local, n), (n_local, n)),
        csr=(local.indptr.astype(int_type), local.indices.astype(int_type), local.data),
        comm=comm,
    )
    matrix.assemble()
    local_rho = float(abs(local).sum(axis=1).max()) if n_local else 0.0
    rho = comm.allreduce(local_rho, op=MPI.MAX)
    return DiffusionOperator(matrix, np.inf if rho == 0 else 2.0 / rho)
