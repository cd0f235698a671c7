"""Training-side realism: make a synthetic ECG look recorded, so the network tolerates real inputs.

Applied to one training sample (ECG in mV, activation times, optional traces)
with a generator seeded by (seed, epoch, index), so a sample's augmentation
does not depend on the rank or worker that reads it.  Applied after the
onset shift (``model.data``); in order:

1. **time warp** -- the beat is stretched or compressed by a factor within
   1 +- ``time_warp`` about t = 0; activation times and traces stretch with
   it (a slightly faster or slower heart, not a different one);
2. **amplitude** -- each lead's gain varies by +- ``gain`` (skin impedance,
   body habitus), all leads together by a further +- ``gain``;
3. **electrode position** -- each precordial lead takes up to
   ``lead_mixing`` of its neighbours (an electrode placed one position off);
   the limb leads are rotated by up to ``lead_mixing`` radians in the
   frontal plane (I and II mixed, III, aVR, aVL, aVF recomputed, so
   Einthoven's law still holds);
4. **baseline wander** -- a 0.05-0.5 Hz sinusoid of up to ``wander_mv`` per lead;
5. **mains hum** -- 50 or 60 Hz of up to ``mains_mv``, the same phase in every
   lead (it enters through the common mode);
6. **EMG noise** -- white noise band-limited to 20-150 Hz, up to ``emg_mv`` RMS.
"""
from __future__ import annotations

import numpy as np
from scipy.signal import butter, sosfilt

from solver.common.sites import LEAD_NAMES

_PRECORDIAL = slice(6, 12)


def time_warp(ecg: np.ndarray, act: np.ndarray, vm: np.ndarray | None, factor: float
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Stretch time by ``factor`` (> 1: slower), keeping the length; the end is held at its last value."""
    t = np.arange(len(ecg), dtype=np.float64)
    source = np.clip(t / factor, 0, len(ecg) - 1)

    def warp(x: np.ndarray) -> np.ndarray:
        return np.stack([np.interp(source, t, x[:, j]) for j in range(x.shape[1])], axis=1).astype(x.dtype)

    return warp(ecg), (act * factor).astype(act.dtype), None if vm is None else warp(vm)


def limb_leads(lead_i: np.ndarray, lead_ii: np.ndarray) -> np.ndarray:
    """(T, 6) I, II, III, aVR, aVL, aVF from I and II (Einthoven and Goldberger)."""
    return np.stack([lead_i, lead_ii, lead_ii - lead_i, -(lead_i + lead_ii) / 2, lead_i - lead_ii / 2,
                     lead_ii - lead_i / 2], axis=1)


def electrode_shift(ecg: np.ndarray, rng: np.random.Generator, strength: float) -> np.ndarray:
    out = ecg.copy()
    # Frontal plane: I and II as projections of the heart vector; rotate that vector.
    angle = rng.uniform(-strength, strength)
    hx, hy = ecg[:, 0], (2 * ecg[:, 1] - ecg[:, 0]) / np.sqrt(3)  # lead I at 0 deg, II at 60 deg
    c, s = np.cos(angle), np.sin(angle)
    rx, ry = c * hx - s * hy, s * hx + c * hy
    out[:, :6] = limb_leads(rx, (rx + np.sqrt(3) * ry) / 2)
    precordial = ecg[:, _PRECORDIAL]
    mixed = precordial.copy()
    for k in range(6):
        w = rng.uniform(-strength, strength)
        neighbour = k + 1 if w > 0 else k - 1
        if 0 <= neighbour < 6:
            mixed[:, k] = (1 - abs(w)) * precordial[:, k] + abs(w) * precordial[:, neighbour]
    out[:, _PRECORDIAL] = mixed
    return out


def recording_noise(length: int, rng: np.random.Generator, dt_ms: float, wander_mv: float, mains_mv: float,
                    emg_mv: float) -> np.ndarray:
    """(length, 12) mV of wander + hum + EMG-like noise."""
    t = np.arange(length)[:, None] * dt_ms / 1000.0
    leads = len(LEAD_NAMES)
    wander = rng.uniform(0, wander_mv, leads) * np.sin(2 * np.pi * rng.uniform(0.05, 0.5, leads) * t
                                                       + rng.uniform(0, 2 * np.pi, leads))
    hum = rng.uniform(0, mains_mv) * np.sin(2 * np.pi * rng.choice([50.0, 60.0]) * t + rng.uniform(0, 2 * np.pi))
    rate = 1000.0 / dt_ms
    white = rng.standard_normal((length, leads))
    high = min(150.0, 0.45 * rate)
    if high > 20.0:
        white = sosfilt(butter(2, [20.0, high], btype="bandpass", fs=rate, output="sos"), white, axis=0)
    scale = np.std(white, axis=0).clip(1e-12)
    emg = white / scale * rng.uniform(0, emg_mv, leads)
    return wander + hum + emg


def realistic(ecg: np.ndarray, act: np.ndarray, vm: np.ndarray | None, rng: np.random.Generator, dt_ms: float,
              config) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Steps 1-6 of the module docstring; ``config`` is a ``model.config.RealismConfig``."""
    if config.time_warp > 0:
        ecg, act, vm = time_warp(ecg, act, vm, 1.0 + rng.uniform(-config.time_warp, config.time_warp))
    x = ecg.astype(np.float64)
    if config.gain > 0:
        x = x * rng.uniform(1 - config.gain, 1 + config.gain, x.shape[1]) * rng.uniform(1 - config.gain, 1 + config.gain)
    if config.lead_mixing > 0:
        x = electrode_shift(x, rng, config.lead_mixing)
    x = x + recording_noise(len(x), rng, dt_ms, config.wander_mv, config.mains_mv, config.emg_mv)
    return x.astype(ecg.dtype), act, vm
