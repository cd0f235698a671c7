"""Measurements on a simulated 12-lead beat, as a reader of ECGs takes them.

Every function takes the leads as a (T, 12) array in ``LEAD_NAMES`` order
(mV) sampled every ``dt_ms``, starting before the QRS and ending after the T
wave.  The QRS is found from the spatial velocity of all leads together
(its onset and offset are common to the 12 leads, as in automated
interpretation); the measures within it follow the textbook definitions:

* R: the largest positive deflection, S: the largest negative one after R
  (q: a negative deflection before R); R/S = R amplitude / S depth.
* Net area: the signed integral over the QRS (mV ms); the frontal axis is
  atan2(net aVF, net I) in degrees (0 = towards lead I, +90 = towards aVF).
  In bundle branch block the axis is read from the initial 60 ms
  (``frontal_axis_initial_deg``), the part of the QRS the block leaves
  unchanged.
* R-peak time: QRS onset to the peak of R (intrinsicoid deflection).
* Notches: turning points of the QRS beyond the three of a q-R-S complex,
  counted with a hysteresis of a fraction of the largest QRS range of the
  12 leads (a notch must show at the scale the ECG is read at).
* T wave: the signed area from the QRS offset plus ``st_ms`` to the end.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..common.sites import LEAD_NAMES

_INDEX = {name: i for i, name in enumerate(LEAD_NAMES)}


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


def turning_points(signal: np.ndarray, hysteresis: float) -> int:
    """Direction reversals of ``signal`` larger than ``hysteresis`` (mV).

    A q-R-S complex that returns to baseline has three; an R-S complex two.
    """
    count, direction = 0, 0  # direction: +1 rising, -1 falling, 0 not yet known
    start = extreme = float(signal[0])
    for value in map(float, signal[1:]):
        if direction == 0:
            if abs(value - start) > hysteresis:
                direction, extreme = (1 if value > start else -1), value
        elif direction * (value - extreme) > 0:
            extreme = value
        elif direction * (extreme - value) > hysteresis:
            count, direction, extreme = count + 1, -direction, value
    return count


@dataclass
class LeadQRS:
    """One lead's QRS complex."""

    r_mV: float  #: R amplitude (>= 0)
    s_mV: float  #: S depth after R (>= 0)
    q_mV: float  #: q depth before R (>= 0)
    net_area: float  #: mV ms
    peak_to_peak_mV: float
    r_peak_time_ms: float  #: from QRS onset
    initial_area: float  #: mV ms over the first ``initial_ms`` of the QRS
    terminal_area: float  #: mV ms over the last ``terminal_ms`` of the QRS
    ends_negative: bool  #: the last deflection beyond the hysteresis is an S
    notches: int
    t_area: float  #: mV ms, T wave

    @property
    def r_over_s(self) -> float:
        """R over the deepest negative deflection (Q or S), as in R-wave progression."""
        negative = max(self.s_mV, self.q_mV)
        return self.r_mV / negative if negative > 0 else np.inf


@dataclass
class BeatMeasures:
    onset_ms: float
    offset_ms: float
    leads: dict[str, LeadQRS]

    @property
    def qrs_ms(self) -> float:
        return self.offset_ms - self.onset_ms

    def __getitem__(self, lead: str) -> LeadQRS:
        return self.leads[lead]

    @property
    def frontal_axis_deg(self) -> float:
        return float(np.degrees(np.arctan2(self["aVF"].net_area, self["I"].net_area)))

    @property
    def frontal_axis_initial_deg(self) -> float:
        return float(np.degrees(np.arctan2(self["aVF"].initial_area, self["I"].initial_area)))

    @property
    def limb_to_precordial_ratio(self) -> float:
        limb = max(self[n].peak_to_peak_mV for n in LEAD_NAMES[:6])
        precordial = max(self[n].peak_to_peak_mV for n in LEAD_NAMES[6:])
        return limb / precordial


def measure_lead(x: np.ndarray, dt_ms: float, onset: int, offset: int, terminal_ms: float,
                 initial_ms: float, st_ms: float, hysteresis: float) -> LeadQRS:
    qrs = x[onset:offset + 1]
    baseline = x[onset]
    qrs = qrs - baseline
    peak = int(np.argmax(qrs))
    r = max(float(qrs[peak]), 0.0)
    s = max(float(-qrs[peak:].min()), 0.0)
    q = max(float(-qrs[:peak + 1].min()), 0.0) if peak > 0 else 0.0
    span = float(qrs.max() - qrs.min())
    terminal = qrs[-max(1, int(round(terminal_ms / dt_ms))):]
    # The last deflection: the sign of the last sample beyond the hysteresis.
    beyond = np.flatnonzero(np.abs(qrs) > hysteresis)
    ends_negative = bool(len(beyond) and qrs[beyond[-1]] < 0)
    t_start = min(len(x) - 1, offset + int(round(st_ms / dt_ms)))
    return LeadQRS(
        r_mV=r, s_mV=s, q_mV=q,
        net_area=float(qrs.sum() * dt_ms),
        peak_to_peak_mV=span,
        r_peak_time_ms=peak * dt_ms,
        initial_area=float(qrs[:max(1, int(round(initial_ms / dt_ms)))].sum() * dt_ms),
        terminal_area=float(terminal.sum() * dt_ms),
        ends_negative=ends_negative,
        notches=max(0, turning_points(qrs, hysteresis) - 3),
        t_area=float((x[t_start:] - baseline).sum() * dt_ms),
    )


def measure_beat(leads: np.ndarray, dt_ms: float, terminal_ms: float = 40.0, initial_ms: float = 60.0,
                 st_ms: float = 40.0, notch_fraction: float = 0.05) -> BeatMeasures:
    """QRS interval and per-lead measures of a single simulated beat."""
    onset_ms, offset_ms = qrs_interval(leads, dt_ms)
    onset, offset = int(round(onset_ms / dt_ms)), int(round(offset_ms / dt_ms))
    qrs = leads[onset:offset + 1]
    hysteresis = notch_fraction * float((qrs.max(axis=0) - qrs.min(axis=0)).max())
    per_lead = {name: measure_lead(leads[:, i], dt_ms, onset, offset, terminal_ms, initial_ms, st_ms, hysteresis)
                for name, i in _INDEX.items()}
    return BeatMeasures(onset_ms, offset_ms, per_lead)
