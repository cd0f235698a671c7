"""The Parsl apps of a campaign (importable by workers: Parsl pickles apps
by reference).

Single-rank simulations run inside the long-lived worker process: the
interpreter, PETSc and the compiled kernels are loaded once per worker, not
once per sample (about 1.5 s saved per task, more than a small sample's
solve).  Multi-rank simulations run as a bash app under an MPI launcher.
"""
from __future__ import annotations

from pathlib import Path

from .failures import EXIT_OK, TaskFailed


def simulate_in_worker(campaign_dir: str, sample_id: str, log_path: str) -> str:
    from .mpi_env import prepare_singleton_mpi

    prepare_singleton_mpi()
    from .task import run_task_logged

    status = run_task_logged(Path(campaign_dir), sample_id, Path(log_path))
    if status != EXIT_OK:
        raise TaskFailed(sample_id, status)
    return sample_id


def simulate_with_mpi(command: str, stdout=None, stderr=None, walltime=None, parsl_resource_specification=None) -> str:
    return command
