"""Scores of beat detection and delineation against a reference, for the clinical tests;
the synthetic records themselves are model.clinical.synthetic's."""
from __future__ import annotations

import numpy as np

from model.clinical.synthetic import (  # noqa: F401  (the tests import them from here)
    AMPLITUDES, QRS_OFFSET_MS, QRS_ONSET_MS, WAVES, beat_shape, bump, make_record,
)


def sensitivity_ppv(detected_ms: np.ndarray, true_ms: np.ndarray, tolerance_ms: float = 50.0) -> tuple[float, float]:
    """Beat-by-beat sensitivity and positive predictive value with a matching tolerance."""
    detected_ms, true_ms = np.asarray(detected_ms, float), np.asarray(true_ms, float)
    hit_true = sum(np.min(np.abs(detected_ms - t)) <= tolerance_ms for t in true_ms) if len(detected_ms) else 0
    hit_det = sum(np.min(np.abs(true_ms - d)) <= tolerance_ms for d in detected_ms) if len(true_ms) else 0
    return hit_true / max(len(true_ms), 1), hit_det / max(len(detected_ms), 1)


LUDB_LEADS = ("i", "ii", "iii", "avr", "avl", "avf", "v1", "v2", "v3", "v4", "v5", "v6")


def ludb_qrs(record: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cardiologists' QRS of a Lobachevsky University (LUDB) record, per beat in ms:
    the R peak in lead II, and the earliest onset and latest offset over the 12 leads
    (each lead is delineated on its own in LUDB: "(" onset, "N" peak, ")" offset)."""
    import wfdb

    marks = {}
    for lead in LUDB_LEADS:
        ann = wfdb.rdann(record, lead)
        symbols, ms = np.array(ann.symbol), ann.sample * 1000.0 / ann.fs
        qrs = np.flatnonzero((symbols[1:-1] == "N") & (symbols[:-2] == "(") & (symbols[2:] == ")")) + 1
        marks[lead] = (ms[qrs - 1], ms[qrs], ms[qrs + 1])
    peaks = marks["ii"][1]
    onsets, offsets = [], []
    for p in peaks:
        on = [o[np.abs(r - p) < 100].min() for o, r, _ in marks.values() if np.any(np.abs(r - p) < 100)]
        off = [f[np.abs(r - p) < 100].max() for _, r, f in marks.values() if np.any(np.abs(r - p) < 100)]
        onsets.append(min(on))
        offsets.append(max(off))
    return np.array(onsets), peaks, np.array(offsets)
