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

import ipaddress
import os
import shlex
import socket
import string
import sys
from pathlib import Path

from solver.common.errors import ConfigError
from solver.common.files import write_text_atomic

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



def host_addresses() -> set[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """The IP addresses of this host's network interfaces."""
    import psutil

    found = set()
    for entries in psutil.net_if_addrs().values():
        for entry in entries:
            if entry.family in (socket.AF_INET, socket.AF_INET6):
                try:
                    found.add(ipaddress.ip_address(entry.address.split("%", 1)[0]))  # fe80::1%eth0
                except ValueError:
                    continue
    return found


def check_driver_address(spec: CampaignSpec) -> None:
    """Refuse, before any work, a ``driver_address`` that is not this host's: the
    workers would never reach the driver, and Parsl would wait 120 s and end
    with its interchange's traceback."""
    address = spec.resources.slurm.driver_address
    if spec.resources.executor != "slurm" or address is None:
        return
    fix = ("set resources.slurm.driver_address to an address of this host that the compute nodes reach "
           "(or remove it to let Parsl choose), or run the driver on that host")
    try:
        resolved = {ipaddress.ip_address(info[4][0].split("%", 1)[0]) for info in socket.getaddrinfo(address, None)}
    except (OSError, UnicodeError, ValueError):
        raise ConfigError(f"driver_address {address!r} does not resolve to an IP address; {fix}") from None
    own = host_addresses()
    if not any(ip.is_loopback or ip in own for ip in resolved):
        shown = ", ".join(sorted(str(ip) for ip in own if not ip.is_link_local)[:6])
        raise ConfigError(f"driver_address {address!r} is not an address of this host "
                          f"({socket.gethostname()}: {shown}); {fix}")


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
