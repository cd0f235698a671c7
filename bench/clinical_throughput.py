"""Clinical input throughput: records per second through reading, conditioning and beats.

    python -m bench.clinical_throughput [--repeats 20] [--json PATH]

Times, on one core, each stage ``ecgi predict`` runs before the network on
real records (the DICOM ECG shipped with pydicom, the PTB excerpt in
tests/data/clinical) and on a synthetic 10-s, 500-Hz record written as CSV:
``read_ecg`` (parse, units, checks), ``condition`` (filters, resampling to
1 kHz) and ``beats.analyse`` (detection, selection, median beat, delineation).
The rate is records per second of the three stages together; the median of
``--repeats`` runs after one warm-up.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
import warnings
from pathlib import Path

# One BLAS thread, set before numpy loads: the figures are per core.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
from pydicom.data import get_testdata_file  # noqa: E402

from bench.harness import REPO, Figure, Run, add_json_option  # noqa: E402
from model.clinical import beats  # noqa: E402
from model.clinical.conditioning import condition  # noqa: E402
from model.clinical.readers import read_ecg  # noqa: E402
from model.clinical.synthetic import make_record  # noqa: E402
from solver.common.sites import LEAD_NAMES  # noqa: E402


def synthetic_csv(directory: Path) -> Path:
    """A 10-s, 500-Hz record with baseline wander, mains and noise, as CSV with a time column."""
    x, _ = make_record(rate_hz=500.0, seconds=10.0, wander_mv=0.3, mains_hz=50.0, mains_mv=0.05, noise_mv=0.02)
    t = np.arange(len(x)) * 2.0
    path = directory / "synthetic.csv"
    rows = "\n".join(f"{ti:g}," + ",".join(f"{v:.4f}" for v in row) for ti, row in zip(t, x))
    path.write_text("time_ms," + ",".join(LEAD_NAMES) + "\n" + rows + "\n")
    return path


def time_record(path: Path, repeats: int) -> dict:
    stages = {"read": [], "condition": [], "beats": []}
    for i in range(repeats + 1):
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            record = read_ecg(path)
        t1 = time.perf_counter()
        conditioned = condition(record.signals, record.rate_hz)
        t2 = time.perf_counter()
        found = beats.analyse(conditioned.signals, 500)
        t3 = time.perf_counter()
        if i:
            stages["read"].append(t1 - t0)
            stages["condition"].append(t2 - t1)
            stages["beats"].append(t3 - t2)
    median = {k: float(np.median(v)) for k, v in stages.items()}
    total = sum(median.values())
    return {"record": path.name, "seconds": record.duration_ms / 1000.0, "rate_hz": record.rate_hz,
            "beats": int(len(found.peaks)), **{f"{k}_ms": 1000.0 * v for k, v in median.items()},
            "records_per_s": 1.0 / total}


def label(result: dict) -> str:
    """A record as its format, length and rate: "DICOM, 10 s at 1 kHz"."""
    kind = {".dcm": "DICOM", ".hea": "WFDB", ".csv": "CSV"}.get(Path(result["record"]).suffix, result["record"])
    rate = result["rate_hz"]
    return f"{kind}, {result['seconds']:g} s at " + (f"{rate / 1000:g} kHz" if rate >= 1000 else f"{rate:g} Hz")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    add_json_option(parser, "clinical_throughput")
    args = parser.parse_args()
    bench = Run("clinical_throughput", "Clinical records before the network (read, condition, beats)", "throughput")
    with tempfile.TemporaryDirectory() as tmp:
        paths = [Path(get_testdata_file("waveform_ecg.dcm")), REPO / "tests/data/clinical/ptbdb-s0010_re-10s.hea",
                 synthetic_csv(Path(tmp))]
        results = [time_record(p, args.repeats) for p in paths]
    bench.write(args.json, [Figure(label(r), r["records_per_s"], "records/s") for r in results],
                details=results)
    if args.json == "-":
        return
    print(f"{'record':<28} {'s':>5} {'Hz':>6} {'beats':>5} {'read ms':>8} {'cond ms':>8} {'beats ms':>8} {'rec/s':>7}")
    for r in results:
        print(f"{r['record']:<28} {r['seconds']:5.1f} {r['rate_hz']:6.0f} {r['beats']:5d} {r['read_ms']:8.1f} "
              f"{r['condition_ms']:8.1f} {r['beats_ms']:8.1f} {r['records_per_s']:7.1f}")


if __name__ == "__main__":
    main()
