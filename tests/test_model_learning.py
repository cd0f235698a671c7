"""Learning is real: the ECG determines the targets, and a network learns the mapping, not the samples."""
from __future__ import annotations

import json
import shutil

import h5py
import numpy as np
import pytest
import torch

from model.checkpoint import load_checkpoint, save_checkpoint
from model.config import config_from_dict
from model.evaluate import evaluate
from model.network import build_network
from model.synthetic import write_synthetic_dataset
from model.train import train

PLAIN = {"network": {"dropout": 0.0}, "augment": {"max_onset_shift_ms": 0}, "tensorboard": False}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Two cores shared with other test runs: more threads than free cores slows torch down several-fold."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _mean_predictor_mae(root, split: str) -> float:
    """Error of always answering the training mean: what a network that learnt nothing achieves."""
    manifest = json.loads((root / "manifest.json").read_text())
    act = np.concatenate([h5py.File(root / e["file"])["act"][:] for e in manifest["splits"][split]])
    return float(np.abs(act - np.asarray(manifest["statistics"]["act_mean"])).mean())


def test_network_overfits_a_small_set_to_near_zero_error(tmp_path):
    root = tmp_path / "data"
    write_synthetic_dataset(root, train=8, validation=2, test=2, samples=128, seed=1)
    config = config_from_dict({**PLAIN, "epochs": 120, "batch_size": 8})
    history = train(config, root, tmp_path / "run", progress=False)
    mae = evaluate(tmp_path / "run" / "last.pt", root, split="train").metrics()["act_mae_ms"]
    assert history[-1]["train_loss"] < 0.01
    assert mae < 1.0 and mae < 0.1 * _mean_predictor_mae(root, "train")


def test_shuffled_labels_do_not_generalise(tmp_path):
    real = tmp_path / "real"
    write_synthetic_dataset(real, train=96, validation=32, test=2, samples=200, seed=2)
    shuffled = tmp_path / "shuffled"
    shutil.copytree(real, shuffled)
    files = [shuffled / e["file"] for e in json.loads((real / "manifest.json").read_text())["splits"]["train"]]
    act = np.concatenate([h5py.File(f)["act"][:] for f in files])
    act = act[np.random.default_rng(0).permutation(len(act))]  # same targets, no longer those of the ECG
    start = 0
    for f in files:
        with h5py.File(f, "r+") as h:
            h["act"][:] = act[start:start + len(h["act"])]
            start += len(h["act"])

    config = config_from_dict({**PLAIN, "epochs": 8, "batch_size": 16})
    real_mae = train(config, real, tmp_path / "run-real", progress=False)[-1]["val_act_mae_ms"]
    shuffled_mae = train(config, shuffled, tmp_path / "run-shuffled", progress=False)[-1]["val_act_mae_ms"]
    baseline = _mean_predictor_mae(real, "validation")
    assert real_mae < 0.7 * baseline
    assert shuffled_mae > 0.9 * baseline
    assert real_mae < 0.7 * shuffled_mae


def _untrained(checkpoint, path):
    """``checkpoint`` with the weights of a freshly initialised network of its architecture."""
    state = load_checkpoint(checkpoint)
    network = state["config"]["network"]
    torch.manual_seed(0)
    fresh = build_network(network["architecture"], network["dropout"], network["softargmax_temperature"]).state_dict()
    # template_vm's action-potential template is data, not a weight: kept.
    state["model"] = {**fresh, **{k: v for k, v in state["model"].items() if k.startswith("renderer.")}}
    save_checkpoint(path, state)
    return path


@pytest.mark.parametrize("architecture", ["reference_vm", "multitask", "consistent"])
def test_voltage_networks_train_and_beat_the_site_mean_baseline(tmp_path, architecture):
    root = tmp_path / "data"
    write_synthetic_dataset(root, train=48, validation=2, test=8, samples=96, seed=5)
    config = config_from_dict({**PLAIN, "epochs": 20, "batch_size": 4, "network": {"architecture": architecture}})
    history = train(config, root, tmp_path / "run", progress=False)
    assert history[-1]["train_loss"] < 0.6 * history[0]["train_loss"]
    assert all(np.isfinite(r["val_vm_rmse_mv"]) and np.isfinite(r["val_act_mae_ms"]) for r in history)
    metrics = evaluate(tmp_path / "run" / "last.pt", root).metrics()
    site_mean = metrics["baselines"]["site_mean"]
    assert metrics["architecture"] == architecture
    # Measured (test split, 8 samples): activation MAE 0.49-0.56 of the
    # site-mean baseline's for all three; Vm RMSE 0.6 of it for reference_vm,
    # 0.76 for multitask, and 1.1 for consistent, whose voltage head has not
    # beaten the site-mean traces after 20 (nor 40) epochs of this set.
    assert metrics["act_mae_ms"] <= 0.8 * site_mean["act_mae_ms"]
    if architecture == "reference_vm":
        assert metrics["vm_rmse_mv"] <= 0.8 * site_mean["vm_rmse_mv"]
    # The same criteria reject a network that learnt nothing.
    untrained = evaluate(_untrained(tmp_path / "run" / "last.pt", tmp_path / "untrained.pt"), root).metrics()
    assert untrained["act_mae_ms"] > 0.8 * site_mean["act_mae_ms"]
    assert untrained["vm_rmse_mv"] > 0.8 * site_mean["vm_rmse_mv"]
    assert metrics["vm_rmse_mv"] < 0.5 * untrained["vm_rmse_mv"]


def test_template_network_traces_rise_at_its_times_and_last_its_apds(tmp_path):
    """template_vm on windows long enough to repolarise (400 ms): its traces'
    activation is its activation head's, and their APD90 beats the baselines'
    mean action potential by far (measured: 5.1 against 31.6 ms)."""
    root = tmp_path / "data"
    write_synthetic_dataset(root, train=48, validation=2, test=8, samples=400, seed=5)
    config = config_from_dict({**PLAIN, "epochs": 20, "batch_size": 4, "network": {"architecture": "template_vm"}})
    train(config, root, tmp_path / "run", progress=False)
    metrics = evaluate(tmp_path / "run" / "last.pt", root).metrics()
    site_mean, ridge = metrics["baselines"]["site_mean"], metrics["baselines"]["ridge"]
    assert metrics["act_mae_ms"] <= 0.8 * site_mean["act_mae_ms"]
    assert metrics["vm_act_mae_ms"] == pytest.approx(metrics["act_mae_ms"], rel=0.05)
    assert metrics["apd90_mae_ms"] <= 0.7 * min(site_mean["apd90_mae_ms"], ridge["apd90_mae_ms"])
    assert metrics["vm_correlation"] > site_mean["vm_correlation"]
    untrained = evaluate(_untrained(tmp_path / "run" / "last.pt", tmp_path / "untrained.pt"), root).metrics()
    assert untrained["apd90_mae_ms"] > 0.7 * site_mean["apd90_mae_ms"]
