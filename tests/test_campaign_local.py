"""Campaigns on the local cores through a real Parsl executor."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml

from tests.conftest import ECGI, REPO, clean_env, run_ecgi


def spec(tmp_path: Path, samples: int = 6, **changes) -> Path:
    data = {
        "name": "t", "output_dir": str(tmp_path / "campaign"), "samples": samples, "samples_per_folder": 3,
        "seed": 3, "geometry": {"count": 3},
        "parameters": {"heart_scale": {"kind": "uniform", "low": 0.9, "high": 1.1},
                       "condition": {"kind": "choice", "values": ["normal", "lbbb", "rbbb"]}},
        "solver": {"dx_mm": 3.0, "dt_ms": 0.1, "ionic_model": "mitchell_schaeffer", "duration_ms": 120},
        "splits": {"train": 0.34, "validation": 0.33, "test": 0.33},
        "resources": {"executor": "local", "retries": 1},
        "dataset_samples_per_shard": 4,
    }
    for key, value in changes.items():
        data[key] = value
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def status(directory: Path) -> dict:
    return json.loads(run_ecgi("campaign", "status", directory, "--json").stdout)


def records(directory: Path) -> dict:
    return {p.stem: json.loads(p.read_text()) for p in (directory / "records").rglob("*.json")}


@pytest.mark.parametrize("change, message", [
    ({"parameters": {"heart_size": {"kind": "fixed", "value": 1.0}}}, "unknown parameter(s) heart_size"),
    ({"samples": -4}, "samples must be >= 1, got -4"),
    ({"resources": {"executor": "local", "ranks_per_simulation": 64}}, "exceeds the"),
    ({"parameters": {"lv_wall_mm": {"kind": "uniform", "low": 1.0, "high": 5.0}}}, "outside the meaningful range"),
    ({"resources": {"executor": "slurm", "slurm": {"walltime": "1 hour"}}}, "walltime must be a SLURM time limit"),
    ({"splits": {"train": 0, "validation": 0.5, "test": 0.5}}, "campaign.splits: train must be > 0"),
])
def test_bad_spec_is_refused_before_anything_runs(tmp_path, change, message):
    proc = run_ecgi("campaign", "run", spec(tmp_path, **change), check=False)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr
    assert not (tmp_path / "campaign").exists()


@pytest.mark.slow
def test_campaign_runs_resumes_and_recomputes_only_what_is_broken(tmp_path):
    path = spec(tmp_path)
    directory = tmp_path / "campaign"
    run_ecgi("campaign", "run", path, timeout=600)
    st = status(directory)
    assert (st["done"], st["failed"], st["pending"], st["running"]) == (6, 0, 0, 0)
    assert {s["id"] for s in st["samples"]} == {f"t-s{i:06d}" for i in range(6)}
    for sample in st["samples"]:
        with h5py.File(sample["path"]) as f:
            assert f["leads"].shape == (120, 12) and f["vm_sites"].shape == (120, 75)
    manifest = json.loads((directory / "dataset" / "manifest.json").read_text())
    assert sum(s["samples"] for split in manifest["splits"].values() for s in split) == 6

    before = records(directory)
    run_ecgi("campaign", "resume", directory)  # nothing to do: nothing recomputed
    assert records(directory) == before

    # A truncated file is detected and only that sample is recomputed.
    victim = Path(st["samples"][4]["path"])
    victim.write_bytes(victim.read_bytes()[:1000])
    run_ecgi("campaign", "resume", directory)
    after = records(directory)
    changed = {k for k in after if after[k]["finished_at"] != before[k]["finished_at"]}
    assert changed == {victim.stem}
    assert status(directory)["done"] == 6


@pytest.mark.slow
def test_a_sample_that_always_fails_is_reported_and_does_not_block_its_shard(tmp_path):
    # A stimulus so strong the voltage runs away: a solver error, final.
    from workflow.sampling import plan_samples
    from workflow.spec import load_spec

    for seed in range(100):  # a seed whose plan has both kinds of sample
        path = spec(tmp_path, samples=4, seed=seed, parameters={
            "stimulus_amplitude_uA_per_mm3": {"kind": "choice", "values": [60.0, 1e8]}})
        plan = plan_samples(load_spec(path))
        doomed = {p.sample_id for p in plan if p.values["stimulus_amplitude_uA_per_mm3"] == 1e8}
        if 1 <= len(doomed) <= 2:
            break
    else:
        pytest.fail("no seed in 0..99 plans both failing and succeeding samples")
    directory = tmp_path / "campaign"
    proc = run_ecgi("campaign", "run", path, check=False, timeout=600)
    assert proc.returncode == 1
    st = status(directory)
    failed = [s for s in st["samples"] if s["state"] == "failed"]
    # Exactly the samples with the runaway stimulus failed, and the others are done.
    assert {s["id"] for s in failed} == doomed
    assert {s["id"] for s in st["samples"] if s["state"] == "done"} == {p.sample_id for p in plan} - doomed
    assert st["failed"] == len(doomed) and st["done"] == 4 - len(doomed)
    for s in failed:
        assert s["error_kind"] == "solver_error" and "numerical blow-up" in s["error"]
        assert not s["retryable"] and Path(s["log"]).exists()
        assert records(directory)[s["id"]]["attempts"] == 1  # not retried
    # Resuming does not rerun a final failure.
    before = records(directory)
    run_ecgi("campaign", "resume", directory, check=False)
    assert records(directory) == before


@pytest.mark.slow
def test_killed_driver_then_resume_finishes_every_sample_exactly_once(tmp_path):
    path = spec(tmp_path, samples=8, solver={"dx_mm": 3.0, "dt_ms": 0.05, "ionic_model": "mitchell_schaeffer", "duration_ms": 200})
    directory = tmp_path / "campaign"
    driver = subprocess.Popen([*ECGI, "campaign", "run", str(path)], cwd=REPO, env=clean_env(),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline:
        done = [r for r in records(directory).values() if r["state"] == "done"] if (directory / "records").exists() else []
        if len(done) >= 2:
            break
        time.sleep(0.5)
    os.kill(driver.pid, signal.SIGKILL)
    driver.wait()
    finished_before = {k: r["finished_at"] for k, r in records(directory).items() if r["state"] == "done"}
    assert 2 <= len(finished_before) < 8
    run_ecgi("campaign", "resume", directory, timeout=600)
    st = status(directory)
    assert st["done"] == 8
    samples = sorted(p.name for p in (directory / "samples").rglob("*.h5"))
    assert samples == sorted(f"t-s{i:06d}.h5" for i in range(8))  # each exactly once
    after = records(directory)
    for sample_id, finished_at in finished_before.items():
        assert after[sample_id]["finished_at"] == finished_at, f"{sample_id} was recomputed"
    # Whatever the dead driver had started is gone or finished by now.
    os.killpg(driver.pid, signal.SIGKILL) if _group_alive(driver.pid) else None


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except OSError:
        return False


def test_changed_spec_is_refused_and_named(tmp_path):
    path = spec(tmp_path, samples=2)
    run_ecgi("campaign", "run", path, timeout=600)
    changed = spec(tmp_path, samples=3)
    proc = run_ecgi("campaign", "run", changed, check=False)
    assert proc.returncode == 2
    assert "samples: 2 -> 3" in proc.stderr and "--force" in proc.stderr


def test_plan_is_deterministic_and_estimates_cost(tmp_path):
    path = spec(tmp_path)
    first = json.loads(run_ecgi("campaign", "plan", path, "--json").stdout)
    assert first["samples"] == 6 and first["folders"] == 2 and first["geometries"] == 3
    estimate = first["estimate"]
    assert estimate["core_hours"] > 0 and estimate["model"]["node_steps_per_s"] > 1e5
    assert not (tmp_path / "campaign").exists()  # a dry run
    from workflow.sampling import plan_samples
    from workflow.spec import load_spec

    a, b = plan_samples(load_spec(path)), plan_samples(load_spec(path))
    assert a == b


@pytest.mark.mpi
@pytest.mark.slow
def test_two_rank_simulations_match_single_rank_ones(tmp_path):
    """Multi-rank samples run under mpiexec from Parsl workers and give the
    same data as single-rank ones."""
    outputs = {}
    for ranks in (1, 2):
        base = tmp_path / f"r{ranks}"
        base.mkdir()
        path = spec(base, samples=2, resources={"executor": "local", "ranks_per_simulation": ranks})
        run_ecgi("campaign", "run", path, timeout=600)
        outputs[ranks] = base / "campaign"
        assert {r["ranks"] for r in records(outputs[ranks]).values()} == {ranks}
    for sample in ("t-s000000", "t-s000001"):
        paths = [next(outputs[r].rglob(f"{sample}.h5")) for r in (1, 2)]
        with h5py.File(paths[0]) as one, h5py.File(paths[1]) as two:
            for name in ("leads", "vm_sites", "act_sites"):
                np.testing.assert_allclose(two[name][:], one[name][:], atol=1e-3, err_msg=name)
