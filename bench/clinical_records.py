"""What ``ecgi predict`` returns for the real recordings kept in tests/data:
one row per record, the figures of docs/clinical.md.

    python -m bench.clinical_records demo/run/best.pt [--json PATH]

Per record: the diagnosis its source gives, the beats, the QRS duration of
the median beat, the out-of-distribution score, and three readings of the
predicted map that a bundle branch block changes: mean RV endocardium minus
mean LV endocardium (late in right bundle branch block), LV lateral wall
minus septum (late in left bundle branch block), and the latest AHA segment.
"""
from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import numpy as np

from bench.harness import REPO, Figure, Run, add_json_option
from model.predict import predict
from solver.common.sites import SITE_GROUPS, SITE_NAMES

DATA = REPO / "tests" / "data" / "clinical"
#: (file, diagnosis as its source states it)
RECORDS = (
    ("pydicom:waveform_ecg.dcm", "sinus rhythm, normal ECG (device)"),
    ("cinc2020/A0002.hea", "normal (CPSC)"),
    ("cinc2020/A0001.hea", "RBBB (CPSC)"),
    ("cinc2020/A0010.hea", "RBBB (CPSC)"),
    ("ludb/24.hea", "complete LBBB, sinus bradycardia, STEMI (LUDB)"),
    ("ludb/51.hea", "complete LBBB, atrial fibrillation, left anterior hemiblock (LUDB)"),
    ("ptbdb-s0010_re-10s.hea", "acute infero-lateral MI (PTB)"),
)
_AHA = [SITE_NAMES.index(f"AHA{i:02d}") for i in range(1, 18)]
_RV = [SITE_NAMES.index(s) for s in SITE_GROUPS["RV"]]
#: LV free (lateral) wall and septum, AHA segments of the endocardium.
_LATERAL = [SITE_NAMES.index(f"AHA{i:02d}") for i in (5, 6, 11, 12, 16)]
_SEPTUM = [SITE_NAMES.index(f"AHA{i:02d}") for i in (2, 3, 8, 9, 14)]


def record_path(name: str) -> Path:
    if name.startswith("pydicom:"):
        from pydicom.data import get_testdata_file

        return Path(get_testdata_file(name.split(":", 1)[1]))
    return DATA / name


def readings(act: np.ndarray) -> dict[str, float | str]:
    """The map's bundle-branch readings (ms) from 75 activation times."""
    latest = max(_AHA, key=lambda i: act[i])
    return {"rv_minus_lv": float(act[_RV].mean() - act[_AHA].mean()),
            "lateral_minus_septum": float(act[_LATERAL].mean() - act[_SEPTUM].mean()),
            "latest_aha": SITE_NAMES[latest]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    add_json_option(parser, "clinical_records")
    args = parser.parse_args()
    bench = Run("clinical_records", "Real recordings through ecgi predict", "checks")
    found = []
    print("| record | diagnosis (source) | beats (clean) | QRS | OOD score (threshold) | mean RV − mean LV "
          "| LV lateral − septum | latest AHA segment | spread over beats (median) | MC-dropout spread (median) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, diagnosis in RECORDS:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            p = predict(args.checkpoint, record_path(name), beats="all")
        r = readings(p.act)
        found.append(Figure(f"{name}: out-of-distribution score", float(p.ood_score), "score"))
        spread = float(np.median(p.beat_act.std(axis=0))) if p.beat_act is not None and len(p.beat_act) > 1 else float("nan")
        print(f"| `{name}` | {diagnosis} | {len(p.beats.peaks)} ({int(p.beats.clean.sum())}) | {p.beats.qrs_ms} ms "
              f"| {p.ood_score:.1f} ({p.ood_threshold:.1f}) | {r['rv_minus_lv']:+.1f} ms "
              f"| {r['lateral_minus_septum']:+.1f} ms | {r['latest_aha']} | {spread:.1f} ms "
              f"| {float(np.median(p.act_std)):.1f} ms |")
    bench.write(args.json, found, details={"checkpoint": args.checkpoint})


if __name__ == "__main__":
    main()
