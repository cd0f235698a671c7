"""Read a 12-lead ECG from the files hospitals and databases export.

Every reader returns an ``EcgRecord``: (T, 12) in mV, columns in
``LEAD_NAMES`` order, with the sampling step and the notices a user should
see (derived leads, converted units).  Anything unreadable, implausible or
incomplete raises ``ConfigError`` with one line naming the file and the fix.

Formats (chosen by suffix; ``.xml`` by its root element):

* HDF5 ``.h5``/``.hdf5`` -- dataset ``ecg`` or ``leads`` (T, n) in mV, attrs
  ``dt_ms`` and optionally ``leads`` (names in column order) and ``units``.
* CSV ``.csv`` -- a header naming the leads (any order, any case; a unit may
  follow the name: ``V1 (uV)``, ``V1_uV``, ``V1 [mV]``; mV without one) and
  optionally a time column (``time_ms``/``t_ms``, ``time_s``/``t_s``, or
  ``time``/``t``: s if the step is below 0.1, else ms).  Without a time
  column ``--sampling-rate`` is required.
* WFDB ``.hea`` with ``.dat`` (any format the ``wfdb`` package reads) or the
  PhysioNet/CinC challenge variant ``.hea`` + ``.mat``.
* DICOM ``.dcm`` -- 12-lead / general ECG waveform storage (``pydicom``); the
  first multiplex group holding the 12 leads is read (the rhythm strip, not a
  stored median beat), channel sensitivity, baseline and units applied.
* GE MUSE XML -- ``RestingECG/Waveform`` of type ``Rhythm``, base64 int16
  LeadData (``LeadSampleCountTotal`` samples of ``LeadSampleSize`` = 2 bytes)
  with ``LeadAmplitudeUnitsPerBit`` and ``LeadAmplitudeUnits``.
* HL7 aECG XML -- ``AnnotatedECG``; the rhythm series' ``SLIST_PQ`` digits
  with ``origin`` and ``scale`` and their units; ``GLIST_TS`` increment.

XML is parsed with ``defusedxml`` (no external entities, no entity bombs).
"""
from __future__ import annotations

import base64
import binascii
import csv
import io
import math
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from solver.common.errors import ConfigError
from solver.common.sites import LEAD_NAMES

MIN_RATE_HZ = 50.0
MAX_RATE_HZ = 20000.0
MIN_DURATION_MS = 300.0  # shorter than one QRS complex plus its surroundings
#: Samples per lead a file may declare: 20 min at 1 kHz.  A record is read whole, so a
#: declared size is checked before reading (a small file can declare gigabytes).
MAX_SAMPLES = 1_200_000
#: Plausible QRS amplitudes: a lead's largest deflection (mV) lies between these.
MIN_PEAK_MV = 0.02
MAX_AMPLITUDE_MV = 20.0
LIMB_DERIVED = ("III", "aVR", "aVL", "aVF")
#: Recorded limb leads obey Einthoven and Goldberger to within rounding and noise (0.1-2 % RMS
#: on the records in tests/data/clinical); a larger mismatch means a wrong gain or label.
LIMB_LAW_TOLERANCE = 0.10
PRECORDIAL = ("V1", "V2", "V3", "V4", "V5", "V6")

_UNIT_TO_MV = {"mv": 1.0, "uv": 1e-3, "µv": 1e-3, "μv": 1e-3, "nv": 1e-6, "v": 1e3, "volt": 1e3}
_TIME_COLUMNS = {"time_ms": 1.0, "t_ms": 1.0, "time_s": 1000.0, "t_s": 1000.0, "time": None, "t": None}


class EcgWarning(UserWarning):
    """The ECG was usable but changed (converted, derived, cropped, padded) or partly ignored."""


@dataclass
class EcgRecord:
    signals: np.ndarray  # (T, 12) mV, columns in LEAD_NAMES order
    dt_ms: float
    source: Path
    notices: list[str] = field(default_factory=list)

    @property
    def rate_hz(self) -> float:
        return 1000.0 / self.dt_ms

    @property
    def duration_ms(self) -> float:
        return len(self.signals) * self.dt_ms


def read_ecg(path: str | Path, sampling_rate_hz: float | None = None) -> EcgRecord:
    """Read an ECG file by its suffix and check it (rate, length, units, leads)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such ECG file")
    if sampling_rate_hz is not None:
        check_rate(sampling_rate_hz, path, "--sampling-rate")
    reader = _reader_for(path)
    record = reader(path, sampling_rate_hz)
    check_record(record)
    for notice in record.notices:
        warnings.warn(f"{path}: {notice}", EcgWarning, stacklevel=2)
    return record


def _reader_for(path: Path) -> Callable[[Path, float | None], EcgRecord]:
    suffix = path.suffix.lower()
    if suffix in (".h5", ".hdf5"):
        return _read_hdf5
    if suffix == ".csv":
        return _read_csv
    if suffix in (".hea", ".dat", ".mat"):
        return _read_wfdb
    if suffix in (".dcm", ".dicom"):
        return _read_dicom
    if suffix == ".xml":
        return _read_xml
    raise ConfigError(f"{path}: unknown ECG file type {suffix!r}; use HDF5 (.h5), CSV (.csv), WFDB (.hea + .dat/.mat), "
                      "DICOM (.dcm), GE MUSE or HL7 aECG XML (.xml)")


# ---------------------------------------------------------------- checks


def check_rate(rate_hz: float, path: Path, what: str = "sampling rate") -> float:
    if not (math.isfinite(rate_hz) and MIN_RATE_HZ <= rate_hz <= MAX_RATE_HZ):
        raise ConfigError(f"{path}: {what} {rate_hz:g} Hz is not a plausible ECG sampling rate "
                          f"({MIN_RATE_HZ:g}-{MAX_RATE_HZ:g} Hz)")
    return rate_hz


#: The fix for a malformed field: the file is the device's or the database's, not the user's work.
_REEXPORT = "correct the field or export the record again"


def number(text: str | bytes | float | None, path: Path, what: str, *, positive: bool = False) -> float:
    """A numeric field of a file as a finite float, or one line naming the field (``what``), its value and the fix."""
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    if text is None or not str(text).strip():
        raise ConfigError(f"{path}: {what} is missing; {_REEXPORT}")
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise ConfigError(f"{path}: {what} {str(text).strip()!r} is not a number; {_REEXPORT}") from None
    if not math.isfinite(value):
        raise ConfigError(f"{path}: {what} is {value}; it must be a finite number: {_REEXPORT}")
    if positive and not value > 0:
        raise ConfigError(f"{path}: {what} is {value:g}; it must be positive: {_REEXPORT}")
    return value


def whole_number(text: str | bytes | float | None, path: Path, what: str) -> int:
    """A count field (samples, bytes) as a non-negative integer."""
    value = number(text, path, what)
    if value < 0 or value != int(value):
        raise ConfigError(f"{path}: {what} is {value:g}; it must be a whole number, 0 or more: {_REEXPORT}")
    return int(value)


def check_length(samples: int, path: Path, what: str) -> None:
    """Refuse a declared length before reading it: a record is held in memory whole."""
    if samples > MAX_SAMPLES:
        raise ConfigError(f"{path}: {what} declares {samples:,} samples per lead; at most {MAX_SAMPLES:,} "
                          f"({MAX_SAMPLES / 60000:g} min at 1 kHz) are read: crop the record")


def check_record(record: EcgRecord) -> None:
    """Rate, length and amplitude plausibility of a read record (units are settled by now)."""
    path = record.source
    check_rate(record.rate_hz, path)
    if record.duration_ms < MIN_DURATION_MS:
        raise ConfigError(f"{path}: only {record.duration_ms:.0f} ms long; an ECG needs at least {MIN_DURATION_MS:.0f} ms")
    check_amplitude(record)


def check_amplitude(record: EcgRecord) -> None:
    """Refuse what no heart produces: non-finite, flat, volt-sized or microvolt-sized leads."""
    for j, lead in enumerate(LEAD_NAMES):
        x = record.signals[:, j]
        if not np.all(np.isfinite(x)):
            raise ConfigError(f"{record.source}: lead {lead} has non-finite values")
        peak = float(np.max(np.abs(x))) if x.size else 0.0
        # Measured from the lead's median: a DC electrode offset is not cardiac amplitude.
        swing = float(np.max(np.abs(x - np.median(x)))) if x.size else 0.0
        if swing > MAX_AMPLITUDE_MV:
            raise ConfigError(f"{record.source}: lead {lead} reaches {swing:.4g} mV, more than {MAX_AMPLITUDE_MV:g} mV "
                              "can come from a heart; is the file in microvolts? Name the unit (e.g. a CSV column 'V1 (uV)')")
        if x.size == 0 or np.ptp(x) < 1e-6:
            raise ConfigError(f"{record.source}: lead {lead} is flat ({'all zero' if peak == 0 else 'constant'}); "
                              "a disconnected or missing lead cannot be used")
    spans = np.ptp(record.signals, axis=0)
    if float(np.max(spans)) < MIN_PEAK_MV:
        raise ConfigError(f"{record.source}: the largest lead spans {np.max(spans):.3g} mV, less than a heart's "
                          f"{MIN_PEAK_MV:g} mV; is the file in volts? Name the unit (e.g. a CSV column 'V1 (V)')")


# ---------------------------------------------------------------- leads and units


_ALIASES = {"di": "I", "dii": "II", "diii": "III", "d1": "I", "d2": "II", "d3": "III", "1": "I", "2": "II", "3": "III"}


def lead_name(raw: str) -> str | None:
    """The standard name of a lead label from any format (``Lead I (Einthoven)``, ``MDC_ECG_LEAD_AVR``, ``v1``)."""
    text = raw.strip()
    text = re.sub(r"^(mdc_ecg_lead_|lead[\s_-]*)", "", text, flags=re.IGNORECASE)
    text = re.sub(r"\s*\((einthoven|goldberger|wilson)\)\s*$", "", text, flags=re.IGNORECASE).strip()
    key = text.lower()
    for lead in LEAD_NAMES:
        if key == lead.lower():
            return lead
    return _ALIASES.get(key)


def unit_scale(unit: str, path: Path, what: str) -> float:
    """mV per unit of ``unit`` (mV, uV, µV, V, MICROVOLTS, ...)."""
    key = unit.strip().lower().replace("micro", "u").replace("milli", "m").rstrip("s")
    key = {"uvolt": "uv", "mvolt": "mv"}.get(key, key)
    if key not in _UNIT_TO_MV:
        raise ConfigError(f"{path}: {what} is in {unit!r}; expected mV, uV or V")
    return _UNIT_TO_MV[key]


def assemble_leads(columns: dict[str, np.ndarray], path: Path, found: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """Named columns (mV) -> (T, 12) in standard order; III/aVR/aVL/aVF derived from I and II when missing.

    Einthoven and Goldberger: III = II - I, aVR = -(I + II)/2, aVL = I - II/2, aVF = II - I/2.
    """
    notices: list[str] = []
    missing_precordial = [lead for lead in PRECORDIAL if lead not in columns]
    if missing_precordial:
        raise ConfigError(f"{path}: missing lead(s) {', '.join(missing_precordial)}; found {', '.join(found) or 'none'}; "
                          "precordial leads cannot be derived from the others")
    missing_limb = [lead for lead in ("I", "II") if lead not in columns]
    if missing_limb:
        raise ConfigError(f"{path}: missing lead(s) {', '.join(missing_limb)}; found {', '.join(found) or 'none'}; "
                          "leads I and II are needed (the other limb leads follow from them)")
    lead_i, lead_ii = columns["I"], columns["II"]
    derived = {"III": lead_ii - lead_i, "aVR": -(lead_i + lead_ii) / 2, "aVL": lead_i - lead_ii / 2, "aVF": lead_ii - lead_i / 2}
    made = [lead for lead in LIMB_DERIVED if lead not in columns]
    if made:
        notices.append(f"lead(s) {', '.join(made)} derived from I and II")
    broken = limb_law_mismatch(columns)
    if broken:  # a warning, not a refusal: the precordial leads may still be right
        notices.append(f"the recorded limb leads break {broken}; are the leads' gains and labels right?")
    full = {**derived, **columns}
    return np.stack([np.asarray(full[lead], dtype=np.float64) for lead in LEAD_NAMES], axis=1), notices


def limb_law_mismatch(columns: dict[str, np.ndarray]) -> str:
    """Which law the recorded limb leads break, and by how much: Einthoven's III = II - I and
    Goldberger's aVR + aVL + aVF = 0, the residual as a share of the leads' RMS; '' when both hold.
    Each lead is taken less its mean (linear, unlike the median): a DC electrode offset is not a gain error."""
    def centred(lead: str) -> np.ndarray:
        return columns[lead] - np.mean(columns[lead])

    def share(residual: np.ndarray, leads: np.ndarray) -> float:
        size = float(np.sqrt(np.mean(np.square(leads))))
        return float(np.sqrt(np.mean(np.square(residual)))) / size if size > 0 else 0.0

    broken = []
    if "III" in columns:
        iii = centred("III")
        mismatch = share(iii - (centred("II") - centred("I")), iii)
        if mismatch > LIMB_LAW_TOLERANCE:
            broken.append(f"Einthoven's law (III - (II - I) is {mismatch:.0%} of III's RMS, not 0)")
    if all(lead in columns for lead in ("aVR", "aVL", "aVF")):
        augmented = np.stack([centred(lead) for lead in ("aVR", "aVL", "aVF")])
        mismatch = share(augmented.sum(axis=0), augmented)
        if mismatch > LIMB_LAW_TOLERANCE:
            broken.append(f"Goldberger's law (aVR + aVL + aVF is {mismatch:.0%} of their RMS, not 0)")
    return " and ".join(broken)


def named_columns(names: Sequence[str], data: np.ndarray, scales: Sequence[float], path: Path) -> tuple[dict[str, np.ndarray], list[str]]:
    """Map raw column labels to standard leads (mV); duplicates refused, unknown ones ignored with a notice."""
    columns: dict[str, np.ndarray] = {}
    ignored: list[str] = []
    for j, raw in enumerate(names):
        lead = lead_name(raw)
        if lead is None:
            ignored.append(raw.strip() or f"column {j + 1}")
            continue
        if lead in columns:
            raise ConfigError(f"{path}: lead {lead} appears twice (columns {raw!r} and an earlier one); keep one")
        columns[lead] = data[:, j].astype(np.float64) * scales[j]
    notices = [f"ignoring signal(s) {', '.join(ignored)}"] if ignored else []
    return columns, notices


def _record(path: Path, names: Sequence[str], data: np.ndarray, scales: Sequence[float], dt_ms: float,
            notices: Sequence[str] = ()) -> EcgRecord:
    columns, ignored = named_columns(names, data, scales, path)
    signals, derived = assemble_leads(columns, path, [n.strip() for n in names])
    return EcgRecord(signals, dt_ms, path, [*notices, *ignored, *derived])


def _one_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


# ---------------------------------------------------------------- HDF5


def _read_hdf5(path: Path, rate_hz: float | None) -> EcgRecord:
    import h5py

    try:
        with h5py.File(path, "r") as f:
            name = next((n for n in ("ecg", "leads") if n in f and isinstance(f[n], h5py.Dataset)), None)
            if name is None:
                raise ConfigError(f"{path}: no dataset 'ecg' or 'leads'")
            ds = f[name]
            names = [n.decode() if isinstance(n, bytes) else str(n) for n in np.atleast_1d(ds.attrs.get("leads", LEAD_NAMES))]
            _check_hdf5_dataset(ds, names, path)  # before reading: the shape is declared, not stored
            data = ds[()]
            dt = ds.attrs.get("dt_ms", f.attrs.get("dt_ms"))
            unit = ds.attrs.get("units", "mV")
            unit = unit.decode() if isinstance(unit, bytes) else str(unit)
    except OSError as exc:
        raise ConfigError(f"{path}: not a readable HDF5 file ({_one_line(exc)})") from None
    if dt is not None:
        if np.size(dt) != 1:
            raise ConfigError(f"{path}: attribute dt_ms holds {np.size(dt)} values; expected one number (ms)")
        dt_ms = number(np.asarray(dt).item(), path, "attribute dt_ms", positive=True)
    elif rate_hz is None:
        raise ConfigError(f"{path}: dataset {name!r} has no dt_ms attribute; give the sampling rate with --sampling-rate HZ")
    else:
        dt_ms = 1000.0 / rate_hz
    scale = unit_scale(unit, path, f"dataset {name!r}")
    return _record(path, names, data, [scale] * len(names), dt_ms)


def _check_hdf5_dataset(ds, names: Sequence[str], path: Path) -> None:
    """Shape and type as declared by the file: (T, one column per lead) of numbers, T within MAX_SAMPLES."""
    name = ds.name.lstrip("/")
    if len(ds.shape) != 2 or ds.shape[1] != len(names):
        raise ConfigError(f"{path}: dataset {name!r} has shape {ds.shape}; expected (T, {len(names)}) with one column per lead")
    if ds.dtype.kind not in "iuf":
        raise ConfigError(f"{path}: dataset {name!r} holds {ds.dtype} values; expected integers or floats (mV)")
    check_length(ds.shape[0], path, f"dataset {name!r} of shape {ds.shape}")


# ---------------------------------------------------------------- CSV


_UNIT_SUFFIX = re.compile(r"^(.*?)(?:\s*[\(\[]\s*([^\)\]]+)\s*[\)\]]|_(mv|uv|µv|μv|v))\s*$", re.IGNORECASE)


def _split_unit(header: str) -> tuple[str, str]:
    match = _UNIT_SUFFIX.match(header.strip())
    if match and lead_name(match.group(1)) is not None:
        return match.group(1).strip(), (match.group(2) or match.group(3)).strip()
    return header.strip(), "mV"


def _read_csv(path: Path, rate_hz: float | None) -> EcgRecord:
    raw = path.read_bytes()
    if b"\x00" in raw[:4096]:
        raise ConfigError(f"{path}: binary data, not a CSV text file")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text; a CSV ECG must be a text file") from None
    rows = [(i + 1, row) for i, row in enumerate(csv.reader(io.StringIO(text))) if row and any(c.strip() for c in row)]
    if len(rows) < 2:
        raise ConfigError(f"{path}: a CSV ECG needs a header row naming the leads and at least one data row")
    header = [h.strip() for h in rows[0][1]]
    ragged = [line for line, row in rows[1:] if len(row) != len(header)]
    if ragged:
        shown = ", ".join(map(str, ragged[:5])) + (" ..." if len(ragged) > 5 else "")
        raise ConfigError(f"{path}: ragged rows: line(s) {shown} do not have the header's {len(header)} values")
    try:
        data = np.array([[float(c) for c in row] for _, row in rows[1:]], dtype=np.float64)
    except ValueError as exc:
        raise ConfigError(f"{path}: non-numeric value in the data rows ({exc})") from None
    names, units = zip(*(_split_unit(h) for h in header))
    time_cols = [i for i, h in enumerate(names) if h.lower() in _TIME_COLUMNS]
    if not time_cols:
        if rate_hz is None:
            raise ConfigError(f"{path}: there is no time column; give the sampling rate with --sampling-rate HZ")
        dt_ms = 1000.0 / rate_hz
    else:
        col = time_cols[0]
        dt_ms = _dt_from_time_column(data[:, col], _TIME_COLUMNS[names[col].lower()], path)
        if rate_hz is not None and abs(1000.0 / rate_hz - dt_ms) > 0.01 * dt_ms:
            raise ConfigError(f"{path}: --sampling-rate {rate_hz:g} Hz contradicts the time column ({1000.0 / dt_ms:g} Hz)")
        names, units = names[:col] + names[col + 1:], units[:col] + units[col + 1:]
        data = np.delete(data, col, axis=1)
    scales = [unit_scale(u, path, f"column {n!r}") for n, u in zip(names, units)]
    return _record(path, names, data, scales, dt_ms)


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


# ---------------------------------------------------------------- WFDB


def _read_wfdb(path: Path, rate_hz: float | None) -> EcgRecord:
    import wfdb

    header = path.with_suffix(".hea")
    if not header.is_file():
        raise ConfigError(f"{header}: WFDB header missing (a {path.suffix} file needs its .hea)")
    try:
        head = wfdb.rdheader(str(header.with_suffix("")))
    except Exception as exc:  # wfdb raises bare ValueError/IndexError/... on a malformed header
        raise ConfigError(f"{header}: malformed WFDB header ({_one_line(exc)})") from None
    # The rate as written: wfdb puts its default of 250 Hz in place of a field it cannot parse (-500, nan).
    written = _header_rate_field(header)
    fs = check_rate(number(written, header, "sampling frequency in the header", positive=True) if written is not None
                    else float(head.fs or 0), header, "sampling frequency")
    if getattr(head, "seg_name", None):
        raise ConfigError(f"{header}: multi-segment WFDB records are not supported")
    if head.sig_len:
        check_length(int(head.sig_len), header, "the header")
    try:
        record = wfdb.rdrecord(str(header.with_suffix("")), physical=True, smooth_frames=True)
    except Exception as exc:  # missing/short signal file, unknown format: one line for the user
        raise ConfigError(f"{header}: cannot read the WFDB signals ({_one_line(exc)})") from None
    if record.p_signal is None or record.p_signal.ndim != 2:
        raise ConfigError(f"{header}: the record holds no signals")
    data = record.p_signal
    if np.isnan(data).any():
        bad = [record.sig_name[j] for j in range(data.shape[1]) if np.isnan(data[:, j]).any()]
        raise ConfigError(f"{header}: signal(s) {', '.join(bad)} contain invalid (missing) samples")
    scales = [unit_scale(u or "mV", header, f"signal {n}") for n, u in zip(record.sig_name, record.units)]
    return _record(header, record.sig_name, data, scales, 1000.0 / fs)


def _header_rate_field(header: Path) -> str | None:
    """The sampling frequency as written on the record line (``fs`` of ``fs``, ``fs/counter`` or ``fs(base)``)."""
    for line in header.read_text(errors="replace").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            fields = line.split()
            return re.split(r"[/(]", fields[2])[0] if len(fields) >= 3 else None
    return None


# ---------------------------------------------------------------- DICOM


def _read_dicom(path: Path, rate_hz: float | None) -> EcgRecord:
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(path)
    except (InvalidDicomError, OSError, ValueError, EOFError) as exc:
        raise ConfigError(f"{path}: not a readable DICOM file ({_one_line(exc)})") from None
    if "WaveformSequence" not in ds:
        raise ConfigError(f"{path}: DICOM file without a waveform (modality {ds.get('Modality', '?')}); "
                          "expected 12-lead or general ECG waveform storage")
    for index, group in enumerate(ds.WaveformSequence):
        group_label = str(group.get("MultiplexGroupLabel", f"group {index}"))
        channels = group.get("ChannelDefinitionSequence")
        if channels is None:
            raise ConfigError(f"{path}: waveform group {group_label!r} has no ChannelDefinitionSequence (003A,0200); "
                              f"without it no channel can be matched to a lead: {_REEXPORT}")
        labels = [_dicom_channel_label(ch) for ch in channels]
        if sum(lead_name(label) is not None for label in labels) < 8:
            continue
        fs = check_rate(number(group.get("SamplingFrequency"), path,
                               f"SamplingFrequency (003A,001A) of waveform group {group_label!r}", positive=True),
                        path, "sampling frequency")
        try:
            raw = ds.waveform_array(index)  # applies sensitivity, correction factor and baseline
        except Exception as exc:
            raise ConfigError(f"{path}: cannot decode waveform group {index} ({_one_line(exc)})") from None
        scales = [_dicom_unit_scale(ch, path) for ch in channels]
        return _record(path, labels, np.asarray(raw, dtype=np.float64), scales, 1000.0 / fs,
                       [f"read waveform group {group_label!r}"] if index else [])
    raise ConfigError(f"{path}: no waveform group holds the 12 ECG leads")


def _dicom_channel_label(channel) -> str:
    if "ChannelSourceSequence" in channel and len(channel.ChannelSourceSequence):
        return str(channel.ChannelSourceSequence[0].get("CodeMeaning", ""))
    return str(channel.get("ChannelLabel", ""))


def _dicom_unit_scale(channel, path: Path) -> float:
    units = channel.get("ChannelSensitivityUnitsSequence")
    code = str(units[0].get("CodeValue", "mV")) if units else "mV"
    return unit_scale(code, path, f"channel {_dicom_channel_label(channel)!r}")


# ---------------------------------------------------------------- XML (GE MUSE, HL7 aECG)


def _parse_xml(path: Path):
    try:
        from defusedxml import ElementTree as SafeET
        from defusedxml.common import DefusedXmlException
    except ImportError:  # the stdlib parser expands no external entities (Python >= 3.7.1) but not bombs
        import xml.etree.ElementTree as SafeET

        DefusedXmlException = ValueError
    try:
        return SafeET.parse(path).getroot()
    except DefusedXmlException as exc:
        raise ConfigError(f"{path}: refused XML with entity declarations or external references ({_one_line(exc)})") from None
    except Exception as exc:  # ParseError, decoding errors of binary junk
        raise ConfigError(f"{path}: not well-formed XML ({_one_line(exc)})") from None


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _read_xml(path: Path, rate_hz: float | None) -> EcgRecord:
    root = _parse_xml(path)
    kind = _local(root.tag)
    if kind == "RestingECG":
        return _read_muse(root, path)
    if kind == "AnnotatedECG":
        return _read_aecg(root, path)
    raise ConfigError(f"{path}: XML root <{kind}> is neither GE MUSE <RestingECG> nor HL7 <AnnotatedECG>")


def _text(element, name: str, path: Path) -> str:
    child = element.find(name)
    if child is None or child.text is None:
        raise ConfigError(f"{path}: <{_local(element.tag)}> lacks <{name}>")
    return child.text.strip()


def _read_muse(root, path: Path) -> EcgRecord:
    """GE MUSE: the ``Rhythm`` waveform (the ``Median`` one is the device's average beat).

    Each ``LeadData`` holds ``LeadSampleCountTotal`` samples of ``LeadSampleSize``
    bytes (2: little-endian int16), base64 in ``WaveFormData``, times
    ``LeadAmplitudeUnitsPerBit`` in ``LeadAmplitudeUnits``, at ``SampleBase`` Hz.
    """
    waveforms = root.findall("Waveform")
    rhythm = [w for w in waveforms if (w.findtext("WaveformType") or "").strip().lower() == "rhythm"]
    if not (rhythm or waveforms):
        raise ConfigError(f"{path}: MUSE file without a <Waveform>")
    wave = (rhythm or waveforms)[0]
    fs = number(wave.findtext("SampleBase"), path, "<SampleBase> (samples per second)", positive=True)
    exponent = wave.findtext("SampleExponent")
    if exponent is not None and exponent.strip() and number(exponent, path, "<SampleExponent>") != 0:
        raise ConfigError(f"{path}: <SampleExponent> is {exponent.strip()}; only 0 (SampleBase in Hz, as MUSE writes it) is read")
    check_rate(fs, path, "SampleBase")
    names, columns, scales = [], [], []
    for lead in wave.findall("LeadData"):
        name = _text(lead, "LeadID", path)
        names.append(name)
        columns.append(_muse_samples(lead, name, path))
        per_bit = lead.findtext("LeadAmplitudeUnitsPerBit")
        per_bit = 1.0 if per_bit is None else number(per_bit, path, f"lead {name}: <LeadAmplitudeUnitsPerBit>", positive=True)
        unit = (lead.findtext("LeadAmplitudeUnits") or "MICROVOLTS").strip()
        scales.append(per_bit * unit_scale(unit, path, f"lead {name}"))
    if not columns:
        raise ConfigError(f"{path}: MUSE waveform without <LeadData>")
    length = min(len(c) for c in columns)
    if any(len(c) != length for c in columns):
        raise ConfigError(f"{path}: MUSE leads have different lengths ({sorted({len(c) for c in columns})})")
    return _record(path, names, np.stack(columns, axis=1), scales, 1000.0 / fs)


def _muse_samples(lead, name: str, path: Path) -> np.ndarray:
    """One lead's digital samples: ``LeadSampleCountTotal`` int16 values (``LeadSampleSize`` is bytes per sample)."""
    size = lead.findtext("LeadSampleSize")
    if size is not None and whole_number(size, path, f"lead {name}: <LeadSampleSize> (bytes per sample)") != 2:
        raise ConfigError(f"{path}: lead {name}: <LeadSampleSize> is {size.strip()} bytes per sample; "
                          "MUSE stores 2 (16-bit samples), other sizes are not supported")
    try:
        raw = base64.b64decode(_text(lead, "WaveFormData", path), validate=False)  # line breaks are skipped
    except (binascii.Error, ValueError) as exc:
        raise ConfigError(f"{path}: lead {name}: WaveFormData is not base64 ({_one_line(exc)})") from None
    stored = len(raw) // 2
    count = lead.findtext("LeadSampleCountTotal")
    count = stored if count is None else whole_number(count, path, f"lead {name}: <LeadSampleCountTotal>")
    if count > stored:
        raise ConfigError(f"{path}: lead {name}: <LeadSampleCountTotal> is {count} but WaveFormData holds "
                          f"{stored} samples; the file is truncated: {_REEXPORT}")
    return np.frombuffer(raw[: 2 * count], dtype="<i2").astype(np.float64)


def _read_aecg(root, path: Path) -> EcgRecord:
    ns = {"h": root.tag[1:].split("}")[0]} if root.tag.startswith("{") else {}
    p = "h:" if ns else ""
    series = root.findall(f".//{p}series", ns)
    if not series:
        raise ConfigError(f"{path}: HL7 aECG without a <series>")
    for item in series:
        code = item.find(f"{p}code", ns)
        if code is not None and "RHYTHM" not in (code.get("code") or "RHYTHM").upper():
            continue  # a derived (median) series
        return _aecg_series(item, p, ns, path)
    raise ConfigError(f"{path}: HL7 aECG without a rhythm series")


def _aecg_series(series, p: str, ns: dict, path: Path) -> EcgRecord:
    dt_ms = None
    names, columns, scales = [], [], []
    # Only the series' own sequence set: a nested <derivation> holds the device's median beat.
    for component in series.findall(f"{p}component/{p}sequenceSet/{p}component/{p}sequence", ns):
        code = component.find(f"{p}code", ns)
        value = component.find(f"{p}value", ns)
        if code is None or value is None:
            continue
        label = code.get("code") or ""
        if label.endswith("TIME_ABSOLUTE") or label.endswith("TIME_RELATIVE"):
            increment = value.find(f"{p}increment", ns)
            if increment is None:
                raise ConfigError(f"{path}: time sequence without <increment>")
            step = number(increment.get("value"), path, "value of the time sequence's <increment>", positive=True)
            dt_ms = step * 1000.0 / unit_scale_time(increment.get("unit", "s"), path)
            continue
        origin, scale, digits = value.find(f"{p}origin", ns), value.find(f"{p}scale", ns), value.find(f"{p}digits", ns)
        if scale is None or digits is None or digits.text is None:
            raise ConfigError(f"{path}: lead {label}: SLIST_PQ needs <scale> and <digits>")
        try:
            numbers = np.array(digits.text.split(), dtype=np.float64)
        except ValueError:
            raise ConfigError(f"{path}: lead {label}: <digits> holds non-numbers") from None
        # value = origin + scale x digit (HL7 SLIST); an absent origin is 0.
        step = number(scale.get("value"), path, f"lead {label}: value of <scale>")
        offset = number(origin.get("value"), path, f"lead {label}: value of <origin>") if origin is not None else 0.0
        unit = scale.get("unit", "uV")
        if origin is not None and origin.get("unit", unit) != unit:
            raise ConfigError(f"{path}: lead {label}: origin and scale in different units")
        names.append(label)
        columns.append(numbers * step + offset)
        scales.append(unit_scale(unit, path, f"lead {label}"))
    if dt_ms is None:
        raise ConfigError(f"{path}: HL7 aECG series without a time sequence (GLIST_TS increment)")
    if not columns:
        raise ConfigError(f"{path}: HL7 aECG series without lead sequences")
    length = min(len(c) for c in columns)
    if any(len(c) != length for c in columns):
        raise ConfigError(f"{path}: HL7 aECG leads have different lengths ({sorted({len(c) for c in columns})})")
    check_rate(1000.0 / dt_ms, path, "sampling rate")
    return _record(path, names, np.stack(columns, axis=1), scales, dt_ms)


def unit_scale_time(unit: str, path: Path) -> float:
    """Units of ``unit`` per second (s, ms, us)."""
    table = {"s": 1.0, "ms": 1e3, "us": 1e6}
    if unit not in table:
        raise ConfigError(f"{path}: time unit {unit!r}; expected s, ms or us")
    return table[unit]
