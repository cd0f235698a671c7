"""User anatomies: labelled images and tetrahedral meshes become region codes."""
from __future__ import annotations

import itertools
import json
from pathlib import Path

import meshio
import numpy as np
import pytest
from mpi4py import MPI
from scipy.spatial import Delaunay

from solver.patient.biventricle import LV_CAVITY, OUTSIDE, RV_CAVITY, TISSUE, BiventricleShape, regions
from solver.common.errors import ConfigError
from solver.patient.heart import HeartConfig, build_heart
from solver.patient.user_anatomy import load_labelled_anatomy, save_labelled_image, voxelise_tetrahedra

FACE_TAGS = {LV_CAVITY: 1, RV_CAVITY: 2, OUTSIDE: 3}


def shell_mesh(inner: float = 10.0, outer: float = 20.0, layers: int = 5, directions: int = 600):
    """A thick spherical shell: Delaunay tetrahedra of points on concentric
    spheres, without those filling the hole.  Returns the points, the
    triangulation and which of its simplices belong to the shell."""
    k = np.arange(directions) + 0.5
    polar = np.arccos(1 - 2 * k / directions)
    azimuth = np.pi * (1 + 5 ** 0.5) * k
    unit = np.stack([np.cos(azimuth) * np.sin(polar), np.sin(azimuth) * np.sin(polar), np.cos(polar)], axis=1)
    points = np.concatenate([r * unit for r in np.linspace(inner, outer, layers)])
    triangulation = Delaunay(points)
    in_shell = np.linalg.norm(points[triangulation.simplices].mean(axis=1), axis=1) > inner
    return points, triangulation, in_shell


def tet_volume(points: np.ndarray, tets: np.ndarray) -> float:
    corners = points[tets]
    return float(np.abs(np.linalg.det(corners[:, 1:] - corners[:, :1])).sum() / 6)


def voxel_mesh(code: np.ndarray, origin: np.ndarray, dx: float):
    """Tissue voxels split into 6 tetrahedra each (Kuhn split, conforming), and
    the boundary faces as triangles tagged by the region they face."""
    tissue = np.argwhere(code == TISSUE)
    corner_shape = np.array(code.shape) + 1
    tets = []
    for order in itertools.permutations(range(3)):
        path = [np.zeros(3, int)]
        for axis in order:
            path.append(path[-1] + np.eye(3, dtype=int)[axis])
        tets.append(np.stack([np.ravel_multi_index((tissue + step).T, corner_shape) for step in path], axis=1))
    triangles, tags = [], []
    padded = np.pad(code, 1, constant_values=OUTSIDE)
    for axis, side in itertools.product(range(3), (0, 1)):
        step = np.eye(3, dtype=int)[axis] * (2 * side - 1)
        neighbour = padded[tuple((tissue + 1 + step).T)]
        facing = neighbour != TISSUE
        others = [a for a in range(3) if a != axis]
        quad = []
        for u, v in ((0, 0), (1, 0), (1, 1), (0, 1)):
            corner = np.zeros(3, int)
            corner[axis], corner[others[0]], corner[others[1]] = side, u, v
            quad.append(np.ravel_multi_index((tissue[facing] + corner).T, corner_shape))
        quad = np.stack(quad, axis=1)
        triangles += [quad[:, [0, 1, 2]], quad[:, [0, 2, 3]]]
        face_tags = np.vectorize(FACE_TAGS.get)(neighbour[facing])
        tags += [face_tags, face_tags]
    tets, triangles = np.concatenate(tets), np.concatenate(triangles)
    used, compact = np.unique(np.concatenate([tets.ravel(), triangles.ravel()]), return_inverse=True)
    points = origin + dx * (np.stack(np.unravel_index(used, corner_shape), axis=1) - 0.5)
    tets = compact[:tets.size].reshape(tets.shape)
    triangles = compact[tets.size:].reshape(triangles.shape)
    return points, tets, triangles, np.concatenate(tags)


@pytest.fixture(scope="module")
def analytic_1mm():
    return regions(BiventricleShape(), 1.0)


@pytest.fixture(scope="module")
def heart_mesh(tmp_path_factory):
    """The analytic heart at dx 2 mm as a tagged tetrahedral mesh in a .vtu file."""
    code, origin = regions(BiventricleShape(), 2.0)
    points, tets, triangles, tags = voxel_mesh(code, origin, 2.0)
    path = tmp_path_factory.mktemp("mesh") / "heart.vtu"
    meshio.write(path, meshio.Mesh(points, [("tetra", tets), ("triangle", triangles)],
                                   cell_data={"labels": [np.zeros(len(tets), np.int32), tags.astype(np.int32)]}))
    return path, code


def test_a_tetrahedral_shell_voxelises_to_its_volume_and_converges():
    points, triangulation, in_shell = shell_mesh()
    tets = triangulation.simplices[in_shell]
    volume = tet_volume(points, tets)
    offsets = np.random.default_rng(1).uniform(0, 1, (4, 3))
    mean_error = {}
    for dx in (2.0, 1.0):
        errors = []
        for offset in offsets:
            mask, origin = voxelise_tetrahedra(points, tets, dx, origin=offset * dx)
            errors.append(abs(mask.sum() * dx ** 3 / volume - 1))
            for axis in range(3):
                assert not mask.take([0, 1, -2, -1], axis=axis).any(), "two empty layers on every side"
        mean_error[dx] = np.mean(errors)
        # Independent point location (the triangulation's own simplex search)
        # for the centres within the outer sphere; the others must be empty.
        centres = origin + dx * np.argwhere(np.ones(mask.shape, bool))
        near = np.linalg.norm(centres, axis=1) <= 20.0
        simplex = triangulation.find_simplex(centres[near])
        expected = (simplex >= 0) & in_shell[simplex]
        assert (expected != mask.ravel()[near]).sum() <= 1e-4 * mask.size
        assert not mask.ravel()[~near].any()
        assert mean_error[dx] < 0.02
    assert mean_error[1.0] < mean_error[2.0]


def test_labelled_image_round_trip(tmp_path, analytic_1mm):
    code, origin = analytic_1mm
    path = tmp_path / "heart.h5"
    save_labelled_image(path, code, 1.0, origin)
    same, same_origin = load_labelled_anatomy(path, 1.0)
    assert same.dtype == np.int8
    np.testing.assert_array_equal(same, code)
    np.testing.assert_allclose(same_origin, origin)

    coarse, coarse_origin = load_labelled_anatomy(path, 2.0)
    assert (coarse == TISSUE).sum() * 8 == pytest.approx((code == TISSUE).sum(), rel=0.05)
    assert {LV_CAVITY, RV_CAVITY} <= set(np.unique(coarse).tolist())
    # The coarse grid covers the same extent: its lower voxel face is the image's.
    np.testing.assert_allclose(coarse_origin - 1.0, origin - 0.5)


def test_npz_and_npy_images_with_anisotropic_spacing(tmp_path, analytic_1mm):
    code, origin = analytic_1mm
    thick_slices = code[:, :, ::2]
    spacing = np.array([1.0, 1.0, 2.0])
    np.savez(tmp_path / "heart.npz", labels=thick_slices, spacing_mm=spacing, origin_mm=origin)
    np.save(tmp_path / "heart.npy", thick_slices)
    (tmp_path / "heart.npy.json").write_text(json.dumps({"spacing_mm": spacing.tolist(), "origin_mm": origin.tolist()}))
    from_npz, npz_origin = load_labelled_anatomy(tmp_path / "heart.npz", 1.0)
    from_npy, npy_origin = load_labelled_anatomy(tmp_path / "heart.npy", 1.0)
    np.testing.assert_array_equal(from_npz, from_npy)
    np.testing.assert_allclose(npz_origin, npy_origin)
    # Nearest neighbour at half the slice spacing: each slice twice, over the same extent.
    np.testing.assert_array_equal(from_npz, np.repeat(thick_slices, 2, axis=2))
    np.testing.assert_allclose(npz_origin, origin - [0.0, 0.0, 0.5])
    assert (from_npz == TISSUE).sum() == pytest.approx((code == TISSUE).sum(), rel=0.05)


def test_labels_touching_the_border_get_an_outside_layer(tmp_path, analytic_1mm):
    code, origin = analytic_1mm
    cropped = code[:, :, 3:]
    np.savez(tmp_path / "cropped.npz", labels=cropped, spacing_mm=1.0, origin_mm=origin)
    padded, padded_origin = load_labelled_anatomy(tmp_path / "cropped.npz", 1.0)
    np.testing.assert_array_equal(padded[1:-1, 1:-1, 1:-1], cropped)
    assert (padded[0] == OUTSIDE).all() and (padded[:, :, 0] == OUTSIDE).all()
    np.testing.assert_allclose(padded_origin, origin - 1.0)


def test_a_labelled_image_file_builds_the_same_heart_as_its_shape(tmp_path):
    """A voxel-file anatomy (HDF5 labels) through build_heart: the heart, its
    surfaces and its 75 sites are those of the analytic shape it was saved from."""
    from solver.patient.sites import place_sites

    code, origin = regions(BiventricleShape(), 2.0)
    path = tmp_path / "heart.h5"
    save_labelled_image(path, code, 2.0, origin)
    from_file = build_heart(HeartConfig(dx_mm=2.0, anatomy_file=path), MPI.COMM_SELF)
    analytic = build_heart(HeartConfig(dx_mm=2.0), MPI.COMM_SELF)
    assert from_file.numbering.n == (code == TISSUE).sum() == analytic.numbering.n
    np.testing.assert_allclose(np.sort(from_file.positions, axis=0), np.sort(analytic.positions, axis=0))
    for surface in ("lv_endo", "rv_endo", "epi"):
        assert getattr(from_file.surfaces, surface).sum() == getattr(analytic.surfaces, surface).sum(), surface
    np.testing.assert_allclose(np.sort(from_file.transmural), np.sort(analytic.transmural), atol=1e-6)
    sites = place_sites(from_file)
    nearest = np.array([site.heaviest for site in sites])
    assert len(sites) == 75 and np.all((nearest >= 0) & (nearest < from_file.numbering.n))


def test_a_tetrahedral_heart_mesh_loads_and_builds(heart_mesh):
    path, code = heart_mesh
    loaded, _ = load_labelled_anatomy(path, 2.0)
    assert (loaded == TISSUE).sum() == pytest.approx((code == TISSUE).sum(), rel=0.02)
    # The LV cavity is convex, so its hull is exact.  The RV crescent's hull
    # also spans the septum (tissue, excluded) and may take in a few groove
    # voxels near the base; for this heart at dx 2 mm it gives the RV cavity
    # voxel for voxel (2464 of 2464).  5 %, about 120 voxels, allows a few
    # grooves' worth, while a hull that leaked into the outside space or lost
    # the base opening would be off by far more.
    assert (loaded == LV_CAVITY).sum() == pytest.approx((code == LV_CAVITY).sum(), rel=0.05)
    assert (loaded == RV_CAVITY).sum() == pytest.approx((code == RV_CAVITY).sum(), rel=0.05)

    heart = build_heart(HeartConfig(dx_mm=2.0, anatomy_file=path), MPI.COMM_SELF)
    surfaces = heart.surfaces
    assert surfaces.lv_endo.sum() > 100 and surfaces.rv_endo.sum() > 100 and surfaces.epi.sum() > 100
    assert np.all((heart.transmural > -1e-8) & (heart.transmural < 1 + 1e-8))


def test_mesh_units_and_tag_mapping(tmp_path, heart_mesh):
    path, code = heart_mesh
    mesh = meshio.read(path)
    renamed = {1: 10, 2: 20, 3: 30}
    tags = np.vectorize(renamed.get)(mesh.cell_data["labels"][1])
    in_metres = tmp_path / "heart_m.vtk"
    meshio.write(in_metres, meshio.Mesh(mesh.points / 1000, mesh.cells,
                                        cell_data={"ref": [mesh.cell_data["labels"][0], tags]}), binary=False)
    loaded, _ = load_labelled_anatomy(in_metres, 2.0, scale=1000.0, tag_array="ref",
                                      surface_tags={"lv_endo": 10, "rv_endo": 20, "epi": 30})
    assert (loaded == TISSUE).sum() == pytest.approx((code == TISSUE).sum(), rel=0.02)
    assert (loaded == LV_CAVITY).any() and (loaded == RV_CAVITY).any()
    with pytest.raises(ConfigError, match=r"no triangles tagged 1 \(lv_endo\).*surface_tags"):
        load_labelled_anatomy(in_metres, 2.0, scale=1000.0)
    with pytest.raises(ConfigError, match="no voxel centre lies in a tetrahedron.*scale"):
        load_labelled_anatomy(in_metres, 2.0, tag_array="ref", surface_tags={"lv_endo": 10, "rv_endo": 20, "epi": 30})


def _box_mesh() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A cube split into tetrahedra, and its hull triangles."""
    corners = np.array(list(itertools.product((0.0, 10.0), repeat=3)))
    triangulation = Delaunay(corners)
    return corners, triangulation.simplices, triangulation.convex_hull


def _write_npz(path: Path, labels: np.ndarray) -> Path:
    np.savez(path, labels=labels, spacing_mm=1.0, origin_mm=np.zeros(3))
    return path


def _bad_inputs(tmp: Path) -> list[tuple[Path, str]]:
    code, origin = regions(BiventricleShape(), 4.0)
    unknown = code.copy()
    unknown[0, 0, 0] = 7
    corners, tets, triangles = _box_mesh()
    only_triangles = tmp / "triangles.vtu"
    meshio.write(only_triangles, meshio.Mesh(corners, [("triangle", triangles)],
                                             cell_data={"labels": [np.ones(len(triangles), np.int32)]}))
    untagged = tmp / "untagged.vtu"
    meshio.write(untagged, meshio.Mesh(corners, [("tetra", tets), ("triangle", triangles)]))
    no_triangles = tmp / "no_triangles.vtu"
    meshio.write(no_triangles, meshio.Mesh(corners, [("tetra", tets)]))
    (tmp / "heart.stl").write_text("solid heart\nendsolid heart\n")
    np.save(tmp / "alone.npy", code)
    return [
        (tmp / "missing.h5", "anatomy file not found"),
        (tmp / "heart.stl", "unknown anatomy file type '.stl'"),
        (_write_npz(tmp / "unknown.npz", unknown), r"unknown label value\(s\) \[7\]"),
        (_write_npz(tmp / "no_rv.npz", np.where(code == RV_CAVITY, OUTSIDE, code)), "no RV cavity voxels"),
        (_write_npz(tmp / "no_tissue.npz", np.where(code == TISSUE, OUTSIDE, code)), "no tissue voxels"),
        (tmp / "alone.npy", "needs a sidecar alone.npy.json"),
        (only_triangles, "no tetrahedra"),
        (untagged, "no surface-tag cell data.*tag_array"),
        (no_triangles, "no triangle cells"),
    ]


def test_bad_inputs_say_what_is_wrong(tmp_path):
    for path, message in _bad_inputs(tmp_path):
        with pytest.raises(ConfigError, match=message) as raised:
            load_labelled_anatomy(path, 2.0)
        assert str(path) in str(raised.value)
