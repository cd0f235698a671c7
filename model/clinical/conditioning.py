"""Signal conditioning: a raw recording -> clean 12 leads at 1 kHz, and a report on each lead.

The steps, in order, each as diagnostic ECG software does them:

1. **Lead check** (``lead_quality``) on the raw signal: a lead is *flat*
   (disconnected electrode) when its robust spread is below 10 uV,
   *saturated* (amplifier clipping) when more than 1 % of its samples sit
   at its extreme values in runs of at least 5 ms.  Both are reported; a
   flat lead makes the record unusable, a saturated one is a warning.
2. **Baseline wander** (``remove_baseline``): a zero-phase (forward-backward)
   4th-order Butterworth high-pass at 0.5 Hz removes respiration and
   electrode drift without shifting the QRS in time.  Zero phase matters:
   a causal filter would delay and distort the QRS onset the beat
   alignment relies on.  The filter also takes out the record's mean;
   each beat's isoelectric level is set to zero later (``beats``).
3. **Mains hum** (``remove_mains``): the mains frequency (50 or 60 Hz) is
   found from the spectrum (the one standing out of its neighbourhood) or
   given; a zero-phase IIR notch (Q = 30) removes it and, below Nyquist,
   its second harmonic.
4. **High-frequency noise** (``remove_high_frequency``): zero-phase
   4th-order Butterworth low-pass at 100 Hz (muscle noise, quantisation),
   within the 40-150 Hz range of clinical ECG bandwidths; the QRS energy
   the network uses lies below it.
5. **Resampling** (``resample``) to 1 kHz, the training data's rate, by a
   polyphase filter (anti-aliased).

``condition`` runs all five and returns the clean signal with the report.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np
from scipy.signal import butter, iirnotch, resample_poly, sosfiltfilt, filtfilt, welch

from solver.common.sites import LEAD_NAMES

TARGET_RATE_HZ = 1000.0
HIGHPASS_HZ = 0.5
HIGHPASS_ORDER = 4
LOWPASS_HZ = 100.0
NOTCH_Q = 30.0
FLAT_SPREAD_MV = 0.01  # 10 uV: below any real lead's noise floor
SATURATION_FRACTION = 0.01
SATURATION_RUN_MS = 5.0


@dataclass
class LeadQuality:
    flat: list[str] = field(default_factory=list)
    saturated: list[str] = field(default_factory=list)
    mains_hz: float | None = None

    def problems(self) -> list[str]:
        out = []
        if self.flat:
            out.append(f"flat (disconnected?) lead(s) {', '.join(self.flat)}")
        if self.saturated:
            out.append(f"saturated (clipped) lead(s) {', '.join(self.saturated)}")
        return out


@dataclass
class Conditioned:
    signals: np.ndarray  # (T, 12) mV at 1 kHz
    quality: LeadQuality


def lead_quality(signals: np.ndarray, rate_hz: float) -> LeadQuality:
    """Flat and saturated leads of a raw (T, 12) record."""
    quality = LeadQuality()
    run = max(2, int(round(SATURATION_RUN_MS * rate_hz / 1000.0)))
    for j, lead in enumerate(LEAD_NAMES):
        x = signals[:, j]
        spread = np.subtract(*np.percentile(x, [99, 1]))
        if spread < FLAT_SPREAD_MV:
            quality.flat.append(lead)
        elif _clipped_fraction(x, run) > SATURATION_FRACTION:
            quality.saturated.append(lead)
    return quality


def _clipped_fraction(x: np.ndarray, run: int) -> float:
    """Fraction of samples in runs of >= ``run`` equal samples at the lead's minimum or maximum."""
    clipped = 0
    for extreme in (x.max(), x.min()):
        at = np.concatenate([[False], x == extreme, [False]])
        edges = np.flatnonzero(np.diff(at.astype(np.int8)))
        lengths = edges[1::2] - edges[0::2]
        clipped += int(lengths[lengths >= run].sum())
    return clipped / len(x)


def remove_baseline(signals: np.ndarray, rate_hz: float, cutoff_hz: float = HIGHPASS_HZ) -> np.ndarray:
    """Zero-phase high-pass: baseline wander out, QRS timing unchanged."""
    sos = butter(HIGHPASS_ORDER, cutoff_hz, btype="highpass", fs=rate_hz, output="sos")
    return sosfiltfilt(sos, signals, axis=0, padtype="even")


def detect_mains(signals: np.ndarray, rate_hz: float) -> float | None:
    """50 or 60 Hz when that line stands 10x above the spectrum around it, else None."""
    if rate_hz < 130.0 or len(signals) < rate_hz:
        return None
    freqs, power = welch(signals, fs=rate_hz, nperseg=int(min(len(signals), 2 * rate_hz)), axis=0)
    power = power.sum(axis=1)
    best, ratio = None, 10.0
    for mains in (50.0, 60.0):
        line = power[np.abs(freqs - mains) <= 1.0].max()
        around = power[(np.abs(freqs - mains) > 3.0) & (np.abs(freqs - mains) < 8.0)]
        r = line / max(float(np.median(around)), 1e-30)
        if r > ratio:
            best, ratio = mains, r
    return best


def remove_mains(signals: np.ndarray, rate_hz: float, mains_hz: float) -> np.ndarray:
    """Zero-phase notch at the mains frequency and its second harmonic (where below Nyquist)."""
    out = signals
    for f in (mains_hz, 2 * mains_hz):
        if f < 0.45 * rate_hz:
            b, a = iirnotch(f, NOTCH_Q, fs=rate_hz)
            out = filtfilt(b, a, out, axis=0, padtype="even")
    return out


def remove_high_frequency(signals: np.ndarray, rate_hz: float, cutoff_hz: float = LOWPASS_HZ) -> np.ndarray:
    """Zero-phase low-pass; skipped when the cutoff is above 0.45 x the sampling rate."""
    if cutoff_hz >= 0.45 * rate_hz:
        return signals
    sos = butter(4, cutoff_hz, btype="lowpass", fs=rate_hz, output="sos")
    return sosfiltfilt(sos, signals, axis=0, padtype="even")


def resample(signals: np.ndarray, rate_hz: float, target_hz: float = TARGET_RATE_HZ) -> np.ndarray:
    """Polyphase resampling (anti-aliased) to ``target_hz``."""
    if abs(rate_hz - target_hz) <= 1e-6 * target_hz:
        return signals
    ratio = Fraction(target_hz / rate_hz).limit_denominator(1000)
    return resample_poly(signals, ratio.numerator, ratio.denominator, axis=0)


def condition(signals: np.ndarray, rate_hz: float, mains_hz: float | None | str = "auto",
              highpass_hz: float = HIGHPASS_HZ, lowpass_hz: float = LOWPASS_HZ) -> Conditioned:
    """Steps 1-5 of the module docstring on a (T, 12) mV record; ``mains_hz`` 'auto', 50, 60 or None."""
    x = np.asarray(signals, dtype=np.float64)
    quality = lead_quality(x, rate_hz)
    x = remove_baseline(x, rate_hz, highpass_hz)
    mains = detect_mains(x, rate_hz) if mains_hz == "auto" else mains_hz
    if mains:
        x = remove_mains(x, rate_hz, float(mains))
    quality.mains_hz = float(mains) if mains else None
    x = remove_high_frequency(x, rate_hz, lowpass_hz)
    return Conditioned(resample(x, rate_hz), quality)
