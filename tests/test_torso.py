"""The torso volume conductor: lead fields by reciprocity against analytic answers."""
from __future__ import annotations

import numpy as np
import pytest
from mpi4py import MPI

from solver.patient.torso import TorsoGeometry, TorsoGrid, sample_fields, skin_voxel, solve_lead_fields, voxelise

SIGMA = 0.2  # S/m
RADIUS = 50.0  # mm
H = 2.0  # mm


def sphere() -> TorsoGrid:
    n = int(2 * RADIUS / H) + 5
    origin = -H * (n // 2) * np.ones(3)
    axis = origin[0] + H * np.arange(n)
    x, y, z = np.meshgrid(axis, axis, axis, indexing="ij")
    inside = x**2 + y**2 + z**2 <= RADIUS**2
    return TorsoGrid(origin, H, np.where(inside, SIGMA, 0.0))


def on_sphere(theta_deg: float) -> np.ndarray:
    t = np.radians(theta_deg)
    return RADIUS * np.array([np.sin(t), 0.0, np.cos(t)])


def test_a_dipole_in_a_homogeneous_sphere_matches_the_analytic_surface_potential():
    """A current dipole p at the centre of an insulated sphere puts
    V(theta) = 3 p cos(theta) / (4 pi sigma R^2) on its surface (Frank 1952):
    three times the infinite-medium value."""
    grid = sphere()
    angles = {"E0": 0.0, "E45": 45.0, "E135": 135.0, "E180": 180.0, "RL": 90.0}
    electrodes = {name: on_sphere(a) for name, a in angles.items()}
    fields = solve_lead_fields(grid, electrodes, MPI.COMM_WORLD, rtol=1e-10)
    names = list(angles)
    # By reciprocity the electrode sees q (Z(+d/2) - Z(-d/2)) for charges +-q at +-d/2 on z.
    q, d = 1.0, 6.0  # uA, mm
    z = sample_fields(grid, fields, names, np.array([[0, 0, d / 2], [0, 0, -d / 2]]))
    measured = q * (z[:, 0] - z[:, 1])  # mV relative to RL, at theta 90
    p = q * d
    expected = np.array([3 * p * np.cos(np.radians(angles[n])) / (4 * np.pi * SIGMA * RADIUS**2) for n in names])
    scale = np.abs(expected).max()
    np.testing.assert_allclose(measured, expected, atol=0.05 * scale)
    # The insulating boundary triples the potential on the surface.
    infinite = p / (4 * np.pi * SIGMA * RADIUS**2)
    assert measured[0] / infinite == pytest.approx(3.0, rel=0.05)


def test_electrodes_sit_on_the_skin():
    grid = voxelise(TorsoGeometry(dx_mm=10.0))
    for point in ([300.0, 0.0, 250.0], [0.0, 300.0, 0.0]):
        ijk = skin_voxel(grid, np.array(point))
        assert grid.inside[tuple(ijk)]
        neighbours = [tuple(ijk + step) for step in np.vstack([np.eye(3, dtype=int), -np.eye(3, dtype=int)])]
        assert any(not grid.inside[n] for n in neighbours)


def test_the_ground_electrode_reads_zero_and_reciprocity_holds():
    """Z_a at electrode b equals Z_b at electrode a (the transfer is symmetric)."""
    grid = sphere()
    electrodes = {"A": on_sphere(20.0), "B": on_sphere(150.0), "RL": on_sphere(90.0)}
    fields = solve_lead_fields(grid, electrodes, MPI.COMM_WORLD, rtol=1e-10)
    a, b = (tuple(skin_voxel(grid, electrodes[k])) for k in ("A", "B"))
    assert np.all(fields["RL"] == 0)
    assert fields["A"][b] == pytest.approx(fields["B"][a], rel=1e-6)


def test_lungs_are_poor_conductors_inside_the_torso():
    plain = voxelise(TorsoGeometry(dx_mm=10.0))
    with_lungs = voxelise(TorsoGeometry(dx_mm=10.0, lungs=True))
    lung = with_lungs.conductivity == 0.05
    assert 0.05 < lung.sum() / with_lungs.inside.sum() < 0.4
    assert np.array_equal(plain.inside, with_lungs.inside)
    assert not lung[tuple(((np.zeros(3) - with_lungs.origin) / 10.0).round().astype(int))]  # not at the heart


@pytest.mark.parametrize("option, message", [
    ("-laplace_ksp_max_it 1", "Laplace solve did not converge"),
    ("-torso_ksp_max_it 1", "torso lead field of RA did not converge"),
])
def test_petsc_options_reach_each_solver_by_its_prefix(tmp_path, option, message):
    """PETSc's own options (here through PETSC_OPTIONS) configure each solver
    under its prefix, as in PETSc's examples; a solve starved of iterations
    is reported in one line."""
    import yaml

    from tests.conftest import clean_env, run_ecgi

    config = tmp_path / "patient.yaml"
    config.write_text(yaml.safe_dump({"patient": {
        "heart": {"dx_mm": 3.0}, "ionic": {"model": "mitchell_schaeffer"},
        "time": {"dt_ms": 0.1, "duration_ms": 5, "diffusion": "auto"}}}))
    env = {**clean_env(), "PETSC_OPTIONS": option, "ECGI_CACHE_DIR": str(tmp_path / "cache")}
    proc = run_ecgi("simulate", config, "-o", tmp_path / "out.h5", "--quiet", check=False, env=env)
    assert proc.returncode == 1 and message in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "out.h5").exists()


def test_blood_pools_fill_the_cavities_and_change_the_ecg():
    """The ventricles' blood (0.7 S/m) sits where the heart's cavities are,
    and it changes, without overturning, the surface potentials (the Brody
    effect: a conducting cavity reshapes the field of the wall around it)."""
    from solver.patient.ecg import heart_to_torso
    from solver.patient import PatientSimulation, load_patient_config

    def patient(blood_pools: bool):
        return PatientSimulation(load_patient_config({
            "heart": {"dx_mm": 3.0}, "ionic": {"model": "mitchell_schaeffer"},
            "torso": {"body": {"blood_pools": blood_pools}},
            "time": {"dt_ms": 0.1, "duration_ms": 80, "diffusion": "auto"}}), MPI.COMM_SELF)

    with_blood = patient(True)
    heart, torso = with_blood.heart, with_blood.config.torso
    to_torso = heart_to_torso(torso, heart.frame.centre, heart.frame.long_axis, heart.frame.septal_axis)
    grid = voxelise(torso.body, to_torso(heart.cavity_positions), heart.anatomy.dx)
    blood = grid.conductivity == torso.body.blood_conductivity_S_per_m
    cavity_volume = len(heart.cavity_positions) * heart.anatomy.dx**3
    assert 0.5 < blood.sum() * grid.dx**3 / cavity_volume < 1.5
    centre = np.argwhere(blood).mean(axis=0) * grid.dx + grid.origin
    assert np.linalg.norm(centre - to_torso(heart.cavity_positions).mean(axis=0)) < 2 * grid.dx

    leads_blood = with_blood.run().result.extra["leads"][0]
    leads_plain = patient(False).run().result.extra["leads"][0]
    change = np.abs(leads_blood - leads_plain).max() / np.abs(leads_plain).max()
    assert 0.01 < change < 0.8
