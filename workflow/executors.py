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

Parsl retries a failed task up to ``resources.retries`` times, as
``workflow.failures.retry_cost`` decides.
"""
from __future__ import annotations

import logging
import os
import shlex
import string
import sys
from pathlib import Path

from solver.common.files import write_text_atomic

from .failures import retry_cost
from .mpi_env import one_thread_exports
from .spec import CampaignSpec


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


def slurm_provider(spec: CampaignSpec):
    from parsl.launchers import SimpleLauncher, SrunLauncher
    from parsl.providers import SlurmProvider

    s = spec.resources.slurm
    return SlurmProvider(
        partition=s.partition, account=s.account, qos=s.qos,
        nodes_per_block=s.nodes_per_block,
        cores_per_node=s.cores_per_node if spec.resources.ranks_per_simulation == 1 else None,
        init_blocks=1, min_blocks=0, max_blocks=s.max_blocks, walltime=s.walltime,
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


def render_slurm_script(spec: CampaignSpec, script_dir: Path) -> str:
    """The batch script Parsl's SlurmProvider submits for one block."""
    from parsl.providers.slurm.template import template_string
    from parsl.utils import wtime_to_minutes

    provider = slurm_provider(spec)
    provider.script_dir = str(script_dir)
    tasks_per_node = 1
    command = provider.launcher("process_worker_pool.py ...  # Parsl's worker pool", tasks_per_node,
                                spec.resources.slurm.nodes_per_block)
    scheduler_options = provider.scheduler_options
    worker_init = provider.worker_init
    if provider.cores_per_node is not None:
        scheduler_options += f"#SBATCH --cpus-per-task={provider.cores_per_node // tasks_per_node}"
    path = script_dir / f"{spec.name}.block.sbatch"
    job_config = {
        "submit_script_dir": str(script_dir), "nodes": provider.nodes_per_block, "tasks_per_node": tasks_per_node,
        "walltime": wtime_to_minutes(spec.resources.slurm.walltime), "scheduler_options": scheduler_options,
        "worker_init": worker_init, "user_script": command,
        "job_stdout_path": f"{path}.stdout", "job_stderr_path": f"{path}.stderr",
    }
    # The SlurmProvider's own template, filled in as the provider fills it
    # when it submits (string.Template, the block's name as ``jobname``).
    script = string.Template(template_string).substitute(jobname=f"{spec.name}.block", **job_config)
    write_text_atomic(path, script)
    return script
