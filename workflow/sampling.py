"""The campaign plan: every sample's id, anatomy, shard and parameters.

The plan is a pure function of the spec: re-planning gives identical rows,
so a task can rebuild its own row from the frozen spec, and ``resume`` knows
exactly what is missing.  Continuous parameters are drawn from a Latin
hypercube or a scrambled Sobol sequence (space-filling, seeded), categorical
ones from a seeded generator.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats
from scipy.stats import qmc

from .parameters import PARAMETERS
from .spec import CampaignSpec, Distribution


@dataclass(frozen=True)
class SamplePlan:
    index: int
    sample_id: str
    shard: int
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


def draw(parameters: dict[str, Distribution], n: int, method: str, seed: int) -> list[dict[str, Any]]:
    """n rows of values for the given distributions."""
    names = sorted(parameters)
    continuous = [p for p in names if parameters[p].continuous]
    unit = _unit_samples(n, len(continuous), method, seed)
    rng = np.random.default_rng([seed, 1])
    columns: dict[str, list] = {}
    for j, name in enumerate(continuous):
        columns[name] = [float(x) for x in _from_unit(parameters[name], unit[:, j])]
    for name in names:
        dist = parameters[name]
        if dist.kind == "fixed":
            columns[name] = [dist.value] * n
        elif dist.kind == "choice":
            p = None if dist.weights is None else np.asarray(dist.weights, float) / sum(dist.weights)
            picks = rng.choice(len(dist.values), size=n, p=p)
            columns[name] = [dist.values[k] for k in picks]
    return [{name: columns[name][i] for name in names} for i in range(n)]


def plan_samples(spec: CampaignSpec) -> list[SamplePlan]:
    """The full, deterministic plan of a campaign."""
    by_group = {"geometry": {}, "sample": {}}
    for name, dist in spec.parameters.items():
        by_group[PARAMETERS[name].group][name] = dist
    n_geo = spec.geometry.n_geometries
    geometry_rows = draw(by_group["geometry"], n_geo, spec.sampling, spec.seed)
    sample_rows = draw(by_group["sample"], spec.samples, spec.sampling, spec.seed + 1)
    seeds = np.random.SeedSequence(spec.seed).generate_state(spec.samples, dtype=np.uint32)
    plans = []
    for i in range(spec.samples):
        g = i % n_geo
        plans.append(SamplePlan(
            index=i, sample_id=sample_id(spec, i), shard=i // spec.samples_per_shard,
            geometry_index=g, geometry_id=geometry_id(spec, g),
            values={**geometry_rows[g], **sample_rows[i]}, seed=int(seeds[i]),
        ))
    return plans
