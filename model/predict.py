"""``ecgi predict``: read a 12-lead ECG, check it, and map it to 75 activation times (and traces).

Readers:

* HDF5 -- dataset ``ecg`` or ``leads`` of shape (T, 12) in mV; attribute
  ``dt_ms`` (on the dataset or the file) and optionally ``leads`` (names in
  column order; the standard order is assumed without it).
* CSV -- a header naming the 12 leads (case-insensitive, any order), mV,
  and optionally a time column: ``time_ms``/``t_ms`` in ms, ``time_s``/``t_s``
  in s, or ``time``/``t`` (s if the step is below 0.1, else ms).  Without a
  time column the sampling rate must be given.
* WFDB -- a ``.hea`` header and its ``.dat`` signal file(s), formats 16 and
  212; lead names from the signal descriptions, ADC gain and baseline
  applied, units mV (uV and V are converted).

Before prediction the ECG is resampled to 1 kHz (polyphase, anti-aliased),
cropped or zero-padded to the network's length (with a warning) and refused
if a lead is missing, flat, non-finite or beyond 20 mV (usually a file in
microvolts).
"""
from __future__ import annotations

import csv
import math
import os
import re
import warnings
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Sequence

import h5py
import numpy as np
import torch
from scipy.signal import resample_poly

from solver.errors import ConfigError
from solver.sites import LEAD_NAMES, SITE_NAMES, site_group

from .checkpoint import load_checkpoint, model_from_checkpoint
from .data import scale_ecg
from .evaluate import apd90_ms

MAX_AMPLITUDE_MV = 20.0
TARGET_RATE_HZ = 1000.0
_TIME_COLUMNS = {"time_ms": 1.0, "t_ms": 1.0, "time_s": 1000.0, "t_s": 1000.0, "time": None, "t": None}
_UNIT_TO_MV = {"mv": 1.0, "uv": 1e-3, "µv": 1e-3, "μv": 1e-3, "v": 1e3}


class EcgWarning(UserWarning):
    """The ECG was usable but changed (cropped, padded) or partly ignored."""


@dataclass
class EcgRecord:
    signals: np.ndarray  # (T, 12) mV, columns in LEAD_NAMES order
    dt_ms: float
    source: Path


def read_ecg(path: str | Path, sampling_rate_hz: float | None = None) -> EcgRecord:
    """Read an ECG file by its suffix (.h5/.hdf5, .csv, .hea/.dat)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such ECG file")
    suffix = path.suffix.lower()
    if suffix in (".h5", ".hdf5"):
        return _read_hdf5(path, sampling_rate_hz)
    if suffix == ".csv":
        return _read_csv(path, sampling_rate_hz)
    if suffix in (".hea", ".dat"):
        return _read_wfdb(path.with_suffix(".hea"))
    raise ConfigError(f"{path}: unknown ECG file type {suffix!r}; use HDF5 (.h5), CSV (.csv) or WFDB (.hea + .dat)")


def _order_leads(names: Sequence[str], data: np.ndarray, path: Path) -> np.ndarray:
    """Columns named ``names`` -> (T, 12) in the standard order; missing leads are an error."""
    lookup = {name.strip().lower(): i for i, name in enumerate(names)}
    missing = [lead for lead in LEAD_NAMES if lead.lower() not in lookup]
    if missing:
        raise ConfigError(f"{path}: missing lead(s) {', '.join(missing)}; found {', '.join(names) or 'none'}")
    extra = [n for n in names if n.strip().lower() not in {lead.lower() for lead in LEAD_NAMES}]
    if extra:
        warnings.warn(f"{path}: ignoring signal(s) {', '.join(extra)}", EcgWarning, stacklevel=3)
    return np.stack([data[:, lookup[lead.lower()]] for lead in LEAD_NAMES], axis=1).astype(np.float64)


def _dt_from_rate(rate_hz: float | None, path: Path, what: str) -> float:
    if rate_hz is None:
        raise ConfigError(f"{path}: {what}; give the sampling rate with --sampling-rate HZ")
    if not (rate_hz > 0 and math.isfinite(rate_hz)):
        raise ConfigError(f"{path}: sampling rate must be a positive number, got {rate_hz}")
    return 1000.0 / rate_hz


def _read_hdf5(path: Path, rate_hz: float | None) -> EcgRecord:
    try:
        with h5py.File(path, "r") as f:
            name = next((n for n in ("ecg", "leads") if n in f and isinstance(f[n], h5py.Dataset)), None)
            if name is None:
                raise ConfigError(f"{path}: no dataset 'ecg' or 'leads'")
            ds = f[name]
            data = ds[()]
            dt = ds.attrs.get("dt_ms", f.attrs.get("dt_ms"))
            names = [n.decode() if isinstance(n, bytes) else str(n) for n in ds.attrs.get("leads", LEAD_NAMES)]
    except OSError as exc:
        raise ConfigError(f"{path}: not a readable HDF5 file ({exc})") from None
    if data.ndim != 2 or data.shape[1] != len(names):
        raise ConfigError(f"{path}: dataset {name!r} has shape {data.shape}; expected (T, {len(names)}) with one column per lead")
    dt_ms = float(dt) if dt is not None else _dt_from_rate(rate_hz, path, f"dataset {name!r} has no dt_ms attribute")
    return EcgRecord(_order_leads(names, data, path), dt_ms, path)


def _read_csv(path: Path, rate_hz: float | None) -> EcgRecord:
    with open(path, newline="") as f:
        rows = [row for row in csv.reader(f) if row and any(cell.strip() for cell in row)]
    if len(rows) < 2:
        raise ConfigError(f"{path}: a CSV ECG needs a header row naming the leads and at least one data row")
    header = [h.strip() for h in rows[0]]
    try:
        data = np.array([[float(cell) for cell in row] for row in rows[1:]], dtype=np.float64)
    except ValueError as exc:
        raise ConfigError(f"{path}: non-numeric value in the data rows ({exc})") from None
    if data.ndim != 2 or data.shape[1] != len(header):
        raise ConfigError(f"{path}: every row must have {len(header)} values, like the header")
    time_cols = [i for i, h in enumerate(header) if h.lower() in _TIME_COLUMNS]
    if not time_cols:
        return EcgRecord(_order_leads(header, data, path), _dt_from_rate(rate_hz, path, "there is no time column"), path)
    col = time_cols[0]
    dt_ms = _dt_from_time_column(data[:, col], _TIME_COLUMNS[header[col].lower()], path)
    if rate_hz is not None and abs(1000.0 / rate_hz - dt_ms) > 0.01 * dt_ms:
        raise ConfigError(f"{path}: --sampling-rate {rate_hz} Hz contradicts the time column ({1000.0 / dt_ms:g} Hz)")
    return EcgRecord(_order_leads(header[:col] + header[col + 1:], np.delete(data, col, axis=1), path), dt_ms, path)


def _dt_from_time_column(t: np.ndarray, ms_per_unit: float | None, path: Path) -> float:
    steps = np.diff(t)
    if len(steps) == 0 or not np.all(steps > 0):
        raise ConfigError(f"{path}: the time column must increase")
    step = float(np.median(steps))
    if np.max(np.abs(steps - step)) > 0.01 * step:
        raise ConfigError(f"{path}: the time column is not uniformly sampled")
    if ms_per_unit is None:
        ms_per_unit = 1000.0 if step < 0.1 else 1.0
    return step * ms_per_unit


@dataclass
class _WfdbSignal:
    file: str
    fmt: int
    offset: int
    gain: float  # ADC units per mV
    baseline: int
    description: str


def _read_wfdb(header_path: Path) -> EcgRecord:
    if not header_path.is_file():
        raise ConfigError(f"{header_path}: WFDB header missing (a .dat file needs its .hea)")
    lines = [ln.strip() for ln in header_path.read_text(errors="replace").splitlines()]
    lines = [ln for ln in lines if ln and not ln.startswith("#")]
    try:
        record = lines[0].split()
        if "/" in record[0]:
            raise ConfigError(f"{header_path}: multi-segment WFDB records are not supported")
        nsig = int(record[1])
        fs = float(record[2].split("/")[0].split("(")[0]) if len(record) > 2 else 250.0
        nsamp = int(record[3]) if len(record) > 3 else None
        signals = [_parse_signal_line(ln, header_path) for ln in lines[1:1 + nsig]]
    except ConfigError:
        raise
    except (IndexError, ValueError) as exc:
        raise ConfigError(f"{header_path}: malformed WFDB header ({exc})") from None
    if len(signals) != nsig:
        raise ConfigError(f"{header_path}: header announces {nsig} signals but describes {len(signals)}")
    columns = _read_wfdb_samples(header_path.parent, signals, nsamp, header_path)
    return EcgRecord(_order_leads([s.description for s in signals], columns, header_path), 1000.0 / fs, header_path)


def _parse_signal_line(line: str, path: Path) -> _WfdbSignal:
    fields = line.split()
    fmt_match = re.fullmatch(r"(\d+)(?:x(\d+))?(?::(\d+))?(?:\+(\d+))?", fields[1])
    if not fmt_match:
        raise ConfigError(f"{path}: cannot read the format field {fields[1]!r}")
    fmt, per_frame, skew, offset = fmt_match.groups()
    if int(fmt) not in (16, 212):
        raise ConfigError(f"{path}: WFDB format {fmt} is not supported (16 and 212 are)")
    if (per_frame and int(per_frame) != 1) or (skew and int(skew) != 0):
        raise ConfigError(f"{path}: WFDB multi-frequency or skewed signals are not supported")
    gain, baseline, units = 200.0, None, "mV"
    if len(fields) > 2:
        gain_match = re.fullmatch(r"([-+0-9.eE]+)(?:\((-?\d+)\))?(?:/(\S+))?", fields[2])
        if not gain_match:
            raise ConfigError(f"{path}: cannot read the gain field {fields[2]!r}")
        gain = float(gain_match.group(1)) or 200.0  # WFDB: gain 0 means uncalibrated, 200 units per mV
        baseline = int(gain_match.group(2)) if gain_match.group(2) is not None else None
        units = gain_match.group(3) or "mV"
    adc_zero = int(fields[4]) if len(fields) > 4 else 0
    description = " ".join(fields[8:]) if len(fields) > 8 else ""
    if units.lower() not in _UNIT_TO_MV:
        raise ConfigError(f"{path}: signal {description or fields[0]} is in {units!r}; expected mV, uV or V")
    return _WfdbSignal(fields[0], int(fmt), int(offset or 0), gain / _UNIT_TO_MV[units.lower()],
                       adc_zero if baseline is None else baseline, description)


def _read_wfdb_samples(directory: Path, signals: list[_WfdbSignal], nsamp: int | None, path: Path) -> np.ndarray:
    """(T, nsig) physical values in mV; signals sharing a file are interleaved frame by frame."""
    columns: list[np.ndarray | None] = [None] * len(signals)
    for file in dict.fromkeys(s.file for s in signals):
        members = [i for i, s in enumerate(signals) if s.file == file]
        fmt, offset = signals[members[0]].fmt, signals[members[0]].offset
        if any(signals[i].fmt != fmt for i in members):
            raise ConfigError(f"{path}: signals in {file} mix formats")
        dat = directory / file
        if not dat.is_file():
            raise ConfigError(f"{dat}: WFDB signal file missing")
        raw = _decode(dat.read_bytes()[offset:], fmt)
        frames = len(raw) // len(members) if nsamp is None else nsamp
        if len(raw) < frames * len(members):
            raise ConfigError(f"{dat}: holds {len(raw) // len(members)} samples per signal, the header says {frames}")
        raw = raw[: frames * len(members)].reshape(frames, len(members))
        invalid = -32768 if fmt == 16 else -2048
        for j, i in enumerate(members):
            digital = raw[:, j]
            if np.any(digital == invalid):
                raise ConfigError(f"{dat}: signal {signals[i].description} contains invalid (missing) samples")
            columns[i] = (digital - signals[i].baseline) / signals[i].gain
    return np.stack(columns, axis=1)


def _decode(data: bytes, fmt: int) -> np.ndarray:
    if fmt == 16:
        return np.frombuffer(data[: len(data) // 2 * 2], dtype="<i2").astype(np.int64)
    triples = np.frombuffer(data[: len(data) // 3 * 3], dtype=np.uint8).reshape(-1, 3).astype(np.int64)
    out = np.empty(2 * len(triples), dtype=np.int64)
    out[0::2] = triples[:, 0] | ((triples[:, 1] & 0x0F) << 8)
    out[1::2] = triples[:, 2] | ((triples[:, 1] & 0xF0) << 4)
    out[out > 2047] -= 4096
    return out


def check_amplitude(record: EcgRecord) -> None:
    """Refuse ECGs a network cannot interpret: non-finite, flat or absurdly large leads."""
    for j, lead in enumerate(LEAD_NAMES):
        x = record.signals[:, j]
        if not np.all(np.isfinite(x)):
            raise ConfigError(f"{record.source}: lead {lead} has non-finite values")
        peak = float(np.max(np.abs(x))) if x.size else 0.0
        if peak > MAX_AMPLITUDE_MV:
            raise ConfigError(f"{record.source}: lead {lead} reaches {peak:.4g} mV, more than {MAX_AMPLITUDE_MV:g} mV "
                              "can come from a heart; is the file in microvolts?")
        if x.size == 0 or np.ptp(x) < 1e-6:
            raise ConfigError(f"{record.source}: lead {lead} is flat ({'all zero' if peak == 0 else 'constant'}); "
                              "a disconnected or missing lead cannot be used")


def prepare_ecg(record: EcgRecord, samples: int) -> np.ndarray:
    """Resample to 1 kHz and crop or zero-pad to ``samples``: (samples, 12) in mV."""
    check_amplitude(record)
    x = record.signals
    rate = 1000.0 / record.dt_ms
    if abs(rate - TARGET_RATE_HZ) > 1e-6 * TARGET_RATE_HZ:
        ratio = Fraction(TARGET_RATE_HZ / rate).limit_denominator(1000)
        x = resample_poly(x, ratio.numerator, ratio.denominator, axis=0)
    if len(x) > samples:
        warnings.warn(f"{record.source}: {len(x)} ms long; using the first {samples} ms", EcgWarning, stacklevel=2)
        x = x[:samples]
    elif len(x) < samples:
        warnings.warn(f"{record.source}: {len(x)} ms long; zero-padded to {samples} ms", EcgWarning, stacklevel=2)
        x = np.concatenate([x, np.zeros((samples - len(x), x.shape[1]))])
    return x.astype(np.float32)


@dataclass
class Prediction:
    ecg: np.ndarray  # (T, 12) mV, the network's input before scaling
    act: np.ndarray  # (75,) ms
    vm: np.ndarray | None  # (T, 75) mV
    architecture: str


def predict(checkpoint: str | Path, ecg_path: str | Path, sampling_rate_hz: float | None = None) -> Prediction:
    """Read, check and prepare an ECG, then run the checkpoint's network on it."""
    state = load_checkpoint(checkpoint)
    model = model_from_checkpoint(state, checkpoint)
    inputs = state["inputs"]
    ecg = prepare_ecg(read_ecg(ecg_path, sampling_rate_hz), int(inputs["samples"]))
    x = scale_ecg(ecg, inputs["scaling"], np.asarray(inputs["ecg_mean"]), np.asarray(inputs["ecg_std"]))
    with torch.no_grad():
        physical = model.to_physical(model(torch.from_numpy(x)[None]))
    vm = physical["vm"][0].numpy().T if "vm" in physical else None
    return Prediction(ecg, physical["act"][0].numpy(), vm, model.architecture)


def write_prediction(path: str | Path, prediction: Prediction, source: str, checkpoint: str) -> Path:
    """HDF5 with ``act`` (75,) ms, ``vm`` (T, 75) mV when predicted, and the prepared ``ecg``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with h5py.File(tmp, "w") as f:
        f.attrs.update(format="ecgi-prediction", format_version=1, source=source, checkpoint=checkpoint,
                       architecture=prediction.architecture)
        act = f.create_dataset("act", data=prediction.act.astype(np.float32))
        act.attrs.update(sites=list(SITE_NAMES), units="ms")
        ecg = f.create_dataset("ecg", data=prediction.ecg)
        ecg.attrs.update(leads=list(LEAD_NAMES), dt_ms=1.0, units="mV")
        if prediction.vm is not None:
            vm = f.create_dataset("vm", data=prediction.vm.astype(np.float32))
            vm.attrs.update(sites=list(SITE_NAMES), dt_ms=1.0, units="mV")
            f.create_dataset("apd90", data=apd90_ms(prediction.vm.T).astype(np.float32)).attrs["units"] = "ms"
    os.replace(tmp, path)
    return path


def format_table(prediction: Prediction) -> str:
    """One line per site: group, activation time and (with traces) APD90."""
    apd = apd90_ms(prediction.vm.T) if prediction.vm is not None else None
    header = f"{'site':<18} {'group':<6} {'act (ms)':>9}" + (f" {'APD90 (ms)':>11}" if apd is not None else "")
    lines = [header, "-" * len(header)]
    for i, site in enumerate(SITE_NAMES):
        line = f"{site:<18} {site_group(site):<6} {prediction.act[i]:9.1f}"
        if apd is not None:
            line += f" {apd[i]:11.1f}" if np.isfinite(apd[i]) else f" {'-':>11}"
        lines.append(line)
    lines.append(f"earliest {prediction.act.min():.1f} ms ({SITE_NAMES[int(prediction.act.argmin())]}), "
                 f"latest {prediction.act.max():.1f} ms ({SITE_NAMES[int(prediction.act.argmax())]})")
    return "\n".join(lines)
