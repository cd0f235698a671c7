"""Two real processes with gloo DDP train exactly like one process with the same global batch."""
from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
import yaml

from model.config import config_from_dict
from model.synthetic import write_synthetic_dataset
from model.train import StepInfo, train

# No dropout or augmentation, so both runs see the same function.  A small learning rate keeps
# Adam's first, sign-like steps from amplifying rounding differences between the reduction orders.
CONFIG = {
    "epochs": 2, "batch_size": 8, "seed": 7,
    "network": {"architecture": "reference_act", "dropout": 0.0},
    "augment": {"max_onset_shift_ms": 0},
    "optimiser": {"lr": 1e-4},
    "tensorboard": False,
}
SAMPLES = 32


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _parameter_digest(model: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for p in model.parameters():
        digest.update(p.detach().cpu().numpy().tobytes())
    return digest.hexdigest()


def _worker(rank: int, world_size: int, port: int, data: str, out: str) -> None:
    """One DDP rank: the environment torchrun would set, then the ordinary training entry point."""
    torch.set_num_threads(1)
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world_size),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    steps: list[dict] = []

    def observe(info: StepInfo) -> None:
        steps.append({"epoch": info.epoch, "indices": info.indices.tolist(), "params": _parameter_digest(info.model)})

    train(config_from_dict(CONFIG), data, f"{out}/run", observer=observe, progress=False)
    with open(f"{out}/rank{rank}.json", "w") as f:
        json.dump(steps, f)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp") / "data"
    write_synthetic_dataset(root, train=SAMPLES, validation=6, test=2, samples=128, shard_size=12)
    return root


@pytest.fixture(scope="module")
def ddp_run(dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp-run")
    mp.spawn(_worker, args=(2, _free_port(), str(dataset), str(out)), nprocs=2, join=True)
    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]
    return out, ranks


def test_ranks_see_disjoint_samples_covering_each_epoch(ddp_run):
    _, (rank0, rank1) = ddp_run
    assert len(rank0) == len(rank1) == 2 * SAMPLES // 8
    for epoch in (0, 1):
        seen = [[i for step in r if step["epoch"] == epoch for i in step["indices"]] for r in (rank0, rank1)]
        assert len(seen[0]) == len(seen[1]) == SAMPLES // 2
        assert not set(seen[0]) & set(seen[1])
        assert sorted(seen[0] + seen[1]) == list(range(SAMPLES))
    orders = [[s["indices"] for s in rank0 if s["epoch"] == e] for e in (0, 1)]
    assert orders[0] != orders[1]  # reshuffled every epoch


def test_parameters_are_identical_on_all_ranks_after_every_step(ddp_run):
    _, (rank0, rank1) = ddp_run
    assert [s["params"] for s in rank0] == [s["params"] for s in rank1]
    assert len({s["params"] for s in rank0}) == len(rank0)  # and they do change


def test_two_processes_equal_one_process_with_the_same_global_batch(ddp_run, dataset, tmp_path):
    out, (rank0, _) = ddp_run
    single_steps: list[list[int]] = []
    history = train(config_from_dict(CONFIG), dataset, tmp_path / "single", progress=False,
                    observer=lambda info: single_steps.append(info.indices.tolist()))
    # Step k of the single process used exactly the union of both ranks' k-th local batches.
    ddp_batches = json.loads((out / "rank1.json").read_text())
    for single, r0, r1 in zip(single_steps, rank0, ddp_batches):
        assert sorted(single) == sorted(r0["indices"] + r1["indices"])
    ddp = torch.load(out / "run" / "last.pt", weights_only=True)
    one = torch.load(tmp_path / "single" / "last.pt", weights_only=True)
    assert ddp["epoch"] == one["epoch"] == 2 and ddp["world_size"] == 2
    for name, value in one["model"].items():
        torch.testing.assert_close(ddp["model"][name], value, rtol=1e-4, atol=1e-5, msg=name)
    ddp_history = json.loads((out / "run" / "metrics.json").read_text())
    assert [round(r["train_loss"], 3) for r in ddp_history] == [round(r["train_loss"], 3) for r in history]


def test_cli_under_torchrun_trains_with_two_ranks_and_exits_cleanly(dataset, tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({**CONFIG, "epochs": 1}))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(_free_port()),
         "-m", "workflow.cli", "train", str(config), "--data", str(dataset), "--output", str(tmp_path / "run")],
        capture_output=True, text=True, timeout=300, env=env, cwd=Path(__file__).resolve().parent.parent,
    )
    assert proc.returncode == 0, proc.stderr
    assert "2 process(es) on cpu" in proc.stderr and proc.stderr.count("epoch 1/1") == 1  # rank 0 reports
    state = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert state["world_size"] == 2 and len(state["rng"]) == 2
