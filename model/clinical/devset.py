"""A development set of real 12-lead ECGs: the features a cardiologist reads, one row per record.

    python -m model.clinical.devset RECORD_OR_DIR... --output features.csv

Each record is read (``readers``), conditioned (``conditioning``), its beats
found and its median beat delineated (``beats``: the QRS duration is that
delineation's, which docs/clinical.md checks against a device and LUDB's
cardiologists); the median beat, from 40 ms before its QRS onset with the
isoelectric level at zero, is then measured by the code that measures a
synthetic beat (``beat_features``, on solver/patient/ecg_measures.py), and a
synthetic sample is delineated by the same rule (``delineate_beat``), so that
the two populations are compared measure for measure (bench/ecg_population.py).

The label comes from the record's header: the SNOMED CT codes of the
PhysioNet/CinC challenges (``# Dx:``), or the text of older headers (LUDB,
PTB, the 2020 challenge's first release). The held-out part is fixed by the
record id alone (``held_out``): about 30 % of records, whatever else is added.
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import math
import sys
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from solver.common.errors import ConfigError, EcgiError
from solver.common.sites import LEAD_NAMES
from solver.patient.ecg_measures import measure_lead

from . import beats as beatlib
from .conditioning import condition
from .readers import read_ecg

#: SNOMED CT codes of the challenges (Dx_map.csv of the 2020/2021 challenges).
SINUS = {"426783006": "sinus rhythm", "426177001": "sinus bradycardia", "427084000": "sinus tachycardia",
         "427393009": "sinus arrhythmia"}
LBBB = {"164909002", "733534002"}  # left bundle branch block, complete LBBB
RBBB = {"59118001", "713427006"}  # right bundle branch block, complete RBBB
#: Other conduction disorders: incomplete RBBB, LAFB, LPFB, nonspecific intraventricular, 1st-degree AV block, bifascicular.
OTHER_CONDUCTION = {"713426002", "445118002", "445211001", "698252002", "270492004", "74615001"}
CLASSES = ("normal", "lbbb", "rbbb", "other_conduction", "other")
#: Share of records held out (tunes nothing); the split is by the record id's hash.
HELD_OUT_SHARE = 0.3
#: The median beat is measured from this long before its QRS onset.
LEAD_IN_MS = 40
WINDOW_MS = 600
PRECORDIAL = LEAD_NAMES[6:]
COLUMNS = ("record", "source", "label", "dx", "held_out", "rate_hz", "rr_ms", "clean_beats", "qrs_ms", "axis_deg",
           "transition", "qt_ms", "t_amp_II_mV", "t_amp_V5_mV",
           *[f"R_{n}_mV" for n in LEAD_NAMES], *[f"S_{n}_mV" for n in LEAD_NAMES])


def label_from_codes(codes: Iterable[str]) -> str:
    """normal (a sinus rhythm and nothing else), lbbb, rbbb, other_conduction or other."""
    codes = set(codes)
    if codes & LBBB:
        return "lbbb"
    if codes & RBBB:
        return "rbbb"
    if codes & OTHER_CONDUCTION:
        return "other_conduction"
    return "normal" if codes and codes <= set(SINUS) else "other"


def label_from_text(text: str) -> str:
    """The label of a header written in words (LUDB, PTB, the 2020 challenge's first release)."""
    t = text.lower()
    if "left bundle branch block" in t or "lbbb" in t.split():
        return "lbbb"
    if "right bundle branch block" in t or "rbbb" in t.split():
        return "rbbb"
    if "healthy control" in t or t.strip() in ("normal", "dx: normal"):
        return "normal"
    return "other"


def header_label(header: Path) -> tuple[str, str]:
    """(label, diagnosis as written) from a WFDB header's comment lines."""
    comments = [line.lstrip("#").strip() for line in header.read_text(errors="replace").splitlines()
                if line.startswith("#")]
    for line in comments:
        if line.lower().startswith("dx:"):
            value = line.split(":", 1)[1].strip()
            codes = [c.strip() for c in value.split(",") if c.strip()]
            if codes and all(c.isdigit() for c in codes):
                return label_from_codes(codes), value
            return label_from_text(value), value
    text = "; ".join(comments)
    return label_from_text(text), text[:120]


#: The challenges' record-name prefixes and the database each names (CinC 2020/2021 naming).
PREFIXES = (("HR", "PTB-XL"), ("JS", "Chapman-Shaoxing"), ("E", "Georgia"), ("A", "CPSC 2018"), ("Q", "CPSC-Extra"),
            ("S", "PTB"), ("I", "INCART"))


def source_of(record_id: str, default: str) -> str:
    """The database a challenge record comes from, by its name's prefix; ``default`` for other names."""
    for prefix, name in PREFIXES:
        if record_id.startswith(prefix) and record_id[len(prefix):].isdigit():
            return name
    return default


def held_out(record_id: str) -> bool:
    """Whether a record is in the held-out part: the first 8 hex digits of SHA-256(id) below 30 %."""
    return int(hashlib.sha256(record_id.encode()).hexdigest()[:8], 16) < HELD_OUT_SHARE * 16**8


def t_wave(leads: np.ndarray, offset: int, limit: int | None = None) -> tuple[int | None, int | None]:
    """T peak and end (samples) of a beat at rest-level zero: the peak of the leads' RMS from 60 ms after
    the QRS offset (up to ``limit``), the end where the RMS falls below 15 % of that peak -- one rule
    for either population."""
    rms = np.sqrt(np.mean(leads[:limit] ** 2, axis=1))
    start = offset + 60
    if start >= len(rms) - 10:
        return None, None
    peak = start + int(np.argmax(rms[start:]))
    below = np.flatnonzero(rms[peak:] < 0.15 * rms[peak])
    return peak, (peak + int(below[0]) if len(below) else None)


def transition_lead(r_over_s: Sequence[float]) -> float:
    """Number (1-6) of the first precordial lead whose R is at least its S; 7 when none is."""
    for i, ratio in enumerate(r_over_s, start=1):
        if ratio >= 1.0:
            return float(i)
    return 7.0


def delineate_beat(leads: np.ndarray) -> tuple[int, int]:
    """QRS onset and offset (samples, 1 kHz) of a single beat that starts at rest before its QRS, by the
    median beat's delineation (``beats.delineate``): a synthetic sample is delineated as a recording is."""
    padded = np.concatenate([np.zeros((beatlib.PRE_MS, leads.shape[1])), leads])
    onset, offset = beatlib.delineate(padded, beatlib.PRE_MS + 50)
    # A sample starts at the stimulus: its QRS cannot begin before the first sample.
    return max(onset - beatlib.PRE_MS, 0), max(offset - beatlib.PRE_MS, 1)


def beat_features(leads: np.ndarray, onset: int, offset: int, limit: int | None = None) -> dict[str, float]:
    """Features of one beat (T, 12) mV at 1 kHz with its rest level at zero and its QRS from ``onset`` to
    ``offset``; the T wave is looked for before ``limit`` (where the next beat may begin)."""
    qrs = leads[onset:offset + 1]
    hysteresis = 0.05 * float((qrs.max(axis=0) - qrs.min(axis=0)).max())
    m = {n: measure_lead(leads[:, i], 1.0, onset, offset, 40.0, 60.0, 40.0, hysteresis)
         for i, n in enumerate(LEAD_NAMES)}
    peak, end = t_wave(leads, offset, limit)
    features = {"qrs_ms": float(offset - onset),
                "axis_deg": float(np.degrees(np.arctan2(m["aVF"].net_area, m["I"].net_area))),
                "transition": transition_lead([m[n].r_over_s for n in PRECORDIAL]),
                "qt_ms": float(end - onset) if end is not None else math.nan,
                "t_amp_II_mV": float(leads[peak, 1]) if peak is not None else math.nan,
                "t_amp_V5_mV": float(leads[peak, 10]) if peak is not None else math.nan}
    for n in LEAD_NAMES:
        features[f"R_{n}_mV"] = m[n].r_mV
        features[f"S_{n}_mV"] = m[n].s_mV
    return features


def synthetic_features(ecg: np.ndarray) -> dict[str, float]:
    """Features of a synthetic sample's ECG (T, 12) mV at 1 kHz, from the stimulus on."""
    onset, offset = delineate_beat(ecg)
    return beat_features(ecg, onset, offset)


def record_features(path: Path) -> tuple[dict[str, object], str]:
    """One row (the record's label, rhythm and the median beat's features) and a digest of its samples."""
    record = read_ecg(path)
    conditioned = condition(record.signals, record.rate_hz, "auto")
    found = beatlib.analyse(conditioned.signals, WINDOW_MS)
    if found.median is None:  # analyse raises before this; the median exists once beats were found
        raise ConfigError(f"{path}: no median beat")
    window = beatlib.network_window(found.median, found.onset, WINDOW_MS, lead_in=LEAD_IN_MS).astype(float)
    limit = LEAD_IN_MS + int(found.rr_ms) - beatlib.NEXT_BEAT_MARGIN_MS if np.isfinite(found.rr_ms) else None
    label, dx = header_label(path.with_suffix(".hea"))
    row: dict[str, object] = {"record": path.stem, "label": label, "dx": dx, "held_out": held_out(path.stem),
                              "rate_hz": record.rate_hz, "rr_ms": found.rr_ms, "clean_beats": int(found.clean.sum()),
}
    row.update(beat_features(window, LEAD_IN_MS, LEAD_IN_MS + found.qrs_ms, limit))
    return row, hashlib.sha256(np.ascontiguousarray(record.signals).tobytes()).hexdigest()


def records_in(paths: Sequence[Path]) -> list[Path]:
    """Every WFDB header in the given files and directories (recursively), by name."""
    found: list[Path] = []
    for p in paths:
        if p.is_dir():
            found += sorted(p.rglob("*.hea"))
        elif p.suffix == ".hea":
            found.append(p)
        else:
            raise ConfigError(f"{p}: not a WFDB header (.hea) or a directory")
    return found


def build(paths: Sequence[Path], source: str, exclude: Sequence[str] = ()) -> tuple[list[dict], list[str]]:
    """Rows for every record that can be measured, and one line for each that cannot."""
    rows: list[dict] = []
    skipped: list[str] = []
    seen: dict[str, str] = {}
    for header in records_in(paths):
        if header.stem in exclude:
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                row, digest = record_features(header)
        except EcgiError as exc:
            skipped.append(f"{header.stem}: {exc}")
            continue
        if digest in seen:  # the same samples under two names (the challenge data has such pairs)
            skipped.append(f"{header.stem}: the same samples as {seen[digest]}")
            continue
        seen[digest] = header.stem
        row["source"] = source_of(header.stem, source)
        rows.append(row)
    return rows, skipped


def write_csv(path: Path, rows: Sequence[dict]) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _cell(row.get(k, "")) for k in COLUMNS})


def read_csv(path: Path) -> list[dict]:
    """Rows with numbers as floats (NaN where empty) and ``held_out`` as a bool."""
    out = []
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            parsed: dict[str, object] = {}
            for k, v in row.items():
                if k in ("record", "source", "label", "dx"):
                    parsed[k] = v
                elif k == "held_out":
                    parsed[k] = v == "True"
                else:
                    parsed[k] = float(v) if v not in ("", "nan") else math.nan
            out.append(parsed)
    return out


def _cell(value: object) -> object:
    if isinstance(value, float):
        return "" if not math.isfinite(value) else f"{value:.4g}"
    return value


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m model.clinical.devset", description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", type=Path, help="WFDB headers or directories holding them")
    parser.add_argument("--source", required=True,
                        help="name of the source, written in each row whose name does not tell its database")
    parser.add_argument("--exclude", nargs="*", default=[], help="record ids to leave out")
    parser.add_argument("--output", type=Path, required=True, help="CSV to write (rows are appended with --append)")
    parser.add_argument("--append", action="store_true")
    args = parser.parse_args(argv)
    try:
        rows, skipped = build(args.paths, args.source, args.exclude)
    except EcgiError as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2
    if args.append and args.output.is_file():
        rows = read_csv(args.output) + rows
    write_csv(args.output, rows)
    for line in skipped:
        print(f"skipped {line}", file=sys.stderr)
    print(f"{len(rows)} records in {args.output}; {len(skipped)} skipped", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
