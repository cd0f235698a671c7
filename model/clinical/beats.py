"""Beats: QRS detection over the whole record, clean-beat selection, the median beat, its QRS onset
and offset, and the window the network reads.

All functions take conditioned leads at 1 kHz (``conditioning.condition``),
so one sample is one millisecond.

1. **Detection** (``detect_qrs``), after Pan and Tompkins (1985), on all 12
   leads at once: 5-25 Hz band-pass, derivative, squared and summed over
   leads (each lead scaled by its robust spread, so one noisy lead cannot
   dominate), moving-window integration over 100 ms.  Peaks at least 200 ms
   apart above 30 % of the typical QRS peak are beats; a gap longer than
   1.66 median RR is searched again at half that threshold (search-back);
   a small peak within 300 ms of a large one is a T wave and dropped.
2. **Selection** (``select_beats``): each beat is re-aligned to the first
   template by cross-correlation (+-20 ms); a beat is rejected as ectopic
   when its RR interval is shorter than 80 % of the median RR (premature),
   and as ectopic or noisy when its correlation with the median template
   over all leads is below 0.90.
3. **Median beat** (``median_beat``): the sample-wise median of the clean
   beats, robust to residual noise in single beats.
4. **Delineation** (``delineate``): on the median beat's spatial velocity
   (root sum over leads of the squared slope, smoothed over 8 ms): QRS
   onset is the last sample before the QRS where it is below 5 % of its
   QRS peak above the isoelectric level; offset the first such sample after.
5. **Window** (``network_window``): the median beat from
   ``TRAINING_QRS_ONSET_MS`` before the onset, as many samples as the
   network reads, with each lead's isoelectric level (the 30 ms before the
   onset) set to zero, and zeros from where the next beat may begin (one
   median RR minus 180 ms, a long PR interval, after the onset) when that falls inside the
   window -- the training data's convention: a synthetic
   patient's samples start at the stimulus (t = 0), activation starts at
   0 ms and the ECG's QRS onset lies within the first 2 ms, with
   the potential at rest equal to zero before it (docs/data-formats.md).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.signal import butter, find_peaks, sosfiltfilt

from solver.common.errors import ConfigError

#: Where the training data puts the QRS onset (ms from the first sample); see the module docstring.
TRAINING_QRS_ONSET_MS = 0
PRE_MS = 300
REFRACTORY_MS = 200
T_WAVE_MS = 300
MIN_CORRELATION = 0.90
PREMATURE_RR = 0.80
ALIGN_MS = 20
DELINEATION_FRACTION = 0.05
NEXT_BEAT_MARGIN_MS = 180


@dataclass
class Beats:
    """Detected beats of one record (indices in ms at 1 kHz) and what became of each."""

    peaks: np.ndarray  # (B,) fiducial of each detected beat
    clean: np.ndarray  # (B,) bool: used for the median beat
    reasons: list[str] = field(default_factory=list)  # per beat: "" or why rejected
    windows: np.ndarray | None = None  # (B, L, 12) each beat from fiducial - PRE_MS, NaN where outside the record
    median: np.ndarray | None = None  # (L, 12) median beat, fiducial at PRE_MS
    onset: int = 0  # QRS onset in the median beat (sample)
    offset: int = 0  # QRS offset in the median beat (sample)

    @property
    def rr_ms(self) -> float:
        return float(np.median(np.diff(self.peaks))) if len(self.peaks) > 1 else float("nan")

    @property
    def qrs_ms(self) -> int:
        return self.offset - self.onset


def _integrated_energy(signals: np.ndarray) -> np.ndarray:
    sos = butter(2, [5.0, 25.0], btype="bandpass", fs=1000.0, output="sos")
    band = sosfiltfilt(sos, signals, axis=0)
    slope = np.gradient(band, axis=0)
    scale = np.median(np.abs(slope - np.median(slope, axis=0)), axis=0)
    energy = np.sum((slope / np.maximum(scale, 1e-12)) ** 2, axis=1)
    kernel = np.ones(100) / 100.0
    return np.convolve(energy, kernel, mode="same")


def detect_qrs(signals: np.ndarray) -> np.ndarray:
    """Sample indices (ms) of the QRS complexes of a (T, 12) 1-kHz record."""
    mwi = _integrated_energy(signals)
    candidates, props = find_peaks(mwi, distance=REFRACTORY_MS)
    if len(candidates) == 0:
        return candidates
    heights = props.get("peak_heights", mwi[candidates])
    typical = float(np.median(heights[heights >= 0.3 * heights.max()]))
    keep = heights >= 0.3 * typical
    peaks = list(candidates[keep])
    if len(peaks) > 2:  # search-back in long gaps at half the threshold
        rr = float(np.median(np.diff(peaks)))
        for a, b in zip(list(peaks[:-1]), list(peaks[1:])):
            if b - a > 1.66 * rr:
                inside = candidates[(candidates > a + REFRACTORY_MS) & (candidates < b - REFRACTORY_MS)]
                inside = inside[mwi[inside] >= 0.15 * typical]
                if len(inside):
                    peaks.append(int(inside[np.argmax(mwi[inside])]))
        peaks.sort()
    out: list[int] = []
    for p in peaks:  # a small peak shortly after a large one is its T wave
        if out and p - out[-1] < T_WAVE_MS and mwi[p] < 0.4 * mwi[out[-1]]:
            continue
        out.append(int(p))
    return np.asarray(out, dtype=int)


def _windows(signals: np.ndarray, peaks: np.ndarray, length: int) -> np.ndarray:
    out = np.full((len(peaks), length, signals.shape[1]), np.nan)
    for i, p in enumerate(peaks):
        a, b = p - PRE_MS, p - PRE_MS + length
        lo, hi = max(a, 0), min(b, len(signals))
        if hi > lo:
            out[i, lo - a:hi - a] = signals[lo:hi]
    return out


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel() - a.mean(), b.ravel() - b.mean()
    denominator = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(a @ b) / denominator if denominator > 0 else 0.0


def _realign(signals: np.ndarray, peaks: np.ndarray, template: np.ndarray, complete: np.ndarray) -> np.ndarray:
    """Shift each fiducial by up to ALIGN_MS to best match the template's QRS (+-80 ms around it)."""
    core = slice(PRE_MS - 80, PRE_MS + 80)
    ref = template[core]
    out = peaks.copy()
    for i, p in enumerate(peaks):
        if not complete[i]:
            continue
        best, best_r = 0, -2.0
        for s in range(-ALIGN_MS, ALIGN_MS + 1):
            a = p + s - 80
            if a < 0 or a + 160 > len(signals):
                continue
            r = _correlation(signals[a:a + 160], ref)
            if r > best_r:
                best, best_r = s, r
        out[i] = p + best
    return out


def select_beats(signals: np.ndarray, peaks: np.ndarray, length: int) -> Beats:
    """Windows of ``length`` samples from fiducial - PRE_MS; RR and template-correlation rejection."""
    windows = _windows(signals, peaks, length)
    complete = ~np.isnan(windows).any(axis=(1, 2))
    reasons = ["" if c else "cut by the record's edge" for c in complete]
    if complete.sum() >= 2:
        template = np.median(windows[complete], axis=0)
        peaks = _realign(signals, peaks, template, complete)
        windows = _windows(signals, peaks, length)
        complete = ~np.isnan(windows).any(axis=(1, 2))
    rr = np.diff(peaks)
    median_rr = float(np.median(rr)) if len(rr) else float("nan")
    for i in range(1, len(peaks)):
        if reasons[i] == "" and rr[i - 1] < PREMATURE_RR * median_rr:
            reasons[i] = f"premature (RR {rr[i - 1]} ms, median {median_rr:.0f} ms)"
    usable = np.array([r == "" for r in reasons])
    if usable.sum() >= 3:
        template = np.median(windows[usable], axis=0)
        core = slice(PRE_MS - 100, PRE_MS + 300)
        for i in np.flatnonzero(usable):
            r = _correlation(windows[i, core], template[core])
            if r < MIN_CORRELATION:
                reasons[i] = f"unlike the other beats (correlation {r:.2f})"
    clean = np.array([r == "" for r in reasons], dtype=bool)
    return Beats(peaks, clean, reasons, windows)


def median_beat(beats: Beats) -> np.ndarray:
    if not beats.clean.any():
        raise ConfigError("no clean beat in the record (every beat was cut, premature or unlike the others)")
    return np.median(beats.windows[beats.clean], axis=0)


def spatial_velocity(beat: np.ndarray) -> np.ndarray:
    slope = np.sqrt(np.sum(np.diff(beat, axis=0) ** 2, axis=1))
    return np.convolve(np.concatenate([slope, slope[-1:]]), np.ones(8) / 8.0, mode="same")


def delineate(beat: np.ndarray, fiducial: int = PRE_MS) -> tuple[int, int]:
    """QRS onset and offset (samples) of a median beat whose QRS lies near ``fiducial``."""
    v = spatial_velocity(beat)
    lo, hi = max(fiducial - 150, 1), min(fiducial + 150, len(v) - 1)
    peak = lo + int(np.argmax(v[lo:hi]))
    level = float(np.percentile(v, 10))
    threshold = level + DELINEATION_FRACTION * (v[peak] - level)
    before = np.flatnonzero(v[lo:peak] < threshold)
    onset = lo + int(before[-1]) if len(before) else lo
    # The offset follows the last large slope of the QRS (S wave or a late R'), not the first.
    big = np.flatnonzero(v[peak:hi] >= 0.3 * (v[peak] - level) + level)
    last = peak + (int(big[-1]) if len(big) else 0)
    after = np.flatnonzero(v[last:hi] < threshold)
    offset = last + int(after[0]) if len(after) else hi
    return onset, offset


def analyse(signals: np.ndarray, samples: int) -> Beats:
    """Detection, selection, median beat and delineation for a (T, 12) 1-kHz record."""
    peaks = detect_qrs(signals)
    if len(peaks) == 0:
        raise ConfigError("no QRS complex found in the record")
    beats = select_beats(signals, peaks, PRE_MS + samples)
    beats.median = median_beat(beats)
    beats.onset, beats.offset = delineate(beats.median)
    return beats


def network_window(beat: np.ndarray, onset: int, samples: int, lead_in: int = TRAINING_QRS_ONSET_MS,
                   end: int | None = None) -> np.ndarray:
    """``samples`` of ``beat`` from ``lead_in`` ms before the QRS onset, isoelectric level at zero.

    Past the end of the beat, and from ``end`` ms after the onset on (where the next beat would
    begin), the window holds zeros, as the training ECG at rest: a training sample has one beat.
    """
    iso = np.median(beat[max(onset - 30, 0):max(onset - 2, 1)], axis=0)
    start = onset - lead_in
    out = np.zeros((samples, beat.shape[1]))
    piece = beat[max(start, 0):start + samples] - iso
    out[max(-start, 0):max(-start, 0) + len(piece)] = piece
    if end is not None:
        out[max(lead_in + end, 0):] = 0.0
    return out.astype(np.float32)


def next_beat_ms(beats: Beats, samples: int) -> int | None:
    """Where, in ms after the QRS onset, the next beat's P wave may begin when that lies inside the window.

    The next QRS onset follows one median RR later; its P wave up to ~180 ms (a long PR) before.
    """
    if not np.isfinite(beats.rr_ms):
        return None
    end = int(beats.rr_ms) - NEXT_BEAT_MARGIN_MS
    return end if end < samples else None


def beat_windows(beats: Beats, samples: int, lead_in: int = TRAINING_QRS_ONSET_MS) -> np.ndarray:
    """Each clean beat windowed like the median beat (same onset relative to its fiducial): (B, samples, 12)."""
    end = next_beat_ms(beats, samples)
    return np.stack([network_window(w, beats.onset, samples, lead_in, end) for w in beats.windows[beats.clean]])
