"""One sample, run where Parsl placed it: ``ecgi campaign task DIR ID``.

The task rebuilds its configuration from the frozen spec (the plan is a
pure function of it), runs the patient simulation on the MPI ranks it was
started with, writes the sample file atomically and then its record.  Its
exit status tells the driver what kind of failure it was
(``workflow.failures``: which kinds are retried).
"""
from __future__ import annotations

import socket
import sys
import time
from pathlib import Path

from solver import __version__
from solver.common.errors import ConfigError

from .failures import EXIT_OK, Failure, failure_in_task
from .layout import CampaignLayout, SampleRecord
from .sampling import plan_samples
from .spec import load_spec


def run_task(campaign_dir: Path, sample_id: str) -> int:
    # MPI is imported here, not at module level: the driver must not
    # initialise MPI (workflow.mpi_env says why).
    from mpi4py import MPI

    from solver.numerics.petsc_options import insert_petsc_options
    from solver.patient import PatientSimulation, write_sample

    from .patients import patient_config

    comm = MPI.COMM_WORLD
    layout = CampaignLayout(campaign_dir)
    spec = load_spec(layout.spec_path)
    plan = plan_samples(spec).by_id(sample_id)
    if plan is None:
        raise ConfigError(f"no sample {sample_id!r} in campaign {spec.name}")
    root = comm.Get_rank() == 0
    cpu_start = time.process_time()
    previous = layout.read_record(plan)
    record = SampleRecord(
        sample_id=sample_id, state="running", attempts=(previous.attempts if previous else 0) + 1,
        host=socket.gethostname(), ranks=comm.Get_size(), started_at=time.time(),
        log_path=str(layout.log_path(plan)), code_version=__version__, seed=plan.seed,
        parameters={k: v for k, v in plan.values.items()},
    )
    if root:
        layout.write_record(plan, record)
    try:
        insert_petsc_options(spec.solver.petsc_options)
        config = patient_config(spec, plan)
        with PatientSimulation(config, comm) as simulation:  # a worker runs thousands: free each one
            sample = simulation.run()
        if root:
            path = write_sample(layout.sample_path(plan), sample)
            import h5py

            with h5py.File(path, "r") as f:
                record.checksum = str(f.attrs["checksum_sha256"])
            record.file_size = path.stat().st_size
            _finish(layout, plan, record, "done", EXIT_OK, cpu_start)
        return EXIT_OK
    except Exception as exc:
        failure = failure_in_task(exc)
        if failure is None:
            raise
        return _fail(layout, plan, record, root, failure, exc, cpu_start)


def run_task_logged(campaign_dir: Path, sample_id: str, log_path: Path) -> int:
    """``run_task`` with its output appended to the sample's log file."""
    import contextlib

    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "a") as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        try:
            return run_task(campaign_dir, sample_id)
        except Exception:
            import traceback

            traceback.print_exc()
            raise


def _finish(layout, plan, record: SampleRecord, state: str, status: int, cpu_start: float) -> None:
    record.state = state
    record.exit_status = status
    record.finished_at = time.time()
    record.wall_time_s = record.finished_at - record.started_at
    record.cpu_time_s = time.process_time() - cpu_start
    layout.write_record(plan, record)


def _fail(layout, plan, record, root: bool, failure: Failure, exc: Exception, cpu_start: float) -> int:
    print(f"ecgi campaign task {plan.sample_id}: {failure.kind}: {exc}", file=sys.stderr)
    if root:
        record.error_kind, record.error = failure.kind, str(exc)
        _finish(layout, plan, record, "failed", failure.exit_status, cpu_start)
    return failure.exit_status
