"""Laplace problems on the tissue voxels, solved with PETSc.

The coordinates that orient a heart (transmural depth, apico-basal position,
LV-to-RV position) are harmonic functions with Dirichlet values on labelled
surfaces and zero flux elsewhere.  They are solved on the same partition of
the tissue voxels as the monodomain problem, with CG and algebraic multigrid.
"""
from __future__ import annotations

import numpy as np
from mpi4py import MPI
from petsc4py import PETSc

from ..numerics.anatomy import VoxelAnatomy
from ..numerics.conduction import assemble_diffusion_operator
from ..numerics.config import TissueConductivity
from ..common.errors import SolverError
from ..numerics.partition import TissueNumbering

_ISOTROPIC = TissueConductivity(longitudinal=1.0, transverse=1.0)


def solve_laplace(
    anatomy: VoxelAnatomy,
    numbering: TissueNumbering,
    boundary: list[tuple[np.ndarray, float]],
    comm: MPI.Comm,
    rtol: float = 1e-12,
) -> np.ndarray:
    """Harmonic field over the tissue (natural order, on every rank).

    ``boundary`` lists (mask over natural tissue voxels, value) pairs; a
    voxel in several masks takes the value of the last one.

    The multigrid preconditioner depends on the partition, so solutions on
    different rank counts differ by round-off; the field is solved far below
    that and rounded to 1e-9, so that what is derived from it (fibres,
    segments) is the same whatever the rank count.
    """
    iso = VoxelAnatomy(anatomy.dx, anatomy.origin, anatomy.tissue, anatomy.fibres,
                       anatomy.cell_type, np.ones(anatomy.shape))
    operator = assemble_diffusion_operator(iso, numbering, _ISOTROPIC, 1.0, comm)
    matrix = operator.matrix
    matrix.scale(-1.0)  # -Laplacian: positive semi-definite

    values = np.full(numbering.n, np.nan)
    for mask, value in boundary:
        if not mask.any():
            raise SolverError("a Laplace boundary set is empty; the anatomy is missing a labelled surface")
        values[mask] = value
    fixed_natural = np.flatnonzero(~np.isnan(values))
    start, end = numbering.owned_range(comm.Get_rank())
    fixed_petsc = numbering.petsc_of_natural[fixed_natural]
    mine = (fixed_petsc >= start) & (fixed_petsc < end)

    x, b = matrix.createVecs()
    x.set(0.0)
    b.set(0.0)
    x.setValues(fixed_petsc[mine].astype(PETSc.IntType), values[fixed_natural[mine]])
    x.assemble()
    matrix.zeroRowsColumns(fixed_petsc[mine].astype(PETSc.IntType), diag=1.0, x=x, b=b)

    ksp = PETSc.KSP().create(comm=comm)
    ksp.setOptionsPrefix("laplace_")  # e.g. PETSC_OPTIONS="-laplace_ksp_monitor -laplace_pc_type hypre"
    ksp.setOperators(matrix)
    ksp.setType("cg")
    ksp.getPC().setType("gamg")
    ksp.setTolerances(rtol=rtol, max_it=5000)
    ksp.setInitialGuessNonzero(True)
    ksp.setFromOptions()
    ksp.solve(b, x)
    if ksp.getConvergedReason() < 0:
        raise SolverError(f"Laplace solve did not converge (PETSc reason {ksp.getConvergedReason()})")
    local = x.getArray().copy()
    pieces = comm.allgather((numbering.owned_natural(comm.Get_rank()), local))
    field = np.empty(numbering.n)
    for index, part in pieces:
        field[index] = part
    for obj in (ksp, matrix, x, b):
        obj.destroy()
    return np.round(field, 9)


def tissue_gradient(values: np.ndarray, numbering: TissueNumbering, shape, dx: float) -> np.ndarray:
    """Gradient (n, 3) of a field on tissue voxels: central differences where
    both neighbours are tissue, one-sided where one is, zero where none is."""
    grid = np.full(shape, np.nan)
    grid[tuple(numbering.ijk.T)] = values
    padded = np.pad(grid, 1, constant_values=np.nan)
    ijk = numbering.ijk + 1
    centre = values
    grad = np.zeros((len(values), 3))
    for axis in range(3):
        step = np.zeros(3, dtype=np.int64)
        step[axis] = 1
        plus = padded[tuple((ijk + step).T)]
        minus = padded[tuple((ijk - step).T)]
        both = ~np.isnan(plus) & ~np.isnan(minus)
        only_plus = ~np.isnan(plus) & np.isnan(minus)
        only_minus = np.isnan(plus) & ~np.isnan(minus)
        grad[both, axis] = (plus[both] - minus[both]) / (2 * dx)
        grad[only_plus, axis] = (plus[only_plus] - centre[only_plus]) / dx
        grad[only_minus, axis] = (centre[only_minus] - minus[only_minus]) / dx
    return grad
