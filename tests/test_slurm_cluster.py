"""The private SLURM of tests/slurm_cluster.py: batch jobs, MPI under SLURM, Parsl.

Run: .venv/bin/python -m pytest -q -p tests.slurm_cluster tests/test_slurm_cluster.py
"""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slurm]

try:
    from tests.slurm_cluster import SlurmCluster, missing_requirements
except ModuleNotFoundError:   # run without the repository root on sys.path
    from slurm_cluster import SlurmCluster, missing_requirements

PYTHON = sys.executable
HERE = Path(__file__).resolve().parent
MPI_SIZE = 'from mpi4py import MPI; print("size=%d" % MPI.COMM_WORLD.size)'
MPI_SIZE_SH = shlex.quote(MPI_SIZE)   # for command lines


def sizes(text: str) -> list[str]:
    """The communicator sizes the ranks printed (their lines may interleave)."""
    return re.findall(r"size=(\d+)", text)
NO_PMIX = "can not load PMIx library"


def wait_until(predicate, timeout: float, what: str, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def test_batch_job_runs_and_completes(slurm_cluster, tmp_path):
    job = slurm_cluster.sbatch('echo "hello from job $SLURM_JOB_ID on $SLURMD_NODENAME" > result.txt\n',
                               "--job-name=hello", "--output=slurm-%j.out", cwd=tmp_path)
    assert slurm_cluster.wait(job, timeout=60) == "COMPLETED", slurm_cluster.logs()
    assert (tmp_path / "result.txt").read_text() == f"hello from job {job} on {slurm_cluster.node_name}\n"
    assert slurm_cluster.job_state(job) == "COMPLETED"
    # Without slurmdbd there is no sacct: the job completion log is the record.
    record = wait_until(lambda: slurm_cluster.jobcomp().get(job), 10, "the job completion record")
    assert record["JobState"] == "COMPLETED" and record["ExitCode"] == "0:0"


def test_two_one_core_jobs_side_by_side_and_scancel(slurm_cluster, tmp_path):
    jobs = [slurm_cluster.sbatch("sleep 300\n", "--ntasks=1", "--output=/dev/null", cwd=tmp_path) for _ in range(2)]
    try:
        wait_until(lambda: all(slurm_cluster.job_state(j) == "RUNNING" for j in jobs), 30,
                   f"both one-core jobs running at once: {slurm_cluster.squeue()}")
        assert {j["job_id"] for j in slurm_cluster.squeue() if j["state"] == "RUNNING"} >= set(jobs)
        slurm_cluster.scancel(jobs[0])
        assert slurm_cluster.wait(jobs[0], timeout=30) == "CANCELLED"
        assert slurm_cluster.job_state(jobs[1]) == "RUNNING"
    finally:
        slurm_cluster.run("scancel", *jobs, check=False)
    assert slurm_cluster.wait(jobs[1], timeout=30) == "CANCELLED"
    wait_until(lambda: not {j["job_id"] for j in slurm_cluster.squeue()} & set(jobs), 30, "cancelled jobs to leave squeue")


@pytest.mark.mpi
def test_mpiexec_inside_an_allocation(slurm_cluster, tmp_path):
    """Open MPI's mpiexec reads the SLURM allocation (2 tasks -> 2 slots)."""
    job = slurm_cluster.sbatch(f"""#!/bin/bash
#SBATCH --ntasks=2
#SBATCH --output=mpi.out
mpiexec -n 2 {PYTHON} -c {MPI_SIZE_SH}
""", cwd=tmp_path)
    state = slurm_cluster.wait(job, timeout=90)
    out = (tmp_path / "mpi.out").read_text()
    assert state == "COMPLETED", out
    assert sizes(out) == ["2", "2"], out


@pytest.mark.parametrize("mpi", [
    "pmix",
    pytest.param("pmi2", marks=pytest.mark.xfail(
        strict=True, reason="Debian's Open MPI 4.1 is built with PMIx only (no PMI-1/PMI-2 support)")),
])
def test_srun_direct_launch(slurm_cluster, mpi):
    proc = slurm_cluster.run("srun", f"--mpi={mpi}", "--ntasks=2", PYTHON, "-c", MPI_SIZE, check=False, timeout=120)
    if NO_PMIX in proc.stderr:
        pytest.skip("srun --mpi=pmix: Slurm's mpi/pmix plugin dlopens pmix2/lib/libpmix.so, "
                    "which only the libpmix-dev package provides")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert sizes(proc.stdout) == ["2", "2"], proc.stdout + proc.stderr


# --------------------------------------------------------------------- Parsl
@pytest.fixture
def parsl_run(slurm_cluster, tmp_path):
    """parsl_run(executor, body): load a Config with that executor, call
    body(dfk), always clean up, and check that Parsl's block left SLURM."""
    parsl = pytest.importorskip("parsl")
    from parsl.config import Config

    def run(executor, body):
        config = Config(executors=[executor], run_dir=str(tmp_path / "runinfo"), strategy="none")
        dfk = parsl.load(config)
        try:
            return body(dfk)
        finally:
            job_ids = list(executor.provider.resources)
            dfk.cleanup()
            for job in job_ids:   # cleanup scancels the blocks
                assert slurm_cluster.wait(job, timeout=60) in ("CANCELLED", "COMPLETED")
            wait_until(lambda: not {j["job_id"] for j in slurm_cluster.squeue()} & set(job_ids), 60,
                       "Parsl's blocks to leave squeue")
    return run


def slurm_provider(cluster, launcher, **kwargs):
    from parsl.providers import SlurmProvider
    # Parsl pickles apps by reference to their module: the workers must be able
    # to import this test module (pytest imports it as ``test_slurm_cluster``).
    worker_init = cluster.worker_init + f"export PYTHONPATH={HERE}:{HERE.parent}${{PYTHONPATH:+:$PYTHONPATH}}\n"
    return SlurmProvider(partition=cluster.partition, nodes_per_block=1, init_blocks=1, min_blocks=0, max_blocks=1,
                         walltime="00:10:00", exclusive=False, launcher=launcher, worker_init=worker_init,
                         cmd_timeout=30, **kwargs)


def test_parsl_htex_slurm_provider(slurm_cluster, parsl_run):
    from parsl import python_app
    from parsl.executors import HighThroughputExecutor
    from parsl.launchers import SrunLauncher

    @python_app
    def where():
        import os
        import socket
        return os.environ.get("SLURM_JOB_ID"), socket.gethostname()

    executor = HighThroughputExecutor(label="htex_slurm", address="127.0.0.1", max_workers_per_node=1,
                                      provider=slurm_provider(slurm_cluster, SrunLauncher()))

    def body(dfk):
        future = where()
        job = wait_until(lambda: next(iter(executor.provider.resources), None), 60, "Parsl to submit its block")
        wait_until(lambda: any(j["job_id"] == job and j["state"] == "RUNNING" for j in slurm_cluster.squeue()),
                   60, f"Parsl's block {job} running in squeue")
        job_id, host = future.result(timeout=120)
        assert job_id == job
        assert host == slurm_cluster.hostname
        assert any(j["job_id"] == job and j["name"].startswith("parsl.") for j in slurm_cluster.squeue())
    parsl_run(executor, body)


def mpi_app():
    from parsl import bash_app

    @bash_app
    def mpi_size(command, stdout=None, stderr=None, parsl_resource_specification={}):  # noqa: B006 (Parsl reads this default)
        return command
    return mpi_size


TWO_RANKS = {"num_nodes": 1, "ranks_per_node": 2, "num_ranks": 2}
# The block's job must hold as many tasks as ranks: SlurmProvider writes
# --ntasks-per-node=1 for a SimpleLauncher block, a later line overrides it.
TWO_TASKS = "#SBATCH --ntasks-per-node=2"


@pytest.mark.mpi
def test_parsl_mpi_executor_mpiexec(slurm_cluster, parsl_run, tmp_path):
    """MPIExecutor, mpi_launcher="mpiexec".  Its $PARSL_MPI_PREFIX is MPICH
    (Hydra) syntax (``-ppn``, ``-hosts``) that Open MPI's mpiexec rejects; the
    Open MPI way is ``mpiexec -n $PARSL_NUM_RANKS`` inside the block's job."""
    from parsl.executors import MPIExecutor
    from parsl.launchers import SimpleLauncher

    executor = MPIExecutor(label="mpi_mpiexec", address="127.0.0.1", max_workers_per_block=1, mpi_launcher="mpiexec",
                           provider=slurm_provider(slurm_cluster, SimpleLauncher(), scheduler_options=TWO_TASKS))
    out = tmp_path / "mpiexec.out"
    command = (f"$PARSL_MPI_PREFIX {PYTHON} -c {MPI_SIZE_SH} > prefix.out 2>&1; echo prefix_rc=$? >> prefix.out\n"
               f"mpiexec -n $PARSL_NUM_RANKS {PYTHON} -c {MPI_SIZE_SH}")

    def body(dfk):
        mpi_size = mpi_app()
        assert mpi_size(f"cd {tmp_path}\n{command}", stdout=str(out), stderr=str(tmp_path / "mpiexec.err"),
                        parsl_resource_specification=dict(TWO_RANKS)).result(timeout=180) == 0
    parsl_run(executor, body)
    assert sizes(out.read_text()) == ["2", "2"], (tmp_path / "mpiexec.err").read_text()
    prefix = (tmp_path / "prefix.out").read_text()
    assert "prefix_rc=0" in prefix or 'unknown option "-ppn"' in prefix, prefix


def test_parsl_mpi_executor_srun_pmix(slurm_cluster, parsl_run, tmp_path):
    """MPIExecutor, mpi_launcher="srun": $PARSL_MPI_PREFIX as is, plus --mpi=pmix."""
    probe = slurm_cluster.run("srun", "--mpi=pmix", "--ntasks=1", "true", check=False, timeout=60)
    if NO_PMIX in probe.stderr:
        pytest.skip("srun --mpi=pmix needs the libpmix-dev package (pmix2/lib/libpmix.so)")
    from parsl.executors import MPIExecutor
    from parsl.launchers import SimpleLauncher

    executor = MPIExecutor(label="mpi_srun", address="127.0.0.1", max_workers_per_block=1, mpi_launcher="srun",
                           provider=slurm_provider(slurm_cluster, SimpleLauncher(), scheduler_options=TWO_TASKS))
    out, err = tmp_path / "srun.out", tmp_path / "srun.err"

    def body(dfk):
        mpi_size = mpi_app()
        spec = dict(TWO_RANKS, launcher_options="--mpi=pmix")
        assert mpi_size(f"$PARSL_MPI_PREFIX {PYTHON} -c {MPI_SIZE_SH}", stdout=str(out), stderr=str(err),
                        parsl_resource_specification=spec).result(timeout=180) == 0
    parsl_run(executor, body)
    assert sizes(out.read_text()) == ["2", "2"], err.read_text()


# ------------------------------------------------------------------ teardown
def test_teardown_leaves_no_processes(tmp_path):
    """A second, throw-away cluster: stopping it with a job still running
    cancels the job and leaves no daemon, slurmstepd or job process."""
    reason = missing_requirements()
    if reason:
        pytest.skip(reason)
    cluster = SlurmCluster(partition="scratch", cluster_name="throwaway").start()
    try:
        job = cluster.sbatch("sleep 600\n", "--output=/dev/null", cwd=tmp_path)
        cluster.wait(job, timeout=30, states={"RUNNING"})
        pids = {p.pid for p in cluster.procs.values()}
        # RUNNING comes before the batch step has started the script: wait for it.
        deadline = time.monotonic() + 30
        while True:
            running = [cmd for _, cmd in cluster.leftover_processes()]
            if any("sleep 600" in cmd for cmd in running) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert any("sleep 600" in cmd for cmd in running), running
        assert any("slurmstepd" in cmd for cmd in running), running
    finally:
        leftovers = cluster.stop()
    assert leftovers == [], "stop() had to kill these"
    assert cluster.leftover_processes() == []
    assert cluster.keep or not cluster.root.exists()
    pgrep = subprocess.run(["pgrep", "-f", str(cluster.root)], capture_output=True, text=True)
    assert pgrep.returncode == 1, pgrep.stdout
    for pid in pids:   # the daemons were children of this process: gone and reaped
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
