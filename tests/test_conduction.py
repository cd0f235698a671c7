"""The diffusion operator: conservation, symmetry and exact answers."""
from __future__ import annotations

import numpy as np
import pytest
from mpi4py import MPI

from solver.numerics.anatomy import VoxelAnatomy
from solver.numerics.conduction import assemble_diffusion_operator, conductivity_tensors
from solver.numerics.config import TissueConductivity
from solver.numerics.partition import number_tissue

SIGMA = TissueConductivity(longitudinal=0.13, transverse=0.017)
CHI_CM = 1.4


def make_anatomy(shape, fibre, tissue=None, dx=0.5, random_fibres=False, seed=0):
    rng = np.random.default_rng(seed)
    tissue = np.ones(shape, bool) if tissue is None else tissue
    if random_fibres:
        fibres = rng.normal(size=shape + (3,))
        fibres /= np.linalg.norm(fibres, axis=-1, keepdims=True)
    else:
        f = np.asarray(fibre, float) / np.linalg.norm(fibre)
        fibres = np.broadcast_to(f, shape + (3,)).copy()
    return VoxelAnatomy(dx=dx, origin=np.zeros(3), tissue=tissue, fibres=fibres,
                        cell_type=np.zeros(shape, np.int8), conductivity_scale=np.ones(shape))


def dense_operator(anatomy):
    numbering = number_tissue(anatomy.tissue, 1)
    op = assemble_diffusion_operator(anatomy, numbering, SIGMA, CHI_CM, MPI.COMM_SELF)
    indptr, indices, values = op.matrix.getValuesCSR()
    n = numbering.n
    dense = np.zeros((n, n))
    for row in range(n):
        dense[row, indices[indptr[row]:indptr[row + 1]]] = values[indptr[row]:indptr[row + 1]]
    # PETSc order equals natural order on one rank.
    return dense, numbering, op


def irregular_mask(shape, seed=1):
    """A blob with holes: exercises the one-sided and dropped tangential terms."""
    rng = np.random.default_rng(seed)
    grid = np.indices(shape).transpose(1, 2, 3, 0).astype(float)
    centre = (np.array(shape) - 1) / 2
    blob = np.linalg.norm((grid - centre) / (np.array(shape) / 2), axis=-1) < 1.0
    return blob & (rng.random(shape) > 0.1)


def test_rows_and_columns_sum_to_zero_for_any_fibres_and_mask():
    anatomy = make_anatomy((9, 8, 7), None, tissue=irregular_mask((9, 8, 7)), random_fibres=True)
    a, _, _ = dense_operator(anatomy)
    scale = np.abs(a).max()
    # Rows: a uniform field is a steady state.  Columns: the flux leaving a
    # voxel through a face enters its neighbour, so total charge is conserved.
    assert np.abs(a.sum(axis=1)).max() < 1e-12 * scale
    assert np.abs(a.sum(axis=0)).max() < 1e-12 * scale


def test_uniform_field_does_not_change():
    anatomy = make_anatomy((6, 6, 6), None, tissue=irregular_mask((6, 6, 6)), random_fibres=True)
    a, _, _ = dense_operator(anatomy)
    assert np.abs(a @ np.full(len(a), -85.0)).max() < 1e-10


def test_axis_aligned_fibres_give_symmetric_seven_point_stencil():
    anatomy = make_anatomy((7, 6, 5), (0, 1, 0), tissue=irregular_mask((7, 6, 5)))
    a, _, op = dense_operator(anatomy)
    np.testing.assert_allclose(a, a.T, rtol=0, atol=1e-14)
    assert op.matrix.isSymmetric(1e-12)
    assert (np.count_nonzero(a, axis=1) <= 7).all()
    # Off-diagonal entries are the face conductances over chi Cm h^2: the
    # longitudinal one along y (the fibre axis), the transverse one elsewhere.
    off_diagonal = a[~np.eye(len(a), dtype=bool)]
    h2 = anatomy.dx**2
    expected = sorted([0.0, SIGMA.transverse / CHI_CM / h2, SIGMA.longitudinal / CHI_CM / h2])
    np.testing.assert_allclose(np.unique(off_diagonal.round(12)), expected, rtol=1e-9)


def test_oblique_fibres_use_nineteen_points():
    anatomy = make_anatomy((5, 5, 5), (1, 1, 1))
    a, numbering, _ = dense_operator(anatomy)
    centre = numbering.petsc_index_grid[2, 2, 2]
    assert np.count_nonzero(a[centre]) == 19


@pytest.mark.parametrize("fibre", [(1, 0, 0), (1, 2, 0.5), (0.3, -1, 2)])
def test_quadratic_fields_give_exact_second_derivatives(fibre):
    """div(sigma grad V) of V = x^T Q x is 2 tr(sigma Q) in the interior, for
    any constant tensor: the finite-volume stencil is exact on quadratics."""
    anatomy = make_anatomy((9, 9, 9), fibre, dx=0.3)
    a, numbering, _ = dense_operator(anatomy)
    x = anatomy.position(numbering.ijk)
    q = np.array([[1.0, 0.4, -0.2], [0.4, -0.7, 0.3], [-0.2, 0.3, 0.5]])
    v = np.einsum("ni,ij,nj->n", x, q, x)
    sigma = conductivity_tensors(anatomy, numbering.ijk[:1], SIGMA)[0]
    expected = 2 * np.trace(sigma @ q) / CHI_CM
    interior = np.all((numbering.ijk >= 2) & (numbering.ijk <= 6), axis=1)
    np.testing.assert_allclose((a @ v)[interior], expected, rtol=1e-9)


def test_insulated_boundary_passes_no_flux():
    """A field varying only along x in a slab with y-z walls: walls parallel to
    the gradient carry no flux, so interior and wall voxels see the same
    second derivative when fibres are axis-aligned."""
    anatomy = make_anatomy((10, 4, 3), (1, 0, 0))
    a, numbering, _ = dense_operator(anatomy)
    x = anatomy.position(numbering.ijk)[:, 0]
    inner_x = (numbering.ijk[:, 0] > 0) & (numbering.ijk[:, 0] < 9)
    np.testing.assert_allclose((a @ x**2)[inner_x], 2 * SIGMA.longitudinal / CHI_CM, rtol=1e-12)
    # Across the insulated x = 0 face, the one-sided flux of V = x is (h^-1 flux) / h.
    rate = a @ x
    assert np.allclose(rate[inner_x], 0.0, atol=1e-12)
    assert np.all(rate[numbering.ijk[:, 0] == 0] > 0)


def test_explicit_stability_limit_is_exact_for_isotropic_stencil():
    anatomy = make_anatomy((6, 6, 6), (1, 0, 0))
    iso = TissueConductivity(longitudinal=0.1, transverse=0.1)
    numbering = number_tissue(anatomy.tissue, 1)
    op = assemble_diffusion_operator(anatomy, numbering, iso, CHI_CM, MPI.COMM_SELF)
    d = 0.1 / CHI_CM
    assert op.explicit_dt_limit == pytest.approx(anatomy.dx**2 / (6 * d), rel=1e-12)


@pytest.mark.parametrize("ranks", [2, 3, 4, 7])
def test_partition_is_balanced(ranks):
    numbering = number_tissue(irregular_mask((30, 20, 10)), ranks)
    counts = np.diff(numbering.offsets)
    assert counts.max() - counts.min() <= 1
    assert sorted(numbering.petsc_of_natural) == list(range(numbering.n))


@pytest.mark.parametrize("ranks", [2, 4, 8])
def test_partition_of_a_block_gives_compact_blocks(ranks):
    """Bisection cuts the longest axis: parts of a block are near-boxes, so
    the halo is a few planes, not a scatter of voxels."""
    numbering = number_tissue(np.ones((40, 20, 10), bool), ranks)
    for rank in range(ranks):
        ijk = numbering.ijk[numbering.owned_natural(rank)]
        box = np.prod(ijk.max(axis=0) - ijk.min(axis=0) + 1)
        assert len(ijk) / box > 0.9
