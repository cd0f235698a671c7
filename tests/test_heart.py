"""Synthetic hearts: coordinates, fibres, segments and sites."""
from __future__ import annotations

import numpy as np
import pytest
from mpi4py import MPI

from solver.patient.fibres import FibreAngles, axis_frame
from solver.patient.heart import HeartConfig, build_heart
from solver.patient.laplace import tissue_gradient
from solver.patient.segments import aha_segment, heart_coordinates, place_sites
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
    coords = heart_coordinates(heart)
    sites = place_sites(heart, coords)
    assert len(sites) == len(SITE_NAMES) == 75
    assert len(set(sites.tolist())) >= 70  # distinct voxels, but for very coarse grids
    s = heart.surfaces
    for name, voxel in zip(SITE_NAMES, sites):
        assert 0 <= voxel < heart.numbering.n
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
            else:  # mid-wall: inside the wall, on no surface
                assert not (s.lv_endo[voxel] or s.rv_endo[voxel] or s.epi[voxel] or s.base[voxel]), name
        elif name.startswith("SEPTM_"):
            assert heart.septum[voxel], name
    # Mid-wall sites lie between their endocardial and epicardial partners.
    index = {n: v for n, v in zip(SITE_NAMES, sites)}
    for name in SITE_NAMES:
        if name.startswith("MID_"):
            t = heart.transmural[index[name]]
            assert 0.0 < t < 1.0, name
