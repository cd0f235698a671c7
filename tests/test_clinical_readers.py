"""Each reader round-trips a known ECG written by the format's own library (or by hand for XML),
a real DICOM record reads consistently, and every refusal is one clear line."""
from __future__ import annotations

import base64
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.io
import wfdb
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from model.clinical.readers import EcgWarning, lead_name, read_ecg
from solver.common.errors import ConfigError
from solver.common.sites import LEAD_NAMES
from tests.clinical_records import make_record

DATA = Path(__file__).parent / "data" / "clinical"


@pytest.fixture(scope="module")
def ecg() -> np.ndarray:
    """4 s at 500 Hz, mV."""
    return make_record(rate_hz=500.0, seconds=4.0)[0]


def read_quiet(path, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", EcgWarning)
        return read_ecg(path, **kwargs)


def test_lead_names_of_every_format():
    assert [lead_name(n) for n in ("Lead I (Einthoven)", "MDC_ECG_LEAD_AVR", "v1", "aVF", "DII", "Lead V6", "RESP")] == \
        ["I", "aVR", "V1", "aVF", "II", "V6", None]


@pytest.mark.parametrize("units, scale", [("mV", 1.0), ("uV", 1000.0)])
def test_wfdb_dat_round_trip(ecg, tmp_path, units, scale):
    names = [n.lower() for n in LEAD_NAMES]
    wfdb.wrsamp("rec", fs=500, units=[units] * 12, sig_name=names, p_signal=ecg * scale, fmt=["16"] * 12,
                adc_gain=[1000.0 / scale] * 12, baseline=[0] * 12, write_dir=str(tmp_path))
    record = read_quiet(tmp_path / "rec.hea")
    assert record.dt_ms == 2.0 and record.signals.shape == ecg.shape
    assert np.abs(record.signals - ecg).max() <= 0.5e-3 + 1e-9


def test_wfdb_challenge_mat_round_trip(ecg, tmp_path):
    """PhysioNet/CinC 2020: a MATLAB v4 'val' matrix (leads x samples, int16) after a 24-byte header."""
    digital = np.round(ecg.T * 1000).astype(np.int16)
    scipy.io.savemat(tmp_path / "A0001.mat", {"val": digital}, format="4")
    lines = [f"A0001 12 500 {ecg.shape[0]}"]
    lines += [f"A0001.mat 16+24 1000/mV 16 0 {digital[j, 0]} 0 0 {lead}" for j, lead in enumerate(LEAD_NAMES)]
    (tmp_path / "A0001.hea").write_text("\n".join(lines + ["#Dx: 426783006"]) + "\n")
    record = read_quiet(tmp_path / "A0001.mat")
    assert np.abs(record.signals - ecg).max() <= 0.5e-3 + 1e-9


def _dicom(ecg: np.ndarray, path: Path, names=LEAD_NAMES, units: str = "uV", sensitivity: float = 2.5) -> Path:
    """A 12-lead ECG waveform storage file built with pydicom."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.9.1.1"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID, "ECG"
    per_unit = {"uV": 1000.0, "mV": 1.0}[units]
    digital = np.round(ecg * per_unit / sensitivity).astype("<i2")
    group = Dataset()
    group.MultiplexGroupLabel = "RHYTHM"
    group.WaveformOriginality = "ORIGINAL"
    group.NumberOfWaveformChannels = len(names)
    group.NumberOfWaveformSamples = len(ecg)
    group.SamplingFrequency = 500
    group.WaveformBitsAllocated = 16
    group.WaveformSampleInterpretation = "SS"
    channels = []
    for name in names:
        ch = Dataset()
        source = Dataset()
        source.CodeMeaning = f"Lead {name}"
        source.CodeValue, source.CodingSchemeDesignator = "0", "SCPECG"
        ch.ChannelSourceSequence = Sequence([source])
        unit = Dataset()
        unit.CodeValue, unit.CodingSchemeDesignator, unit.CodeMeaning = units, "UCUM", units
        ch.ChannelSensitivityUnitsSequence = Sequence([unit])
        ch.ChannelSensitivity = sensitivity
        ch.ChannelSensitivityCorrectionFactor = 1
        ch.ChannelBaseline = 0
        ch.WaveformBitsStored = 16
        channels.append(ch)
    group.ChannelDefinitionSequence = Sequence(channels)
    group.WaveformData = digital.tobytes()
    ds.WaveformSequence = Sequence([group])
    ds.save_as(path, enforce_file_format=True)
    return path


def test_dicom_round_trip(ecg, tmp_path):
    record = read_quiet(_dicom(ecg, tmp_path / "ecg.dcm"))
    assert record.dt_ms == 2.0 and np.abs(record.signals - ecg).max() <= 1.25e-3 + 1e-9


def test_real_dicom_from_pydicom_is_consistent():
    """A real 10-s 12-lead recording: 1 kHz, amplitudes in mV, and Einthoven's law between the limb leads."""
    record = read_quiet(get_testdata_file("waveform_ecg.dcm"))
    x = record.signals
    assert x.shape == (10000, 12) and record.dt_ms == 1.0
    assert 0.3 < np.ptp(x[:, 1]) < 5.0  # lead II spans a few tenths to a few mV
    i, ii, iii = x[:, 0], x[:, 1], x[:, 2]
    assert np.abs(iii - (ii - i)).max() < 0.02  # the device stores III = II - I (rounding only)


def _muse(leads: dict[str, np.ndarray], uv_per_bit: float = 4.88) -> str:
    parts = []
    for name, values in leads.items():
        digital = np.round(values * 1000.0 / uv_per_bit).astype("<i2")
        parts.append(f"<LeadData><LeadID>{name}</LeadID><LeadSampleCountTotal>{len(values)}</LeadSampleCountTotal>"
                     "<LeadSampleSize>2</LeadSampleSize>"
                     f"<LeadAmplitudeUnitsPerBit>{uv_per_bit}</LeadAmplitudeUnitsPerBit>"
                     f"<LeadAmplitudeUnits>MICROVOLTS</LeadAmplitudeUnits>"
                     f"<WaveFormData>{base64.b64encode(digital.tobytes()).decode()}</WaveFormData></LeadData>")
    return ("<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><RestingECG><Waveform><WaveformType>Median</WaveformType>"
            "<SampleBase>500</SampleBase></Waveform><Waveform><WaveformType>Rhythm</WaveformType>"
            f"<SampleBase>500</SampleBase>{''.join(parts)}</Waveform></RestingECG>")


def test_muse_xml_round_trip_derives_limb_leads(ecg, tmp_path):
    eight = {lead: ecg[:, j] for j, lead in enumerate(LEAD_NAMES) if lead not in ("III", "aVR", "aVL", "aVF")}
    path = tmp_path / "muse.xml"
    path.write_text(_muse(eight))
    with pytest.warns(EcgWarning, match=r"lead\(s\) III, aVR, aVL, aVF derived from I and II"):
        record = read_ecg(path)
    assert np.abs(record.signals - ecg).max() < 0.01  # 4.88 uV steps, summed in the derived leads


def _aecg(ecg: np.ndarray, names=LEAD_NAMES, increment: str = "0.002") -> str:
    seqs = [f'<component><sequence><code code="TIME_ABSOLUTE" codeSystem="2.16.840.1.113883.5.4"/>'
            f'<value xsi:type="GLIST_TS"><head value="20020101000000"/><increment value="{increment}" unit="s"/></value>'
            f'</sequence></component>']
    for j, name in enumerate(names):
        digits = " ".join(str(int(v)) for v in np.round(ecg[:, j] * 200))
        seqs.append(f'<component><sequence><code code="MDC_ECG_LEAD_{name.upper()}" codeSystem="2.16.840.1.113883.6.24"/>'
                    f'<value xsi:type="SLIST_PQ"><origin value="0" unit="uV"/><scale value="5" unit="uV"/>'
                    f'<digits>{digits}</digits></value></sequence></component>')
    return ('<?xml version="1.0"?><AnnotatedECG xmlns="urn:hl7-org:v3" '
            'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><component><series>'
            '<code code="RHYTHM" codeSystem="2.16.840.1.113883.5.4"/><component><sequenceSet>'
            f'{"".join(seqs)}</sequenceSet></component></series></component></AnnotatedECG>')


def test_hl7_aecg_round_trip(ecg, tmp_path):
    """With a derived (median-beat) series nested in the rhythm series, as devices write them."""
    path = tmp_path / "aecg.xml"
    text = _aecg(ecg)
    median = _aecg(ecg[:600] * 0.5).split("<component><series>")[1].split("</series></component>")[0]
    derived = f"<derivation><derivedSeries>{median.replace('RHYTHM', 'REPRESENTATIVE_BEAT')}</derivedSeries></derivation>"
    path.write_text(text.replace("</series>", derived + "</series>", 1))
    record = read_quiet(path)
    assert record.dt_ms == pytest.approx(2.0) and np.abs(record.signals - ecg).max() <= 2.5e-3 + 1e-9


def test_xml_with_external_entity_is_refused(tmp_path):
    path = tmp_path / "xxe.xml"
    path.write_text('<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
                    "<RestingECG>&x;</RestingECG>")
    with pytest.raises(ConfigError, match=r"xxe.xml: refused XML with entity declarations"):
        read_ecg(path)


def write_csv(path: Path, header: list[str], rows: np.ndarray) -> Path:
    path.write_text(",".join(header) + "\n" + "\n".join(",".join(f"{v:.6g}" for v in row) for row in rows) + "\n")
    return path


def test_csv_units_in_the_header_and_sampling_rate(ecg, tmp_path):
    path = write_csv(tmp_path / "uv.csv", [f"{lead} (uV)" for lead in LEAD_NAMES], ecg * 1000.0)
    record = read_quiet(path, sampling_rate_hz=500)
    assert np.abs(record.signals - ecg).max() < 1e-3
    for rate in (10.0, 1e6, float("nan")):
        with pytest.raises(ConfigError, match=r"--sampling-rate .* is not a plausible ECG sampling rate \(50-20000 Hz\)"):
            read_ecg(path, sampling_rate_hz=rate)


def test_a_dc_electrode_offset_is_not_amplitude(ecg, tmp_path):
    path = write_csv(tmp_path / "dc.csv", list(LEAD_NAMES), ecg + 150.0)  # DC-coupled amplifier, 150 mV offset
    assert np.allclose(read_quiet(path, sampling_rate_hz=500).signals, ecg + 150.0)


def test_hdf5_units_attribute(ecg, tmp_path):
    with h5py.File(tmp_path / "v.h5", "w") as f:
        f.create_dataset("ecg", data=ecg * 1e-3).attrs.update(dt_ms=2.0, units="V")
    assert np.allclose(read_quiet(tmp_path / "v.h5").signals, ecg)


@pytest.mark.parametrize("change, message", [
    (lambda h, x: (h[:6] + h[7:], np.delete(x, 6, 1)), r"missing lead\(s\) V1; .*precordial leads cannot be derived"),
    (lambda h, x: (h[1:], x[:, 1:]), r"missing lead\(s\) I; .*leads I and II are needed"),
    (lambda h, x: (h + ["v2"], np.hstack([x, x[:, 7:8]])), r"lead V2 appears twice"),
    (lambda h, x: (h, x * 1000.0), r"lead .* reaches .* mV, more than 20 mV can come from a heart; is the file in microvolts"),
    (lambda h, x: (h, x * 1e-3), r"less than a heart's 0.02 mV; is the file in volts"),
    (lambda h, x: (h, x[:100]), r"only 200 ms long; an ECG needs at least 300 ms"),
    (lambda h, x: (h, np.hstack([x[:, :8], np.zeros((len(x), 1)), x[:, 9:]])), r"lead V3 is flat \(all zero\)"),
])
def test_csv_refusals(ecg, tmp_path, change, message):
    header, rows = change(list(LEAD_NAMES), ecg)
    with pytest.raises(ConfigError, match=message):
        read_quiet(write_csv(tmp_path / "bad.csv", header, rows), sampling_rate_hz=500)


def test_ragged_csv_rows_are_named(ecg, tmp_path):
    path = write_csv(tmp_path / "ragged.csv", list(LEAD_NAMES), ecg)
    lines = path.read_text().splitlines()
    lines[3] = lines[3].rsplit(",", 1)[0]
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ConfigError, match=r"ragged rows: line\(s\) 4 do not have the header's 12 values"):
        read_ecg(path, sampling_rate_hz=500)


@pytest.mark.parametrize("suffix, message", [
    (".csv", r"binary data, not a CSV text file"),
    (".xml", r"not well-formed XML"),
    (".dcm", r"not a readable DICOM file"),
    (".h5", r"not a readable HDF5 file"),
    (".hea", r"malformed WFDB header"),
])
def test_binary_junk_is_one_line(tmp_path, suffix, message):
    path = tmp_path / f"junk{suffix}"
    path.write_bytes(bytes(np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8)))
    with pytest.raises(ConfigError, match=message) as info:
        read_ecg(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)


@pytest.mark.parametrize("fs", ["0", "-500"])
def test_wfdb_without_a_positive_sampling_frequency(ecg, tmp_path, fs):
    wfdb.wrsamp("rec", fs=500, units=["mV"] * 12, sig_name=list(LEAD_NAMES), p_signal=ecg, fmt=["16"] * 12,
                adc_gain=[1000.0] * 12, baseline=[0] * 12, write_dir=str(tmp_path))
    header = tmp_path / "rec.hea"
    lines = header.read_text().splitlines()
    first = lines[0].split()
    first[2] = fs
    header.write_text("\n".join([" ".join(first), *lines[1:]]) + "\n")
    with pytest.raises(ConfigError, match=r"rec.hea: (sampling frequency .* it must be positive|malformed WFDB header)"):
        read_ecg(header)


def test_dicom_in_millivolts_and_without_ecg_leads(ecg, tmp_path):
    record = read_quiet(_dicom(ecg, tmp_path / "mv.dcm", units="mV", sensitivity=0.005))
    assert np.abs(record.signals - ecg).max() <= 2.5e-3 + 1e-9
    with pytest.raises(ConfigError, match=r"no waveform group holds the 12 ECG leads"):
        read_ecg(_dicom(ecg, tmp_path / "resp.dcm", names=[f"RESP{i}" for i in range(12)]))


def test_real_records_shipped_with_the_tests_read():
    record = read_quiet(DATA / "ptbdb-s0010_re-10s.hea")
    assert record.signals.shape == (10000, 12) and record.dt_ms == 1.0
    assert np.abs(record.signals[:, 2] - (record.signals[:, 1] - record.signals[:, 0])).max() < 0.01
