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
    assert model.timed_samples == 4 and model.timed_steps == 4 * 300
    assert model.profile_ms == 120.0  # a whole sample's loop fits the profile's budget
    assert model.rate_low <= model.node_steps_per_s <= model.rate_high
    assert model.setup_low <= model.setup_s <= model.setup_high and model.cpus >= 1 and model.load >= 0
    plans = plan_samples(small_spec)
    voxels = geometry_voxels(small_spec, plans)
    predicted = measured = 0.0
    for plan in plans[4:8]:
        patient._HEARTS.clear()  # each of these samples builds its heart, as on a worker new to the anatomy
        start = time.process_time()
        PatientSimulation(patient_config(small_spec, plan), MPI.COMM_SELF).run()
        measured += time.process_time() - start
        predicted += model.setup_s + voxels[plan.geometry_index] * 1200 / model.node_steps_per_s + model.finish_s
    assert predicted == pytest.approx(measured, rel=0.25)


def probe(rates: list[float], voxels: int = 1000, steps_per_tick: int = 10) -> cost._Probe:
    """A probe whose loop ran at ``rates[k]`` node-steps/s between output samples k and k + 1."""
    ticks = [0.0]
    for rate in rates:
        ticks.append(ticks[-1] + voxels * steps_per_tick / rate)
    return cost._Probe(setup_s=0.0, run_s=ticks[-1], voxels=voxels, steps=steps_per_tick * len(rates),
                       ticks=ticks, steps_per_tick=steps_per_tick)


def test_phase_factor_is_the_whole_runs_rate_over_the_probes():
    """The first milliseconds of a sample (depolarisation) run slower than the rest: the probe's
    rate is scaled to the whole duration's, and a profile shorter than the duration extrapolates
    its later rate."""
    whole = probe([1e6] * 5 + [2e6] * 15)  # the probe covers the first 5 of 20 intervals
    assert cost.phase_factor([whole], probe_steps=50, total_steps=200) == pytest.approx(200 / (50 / 1e6 + 150 / 2e6) / 1e6)
    # profiled over half the duration: the rest at the later rate; of two profiles, each part's faster
    part = probe([1e6] * 5 + [2e6] * 5)
    assert cost.phase_factor([part, probe([0.5e6] * 10)], probe_steps=50, total_steps=200) == pytest.approx(1.6)
    assert cost.phase_factor([probe([1e6] * 5)], probe_steps=50, total_steps=200) == 1.0  # nothing beyond the probe


def test_range_brackets_the_estimate(small_spec):
    model = CostModel(setup_s=0.5, node_steps_per_s=1e6, measured_voxels=1000, measured_ms=50.0, warmup_s=3.0,
                      rate_low=0.5e6, rate_high=1.1e6, setup_low=0.4, setup_high=0.7)
    result = estimate(small_spec, model)
    slow = estimate(small_spec, replace(model, node_steps_per_s=0.5e6, setup_s=0.7))
    assert result.core_hours_high == pytest.approx(slow.core_hours)  # the slowest sample's rate and set-up
    loaded = estimate(small_spec, replace(model, load=6.0, cpus=2))  # 2 cores' worth beyond the cores
    assert loaded.core_hours == result.core_hours
    assert loaded.core_hours_high == pytest.approx(slow.core_hours * (1 + 2 * cost.LOAD_INFLATION))
    assert loaded.core_hours_low == pytest.approx(result.core_hours_low / (1 + 2 * cost.LOAD_INFLATION))
    assert result.core_hours_low == pytest.approx(result.core_hours * (1 - cost.MIN_SPREAD))  # the floor
    assert result.core_hours_low < result.core_hours < result.core_hours_high


def test_voxels_of_a_large_plan_are_extrapolated_from_a_spread_of_anatomies(small_spec):
    spec = replace(small_spec, samples=1_000_000, geometry=replace(small_spec.geometry, count=100_000))
    messages: list[str] = []
    start = time.monotonic()
    voxels = geometry_voxels(spec, plan_samples(spec), messages.append)
    assert time.monotonic() - start < 30  # every anatomy took minutes
    assert len(voxels) == cost.VOXELISED_ANATOMIES and min(voxels) == 0 and max(voxels) == 99_999
    assert messages[0].startswith("counting the voxels of 48 of 100000 anatomies")
    model = CostModel(setup_s=0.5, node_steps_per_s=1e6, measured_voxels=1000, measured_ms=50.0)
    mean = sum(voxels.values()) / len(voxels)  # every other anatomy counts at the mean
    loop = (mean * 1200 / 1e6 + 0.5 + cost.TASK_OVERHEAD_S) * 1_000_000
    assert estimate(spec, model).core_hours == pytest.approx(loop / 3600, rel=0.01)


def test_samples_of_one_anatomy_are_submitted_together(small_spec):
    """Workers reuse a heart only if its anatomy's samples arrive together."""
    from workflow.layout import CampaignLayout
    from workflow.runner import samples_to_run

    _, _, todo, _ = samples_to_run(small_spec, CampaignLayout(small_spec.output_dir))
    anatomies = [plan.geometry_index for plan in todo]
    assert len(todo) == small_spec.samples
    assert anatomies == sorted(anatomies) and len(set(anatomies)) == small_spec.geometry.n_geometries


@pytest.mark.slow
def test_estimate_brackets_the_cpu_time_of_a_real_campaign(tmp_path):
    """`ecgi campaign plan`, then `ecgi campaign run` of the same 12 samples: the CPU seconds the
    tasks spent (their records) lie within the plan's stated range, and the range is narrow.
    Every sample has an anatomy of its own, so each builds its heart and all are alike."""
    import glob
    import json

    from tests.conftest import REPO, clean_env, run_ecgi

    data = {
        "name": "bracket", "output_dir": str(tmp_path / "campaign"), "samples": 12, "samples_per_folder": 12,
        "seed": 3, "geometry": {"count": 12},
        "parameters": {"heart_scale": {"kind": "uniform", "low": 0.9, "high": 1.1},
                       "lv_wall_mm": {"kind": "uniform", "low": 8.0, "high": 10.5},
                       "condition": {"kind": "choice", "values": ["normal", "lbbb", "rbbb"]}},
        "solver": {"dx_mm": 3.0, "dt_ms": 0.1, "ionic_model": "mitchell_schaeffer", "duration_ms": 300},
        "splits": {"train": 0.5, "validation": 0.25, "test": 0.25},
        "resources": {"executor": "local", "ranks_per_simulation": 1, "max_cores": 2, "retries": 0},
        "dataset_samples_per_shard": 12,
    }
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(data))
    env = {**clean_env(), "PYTHONPATH": str(REPO)}  # the workers run this checkout's code too
    estimate = json.loads(run_ecgi("campaign", "plan", spec, "--json", env=env).stdout)["estimate"]
    run_ecgi("campaign", "run", spec, env=env)
    records = [json.loads(open(p).read()) for p in glob.glob(str(tmp_path / "campaign" / "records" / "*" / "*.json"))]
    assert len(records) == 12 and all(r["state"] == "done" and r["cpu_time_s"] > 0 for r in records)
    records.sort(key=lambda r: r["started_at"])
    # each worker's first sample also pays its warm-up (imports, compilation): the estimate's warmup_s
    spent = sorted(r["cpu_time_s"] for r in records[2:])[5]  # the median: others' jobs may slow a few
    low, high = estimate["mean_sample_s_low"], estimate["mean_sample_s_high"]
    model = estimate["model"]
    # In the stated range, or at least within the 25 % a cluster booking allows (a quiet machine's
    # range is only 15 % either side, and a few samples' CPU time scatters about as much).
    assert low <= spent <= high or abs(spent / estimate["mean_sample_s"] - 1) <= 0.25, \
        (low, spent, estimate["mean_sample_s"], high, model)
    # a range this narrow does not hold the measurement by chance (a loaded machine widens it;
    # the old estimate, from the first 50 ms' rate, was 1.3-1.6x the samples' CPU time)
    assert high / low < 2.0 * cost.load_factor(CostModel(**model)) ** 2
