"""The training data set's format: one manifest and HDF5 shards per split.

Written by the campaign's data set build (workflow.dataset), the LLNL import
(workflow.llnl) and the small synthetic set (model.synthetic), all through
``write_shard`` and ``Manifest.to_json``; read by training, evaluation and
prediction (model.data) through ``Manifest.load`` and ``check_shard``.  The
layout is documented in docs/data-formats.md:

    DATASET/manifest.json            splits -> shards (file, samples, sha256),
                                     trace length, sampling step, lead and
                                     site names, training-split statistics
    DATASET/<split>/shard-NNNNN.h5   ecg (K, T, 12) mV, vm (K, T, 75) mV,
                                     act (K, 75) ms, sample_ids, geometry_ids,
                                     conditions, parameters (K, P)
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Protocol, Sequence

import h5py
import numpy as np

from .errors import ConfigError
from .files import atomic_output, sha256_file
from .sites import LEAD_NAMES, SITE_NAMES

FORMAT = "ecgi-dataset"
SHARD_FORMAT = "ecgi-shard"
FORMAT_VERSION = 1
SPLITS = ("train", "validation", "test")
DT_MS = 1.0
MANIFEST_NAME = "manifest.json"
#: Per-lead (ecg) and per-site (act, vm) means and standard deviations of the training split.
STATISTICS = ("ecg_mean", "ecg_std", "act_mean", "act_std", "vm_mean", "vm_std")
#: Shard compression: fast gzip on byte-shuffled float32 (about 3x smaller traces).
_NUMBERS = {"compression": "gzip", "compression_opts": 1, "shuffle": True}


@dataclass(frozen=True)
class ShardInfo:
    file: str  #: relative to the data set directory
    samples: int
    sha256: str
    #: The shard's path, once the manifest was read from a data set directory.
    path: Path | None = field(default=None, compare=False, repr=False)


@dataclass
class Manifest:
    """manifest.json; ``root`` is the directory it was read from, ``report``
    what a build did (set on the manifest a build returns, never stored)."""

    splits: dict[str, list[ShardInfo]]
    statistics: dict[str, list[float]]
    samples_per_step: int
    dt_ms: float = DT_MS
    leads: list[str] = field(default_factory=lambda: list(LEAD_NAMES))
    sites: list[str] = field(default_factory=lambda: list(SITE_NAMES))
    format: str = FORMAT
    format_version: int = FORMAT_VERSION
    root: Path | None = field(default=None, compare=False, repr=False)
    report: Any = field(default=None, compare=False, repr=False)

    @property
    def samples(self) -> int:
        """T, the length of every trace."""
        return self.samples_per_step

    def split_size(self, split: str) -> int:
        return sum(shard.samples for shard in self.splits.get(split, []))

    def statistic(self, name: str) -> np.ndarray:
        """One of STATISTICS as an array (12 values for the ECG, 75 for the sites)."""
        return np.asarray(self.statistics[name], dtype=np.float64)

    def to_json(self) -> str:
        """The file's text: documented key order, no timestamps, so equal manifests are equal bytes."""
        document = {
            "format": self.format,
            "format_version": self.format_version,
            "leads": list(self.leads),
            "sites": list(self.sites),
            "dt_ms": self.dt_ms,
            "samples_per_step": self.samples_per_step,
            "splits": {
                split: [{"file": s.file, "samples": s.samples, "sha256": s.sha256} for s in shards]
                for split, shards in self.splits.items()
            },
            "statistics": self.statistics,
        }
        return json.dumps(document, indent=1) + "\n"

    @classmethod
    def load(cls, root: str | Path) -> Manifest:
        """Read and check DATASET/manifest.json (or a manifest file), refusing
        anything that is not a version-1 ecgi data set of this project's leads and sites."""
        root = Path(root)
        if root.is_file():
            root, path = root.parent, root
        else:
            path = root / MANIFEST_NAME
        if not root.is_dir():
            raise ConfigError(f"{root}: no such data set directory")
        if not path.is_file():
            raise ConfigError(f"{path}: missing; a data set directory needs a {MANIFEST_NAME} (docs/data-formats.md)")
        try:
            raw = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ConfigError(f"{path}: not valid JSON ({exc})") from None
        if not isinstance(raw, dict) or raw.get("format") != FORMAT or raw.get("format_version") != FORMAT_VERSION:
            raise ConfigError(f"{path}: not an ecgi data set manifest (format {FORMAT!r}, version {FORMAT_VERSION})")
        try:
            manifest = cls(
                splits={
                    split: [ShardInfo(str(s["file"]), int(s["samples"]), str(s["sha256"]), root / str(s["file"]))
                            for s in shards]
                    for split, shards in raw["splits"].items()
                },
                statistics={key: [float(x) for x in raw["statistics"][key]] for key in STATISTICS},
                samples_per_step=int(raw["samples_per_step"]),
                dt_ms=float(raw["dt_ms"]),
                leads=[str(x) for x in raw["leads"]],
                sites=[str(x) for x in raw["sites"]],
                root=root,
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ConfigError(f"{path}: malformed manifest ({type(exc).__name__}: {exc})") from None
        if manifest.leads != list(LEAD_NAMES) or manifest.sites != list(SITE_NAMES):
            raise ConfigError(f"{path}: leads/sites differ from solver.common.sites (names and order must match)")
        for key in STATISTICS:
            values = manifest.statistic(key)
            expected = len(LEAD_NAMES) if key.startswith("ecg") else len(SITE_NAMES)
            if values.shape != (expected,) or not np.all(np.isfinite(values)):
                raise ConfigError(f"{path}: statistics.{key} must be {expected} finite numbers")
        return manifest


@dataclass(frozen=True)
class SampleArrays:
    """One sample's traces and targets, before cropping to the data set's length."""

    ecg: np.ndarray  #: (T, 12) mV, leads in LEAD_NAMES order
    vm: np.ndarray  #: (T, 75) mV, sites in SITE_NAMES order
    act: np.ndarray  #: (75,) ms, NaN where a site never activated


class ShardSample(Protocol):
    """What a shard row is made from, whatever it was read from; ``read``
    loads its arrays (one sample in memory at a time)."""

    @property
    def sample_id(self) -> str: ...

    @property
    def geometry_id(self) -> str: ...

    @property
    def condition(self) -> str: ...

    @property
    def parameters(self) -> Mapping[str, float]: ...

    def read(self) -> SampleArrays: ...


@dataclass
class ArraySample:
    """A sample already in memory."""

    sample_id: str
    geometry_id: str
    condition: str
    parameters: dict[str, float]
    arrays: SampleArrays

    def read(self) -> SampleArrays:
        return self.arrays


def fit_length(trace: np.ndarray, t: int) -> np.ndarray:
    """(T', C) -> (t, C) float32: cropped, or padded by holding the last value
    (a trace that ended at rest stays at rest rather than jumping to 0 mV)."""
    trace = np.asarray(trace, dtype=np.float32)
    if len(trace) >= t:
        return trace[:t]
    return np.concatenate([trace, np.repeat(trace[-1:], t - len(trace), axis=0)])


def write_shard(path: Path, split: str, samples: Sequence[ShardSample], parameter_names: Sequence[str], t: int,
                attributes: dict | None = None) -> str:
    """One shard of ``samples``, traces fitted to ``t`` steps, written
    atomically with ``complete`` set last; returns its sha256."""
    with atomic_output(path) as tmp, h5py.File(tmp, "w") as f:
        _write_shard_contents(f, split, samples, parameter_names, t)
        f.attrs.update(attributes or {})
        f.attrs["complete"] = True
    return sha256_file(path)


def _write_shard_contents(f: h5py.File, split: str, samples: Sequence[ShardSample], parameter_names: Sequence[str],
                          t: int) -> None:
    k, n_leads, n_sites = len(samples), len(LEAD_NAMES), len(SITE_NAMES)
    f.attrs.update(format=SHARD_FORMAT, format_version=FORMAT_VERSION, split=split)
    ecg = f.create_dataset("ecg", (k, t, n_leads), np.float32, chunks=(1, t, n_leads), **_NUMBERS)
    ecg.attrs["leads"] = list(LEAD_NAMES)
    ecg.attrs["dt_ms"] = DT_MS
    vm = f.create_dataset("vm", (k, t, n_sites), np.float32, chunks=(1, t, n_sites), **_NUMBERS)
    vm.attrs["sites"] = list(SITE_NAMES)
    act = f.create_dataset("act", (k, n_sites), np.float32, chunks=(1, n_sites), **_NUMBERS)
    for row, sample in enumerate(samples):
        arrays = sample.read()
        ecg[row] = fit_length(arrays.ecg, t)
        vm[row] = fit_length(arrays.vm, t)
        act[row] = arrays.act
    strings = h5py.string_dtype()
    for name, values in (
        ("sample_ids", [s.sample_id for s in samples]),
        ("geometry_ids", [s.geometry_id for s in samples]),
        ("conditions", [s.condition for s in samples]),
    ):
        f.create_dataset(name, data=np.array(values, dtype=object), dtype=strings, chunks=(1,), compression="gzip")
    table = np.array([[s.parameters.get(n, np.nan) for n in parameter_names] for s in samples], np.float64)
    table = table.reshape(k, len(parameter_names))
    # HDF5 cannot chunk a zero-width dimension: without parameters the table is an empty contiguous dataset.
    chunking = {"chunks": (1, len(parameter_names)), **_NUMBERS} if parameter_names else {}
    params = f.create_dataset("parameters", data=table, **chunking)
    params.attrs["parameter_names"] = np.array(parameter_names, dtype=strings)


class RunningMoments:
    """Per-feature count, mean and sum of squared deviations, merged batch by
    batch (Chan et al.'s parallel update) so that a split of any size is
    reduced in bounded memory and without the cancellation of sum-of-squares.
    Non-finite values (a site that never activated) are left out."""

    def __init__(self, n_features: int) -> None:
        self.count = np.zeros(n_features)
        self.mean = np.zeros(n_features)
        self.m2 = np.zeros(n_features)

    def update(self, batch: np.ndarray) -> None:
        """Add rows of a (..., n_features) array."""
        x = np.asarray(batch, dtype=np.float64).reshape(-1, len(self.count))
        finite = np.isfinite(x)
        if finite.all():
            count = np.full(x.shape[1], float(x.shape[0]))
            mean = x.mean(axis=0)
            m2 = ((x - mean) ** 2).sum(axis=0)
        else:
            count = finite.sum(axis=0).astype(np.float64)
            mean = np.divide(np.where(finite, x, 0.0).sum(axis=0), count, out=np.zeros_like(count), where=count > 0)
            m2 = (np.where(finite, x - mean, 0.0) ** 2).sum(axis=0)
        total = self.count + count
        delta = mean - self.mean
        weight = np.divide(count, total, out=np.zeros_like(total), where=total > 0)
        self.mean = self.mean + delta * weight
        self.m2 = self.m2 + m2 + delta**2 * self.count * weight
        self.count = total

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        """Mean and population standard deviation; features never seen get
        mean 0, std 1 so that the manifest holds only finite numbers."""
        seen = self.count > 0
        mean = np.where(seen, self.mean, 0.0)
        std = np.sqrt(np.divide(self.m2, self.count, out=np.ones_like(self.m2), where=seen))
        return mean, std


def train_statistics(shards: Sequence[Path]) -> dict[str, list[float]]:
    """Per-lead ECG and per-site act and vm statistics, read back one shard at a time."""
    moments = {"ecg": RunningMoments(len(LEAD_NAMES)), "act": RunningMoments(len(SITE_NAMES)),
               "vm": RunningMoments(len(SITE_NAMES))}
    for path in shards:
        with h5py.File(path, "r") as f:
            for name, running in moments.items():
                running.update(f[name][()])
    out: dict[str, list[float]] = {}
    for name in moments:
        mean, std = moments[name].result()
        out[f"{name}_mean"] = [float(x) for x in mean]
        out[f"{name}_std"] = [float(x) for x in std]
    return out


def check_shard(shard: ShardInfo, manifest: Manifest, check_sha256: bool = False) -> None:
    """The shard exists, is complete, has the manifest's digest (if asked)
    and the documented shapes; else ConfigError naming the problem."""
    path = shard.path if shard.path is not None else Path(manifest.root or ".") / shard.file
    if not path.is_file():
        raise ConfigError(f"{path}: shard listed in the manifest is missing")
    if check_sha256 and sha256_file(path) != shard.sha256:
        raise ConfigError(f"{path}: sha256 differs from the manifest (corrupt or replaced shard)")
    t, k = manifest.samples, shard.samples
    expected = {"ecg": (k, t, len(LEAD_NAMES)), "vm": (k, t, len(SITE_NAMES)), "act": (k, len(SITE_NAMES)),
                "conditions": (k,)}
    try:
        with h5py.File(path, "r") as f:
            if f.attrs.get("format") != SHARD_FORMAT or not f.attrs.get("complete", False):
                raise ConfigError(f"{path}: not a complete ecgi shard (attributes format/complete)")
            for name, shape in expected.items():
                if name not in f:
                    raise ConfigError(f"{path}: dataset {name!r} is missing")
                if f[name].shape != shape:
                    raise ConfigError(f"{path}: dataset {name!r} has shape {f[name].shape}, expected {shape}")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read as HDF5 ({exc})") from None


def check_dataset(manifest: Manifest, splits: Sequence[str] = SPLITS, check_sha256: bool = False) -> None:
    """Every shard of ``splits`` (each non-empty) checked with ``check_shard``."""
    for split in splits:
        if manifest.split_size(split) == 0:
            raise ConfigError(f"{Path(manifest.root or '.') / MANIFEST_NAME}: split {split!r} has no samples")
        for shard in manifest.splits[split]:
            check_shard(shard, manifest, check_sha256)
