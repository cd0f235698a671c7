"""One sample, run where Parsl placed it: ``ecgi campaign task DIR ID``.

The task rebuilds its configuration from the frozen spec (the plan is a
pure function of it), runs the patient simulation on the MPI ranks it was
started with, writes the sample file atomically and then its record.  Exit
status tells the driver what kind of failure it was: solver and
configuration errors are final, anything else (a killed process, a lost
node, an I/O error) may be retried.
"""
from __future__ import annotations

import socket
import sys
import time
from pathlib import Path

from solver import __version__
from solver.common.errors import ConfigError, SolverError

from .layout import CampaignLayout, SampleRecord
from .sampling import plan_samples
from .spec import load_spec

EXIT_OK, EXIT_SOLVER_ERROR, EXIT_CONFIG_ERROR, EXIT_IO_ERROR = 0, 3, 4, 5
#: Failure kind of each non-zero exit status; a process killed by a signal
#: shows as 128 + signal from a shell, or as minus the signal.
EXIT_KINDS = {EXIT_SOLVER_ERROR: "solver_error", EXIT_CONFIG_ERROR: "config_error", EXIT_IO_ERROR: "io_error",
              137: "killed", 143: "killed", -9: "killed", -15: "killed"}


def run_task(campaign_dir: Path, sample_id: str) -> int:
    # MPI is imported here, not at module level: the driver imports this
    # module for its exit statuses and must not initialise MPI.
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
    except SolverError as exc:
        return _fail(layout, plan, record, root, "solver_error", exc, cpu_start, EXIT_SOLVER_ERROR)
    except ConfigError as exc:
        return _fail(layout, plan, record, root, "config_error", exc, cpu_start, EXIT_CONFIG_ERROR)
    except OSError as exc:
        return _fail(layout, plan, record, root, "io_error", exc, cpu_start, EXIT_IO_ERROR)


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


def _fail(layout, plan, record, root: bool, kind: str, exc: Exception, cpu_start: float, status: int) -> int:
    print(f"ecgi campaign task {plan.sample_id}: {kind}: {exc}", file=sys.stderr)
    if root:
        record.error_kind, record.error = kind, str(exc)
        _finish(layout, plan, record, "failed", status, cpu_start)
    return status
