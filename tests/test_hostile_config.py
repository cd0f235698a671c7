"""Numbers, configurations and PETSc options a careless or hostile user can
give, through the real CLI in fresh processes: each ends in one line naming
the problem and the fix, exit status 2, no traceback, before any work.

The helpers (``expect_error``, ``campaign_spec``, the tmpfs ``mounts``) are
those of tests/test_hostile_inputs.py.
"""
from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import ECGI, REPO, clean_env
from tests.test_hostile_inputs import campaign_spec, expect_error, mounts  # noqa: F401 (a fixture)

# ------------------------------------------------------------- CLI numbers

NUMBER_CASES = [
    ("verify niederer --dx 0", "argument --dx: 0 is outside [0.05, 1] mm"),
    ("verify niederer --dx -1", "argument --dx: -1 is outside"),
    ("verify niederer --dx 1e-9", "argument --dx: 1e-9 is outside"),
    ("verify niederer --dt 0", "argument --dt: 0 is outside [0.0001, 2] ms"),
    ("verify niederer --dt nan", "argument --dt: nan is outside"),
    ("calibrate --dx 0 --dt 0.05", "argument --dx: 0 is outside [0.01, 5] mm"),
    ("calibrate --dx 1 --dt -0.05", "argument --dt: -0.05 is outside"),
    ("calibrate --dx 1 --dt 0.05 --longitudinal 1e300", "argument --longitudinal: 1e300 is outside [0.01, 5] m/s"),
    ("evaluate ck.pt data --batch-size 0", "argument --batch-size: 0 is outside [1, 65536]"),
    ("evaluate ck.pt data --batch-size -5", "argument --batch-size: -5 is outside"),
    ("predict ck.pt ecg.csv --passes -3", "argument --passes: -3 is outside [2, 1000]"),
    ("predict ck.pt ecg.csv --passes 1e8", "argument --passes: '1e8' is not an integer"),
    ("predict ck.pt ecg.csv --passes 100000000", "argument --passes: 100000000 is outside [2, 1000]"),
    ("predict ck.pt ecg.csv --sampling-rate inf", "argument --sampling-rate: inf is outside"),
    ("demo --samples -3", "argument --samples: -3 is outside [12, 1000000]"),
    ("demo --samples 0", "argument --samples: 0 is outside"),
    ("demo --samples 1000000000", "argument --samples: 1000000000 is outside [12, 1000000]"),
    ("demo --epochs 0", "argument --epochs: 0 is outside [1, 100000]"),
    ("train t.yaml --data d --epochs -1", "argument --epochs: -1 is outside"),
    ("train t.yaml --data d --submit --nodes 0", "argument --nodes: 0 is outside [1, 10000]"),
    ("train t.yaml --data d --submit --gpus-per-node -1", "argument --gpus-per-node: -1 is outside [0, 64]"),
    ("dataset build dir --samples-per-shard 0", "argument --samples-per-shard: 0 is outside [1, 100000]"),
    ("dataset build dir --seed -1", "argument --seed: -1 is outside [0, 4294967295]"),
    ("dataset build dir --splits 0.5,nan,0.5", "argument --splits: expected three fractions"),
    ("campaign measure spec.yaml --probe-ms 1e9", "argument --probe-ms: 1e9 is outside [1, 10000] ms"),
]


@pytest.mark.parametrize("command, message", NUMBER_CASES, ids=[c[0] for c in NUMBER_CASES])
def test_numbers_out_of_range_are_refused_by_the_parser(command, message):
    start = time.monotonic()
    expect_error(*command.split(), message=message)
    assert time.monotonic() - start < 30


def test_every_numeric_option_has_a_range():
    """No command takes a bare int or float: each goes through solver.common.limits.number."""
    import argparse

    from workflow.cli import build_parser

    def actions(parser: argparse.ArgumentParser):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    yield from actions(sub)
            else:
                yield parser.prog, action

    bare = [f"{prog} {action.option_strings}" for prog, action in actions(build_parser())
            if action.type in (int, float)]
    assert bare == []


# ------------------------------------------------------------- PETSc options


def _patient(tmp_path: Path, **time) -> Path:
    config = tmp_path / "patient.yaml"
    config.write_text(yaml.safe_dump({"patient": {
        "heart": {"dx_mm": 3.0}, "ionic": {"model": "mitchell_schaeffer"},
        "time": {"dt_ms": 0.1, "duration_ms": 5, "diffusion": "auto", **time}}}))
    return config


PETSC_CASES = [
    ("-diffusion_ksp_type nonsense", "PETSc option -diffusion_ksp_type nonsense: PETSc refuses it (an unknown type"),
    ("-laplace_pc_type gamg -laplace_pc_gamg_type nonsense",
     "PETSc option -laplace_pc_gamg_type nonsense: PETSc refuses"),
    ("-torso_ksp_rtol abc", "PETSc option -torso_ksp_rtol abc: PETSc refuses it"),
    ("-options_file /etc/shadow", "PETSc option -options_file /etc/shadow: options that read or write files"),
    ("-log_view :{out}/log.txt", "options that read or write files are not accepted"),
    ("-history {out}/history.txt", "options that read or write files are not accepted"),
    ("-diffusion_ksp_view ascii:{out}/view.txt", "give -diffusion_ksp_view alone"),
    ("-laplace_ksp_monitor binary", "give -laplace_ksp_monitor alone"),
    ("-diffusion_ksp_type {out}/cg", "a value is a word or a number"),
    ("-malloc_debug", "only options of ecgi's solvers are accepted"),
    ("-help intro", "-help takes no value here"),
]


@pytest.mark.parametrize("options, message", PETSC_CASES, ids=[c[0].split()[0] for c in PETSC_CASES])
@pytest.mark.parametrize("form", ["separate", "equals"])
def test_petsc_options_are_refused_before_any_work(tmp_path, options, message, form):
    out = tmp_path / "out"
    out.mkdir()
    options = options.format(out=out)
    flags = ["--petsc-options", options] if form == "separate" else [f"--petsc-options={options}"]
    start = time.monotonic()
    proc = expect_error("simulate", _patient(tmp_path), "-o", out / "sample.h5", "--quiet", *flags, message=message)
    assert time.monotonic() - start < 30
    assert list(out.iterdir()) == []
    assert "root:" not in proc.stderr + proc.stdout  # nothing of /etc/shadow
    assert "PETSC ERROR" not in proc.stderr


def test_the_documented_form_of_petsc_help_is_accepted(tmp_path):
    """``--petsc-options -help`` (no '=') reaches ecgi, not argparse's error."""
    expect_error("simulate", tmp_path / "missing.yaml", "-o", tmp_path / "out.h5", "--petsc-options", "-help",
                 message="no such configuration file")


@pytest.mark.parametrize("options, message, command", [
    ("-options_file /etc/shadow", "options that read or write files are not accepted", "plan --no-measure"),
    ("-diffusion_ksp_type nonsense", "PETSc option -diffusion_ksp_type nonsense: PETSc refuses it", "plan"),
    ("-diffusion_ksp_type nonsense", "PETSc option -diffusion_ksp_type nonsense: PETSc refuses it", "run"),
])
def test_petsc_options_of_a_campaign_are_checked_before_any_sample(tmp_path, options, message, command):
    spec = campaign_spec(tmp_path, solver={"petsc_options": options})
    start = time.monotonic()
    proc = expect_error("campaign", *command.split(), spec, message=message)
    assert time.monotonic() - start < 30
    assert "solver" in proc.stderr and "root:" not in proc.stderr
    assert not (tmp_path / "campaign").exists()


# ------------------------------------------------------------- configurations


def _nested(depth: int) -> str:
    return "name: " + "[" * depth + "]" * depth + "\n"


@pytest.mark.parametrize("where", ["simulate", "campaign", "train"])
def test_deeply_nested_yaml_is_refused(tmp_path, where):
    path = tmp_path / "deep.yaml"
    path.write_text(_nested(1400))
    assert path.stat().st_size < 1 << 20
    args = {"simulate": ("simulate", path, "-o", tmp_path / "o.h5"), "campaign": ("campaign", "plan", path),
            "train": ("train", path, "--data", tmp_path, "--output", tmp_path / "run")}[where]
    expect_error(*args, message="nested more than 64 levels deep")


SLAB, PATIENT = "examples/simulations/slab.yaml", "examples/patients/normal.yaml"
CONFIG_CASES = [
    ("simulation dt", SLAB, ("time", "dt_ms"), 1.0e-300, "dt_ms must be within [0.0001, 2] ms, got 1e-300"),
    ("patient dt", PATIENT, ("patient", "time", "dt_ms"), 1.0e-300, "dt_ms must be within"),
    ("patient dx 500", PATIENT, ("patient", "heart", "dx_mm"), 500, "dx_mm must be within [0.01, 5] mm, got 500"),
    ("patient dx 1e-6", PATIENT, ("patient", "heart", "dx_mm"), 1e-6, "dx_mm must be within"),
    ("patient dx 0.01", PATIENT, ("patient", "heart", "dx_mm"), 0.01, "of memory and"),
    ("torso dx", PATIENT, ("patient", "torso", "body", "dx_mm"), 0.001, "dx_mm must be within [1, 20] mm"),
]


@pytest.mark.parametrize("case, example, keys, value, message", CONFIG_CASES, ids=[c[0] for c in CONFIG_CASES])
def test_simulation_numbers_out_of_range(tmp_path, case, example, keys, value, message):
    data = yaml.safe_load((REPO / example).read_text())
    node = data
    for key in keys[:-1]:
        node = node.setdefault(key, {})
    node[keys[-1]] = value
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(data))
    start = time.monotonic()
    expect_error("simulate", tmp_path / "c.yaml", "-o", tmp_path / "out.h5", "--quiet", message=message,
                 env={**clean_env(), "ECGI_CACHE_DIR": str(tmp_path / "cache")})
    assert time.monotonic() - start < 30
    assert not (tmp_path / "out.h5").exists() and not (tmp_path / "cache").exists()


@pytest.mark.parametrize("solver, message", [
    ({"dt_ms": 1.0e-300}, "dt_ms must be within [0.0001, 2] ms, got 1e-300"),
    ({"dx_mm": 500}, "dx_mm must be within [0.01, 5] mm, got 500"),
])
def test_campaign_solver_numbers_out_of_range(tmp_path, solver, message):
    expect_error("campaign", "plan", "--no-measure", campaign_spec(tmp_path, solver=solver), message=message)


def test_learning_rate_out_of_range(tmp_path):
    (tmp_path / "t.yaml").write_text("optimiser: {lr: 1.0e+300}\n")
    expect_error("train", tmp_path / "t.yaml", "--data", tmp_path, "--output", tmp_path / "run",
                 message="lr must be within [1e-12, 1], got 1e+300")


# ------------------------------------------------------------- full disk


def test_disk_that_fills_during_a_campaign_gives_one_line(tmp_path, mounts):  # noqa: F811 (the fixture)
    """Parsl's log sits in the campaign directory: when the disk fills under
    a running campaign, its records must not become tracebacks on stderr."""
    disk = mounts.tmpfs("20m")  # above what the driver checks for up front
    spec = campaign_spec(tmp_path, output_dir=str(disk / "campaign"))
    driver = subprocess.Popen([*ECGI, "campaign", "run", str(spec)], cwd=REPO, env=clean_env(),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not (disk / "campaign" / "parsl").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(0.5)  # Parsl is starting: its interchange logs onto the full disk
    mounts.fill(disk)
    _, stderr = driver.communicate(timeout=300)
    context = f"stderr: {stderr}"
    assert driver.returncode == 2, context
    assert stderr.count("Logging error") == 0 and "Traceback" not in stderr, context
    errors = [line for line in stderr.splitlines() if ": error: " in line]
    assert len(errors) == 1 and "free some space or choose another output location" in errors[0], context
