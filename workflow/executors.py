"""Parsl configuration for a campaign: local cores or SLURM blocks.

One simulation is one Parsl bash app running ``ecgi campaign task``; with
several ranks per simulation it runs under an MPI launcher.  Executors:

* ranks_per_simulation == 1: HighThroughputExecutor, one worker per core
  (local) or per allocated core (SLURM, workers started on every node of
  a block by srun);
* ranks_per_simulation > 1: locally, HTEX with one worker per
  ``ranks_per_simulation`` cores, each task starting its own ``mpiexec``;
  on SLURM, MPIExecutor (HTEX in MPI mode), which hands each task a node of
  the block, where the task runs Open MPI's ``mpiexec``.

Failures are classified by ``retry_cost``: solver and configuration errors
are final; lost workers or nodes, timeouts and I/O errors are retried.
"""
from __future__ import annotations

import logging
import os
import shlex
import sys
from pathlib import Path

from .layout import FINAL_KINDS
from .mpi_env import one_thread_exports
from .spec import CampaignSpec
from .task import EXIT_KINDS


def classify_failure(exc: BaseException) -> str:
    """The failure kind of a task exception (see workflow.layout.FINAL_KINDS)."""
    from parsl.app.errors import AppTimeout, BashExitFailure
    from parsl.executors.errors import ExecutorError  # BadStateException is one
    from parsl.executors.high_throughput.errors import ManagerLost, WorkerLost

    from .apps import TaskFailed

    if isinstance(exc, (BashExitFailure, TaskFailed)):
        return EXIT_KINDS.get(exc.exitcode, "unknown")
    if isinstance(exc, AppTimeout):
        return "timeout"
    if isinstance(exc, (ManagerLost, WorkerLost, ExecutorError)):
        return "node_lost"
    if isinstance(exc, OSError):
        return "io_error"
    return "unknown"


def retry_cost(exc: BaseException, task_record) -> float:
    """Parsl retry handler: final failures exhaust the retry budget at once."""
    return 1e9 if classify_failure(exc) in FINAL_KINDS else 1.0


def task_command(spec: CampaignSpec, campaign_dir: Path, sample_id: str) -> str:
    """The shell command of one simulation; every value is quoted."""
    argv = [sys.executable, "-m", "workflow.cli", "campaign", "task", str(campaign_dir), sample_id]
    ranks = spec.resources.ranks_per_simulation
    command = " ".join(shlex.quote(a) for a in argv)
    if ranks == 1:
        return command
    if spec.resources.executor == "local":
        return f"mpiexec -n {ranks} --bind-to none {command}"
    # Inside a SLURM allocation: Open MPI's mpiexec on the node Parsl's
    # MPIExecutor assigned to this task ($PARSL_MPI_NODELIST).  (Parsl's own
    # mpiexec prefix uses MPICH flags; srun needs Slurm built with PMIx.)
    return f'mpiexec -n {ranks} --host "${{PARSL_MPI_NODELIST}}:{ranks}" --bind-to none {command}'



def workers(spec: CampaignSpec) -> int:
    """Simulations running at once in one block."""
    r = spec.resources
    if r.executor == "local":
        return max(1, r.cores_available() // r.ranks_per_simulation)
    cores = r.slurm.cores_per_node or os.cpu_count() or 1
    return max(1, cores // r.ranks_per_simulation) * r.slurm.nodes_per_block


def _scheduler_options(spec: CampaignSpec) -> str:
    """The spec's #SBATCH lines; MPI tasks also need every core as a task slot
    (SlurmProvider asks for one task per node, which Open MPI would obey)."""
    options = spec.resources.slurm.scheduler_options.strip()
    cores = spec.resources.slurm.cores_per_node
    if spec.resources.ranks_per_simulation > 1 and cores:
        options += f"\n#SBATCH --ntasks-per-node={cores}"
    return options.strip()


def _worker_init(spec: CampaignSpec) -> str:
    """The spec's worker init, after putting this installation's commands on
    PATH (on a shared file system the nodes see the same environment) and
    giving each simulation process one thread."""
    bin_dir = shlex.quote(str(Path(sys.executable).parent))
    user_init = spec.resources.slurm.worker_init if spec.resources.executor == "slurm" else ""
    return f"export PATH={bin_dir}:$PATH\n{one_thread_exports()}\n{user_init}".strip()


def slurm_provider(spec: CampaignSpec, provider_class=None):
    from parsl.launchers import SimpleLauncher, SrunLauncher
    from parsl.providers import SlurmProvider

    provider_class = provider_class or SlurmProvider
    s = spec.resources.slurm
    job = s.job_attributes()
    return provider_class(
        partition=job.partition, account=job.account, qos=job.qos, constraint=job.constraint,
        nodes_per_block=s.nodes_per_block,
        cores_per_node=s.cores_per_node if spec.resources.ranks_per_simulation == 1 else None,
        # Parsl reads only H:MM:SS; any sbatch form of the spec becomes one.
        init_blocks=1, min_blocks=0, max_blocks=s.max_blocks, walltime=job.parsl_walltime,
        scheduler_options=_scheduler_options(spec), worker_init=_worker_init(spec), exclusive=False,
        launcher=SrunLauncher() if spec.resources.ranks_per_simulation == 1 else SimpleLauncher(),
    )


def parsl_config(spec: CampaignSpec, run_dir: Path):
    from parsl.config import Config
    from parsl.executors import HighThroughputExecutor, MPIExecutor
    from parsl.launchers import SimpleLauncher
    from parsl.providers import LocalProvider

    # Parsl logs to parsl.log under the campaign directory; once the disk is
    # full each record would print a "Logging error" traceback on stderr.
    # The driver says so itself, in one line: a record that cannot be
    # written is dropped.
    logging.raiseExceptions = False
    r = spec.resources
    address = {"address": r.slurm.driver_address} if r.executor == "slurm" and r.slurm.driver_address else {}
    if r.executor == "slurm":
        provider = slurm_provider(spec)
    else:
        provider = LocalProvider(init_blocks=1, min_blocks=1, max_blocks=1, launcher=SimpleLauncher(),
                                 worker_init=_worker_init(spec))
    if r.ranks_per_simulation == 1 or r.executor == "local":
        # Locally a worker per simulation slot is enough: multi-rank tasks
        # start their own mpiexec (Parsl's MPI mode needs a batch scheduler).
        per_node = workers(spec) // (r.slurm.nodes_per_block if r.executor == "slurm" else 1)
        executor = HighThroughputExecutor(
            label="simulations", max_workers_per_node=per_node, cores_per_worker=1e-6, prefetch_capacity=per_node,
            provider=provider, heartbeat_period=5, heartbeat_threshold=30, **address,
        )
    else:
        executor = MPIExecutor(
            label="simulations", max_workers_per_block=workers(spec), mpi_launcher="mpiexec",
            provider=provider, heartbeat_period=5, heartbeat_threshold=30, **address,
        )
    return Config(
        executors=[executor], run_dir=str(run_dir), retries=r.retries, retry_handler=retry_cost,
        strategy="simple", max_idletime=30,
    )


#: The name Parsl's executors give a block's job (BlockProviderExecutor._launch_block).
BLOCK_JOB_NAME = "parsl.simulations.block-0"
#: Stands for the worker-pool command line, which holds the driver's ports.
WORKER_POOL = "process_worker_pool.py ...  # Parsl's worker pool"


def block_script(spec: CampaignSpec, script_dir: Path) -> str:
    """The batch script Parsl's SlurmProvider writes for one block of this
    campaign: its own ``submit``, with ``execute_wait`` answering in place
    of sbatch (as Parsl's tests/test_providers/test_slurm_template.py does),
    so no copy of Parsl's template can drift from what it submits."""
    from parsl.providers import SlurmProvider

    submitted: list[str] = []

    class Captured(SlurmProvider):
        def execute_wait(self, cmd: str, timeout: int | None = None) -> tuple[int, str, str]:
            # sacct (asked at construction) is "absent"; sbatch records the script.
            if not cmd.startswith("sbatch "):
                return 1, "", "not run"
            submitted.append(cmd.split(" ", 1)[1])
            return 0, "Submitted batch job 1", ""

    provider = slurm_provider(spec, Captured)
    provider.script_dir = str(script_dir)
    provider.submit(WORKER_POOL, 1, BLOCK_JOB_NAME)
    return Path(submitted[0]).read_text()
