"""``ecgi evaluate`` and ``ecgi predict`` on synthetic data and on ECG files in every supported format,
the errors users see for bad inputs, and ``ecgi train --submit``."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from model.checkpoint import load_checkpoint, save_checkpoint
from model.config import config_from_dict
from model.evaluate import evaluate
from model.network import build_network
from model.predict import EcgWarning, predict, read_ecg
from model.synthetic import write_synthetic_dataset
from model.train import train
from solver.common.errors import ConfigError
from solver.common.sites import LEAD_NAMES, SITE_GROUPS
from workflow.cli import main

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A data set and two trained networks: activation only (20 epochs, enough to
    beat the site-mean baseline clearly), and both heads (1 epoch); plus the
    activation network's architecture with freshly initialised weights."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("cli")
    write_synthetic_dataset(root / "data", train=48, validation=4, test=6, samples=500, seed=4)
    runs = {}
    for architecture, epochs in (("reference_act", 20), ("multitask", 1)):
        config = config_from_dict({"epochs": epochs, "batch_size": 8, "tensorboard": False,
                                   "augment": {"max_onset_shift_ms": 0},
                                   "network": {"architecture": architecture, "dropout": 0.0}})
        train(config, root / "data", root / architecture, progress=False)
        runs[architecture] = root / architecture / "last.pt"
    state = load_checkpoint(runs["reference_act"])
    torch.manual_seed(0)
    state["model"] = build_network("reference_act", 0.0, state["config"]["network"]["softargmax_temperature"]).state_dict()
    save_checkpoint(root / "untrained.pt", state)
    runs["untrained"] = root / "untrained.pt"
    torch.set_num_threads(threads)
    with h5py.File(root / "data" / "test" / "shard-00000.h5") as f:
        ecg = f["ecg"][0].astype(np.float64)
    return root, runs, ecg


def run_cli(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def write_csv(path: Path, columns: dict[str, np.ndarray]) -> Path:
    names = list(columns)
    rows = np.stack([columns[n] for n in names], axis=1)
    path.write_text(",".join(names) + "\n" + "\n".join(",".join(f"{v:.6g}" for v in row) for row in rows) + "\n")
    return path


def write_wfdb(directory: Path, name: str, ecg: np.ndarray, fs: float, fmt: int, gain: float, baseline: int,
               units: str = "mV", leads=LEAD_NAMES) -> Path:
    """A WFDB record: .hea header and one .dat with all signals interleaved."""
    digital = np.round(ecg * gain).astype(np.int64) + baseline
    header = [f"{name} {len(leads)} {fs:g} {len(ecg)}"]
    header += [f"{name}.dat {fmt} {gain:g}({baseline})/{units} 12 0 {digital[0, j]} 0 0 {lead}" for j, lead in enumerate(leads)]
    (directory / f"{name}.hea").write_text("\n".join(header) + "\n")
    flat = digital.reshape(-1)
    if fmt == 16:
        data = flat.astype("<i2").tobytes()
    else:
        flat = np.concatenate([flat, [0]]) if len(flat) % 2 else flat
        values = flat & 0xFFF
        a, b = values[0::2], values[1::2]
        data = np.stack([a & 0xFF, ((a >> 8) & 0x0F) | ((b >> 8) << 4), b & 0xFF], axis=1).astype(np.uint8).tobytes()
    (directory / f"{name}.dat").write_bytes(data)
    return directory / f"{name}.hea"


def test_ecgi_lists_the_network_commands():
    proc = subprocess.run([sys.executable, "-m", "workflow.cli", "--help"], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0 and all(c in proc.stdout for c in ("train", "evaluate", "predict"))
    assert subprocess.run(["bash", "-n", str(REPO / "slurm" / "train.sbatch")]).returncode == 0


def test_evaluate_json_of_an_activation_network(trained, capsys):
    root, runs, _ = trained
    code, out, _ = run_cli(capsys, "evaluate", runs["reference_act"], root / "data", "--json")
    assert code == 0
    metrics = json.loads(out)
    assert metrics["samples"] == 6 and metrics["split"] == "test"
    assert metrics["act_rmse_ms"] >= metrics["act_mae_ms"] > 0
    # The baselines on the same split: the trained network beats always
    # answering each site's training mean clearly (measured: 0.6 of its MAE);
    # a network with its initial weights does not.
    site_mean = metrics["baselines"]["site_mean"]
    assert set(metrics["baselines"]) == {"site_mean", "ridge"}
    assert metrics["act_mae_ms"] <= 0.8 * site_mean["act_mae_ms"]
    code, out, _ = run_cli(capsys, "evaluate", runs["untrained"], root / "data", "--json")
    untrained = json.loads(out)
    assert code == 0 and untrained["baselines"]["site_mean"] == site_mean
    assert untrained["act_mae_ms"] > 0.8 * site_mean["act_mae_ms"]
    assert set(metrics["act_mae_ms_by_group"]) == set(SITE_GROUPS)
    # The overall MAE is the mean over all 75 sites of the per-group ones.
    sizes = {group: len(sites) for group, sites in SITE_GROUPS.items()}
    by_group = sum(metrics["act_mae_ms_by_group"][g] * n for g, n in sizes.items()) / sum(sizes.values())
    assert by_group == pytest.approx(metrics["act_mae_ms"], rel=1e-5)
    assert set(metrics["act_mae_ms_by_condition"]) <= {"normal", "lbbb", "rbbb", "scar", "ikr_block"}
    assert metrics["vm_rmse_mv"] is None and metrics["apd90_mae_ms"] is None


def test_evaluate_report_of_a_two_headed_network(trained, capsys, tmp_path):
    root, runs, _ = trained
    code, out, err = run_cli(capsys, "evaluate", runs["multitask"], root / "data", "--json", "--report", tmp_path / "report",
                             "--sites", "AHA01,RV05")
    assert code == 0, err
    metrics = json.loads(out)
    assert -1 <= metrics["vm_correlation"] <= 1
    assert set(metrics["vm_rmse_mv_by_group"]) == set(SITE_GROUPS)
    # A one-epoch network: no learning claim here (test_model_learning makes
    # it), but the report's numbers are the library's evaluation of the same
    # checkpoint, and the overall RMSE is the quadratic mean of the groups'.
    library = evaluate(runs["multitask"], root / "data").metrics()
    for key in ("vm_rmse_mv", "act_mae_ms", "vm_correlation", "apd90_mae_ms"):
        assert metrics[key] == pytest.approx(library[key], rel=1e-6, nan_ok=True), key
    assert metrics["baselines"]["site_mean"]["vm_rmse_mv"] == pytest.approx(
        library["baselines"]["site_mean"]["vm_rmse_mv"], rel=1e-6)
    sizes = {group: len(sites) for group, sites in SITE_GROUPS.items()}
    mean_square = sum(metrics["vm_rmse_mv_by_group"][g] ** 2 * n for g, n in sizes.items()) / sum(sizes.values())
    assert mean_square ** 0.5 == pytest.approx(metrics["vm_rmse_mv"], rel=1e-5)
    assert metrics["apd90_traces"] is not None
    for name in ("report.md", "report.html", "scatter.png", "bullseye.png", "errors.png", "traces.png"):
        assert (tmp_path / "report" / name).stat().st_size > 0, name
    assert "![AHA bullseyes](bullseye.png)" in (tmp_path / "report" / "report.md").read_text()
    assert "<img src=\"traces.png\"" in (tmp_path / "report" / "report.html").read_text()


def test_evaluate_an_ensemble(trained, capsys, tmp_path):
    """The members' mean of the outputs they share, and no ensemble of networks that read different inputs."""
    root, runs, _ = trained
    one, two = (evaluate(runs[name], root / "data", baselines=False) for name in ("reference_act", "multitask"))
    both = evaluate(runs["reference_act"], root / "data", baselines=False, ensemble=[runs["multitask"]])
    np.testing.assert_allclose(both.act_pred, (one.act_pred + two.act_pred) / 2, rtol=1e-5, atol=1e-4)
    assert not np.allclose(one.act_pred, two.act_pred, atol=1e-2)
    assert both.architecture == "ensemble of 2 (reference_act, multitask)" and not both.has_vm
    assert both.metrics()["details"]["ensemble"] == [str(runs["reference_act"]), str(runs["multitask"])]
    # Each member reads the ECG with its own scaling (a range-scaled network beside the standardised ridge).
    state = load_checkpoint(runs["multitask"])
    state["inputs"]["scaling"] = "standardise"
    save_checkpoint(tmp_path / "standardised.pt", state)
    alone = evaluate(tmp_path / "standardised.pt", root / "data", baselines=False)
    mixed = evaluate(runs["reference_act"], root / "data", baselines=False, ensemble=[tmp_path / "standardised.pt"])
    np.testing.assert_allclose(mixed.act_pred, (one.act_pred + alone.act_pred) / 2, rtol=1e-5, atol=1e-4)
    assert not np.allclose(alone.act_pred, two.act_pred, atol=1e-2)
    # ... but all must read the same trace.
    state["inputs"]["samples"] = 2 * state["inputs"]["samples"]
    save_checkpoint(tmp_path / "longer.pt", state)
    for command in ("evaluate", "predict"):
        target = root / "data" if command == "evaluate" else tmp_path / "none.csv"
        code, _, err = run_cli(capsys, command, runs["reference_act"], target, "--ensemble", tmp_path / "longer.pt")
        assert code == 2 and "must read the same trace" in err and len(err.strip().splitlines()) == 1, err


def test_evaluate_text_output_and_unknown_split(trained, capsys):
    root, runs, _ = trained
    code, out, _ = run_cli(capsys, "evaluate", runs["reference_act"], root / "data", "--split", "validation")
    assert code == 0 and "activation MAE" in out and "by site group: AHA" in out
    code, _, err = run_cli(capsys, "evaluate", runs["reference_act"], root / "data", "--split", "holdout")
    assert code == 2 and "no split 'holdout'" in err


def test_predict_csv_writes_hdf5_table_and_figure(trained, capsys, tmp_path):
    root, runs, ecg = trained
    # 500 Hz, lead order shuffled, names in other cases, time in seconds.
    columns = {"time": np.arange(250) / 500.0}
    for j in reversed(range(12)):
        columns[LEAD_NAMES[j].upper() if j % 2 else LEAD_NAMES[j].lower()] = ecg[::2, j]
    csv = write_csv(tmp_path / "beat.csv", columns)
    out = tmp_path / "beat.h5"
    code, table, err = run_cli(capsys, "predict", runs["multitask"], csv, "--output", out)
    assert code == 0, err
    assert table.splitlines()[0].split()[:4] == ["site", "group", "act", "(ms)"] and "SEPTM_AHA14_RV13" in table
    assert len([ln for ln in table.splitlines() if ln.startswith(("AHA", "RV", "EPI", "MID", "SEPTM"))]) == 75
    with h5py.File(out) as f:
        assert f["act"].shape == (75,) and f["vm"].shape == (500, 75) and f["ecg"].shape == (500, 12)
        assert f.attrs["architecture"] == "multitask"
        from_csv = f["act"][:]
    assert out.with_suffix(".png").stat().st_size > 0
    reference = predict(runs["multitask"], write_hdf5(tmp_path / "ref.h5", ecg, dt_ms=1.0)).act
    assert np.abs(from_csv - reference).max() < 2.0  # resampled from 500 Hz


def write_hdf5(path: Path, ecg: np.ndarray, dt_ms: float | None, name: str = "ecg", leads=None) -> Path:
    with h5py.File(path, "w") as f:
        ds = f.create_dataset(name, data=ecg)
        if dt_ms is not None:
            ds.attrs["dt_ms"] = dt_ms
        if leads is not None:
            ds.attrs["leads"] = list(leads)
    return path


@pytest.mark.parametrize("fmt, gain, baseline, units", [(212, 200.0, 12, "mV"), (16, 1.0, -7, "uV")])
def test_predict_wfdb_matches_the_same_ecg_from_hdf5(trained, tmp_path, fmt, gain, baseline, units):
    _, runs, ecg = trained
    scale = 1000.0 if units == "uV" else 1.0
    long = np.concatenate([ecg, ecg[:100]])  # 600 ms: cropped with a warning
    header = write_wfdb(tmp_path, "rec", long * scale, 1000, fmt, gain, baseline, units)
    record = read_ecg(header)
    assert record.dt_ms == 1.0 and np.abs(record.signals - long).max() <= 0.5 / (gain * scale) + 1e-9
    with pytest.warns(EcgWarning, match="using the first 500 ms"):
        from_wfdb = predict(runs["multitask"], tmp_path / "rec.dat").act
    reference = predict(runs["multitask"], write_hdf5(tmp_path / "ref.h5", ecg, dt_ms=1.0)).act
    assert np.abs(from_wfdb - reference).max() < 0.5


def test_predict_hdf5_leads_dataset_with_names_and_padding(trained, tmp_path):
    _, runs, ecg = trained
    order = list(reversed(LEAD_NAMES))
    path = write_hdf5(tmp_path / "x.h5", ecg[:400, ::-1], dt_ms=1.0, name="leads", leads=order)
    record = read_ecg(path)
    assert np.allclose(record.signals, ecg[:400])
    with pytest.warns(EcgWarning, match="zero-padded to 500 ms"):
        assert predict(runs["reference_act"], path).vm is None


@pytest.mark.parametrize("change, message", [
    (lambda c: c.pop("V5"), r"missing lead\(s\) V5"),
    (lambda c: c.update({k: v * 1000 for k, v in c.items() if k != "time_ms"}), r"more than 20 mV can come from a heart; is the file in microvolts"),
    (lambda c: c.update(V3=np.zeros_like(c["V3"])), r"lead V3 is flat \(all zero\)"),
    (lambda c: c.update(II=np.full_like(c["II"], np.nan)), r"lead II has non-finite values"),
])
def test_predict_refuses_bad_ecgs(trained, tmp_path, change, message):
    _, runs, ecg = trained
    columns = {"time_ms": np.arange(500.0), **{lead: ecg[:, j] for j, lead in enumerate(LEAD_NAMES)}}
    change(columns)
    with pytest.raises(ConfigError, match=message):
        predict(runs["reference_act"], write_csv(tmp_path / "bad.csv", columns))


def test_bad_files_give_clear_errors(trained, tmp_path, capsys):
    _, runs, ecg = trained
    no_time = write_csv(tmp_path / "no-time.csv", {lead: ecg[:, j] for j, lead in enumerate(LEAD_NAMES)})
    with pytest.raises(ConfigError, match=r"there is no time column; give the sampling rate with --sampling-rate"):
        read_ecg(no_time)
    assert read_ecg(no_time, sampling_rate_hz=500).dt_ms == 2.0
    (tmp_path / "ecg.txt").write_text("1,2,3")
    with pytest.raises(ConfigError, match=r"unknown ECG file type '.txt'"):
        read_ecg(tmp_path / "ecg.txt")
    (tmp_path / "fake.h5").write_text("not hdf5")
    with pytest.raises(ConfigError, match=r"fake.h5: not a readable HDF5 file"):
        read_ecg(tmp_path / "fake.h5")
    with pytest.raises(ConfigError, match=r"has no dt_ms attribute"):
        read_ecg(write_hdf5(tmp_path / "nodt.h5", ecg, dt_ms=None))
    with pytest.raises(ConfigError, match=r"has shape \(500, 11\)"):
        read_ecg(write_hdf5(tmp_path / "narrow.h5", ecg[:, :11], dt_ms=1.0))
    header = write_wfdb(tmp_path, "r80", ecg, 500, 16, 200.0, 0)
    header.write_text(header.read_text().replace(".dat 16 ", ".dat 99 "))
    with pytest.raises(ConfigError, match=r"r80.hea: (malformed WFDB header|cannot read the WFDB signals)"):
        read_ecg(header)
    (tmp_path / "broken.pt").write_bytes(runs["reference_act"].read_bytes()[:5000])
    code, _, err = run_cli(capsys, "predict", tmp_path / "broken.pt", no_time, "--sampling-rate", "500")
    assert code == 2 and "broken.pt: not a readable checkpoint (truncated or corrupt?)" in err
    code, _, err = run_cli(capsys, "predict", runs["reference_act"], write_csv(
        tmp_path / "nov5.csv", {lead: ecg[:, j] for j, lead in enumerate(LEAD_NAMES) if lead != "V5"}), "--sampling-rate", "1000")
    assert code == 2 and err.startswith("ecgi predict: error:") and "missing lead(s) V5" in err


def test_train_refuses_a_broken_data_set(trained, tmp_path, capsys):
    root, _, _ = trained
    shutil.copytree(root / "data", tmp_path / "data")
    (tmp_path / "data" / "validation" / "shard-00000.h5").unlink()
    config = tmp_path / "c.yaml"
    config.write_text("epochs: 1\n")
    code, _, err = run_cli(capsys, "train", config, "--data", tmp_path / "data", "--output", tmp_path / "run")
    assert code == 2 and "validation/shard-00000.h5: shard listed in the manifest is missing" in err
    config.write_text("epochs: 1\nnetwork: {architecture: alexnet}\n")
    code, _, err = run_cli(capsys, "train", config, "--data", root / "data")
    assert code == 2 and "c.yaml: train.network.architecture: 'alexnet' is not one of" in err


def test_submit_passes_an_argv_list_and_the_worker_init(trained, tmp_path, capsys, monkeypatch):
    root, _, _ = trained
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "sbatch.log"
    fake = bin_dir / "sbatch"
    fake.write_text(f'#!/bin/bash\nprintf "%s\\n" "$@" > {log}\nprintf "%s" "$WORKER_INIT" > {log}.env\necho "4711;cluster"\n')
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    config = tmp_path / "tiny; rm -rf ~.yaml"  # shell metacharacters must reach sbatch as plain text
    config.write_text("epochs: 2\n")
    run = tmp_path / "run"
    init = 'module load cuda/12; source "$HOME/my env/bin/activate"'
    code, out, err = run_cli(capsys, "train", config, "--data", root / "data", "--output", run, "--submit",
                             "--nodes", "2", "--gpus-per-node", "4", "--partition", "gpu", "--worker-init", init,
                             "--sbatch-arg=--qos=long")
    assert code == 0, err
    argv = log.read_text().splitlines()
    assert {"--nodes=2", "--ntasks-per-node=4", "--gpus-per-node=4", "--partition=gpu", "--qos=long"} <= set(argv)
    script = argv.index(str(run.resolve() / "train.sbatch"))
    assert argv[script + 1:] == [str(config.resolve()), "--data", str((root / "data").resolve()),
                                 "--output", str(run.resolve()), "--resume"]
    assert (log.with_suffix(".log.env")).read_text() == init
    assert (run / "train.sbatch").read_text() == (REPO / "slurm" / "train.sbatch").read_text()
    assert "submitted job 4711" in out
    code, out, _ = run_cli(capsys, "train", config, "--data", root / "data", "--output", run, "--submit", "--dry-run",
                           "--gpus-per-node", "0", "--tasks-per-node", "3")
    assert code == 0 and out.startswith("sbatch ") and "--ntasks-per-node=3" in out and "--gpus-per-node" not in out
    ridge = tmp_path / "ridge.yaml"
    ridge.write_text("network: {architecture: ridge_act}\n")
    code, _, err = run_cli(capsys, "train", ridge, "--data", root / "data", "--output", run, "--submit", "--dry-run")
    assert code == 0, err  # one GPU task by default: one process
    code, _, err = run_cli(capsys, "train", ridge, "--data", root / "data", "--output", run, "--submit", "--dry-run",
                           "--nodes", "2")
    assert code == 2 and "ridge_act is fitted in closed form on one process, not 2 tasks" in err
