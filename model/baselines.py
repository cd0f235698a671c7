"""The baselines every network is measured against, fitted on the same data set.

* ``site_mean`` -- each site's mean training activation time, whatever the ECG.
* ``ridge`` -- ridge regression from the network's own input (the ECG scaled
  as the checkpoint scales it, flattened to 12 x T values) to the 75
  activation times; fitted on the training split in closed form (one SVD),
  its regularisation chosen by the validation split's MAE.
* voltage, for networks with a voltage head: each site's mean training trace,
  aligned at its activation time before averaging, placed at the baseline's
  activation time (the site mean, or the ridge prediction).

A network that does not beat ``ridge`` by far has learnt nothing a linear
map of the ECG could not.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np
import torch

from solver.common.traces import apd90_ms

from .data import InputScaling, Manifest, iter_shards, read_split, scale_ecg_batch
from .network import EcgiNet

#: Candidate regularisations, as multiples of the largest squared singular value of the training inputs.
RIDGE_ALPHAS = tuple(float(a) for a in np.logspace(-8, 1, 19))


@dataclass
class RidgeFit:
    """Targets = (x - x_mean) @ weights + y_mean."""

    x_mean: np.ndarray
    y_mean: np.ndarray
    weights: np.ndarray
    alpha: float
    validation_mae: float

    def predict(self, x: np.ndarray) -> np.ndarray:
        return ((x - self.x_mean) @ self.weights + self.y_mean).astype(np.float32)


def fit_ridge(
    x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray,
    alphas: tuple[float, ...] = RIDGE_ALPHAS,
) -> RidgeFit:
    """Ridge regression for every alpha from one SVD; keeps the alpha of lowest validation MAE.

    NaN targets (sites that never activate) are set to the site mean for the
    fit, so they pull towards the mean, and left out of the validation MAE.
    """
    x_train = np.asarray(x_train, dtype=np.float64)
    x_mean = x_train.mean(axis=0)
    y_mean = _nanmean0(y_train)
    y_centred = np.where(np.isfinite(y_train), y_train - y_mean, 0.0)
    u, s, vt = np.linalg.svd(x_train - x_mean, full_matrices=False)
    uty = u.T @ y_centred
    x_val_projected = (np.asarray(x_val, dtype=np.float64) - x_mean) @ vt.T
    scale = float(s[0] ** 2) if s.size and s[0] > 0 else 1.0
    best: tuple[float, float, np.ndarray] | None = None
    for relative in alphas:
        alpha = relative * scale
        coef = (s / (s**2 + alpha))[:, None] * uty
        mae = float(np.nanmean(np.abs(x_val_projected @ coef + y_mean - y_val)))
        if best is None or mae < best[0]:
            best = (mae, alpha, coef)
    assert best is not None, "no alpha to try"
    mae, alpha, coef = best
    return RidgeFit(x_mean, y_mean, vt.T @ coef, alpha, mae)


def fit_ridge_network(net: EcgiNet, manifest: Manifest, scaling: InputScaling,
                      ecg_stats: tuple[np.ndarray, np.ndarray]) -> RidgeFit:
    """Set a ``ridge_act`` network's linear map to the ridge regression of the training split.

    The features are what the network's forward pass computes from the
    scaled ECG (``LinearMap.flatten``), alpha is chosen on the validation
    split as for the baseline, and the map is written in the network's
    normalised output units (its ``act_mean`` and ``act_std``).
    """
    head = net.act_head

    def features(split: str) -> tuple[np.ndarray, np.ndarray]:
        arrays = read_split(manifest, split, with_vm=False)
        with torch.no_grad():
            x = head.flatten(torch.from_numpy(scale_ecg_batch(arrays.ecg, scaling, *ecg_stats)))
        return x.double().numpy(), arrays.act

    (x_train, y_train), (x_val, y_val) = features("train"), features("validation")
    fit = fit_ridge(x_train, y_train, x_val, y_val)
    mean, std = net.act_mean.double().numpy(), net.act_std.double().numpy()
    with torch.no_grad():
        head.linear.weight.copy_(torch.from_numpy((fit.weights / std).T))
        head.linear.bias.copy_(torch.from_numpy((fit.y_mean - fit.x_mean @ fit.weights - mean) / std))
    return fit


def site_means(act: np.ndarray) -> np.ndarray:
    """Each site's mean activation time over the samples where it activates."""
    return _nanmean0(act)


def _nanmean0(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    known = np.isfinite(values)
    return np.where(known, values, 0.0).sum(axis=0) / np.maximum(known.sum(axis=0), 1)


@dataclass
class TraceTemplate:
    """Each site's mean trace aligned at activation: ``traces[s, T + k]`` is k samples after it (k in [-T, T))."""

    traces: np.ndarray  # (75, 2T), mV
    dt_ms: float

    @property
    def length(self) -> int:
        return self.traces.shape[1] // 2

    def place(self, act_ms: np.ndarray) -> np.ndarray:
        """(N, 75) activation times -> (N, 75, T) traces, each site's template shifted to its time."""
        t = self.length
        k = np.clip(np.rint(np.nan_to_num(act_ms, nan=0.0) / self.dt_ms), 0, t).astype(np.int64)
        index = t - k[..., None] + np.arange(t)
        sites = np.arange(self.traces.shape[0])[None, :, None]
        return self.traces[sites, index].astype(np.float32)


class TemplateAccumulator:
    """Sums traces aligned at their activation sample, and each site's APD90
    statistics, shard by shard (bounded memory)."""

    def __init__(self, sites: int, length: int, dt_ms: float) -> None:
        self.sites, self.length, self.dt_ms = sites, length, dt_ms
        self.total = np.zeros(sites * 2 * length)
        self.count = np.zeros(sites * 2 * length)
        self.rest = np.zeros(sites)
        self.samples = 0
        self.apd_moments = np.zeros((3, sites))  # count, sum, sum of squares of the defined APD90s

    @classmethod
    def of(cls, chunks: Iterable[tuple[np.ndarray, np.ndarray, np.ndarray | None]],
           dt_ms: float) -> TemplateAccumulator:
        """The sums over ``chunks`` of (Vm (n, T, 75) mV, activation (n, 75) ms, APD90 (n, 75) ms or None)."""
        accumulator: TemplateAccumulator | None = None
        for vm, act, apd in chunks:
            if accumulator is None:
                accumulator = cls(vm.shape[2], vm.shape[1], dt_ms)
            accumulator.add(vm, act, apd)
        assert accumulator is not None, "empty training split"
        return accumulator

    def add(self, vm: np.ndarray, act: np.ndarray, apd: np.ndarray | None = None) -> None:
        """``vm`` (N, T, 75) mV, ``act`` (N, 75) ms, ``apd`` (N, 75) ms when already known;
        sites that never activate add nothing."""
        t = self.length
        traces = np.asarray(vm, dtype=np.float64).transpose(0, 2, 1)  # (N, 75, T)
        known = np.isfinite(act)
        k = np.clip(np.rint(np.nan_to_num(act, nan=0.0) / self.dt_ms), 0, t).astype(np.int64)
        index = (np.arange(self.sites)[None, :, None] * 2 * t + t - k[..., None] + np.arange(t))[known]
        self.total += np.bincount(index.ravel(), traces[known].ravel(), minlength=self.total.size)
        self.count += np.bincount(index.ravel(), minlength=self.count.size)
        self.rest += traces[:, :, 0].sum(axis=0)
        self.samples += traces.shape[0]
        apd = apd90_ms(traces, self.dt_ms) if apd is None else np.asarray(apd, dtype=np.float64)
        defined = np.isfinite(apd)
        self.apd_moments += [defined.sum(axis=0), np.where(defined, apd, 0).sum(axis=0),
                             np.where(defined, apd**2, 0).sum(axis=0)]

    def apd_statistics(self) -> tuple[np.ndarray, np.ndarray]:
        """Each site's mean and standard deviation of APD90 (ms) over the traces that repolarise."""
        count, total, squares = self.apd_moments
        mean = total / np.maximum(count, 1)
        return mean, np.sqrt(np.maximum(squares / np.maximum(count, 1) - mean**2, 0.0))

    def template(self) -> TraceTemplate:
        """Mean where covered; before the first covered sample the first mean value, after the last the last."""
        total = self.total.reshape(self.sites, -1)
        count = self.count.reshape(self.sites, -1)
        traces = np.empty_like(total)
        for site in range(self.sites):
            covered = np.flatnonzero(count[site])
            if covered.size == 0:  # never activated in training: flat at the mean resting value
                traces[site] = self.rest[site] / max(self.samples, 1)
                continue
            mean = total[site, covered] / count[site, covered]
            traces[site] = np.interp(np.arange(total.shape[1]), covered, mean)
        return TraceTemplate(traces, self.dt_ms)


@dataclass
class BaselinePrediction:
    """One baseline's predictions on the evaluated split, in ``ShardDataset`` order."""

    act: np.ndarray  # (N, 75) ms
    vm: np.ndarray | None  # (N, 75, T) mV
    details: dict[str, Any] = field(default_factory=dict)


def predict_baselines(
    manifest: Manifest, split: str, *, scaling: InputScaling, ecg_stats: tuple[np.ndarray, np.ndarray], with_vm: bool,
) -> dict[str, BaselinePrediction]:
    """Fit both baselines on the training split (ridge alpha on validation) and predict ``split``."""
    mean, std = ecg_stats

    def inputs(ecg: np.ndarray) -> np.ndarray:
        return scale_ecg_batch(ecg, scaling, mean, std).reshape(len(ecg), -1)

    train = read_split(manifest, "train", with_vm=False)
    validation = read_split(manifest, "validation", with_vm=False)
    target = read_split(manifest, split, with_vm=False)
    ridge = fit_ridge(inputs(train.ecg), train.act, inputs(validation.ecg), validation.act)
    means = site_means(train.act)
    act = {"site_mean": np.broadcast_to(means, target.act.shape).astype(np.float32),
           "ridge": ridge.predict(inputs(target.ecg))}
    details = {"site_mean": {"fitted_on": len(train.act)},
               "ridge": {"fitted_on": len(train.act), "alpha": ridge.alpha, "validation_act_mae_ms": ridge.validation_mae}}
    template = trace_template(manifest) if with_vm else None
    return {name: BaselinePrediction(act[name], template.place(act[name]) if template else None, details[name])
            for name in ("site_mean", "ridge")}


def trace_template(manifest: Manifest) -> TraceTemplate:
    """The aligned mean training trace of every site."""
    return training_traces(manifest).template()


def training_traces(manifest: Manifest) -> TemplateAccumulator:
    """The training split's traces, aligned and summed, and their APD90 statistics (one pass)."""
    shards = iter_shards(manifest, "train", with_vm=True)
    return TemplateAccumulator.of(((shard.vm, shard.act, None) for shard in shards), manifest.dt_ms)
