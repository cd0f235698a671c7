"""Synthetic hearts: coordinates, fibres, segments and sites."""
from __future__ import annotations

import numpy as np
import pytest
from mpi4py import MPI

from solver.patient.fibres import FibreAngles, axis_frame
from solver.patient.heart import HeartConfig, build_heart
from solver.patient.laplace import tissue_gradient
from solver.patient.segments import aha_segment, heart_coordinates
from solver.patient.sites import place_sites
from solver.common.sites import SITE_NAMES


@pytest.fixture(scope="module")
def heart():
    return build_heart(HeartConfig(dx_mm=1.5), MPI.COMM_SELF)


def test_laplace_coordinates_take_their_boundary_values_and_are_monotone(heart):
    s = heart.surfaces
    assert np.allclose(heart.transmural[s.epi], 1.0) and np.allclose(heart.transmural[s.lv_endo], 0.0)
    assert heart.transmural.min() > -1e-8 and heart.transmural.max() < 1 + 1e-8
    # Harmonic fields obey the maximum principle, and the three endo/epi
    # fields sum to one everywhere.
    np.testing.assert_allclose(heart.transmural + heart.phi_lv + heart.phi_rv, 1.0, atol=1e-6)
    # Transmural depth grows from the LV cavity outwards along a ray in the free wall.
    pos = heart.positions
    ray = (np.abs(pos[:, 1]) < 0.8) & (np.abs(pos[:, 2] + 15) < 0.8) & (pos[:, 0] < -15)
    order = np.argsort(-pos[ray, 0])  # from the cavity (x = -17) outwards
    assert ray.sum() >= 3 and np.all(np.diff(heart.transmural[ray][order]) > 0)
    # Apico-basal coordinate increases with height along the LV axis.
    height = (pos - heart.frame.centre) @ heart.frame.long_axis
    lv_wall = heart.lv_side
    assert np.corrcoef(np.argsort(np.argsort(height[lv_wall])), np.argsort(np.argsort(heart.apicobasal[lv_wall])))[0, 1] > 0.95


def test_fibres_are_unit_vectors_rotating_from_endo_to_epi(heart):
    ijk = heart.numbering.ijk
    f = heart.anatomy.fibres[tuple(ijk.T)]
    np.testing.assert_allclose(np.linalg.norm(f, axis=1), 1.0, atol=1e-12)
    grad_psi = tissue_gradient(heart.apicobasal, heart.numbering, heart.anatomy.shape, heart.anatomy.dx)
    grad_epi = tissue_gradient(heart.transmural, heart.numbering, heart.anatomy.shape, heart.anatomy.dx)
    frame = axis_frame(grad_psi, grad_epi)
    helix = np.degrees(np.arctan2((f * frame[..., 1]).sum(-1), (f * frame[..., 0]).sum(-1)))
    helix = (helix + 90) % 180 - 90
    free_wall = (np.abs(heart.angle_deg) > 120) & (np.abs(heart.positions[:, 2] + 12) < 10)
    angles = FibreAngles()
    endo = free_wall & (heart.transmural < 0.05)
    epi = free_wall & (heart.transmural > 0.95)
    mid = free_wall & (np.abs(heart.transmural - 0.5) < 0.1)
    assert np.median(helix[endo]) == pytest.approx(angles.alpha_endo_deg, abs=3)
    assert np.median(helix[epi]) == pytest.approx(angles.alpha_epi_deg, abs=3)
    # The helix angle turns monotonically (clockwise seen from the epicardium).
    assert angles.alpha_epi_deg < np.median(helix[mid]) < angles.alpha_endo_deg


def test_aha_segments_follow_the_bullseye_convention():
    assert aha_segment(0.9, 90) == 1 and aha_segment(0.9, 30) == 2 and aha_segment(0.9, -30) == 3
    assert aha_segment(0.9, -90) == 4 and aha_segment(0.9, -150) == 5 and aha_segment(0.9, 150) == 6
    assert aha_segment(0.5, 90) == 7 and aha_segment(0.5, 150) == 12
    assert aha_segment(0.2, 90) == 13 and aha_segment(0.2, 0) == 14 and aha_segment(0.2, -90) == 15
    assert aha_segment(0.2, 180) == 16 and aha_segment(0.01, 45) == 17


def test_75_sites_lie_in_tissue_in_their_segments_in_name_order(heart):
    """Each site reads voxels around a point; the heaviest of them, the
    point's nearest voxel, lies on the site's surface and in its segment."""
    coords = heart_coordinates(heart)
    sites = place_sites(heart, coords)
    assert len(sites) == len(SITE_NAMES) == 75
    for site in sites:
        np.testing.assert_allclose(site.weights.sum(), 1.0)
        assert np.all(site.weights > 0) and np.all((site.voxels >= 0) & (site.voxels < heart.numbering.n))
    nearest = np.array([site.heaviest for site in sites])
    assert len(set(nearest.tolist())) == 75
    s = heart.surfaces
    for name, voxel in zip(SITE_NAMES, nearest):
        if name.startswith("AHA"):
            assert s.lv_endo[voxel] and coords.lv_segment[voxel] == int(name[3:]), name
        elif name.startswith("RV"):
            assert s.rv_endo[voxel] and coords.rv_segment[voxel] == int(name[2:]), name
        elif name.startswith(("EPI_", "MID_")):
            # Under the endocardial site they name: in the same LV or RV segment.
            segment = name[4:]
            if segment.startswith("AHA"):
                assert coords.lv_segment[voxel] == int(segment[3:]), name
            else:
                assert coords.rv_segment[voxel] == int(segment[2:]), name
            if name.startswith("EPI_"):
                assert s.epi[voxel], name
        elif name.startswith("SEPTM_"):
            assert heart.septum[voxel], name
    # Mid-wall sites lie inside the wall, between their endocardial and
    # epicardial partners: in the thick LV wall on neither surface.
    for name, site in zip(SITE_NAMES, sites):
        if name.startswith("MID_"):
            assert 0.2 < site.weights @ heart.transmural[site.voxels] < 0.8, name
            if name.startswith("MID_AHA"):
                assert not (s.lv_endo[site.heaviest] or s.epi[site.heaviest]), name


def test_sites_are_points_of_the_shape_not_of_the_grid():
    """The same heart on a grid moved by a third of a voxel along each axis.
    The voxelised shape itself changes (its base plane moves by up to a
    voxel), but no site moves by more than that.  Read from the nearest
    voxel alone, sites jump to other voxels, some almost three voxels away."""
    dx, offset = 2.5, 0.8

    def site_points(offset, softness):
        config = HeartConfig(dx_mm=dx, grid_offset_mm=(offset,) * 3, footprint_softness_voxels=softness)
        heart = build_heart(config, MPI.COMM_SELF)
        return np.array([site.point(heart.positions) for site in place_sites(heart)])

    soft = np.linalg.norm(site_points(0.0, 0.5) - site_points(offset, 0.5), axis=1)
    hard = np.linalg.norm(site_points(0.0, 0.0) - site_points(offset, 0.0), axis=1)
    assert soft.max() < 1.5 * dx, SITE_NAMES[int(np.argmax(soft))]
    assert hard.max() > 2 * dx
    assert np.quantile(soft, 0.9) < 0.7 * np.quantile(hard, 0.9)
