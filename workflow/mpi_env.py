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
