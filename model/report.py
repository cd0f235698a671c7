"""Figures and reports: evaluation (Markdown + HTML + PNG) and prediction figures.

Figures are built with matplotlib's object API (``Figure`` rendered by Agg),
not pyplot, so reports are written on headless cluster nodes and no global
figure state leaks between calls.  The AHA bullseye is the standard
17-segment polar plot: anterior at the top, septum on the left, rings basal
(outer) to apex (centre).
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

from .evaluate import Evaluation

DEFAULT_TRACE_SITES = ("AHA01", "AHA09", "AHA17", "RV02", "EPI_AHA06", "SEPTM_AHA08_RV10")
_AHA_COLUMNS = [SITE_NAMES.index(f"AHA{i:02d}") for i in range(1, 18)]


def scatter_figure(result: Evaluation, path: Path) -> Path:
    fig = Figure(figsize=(5.5, 5))
    ax = fig.subplots()
    for group, sites in SITE_GROUPS.items():
        cols = [SITE_NAMES.index(s) for s in sites]
        ax.scatter(result.act_true[:, cols].ravel(), result.act_pred[:, cols].ravel(), s=3, alpha=0.4, label=group)
    lo = float(min(np.nanmin(result.act_true), np.nanmin(result.act_pred)))
    hi = float(max(np.nanmax(result.act_true), np.nanmax(result.act_pred)))
    ax.plot([lo, hi], [lo, hi], "k--", lw=1)
    ax.set(xlabel="true activation time (ms)", ylabel="predicted activation time (ms)",
           title=plain_text(f"{result.split}: {result.act_true.shape[0]} samples"))
    ax.legend(markerscale=4, fontsize=8)
    return _save(fig, path)


def bullseye_figure(result: Evaluation, path: Path) -> Path:
    """Mean true and predicted activation per AHA segment, and the MAE per segment."""
    true = np.nanmean(result.act_true[:, _AHA_COLUMNS], axis=0)
    pred = np.nanmean(result.act_pred[:, _AHA_COLUMNS], axis=0)
    error = np.nanmean(result.act_abs_error[:, _AHA_COLUMNS], axis=0)
    lo, hi = float(min(true.min(), pred.min())), float(max(true.max(), pred.max()))
    fig = Figure(figsize=(14, 4.2))
    axes = fig.subplots(1, 3)
    bullseye(axes[0], true, "true (mean)", vmin=lo, vmax=hi)
    bullseye(axes[1], pred, "predicted (mean)", vmin=lo, vmax=hi)
    bullseye(axes[2], error, "absolute error (mean)", cmap="magma", vmin=0.0)
    return _save(fig, path)


def traces_figure(true: np.ndarray | None, pred: np.ndarray, sites: Sequence[str], path: Path, title: str) -> Path:
    """Vm at chosen sites; ``true`` (T, 75) may be None (prediction only)."""
    fig = Figure(figsize=(8, 1.6 * len(sites)))
    axes = fig.subplots(len(sites), 1, sharex=True, squeeze=False)
    for ax, site in zip(axes[:, 0], sites):
        col = SITE_NAMES.index(site)
        if true is not None:
            ax.plot(true[:, col], "k", lw=1, label="true")
        ax.plot(pred[:, col], "C3", lw=1, label="predicted")
        ax.set_ylabel(f"{site}\n(mV)", fontsize=8)
    axes[0, 0].set_title(plain_text(title))
    axes[0, 0].legend(fontsize=8, loc="upper right")
    axes[-1, 0].set_xlabel("time (ms)")
    return _save(fig, path)


def errors_figure(result: Evaluation, path: Path) -> Path:
    """Activation MAE by site group and by condition: the network and, beside it, each baseline."""
    metrics = result.metrics()
    series = {"network": metrics, **metrics.get("baselines", {})}
    width = 0.8 / len(series)
    fig = Figure(figsize=(10, 3.5))
    axes = fig.subplots(1, 2)
    for ax, key, title in ((axes[0], "act_mae_ms_by_group", "by site group"),
                           (axes[1], "act_mae_ms_by_condition", "by condition")):
        names = list(metrics[key])
        for i, (label, values) in enumerate(series.items()):
            x = np.arange(len(names)) + (i - (len(series) - 1) / 2) * width
            ax.bar(x, [values[key].get(n, np.nan) for n in names], width, color=f"C{i}", label=label)
        ax.set_xticks(np.arange(len(names)), names)
        ax.set(ylabel="activation MAE (ms)", title=title)
        ax.tick_params(axis="x", rotation=30)
    axes[0].legend(fontsize=8)
    return _save(fig, path)


def write_evaluation_report(result: Evaluation, directory: str | Path,
                            trace_sites: Sequence[str] = DEFAULT_TRACE_SITES) -> Path:
    """DIR/report.md, DIR/report.html and their PNG figures; returns the Markdown path."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    figures = {
        "Predicted vs true activation": scatter_figure(result, directory / "scatter.png"),
        "AHA bullseyes": bullseye_figure(result, directory / "bullseye.png"),
        "Error by site group and condition": errors_figure(result, directory / "errors.png"),
    }
    if result.has_vm:
        figures["Voltage traces (first sample)"] = traces_figure(
            result.example_vm["true"], result.example_vm["pred"], trace_sites, directory / "traces.png",
            "first sample of the split",
        )
    metrics = result.metrics()
    columns = ["network", *metrics.get("baselines", {})]
    rows = _metric_table(metrics)
    title = f"Evaluation of {Path(result.checkpoint).name} on {result.split}"
    md = [f"# {title}", "", f"- checkpoint: `{result.checkpoint}`", f"- data set: `{result.dataset}`",
          f"- network: {result.architecture}", f"- samples: {result.act_true.shape[0]}",
          *_baseline_notes(metrics), "",
          "| metric | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|",
          *["| " + " | ".join(row) + " |" for row in rows], ""]
    for caption, figure in figures.items():
        md += [f"## {caption}", "", f"![{caption}]({figure.name})", ""]
    write_text_atomic(directory / "report.md", "\n".join(md))
    cells = [["metric", *columns], *rows]
    body = [f"<h1>{html.escape(title)}</h1>", *[f"<p>{html.escape(n[2:])}</p>" for n in _baseline_notes(metrics)],
            "<table>", *["<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in cells],
            "</table>"]
    for caption, figure in figures.items():
        body += [f"<h2>{html.escape(caption)}</h2>", f'<img src="{html.escape(figure.name)}" alt="{html.escape(caption)}">']
    style = "body{font-family:sans-serif;max-width:1100px;margin:2em auto}td{padding:2px 12px}img{max-width:100%}"
    write_text_atomic(
        directory / "report.html",
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{style}</style></head><body>{''.join(body)}</body></html>\n"
    )
    return directory / "report.md"


def _metric_rows(metrics: dict) -> list[tuple[str, str]]:
    rows = []
    for key, value in metrics.items():
        if key in ("checkpoint", "dataset", "split", "architecture", "samples", "baselines", "details"):
            continue
        if isinstance(value, dict):
            rows += [(f"{key}[{k}]", _fmt(v)) for k, v in value.items()]
        else:
            rows.append((key, _fmt(value)))
    return rows


def _metric_table(metrics: dict) -> list[list[str]]:
    """One row per metric: the network's value, then each baseline's."""
    columns = [dict(_metric_rows(metrics))] + [dict(_metric_rows(b)) for b in metrics.get("baselines", {}).values()]
    return [[key, *(column.get(key, "n/a") for column in columns)] for key in columns[0]]


def _baseline_notes(metrics: dict) -> list[str]:
    notes = {
        "site_mean": "each site's mean training activation time (Vm: its mean aligned trace placed there)",
        "ridge": "ridge regression on the flattened network input, fitted on the train split, alpha by validation MAE "
                 "(Vm: the mean aligned trace placed at the ridge's times)",
    }
    return [f"- baseline {name}: {notes.get(name, name)}; {_fmt_details(b.get('details', {}))}"
            for name, b in metrics.get("baselines", {}).items()]


def _fmt_details(details: dict) -> str:
    return ", ".join(f"{k} {_fmt(v) if not isinstance(v, float) else f'{v:.4g}'}" for k, v in details.items())


def _fmt(value) -> str:
    if value is None:
        return "n/a"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def prediction_figure(ecg: np.ndarray, act: np.ndarray, vm: np.ndarray | None, path: Path, title: str,
                      trace_sites: Sequence[str] = DEFAULT_TRACE_SITES) -> Path:
    """The input ECG, the predicted AHA activation bullseye and, with a voltage head, traces."""
    rows = 3 if vm is not None else 2
    fig = Figure(figsize=(11, 4 * rows))
    ax = fig.add_subplot(rows, 1, 1)
    offsets = np.arange(len(LEAD_NAMES)) * 2.0 * max(float(np.abs(ecg).max()), 1e-3)
    ax.plot(ecg - offsets, lw=0.8)
    ax.set_yticks(-offsets, LEAD_NAMES)
    ax.set(xlabel="time (ms)", title=plain_text(title))
    bullseye(fig.add_subplot(rows, 2, 3), act[_AHA_COLUMNS], "predicted activation, AHA segments")
    ax = fig.add_subplot(rows, 2, 4)
    groups = [site_group(s) for s in SITE_NAMES]
    for group in SITE_GROUPS:
        ax.plot([i for i, g in enumerate(groups) if g == group], act[[g == group for g in groups]], "o", ms=3, label=group)
    ax.set(xlabel="site index", ylabel="activation (ms)", title="all 75 sites")
    ax.legend(fontsize=8)
    if vm is not None:
        ax = fig.add_subplot(rows, 1, 3)
        for site in trace_sites:
            ax.plot(vm[:, SITE_NAMES.index(site)], lw=1, label=site)
        ax.set(xlabel="time (ms)", ylabel="Vm (mV)", title="predicted transmembrane voltage")
        ax.legend(fontsize=8, ncol=3)
    return _save(fig, path)


def _save(fig: Figure, path: Path) -> Path:
    fig.tight_layout()
    with atomic_output(path) as tmp:  # the temporary name has no suffix: say the format
        fig.savefig(tmp, dpi=110, format=path.suffix.lstrip(".") or "png")
    return path
