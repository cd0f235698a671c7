"""Multi-process training through the real local SLURM with slurm/train.sbatch."""
from __future__ import annotations

import json

import pytest
import torch

from tests.conftest import submit_two_task_training

pytestmark = [pytest.mark.slurm]


def test_two_task_gloo_training_through_sbatch(slurm_cluster, tmp_path):
    env = {**slurm_cluster.env, "WORKER_INIT": slurm_cluster.worker_init}
    job, run_dir = submit_two_task_training(tmp_path, env, slurm_cluster.partition)
    assert slurm_cluster.wait(job, timeout=300) == "COMPLETED", (run_dir / f"slurm-{job}.out").read_text()
    log = (run_dir / f"slurm-{job}.out").read_text()
    assert "2 process(es) on cpu" in log
    state = torch.load(run_dir / "last.pt", map_location="cpu", weights_only=False)
    assert len(state["rng"]) == 2  # written by a 2-rank job
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert len(metrics) == 2
