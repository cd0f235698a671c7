"""The simulation file: complete or absent, never half-written."""
from __future__ import annotations

import signal
import subprocess
import time

import h5py
import numpy as np
import pytest
import yaml
from mpi4py import MPI

from solver.numerics.config import config_from_dict
from solver.numerics.output import IncompleteFileError, verify_simulation_file, write_simulation
from solver.numerics.simulation import Simulation
from tests.conftest import ECGI, REPO

SMALL = {
    "anatomy": {"dx_mm": 0.5, "slab": {"size_mm": [3, 2, 1]}},
    "conductivity": {"intracellular": {"longitudinal": 0.17, "transverse": 0.019}},
    "ionic": {"model": "mitchell_schaeffer"},
    "time": {"dt_ms": 0.05, "duration_ms": 10},
    "stimuli": [{"amplitude_uA_per_mm3": 50, "box": {"min_mm": [0, 0, 0], "max_mm": [1, 1, 1]}}],
    "output": {"probes": {"p": [2, 1, 0.5]}, "snapshot_interval_ms": 5},
}


@pytest.fixture(scope="module")
def result():
    return Simulation(config_from_dict(SMALL), MPI.COMM_SELF).run()


def test_written_file_is_complete_and_documented(tmp_path, result):
    path = write_simulation(tmp_path / "sim.h5", result)
    verify_simulation_file(path)
    with h5py.File(path) as f:
        assert f["activation_time"].attrs["units"] == "ms"
        assert f["probes/vm"].attrs["units"] == "mV" and f["probes/vm"].attrs["dt_ms"] == 1.0
        assert f["probes/vm"].shape == (10, 1)
        assert f["snapshots/vm"].shape == (3, f["grid/tissue_ijk"].shape[0])
        assert yaml.safe_load(f.attrs["config_yaml"])["ionic"]["model"] == "mitchell_schaeffer"
        assert "wall_time_s" in f.attrs["provenance_json"]
    assert [p.name for p in tmp_path.iterdir()] == ["sim.h5"]


def test_failure_while_writing_leaves_nothing(tmp_path, result, monkeypatch):
    import solver.numerics.output as output

    def explode(f, r):
        f.create_dataset("partial", data=np.arange(10))
        raise OSError("disk full")

    monkeypatch.setattr(output, "_write_contents", explode)
    with pytest.raises(OSError, match="disk full"):
        write_simulation(tmp_path / "sim.h5", result)
    assert list(tmp_path.iterdir()) == []


def test_truncated_or_altered_files_are_detected(tmp_path, result):
    path = write_simulation(tmp_path / "sim.h5", result)
    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(IncompleteFileError):
        verify_simulation_file(truncated)
    with h5py.File(path, "r+") as f:
        f["activation_time"][0] = 123.0
    with pytest.raises(IncompleteFileError, match="checksum mismatch"):
        verify_simulation_file(path)


def test_killed_run_leaves_no_complete_looking_output(tmp_path):
    config = dict(SMALL, time={"dt_ms": 0.01, "duration_ms": 5000})
    (tmp_path / "long.yaml").write_text(yaml.safe_dump(config))
    out = tmp_path / "long.h5"
    proc = subprocess.Popen([*ECGI, "simulate", str(tmp_path / "long.yaml"), "-o", str(out)],
                            cwd=REPO, stderr=subprocess.PIPE, text=True)
    assert "node-steps/s" in proc.stderr.readline()  # it is running
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    time.sleep(0.1)
    assert not out.exists()
    for leftover in tmp_path.glob(".long.h5.tmp-*"):
        with pytest.raises(IncompleteFileError):
            verify_simulation_file(leftover)
