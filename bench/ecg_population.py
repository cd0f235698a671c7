"""How far the synthetic population's ECGs lie from real ones, feature by feature.

    python -m bench.ecg_population DATASET [--real CSV] [--figure PNG]
        [--checkpoint CKPT --records DIR...] [--json PATH]

DATASET is a training data set (``demo/campaign/dataset`` after ``make
demo``): every sample of every split is measured by
``model.clinical.devset.synthetic_features`` (the median-beat delineation of
``model/clinical/beats.py``, the measures of solver/patient/ecg_measures.py),
the real records' features are read from tests/data/clinical/devset/
features.csv (measured by the same code on each record's median beat).

For each feature and each class (synthetic normal, LBBB, RBBB against the
real records so labelled) it gives the 1-D Wasserstein distance in units of
the standard deviation of all real records (labels pooled), and the fraction of real records that
lie inside the synthetic range (min to max): a distance near 0 and a
fraction near 1 mean the synthetic population covers the real one.

With ``--checkpoint`` and ``--records`` (the directories fetch.sh fills), it
also runs ``ecgi predict`` on the held-out real records and reports the
fraction of clean normal ones within the OOD threshold and the Spearman
correlation between the predicted activation span and the measured QRS
duration.
"""
from __future__ import annotations

import argparse
import math
import warnings
from collections.abc import Sequence
from pathlib import Path

import h5py
import numpy as np
from scipy.stats import spearmanr, wasserstein_distance

from bench.harness import REPO, Figure, Run, add_json_option
from model.clinical.devset import read_csv, synthetic_features
from solver.common.sites import LEAD_NAMES

REAL = REPO / "tests" / "data" / "clinical" / "devset" / "features.csv"
CLASSES = ("normal", "lbbb", "rbbb")
#: Features in the table (all R and S amplitudes go into the JSON).
TABLE = ("qrs_ms", "axis_deg", "transition", "qt_ms", "t_amp_II_mV", "t_amp_V5_mV",
         "R_I_mV", "S_I_mV", "R_aVF_mV", "R_V1_mV", "S_V1_mV", "R_V2_mV", "S_V2_mV", "R_V5_mV", "S_V5_mV",
         "R_V6_mV", "S_V6_mV")
FEATURES = ("qrs_ms", "axis_deg", "transition", "qt_ms", "t_amp_II_mV", "t_amp_V5_mV",
            *[f"{w}_{n}_mV" for n in LEAD_NAMES for w in ("R", "S")])


def synthetic_population(dataset: Path) -> list[dict]:
    """Features of every sample of every split of a data set, with its condition."""
    rows = []
    for shard in sorted(dataset.glob("*/shard-*.h5")):
        with h5py.File(shard) as f:
            ecg, conditions = f["ecg"][:], [c.decode() if isinstance(c, bytes) else str(c) for c in f["conditions"][:]]
        for x, condition in zip(ecg, conditions):
            row = synthetic_features(x.astype(float))
            row["label"] = condition
            rows.append(row)
    return rows


def values(rows: Sequence[dict], feature: str, label: str | None = None) -> np.ndarray:
    v = np.array([r[feature] for r in rows if label is None or r["label"] == label], dtype=float)
    return v[np.isfinite(v)]


def distance(synthetic: np.ndarray, real: np.ndarray, spread: float) -> dict[str, float]:
    """W1 in units of ``spread``, the fraction of real values inside the synthetic range, the medians."""
    if len(synthetic) == 0 or len(real) == 0:
        return {"w1_sd": math.nan, "inside": math.nan, "n_real": len(real), "n_synthetic": len(synthetic),
                "median_real": math.nan, "median_synthetic": math.nan}
    inside = float(np.mean((real >= synthetic.min()) & (real <= synthetic.max())))
    return {"w1_sd": wasserstein_distance(synthetic, real) / spread, "inside": inside, "n_real": len(real),
            "n_synthetic": len(synthetic), "median_real": float(np.median(real)),
            "median_synthetic": float(np.median(synthetic))}


def compare(synthetic: Sequence[dict], real: Sequence[dict]) -> dict[str, dict[str, dict[str, float]]]:
    """{class: {feature: distance}} for normal, LBBB and RBBB; distances in units of the standard deviation
    of all real records (every label pooled: a class of two records has no spread of its own)."""
    spread = {f: float(np.std(values(real, f))) or 1.0 for f in FEATURES}
    return {c: {f: distance(values(synthetic, f, c), values(real, f, c), spread[f]) for f in FEATURES}
            for c in CLASSES}


def table(result: dict) -> str:
    head = "| feature | " + " | ".join(f"{c}: median real / synthetic | {c}: W1 (real SD) | {c}: real inside"
                                      for c in CLASSES) + " |"
    lines = [head, "|---|" + "---|---|---|" * len(CLASSES)]
    for f in TABLE:
        cells = []
        for c in CLASSES:
            d = result[c][f]
            cells.append(f"{d['median_real']:.3g} / {d['median_synthetic']:.3g} | {d['w1_sd']:.2f} | "
                         f"{d['inside']:.0%} ({d['n_real']})" if math.isfinite(d["w1_sd"]) else "n/a | n/a | n/a")
        lines.append(f"| {f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def figure(synthetic: Sequence[dict], real: Sequence[dict], path: Path) -> None:
    from matplotlib.figure import Figure as MplFigure

    panels = ("qrs_ms", "axis_deg", "transition", "qt_ms", "t_amp_II_mV", "R_V1_mV", "S_V1_mV", "R_V6_mV")
    fig = MplFigure(figsize=(16, 11))
    colours = {"normal": "tab:blue", "lbbb": "tab:red", "rbbb": "tab:green"}
    for k, f in enumerate(panels):
        ax = fig.add_subplot(3, 3, k + 1)
        for c in CLASSES:
            s, r = values(synthetic, f, c), values(real, f, c)
            if len(s):
                ax.hist(s, bins=25, density=True, histtype="step", color=colours[c], label=f"synthetic {c} ({len(s)})")
            if len(r):
                ax.plot(r, np.full(len(r), -0.04 - 0.04 * CLASSES.index(c)), "|", ms=12, mew=2, color=colours[c],
                        transform=ax.get_xaxis_transform(), label=f"real {c} ({len(r)})", clip_on=False)
        ax.set_title(f)
        if k == 0:
            ax.legend(fontsize=7)
    ax = fig.add_subplot(3, 3, 9)
    for c in CLASSES:
        r = [(x["rr_ms"], x["qt_ms"]) for x in real if x["label"] == c and math.isfinite(x["qt_ms"])]
        if r:
            ax.plot(*zip(*r), "o", color=colours[c], label=f"real {c}")
        s = values(synthetic, "qt_ms", c)
        if len(s):
            ax.axhspan(np.percentile(s, 5), np.percentile(s, 95), color=colours[c], alpha=0.15,
                       label=f"synthetic {c} QT 5-95 % (no RR: one beat)")
    ax.set_xlabel("RR (ms)")
    ax.set_ylabel("QT (ms)")
    ax.legend(fontsize=6)
    fig.suptitle("Synthetic population (histograms) against real records (ticks below each axis)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)


def predictions(checkpoint: Path, records: Sequence[Path], real: Sequence[dict]) -> dict:
    """``ecgi predict`` on the held-out real records: OOD fraction of the normal ones, span against QRS."""
    from model.predict import predict

    held = {r["record"]: r for r in real if r["held_out"]}
    headers = {h.stem: h for d in records for h in sorted(d.rglob("*.hea"))}
    rows = []
    for name, r in held.items():
        if name not in headers:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            p = predict(checkpoint, headers[name], passes=1)
        rows.append({"record": name, "label": r["label"], "qrs_ms": p.qrs_ms, "span_ms": p.span_ms,
                     "ood_score": p.ood_score, "ood_threshold": p.ood_threshold})
    normal = [x for x in rows if x["label"] == "normal" and x["ood_score"] is not None]
    inside = float(np.mean([x["ood_score"] <= x["ood_threshold"] for x in normal])) if normal else math.nan
    both = [(x["span_ms"], x["qrs_ms"]) for x in rows if x["qrs_ms"] is not None]
    rho = float(spearmanr(*zip(*both)).statistic) if len(both) > 2 else math.nan
    return {"records": rows, "normal_within_ood": inside, "n_normal": len(normal), "spearman_span_qrs": rho,
            "n_span": len(both)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", type=Path, help="a training data set (demo/campaign/dataset)")
    parser.add_argument("--real", type=Path, default=REAL)
    parser.add_argument("--figure", type=Path, help="PNG of the distributions side by side")
    parser.add_argument("--checkpoint", type=Path, help="a network trained on DATASET (demo/run/best.pt)")
    parser.add_argument("--records", type=Path, nargs="*", default=[], help="directories holding the real records")
    add_json_option(parser, "ecg_population")
    args = parser.parse_args()
    bench = Run("ecg_population", "Synthetic against real ECG features", "checks")
    synthetic, real = synthetic_population(args.dataset), read_csv(args.real)
    result = compare(synthetic, real)
    print(f"{len(synthetic)} synthetic samples from {args.dataset}; {len(real)} real records from {args.real}")
    print(table(result))
    if args.figure:
        figure(synthetic, real, args.figure)
    figures = [Figure(f"{c}: {f}, Wasserstein distance", result[c][f]["w1_sd"], "real SD")
               for c in CLASSES for f in ("qrs_ms", "axis_deg", "qt_ms")]
    figures += [Figure(f"{c}: QRS duration, real records inside the synthetic range", result[c]["qrs_ms"]["inside"],
                       "fraction") for c in CLASSES]
    details = {"dataset": str(args.dataset), "synthetic_samples": len(synthetic), "real_records": len(real),
               "distances": result}
    if args.checkpoint:
        checked = predictions(args.checkpoint, args.records, real)
        print(f"held-out clean normal records within the OOD threshold: {checked['normal_within_ood']:.0%} "
              f"of {checked['n_normal']}; Spearman(predicted span, measured QRS) {checked['spearman_span_qrs']:.2f} "
              f"over {checked['n_span']} held-out records")
        figures += [Figure("held-out normal records within the OOD threshold", checked["normal_within_ood"], "fraction"),
                    Figure("held-out records: Spearman, predicted span against measured QRS",
                           checked["spearman_span_qrs"], "rho")]
        details["predictions"] = checked
    bench.write(args.json, figures, details=details)


if __name__ == "__main__":
    main()
