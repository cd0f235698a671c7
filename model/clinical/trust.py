"""How far to trust a prediction: an out-of-distribution score for the input and per-site uncertainty.

**OOD score.**  Each network input (the scaled ECG window, 12 x T) is
summarised by 38 features: per lead, the largest and smallest value over
the QRS (the first 120 ms after the onset) and the mean over the ST-T
segment (120-400 ms); over all leads, the centre and spread in time of the
squared slope over the first 250 ms (where and how wide the QRS is).  The training split's features give a mean and a
covariance (shrunk 10 % towards its diagonal, so it stays invertible with
few samples); the score is the Mahalanobis distance of the input's features
from that mean.  The warning threshold is the 99th percentile of the
training samples' own distances (stored with the reference): above it, the
input looks less like the training ECGs than 99 % of them do, and its
prediction is an extrapolation.  Training stores the reference in every
checkpoint (``inputs.ood``); ``ecgi predict --reference DATASET`` computes
it from a data set instead.

**Per-site uncertainty.**  MC dropout (Gal and Ghahramani, 2016): the
network's dropout stays active at inference and the spread (standard
deviation) of ``passes`` forward passes is reported for each site; with
several checkpoints (``--ensemble``) the spread over the ensemble is used
instead.  Networks without dropout report no spread unless given an ensemble.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from solver.common.errors import ConfigError

QRS_MS = 120
ENERGY_MS = 250
N_FEATURES = 3 * 12 + 2
STT_MS = (120, 400)
SHRINKAGE = 0.10
THRESHOLD_PERCENTILE = 99.0
MAX_REFERENCE_SAMPLES = 4096


def features(x: np.ndarray) -> np.ndarray:
    """38 shape and timing features of a network input (12, T) or a batch (B, 12, T).

    Windows are clipped to T, so short traces (tests, other trace lengths) still give finite features.
    """
    x = np.asarray(x, dtype=np.float64)
    length = x.shape[-1]
    qrs = x[..., :max(min(QRS_MS, length), 1)]
    stt = x[..., min(STT_MS[0], length - 1):max(min(STT_MS[1], length), min(STT_MS[0], length - 1) + 1)]
    return np.concatenate([qrs.max(-1), qrs.min(-1), stt.mean(-1), _qrs_timing(x)], axis=-1)


def _qrs_timing(x: np.ndarray) -> np.ndarray:
    """Centre and spread (ms) of the depolarisation's slope energy over the first ENERGY_MS: QRS timing and width."""
    head = x[..., :max(min(ENERGY_MS, x.shape[-1]), 2)]
    energy = np.sum(np.diff(head, axis=-1) ** 2, axis=-2)  # summed over leads
    weights = energy / np.maximum(energy.sum(-1, keepdims=True), 1e-12)
    t = np.arange(energy.shape[-1]) + 0.5
    centre = (weights * t).sum(-1)
    spread = np.sqrt((weights * (t - centre[..., None]) ** 2).sum(-1))
    return np.stack([centre, spread], axis=-1)


@dataclass
class OodReference:
    mean: list[float]
    precision: list[list[float]]  # inverse of the shrunk covariance
    threshold: float
    samples: int

    def distance(self, x: np.ndarray) -> np.ndarray:
        d = features(x) - np.asarray(self.mean)
        return np.sqrt(np.einsum("...i,ij,...j->...", d, np.asarray(self.precision), d))

    def to_json(self) -> str:
        return json.dumps(asdict(self))


def fit_reference(inputs: np.ndarray) -> OodReference:
    """Reference statistics from training inputs (B, 12, T)."""
    f = features(inputs)
    if len(f) < 2:
        raise ConfigError("an OOD reference needs at least 2 training samples")
    mean = f.mean(0)
    cov = np.cov(f, rowvar=False)
    cov = (1 - SHRINKAGE) * cov + SHRINKAGE * np.diag(np.diag(cov)) + 1e-9 * np.eye(len(mean))
    precision = np.linalg.pinv(cov)
    ref = OodReference(mean.tolist(), precision.tolist(), 0.0, len(f))
    ref.threshold = float(np.percentile(ref.distance(inputs), THRESHOLD_PERCENTILE))
    return ref


def reference_from_dataset(root: str | Path, scaling: str, ecg_mean, ecg_std, split: str = "train") -> OodReference:
    """Fit the reference on a data set split, scaled as the checkpoint scales its inputs (>= 2 samples)."""
    import h5py

    from model.data import load_manifest, scale_ecg

    manifest = load_manifest(root)
    inputs = []
    for entry in manifest.splits.get(split, []):
        with h5py.File(entry.path, "r") as f:
            for ecg in f["ecg"][: MAX_REFERENCE_SAMPLES - len(inputs)]:
                inputs.append(scale_ecg(ecg, scaling, np.asarray(ecg_mean), np.asarray(ecg_std)))
        if len(inputs) >= MAX_REFERENCE_SAMPLES:
            break
    if not inputs:
        raise ConfigError(f"{root}: split {split!r} has no samples for an OOD reference")
    return fit_reference(np.stack(inputs))


def mc_dropout(model: torch.nn.Module, x: torch.Tensor, passes: int, seed: int = 0) -> dict[str, torch.Tensor] | None:
    """Physical outputs of ``passes`` forward passes with dropout active: tensors (passes, B, ...).

    None when the network has no dropout that is switched on.
    """
    drops = [m for m in model.modules() if isinstance(m, torch.nn.Dropout) and m.p > 0]
    if not drops or passes < 2:
        return None
    generator_state = torch.get_rng_state()
    torch.manual_seed(seed)  # the same input gives the same spread on every run
    try:
        for m in drops:
            m.train()
        with torch.no_grad():
            outs = [model.to_physical(model(x)) for _ in range(passes)]
    finally:
        for m in drops:
            m.eval()
        torch.set_rng_state(generator_state)
    return {key: torch.stack([o[key] for o in outs]) for key in outs[0]}
