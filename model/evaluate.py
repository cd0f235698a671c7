"""``ecgi evaluate``: errors of a trained network on one split of a data set.

Activation-time MAE (ms) overall, per site group and per condition; for
networks with a voltage head, Vm RMSE (mV), the mean Pearson correlation of
predicted and true traces, and the APD90 error.  A voltage-only network's
activation times are its traces' 0 mV crossings, the data set's definition.

Next to the network, the same metrics for two baselines fitted on the same
data set (``model.baselines``): each site's training mean, and a ridge
regression on the network's input; for the voltage output each site's mean
aligned trace placed at the baseline's activation times.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader

from solver.common.errors import ConfigError
from solver.common.sites import SITE_GROUPS, SITE_NAMES
from solver.common.traces import apd90_ms, threshold_crossing_ms

from .data import ShardDataset, load_manifest, validate_dataset
from .ensemble import Ensemble, load_members

_GROUP_COLUMNS = {group: np.array([SITE_NAMES.index(s) for s in sites]) for group, sites in SITE_GROUPS.items()}


def trace_correlation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlation of traces along the last axis (NaN where one is flat)."""
    a = a - a.mean(axis=-1, keepdims=True)
    b = b - b.mean(axis=-1, keepdims=True)
    norm = np.sqrt((a * a).sum(-1) * (b * b).sum(-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(norm > 0, (a * b).sum(-1) / norm, np.nan)


@dataclass
class Evaluation:
    """Per-sample predictions and errors of one checkpoint on one split (times in ms, Vm in mV)."""

    checkpoint: str
    dataset: str
    split: str
    architecture: str
    has_vm: bool
    act_true: np.ndarray  # (N, 75)
    act_pred: np.ndarray
    conditions: list[str]
    vm_sq_error: np.ndarray | None  # (75,) summed over samples and time; None without a voltage head
    vm_count: int
    vm_corr: np.ndarray | None  # (N, 75)
    apd_true: np.ndarray | None  # (N, 75), NaN where undefined
    apd_pred: np.ndarray | None
    example_vm: dict[str, np.ndarray]  # "true"/"pred": (T, 75) traces of the first sample
    vm_act_pred: np.ndarray | None = None  # (N, 75) 0 mV crossings of the predicted traces
    details: dict[str, Any] = field(default_factory=dict)  # a baseline's fitted parameters
    baselines: dict[str, Evaluation] = field(default_factory=dict)  # the same metrics for each baseline

    @property
    def act_abs_error(self) -> np.ndarray:
        """|predicted - true| per sample and site; NaN where the site never activated."""
        return np.abs(self.act_pred - self.act_true)

    def metrics(self) -> dict[str, Any]:
        """The JSON summary; ``vm_*`` and ``apd90_*`` are None without a voltage head."""
        err = self.act_abs_error
        conditions = np.asarray(self.conditions)
        by_condition = {c: float(np.nanmean(err[conditions == c])) for c in sorted(set(self.conditions))}
        out: dict[str, Any] = {
            "checkpoint": self.checkpoint, "dataset": self.dataset, "split": self.split,
            "architecture": self.architecture, "samples": int(err.shape[0]),
            "act_mae_ms": float(np.nanmean(err)),
            "act_rmse_ms": float(np.sqrt(np.nanmean(err**2))),
            "act_mae_ms_by_group": {g: float(np.nanmean(err[:, cols])) for g, cols in _GROUP_COLUMNS.items()},
            "act_mae_ms_by_condition": by_condition,
            "vm_rmse_mv": None, "vm_rmse_mv_by_group": None, "vm_correlation": None,
            "apd90_mae_ms": None, "apd90_traces": None, "vm_act_mae_ms": None,
        }
        if self.has_vm:
            per_site = self.vm_sq_error / (self.vm_count / len(SITE_NAMES))
            both = np.isfinite(self.apd_true) & np.isfinite(self.apd_pred)
            out.update(
                vm_rmse_mv=float(math.sqrt(per_site.mean())),
                vm_rmse_mv_by_group={g: float(math.sqrt(per_site[cols].mean())) for g, cols in _GROUP_COLUMNS.items()},
                vm_correlation=_finite_or_none(np.nanmean(self.vm_corr) if np.isfinite(self.vm_corr).any() else math.nan),
                apd90_mae_ms=_finite_or_none(np.abs(self.apd_pred - self.apd_true)[both].mean() if both.any() else math.nan),
                apd90_traces=int(both.sum()),
            )
            if self.vm_act_pred is not None:
                out["vm_act_mae_ms"] = float(np.nanmean(np.abs(self.vm_act_pred - self.act_true)))
        if self.details:
            out["details"] = self.details
        if self.baselines:
            out["baselines"] = {name: _without_identity(b.metrics()) for name, b in self.baselines.items()}
        return out


def _without_identity(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in metrics.items() if k not in ("checkpoint", "dataset", "split", "samples")}


def trace_errors(true: np.ndarray, pred: np.ndarray, dt_ms: float) -> dict[str, np.ndarray]:
    """Per-trace errors of (N, 75, T) predicted against true traces (mV)."""
    return {
        "vm_sq": ((pred - true) ** 2).sum(axis=(0, 2)), "vm_corr": trace_correlation(pred, true),
        "apd_true": apd90_ms(true, dt_ms), "apd_pred": apd90_ms(pred, dt_ms),
        "vm_act_pred": threshold_crossing_ms(pred, dt_ms, never=pred.shape[-1] * dt_ms),
    }


def baseline_evaluation(network: Evaluation, name: str, act_pred: np.ndarray, vm_pred: np.ndarray | None,
                        vm_true: np.ndarray | None, dt_ms: float, details: dict[str, Any]) -> Evaluation:
    """A baseline's predictions as an ``Evaluation`` on the network's samples, so every metric is computed alike."""
    errors = trace_errors(vm_true, vm_pred, dt_ms) if vm_pred is not None and vm_true is not None else None
    return Evaluation(
        network.checkpoint, network.dataset, network.split, name, errors is not None, network.act_true, act_pred,
        network.conditions, errors["vm_sq"] if errors else None, vm_true.size if errors else 0,
        errors["vm_corr"] if errors else None, errors["apd_true"] if errors else None,
        errors["apd_pred"] if errors else None,
        {"true": vm_true[0].T, "pred": vm_pred[0].T} if errors else {},
        errors["vm_act_pred"] if errors else None, details,
    )


def _finite_or_none(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


@torch.no_grad()
def evaluate(checkpoint: str | Path, dataset: str | Path, split: str = "test", batch_size: int = 64,
             baselines: bool = True, ensemble: Sequence[str | Path] = ()) -> Evaluation:
    """Run a checkpoint over every sample of ``split`` (one process, GPU when available).

    With ``ensemble`` (more checkpoints trained on the same inputs) the
    prediction is the members' mean of the outputs they all have.  With
    ``baselines`` (and train and validation splits in the data set) the
    site-mean and ridge baselines of ``model.baselines`` are fitted and
    evaluated on the same samples.
    """
    model = Ensemble(load_members([checkpoint, *ensemble]))
    manifest = load_manifest(dataset)
    if split not in manifest.splits:
        raise ConfigError(f"{manifest.root}: no split {split!r}; the manifest has {', '.join(manifest.splits)}")
    validate_dataset(manifest, (split,), check_sha256=True)
    inputs = model.members[0].inputs
    if manifest.samples != inputs["samples"] or manifest.dt_ms != inputs["dt_ms"]:
        raise ConfigError(f"{manifest.root}: traces of {manifest.samples} x {manifest.dt_ms} ms, "
                          f"the network was trained on {inputs['samples']} x {inputs['dt_ms']} ms")
    has_vm = "vm" in model.outputs
    data = ShardDataset(manifest, split, with_vm=has_vm, scaling=None)  # each member scales the ECG itself
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model.to(device)
    parts: dict[str, list[np.ndarray]] = {
        key: [] for key in ("act_true", "act_pred", "vm_corr", "apd_true", "apd_pred", "vm_act_pred")}
    vm_sq, vm_count, example = np.zeros(len(SITE_NAMES)), 0, {}
    for batch in DataLoader(data, batch_size=batch_size):
        physical = model(batch["ecg"].to(device))
        parts["act_true"].append(batch["act"].numpy())
        parts["act_pred"].append(physical["act"].cpu().numpy())
        if has_vm:
            true, pred = batch["vm"].numpy(), physical["vm"].cpu().numpy()
            errors = trace_errors(true, pred, manifest.dt_ms)
            vm_sq += errors["vm_sq"]
            vm_count += true.size
            for key in ("vm_corr", "apd_true", "apd_pred", "vm_act_pred"):
                parts[key].append(errors[key])
            example = example or {"true": true[0].T, "pred": pred[0].T}
    conditions = data.conditions()
    data.close()
    stacked = {key: np.concatenate(values) if values else None for key, values in parts.items()}
    result = Evaluation(
        str(checkpoint), str(dataset), split, model.architecture, has_vm, stacked["act_true"], stacked["act_pred"],
        conditions, vm_sq if has_vm else None, vm_count, stacked["vm_corr"], stacked["apd_true"], stacked["apd_pred"],
        example, stacked["vm_act_pred"], details={"ensemble": [str(checkpoint), *map(str, ensemble)]} if ensemble else {},
    )
    if baselines and all(manifest.split_size(s) for s in ("train", "validation")):
        result.baselines = _baselines(result, manifest, inputs, has_vm)
    return result


def _baselines(network: Evaluation, manifest, inputs: dict[str, Any], has_vm: bool) -> dict[str, Evaluation]:
    from .baselines import predict_baselines
    from .data import read_split

    validate_dataset(manifest, ("train", "validation"))
    predictions = predict_baselines(manifest, network.split, scaling=inputs["scaling"], with_vm=has_vm,
                                    ecg_stats=(np.asarray(inputs["ecg_mean"]), np.asarray(inputs["ecg_std"])))
    vm_true = None
    if has_vm:
        vm = read_split(manifest, network.split, with_vm=True).vm
        vm_true = np.ascontiguousarray(vm.transpose(0, 2, 1))
    return {name: baseline_evaluation(network, name, p.act, p.vm, vm_true, manifest.dt_ms, p.details)
            for name, p in predictions.items()}
