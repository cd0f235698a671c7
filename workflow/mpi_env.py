"""Environment hygiene for processes that start MPI programs.

A process that has initialised MPI (importing mpi4py or petsc4py does)
carries runtime variables (OMPI_*, PMIX_*) that make a child ``mpiexec``
believe it runs inside that job and fail.  Children get a clean copy.
"""
from __future__ import annotations

import os

_RUNTIME_PREFIXES = ("OMPI_", "PMIX_", "PMI_", "ORTE_", "OPAL_", "HYDRA_")
#: Settings users give Open MPI on purpose; kept.
_KEEP = ("OMPI_ALLOW_RUN_AS_ROOT", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "OMPI_MCA_rmaps_base_oversubscribe")


#: One thread per simulation process: each rank (or single-rank worker) owns
#: one core, and a BLAS that starts a thread per core on a busy node spins
#: against the other ranks (a 10 x n product, 11 us alone, took 0.8 ms with
#: two workers on two cores).  A value the user exported is kept.
ONE_THREAD_PER_PROCESS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def one_thread_exports() -> str:
    """Shell lines that give each simulation process one BLAS/OpenMP thread
    unless the user chose otherwise (for a worker's start-up script)."""
    return "\n".join(f"export {name}=${{{name}:-1}}" for name in ONE_THREAD_PER_PROCESS)


def with_one_thread(env: dict[str, str]) -> dict[str, str]:
    """``env`` with one BLAS/OpenMP thread, as a worker has (``one_thread_exports``), unless it chose otherwise."""
    return {**{name: "1" for name in ONE_THREAD_PER_PROCESS}, **env}


def clean_mpi_env(base: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ if base is None else base)
    return {k: v for k, v in env.items() if k in _KEEP or not k.startswith(_RUNTIME_PREFIXES)}


#: Variables by which an MPI library decides it was started by srun (and then
#: needs Slurm's PMI, which Debian's Open MPI is not built with).
_STEP_VARIABLES = ("SLURM_STEP_ID", "SLURM_STEPID", "SLURM_PROCID", "SLURM_LOCALID", "SLURM_NODEID",
                   "SLURM_STEP_NODELIST", "SLURM_STEP_NUM_NODES", "SLURM_STEP_NUM_TASKS", "SLURM_STEP_TASKS_PER_NODE")


def prepare_singleton_mpi() -> None:
    """Let this process start MPI on its own (one rank), even inside an srun
    step such as the one that runs Parsl's workers on a SLURM block.

    Must run before MPI is initialised; afterwards it changes nothing."""
    import sys

    if "mpi4py.MPI" in sys.modules:
        return
    for name in list(os.environ):
        if name in _STEP_VARIABLES or name.startswith(("PMI_", "PMIX_")):
            del os.environ[name]
