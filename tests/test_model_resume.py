"""A killed run resumed with --resume ends with the same weights as an uninterrupted one."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from model.synthetic import write_synthetic_dataset
from workflow.cli import main

REPO = Path(__file__).resolve().parent.parent
# Dropout and augmentation stay on: resuming must restore the RNG and the epoch-keyed shifts too.
CONFIG = {
    "epochs": 5, "batch_size": 8, "seed": 11, "deterministic": True, "tensorboard": False,
    "network": {"architecture": "reference_act", "dropout": 0.3},
    "augment": {"max_onset_shift_ms": 15},
    "optimiser": {"schedule": "cosine"},
}


def ecgi(*args: str, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "workflow.cli", *map(str, args)], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def finish(proc: subprocess.Popen) -> subprocess.CompletedProcess:
    out, err = proc.communicate(timeout=300)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume")
    write_synthetic_dataset(root / "data", train=48, validation=8, test=2, samples=128, shard_size=16)
    (root / "config.yaml").write_text(yaml.safe_dump(CONFIG))
    return root


@pytest.fixture(scope="module")
def straight(setup):
    """An uninterrupted run of CONFIG: the reference, and a finished run to refuse or damage."""
    run = setup / "straight"
    proc = finish(ecgi("train", setup / "config.yaml", "--data", setup / "data", "--output", run, "--quiet"))
    assert proc.returncode == 0, proc.stderr
    assert (run / "last.pt").is_file()
    return run


def test_killed_and_resumed_run_matches_an_uninterrupted_one(setup, straight):
    data, config = setup / "data", setup / "config.yaml"
    victim = ecgi("train", config, "--data", data, "--output", setup / "killed", "--quiet")
    checkpoint = setup / "killed" / "last.pt"
    deadline = time.monotonic() + 240
    while not checkpoint.exists() and victim.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert victim.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    interrupted_at = torch.load(checkpoint, weights_only=True)["epoch"]
    assert 1 <= interrupted_at < CONFIG["epochs"]

    resumed = finish(ecgi("train", config, "--data", data, "--output", setup / "killed", "--resume"))
    assert resumed.returncode == 0, resumed.stderr
    assert f"after epoch {interrupted_at}" in resumed.stderr

    straight = torch.load(straight / "last.pt", weights_only=True)
    killed = torch.load(checkpoint, weights_only=True)
    assert straight["epoch"] == killed["epoch"] == CONFIG["epochs"]
    for name, value in straight["model"].items():
        assert torch.equal(killed["model"][name], value), name
    assert [r["epoch"] for r in killed["history"]] == list(range(1, CONFIG["epochs"] + 1))
    assert [r["train_loss"] for r in killed["history"]] == [r["train_loss"] for r in straight["history"]]
    metrics = (setup / "killed" / "metrics.csv").read_text().splitlines()
    assert len(metrics) == CONFIG["epochs"] + 1 and metrics[0].startswith("epoch,train_loss,val_loss")


def test_an_existing_run_is_not_overwritten_without_resume(setup, straight, capsys):
    before = (straight / "last.pt").read_bytes()
    code = main(["train", str(setup / "config.yaml"), "--data", str(setup / "data"), "--output", str(straight)])
    err = capsys.readouterr().err
    assert code == 2 and "already holds a run (last.pt); pass --resume" in err and "Traceback" not in err
    assert (straight / "last.pt").read_bytes() == before


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_corrupt_checkpoint_gives_a_clear_error(setup, straight, tmp_path, capsys, damage):
    source = straight / "last.pt"
    run = tmp_path / "run"
    run.mkdir()
    blob = source.read_bytes()
    (run / "last.pt").write_bytes(blob[: len(blob) // 2] if damage == "truncate" else b"\x00garbage" * 100)
    code = main(["train", str(setup / "config.yaml"), "--data", str(setup / "data"), "--output", str(run), "--resume"])
    err = capsys.readouterr().err
    assert code == 2 and "last.pt: not a readable checkpoint (truncated or corrupt?)" in err
