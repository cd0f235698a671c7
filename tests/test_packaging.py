"""One home for each job: model learns, workflow submits; an installed ecgi
carries its batch templates and example specs.

The slow test builds ecgi's wheel from a copy of this checkout, installs it
outside the checkout and runs it from another directory: ``ecgi demo
--help``, the shipped demo spec, and ``ecgi train --submit`` through the fake
SLURM (tests/fake_slurm.py) to a finished training job.
"""
from __future__ import annotations

import configparser
import fnmatch
import json
import os
import shutil
import stat
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from tests import fake_slurm
from tests.conftest import REPO, clean_env

MODEL_MODULES = ["model.augment", "model.baselines", "model.checkpoint", "model.cli", "model.clinical.beats",
                 "model.clinical.conditioning", "model.clinical.readers", "model.clinical.report",
                 "model.clinical.trust", "model.config", "model.data", "model.distributed", "model.evaluate",
                 "model.network", "model.predict", "model.report", "model.synthetic", "model.train"]


def test_model_imports_nothing_from_workflow():
    code = ("import importlib, pkgutil, sys, model\n"
            "found = sorted(m.name for m in pkgutil.walk_packages(model.__path__, 'model.'))\n"
            f"assert set({MODEL_MODULES!r}) <= set(found), found\n"
            "for name in found: importlib.import_module(name)\n"
            "print(sorted(m for m in sys.modules if m == 'workflow' or m.startswith('workflow.')))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, env=clean_env())
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
    # Nor in source a lazy import would hide from the check above.
    for path in (REPO / "model").rglob("*.py"):
        for line in path.read_text().splitlines():
            assert not line.strip().startswith(("import workflow", "from workflow")), f"{path}: {line}"


def test_shipped_files_are_the_top_level_ones():
    """workflow/slurm and workflow/examples are the checkout's slurm/ and
    examples/ (links, one copy of each file), and package_data takes every file."""
    from workflow.batch import shipped

    for name in ("slurm", "examples"):
        link = REPO / "workflow" / name
        assert link.is_symlink() and link.resolve() == (REPO / name).resolve()
    assert shipped("slurm", "train.sbatch") == REPO / "workflow" / "slurm" / "train.sbatch"
    setup = configparser.ConfigParser()
    setup.read(REPO / "setup.cfg")
    patterns = setup["options.package_data"]["workflow"].split()
    for name in ("slurm", "examples"):
        for path in (REPO / name).rglob("*"):
            if path.is_file():
                relative = path.relative_to(REPO).as_posix()
                assert any(fnmatch.fnmatch(relative, p) for p in patterns), f"{relative} is not package data"


def test_a_missing_shipped_file_is_one_line():
    from solver.common.errors import ConfigError
    from workflow.batch import shipped

    with pytest.raises(ConfigError, match="slurm/none.sbatch is missing from this installation of ecgi"):
        shipped("slurm", "none.sbatch")


def _copy_checkout(destination: Path) -> None:
    """The files git would hold (committed or not), links kept as links."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, capture_output=True,
                            check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        source, target = REPO / name, destination / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_symlink():
            target.symlink_to(os.readlink(source))
        elif source.is_file():
            shutil.copy2(source, target)


def _install(tmp_path: Path) -> Path:
    """Build ecgi's wheel from a copy of the checkout and install it into SITE
    (its dependencies are this environment's)."""
    source, wheels, site = tmp_path / "source", tmp_path / "wheels", tmp_path / "site"
    _copy_checkout(source)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(source)], check=True)
    (wheel,) = wheels.glob("ecgi-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        for name in ("slurm/train.sbatch", "slurm/campaign-driver.sbatch", "examples/campaigns/demo.yaml",
                     "examples/train/demo.yaml", "examples/train/demo-vm.yaml"):
            info = archive.getinfo(f"workflow/{name}")
            assert not stat.S_ISLNK(info.external_attr >> 16), f"{name} is a link in the wheel"
            assert archive.read(info) == (REPO / name).read_bytes()
    subprocess.run([*pip, "install", "--no-deps", "--no-index", "--target", str(site), str(wheel)], check=True)
    return site


@pytest.mark.slow
def test_installed_ecgi_submits_training_and_finds_its_demo_outside_the_checkout(tmp_path):
    from model.synthetic import write_synthetic_dataset

    site = _install(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**clean_env(), **fake_slurm.install(tmp_path / "fake-bin", tmp_path / "slurm-state")}
    env["PATH"] = f"{site / 'bin'}:{env['PATH']}"
    env["PYTHONPATH"] = str(site)

    def ecgi(*args) -> subprocess.CompletedProcess:
        return subprocess.run([str(site / "bin" / "ecgi"), *map(str, args)], cwd=elsewhere, env=env,
                              capture_output=True, text=True, timeout=300)

    where = subprocess.run([sys.executable, "-c", "import model, solver, workflow; "
                            "print(workflow.__file__, model.__file__, solver.__file__)"],
                           cwd=elsewhere, env=env, capture_output=True, text=True, check=True).stdout.split()
    assert all(Path(p).is_relative_to(site) for p in where), where
    proc = ecgi("demo", "--help")
    assert proc.returncode == 0 and "report.html" in proc.stdout, proc.stderr
    demo_spec = site / "workflow" / "examples" / "campaigns" / "demo.yaml"
    assert demo_spec.is_file() and not demo_spec.is_symlink()
    proc = ecgi("campaign", "plan", demo_spec, "--no-measure", "--json")
    assert proc.returncode == 0 and json.loads(proc.stdout)["name"] == "demo", proc.stderr

    data = elsewhere / "data"
    write_synthetic_dataset(data, train=32, validation=8, test=8, seed=0)
    config = elsewhere / "train.yaml"
    config.write_text("epochs: 1\nbatch_size: 16\nnetwork: {architecture: reference_act}\n"
                      "data: {num_workers: 0}\ntensorboard: false\n")
    proc = ecgi("train", config, "--data", data, "--output", "run", "--submit", "--gpus-per-node", "0",
                "--cpus-per-task", "1", "--time", "10", "--partition", "debug")
    assert proc.returncode == 0, proc.stderr
    job_id = int(proc.stdout.split("submitted job ")[1].split(";")[0])
    run_dir = elsewhere / "run"
    assert (run_dir / "train.sbatch").read_bytes() == (REPO / "slurm" / "train.sbatch").read_bytes()
    os.environ["FAKE_SLURM_DIR"] = env["FAKE_SLURM_DIR"]
    try:
        deadline = time.time() + 240
        while fake_slurm.jobs()[job_id].alive and time.time() < deadline:
            time.sleep(0.5)
        alive = fake_slurm.jobs()[job_id].alive
    finally:
        del os.environ["FAKE_SLURM_DIR"]
    log = (run_dir / f"slurm-{job_id}.out").read_text()
    assert not alive, log
    assert "1 process(es) on cpu" in log and (run_dir / "last.pt").is_file(), log
    calls = [json.loads(line) for line in (tmp_path / "slurm-state" / "calls.log").read_text().splitlines()]
    (sbatch,) = [c["argv"] for c in calls if c["command"] == "sbatch"]
    assert "--time=00:10:00" in sbatch and "--partition=debug" in sbatch and "--ntasks-per-node=1" in sbatch
