"""The baselines of ``ecgi evaluate``: ridge and site mean on data whose answer is known, the aligned
mean trace, and the JSON and report that put them next to the network."""
from __future__ import annotations

import json
import shutil

import h5py
import numpy as np
import pytest
import torch

from model.baselines import TemplateAccumulator, fit_ridge, predict_baselines
from model.config import config_from_dict
from model.data import load_manifest, read_split, scale_ecg, scale_ecg_batch
from model.evaluate import evaluate
from model.synthetic import action_potentials, write_synthetic_dataset
from model.train import train
from solver.common.errors import ConfigError
from solver.common.sites import SITE_GROUPS
from workflow.cli import main

METRIC_KEYS = {"act_mae_ms", "act_rmse_ms", "act_mae_ms_by_group", "act_mae_ms_by_condition", "vm_rmse_mv",
               "vm_rmse_mv_by_group", "vm_correlation", "apd90_mae_ms", "apd90_traces", "vm_act_mae_ms"}


def test_ridge_recovers_a_linear_map_and_picks_a_small_alpha():
    rng = np.random.default_rng(0)
    weights, bias = rng.normal(size=(40, 5)), rng.normal(size=5) * 10
    x = {name: rng.normal(size=(n, 40)) for name, n in (("train", 200), ("val", 50), ("test", 60))}
    y = {name: v @ weights + bias for name, v in x.items()}
    fit = fit_ridge(x["train"], y["train"], x["val"], y["val"])
    assert np.abs(fit.predict(x["test"]) - y["test"]).max() < 1e-3 * np.abs(y["test"]).max()
    assert fit.validation_mae < 1e-3 and fit.alpha < 1e-4 * np.linalg.norm(x["train"], 2) ** 2


def test_ridge_regularises_noise_and_ignores_unknown_targets():
    rng = np.random.default_rng(1)
    x_train, x_val = rng.normal(size=(30, 400)), rng.normal(size=(30, 400))
    y_train, y_val = rng.normal(size=(30, 3)), rng.normal(size=(30, 3))
    y_train[0, 0] = y_val[1, 1] = np.nan
    fit = fit_ridge(x_train, y_train, x_val, y_val)
    assert np.isfinite(fit.weights).all() and np.isfinite(fit.validation_mae)
    assert fit.alpha > 1e-2 * np.linalg.norm(x_train - x_train.mean(0), 2) ** 2  # pure noise: strong shrinkage wins


def test_batch_scaling_is_the_per_sample_scaling():
    ecg = np.random.default_rng(2).normal(size=(3, 50, 12)).astype(np.float32)
    mean, std = np.linspace(-1, 1, 12), np.linspace(0.5, 2, 12)
    for scaling in ("range", "standardise"):
        batch = scale_ecg_batch(ecg, scaling, mean, std)
        assert np.allclose(batch, np.stack([scale_ecg(e, scaling, mean, std) for e in ecg]), atol=1e-6)


def test_aligned_template_reproduces_shifted_copies_of_one_action_potential():
    rng = np.random.default_rng(3)
    t, n = 300, 8
    act = rng.integers(20, 150, size=(n, 75)).astype(np.float64)
    apd, amplitude = np.full((n, 75), 180.0), np.ones((n, 75))
    vm = action_potentials(act, apd, amplitude, t)
    act_scar = act.copy()
    act_scar[0, :5] = np.nan  # never activated: left out of the mean
    accumulator = TemplateAccumulator(75, t, 1.0)
    accumulator.add(vm[:4], act_scar[:4])
    accumulator.add(vm[4:], act_scar[4:])
    placed = accumulator.template().place(act).transpose(0, 2, 1)
    # exact wherever some training trace covered that time from activation; held at the edge value beyond
    tau = np.arange(t)[None, :, None] - act[:, None, :]
    covered = (tau >= -np.nanmin(act_scar, axis=0)) & (tau < t - np.nanmax(act_scar, axis=0))
    assert np.abs(placed - vm)[covered].max() < 1e-4 and covered.mean() > 0.5
    assert np.abs(placed - vm).max() < 1.0


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("baselines") / "data"
    write_synthetic_dataset(root, train=24, validation=8, test=8, samples=500, shard_size=16, seed=5)
    return root


def test_site_mean_is_exact_when_every_site_is_constant(data, tmp_path):
    constant = np.linspace(5.0, 80.0, 75).astype(np.float32)
    copy = tmp_path / "data"
    shutil.copytree(data, copy)
    for path in copy.glob("*/shard-*.h5"):
        with h5py.File(path, "r+") as f:
            f["act"][...] = np.broadcast_to(constant, f["act"].shape)
    manifest = load_manifest(copy)
    stats = (manifest.statistic("ecg_mean"), manifest.statistic("ecg_std"))
    predictions = predict_baselines(manifest, "test", scaling="range", ecg_stats=stats, with_vm=False)
    assert np.array_equal(predictions["site_mean"].act, np.broadcast_to(constant, (8, 75)))
    assert np.allclose(predictions["ridge"].act, constant, atol=1e-3)
    assert predictions["site_mean"].vm is None


def test_baselines_follow_the_split_order_and_beat_nothing_by_accident(data):
    manifest = load_manifest(data)
    stats = (manifest.statistic("ecg_mean"), manifest.statistic("ecg_std"))
    predictions = predict_baselines(manifest, "test", scaling="range", ecg_stats=stats, with_vm=True)
    truth = read_split(manifest, "test", with_vm=True)
    for name in ("site_mean", "ridge"):
        assert predictions[name].act.shape == truth.act.shape
        assert predictions[name].vm.shape == (8, 75, 500)
    ridge_mae = np.nanmean(np.abs(predictions["ridge"].act - truth.act))
    mean_mae = np.nanmean(np.abs(predictions["site_mean"].act - truth.act))
    assert ridge_mae < mean_mae  # the synthetic ECG is a linear function of the voltages


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    run = tmp_path_factory.mktemp("run") / "multitask"
    train(config_from_dict({"epochs": 1, "batch_size": 8, "tensorboard": False,
                            "network": {"architecture": "multitask"}}), data, run, progress=False)
    torch.set_num_threads(threads)
    return run / "last.pt"


def test_evaluate_json_and_report_carry_both_baselines(data, trained, capsys, tmp_path):
    code = main(["evaluate", str(trained), str(data), "--json", "--report", str(tmp_path / "report")])
    out, err = capsys.readouterr()
    assert code == 0, err
    metrics = json.loads(out)
    assert METRIC_KEYS <= set(metrics) and set(metrics["baselines"]) == {"site_mean", "ridge"}
    for name, baseline in metrics["baselines"].items():
        assert METRIC_KEYS <= set(baseline), name
        assert baseline["architecture"] == name
        assert set(baseline["act_mae_ms_by_group"]) == set(SITE_GROUPS)
        assert set(baseline["act_mae_ms_by_condition"]) == set(metrics["act_mae_ms_by_condition"])
        assert 0 < baseline["act_mae_ms"] < 200 and 0 < baseline["vm_rmse_mv"] < 135.5
        assert -1 <= baseline["vm_correlation"] <= 1 and baseline["apd90_mae_ms"] >= 0
        assert baseline["vm_act_mae_ms"] >= 0 and baseline["details"]["fitted_on"] == 24
    assert metrics["baselines"]["ridge"]["details"]["alpha"] > 0
    assert metrics["vm_act_mae_ms"] is not None
    md = (tmp_path / "report" / "report.md").read_text()
    assert "| metric | network | site_mean | ridge |" in md and "baseline ridge:" in md
    assert "<td>site_mean</td>" in (tmp_path / "report" / "report.html").read_text()

    code = main(["evaluate", str(trained), str(data), "--json", "--no-baselines"])
    assert code == 0 and "baselines" not in json.loads(capsys.readouterr().out)
    code = main(["evaluate", str(trained), str(data)])
    assert code == 0 and "baseline ridge" in capsys.readouterr().out


def test_ridge_network_is_the_ridge_of_its_features_and_joins_an_ensemble(data, trained, tmp_path):
    """``ridge_act`` trains in closed form into a checkpoint that evaluation and ensembles read like any other."""
    config = config_from_dict({"epochs": 5, "tensorboard": False, "network": {"architecture": "ridge_act"}})
    history = train(config, data, tmp_path / "ridge", progress=False)
    assert len(history) == 1 and history[0]["val_act_mae_ms"] > 0
    ridge = evaluate(tmp_path / "ridge" / "best.pt", data, baselines=False)

    # the same fit by hand: the scaled ECG averaged over pairs of samples (500 -> 250), alpha on validation
    manifest = load_manifest(data)
    stats = (manifest.statistic("ecg_mean"), manifest.statistic("ecg_std"))

    def features(split):
        arrays = read_split(manifest, split, with_vm=False)
        x = scale_ecg_batch(arrays.ecg, config.data.input_scaling, *stats).astype(np.float64)
        return x.reshape(len(x), 12, 250, 2).mean(axis=-1).reshape(len(x), -1), arrays.act

    fit = fit_ridge(*features("train"), *features("validation"))
    assert np.allclose(ridge.act_pred, fit.predict(features("test")[0]), atol=2e-3)
    assert history[0]["val_act_mae_ms"] == pytest.approx(fit.validation_mae, rel=1e-6)

    network = evaluate(trained, data, baselines=False)
    both = evaluate(trained, data, baselines=False, ensemble=[tmp_path / "ridge" / "best.pt"])
    assert np.allclose(both.act_pred, (network.act_pred + ridge.act_pred) / 2, atol=1e-4)


def test_ridge_network_refuses_more_than_one_process(data, tmp_path, monkeypatch):
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    config = config_from_dict({"tensorboard": False, "network": {"architecture": "ridge_act"}})
    with pytest.raises(ConfigError, match="one process"):
        train(config, data, tmp_path / "ridge", progress=False)
    assert not (tmp_path / "ridge").exists()
