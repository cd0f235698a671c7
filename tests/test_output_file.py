"""The simulation file: complete or absent, never half-written."""
from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

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


def test_run_killed_while_simulating_leaves_no_file(tmp_path):
    # Minutes of work (a 4,000-voxel slab for 5 s of tissue time): the kill
    # lands at the first progress line, long before the output is written.
    config = dict(SMALL, anatomy={"dx_mm": 0.5, "slab": {"size_mm": [10, 10, 5]}},
                  time={"dt_ms": 0.01, "duration_ms": 5000})
    (tmp_path / "long.yaml").write_text(yaml.safe_dump(config))
    out = tmp_path / "long.h5"
    proc = subprocess.Popen([*ECGI, "simulate", str(tmp_path / "long.yaml"), "-o", str(out)],
                            cwd=REPO, stderr=subprocess.PIPE, text=True)
    assert "node-steps/s" in proc.stderr.readline()  # it is running
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    time.sleep(0.1)
    # Killed before writing began: neither the file nor a temporary one.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["long.yaml"]


# Simulates SMALL, then writes it to argv[1] with write_simulation, stopping
# for good in the middle of the file: after the results, before the checksum
# and the ``complete`` mark.  Prints the temporary file's name when it stops.
_WRITER = """
import sys, time
from mpi4py import MPI
import solver.numerics.output as output
from solver.numerics.config import config_from_dict
from solver.common.files import temporary_path
from solver.numerics.simulation import Simulation
from pathlib import Path

result = Simulation(config_from_dict(%r), MPI.COMM_SELF).run()
write_datasets = output._write_datasets

def stall(f, datasets):
    write_datasets(f, datasets)
    f.flush()
    print(temporary_path(Path(sys.argv[1])), flush=True)
    time.sleep(600)

output._write_datasets = stall
output.write_simulation(sys.argv[1], result)
"""


def test_run_killed_while_writing_leaves_the_previous_file_intact(tmp_path, result):
    out = write_simulation(tmp_path / "sim.h5", result)  # a complete file from an earlier run
    previous = out.read_bytes()
    config = dict(SMALL, output=dict(SMALL["output"], snapshot_interval_ms=1))  # a different file
    writer = subprocess.Popen([sys.executable, "-c", _WRITER % (config,), str(out)], cwd=REPO,
                              stdout=subprocess.PIPE, text=True)
    try:
        tmp = Path(writer.stdout.readline().strip())
        # The temporary file exists, beside the final one, with data in it: the kill lands mid-write.
        assert tmp.parent == tmp_path and tmp.name.startswith(".sim.h5.tmp-"), tmp
        assert tmp.is_file() and tmp.stat().st_size > 0
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait()
    assert writer.returncode == -signal.SIGKILL
    # SIGKILL skips every clean-up: the half-written file stays, under its
    # hidden name, and is recognised as incomplete.
    assert tmp.is_file()
    with pytest.raises(IncompleteFileError, match="not a complete"):
        verify_simulation_file(tmp)
    # The final name still holds the previous, complete file, unchanged.
    assert out.read_bytes() == previous
    verify_simulation_file(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["sim.h5", tmp.name])
