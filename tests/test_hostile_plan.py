"""`ecgi campaign plan` and `run` against specs that would hang or stall them: a driver
address the workers could never reach, and a plan at the documented maxima."""
from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest
import yaml

from solver.common.errors import ConfigError
from tests.conftest import run_ecgi
from workflow.executors import check_driver_address
from workflow.spec import LIMITS, spec_from_dict


def expect_error(*args, message: str, timeout: float = 120) -> None:
    """``ecgi ARGS`` fails with status 2 and one error line holding ``message``, no traceback."""
    proc = run_ecgi(*args, check=False, timeout=timeout)
    context = f"ecgi {' '.join(map(str, args))}\nstdout: {proc.stdout}\nstderr: {proc.stderr}"
    assert proc.returncode == 2, context
    assert "Traceback" not in proc.stderr, context
    errors = [line for line in proc.stderr.splitlines() if ": error: " in line]
    assert len(errors) == 1 and message in errors[0], context


def spec_data(tmp_path: Path, **resources) -> dict:
    return {
        "name": "p", "output_dir": str(tmp_path / "campaign"), "samples": 4, "samples_per_folder": 4, "seed": 1,
        "geometry": {"count": 2},
        "parameters": {"heart_scale": {"kind": "uniform", "low": 0.9, "high": 1.1}},
        "solver": {"dx_mm": 3.0, "dt_ms": 0.1, "ionic_model": "mitchell_schaeffer", "duration_ms": 40},
        "resources": {"executor": "local", "retries": 0, "max_cores": 2, **resources},
    }


def write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def slurm(address: str) -> dict:
    return {"executor": "slurm", "slurm": {"cores_per_node": 2, "driver_address": address}}


@pytest.mark.parametrize("address, reason", [
    ("192.0.2.1", "is not an address of this host"),  # TEST-NET-1: no host has it
    ("no-such-host.invalid", "does not resolve to an IP address"),
])
@pytest.mark.parametrize("command", ["plan", "run"])
def test_unreachable_driver_address_is_refused_before_any_work(tmp_path, address, reason, command):
    spec = write(tmp_path, spec_data(tmp_path, **slurm(address)))
    start = time.monotonic()
    expect_error("campaign", command, spec, message=f"driver_address {address!r} {reason}")
    assert time.monotonic() - start < 60  # not Parsl's 120 s wait for workers
    assert not (tmp_path / "campaign").exists()  # nothing written, nothing submitted


def test_driver_address_names_the_fix(tmp_path):
    spec = spec_from_dict(spec_data(tmp_path, **slurm("192.0.2.1")))
    with pytest.raises(ConfigError, match=r"set resources\.slurm\.driver_address to an address of this host"):
        check_driver_address(spec)


@pytest.mark.parametrize("address", ["127.0.0.1", "localhost", socket.gethostname()])
def test_this_hosts_addresses_are_accepted(tmp_path, address):
    check_driver_address(spec_from_dict(spec_data(tmp_path, **slurm(address))))


def test_driver_address_is_only_checked_where_it_is_used(tmp_path):
    data = spec_data(tmp_path, slurm={"driver_address": "192.0.2.1"})  # the local executor ignores it
    check_driver_address(spec_from_dict(data))


@pytest.mark.slow
def test_plan_at_the_documented_maxima_says_what_it_does(tmp_path):
    """A million samples on 100,000 anatomies: a few anatomies are voxelised and the rest
    extrapolated, with progress on stderr; the plan used to voxelise every anatomy (minutes,
    silently).  The voxel count alone is timed in tests/test_campaign_cost.py; here the measuring
    run, which takes 20-30 s on a quiet 2-core machine, is most of the time."""
    data = spec_data(tmp_path)
    data.update(samples=LIMITS["samples"], samples_per_folder=LIMITS["samples_per_folder"],
                geometry={"count": LIMITS["geometry.count"]})
    proc = run_ecgi("campaign", "plan", write(tmp_path, data), "--json", timeout=600)
    report = json.loads(proc.stdout)
    estimate = report["estimate"]
    assert report["samples"] == 1_000_000 and report["geometries"] == 100_000
    assert estimate["samples"] == 1_000_000
    assert 0 < estimate["core_hours_low"] <= estimate["core_hours"] <= estimate["core_hours_high"]
    # 1e6 samples of a 3 mm, 40 ms heart: about 0.1 to 0.3 CPU s each
    assert 10 < estimate["core_hours"] < 500
    assert "counting the voxels of 48 of 100000 anatomies" in proc.stderr
    assert "measuring the cost model" in proc.stderr
