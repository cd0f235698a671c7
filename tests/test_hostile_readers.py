"""Malformed fields of every ECG format, and user text in figures.

Each malformed field is refused where the reader reads it, with one line that
names the field, its value and what it must be; through ``ecgi predict`` (the
real CLI, in fresh processes) that is exit status 2, no traceback and no
output file.  A GE MUSE 9 export as the device writes it reads, and text with
``$`` in it reaches every figure literally.
"""
from __future__ import annotations

import base64
import textwrap
import tracemalloc
import warnings
from pathlib import Path

import h5py
import numpy as np
import pydicom
import pytest
import wfdb
from pydicom.data import get_testdata_file

from model.clinical.readers import MAX_SAMPLES, EcgWarning, read_ecg
from solver.common.errors import ConfigError
from solver.common.sites import LEAD_NAMES
from tests.clinical_records import make_record
from tests.conftest import run_ecgi
from tests.test_clinical_readers import _aecg, _dicom, _muse

DATA = Path(__file__).parent / "data" / "clinical"
STORED = ("I", "II", "V1", "V2", "V3", "V4", "V5", "V6")  # what a MUSE export holds; III, aVR, aVL, aVF are derived


@pytest.fixture(scope="module")
def ecg() -> np.ndarray:
    """4 s at 500 Hz, mV; the limb leads obey Einthoven's and Goldberger's laws."""
    return make_record(rate_hz=500.0, seconds=4.0)[0]


def read_quiet(path: Path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", EcgWarning)
        return read_ecg(path)


def refused(path: Path, message: str) -> str:
    """``read_ecg`` refuses ``path`` with one line naming the file and holding ``message``."""
    with pytest.raises(ConfigError) as info:
        read_quiet(path)
    text = str(info.value)
    assert "\n" not in text and text.startswith(str(path)) and message in text, text
    return text


# ------------------------------------------------------------ HL7 aECG


@pytest.mark.parametrize("old, new, message", [
    ('<increment value="0.002" unit="s"/>', '<increment value="0" unit="s"/>',
     "value of the time sequence's <increment> is 0; it must be positive"),
    ('<increment value="0.002" unit="s"/>', '<increment value="abc" unit="s"/>',
     "value of the time sequence's <increment> 'abc' is not a number"),
    ('<increment value="0.002" unit="s"/>', '<increment unit="s"/>', "value of the time sequence's <increment> is missing"),
    ('<scale value="5" unit="uV"/>', '<scale value="abc" unit="uV"/>', "lead MDC_ECG_LEAD_I: value of <scale> 'abc' is not a number"),
    ('<scale value="5" unit="uV"/>', '<scale unit="uV"/>', "lead MDC_ECG_LEAD_I: value of <scale> is missing"),
    ('<origin value="0" unit="uV"/>', '<origin value="abc" unit="uV"/>', "lead MDC_ECG_LEAD_I: value of <origin> 'abc' is not a number"),
    ('<origin value="0" unit="uV"/>', '<origin unit="uV"/>', "lead MDC_ECG_LEAD_I: value of <origin> is missing"),
])
def test_aecg_fields(ecg, tmp_path, old, new, message):
    text = _aecg(ecg)
    assert old in text
    path = tmp_path / "aecg.xml"
    path.write_text(text.replace(old, new, 1))  # the first: the time sequence, or lead I
    refused(path, message)


def test_aecg_without_origin_reads_as_zero(ecg, tmp_path):
    """HL7 SLIST: value = origin + scale x digit; no <origin> is origin 0."""
    path = tmp_path / "aecg.xml"
    path.write_text(_aecg(ecg).replace('<origin value="0" unit="uV"/>', ""))
    assert np.abs(read_quiet(path).signals - ecg).max() <= 2.5e-3 + 1e-9


# ------------------------------------------------------------ GE MUSE


@pytest.mark.parametrize("field, message", [
    ("SampleBase", "<SampleBase> (samples per second) 'abc' is not a number"),
    ("LeadAmplitudeUnitsPerBit", "lead I: <LeadAmplitudeUnitsPerBit> 'abc' is not a number"),
    ("LeadSampleSize", "lead I: <LeadSampleSize> (bytes per sample) 'abc' is not a number"),
    ("LeadSampleCountTotal", "lead I: <LeadSampleCountTotal> 'abc' is not a number"),
])
def test_muse_fields(ecg, tmp_path, field, message):
    text = _muse({lead: ecg[:, LEAD_NAMES.index(lead)] for lead in STORED})
    start = text.index(f"<{field}>", text.index("Rhythm"))
    end = text.index(f"</{field}>", start)
    path = tmp_path / "muse.xml"
    path.write_text(text[:start] + f"<{field}>abc" + text[end:])
    refused(path, message)


def test_muse_sample_count_beyond_the_data(ecg, tmp_path):
    text = _muse({lead: ecg[:, LEAD_NAMES.index(lead)] for lead in STORED})
    path = tmp_path / "muse.xml"
    path.write_text(text.replace(f"<LeadSampleCountTotal>{len(ecg)}<", f"<LeadSampleCountTotal>{len(ecg) + 1}<", 1))
    refused(path, f"lead I: <LeadSampleCountTotal> is {len(ecg) + 1} but WaveFormData holds {len(ecg)} samples")


def muse9_xml(leads: dict[str, np.ndarray], rate_hz: int = 500, uv_per_bit: float = 4.88) -> str:
    """A resting ECG as GE MUSE 9 exports it: DOCTYPE, a ``Median`` and a ``Rhythm`` waveform of
    the 8 stored leads, each ``LeadData`` with its byte and sample counts, ``LeadSampleSize`` 2
    (bytes per sample) and base64 broken into lines, as in the files MUSE writes."""
    def lead_data(name: str, mv: np.ndarray) -> str:
        digital = np.round(mv * 1000.0 / uv_per_bit).astype("<i2")
        encoded = "\n".join(textwrap.wrap(base64.b64encode(digital.tobytes()).decode(), 76))
        return (f"<LeadData>\n<LeadByteCountTotal>{digital.nbytes}</LeadByteCountTotal>\n<LeadTimeOffset>0</LeadTimeOffset>\n"
                f"<LeadSampleCountTotal>{len(digital)}</LeadSampleCountTotal>\n"
                f"<LeadAmplitudeUnitsPerBit>{uv_per_bit}</LeadAmplitudeUnitsPerBit>\n"
                "<LeadAmplitudeUnits>MICROVOLTS</LeadAmplitudeUnits>\n<LeadHighLimit>32767</LeadHighLimit>\n"
                f"<LeadLowLimit>-32768</LeadLowLimit>\n<LeadID>{name}</LeadID>\n<LeadOffsetFirstSample>0</LeadOffsetFirstSample>\n"
                "<FirstSampleBaseline>0</FirstSampleBaseline>\n<LeadSampleSize>2</LeadSampleSize>\n<LeadOff>FALSE</LeadOff>\n"
                f"<BWDetect>FALSE</BWDetect>\n<LeadDataCRC32>0</LeadDataCRC32>\n<WaveFormData>{encoded}\n</WaveFormData>\n"
                "</LeadData>\n")

    def waveform(kind: str, signals: dict[str, np.ndarray]) -> str:
        return (f"<Waveform>\n<WaveformType>{kind}</WaveformType>\n<WaveformStartTime>0</WaveformStartTime>\n"
                f"<NumberofLeads>{len(signals)}</NumberofLeads>\n<SampleType>CONTINUOUS_SAMPLES</SampleType>\n"
                f"<SampleBase>{rate_hz}</SampleBase>\n<SampleExponent>0</SampleExponent>\n<HighPassFilter>16</HighPassFilter>\n"
                "<LowPassFilter>150</LowPassFilter>\n<ACFilter>60</ACFilter>\n"
                + "".join(lead_data(n, x) for n, x in signals.items()) + "</Waveform>\n")

    median = {name: 0.5 * x[: rate_hz] for name, x in leads.items()}  # a stand-in beat: must not be read
    return ('<?xml version="1.0" encoding="ISO-8859-1"?>\n<!DOCTYPE RestingECG SYSTEM "restecg.dtd">\n<RestingECG>\n'
            "<MuseInfo>\n<MuseVersion>9.0.9.18167</MuseVersion>\n</MuseInfo>\n"
            "<PatientDemographics>\n<PatientID>0</PatientID>\n<Gender>MALE</Gender>\n</PatientDemographics>\n"
            f"<RestingECGMeasurements>\n<VentricularRate>75</VentricularRate>\n<ECGSampleBase>{rate_hz}</ECGSampleBase>\n"
            "<ECGSampleExponent>0</ECGSampleExponent>\n</RestingECGMeasurements>\n"
            + waveform("Median", median) + waveform("Rhythm", leads) + "</RestingECG>\n")


def test_a_muse9_export_reads_with_its_limb_leads_derived(tmp_path):
    """A real 12-lead ECG (CinC 2020 A0002, 10 s at 500 Hz) written as MUSE 9 writes it: 8 leads
    stored, LeadSampleSize 2 bytes, LeadSampleCountTotal 5,000 samples; the other four derived."""
    real = read_quiet(DATA / "cinc2020" / "A0002.hea")
    path = tmp_path / "muse9.xml"
    path.write_text(muse9_xml({lead: real.signals[:, LEAD_NAMES.index(lead)] for lead in STORED}), encoding="iso-8859-1")
    with pytest.warns(EcgWarning, match=r"lead\(s\) III, aVR, aVL, aVF derived from I and II"):
        record = read_ecg(path)
    assert record.dt_ms == 2.0 and record.signals.shape == (5000, 12)
    x = {lead: record.signals[:, j] for j, lead in enumerate(LEAD_NAMES)}
    for lead in STORED:  # 4.88 uV steps
        assert np.abs(x[lead] - real.signals[:, LEAD_NAMES.index(lead)]).max() <= 2.44e-3 + 1e-9
    assert np.allclose(x["III"], x["II"] - x["I"]) and np.allclose(x["aVR"], -(x["I"] + x["II"]) / 2)
    assert np.allclose(x["aVL"], x["I"] - x["II"] / 2) and np.allclose(x["aVF"], x["II"] - x["I"] / 2)
    for lead in ("III", "aVR", "aVL", "aVF"):  # the device's own recording of the derived leads
        assert np.abs(x[lead] - real.signals[:, LEAD_NAMES.index(lead)]).max() < 0.012


def test_muse_sample_exponent_other_than_zero(tmp_path):
    """The rate is SampleBase x 10^SampleExponent; MUSE writes 0, and nothing else is guessed at."""
    x = make_record(rate_hz=500.0, seconds=1.0)[0]
    path = tmp_path / "muse9.xml"
    path.write_text(muse9_xml({lead: x[:, LEAD_NAMES.index(lead)] for lead in STORED}).replace(
        "<SampleExponent>0<", "<SampleExponent>1<"))
    refused(path, "<SampleExponent> is 1; only 0 (SampleBase in Hz, as MUSE writes it) is read")


# ------------------------------------------------------------ DICOM, WFDB, HDF5


@pytest.mark.parametrize("element, message", [
    ("SamplingFrequency", "SamplingFrequency (003A,001A) of waveform group 'RHYTHM' is missing"),
    ("ChannelDefinitionSequence", "waveform group 'RHYTHM' has no ChannelDefinitionSequence (003A,0200)"),
])
def test_dicom_without_a_required_element(ecg, tmp_path, element, message):
    path = _dicom(ecg, tmp_path / "ecg.dcm")
    ds = pydicom.dcmread(path)
    delattr(ds.WaveformSequence[0], element)
    ds.save_as(path)
    refused(path, message)


@pytest.mark.parametrize("fs, message", [
    ("-500", "sampling frequency in the header is -500; it must be positive"),
    ("nan", "sampling frequency in the header is nan; it must be a finite number"),
])
def test_wfdb_rate_is_named_as_written(ecg, tmp_path, fs, message):
    """wfdb replaces a rate it cannot parse by 250 Hz: the message must name what the header says."""
    wfdb.wrsamp("rec", fs=500, units=["mV"] * 12, sig_name=list(LEAD_NAMES), p_signal=ecg, fmt=["16"] * 12,
                adc_gain=[1000.0] * 12, baseline=[0] * 12, write_dir=str(tmp_path))
    header = tmp_path / "rec.hea"
    first, *rest = header.read_text().splitlines()
    fields = first.split()
    fields[2] = fs
    header.write_text("\n".join([" ".join(fields), *rest]) + "\n")
    assert "250" not in refused(header, message)


def declared_hdf5(path: Path, shape: tuple[int, int], dtype="f4") -> Path:
    """An HDF5 ECG that declares ``shape`` but stores no chunk: a few kB on disk."""
    with h5py.File(path, "w") as f:
        f.create_dataset("ecg", shape=shape, dtype=dtype, chunks=(1000, shape[1]), compression="gzip").attrs["dt_ms"] = 1.0
    return path


def test_hdf5_declared_shape_is_checked_before_reading(tmp_path):
    path = declared_hdf5(tmp_path / "huge.h5", (20_000_000, 12))
    assert path.stat().st_size < 10_000
    tracemalloc.start()
    try:
        refused(path, f"dataset 'ecg' of shape (20000000, 12) declares 20,000,000 samples per lead; at most {MAX_SAMPLES:,}")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20e6  # not the 0.96 GB the shape declares


@pytest.mark.parametrize("make, message", [
    (lambda f: f.create_dataset("ecg", data=np.array([["a"] * 12] * 500, dtype="S1")).attrs.update(dt_ms=1.0),
     "dataset 'ecg' holds |S1 values; expected integers or floats"),
    (lambda f: f.create_dataset("ecg", data=np.ones((500, 12))).attrs.update(dt_ms="abc"),
     "attribute dt_ms 'abc' is not a number"),
    (lambda f: f.create_dataset("ecg", data=np.ones((500, 12))).attrs.update(dt_ms=[1.0, 2.0]),
     "attribute dt_ms holds 2 values"),
])
def test_hdf5_fields(tmp_path, make, message):
    path = tmp_path / "ecg.h5"
    with h5py.File(path, "w") as f:
        make(f)
    refused(path, message)


# ------------------------------------------------------------ limb leads


def limb_warnings(path) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        read_ecg(path)
    return [str(w.message) for w in caught if "limb leads break" in str(w.message)]


@pytest.mark.parametrize("record", ["24", "51"])
def test_ludb_gains_break_the_limb_lead_laws(record):
    """LUDB's headers scale every lead to 1 mV peak to peak, so III is not II - I: a warning, not a refusal."""
    found = limb_warnings(DATA / "ludb" / f"{record}.hea")
    assert len(found) == 1 and "\n" not in found[0], found
    assert "Einthoven's law (III - (II - I) is" in found[0] and "Goldberger's law (aVR + aVL + aVF is" in found[0]
    assert "are the leads' gains and labels right?" in found[0]


@pytest.mark.parametrize("path", [DATA / "ptbdb-s0010_re-10s.hea", DATA / "cinc2020" / "A0001.hea",
                                  DATA / "cinc2020" / "A0002.hea", DATA / "cinc2020" / "A0010.hea",
                                  get_testdata_file("waveform_ecg.dcm")], ids=lambda p: Path(p).name)
def test_recorded_limb_leads_obey_the_laws(path):
    assert limb_warnings(path) == []


def test_one_limb_lead_at_twice_its_gain(ecg, tmp_path):
    """Lead III alone doubled: Einthoven's law fails by III's own size, Goldberger's still holds."""
    scaled = ecg.copy()
    scaled[:, LEAD_NAMES.index("III")] *= 2
    path = tmp_path / "ecg.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("ecg", data=scaled).attrs["dt_ms"] = 2.0
    found = limb_warnings(path)
    assert len(found) == 1 and "III - (II - I) is 50% of III's RMS" in found[0] and "Goldberger" not in found[0]


# ------------------------------------------------------------ figures


def test_mathtext_in_titles_is_drawn_literally(ecg, tmp_path):
    from matplotlib.figure import Figure

    from solver.plots import plain_text, plot_bullseye, plot_ecg

    title = r"a$\frac{1$b.csv (cost: $5)"
    plot_ecg(ecg, 2.0, tmp_path / "ecg.png", title)
    plot_bullseye(np.arange(75.0), tmp_path / "bullseye.png", title)
    fig = Figure()  # the helper on its own, as model/report.py and model/clinical/report.py use it
    fig.subplots().set_title(plain_text(title))
    fig.savefig(tmp_path / "title.png")
    assert plain_text(title) == r"a\$\frac{1\$b.csv (cost: \$5)"  # matplotlib draws "\$" as "$", outside mathtext


def test_figure_suffix_is_checked():
    from solver.plots import check_figure_path

    assert check_figure_path("x.PDF").name == "x.PDF"
    for name, message in (("x.csv", "'.csv' is not a figure format"), ("x", "has no suffix"), ("x.pgf", "'.pgf'")):
        with pytest.raises(ConfigError, match="name a file ending in one of .png, .pdf") as info:
            check_figure_path(name)
        assert message in str(info.value)


# ------------------------------------------------------------ through ecgi predict


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A one-epoch network on a small synthetic data set (seconds)."""
    import torch

    from model.config import config_from_dict
    from model.synthetic import write_synthetic_dataset
    from model.train import train

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("hostile-readers")
    write_synthetic_dataset(root / "data", train=8, validation=4, test=4, samples=500, seed=3)
    config = config_from_dict({"epochs": 1, "batch_size": 4, "tensorboard": False, "data": {"num_workers": 0},
                               "network": {"architecture": "reference_act", "dropout": 0.0}})
    train(config, root / "data", root / "run", progress=False)
    torch.set_num_threads(threads)
    return root / "run" / "last.pt"


def predict_refused(checkpoint: Path, ecg_file: Path, message: str, *extra) -> None:
    """``ecgi predict`` exits 2 with one error line holding ``message``, no traceback, no output."""
    output = ecg_file.with_name(f"{ecg_file.name}.out.h5")
    proc = run_ecgi("predict", checkpoint, ecg_file, "--output", output, *extra, check=False, timeout=120)
    context = f"stdout: {proc.stdout}\nstderr: {proc.stderr}"
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, context
    errors = [line for line in proc.stderr.splitlines() if line.startswith("ecgi predict: error: ")]
    assert len(errors) == 1 and message in errors[0], context
    assert not output.exists() and not output.with_suffix(".png").exists()


def test_predict_refuses_malformed_files(checkpoint, ecg, tmp_path):
    """Through the command a user runs: a malformed field (each format's are tested above, with
    read_ecg) and a declared shape too large to read."""
    aecg = tmp_path / "zero.xml"
    aecg.write_text(_aecg(ecg, increment="0"))
    predict_refused(checkpoint, aecg, "zero.xml: value of the time sequence's <increment> is 0; it must be positive")
    huge = declared_hdf5(tmp_path / "huge.h5", (20_000_000, 12))
    predict_refused(checkpoint, huge, f"huge.h5: dataset 'ecg' of shape (20000000, 12) declares 20,000,000 samples "
                                      f"per lead; at most {MAX_SAMPLES:,}")


def test_predict_refuses_a_figure_it_cannot_write_before_any_work(checkpoint, tmp_path):
    predict_refused(checkpoint, DATA / "cinc2020" / "A0002.hea", "x.csv: '.csv' is not a figure format; name a file ending in one of .png",
                    "--figure", tmp_path / "x.csv")
    assert not (tmp_path / "x.csv").exists()


def test_predict_draws_a_file_name_with_dollars_and_warns_of_limb_leads(checkpoint, tmp_path):
    """The figure and the report's figures title the record by its file name, ``$`` and all; the
    record (LUDB 24 as CSV) breaks the limb-lead laws: one warning line, and the prediction."""
    record = read_quiet(DATA / "ludb" / "24.hea")
    path = tmp_path / r"a$\frac{1$b.csv"
    columns = ["time_ms", *LEAD_NAMES]
    rows = np.column_stack([np.arange(len(record.signals)) * record.dt_ms, record.signals])
    path.write_text(",".join(columns) + "\n" + "\n".join(",".join(f"{v:.5g}" for v in row) for row in rows) + "\n")
    output = tmp_path / "p.h5"
    proc = run_ecgi("predict", checkpoint, path, "--output", output, "--report", tmp_path / "report", "--passes", "2",
                    check=False, timeout=180)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert len([line for line in proc.stderr.splitlines() if "ecgi predict: warning:" in line
                and "limb leads break Einthoven's law" in line]) == 1, proc.stderr
    assert output.is_file() and output.with_suffix(".png").is_file()
    assert {"report.html", "record.png", "median-beat.png", "activation.png"} <= {p.name for p in (tmp_path / "report").iterdir()}
