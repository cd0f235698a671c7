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

Parsl's life cycle in a driver (``parsl_running``): loaded with every
process it starts marked as the campaign's, watched (``executor_failure``,
``helper_processes``, ``slurm_jobs``), shut down within a bounded time,
and whatever it left running stopped.
"""
from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import shlex
import socket
import sys
import threading
from pathlib import Path
from typing import Any, Callable, Iterator

from solver.common.errors import ConfigError, RunError

from .failures import retry_cost
from .layout import CampaignLayout
from .mpi_env import one_thread_exports
from .processes import MARKER, ProcessIdentity, campaign_processes, stop_processes
from .sampling import SamplePlan
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


def submitter(spec: CampaignSpec, layout: CampaignLayout) -> Callable[[SamplePlan], object]:
    """A function submitting one planned sample to Parsl, returning its future."""
    from parsl import bash_app, python_app

    from .apps import simulate_in_worker, simulate_with_mpi

    timeout = spec.resources.task_timeout_s
    ranks = spec.resources.ranks_per_simulation
    if ranks == 1:
        app = python_app(simulate_in_worker)

        def submit_in_worker(plan: SamplePlan):
            kwargs = {"walltime": timeout} if timeout else {}
            return app(str(layout.root), plan.sample_id, str(layout.log_path(plan)), **kwargs)
        return submit_in_worker

    app = bash_app(simulate_with_mpi)
    # Parsl's MPI mode (SLURM) places each task on a node of the block.
    mpi_mode = {"parsl_resource_specification": {"num_nodes": 1, "ranks_per_node": ranks, "num_ranks": ranks}} \
        if spec.resources.executor == "slurm" else {}

    def submit(plan: SamplePlan):
        log = layout.log_path(plan)
        log.parent.mkdir(parents=True, exist_ok=True)
        kwargs: dict[str, Any] = {"stdout": (str(log), "a"), "stderr": (str(log), "a"), **mpi_mode}
        if timeout:
            kwargs["walltime"] = timeout
        return app(task_command(spec, layout.root, plan.sample_id), **kwargs)
    return submit


@contextlib.contextmanager
def parsl_running(spec: CampaignSpec, layout: CampaignLayout) -> Iterator[object]:
    """Parsl loaded for a campaign (its DataFlowKernel); on leaving, shut
    down, and every process that carries the campaign's mark stopped."""
    import parsl

    # Parsl starts its interchange and workers by name from PATH: make them
    # the ones installed beside this Python, even when the venv is not active.
    bin_dir = str(Path(sys.executable).parent)
    if bin_dir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")
    # Every process started from here on carries the campaign's mark (workflow.processes).
    os.environ[MARKER] = str(layout.root.absolute())
    try:
        with _stderr_of_children_to(layout.parsl_dir / "helpers.stderr"):
            dfk = parsl.load(parsl_config(spec, layout.parsl_dir))
    except Exception as exc:
        os.environ.pop(MARKER, None)
        stop_processes(campaign_processes(layout.root))
        if isinstance(exc, OSError) and exc.errno is not None:
            raise
        raise RunError(f"the Parsl executor did not start: {' '.join(str(exc).split())[:300]}") from exc
    try:
        yield dfk
    finally:
        try:
            # On a dead interchange Parsl's clean-up only waits: cut it short.
            shut_down(dfk, 10.0 if executor_failure(dfk) else PARSL_SHUTDOWN_TIMEOUT_S)
            parsl.clear()
        finally:
            os.environ.pop(MARKER, None)
            # Whatever Parsl's clean-up left (idle pool workers, a pool whose
            # interchange is gone) goes too.
            stop_processes(campaign_processes(layout.root))


@contextlib.contextmanager
def _stderr_of_children_to(path: Path) -> Iterator[None]:
    """Processes started meanwhile (Parsl's interchange) write their stderr
    to ``path``, not to the driver's: on a full disk their logging prints a
    "Logging error" traceback per record, which the user must not see (the
    driver reports the full disk in one line)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(path, "ab") as log:
            os.dup2(log.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


#: How long Parsl's clean-up may take; it waits forever on a dead interchange.
PARSL_SHUTDOWN_TIMEOUT_S = 60.0


def shut_down(dfk, timeout_s: float) -> None:
    """``dfk.cleanup()`` in a thread, abandoned after ``timeout_s``: the
    processes it would have stopped are stopped by the caller anyway."""
    errors: list[BaseException] = []

    def cleanup() -> None:
        try:
            dfk.cleanup()
        except BaseException as exc:  # reported below, not as a thread traceback
            errors.append(exc)

    thread = threading.Thread(target=cleanup, name="parsl-cleanup", daemon=True)
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        print(f"Parsl's clean-up did not finish in {timeout_s:.0f} s; stopping its processes",
              file=sys.stderr)
    elif errors:
        print(f"Parsl's clean-up failed: {' '.join(str(errors[0]).split())[:300]}", file=sys.stderr)


def executor_failure(dfk) -> str | None:
    """Why the executor can run nothing more, or None: its interchange
    process ended, or Parsl marked it broken (blocks that cannot start)."""
    for executor in dfk.executors.values():
        interchange = getattr(executor, "interchange_proc", None)
        if interchange is not None and interchange.poll() is not None:
            return (f"Parsl's interchange ended unexpectedly (exit status {interchange.returncode}; "
                    f"log in {executor.logdir}/interchange.log)")
        if getattr(executor, "bad_state_is_set", False):
            reason = " ".join(str(executor.executor_exception).split())[:300]
            return f"the Parsl executor failed: {reason} (logs in {executor.logdir})"
    return None


def helper_processes(dfk) -> list[ProcessIdentity]:
    """Processes Parsl started directly from the driver (its interchange)."""
    procs = (getattr(executor, "interchange_proc", None) for executor in dfk.executors.values())
    identities = (ProcessIdentity.of(proc.pid) for proc in procs if proc is not None and proc.poll() is None)
    return [identity for identity in identities if identity is not None]


def slurm_jobs(dfk) -> list[str]:
    """SLURM job ids of the blocks the driver submitted (for `ecgi campaign stop`)."""
    from parsl.providers import SlurmProvider

    jobs: list[str] = []
    for executor in dfk.executors.values():
        provider = getattr(executor, "provider", None)
        if isinstance(provider, SlurmProvider):
            jobs += [str(job) for job in provider.resources]
    return jobs



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
        resolved = {ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in socket.getaddrinfo(address, None)}
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
