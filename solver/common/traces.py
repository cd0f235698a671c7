"""Reading recorded transmembrane-voltage traces: when a site activates and
how long its action potential lasts.

These are the data sets' definitions, shared by everything that reads traces
(the LLNL import, the synthetic data set, the networks' voltage outputs and
their evaluation); the solver's own recorder (solver.numerics.recording.ActivationTimes)
applies the same threshold crossing step by step while it runs.  No MPI here.
"""
from __future__ import annotations

import numpy as np

#: Activation is the first upward crossing of 0 mV.
ACTIVATION_THRESHOLD_MV = 0.0


def threshold_crossing_ms(vm: np.ndarray, dt_ms: float = 1.0, threshold_mv: float = ACTIVATION_THRESHOLD_MV,
                          axis: int = -1, never: float = np.nan) -> np.ndarray:
    """Activation times (ms) of traces sampled every ``dt_ms`` along ``axis``.

    The first sample above the threshold and the one before it place the
    crossing by linear interpolation; a trace above the threshold from its
    first sample activates at 0, and one that never rises above it gets
    ``never`` (NaN, or e.g. the end of the window)."""
    vm = np.moveaxis(np.asarray(vm, dtype=np.float64), axis, -1)
    above = vm > threshold_mv
    first = above.argmax(axis=-1)
    before = np.maximum(first - 1, 0)
    v0 = np.take_along_axis(vm, before[..., None], -1)[..., 0]
    v1 = np.take_along_axis(vm, first[..., None], -1)[..., 0]
    rising = first > 0
    fraction = np.divide(threshold_mv - v0, v1 - v0, out=np.zeros_like(v0), where=rising & (v1 > v0))
    times = np.where(rising, (before + np.clip(fraction, 0.0, 1.0)) * dt_ms, 0.0)
    return np.where(above.any(axis=-1), times, never)


def apd90_ms(vm: np.ndarray, dt_ms: float = 1.0) -> np.ndarray:
    """Action-potential duration at 90 % repolarisation of traces along the last axis.

    From the steepest upstroke to the first fall below peak - 0.9 (peak - rest)
    after the peak, with rest the trace's first value.  NaN where the trace
    has no action potential (swing < 10 mV) or does not repolarise in the window.
    """
    vm = np.asarray(vm, dtype=np.float64)
    t = np.arange(vm.shape[-1])
    upstroke = np.argmax(np.diff(vm, axis=-1), axis=-1)
    after_upstroke = np.where(t >= upstroke[..., None], vm, -np.inf)
    peak_index = np.argmax(after_upstroke, axis=-1)
    peak = np.take_along_axis(vm, peak_index[..., None], -1)[..., 0]
    rest = vm[..., 0]
    level = peak - 0.9 * (peak - rest)
    below = (vm < level[..., None]) & (t > peak_index[..., None])
    r = np.argmax(below, axis=-1)
    before = np.take_along_axis(vm, np.maximum(r - 1, 0)[..., None], -1)[..., 0]
    at = np.take_along_axis(vm, r[..., None], -1)[..., 0]
    crossing = r - 1 + (before - level) / np.where(before > at, before - at, 1.0)
    apd = (crossing - (upstroke + 0.5)) * dt_ms
    return np.where(below.any(axis=-1) & (peak - rest >= 10.0), apd, np.nan)
