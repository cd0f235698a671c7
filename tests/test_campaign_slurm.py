"""Campaigns through a real SLURM (the private single-node cluster of
tests/slurm_cluster.py) with Parsl's SlurmProvider."""
from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import ECGI, REPO, run_ecgi

pytestmark = [pytest.mark.slurm, pytest.mark.slow]


def slurm_spec(tmp_path: Path, cluster, samples: int, ranks: int = 1) -> Path:
    data = {
        "name": "s", "output_dir": str(tmp_path / "campaign"), "samples": samples, "samples_per_folder": 4,
        "seed": 5, "geometry": {"count": 3},
        "parameters": {"condition": {"kind": "choice", "values": ["normal", "lbbb", "rbbb"]}},
        "solver": {"dx_mm": 3.0, "dt_ms": 0.05, "ionic_model": "mitchell_schaeffer", "duration_ms": 200},
        "splits": {"train": 0.34, "validation": 0.33, "test": 0.33},
        "resources": {
            "executor": "slurm", "ranks_per_simulation": ranks, "retries": 2,
            "slurm": {"partition": cluster.partition, "nodes_per_block": 1, "cores_per_node": 2,
                      "max_blocks": 1, "walltime": "00:10:00", "worker_init": cluster.worker_init,
                      "driver_address": "127.0.0.1"},
        },
    }
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def campaign_status(directory: Path, env) -> dict:
    return json.loads(run_ecgi("campaign", "status", directory, "--json", env=env).stdout)


def test_campaign_runs_as_slurm_jobs(slurm_cluster, tmp_path):
    path = slurm_spec(tmp_path, slurm_cluster, samples=4)
    env = {**slurm_cluster.env}
    run_ecgi("campaign", "run", path, env=env, timeout=600)
    status = campaign_status(tmp_path / "campaign", env)
    assert status["done"] == 4
    jobs = slurm_cluster.jobcomp()
    assert any(job.get("Name", "").startswith("parsl.simulations.block") for job in jobs.values()), jobs
    hosts = {json.loads(p.read_text())["host"] for p in (tmp_path / "campaign" / "records").rglob("*.json")}
    assert hosts == {slurm_cluster.hostname}


def test_scancel_of_the_block_then_resume_finishes_the_campaign(slurm_cluster, tmp_path):
    path = slurm_spec(tmp_path, slurm_cluster, samples=8)
    directory = tmp_path / "campaign"
    env = {**slurm_cluster.env}
    driver = subprocess.Popen([*ECGI, "campaign", "run", str(path)], cwd=REPO, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    block = None
    while time.time() < deadline:
        records = [json.loads(p.read_text()) for p in (directory / "records").rglob("*.json")] if (directory / "records").exists() else []
        running = [j for j in slurm_cluster.squeue() if j["state"] == "RUNNING" and j["name"].startswith("parsl")]
        if any(r["state"] == "done" for r in records) and running:
            block = running[0]["job_id"]
            break
        time.sleep(0.5)
    assert block is not None, "the campaign never got a running block"
    slurm_cluster.scancel(block)
    assert slurm_cluster.wait(block, timeout=60) == "CANCELLED"
    driver.wait(timeout=600)
    run_ecgi("campaign", "resume", directory, env=env, timeout=600)
    status = campaign_status(directory, env)
    assert (status["done"], status["failed"], status["pending"]) == (8, 0, 0)


@pytest.mark.mpi
def test_two_rank_simulations_run_under_parsl_mpi_executor(slurm_cluster, tmp_path):
    """Multi-rank samples on SLURM: MPIExecutor hands each task a node, where
    Open MPI's mpiexec starts its ranks inside the block's allocation."""
    path = slurm_spec(tmp_path, slurm_cluster, samples=2, ranks=2)
    env = {**slurm_cluster.env}
    run_ecgi("campaign", "run", path, env=env, timeout=600)
    directory = tmp_path / "campaign"
    assert campaign_status(directory, env)["done"] == 2
    ranks = {json.loads(p.read_text())["ranks"] for p in (directory / "records").rglob("*.json")}
    assert ranks == {2}
