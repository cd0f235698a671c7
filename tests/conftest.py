"""Shared fixtures: running the ``ecgi`` command, under MPI too."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

# One BLAS thread per process, as campaign workers have (workflow/mpi_env.py),
# set before anything loads numpy: the tests and the ecgi processes they
# start share two cores, and idle BLAS threads spinning against them would
# count as the CPU time the cost-estimate tests measure.
for _name in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

import pytest  # noqa: E402

pytest_plugins = ["tests.slurm_cluster"]

REPO = Path(__file__).resolve().parent.parent
ECGI = [sys.executable, "-m", "workflow.cli"]
MPI_ENV = {
    "OMPI_ALLOW_RUN_AS_ROOT": "1",
    "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
    "OMPI_MCA_rmaps_base_oversubscribe": "1",
}
os.environ.update(MPI_ENV)


def clean_env() -> dict[str, str]:
    """The environment without the MPI runtime variables of this process."""
    from workflow.mpi_env import clean_mpi_env

    return {**clean_mpi_env(), **MPI_ENV}


def run_ecgi(*args: str, ranks: int = 1, check: bool = True, timeout: float = 600, **kwargs) -> subprocess.CompletedProcess:
    """Run ``ecgi ARGS`` in a fresh process (``mpiexec -n ranks`` if ranks > 1)."""
    command = [*ECGI, *map(str, args)]
    if ranks > 1:
        command = [shutil.which("mpiexec") or "mpiexec", "-n", str(ranks), *command]
    kwargs.setdefault("env", clean_env())
    kwargs.setdefault("cwd", REPO)
    proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout, **kwargs)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(command)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture
def ecgi():
    return run_ecgi


@pytest.fixture(autouse=True, scope="session")
def calibration_cache(tmp_path_factory):
    """Keep the conduction-velocity calibration cache inside the test session."""
    path = tmp_path_factory.mktemp("ecgi-cache")
    os.environ["ECGI_CACHE_DIR"] = str(path)
    yield path


def submit_two_task_training(tmp_path: Path, env: dict[str, str], partition: str) -> tuple[str, Path]:
    """``ecgi train --submit`` of a two-process CPU training on a small
    synthetic data set; returns the job id and the run directory."""
    import re

    from model.synthetic import write_synthetic_dataset

    data = tmp_path / "data"
    write_synthetic_dataset(data, train=64, validation=16, test=16, seed=0)
    run_dir = tmp_path / "run"
    config = tmp_path / "train.yaml"
    config.write_text("epochs: 2\nbatch_size: 16\nnetwork: {architecture: reference_act}\n"
                      "data: {num_workers: 0}\ntensorboard: false\n")
    proc = run_ecgi("train", config, "--data", data, "--output", run_dir, "--submit", "--nodes", "1",
                    "--gpus-per-node", "0", "--tasks-per-node", "2", "--cpus-per-task", "1",
                    "--time", "00:10:00", "--partition", partition, env=env)
    return re.search(r"submitted job (\d+)", proc.stdout).group(1), run_dir

