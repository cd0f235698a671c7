"""Synthetic 12-lead records with known beats, QRS onsets and offsets: what the
clinical readers, conditioning and beat analysis are tested and timed on.

Each wave is a raised-cosine bump of compact support, so the QRS starts and
ends at known samples: Q from -35 ms, R, S until +37 ms around the R peak.
"""
from __future__ import annotations

import numpy as np

QRS_ONSET_MS = -35.0
QRS_OFFSET_MS = 37.0
# Per lead: (P, Q, R, S, T) amplitudes in mV; the limb leads obey Einthoven (III = II - I, ...).
_I = np.array([0.08, -0.05, 0.7, -0.15, 0.2])
_II = np.array([0.12, -0.08, 1.1, -0.25, 0.3])
_PRECORDIAL = np.array([
    [0.05, 0.0, 0.2, -0.9, -0.1], [0.06, 0.0, 0.4, -1.2, 0.3], [0.07, -0.05, 0.8, -0.8, 0.4],
    [0.08, -0.1, 1.3, -0.4, 0.4], [0.08, -0.1, 1.4, -0.2, 0.35], [0.07, -0.08, 1.0, -0.1, 0.25],
])
AMPLITUDES = np.vstack([_I, _II, _II - _I, -(_I + _II) / 2, _I - _II / 2, _II - _I / 2, _PRECORDIAL])
# (centre, half width) in ms from the R peak.
WAVES = ((-170.0, 40.0), (-25.0, 10.0), (0.0, 15.0), (25.0, 12.0), (260.0, 90.0))


def bump(t: np.ndarray, centre: float, half_width: float) -> np.ndarray:
    x = (t - centre) / half_width
    return np.where(np.abs(x) < 1.0, np.cos(np.pi * x / 2) ** 2, 0.0)


def beat_shape(t_ms: np.ndarray, amplitudes: np.ndarray = AMPLITUDES) -> np.ndarray:
    """(len(t), 12) mV of one beat with its R peak at t = 0."""
    return sum(np.outer(bump(t_ms, c, w), amplitudes[:, k]) for k, (c, w) in enumerate(WAVES))


def make_record(rate_hz: float = 500.0, seconds: float = 10.0, rr_ms: float = 800.0, seed: int = 0,
                wander_mv: float = 0.0, mains_hz: float | None = None, mains_mv: float = 0.0,
                noise_mv: float = 0.0, pvc_at: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A (T, 12) mV record and its R-peak times (ms); beat ``pvc_at`` is premature and wide."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate_hz)) * 1000.0 / rate_hz
    x = np.zeros((len(t), 12))
    peaks, now = [], 400.0
    while now < t[-1] - 500.0:
        peaks.append(now)
        now += rr_ms * (1 + 0.05 * rng.standard_normal())
    peaks = np.array(peaks)
    for i, p in enumerate(peaks):
        if pvc_at is not None and i == pvc_at:
            p = peaks[i] = peaks[i - 1] + 0.6 * (peaks[i] - peaks[i - 1])
            wide = (t - p) / 2.5  # a wide complex of another shape
            x += beat_shape(wide, -AMPLITUDES[:, [0, 3, 2, 1, 4]] * 1.2)
        else:
            x += beat_shape(t - p)
    x += wander_mv * np.sin(2 * np.pi * 0.25 * t[:, None] / 1000.0 + rng.uniform(0, 2 * np.pi, 12))
    if mains_hz:
        x += mains_mv * np.sin(2 * np.pi * mains_hz * t / 1000.0)[:, None]
    x += noise_mv * rng.standard_normal(x.shape)
    return x, peaks
