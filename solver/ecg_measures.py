"""Measurements on the 12-lead ECG."""
from __future__ import annotations

import numpy as np


def spatial_velocity(leads: np.ndarray, dt_ms: float) -> np.ndarray:
    """sqrt(sum over leads of (dV/dt)^2), mV/ms: large during depolarisation."""
    return np.sqrt((np.gradient(leads, dt_ms, axis=0) ** 2).sum(axis=1))


def qrs_interval(leads: np.ndarray, dt_ms: float, threshold: float = 0.04, quiet_ms: float = 15.0) -> tuple[float, float]:
    """QRS onset and offset (ms) from the leads' spatial velocity.

    Onset: first sample whose spatial velocity exceeds ``threshold`` times its
    peak; offset: the start of the first stretch of ``quiet_ms`` after the peak
    in which it stays below that level (the ST segment).
    """
    s = spatial_velocity(leads, dt_ms)
    level = threshold * s.max()
    active = s > level
    onset = int(np.argmax(active))
    peak = int(np.argmax(s))
    quiet = max(1, int(round(quiet_ms / dt_ms)))
    offset = len(s) - 1
    for i in range(peak, len(s) - quiet):
        if not active[i:i + quiet].any():
            offset = i
            break
    return onset * dt_ms, offset * dt_ms


def qrs_duration(leads: np.ndarray, dt_ms: float) -> float:
    onset, offset = qrs_interval(leads, dt_ms)
    return offset - onset
