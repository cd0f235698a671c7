"""The real development set: labels from headers, the fixed held-out split, features of a known beat,
the shipped feature file against the records it came from, and the population distances."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from bench.ecg_population import distance
from model.clinical import devset as D
from model.clinical.synthetic import AMPLITUDES, beat_shape

DATA = Path(__file__).parent / "data" / "clinical"
FEATURES = DATA / "devset" / "features.csv"


@pytest.mark.parametrize("codes, label", [
    (["426783006"], "normal"), (["426177001", "427084000"], "normal"),  # sinus rhythms only
    (["164909002", "426783006"], "lbbb"), (["59118001", "426177001"], "rbbb"), (["713427006"], "rbbb"),
    (["713426002", "426783006"], "other_conduction"), (["426783006", "164934002"], "other"), ([], "other"),
])
def test_labels_from_snomed_codes(codes, label):
    assert D.label_from_codes(codes) == label


def test_labels_from_the_headers_in_tests_data():
    assert D.header_label(DATA / "cinc2020" / "A0001.hea") == ("rbbb", "RBBB")
    assert D.header_label(DATA / "cinc2020" / "A0002.hea") == ("normal", "Normal")
    assert D.header_label(DATA / "ludb" / "24.hea")[0] == "lbbb"
    assert D.header_label(DATA / "ptbdb-s0010_re-10s.hea")[0] == "other"


def test_held_out_split_is_fixed_by_the_id_and_near_30_percent():
    ids = [f"R{i:05d}" for i in range(2000)]
    share = np.mean([D.held_out(i) for i in ids])
    assert abs(share - D.HELD_OUT_SHARE) < 0.03
    assert [D.held_out(i) for i in ("A0001", "A0002", "E07501", "HR06003")] == [True, False, True, True]


def test_source_by_the_challenge_prefix():
    assert [D.source_of(r, "x") for r in ("HR06000", "JS20001", "E07500", "A0001", "24", "Extra")] == \
        ["PTB-XL", "Chapman-Shaoxing", "Georgia", "CPSC 2018", "x", "x"]


def test_features_of_a_beat_whose_waves_are_known():
    """A beat from the stimulus on (no P wave): QRS 0-72 ms, T peak at 295 ms, as a synthetic sample."""
    amplitudes = AMPLITUDES.copy()
    amplitudes[:, 0] = 0.0
    beat = beat_shape(np.arange(600.0) - 35.0, amplitudes)
    onset, offset = D.delineate_beat(beat)
    assert onset <= 5 and 62 <= offset <= 80
    f = D.synthetic_features(beat)
    assert f["qrs_ms"] == offset - onset
    assert f["R_V5_mV"] == pytest.approx(1.4, abs=0.05) and f["S_V1_mV"] == pytest.approx(0.9, abs=0.05)
    assert f["transition"] in (3.0, 4.0) and 0 < f["axis_deg"] < 90
    assert f["t_amp_II_mV"] == pytest.approx(0.3, abs=0.02) and 320 <= f["qt_ms"] <= 390


def test_the_shipped_features_are_what_the_module_measures():
    rows = {r["record"]: r for r in D.read_csv(FEATURES)}
    assert len(rows) >= 50 and set(D.COLUMNS) <= set(next(iter(rows.values())))
    assert all(r["label"] in D.CLASSES for r in rows.values())
    assert not {"1", "2", "3"} & set(rows)  # LUDB beyond tests/data's 24 and 51 is reserved
    fresh, _ = D.record_features(DATA / "cinc2020" / "A0002.hea")
    for key in ("qrs_ms", "rr_ms", "axis_deg", "R_V5_mV", "S_V1_mV", "qt_ms"):
        assert float(f"{fresh[key]:.4g}") == pytest.approx(rows["A0002"][key], rel=1e-3)
    assert rows["A0002"]["label"] == "normal" and 80 <= rows["A0002"]["qrs_ms"] <= 100
    assert rows["A0001"]["label"] == "rbbb" and rows["A0001"]["qrs_ms"] >= 120


def test_cli_refuses_what_is_not_a_header_in_one_line(tmp_path, capsys):
    (tmp_path / "x.csv").write_text("I\n0\n")
    assert D.main([str(tmp_path / "x.csv"), "--source", "s", "--output", str(tmp_path / "f.csv")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a WFDB header" in err


def test_population_distance_in_units_of_the_real_spread():
    real = np.array([80.0, 90.0, 100.0])
    same = distance(real.copy(), real, spread=10.0)
    assert same["w1_sd"] == 0.0 and same["inside"] == 1.0
    shifted = distance(real + 40.0, real, spread=10.0)
    assert shifted["w1_sd"] == pytest.approx(4.0) and shifted["inside"] == 0.0
    assert math.isnan(distance(np.array([]), real, spread=10.0)["w1_sd"])
