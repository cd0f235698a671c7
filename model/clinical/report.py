"""``ecgi predict --report DIR``: a page a clinician can read.

``report.html`` with four figures: the 12-lead record after conditioning with
every detected beat marked (green: used, red: rejected, with the reason in
the table), the median beat with its QRS onset and offset and the window the
network read, the predicted LV (AHA bullseye) and RV activation with their
spread, and a summary (beats, RR, QRS duration, OOD score against its
threshold, warnings).  matplotlib's object API, no pyplot (headless nodes).
"""
from __future__ import annotations

import html
from pathlib import Path
from typing import Sequence

import numpy as np
from matplotlib.figure import Figure

from solver.plots import bullseye, plain_text
from solver.common.files import atomic_output, write_text_atomic
from solver.common.sites import LEAD_NAMES, SITE_GROUPS, SITE_NAMES, site_group

_AHA = [SITE_NAMES.index(f"AHA{i:02d}") for i in range(1, 18)]
_RV = [SITE_NAMES.index(s) for s in SITE_GROUPS["RV"]]


def _save(fig: Figure, path: Path) -> Path:
    fig.tight_layout()
    with atomic_output(path) as tmp:  # the temporary name has no suffix: say the format
        fig.savefig(tmp, dpi=100, format=path.suffix.lstrip(".") or "png")
    return path


def _stacked(ax, signals: np.ndarray, t0: float = 0.0) -> np.ndarray:
    """Leads stacked top to bottom, 2 mV apart at least; returns the offsets."""
    step = max(2.0, float(np.percentile(np.ptp(signals, axis=0), 90)))
    offsets = np.arange(signals.shape[1]) * step
    t = t0 + np.arange(len(signals))
    ax.plot(t, signals - offsets, lw=0.6, color="k")
    ax.set_yticks(-offsets, LEAD_NAMES)
    return offsets


def record_figure(prediction, path: Path, title: str) -> Path:
    signals = prediction.conditioned.signals
    fig = Figure(figsize=(14, 8))
    ax = fig.add_subplot(1, 1, 1)
    _stacked(ax, signals)
    beats = prediction.beats
    for peak, clean in zip(beats.peaks, beats.clean):
        ax.axvline(peak, color="tab:green" if clean else "tab:red", lw=1.0, alpha=0.6)
    ax.set(xlabel="time (ms)", title=plain_text(f"{title}: conditioned 12-lead record, beats (green: used, red: rejected)"))
    return _save(fig, path)


def median_figure(prediction, path: Path, samples: int) -> Path:
    beats = prediction.beats
    fig = Figure(figsize=(8, 8))
    ax = fig.add_subplot(1, 1, 1)
    _stacked(ax, beats.median, t0=-beats.onset)
    ax.axvline(0, color="tab:blue", lw=1.2, label="QRS onset")
    ax.axvline(beats.offset - beats.onset, color="tab:orange", lw=1.2, label=f"QRS offset ({beats.qrs_ms} ms)")
    ax.axvspan(0, samples, color="tab:blue", alpha=0.05, label="network window")
    ax.set(xlabel="time from QRS onset (ms)", title=f"median of {int(beats.clean.sum())} clean beats")
    ax.legend(loc="upper right", fontsize=8)
    return _save(fig, path)


# RV segments (solver/patient/segments.py) on an unrolled RV endocardium: (row, first column, columns spanned);
# rows basal, mid, apical; columns anteroseptal, anterior, lateral, inferior, inferoseptal.
_RV_LAYOUT = {1: (0, 1, 1), 2: (0, 2, 1), 3: (0, 3, 1), 4: (0, 4, 1), 5: (0, 0, 1),
              6: (1, 1, 1), 7: (1, 2, 1), 8: (1, 3, 1), 9: (1, 4, 1), 10: (1, 0, 1),
              11: (2, 1, 1.5), 12: (2, 2.5, 1.5), 13: (2, 0, 1)}


def rv_map(ax, act: np.ndarray, std: np.ndarray | None, vmin: float, vmax: float) -> None:
    """The 13 RV endocardial segments unrolled (septum left, base top), coloured by activation, t +- spread."""
    import matplotlib
    from matplotlib.patches import Rectangle

    cmap = matplotlib.colormaps["viridis"]
    for segment, (row, col, width) in _RV_LAYOUT.items():
        i = SITE_NAMES.index(f"RV{segment:02d}")
        level = (act[i] - vmin) / max(vmax - vmin, 1e-9)
        ax.add_patch(Rectangle((col, -row), width, -1, facecolor=cmap(float(np.clip(level, 0, 1))), edgecolor="white"))
        text = f"RV{segment:02d}\n{act[i]:.0f}" + ("" if std is None else f" ± {std[i]:.0f}") + " ms"
        ax.text(col + width / 2, -row - 0.5, text, ha="center", va="center", fontsize=7,
                color="white" if level < 0.6 else "black")
    ax.set(xlim=(0, 5), ylim=(-3, 0), title="RV endocardium (unrolled)")
    ax.set_xticks([0.5, 1.5, 2.5, 3.5, 4.5], ["antero-\nseptal", "anterior", "lateral", "inferior", "infero-\nseptal"],
                  fontsize=7)
    ax.set_yticks([-0.5, -1.5, -2.5], ["basal", "mid", "apical"], fontsize=7)


def maps_figure(prediction, path: Path) -> Path:
    act, std = prediction.act, prediction.act_std
    vmin, vmax = float(np.min(act[_AHA + _RV])), float(np.max(act[_AHA + _RV]))
    fig = Figure(figsize=(15, 4.5))
    bullseye(fig.add_subplot(1, 3, 1), act[_AHA], "LV activation (AHA segments)", vmin=vmin, vmax=vmax)
    if std is not None:
        bullseye(fig.add_subplot(1, 3, 2), std[_AHA], f"LV spread ({prediction.uncertainty})", cmap="magma", label="ms")
    else:
        ax = fig.add_subplot(1, 3, 2)
        ax.text(0.5, 0.5, "no spread: the network has no dropout\n(give --ensemble for one)", ha="center")
        ax.axis("off")
    rv_map(fig.add_subplot(1, 3, 3), act, std, vmin, vmax)
    return _save(fig, path)


def write_clinical_report(prediction, directory: str | Path, title: str, warnings: Sequence[str] = ()) -> Path:
    """report.html and its PNGs in ``directory``; the page's path."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    figures = []
    if prediction.beats is not None and prediction.conditioned is not None:
        figures.append(record_figure(prediction, directory / "record.png", title))
        figures.append(median_figure(prediction, directory / "median-beat.png", len(prediction.ecg)))
    figures.append(maps_figure(prediction, directory / "activation.png"))
    page = directory / "report.html"
    write_text_atomic(page, _html(prediction, title, [f.name for f in figures], warnings))
    return page


def _summary(prediction) -> list[tuple[str, str]]:
    rows = [("beats used", prediction.beat_mode), ("uncertainty", prediction.uncertainty)]
    b = prediction.beats
    if b is not None:
        rows += [("beats detected / clean", f"{len(b.peaks)} / {int(b.clean.sum())}"),
                 ("RR (median)", f"{b.rr_ms:.0f} ms ({60000.0 / b.rr_ms:.0f} bpm)" if np.isfinite(b.rr_ms) else "n/a"),
                 ("QRS duration (median beat)", f"{b.qrs_ms} ms")]
    if prediction.conditioned is not None:
        q = prediction.conditioned.quality
        rows.append(("mains notch", f"{q.mains_hz:g} Hz" if q.mains_hz else "none needed"))
        rows.append(("lead problems", "; ".join(q.problems()) or "none"))
    if prediction.ood_score is not None:
        verdict = "ABOVE threshold: unlike the training ECGs, an extrapolation" if prediction.ood_warning else "within range"
        rows.append(("OOD score", f"{prediction.ood_score:.1f} (threshold {prediction.ood_threshold:.1f}): {verdict}"))
    else:
        rows.append(("OOD score", "not computed: the checkpoint has no reference (give --reference DATASET)"))
    rows.append(("activation span / measured QRS", _span(prediction)))
    rv, lv = float(np.mean(prediction.act[_RV])), float(np.mean(prediction.act[_AHA]))
    rows.append(("mean RV - mean LV activation", f"{rv - lv:+.1f} ms"))
    return rows


def _span(prediction) -> str:
    """The predicted total activation time beside the QRS duration measured on the recording."""
    text = f"{prediction.span_ms:.0f} ms predicted (latest - earliest of the 75 sites)"
    if prediction.qrs_ms is None:
        return text + "; no QRS duration measured"
    verdict = "DISAGREE: the map does not explain this QRS" if prediction.span_warning else "agree"
    return text + f" / {prediction.qrs_ms:.0f} ms measured: {verdict}"


def _html(prediction, title: str, images: Sequence[str], warnings: Sequence[str]) -> str:
    e = html.escape
    rows = "".join(f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in _summary(prediction))
    warn = "".join(f"<li>{e(w)}</li>" for w in warnings)
    std = prediction.act_std
    sites = "".join(
        f"<tr><td>{e(s)}</td><td>{e(site_group(s))}</td><td>{prediction.act[i]:.1f}</td>"
        f"<td>{'' if std is None else f'{std[i]:.1f}'}</td></tr>" for i, s in enumerate(SITE_NAMES))
    rejected = ""
    if prediction.beats is not None:
        rejected = "".join(f"<li>beat at {p} ms: {e(r)}</li>" for p, r in zip(prediction.beats.peaks, prediction.beats.reasons) if r)
    imgs = "".join(f'<p><img src="{e(name)}" style="max-width:100%"></p>' for name in images)
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>ecgi predict: {e(title)}</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:auto}} td,th{{padding:2px 8px;text-align:left}}</style></head>
<body><h1>Predicted activation: {e(title)}</h1>
<p>Activation times are in ms from the QRS onset of the median beat; the spread is one standard deviation.
The network was trained on synthetic patients: read the OOD score before the map.</p>
<table>{rows}</table>
{f'<h2>Warnings</h2><ul>{warn}</ul>' if warn else ''}
{f'<h2>Rejected beats</h2><ul>{rejected}</ul>' if rejected else ''}
{imgs}
<h2>All 75 sites</h2><table><tr><th>site</th><th>group</th><th>act (ms)</th><th>+- (ms)</th></tr>{sites}</table>
</body></html>
"""
