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
