"""Signal conditioning: known wander and hum removed, a clean signal kept, bad leads reported."""
from __future__ import annotations

import numpy as np
import pytest

from model.clinical.conditioning import condition, detect_mains, lead_quality, resample
from tests.clinical_records import make_record

RATE = 500.0


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x**2)))


@pytest.fixture(scope="module")
def clean() -> np.ndarray:
    return make_record(rate_hz=RATE, seconds=10.0)[0]


def _core(x: np.ndarray) -> np.ndarray:
    """Leave out the first and last second, where any zero-phase filter has edge effects."""
    return x[1000:-1000]


def test_a_clean_signal_is_kept(clean):
    out = condition(clean, RATE).signals
    reference = resample(clean, RATE)
    assert out.shape == (len(clean) * 2, 12)
    error = _core(out - reference)
    # The high-pass takes out the record's mean (the beats' net area): a constant the beat window's
    # isoelectric level removes again; what must not change is the waveform.
    error -= np.median(error, axis=0)
    assert _rms(error) < 0.01 and np.abs(error).max() < 0.05  # mV, against R waves of 0.4-1.4 mV


def test_baseline_wander_is_removed(clean):
    wander = make_record(rate_hz=RATE, seconds=10.0, wander_mv=1.0)[0]
    out = condition(wander, RATE).signals
    reference = condition(clean, RATE).signals
    before = _rms(_core(resample(wander - clean, RATE)))
    after = _rms(_core(out - reference))
    assert before > 0.5 and after < 0.02 * before


@pytest.mark.parametrize("mains", [50.0, 60.0])
def test_mains_hum_is_found_and_removed(clean, mains):
    hum = make_record(rate_hz=RATE, seconds=10.0, mains_hz=mains, mains_mv=0.2)[0]
    assert detect_mains(hum, RATE) == mains and detect_mains(clean, RATE) is None
    result = condition(hum, RATE)
    assert result.quality.mains_hz == mains
    reference = condition(clean, RATE).signals
    assert _rms(_core(result.signals - reference)) < 0.01


def test_flat_and_saturated_leads_are_reported(clean):
    x = clean.copy()
    x[:, 8] = 0.001 * np.random.default_rng(0).standard_normal(len(x))  # a disconnected V3: noise only
    x[:, 10] = np.clip(x[:, 10], -0.15, 0.15)  # an amplifier clipping V5
    quality = lead_quality(x, RATE)
    assert quality.flat == ["V3"] and quality.saturated == ["V5"]
    assert lead_quality(clean, RATE).problems() == []
    assert "flat (disconnected?) lead(s) V3" in condition(x, RATE).quality.problems()[0]


def test_resampling_to_1_khz_keeps_the_waveform():
    t = np.arange(0, 2.0, 1 / 250.0)
    x = np.sin(2 * np.pi * 5 * t)[:, None] * np.ones((1, 12))
    out = resample(x, 250.0)
    t1 = np.arange(len(out)) / 1000.0
    assert len(out) == 2000 and np.abs(out[100:-100, 0] - np.sin(2 * np.pi * 5 * t1[100:-100])).max() < 0.01
