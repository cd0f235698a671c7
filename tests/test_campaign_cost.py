"""The campaign cost estimate: its arithmetic, which samples it times, and that it predicts
the CPU time of samples run the way a campaign worker runs them."""
from __future__ import annotations

import time
from dataclasses import replace

import pytest
import yaml

from workflow import cost
from workflow.cost import CostModel, estimate, geometry_voxels, measure_here, timed_plans
from workflow.sampling import plan_samples
from workflow.spec import load_spec


@pytest.fixture
def small_spec(tmp_path):
    data = {
        "name": "cost", "output_dir": str(tmp_path / "campaign"), "samples": 8, "samples_per_folder": 4, "seed": 2,
        "geometry": {"count": 4},
        "parameters": {"heart_scale": {"kind": "uniform", "low": 0.9, "high": 1.1},
                       "condition": {"kind": "choice", "values": ["normal", "lbbb"]}},
        "solver": {"dx_mm": 3.0, "dt_ms": 0.1, "ionic_model": "mitchell_schaeffer", "duration_ms": 120},
        "splits": {"train": 0.5, "validation": 0.25, "test": 0.25},
        "resources": {"executor": "local", "ranks_per_simulation": 1, "max_cores": 2},
    }
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_spec(path)


def test_estimate_adds_setup_time_loop_and_fixed_costs(small_spec):
    model = CostModel(setup_s=0.5, node_steps_per_s=1e6, measured_voxels=1000, measured_ms=50.0, warmup_s=3.0)
    result = estimate(small_spec, model)
    voxels = geometry_voxels(small_spec, plan_samples(small_spec))
    per_sample = [0.5 + voxels[p.geometry_index] * 1200 / 1e6 + cost.TASK_OVERHEAD_S for p in plan_samples(small_spec)]
    assert result.mean_sample_s == pytest.approx(sum(per_sample) / 8)
    core_s = sum(per_sample) + result.slots * 3.0  # each worker warms up once
    assert result.core_hours == pytest.approx(core_s / 3600)
    wall = core_s / result.slots + cost.DRIVER_START_S + 8 / cost.DATASET_SAMPLES_PER_S
    assert result.wall_hours == pytest.approx(wall / 3600)


def test_timed_samples_are_other_anatomies_than_the_warm_up(small_spec):
    plans = plan_samples(small_spec)
    warm = cost.warmup_plans(plans)
    assert {p.values["condition"] for p in warm} == {p.values["condition"] for p in plans} and warm[0] == plans[0]
    chosen = timed_plans(plans, 2)
    assert len(chosen) == 2 and plans[0] not in chosen
    assert len({p.geometry_index for p in chosen} | {plans[0].geometry_index}) == 3
    assert timed_plans(plans[:1], 2) == plans[:1]


def test_measurement_predicts_warm_samples_within_a_quarter(small_spec):
    """Run samples after a warm-up, as a worker does, and compare their CPU time with the estimate."""
    from mpi4py import MPI

    import solver.patient.simulation as patient
    from solver.patient import PatientSimulation
    from workflow.patients import patient_config

    model = measure_here(small_spec, probe_ms=30.0)
    assert model.reuse_setup_s < 0.5 * model.setup_s  # a known anatomy skips the heart's construction
    assert model.timed_samples == 3 and model.timed_steps == 3 * 300 and model.warmup_s > 0
    plans = plan_samples(small_spec)
    voxels = geometry_voxels(small_spec, plans)
    predicted = measured = 0.0
    for plan in plans[4:8]:
        patient._HEARTS.clear()  # each of these samples builds its heart, as on a worker new to the anatomy
        start = time.process_time()
        PatientSimulation(patient_config(small_spec, plan), MPI.COMM_SELF).run()
        measured += time.process_time() - start
        predicted += model.setup_s + voxels[plan.geometry_index] * 1200 / model.node_steps_per_s
    assert predicted == pytest.approx(measured, rel=0.25)
    # the first sample of a fresh process, the old measurement, is not representative of the others
    first = replace(model, setup_s=model.setup_s + model.warmup_s)
    assert first.setup_s > model.setup_s


def test_samples_of_one_anatomy_are_submitted_together(small_spec):
    """Workers reuse a heart only if its anatomy's samples arrive together."""
    from workflow.layout import CampaignLayout
    from workflow.runner import samples_to_run

    _, _, todo, _ = samples_to_run(small_spec, CampaignLayout(small_spec.output_dir))
    anatomies = [plan.geometry_index for plan in todo]
    assert len(todo) == small_spec.samples
    assert anatomies == sorted(anatomies) and len(set(anatomies)) == small_spec.geometry.n_geometries
