"""Synthetic patients: the ECG, the blocks and the scar."""
from __future__ import annotations

import h5py
import numpy as np
import pytest
import yaml
from mpi4py import MPI

from solver.patient.leads import twelve_leads
from solver.patient.ecg_measures import qrs_duration
from solver.common.errors import ConfigError
from solver.patient import PatientSimulation, load_patient_config
from solver.common.sites import ELECTRODE_NAMES, LEAD_NAMES, SITE_NAMES
from solver.common.traces import threshold_crossing_ms
from tests.conftest import REPO


def coarse_patient(**activation) -> dict:
    return {
        "geometry_id": "coarse",
        "heart": {"dx_mm": 2.5},
        "activation": activation,
        "ionic": {"model": "mitchell_schaeffer"},
        "time": {"dt_ms": 0.1, "duration_ms": 60, "diffusion": "auto"},
    }


def test_lead_formulas_are_exact():
    rng = np.random.default_rng(0)
    e = rng.normal(size=(7, 10))
    leads = twelve_leads(e)
    ra, la, ll = e[:, 0], e[:, 1], e[:, 2]
    wct = (ra + la + ll) / 3
    np.testing.assert_allclose(leads[:, LEAD_NAMES.index("I")], la - ra)
    np.testing.assert_allclose(leads[:, LEAD_NAMES.index("II")], ll - ra)
    np.testing.assert_allclose(leads[:, LEAD_NAMES.index("III")], ll - la)
    np.testing.assert_allclose(leads[:, LEAD_NAMES.index("aVR")], 1.5 * (ra - wct))
    np.testing.assert_allclose(leads[:, LEAD_NAMES.index("aVL")], 1.5 * (la - wct))
    np.testing.assert_allclose(leads[:, LEAD_NAMES.index("aVF")], 1.5 * (ll - wct))
    for k in range(1, 7):
        np.testing.assert_allclose(leads[:, LEAD_NAMES.index(f"V{k}")], e[:, ELECTRODE_NAMES.index(f"V{k}")] - wct)
    # Einthoven: II = I + III; the augmented leads sum to zero.
    np.testing.assert_allclose(leads[:, 1], leads[:, 0] + leads[:, 2])
    np.testing.assert_allclose(leads[:, 3:6].sum(axis=1), 0, atol=1e-12)


def test_uniform_vm_gives_a_zero_ecg():
    patient = PatientSimulation(load_patient_config(coarse_patient()), MPI.COMM_SELF)
    sim = patient.simulation
    ecg = sim.observers[0]
    v, _ = sim.operator.matrix.createVecs()
    v.set(-30.0)
    ecg.record(0, v.array)
    # A uniform field drives no current: the sources, and so the ECG, vanish
    # (to round-off relative to a typical beat's potentials, ~0.1 mV).
    assert np.abs(ecg.potentials[0]).max() < 1e-9


@pytest.mark.mpi
@pytest.mark.parametrize("activation", [{}, {"condition": "lbbb"}])
def test_ecg_and_sites_are_identical_on_one_and_two_ranks(tmp_path, ecgi, activation):
    config = tmp_path / "patient.yaml"
    # Sampled every 0.2 ms, so that reading an activation back from a trace
    # (linear between samples) errs by hundredths of a ms, not tenths.
    config.write_text(yaml.safe_dump({"patient": {**coarse_patient(**activation), "output_interval_ms": 0.2}}))
    for ranks in (1, 2):
        ecgi("simulate", config, "-o", tmp_path / f"r{ranks}.h5", "--quiet", ranks=ranks)
    # The same again on one rank, now with the calibration's cache warm.
    ecgi("simulate", config, "-o", tmp_path / "again.h5", "--quiet", ranks=1)
    with h5py.File(tmp_path / "again.h5") as again, h5py.File(tmp_path / "r1.h5") as first:
        np.testing.assert_allclose(again["leads"][:], first["leads"][:], rtol=1e-5, atol=1e-7)
    with h5py.File(tmp_path / "r1.h5") as one, h5py.File(tmp_path / "r2.h5") as two:
        assert one["leads"].shape == (300, 12) and one["vm_sites"].shape == (300, 75)
        assert one["leads"].attrs["dt_ms"] == 0.2
        assert [n.decode() for n in one["site_names"][:]] == list(SITE_NAMES)
        assert np.abs(one["leads"][:]).max() > 1e-3  # a real signal
        np.testing.assert_allclose(two["leads"][:], one["leads"][:], rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(two["electrodes"][:], one["electrodes"][:], rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(two["act_sites"][:], one["act_sites"][:], atol=1e-4)
        np.testing.assert_allclose(two["vm_sites"][:], one["vm_sites"][:], atol=1e-3)
        # Each site's trace, its voxels' traces aligned on the site's
        # activation time, rises through 0 mV at that time.
        act = one["act_sites"][:]
        early = act < 55  # the 60 ms window holds the whole upstroke
        assert early.sum() > 10
        from_traces = threshold_crossing_ms(one["vm_sites"][:], dt_ms=0.2, axis=0)
        error = np.abs(from_traces[early] - act[early])
        assert np.median(error) < 0.03 and error.max() < 0.06


def test_scar_core_never_activates_and_border_conducts_slowly():
    data = coarse_patient(scar={"aha_segment": 5, "core_radius_mm": 6.0})
    data["time"]["duration_ms"] = 150
    config = load_patient_config(data)
    patient = PatientSimulation(config, MPI.COMM_SELF)
    scale = patient.heart.anatomy.conductivity_scale[tuple(patient.heart.numbering.ijk.T)]
    core = scale == 0
    assert core.sum() > 5
    result = patient.run().result
    assert np.isnan(result.activation_ms[core]).all()
    assert np.isfinite(result.activation_ms[~core]).mean() > 0.95
    assert config.condition_label() == "scar"


@pytest.mark.parametrize("condition, qrs_range", [("normal", (70, 110)), ("lbbb", (120, 200)), ("rbbb", (120, 200))])
def test_qrs_duration_of_the_default_heart(condition, qrs_range):
    """The evidence of the example patients at dx 1 mm (calibrated velocities)."""
    data = yaml.safe_load(open(f"examples/patients/{condition}.yaml"))["patient"]
    data["time"]["duration_ms"] = 200
    data["ionic"] = {"model": "mitchell_schaeffer"}
    sample = PatientSimulation(load_patient_config(data), MPI.COMM_SELF).run()
    leads = sample.result.extra["leads"][0].astype(float)
    assert qrs_range[0] <= qrs_duration(leads, 1.0) <= qrs_range[1]


def test_blocks_without_roots_are_refused():
    with pytest.raises(ConfigError, match="no root site is left"):
        load_patient_config(coarse_patient(condition="lbbb", roots=[
            {"name": "lv_only", "ventricle": "lv", "height": 0.5, "angle_deg": 0}]))


def test_samples_of_one_anatomy_reuse_its_heart_but_not_each_others_tissue():
    """The heart is built once per anatomy and process; a scar or a block of
    one sample must not leak into the next sample of the same anatomy."""
    import solver.patient.simulation as patient

    patient._HEARTS.clear()
    fresh = PatientSimulation(load_patient_config(coarse_patient()), MPI.COMM_SELF)
    expected = fresh.run().result.extra["leads"][0]
    scarred = PatientSimulation(load_patient_config(coarse_patient(condition="lbbb", scar={"aha_segment": 5})), MPI.COMM_SELF)
    assert scarred.heart.anatomy.conductivity_scale.min() == 0.0
    again = PatientSimulation(load_patient_config(coarse_patient()), MPI.COMM_SELF)
    assert len(patient._HEARTS) == 1 and again.heart.frame is fresh.heart.frame  # built once
    np.testing.assert_array_equal(again.run().result.extra["leads"][0], expected)


def test_a_failed_run_frees_its_state_vector(monkeypatch):
    """A worker runs thousands of samples; one that blows up must not leave its PETSc vector behind."""
    import solver.numerics.simulation as numerics
    from petsc4py import PETSc
    from solver.common.errors import SolverError

    created = []

    class TrackedPETSc:
        def __getattr__(self, name):
            return getattr(PETSc, name)

        def Vec(self):  # noqa: N802 (PETSc's name)
            created.append(PETSc.Vec())
            return created[-1]

    with PatientSimulation(load_patient_config(coarse_patient()), MPI.COMM_SELF) as patient:
        monkeypatch.setattr(numerics, "PETSc", TrackedPETSc())
        monkeypatch.setattr(patient.simulation.model, "step", lambda vm, *args: vm.fill(np.nan))
        with pytest.raises(SolverError, match="numerical blow-up"):
            patient.run()
    assert created and all(vec.handle == 0 for vec in created)


def test_samples_with_other_conduction_velocities_share_the_heart():
    """A campaign calibrates the fast layer's conductivity per sample; the
    heart of the anatomy is still built once, and the sample's own factor
    gives the same ECG as a heart built for it alone."""
    import solver.patient.simulation as patient

    def faster_layer() -> dict:
        data = coarse_patient()
        data["calibration"] = {"longitudinal_m_per_s": 0.45}  # the default is 0.5
        return data

    patient._HEARTS.clear()
    alone = PatientSimulation(load_patient_config(faster_layer()), MPI.COMM_SELF).run().result.extra["leads"][0]
    patient._HEARTS.clear()
    first = PatientSimulation(load_patient_config(coarse_patient()), MPI.COMM_SELF)
    first_leads = first.run().result.extra["leads"][0]
    shared = PatientSimulation(load_patient_config(faster_layer()), MPI.COMM_SELF)
    assert len(patient._HEARTS) == 1 and shared.heart.frame is first.heart.frame
    leads = shared.run().result.extra["leads"][0]
    np.testing.assert_array_equal(leads, alone)
    assert np.abs(leads - first_leads).max() > 1e-3  # the sample's own velocities took effect


def test_a_patient_frees_its_petsc_objects(monkeypatch, tmp_path):
    """petsc4py frees a PETSc object only when it is destroyed, not always
    when its Python object goes: a campaign worker's memory grew by about a
    megabyte per sample (3 GB after 2,500 samples) until each sample's
    simulation was destroyed.  The context manager destroys the operator and
    the stepper's objects, and a campaign task uses it."""
    with PatientSimulation(load_patient_config(coarse_patient()), MPI.COMM_SELF) as patient:
        patient.run()
        operator, rate = patient.simulation.operator.matrix, patient.simulation.diffusion.rate
        assert operator.handle and rate.handle
    assert operator.handle == 0 and rate.handle == 0

    import solver.patient.simulation as patient_simulation
    from workflow.task import EXIT_OK, run_task

    destroyed = []
    original = patient_simulation.PatientSimulation.destroy
    monkeypatch.setattr(patient_simulation.PatientSimulation, "destroy",
                        lambda self: (destroyed.append(self), original(self)))
    spec = yaml.safe_load((REPO / "examples" / "campaigns" / "tiny.yaml").read_text())
    spec.update(output_dir=str(tmp_path / "campaign"), samples=1)
    spec["solver"]["duration_ms"] = 10
    (tmp_path / "campaign").mkdir()
    (tmp_path / "campaign" / "spec.yaml").write_text(yaml.safe_dump(spec))
    assert run_task(tmp_path / "campaign", "tiny-s000000") == EXIT_OK
    assert len(destroyed) == 1


def test_a_root_on_a_curved_stretch_of_endocardium_still_excites_tissue():
    """The RV septal root turned 16 degrees towards the anterior junction:
    its point of the surface lies farther than the patch's 2.5 mm radius
    from every voxel, and the patch grows to reach the nearest one."""
    data = coarse_patient(roots=[{"name": "rv_septal_moderator_band", "ventricle": "rv", "height": 0.35,
                                  "angle_deg": 36.5, "septal": True, "radius_mm": 2.5}])
    data["heart"]["shape"] = {"lv_radii_mm": [26.25, 26.25, 55.09], "lv_wall_mm": 8.43, "rv_centre_mm": [12.6, 0, 0],
                              "rv_radii_mm": [35.71, 25.2, 51.65], "rv_wall_mm": 4.2}
    patient = PatientSimulation(load_patient_config(data), MPI.COMM_SELF)
    (stimulus,) = patient.simulation.config.stimuli
    assert stimulus.sphere.radius_mm > 2.5
    result = patient.run()
    assert np.isfinite(result.site_activation_ms).sum() > 5  # the beat started
