"""Cost estimate of a campaign, from a cost model calibrated by a short run.

cost of one sample on one core = setup + voxels x steps / rate + task


* setup (heart, Laplace solves, fibres, sites, calibration lookup) and rate
  (node-steps/s of the time loop) are measured in a separate process
  (``ecgi campaign measure``, in CPU seconds) the way a campaign worker runs samples: short
  untimed warm-up samples, one per condition, first pay what a long-lived worker pays once
  (imports, compiling each code path, the grid's calibration), then
  the set-up of a few samples of other anatomies and their time loops
  over ``probe_ms`` are timed.  Timing the first sample of a fresh process
  instead counts those one-off costs for every sample: the demo estimate
  was 7x too high, almost all of it a 10 ms time loop whose rate was that
  of its first, compiling steps;
* task is what a worker's task does besides: reading the frozen spec and
  its plan row, writing the sample file and its record (measured on the
  probe's sample file, whose traces are shorter than a full sample's);
* voxels are counted for every anatomy of the plan (voxelising an analytic
  heart takes milliseconds), so size variation across the data set is in;
* a worker builds a heart once per anatomy (``solver.patient.simulation.heart_of``) and
  the driver submits the samples of one anatomy together, so an anatomy
  with n samples pays the full set-up on at most ``slots`` workers and the
  cheaper set-up of a known anatomy (``reuse_setup_s``, measured too) for the
  rest.  Multi-rank samples are fresh MPI jobs: each builds its heart.

Each single-rank worker pays the warm-up once; with R > 1 ranks per
simulation every sample is a fresh MPI job that pays the MPI start and its
compilation, and takes cost / (R x efficiency) wall seconds on R cores
(efficiency 0.9, see docs/performance.md); simulations run ``slots`` at a time.  The wall time adds
the driver's fixed costs (starting Parsl and its workers, building the data
set at the end, docs/performance.md).  Queue waiting on SLURM is not included.
"""
from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from solver.common.errors import ConfigError, RunError

from .executors import workers
from .parameters import apply_parameters
from .sampling import SamplePlan, plan_samples
from .spec import CampaignSpec

PARALLEL_EFFICIENCY = 0.9
#: Fixed and per-task costs of the driver, measured by bench/campaign_throughput.py and
#: bench/aggregation_throughput.py (docs/performance.md): starting Parsl's interchange and workers,
#: Parsl's dispatch per task, starting MPI for a multi-rank task, building the data set.
DRIVER_START_S = 8.0
TASK_OVERHEAD_S = 0.01
MPI_START_S = 1.0
DATASET_SAMPLES_PER_S = 85.0


@dataclass
class CostModel:
    setup_s: float  #: per-sample set-up (heart, coordinates, calibration), mean over the timed samples
    node_steps_per_s: float  #: time-loop throughput on one core, over the timed samples
    measured_voxels: int  #: mean tissue voxels of the timed samples
    measured_ms: float  #: simulated time per timed sample
    warmup_s: float = 0.0  #: the untimed warm-up samples (one-off costs of a worker)
    warmup_samples: int = 1
    timed_samples: int = 1
    timed_steps: int = 0  #: time steps over all timed samples
    #: set-up of a sample whose anatomy the worker has built before (None: as setup_s)
    reuse_setup_s: float | None = None
    #: per task: reading the frozen spec and its plan row, writing the sample file and the record
    task_s: float = 0.0


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


def measure(spec_path: Path, probe_ms: float = 50.0) -> CostModel:
    """Run ``ecgi campaign measure`` in a fresh process and parse its result."""
    from .mpi_env import clean_mpi_env, with_one_thread

    command = [sys.executable, "-m", "workflow.cli", "campaign", "measure", str(spec_path), "--probe-ms", str(probe_ms)]
    # One BLAS thread, as in a worker: an idle BLAS pool spinning beside the
    # time loop counted as its CPU time and halved the measured rate.
    proc = subprocess.run(command, capture_output=True, text=True, env=with_one_thread(clean_mpi_env()))
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
    from solver.patient.biventricle import TISSUE, BiventricleShape, regions
    from solver.common.typedconfig import from_mapping

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
    ranks = spec.resources.ranks_per_simulation
    slots = workers(spec) * (spec.resources.slurm.max_blocks if spec.resources.executor == "slurm" else 1)
    loop = {g: (model.measured_voxels if n < 0 else n) * steps / model.node_steps_per_s for g, n in voxels.items()}
    per_sample = np.array([loop.get(g, 0.0) for g in range(len(uses))]) + TASK_OVERHEAD_S + model.task_s  # per anatomy
    builds = uses if ranks > 1 else np.minimum(uses, slots)  # full set-ups of each anatomy
    reuse = model.setup_s if model.reuse_setup_s is None else model.reuse_setup_s
    per_sample += (builds * model.setup_s + (uses - builds) * reuse) / np.maximum(uses, 1)
    if ranks == 1:  # samples run inside long-lived workers: each pays the one-off costs once
        efficiency, start, once = 1.0, 0.0, slots * model.warmup_s
    else:  # every sample is a fresh MPI job: start-up and one condition's compilation each time
        efficiency, start, once = PARALLEL_EFFICIENCY, MPI_START_S + model.warmup_s / model.warmup_samples, 0.0
    core_seconds = once + float((uses * (ranks * start + per_sample / efficiency)).sum())
    wall = core_seconds / ranks / slots + DRIVER_START_S + spec.samples / DATASET_SAMPLES_PER_S
    return CostEstimate(
        samples=spec.samples, slots=slots, cores=slots * ranks, core_hours=core_seconds / 3600,
        wall_hours=wall / 3600, mean_sample_s=float((per_sample * uses).sum() / spec.samples),
        voxels_mean=float(np.mean([v for v in voxels.values() if v > 0] or [model.measured_voxels])), model=model,
    )


def warmup_plans(plans: list[SamplePlan]) -> list[SamplePlan]:
    """The first sample of each condition: a worker compiles each condition's code paths once."""
    first: dict[str, SamplePlan] = {}
    for plan in plans:
        first.setdefault(str(plan.values.get("condition", "")), plan)
    return list(first.values())


def timed_plans(plans: list[SamplePlan], count: int) -> list[SamplePlan]:
    """Up to ``count`` samples after the first, of anatomies other than the first's, one per anatomy."""
    seen = {plans[0].geometry_index}
    chosen = []
    for plan in plans[1:]:
        if plan.geometry_index not in seen and len(chosen) < count:
            seen.add(plan.geometry_index)
            chosen.append(plan)
    return chosen or plans[:1]


def measure_here(spec: CampaignSpec, probe_ms: float, samples: int = 4) -> CostModel:
    """The measurement itself (in the ``measure`` subprocess, which may use MPI), as a worker runs samples."""
    import tempfile
    import time
    from dataclasses import replace

    import yaml
    from mpi4py import MPI

    from solver.patient import PatientSimulation, write_sample

    from .layout import write_json_atomic
    from .patients import patient_config
    from .spec import load_spec

    def patient(plan: SamplePlan, duration_ms: float) -> PatientSimulation:
        config = patient_config(spec, plan)
        return PatientSimulation(replace(config, time=replace(config.time, duration_ms=duration_ms)), MPI.COMM_SELF)

    # CPU time, not wall time: the estimate is for cores a sample has to itself, and other
    # processes on the measuring machine must not inflate it
    clock = time.process_time
    plans = plan_samples(spec)
    warm = warmup_plans(plans)
    start = clock()
    for plan in warm:
        with patient(plan, min(probe_ms, 2.0)) as simulation:
            simulation.run()
    warmup = clock() - start
    setups, voxels, steps, node_steps, loop_s, tasks = [], [], 0, 0.0, 0.0, []
    timed = timed_plans(plans, samples)
    scratch = Path(tempfile.mkdtemp(prefix="ecgi-measure-"))
    (scratch / "spec.yaml").write_text(yaml.safe_dump(spec.to_dict(), sort_keys=False))
    for plan in timed:
        start = clock()
        simulation = patient(plan, probe_ms)
        setups.append(clock() - start)
        start = clock()
        sample = simulation.run()
        loop_s += clock() - start
        simulation.destroy()
        provenance = sample.result.provenance
        voxels.append(provenance["tissue_voxels"])
        steps += provenance["steps"]
        node_steps += provenance["tissue_voxels"] * provenance["steps"]
        start = clock()  # what workflow.task does around the simulation
        plan_samples(load_spec(scratch / "spec.yaml")).by_id(plan.sample_id)
        write_sample(scratch / "sample.h5", sample)
        write_json_atomic(scratch / "record.json", {"sample_id": plan.sample_id, "state": "done"})
        tasks.append(clock() - start)
    for path in scratch.iterdir():
        path.unlink()
    scratch.rmdir()
    reuse = []
    for plan in timed:  # the same anatomies again: their hearts are known to this worker now
        start = clock()
        simulation = patient(plan, probe_ms)
        reuse.append(clock() - start)
        simulation.destroy()
    return CostModel(setup_s=float(np.mean(setups)), node_steps_per_s=node_steps / max(loop_s, 1e-9),
                     measured_voxels=int(np.mean(voxels)), measured_ms=probe_ms, warmup_s=warmup,
                     warmup_samples=len(warm), timed_samples=len(setups), timed_steps=steps,
                     reuse_setup_s=float(np.mean(reuse)), task_s=float(np.mean(tasks)))

