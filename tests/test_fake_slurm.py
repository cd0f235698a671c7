"""The SLURM paths of ecgi against a fake scheduler (tests/fake_slurm.py):
fast, no root, always run; the same paths on a real SLURM are in
test_campaign_slurm.py and test_model_slurm.py."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from tests import fake_slurm
from tests.conftest import clean_env, run_ecgi, submit_two_task_training


@pytest.fixture
def fake_cluster(tmp_path):
    env = {**clean_env(), **fake_slurm.install(tmp_path / "bin", tmp_path / "slurm-state")}
    yield env
    for job in fake_slurm_jobs(env):  # nothing left running
        assert not job.alive


def fake_slurm_jobs(env) -> list:
    import os

    previous = os.environ.get("FAKE_SLURM_DIR")
    os.environ["FAKE_SLURM_DIR"] = env["FAKE_SLURM_DIR"]
    try:
        return list(fake_slurm.jobs().values())
    finally:
        if previous is None:
            del os.environ["FAKE_SLURM_DIR"]
        else:
            os.environ["FAKE_SLURM_DIR"] = previous


def calls(env, command: str) -> list[list[str]]:
    lines = (Path(env["FAKE_SLURM_DIR"]) / "calls.log").read_text().splitlines()
    return [entry["argv"] for entry in map(json.loads, lines) if entry["command"] == command]


def test_campaign_runs_in_blocks_of_the_fake_cluster(fake_cluster, tmp_path):
    spec = {
        "name": "fake", "output_dir": str(tmp_path / "campaign"), "samples": 3, "samples_per_folder": 4,
        "seed": 5, "geometry": {"count": 3},
        "parameters": {"condition": {"kind": "choice", "values": ["normal", "lbbb", "rbbb"]}},
        "solver": {"dx_mm": 3.0, "dt_ms": 0.05, "ionic_model": "mitchell_schaeffer", "duration_ms": 40},
        "splits": {"train": 0.34, "validation": 0.33, "test": 0.33},
        "resources": {"executor": "slurm", "ranks_per_simulation": 1, "retries": 1,
                      "slurm": {"partition": "debug", "nodes_per_block": 1, "cores_per_node": 2, "max_blocks": 1,
                                "walltime": "00:10:00", "driver_address": "127.0.0.1"}},
    }
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    run_ecgi("campaign", "run", path, env=fake_cluster, timeout=600)
    status = json.loads(run_ecgi("campaign", "status", tmp_path / "campaign", "--json", env=fake_cluster).stdout)
    assert (status["done"], status["failed"]) == (3, 0)
    submitted = calls(fake_cluster, "sbatch")
    assert len(submitted) == 1  # one block held all three samples
    script = Path(submitted[0][-1]).read_text()
    assert "#SBATCH --partition=debug" in script and "#SBATCH --time=10" in script
    assert "export OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-1}" in script
    assert calls(fake_cluster, "srun")  # the workers started as a job step
    assert calls(fake_cluster, "scancel")  # the driver gave the block back at the end
    deadline = time.time() + 30
    while any(job.alive for job in fake_slurm_jobs(fake_cluster)) and time.time() < deadline:
        time.sleep(0.2)


def test_training_submitted_with_sbatch_runs_two_gloo_processes(fake_cluster, tmp_path):
    env = {**fake_cluster, "WORKER_INIT": f"export PATH={Path(sys.executable).parent}:$PATH"}
    job_id, run_dir = submit_two_task_training(tmp_path, env, "debug")
    job = next(j for j in fake_slurm_jobs(fake_cluster) if j.job_id == int(job_id))
    deadline = time.time() + 300
    while job.alive and time.time() < deadline:
        time.sleep(0.5)
    log = (run_dir / f"slurm-{job_id}.out").read_text()
    assert not job.alive, log
    assert "2 process(es) on cpu" in log
    state = torch.load(run_dir / "last.pt", map_location="cpu", weights_only=False)
    assert len(state["rng"]) == 2  # written by a 2-rank job
    argv = calls(fake_cluster, "sbatch")[0]
    assert "--ntasks-per-node=2" in argv and "--partition=debug" in argv and argv[-1] == "--resume"
