"""The campaign plan: every sample's id, anatomy, folder and parameters.

The plan is a pure function of the spec: re-planning gives identical rows,
so a task can rebuild its own row from the frozen spec, and ``resume`` knows
exactly what is missing.  Continuous parameters are drawn from a Latin
hypercube or a scrambled Sobol sequence (space-filling, seeded), categorical
ones from a seeded generator.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Sequence, overload

import numpy as np
from scipy import stats
from scipy.stats import qmc

from .parameters import PARAMETERS
from .spec import CampaignSpec, Distribution


@dataclass(frozen=True)
class SamplePlan:
    index: int
    sample_id: str
    folder: int  #: the sample folder its files go to (workflow.layout)
    geometry_index: int
    geometry_id: str
    values: dict[str, Any]  #: geometry and sample parameters together
    seed: int  #: the sample's own seed (root jitter)


def sample_id(spec: CampaignSpec, index: int) -> str:
    return f"{spec.name}-s{index:06d}"


def geometry_id(spec: CampaignSpec, index: int) -> str:
    if spec.geometry.files:
        return f"{spec.name}-{spec.geometry.files[index].stem}"
    return f"{spec.name}-g{index:04d}"


def _unit_samples(n: int, dims: int, method: str, seed: int) -> np.ndarray:
    if dims == 0:
        return np.zeros((n, 0))
    if method == "latin_hypercube":
        return qmc.LatinHypercube(d=dims, seed=seed).random(n)
    if method == "sobol":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # balance warning for n not a power of two
            return qmc.Sobol(d=dims, scramble=True, seed=seed).random(n)
    return np.random.default_rng(seed).random((n, dims))


def _from_unit(dist: Distribution, u: np.ndarray) -> np.ndarray:
    if dist.kind == "uniform":
        return dist.low + u * (dist.high - dist.low)
    values = dist.mean + dist.std * stats.norm.ppf(np.clip(u, 1e-12, 1 - 1e-12))
    lo = -np.inf if dist.low is None else dist.low
    hi = np.inf if dist.high is None else dist.high
    return np.clip(values, lo, hi)


class _Columns:
    """Drawn values of some parameters for n rows, kept as arrays (a million
    rows of a dozen parameters take ~100 MB, not gigabytes of dicts)."""

    def __init__(self, parameters: dict[str, Distribution], n: int, method: str, seed: int) -> None:
        self.names = sorted(parameters)
        self.parameters = parameters
        continuous = [p for p in self.names if parameters[p].continuous]
        unit = _unit_samples(n, len(continuous), method, seed)
        rng = np.random.default_rng([seed, 1])
        self.columns: dict[str, np.ndarray] = {}
        for j, name in enumerate(continuous):
            self.columns[name] = _from_unit(parameters[name], unit[:, j])
        del unit
        for name in self.names:
            dist = parameters[name]
            if dist.kind == "choice":
                p = None if dist.weights is None else np.asarray(dist.weights, float) / sum(dist.weights)
                self.columns[name] = rng.choice(len(dist.values), size=n, p=p)

    def row(self, i: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in self.names:
            dist = self.parameters[name]
            if dist.kind == "fixed":
                out[name] = dist.value
            elif dist.kind == "choice":
                out[name] = dist.values[int(self.columns[name][i])]
            else:
                out[name] = float(self.columns[name][i])
        return out


def draw(parameters: dict[str, Distribution], n: int, method: str, seed: int) -> list[dict[str, Any]]:
    """n rows of values for the given distributions."""
    columns = _Columns(parameters, n, method, seed)
    return [columns.row(i) for i in range(n)]


class CampaignPlan(Sequence[SamplePlan]):
    """The full, deterministic plan of a campaign, built row by row on access."""

    def __init__(self, spec: CampaignSpec) -> None:
        by_group: dict[str, dict[str, Distribution]] = {"geometry": {}, "sample": {}}
        for name, dist in spec.parameters.items():
            by_group[PARAMETERS[name].group][name] = dist
        self.spec = spec
        self.n_geometries = spec.geometry.n_geometries
        self._geometry = _Columns(by_group["geometry"], self.n_geometries, spec.sampling, spec.seed)
        self._sample = _Columns(by_group["sample"], spec.samples, spec.sampling, spec.seed + 1)
        self._seeds = np.random.SeedSequence(spec.seed).generate_state(spec.samples, dtype=np.uint32)

    def __len__(self) -> int:
        return self.spec.samples

    @overload
    def __getitem__(self, i: int) -> SamplePlan: ...

    @overload
    def __getitem__(self, i: slice) -> list[SamplePlan]: ...

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(len(self)))]
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(i)
        g = i % self.n_geometries
        spec = self.spec
        return SamplePlan(
            index=i, sample_id=sample_id(spec, i), folder=i // spec.samples_per_folder,
            geometry_index=g, geometry_id=geometry_id(spec, g),
            values={**self._geometry.row(g), **self._sample.row(i)}, seed=int(self._seeds[i]),
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence):
            return NotImplemented
        return len(self) == len(other) and all(a == b for a, b in zip(self, other))

    def subset(self, indices: Sequence[int]) -> PlanSubset:
        return PlanSubset(self, indices)

    def by_id(self, sample: str) -> SamplePlan | None:
        """The row of a sample id, or None if the campaign has no such sample."""
        prefix = f"{self.spec.name}-s"
        index = sample[len(prefix):]
        if not sample.startswith(prefix) or not index.isdigit():
            return None
        i = int(index)
        return self[i] if i < len(self) and sample_id(self.spec, i) == sample else None


class PlanSubset(Sequence[SamplePlan]):
    """Some rows of a plan, kept as their indices (rows are built when read)."""

    def __init__(self, plan: CampaignPlan, indices: Sequence[int]) -> None:
        self.plan = plan
        self.indices = np.asarray(indices, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.indices)

    @overload
    def __getitem__(self, i: int) -> SamplePlan: ...

    @overload
    def __getitem__(self, i: slice) -> list[SamplePlan]: ...

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self.plan[int(k)] for k in self.indices[i]]
        return self.plan[int(self.indices[i])]


def plan_samples(spec: CampaignSpec) -> CampaignPlan:
    """The full, deterministic plan of a campaign (rows are built when read)."""
    return CampaignPlan(spec)
