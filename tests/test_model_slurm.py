"""Multi-process training through the real local SLURM with slurm/train.sbatch."""
from __future__ import annotations

import json
import re

import pytest
import torch

from model.synthetic import write_synthetic_dataset
from tests.conftest import run_ecgi

pytestmark = [pytest.mark.slurm]


def test_two_task_gloo_training_through_sbatch(slurm_cluster, tmp_path):
    data = tmp_path / "data"
    write_synthetic_dataset(data, train=64, validation=16, test=16, seed=0)
    run_dir = tmp_path / "run"
    config = tmp_path / "train.yaml"
    config.write_text("epochs: 2\nbatch_size: 16\nnetwork: {architecture: reference_act}\n"
                      "data: {num_workers: 0}\ntensorboard: false\n")
    env = {**slurm_cluster.env, "WORKER_INIT": slurm_cluster.worker_init}
    proc = run_ecgi("train", config, "--data", data, "--output", run_dir, "--submit", "--nodes", "1",
                    "--gpus-per-node", "0", "--tasks-per-node", "2", "--cpus-per-task", "1",
                    "--time", "00:10:00", "--partition", slurm_cluster.partition, env=env)
    job = re.search(r"submitted job (\d+)", proc.stdout).group(1)
    assert slurm_cluster.wait(job, timeout=300) == "COMPLETED", (run_dir / f"slurm-{job}.out").read_text()
    log = (run_dir / f"slurm-{job}.out").read_text()
    assert "2 process(es) on cpu" in log
    state = torch.load(run_dir / "last.pt", map_location="cpu", weights_only=False)
    assert len(state["rng"]) == 2  # written by a 2-rank job
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert len(metrics) == 2
