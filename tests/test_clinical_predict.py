"""``ecgi predict`` on clinical records: median beat, every beat, uncertainty, OOD score, report, errors."""
from __future__ import annotations

import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from pydicom.data import get_testdata_file

import model.predict as predict_module
from model.config import config_from_dict
from model.predict import SPAN_MINUS_QRS_MS, activation_span_ms, format_table, predict, span_check
from model.synthetic import write_synthetic_dataset
from model.train import train
from solver.common.errors import ConfigError
from solver.common.sites import LEAD_NAMES
from tests.clinical_records import make_record
from workflow.cli import main

DATA = Path(__file__).parent / "data" / "clinical"
DICOM = get_testdata_file("waveform_ecg.dcm")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny data set and two one-epoch networks (for an ensemble)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("clinical")
    write_synthetic_dataset(root / "data", train=24, validation=4, test=4, samples=500, seed=5)
    runs = []
    for seed in (0, 1):
        config = config_from_dict({"epochs": 1, "batch_size": 8, "tensorboard": False, "seed": seed})
        train(config, root / "data", root / f"run{seed}", progress=False)
        runs.append(root / f"run{seed}" / "last.pt")
    torch.set_num_threads(threads)
    return root, runs


def _quiet_predict(*args, **kwargs):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = predict(*args, **kwargs)
    return result, [str(w.message) for w in caught]


def test_real_dicom_median_beat_with_spread_and_ood(trained):
    root, runs = trained
    p, messages = _quiet_predict(runs[0], DICOM, reference=root / "data")
    assert p.beat_mode == "median" and p.ecg.shape == (500, 12)
    assert p.beats.clean.sum() == 10 and 55 <= p.beats.qrs_ms <= 85
    assert abs(p.ecg[0]).max() < 0.05  # isoelectric at the onset, as in training
    assert p.act.shape == (75,) and p.act_std.shape == (75,) and p.act_std.max() > 0
    assert p.uncertainty == "mc-dropout (30 passes)"
    assert p.ood_score is not None and p.ood_threshold > 0
    assert p.ood_warning == any("out-of-distribution score" in m for m in messages)
    table = format_table(p)
    assert "beats: 10 detected, 10 clean" in table and "OOD score" in table and "+-" in table.splitlines()[0]


def test_activation_span_is_latest_minus_earliest_and_its_bounds_are_inclusive():
    act = np.arange(75, dtype=float)[::-1] + 12.0  # 12..86 ms
    assert activation_span_ms(act) == pytest.approx(74.0)
    assert SPAN_MINUS_QRS_MS == (-50.0, 20.0)
    # The sites' span falls short of the QRS (they miss the first and last regions), never far beyond it.
    assert span_check(50.0, 100.0) and span_check(120.0, 100.0)
    assert not span_check(49.5, 100.0) and not span_check(120.5, 100.0)


def test_span_against_the_measured_qrs_is_warned_stored_and_shown(trained, tmp_path, monkeypatch):
    """The median beat's QRS duration beside the predicted span: a warning only beyond the tolerance."""
    _, runs = trained
    monkeypatch.setattr(predict_module, "SPAN_MINUS_QRS_MS", (-1000.0, 1000.0))
    p, messages = _quiet_predict(runs[0], DICOM, passes=1)
    assert p.qrs_ms == p.beats.qrs_ms and p.span_ms == pytest.approx(activation_span_ms(p.act))
    assert not p.span_warning and not any("activation span" in m for m in messages)
    monkeypatch.setattr(predict_module, "SPAN_MINUS_QRS_MS", (0.0, 0.0))
    p, messages = _quiet_predict(runs[0], DICOM, passes=1)
    warned = [m for m in messages if "activation span" in m]
    assert p.span_warning and len(warned) == 1 and "\n" not in warned[0]
    assert f"measured QRS duration {p.qrs_ms:.0f} ms" in warned[0]
    assert f"QRS {p.qrs_ms:.0f} ms: DISAGREE (span - QRS within +0..+0 ms)" in format_table(p)
    predict_module.write_prediction(tmp_path / "p.h5", p, "dicom", str(runs[0]))
    with h5py.File(tmp_path / "p.h5") as f:
        assert f.attrs["activation_span_ms"] == pytest.approx(p.span_ms)
        assert f.attrs["qrs_duration_ms"] == p.qrs_ms and not f.attrs["span_agrees"]
        assert list(f.attrs["span_minus_qrs_allowed_ms"]) == [0.0, 0.0]


def test_synthetic_training_ecg_is_in_distribution(trained):
    """A training sample, given as a file, scores below the threshold: the score separates."""
    root, runs = trained
    with h5py.File(root / "data" / "train" / "shard-00000.h5") as f:
        ecg = f["ecg"][0]
    with h5py.File(root / "beat.h5", "w") as f:
        f.create_dataset("ecg", data=ecg).attrs["dt_ms"] = 1.0
    p, _ = _quiet_predict(runs[0], root / "beat.h5", reference=root / "data")
    assert p.beat_mode == "none" and p.ood_score < p.ood_threshold
    assert p.qrs_ms is None and not p.span_warning and "no QRS duration measured" in format_table(p)


def test_every_beat_and_an_ensemble(trained):
    root, runs = trained
    p, _ = _quiet_predict(runs[0], DATA / "ptbdb-s0010_re-10s.hea", beats="all", passes=4)
    clean = int(p.beats.clean.sum())
    assert p.beat_act.shape == (clean, 75) and clean >= 10
    assert np.all(np.isfinite(p.beat_act)) and "spread over" in format_table(p)
    # The checkpoint carries its training set's OOD reference: no --reference needed, the same score.
    assert p.ood_score is not None
    with_reference, _ = _quiet_predict(runs[0], DATA / "ptbdb-s0010_re-10s.hea", passes=1, reference=root / "data")
    assert with_reference.ood_score == pytest.approx(p.ood_score, rel=1e-5)
    e, _ = _quiet_predict(runs[0], DATA / "ptbdb-s0010_re-10s.hea", ensemble=[runs[1]])
    assert e.uncertainty == "ensemble of 2" and e.act_std.max() > 0


def test_an_ensemble_of_a_voltage_network_and_the_ridge_network(trained):
    """Members with different outputs: the mean of the activation times they all give, no traces."""
    root, _ = trained
    members = {}
    for architecture in ("multitask", "ridge_act"):
        config = config_from_dict({"epochs": 1, "batch_size": 8, "tensorboard": False,
                                   "network": {"architecture": architecture}})
        train(config, root / "data", root / architecture, progress=False)
        members[architecture] = root / architecture / "last.pt"
    record = DATA / "ptbdb-s0010_re-10s.hea"
    alone = {name: _quiet_predict(path, record, passes=1)[0] for name, path in members.items()}
    assert alone["multitask"].vm is not None and alone["ridge_act"].vm is None
    e, _ = _quiet_predict(members["multitask"], record, ensemble=[members["ridge_act"]])
    assert e.uncertainty == "ensemble of 2" and e.vm is None
    assert np.allclose(e.act, (alone["multitask"].act + alone["ridge_act"].act) / 2, atol=1e-4)


def test_flat_lead_in_a_long_record_is_refused(trained, tmp_path):
    _, runs = trained
    x, _ = make_record(rate_hz=500.0, seconds=10.0, noise_mv=0.01)
    x[:, 9] = 0.002 * np.random.default_rng(0).standard_normal(len(x))  # V4 electrode off: noise only
    with h5py.File(tmp_path / "off.h5", "w") as f:
        f.create_dataset("ecg", data=x).attrs["dt_ms"] = 2.0
    with pytest.raises(ConfigError, match=r"flat \(disconnected\?\) lead\(s\) V4"):
        _quiet_predict(runs[0], tmp_path / "off.h5")


def test_cli_report_and_hdf5(trained, tmp_path, capsys):
    root, runs = trained
    out = tmp_path / "dicom.h5"
    code = main(["predict", str(runs[0]), DICOM, "--output", str(out), "--beats", "all", "--report",
                 str(tmp_path / "report"), "--reference", str(root / "data"), "--no-figure", "--passes", "8"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    page = (tmp_path / "report" / "report.html").read_text()
    for text in ("OOD score", "QRS duration", "activation span / measured QRS", "median-beat.png", "record.png", "activation.png", "RV01"):
        assert text in page
    for png in ("median-beat.png", "record.png", "activation.png"):
        assert (tmp_path / "report" / png).stat().st_size > 10_000
    with h5py.File(out) as f:
        assert f["act_std"].shape == (75,) and f["beats/median"].shape[1] == 12
        assert f["beat_act"].shape == (10, 75) and f.attrs["beats"] == "all"
        assert 0 < f.attrs["ood_score"] and f["beats"].attrs["qrs_offset_ms"] > f["beats"].attrs["qrs_onset_ms"]
        b = f["beats"].attrs
        assert f.attrs["qrs_duration_ms"] == b["qrs_offset_ms"] - b["qrs_onset_ms"]
        assert f.attrs["activation_span_ms"] == pytest.approx(activation_span_ms(f["act"][:]), abs=1e-3)


def test_cli_errors_are_one_line(trained, tmp_path, capsys):
    _, runs = trained
    x, _ = make_record(rate_hz=500.0, seconds=4.0)
    header = ["I", "II"] + list(LEAD_NAMES[6:])
    (tmp_path / "r.csv").write_text(",".join(header) + "\n" + "\n".join(
        ",".join(f"{v:.5g}" for v in row) for row in x[:, [0, 1, 6, 7, 8, 9, 10, 11]]) + "\n")
    code = main(["predict", str(runs[0]), str(tmp_path / "r.csv"), "--sampling-rate", "500", "--no-figure",
                 "--output", str(tmp_path / "r.h5"), "--passes", "4", "--mains", "off"])
    err = capsys.readouterr().err
    assert code == 0 and "lead(s) III, aVR, aVL, aVF derived from I and II" in err
    code = main(["predict", str(runs[0]), str(tmp_path / "r.csv"), "--sampling-rate", "5"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "is not a plausible ECG sampling rate" in err
