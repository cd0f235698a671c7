"""Cost estimate of a campaign, from a cost model calibrated by a short run.

cost of one sample on one core = setup + voxels x steps / rate

* setup (heart, Laplace solves, calibration, sites) and rate (node-steps/s
  of the time loop) are measured by simulating the first sample for a few
  milliseconds in a separate process (``ecgi campaign measure``);
* voxels are counted for every anatomy of the plan (voxelising an analytic
  heart takes milliseconds), so size variation across the data set is in.

With R ranks per simulation a sample takes cost / (R x efficiency) wall
seconds on R cores (efficiency 0.9, see docs/performance.md); simulations
run ``slots`` at a time.  Queue waiting on SLURM is not included.
"""
from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from solver.errors import ConfigError, RunError

from .executors import workers
from .parameters import apply_parameters
from .sampling import SamplePlan, plan_samples
from .spec import CampaignSpec

PARALLEL_EFFICIENCY = 0.9


@dataclass
class CostModel:
    setup_s: float  #: per-sample set-up (heart, coordinates, calibration)
    node_steps_per_s: float  #: time-loop throughput on one core
    measured_voxels: int
    measured_ms: float


@dataclass
class CostEstimate:
    samples: int
    slots: int
    cores: int
    core_hours: float
    wall_hours: float
    mean_sample_s: float
    voxels_mean: float
    model: CostModel


def measure(spec_path: Path, probe_ms: float = 10.0) -> CostModel:
    """Run ``ecgi campaign measure`` in a fresh process and parse its result."""
    from .mpi_env import clean_mpi_env

    command = [sys.executable, "-m", "workflow.cli", "campaign", "measure", str(spec_path), "--probe-ms", str(probe_ms)]
    proc = subprocess.run(command, capture_output=True, text=True, env=clean_mpi_env())
    if proc.returncode != 0:
        # The measuring run reports its error as its last line (workflow.cli.report_error).
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        reason = lines[-1] if lines else f"exit status {proc.returncode}"
        reason = reason.split(": error: ", 1)[-1]
        hint = "" if proc.returncode == 2 else "; `ecgi campaign plan --no-measure` skips the estimate"
        error = ConfigError if proc.returncode == 2 else RunError
        raise error(f"the measuring run of the cost estimate failed: {reason}{hint}")
    try:
        return CostModel(**json.loads(proc.stdout.strip().splitlines()[-1]))
    except (IndexError, ValueError, TypeError) as exc:
        raise RunError(f"the measuring run of the cost estimate printed no result ({exc})") from None


def geometry_voxels(spec: CampaignSpec, plans: Sequence[SamplePlan]) -> dict[int, int]:
    """Tissue voxel count of every anatomy of the plan."""
    from solver.biventricle import TISSUE, BiventricleShape, regions
    from solver.typedconfig import from_mapping

    counts: dict[int, int] = {}
    for plan in plans[:spec.geometry.n_geometries]:  # sample i has anatomy i % n
        if plan.geometry_index in counts:
            continue
        if spec.geometry.files:
            counts[plan.geometry_index] = -1  # counted by the measurement run
            continue
        config = apply_parameters({}, plan.values, np.random.default_rng(0), spec.solver.ionic_model)
        shape = from_mapping(BiventricleShape, config.get("heart", {}).get("shape", {}))
        code, _ = regions(shape, spec.solver.dx_mm)
        counts[plan.geometry_index] = int((code == TISSUE).sum())
    return counts


def estimate(spec: CampaignSpec, model: CostModel) -> CostEstimate:
    steps = spec.solver.duration_ms / spec.solver.dt_ms
    plans = plan_samples(spec)
    voxels = geometry_voxels(spec, plans)
    # Sample i has anatomy i % n: weigh each anatomy's cost by its number of samples.
    uses = np.bincount(np.arange(spec.samples) % spec.geometry.n_geometries, minlength=spec.geometry.n_geometries)
    cost = {g: model.setup_s + (model.measured_voxels if n < 0 else n) * steps / model.node_steps_per_s
            for g, n in voxels.items()}
    per_sample = np.array([cost.get(g, 0.0) for g in range(len(uses))])  # unused anatomies cost 0
    ranks = spec.resources.ranks_per_simulation
    efficiency = 1.0 if ranks == 1 else PARALLEL_EFFICIENCY
    core_seconds = float((per_sample * uses).sum()) / efficiency
    slots = workers(spec) * (spec.resources.slurm.max_blocks if spec.resources.executor == "slurm" else 1)
    wall = core_seconds / ranks / slots
    return CostEstimate(
        samples=spec.samples, slots=slots, cores=slots * ranks, core_hours=core_seconds / 3600,
        wall_hours=wall / 3600, mean_sample_s=float((per_sample * uses).sum() / spec.samples),
        voxels_mean=float(np.mean([v for v in voxels.values() if v > 0] or [model.measured_voxels])), model=model,
    )


def measure_here(spec: CampaignSpec, probe_ms: float) -> CostModel:
    """The measurement itself (in the ``measure`` subprocess, which may use MPI)."""
    import time
    from dataclasses import replace

    from mpi4py import MPI

    from solver.patient import PatientSimulation

    from .patients import patient_config

    plan = plan_samples(spec)[0]
    config = patient_config(spec, plan)
    config = replace(config, time=replace(config.time, duration_ms=probe_ms))
    start = time.perf_counter()
    patient = PatientSimulation(config, MPI.COMM_SELF)
    setup = time.perf_counter() - start
    result = patient.run().result
    return CostModel(setup_s=setup, node_steps_per_s=result.provenance["node_steps_per_s"],
                     measured_voxels=result.provenance["tissue_voxels"], measured_ms=probe_ms)

