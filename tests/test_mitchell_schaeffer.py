"""Mitchell–Schaeffer single cell: rest, upstroke and duration in its range."""
from __future__ import annotations

import numpy as np
import pytest

from solver.numerics.ionic import create_model


def paced_trace(model, dt=0.01, duration=600.0, stim=(0.0, 1.0, 40.0)):
    start, width, amplitude = stim
    cell = np.zeros(1, np.int8)
    vm, states = model.initial_state(cell)
    trace = []
    for step in range(int(duration / dt)):
        t = step * dt
        i_stim = np.array([amplitude if start <= t < start + width else 0.0])
        model.step(vm, states, i_stim, dt, cell)
        trace.append(vm[0])
    return np.arange(1, len(trace) + 1) * dt, np.array(trace)


def apd(t, v, fraction=0.9):
    """Action potential duration at ``fraction`` repolarisation (ms)."""
    rest, peak = v[0], v.max()
    level = peak - fraction * (peak - rest)
    above = np.flatnonzero(v > level)
    return t[above[-1]] - t[above[0]]


def test_rest_is_stable():
    t, v = paced_trace(create_model("mitchell_schaeffer"), stim=(0, 1, 0))
    assert np.abs(v + 85).max() < 1e-9


def test_beat_has_the_model_shape():
    t, v = paced_trace(create_model("mitchell_schaeffer"))
    # The normalised upstroke reaches ~0.95 of the span: about +10 mV.
    assert 5 < v.max() <= 15.0
    # Repolarisation starts when h has closed to 4 tau_in / tau_out: about
    # tau_close ln(tau_out / (4 tau_in)) = 150 ln 5 = 241 ms, plus the decay:
    # APD90 287 ms (docs/verification.md; 287.2 at dt 0.01, 286.0 at dt 0.05).
    # 2 % (+-6 ms) is several times the time-step effect, and far less than a
    # wrong parameter does (tau_close 150 -> 100 ms gives 201 ms; a 10 % change
    # of tau_close moves APD90 by about 25 ms).
    assert apd(t, v) == pytest.approx(287.0, rel=0.02)
    assert abs(v[-1] + 85) < 1.0


def test_shorter_tau_close_shortens_the_action_potential():
    base = apd(*paced_trace(create_model("mitchell_schaeffer")))
    short = apd(*paced_trace(create_model("mitchell_schaeffer", {"tau_close": 100.0})))
    assert short < 0.8 * base


def test_subthreshold_stimulus_does_not_fire():
    t, v = paced_trace(create_model("mitchell_schaeffer"), stim=(0, 1, 5.0))
    assert v.max() < -60


def test_unknown_parameter_is_refused():
    with pytest.raises(ValueError, match="no parameter"):
        create_model("mitchell_schaeffer", {"tau_inn": 1.0})
