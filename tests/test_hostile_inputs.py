"""What a careless or hostile user can do to every command, through the real
CLI in fresh processes: the exit status (2 for the user's mistake, 1 for a
failed computation), one line naming the problem and the fix, never a
traceback, and nothing finished changed.

Full-disk and read-only cases run on small tmpfs mounts (root only; skipped
where mounting is not permitted).  The ECG inputs of ``ecgi predict`` are
tested with the ECG readers, in tests/test_model_cli.py.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Callable

import pytest
import yaml

from tests.conftest import ECGI, REPO, clean_env, run_ecgi

# --------------------------------------------------------------------- helpers


def expect_error(*args, code: int = 2, message: str, timeout: float = 120, **kwargs) -> subprocess.CompletedProcess:
    """Run ``ecgi ARGS``; it must fail with ``code`` and one error line holding ``message``."""
    proc = run_ecgi(*args, check=False, timeout=timeout, **kwargs)
    context = f"ecgi {' '.join(map(str, args))}\nstdout: {proc.stdout}\nstderr: {proc.stderr}"
    assert proc.returncode == code, context
    assert "Traceback" not in proc.stderr, context
    errors = [line for line in proc.stderr.splitlines() if ": error: " in line]
    assert len(errors) == 1, context
    assert message in errors[0], context
    return proc


def snapshot(root: Path) -> dict[str, str]:
    """Every file under ``root`` with its content digest (what "finished" means)."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def campaign_spec(tmp_path: Path, name: str = "spec.yaml", **changes) -> Path:
    data = {
        "name": "h", "output_dir": str(tmp_path / "campaign"), "samples": 2, "samples_per_folder": 2, "seed": 1,
        "geometry": {"count": 2},
        "parameters": {"heart_scale": {"kind": "uniform", "low": 0.9, "high": 1.1}},
        "solver": {"dx_mm": 3.0, "dt_ms": 0.1, "ionic_model": "mitchell_schaeffer", "duration_ms": 40},
        "splits": {"train": 0.5, "validation": 0.0, "test": 0.5},
        "resources": {"executor": "local", "retries": 0, "max_cores": 2},
        "dataset_samples_per_shard": 2,
    }
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


class Mounts:
    """Small tmpfs mounts, unmounted at the end of the test."""

    def __init__(self, base: Path):
        self.base, self.mounted = base, []

    def tmpfs(self, size: str, name: str = "mnt") -> Path:
        target = self.base / name
        target.mkdir(parents=True)
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(target)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here (needs root): {proc.stderr.strip()}")
        self.mounted.append(target)
        return target

    def read_only(self, target: Path) -> Path:
        subprocess.run(["mount", "-o", "remount,ro", str(target)], check=True)
        return target

    def fill(self, target: Path) -> None:
        """Leave no free byte on the mount of ``target``."""
        try:
            with open(target / "filler", "wb", buffering=0) as f:
                while True:
                    f.write(b"\0" * 4096)
        except OSError:
            pass

    def close(self) -> None:
        for target in reversed(self.mounted):
            subprocess.run(["umount", "-l", str(target)], check=False)


@pytest.fixture
def mounts(tmp_path):
    m = Mounts(tmp_path / "mounts")
    yield m
    m.close()


@pytest.fixture(scope="module")
def campaign(tmp_path_factory) -> Path:
    """A finished two-sample campaign; tests copy it before changing anything."""
    root = tmp_path_factory.mktemp("hostile-campaign")
    run_ecgi("campaign", "run", campaign_spec(root), timeout=300)
    return root / "campaign"


def copy_campaign(campaign: Path, target: Path) -> Path:
    shutil.copytree(campaign, target, ignore=shutil.ignore_patterns("parsl", "driver.json"))
    return target


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    """A small synthetic data set and a checkpoint trained on it for one epoch."""
    root = tmp_path_factory.mktemp("hostile-model")
    from model.synthetic import write_synthetic_dataset

    write_synthetic_dataset(root / "data", train=8, validation=4, test=4, samples=500, seed=1)
    (root / "train.yaml").write_text("epochs: 1\nbatch_size: 4\ntensorboard: false\ndata: {num_workers: 0}\n"
                                     "network: {architecture: reference_act}\n")
    run_ecgi("train", root / "train.yaml", "--data", root / "data", "--output", root / "run", "--quiet")
    return root / "data", root / "run" / "last.pt"


# ------------------------------------------------- the error path, in-process


@pytest.mark.parametrize("exc, status, message", [
    (OSError(28, "No space left on device", "/data/x.h5"), 2,
     "/data/x.h5: no space left on device; free some space or choose another output location"),
    (OSError(30, "Read-only file system", "/data/x.h5"), 2, "/data/x.h5: read-only file system; choose a location"),
    (OSError("Unable to synchronously open file (truncated file: eof = 96)"), 2, "Unable to synchronously open file"),
    (MemoryError(), 1, "out of memory"),
])
def test_failures_met_while_writing_become_one_line(capsys, exc, status, message):
    """What the checks before work cannot foresee (a disk filling up during a
    run) still ends as one line."""
    from workflow.cli import report_error

    assert report_error(exc, "ecgi x") == status
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("ecgi x: error: ") and message in err


def test_computation_failures_exit_1_and_bugs_keep_their_traceback(capsys):
    from solver.common.errors import RunError, SolverError
    from workflow.cli import report_error

    assert report_error(RunError("executor died"), "ecgi x") == 1
    assert report_error(SolverError("blow-up"), "ecgi x") == 1
    with pytest.raises(ZeroDivisionError):
        report_error(ZeroDivisionError("a bug"), "ecgi x")


def test_check_writable(tmp_path):
    from solver.common.errors import OutputError
    from solver.common.files import check_writable

    assert check_writable(tmp_path / "new" / "deeper" / "out.h5") == tmp_path / "new" / "deeper" / "out.h5"
    assert not (tmp_path / "new").exists()  # checked, not created
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="is an existing file, not a directory"):
        check_writable(tmp_path / "file", directory=True)
    with pytest.raises(OutputError, match="is a file, so"):
        check_writable(tmp_path / "file" / "out.h5")
    with pytest.raises(OutputError, match="is a directory; give the name of a file"):
        check_writable(tmp_path)
    with pytest.raises(OutputError, match="free some space"):
        check_writable(tmp_path / "out.h5", need_bytes=1 << 62)
    assert not list(tmp_path.glob(".ecgi-write-probe-*"))


# ------------------------------------------------------------ configurations

BILLION_LAUGHS = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(8))

#: (id, spec changes or raw text, command, message)
SPEC_CASES = [
    ("billion-samples", {"samples": 1_000_000_000}, "plan", "above the maximum of 1000000"),
    ("billion-samples-run", {"samples": 1_000_000_000}, "run", "above the maximum of 1000000"),
    ("huge-retries", {"resources": {"retries": 10**6}}, "run", "retries is 1000000, above the maximum"),
    ("infinite-dt", {"solver": {"dt_ms": float("inf")}}, "plan", "expected a finite number"),
    ("infinite-dt-no-measure", {"solver": {"dt_ms": float("inf")}}, "plan --no-measure", "expected a finite number"),
    ("driver-address", {"resources": {"executor": "slurm", "slurm": {"driver_address": "127.0.0.1; x"}}}, "run",
     "driver_address must be an IP address or a host name"),
    ("partition-newline", {"resources": {"executor": "slurm", "slurm": {"partition": "compute\ntouch pwned"}}},
     "plan --no-measure", "partition must be a SLURM name"),
    ("account-substitution", {"resources": {"executor": "slurm", "slurm": {"account": "$(touch pwned)"}}},
     "run", "account must be a SLURM name"),
    ("qos-backticks", {"resources": {"executor": "slurm", "slurm": {"qos": "`touch pwned`"}}},
     "run", "qos must be a SLURM name"),
    ("billion-laughs", BILLION_LAUGHS, "plan", "at most 1000000 are accepted"),
    ("binary-junk", bytes(range(256)) * 4, "run", "not a text file"),
    ("not-yaml", "name: [unclosed\n", "plan", "not valid YAML"),
]


@pytest.mark.parametrize("case, change, command, message", SPEC_CASES, ids=[c[0] for c in SPEC_CASES])
def test_bad_campaign_specs_are_refused_at_load(tmp_path, case, change, command, message):
    if isinstance(change, dict):
        spec = campaign_spec(tmp_path, **change)
    else:
        spec = tmp_path / "spec.yaml"
        spec.write_bytes(change if isinstance(change, bytes) else change.encode())
    start = time.monotonic()
    expect_error("campaign", *command.split(), spec, message=message)
    assert time.monotonic() - start < 30  # refused, not attempted
    assert not (tmp_path / "campaign").exists()
    assert not (tmp_path / "pwned").exists() and not (REPO / "pwned").exists()


def test_failure_of_the_measuring_run_shows_its_reason(tmp_path):
    junk = tmp_path / "heart.npz"
    junk.write_bytes(b"this is not an anatomy")
    spec = campaign_spec(tmp_path, geometry={"count": 1, "files": [str(junk)]})
    proc = expect_error("campaign", "plan", spec, message="the measuring run of the cost estimate failed")
    assert "CalledProcessError" not in proc.stderr and str(junk) in proc.stderr


def test_output_dir_that_is_a_file(tmp_path):
    spec = campaign_spec(tmp_path)
    (tmp_path / "campaign").write_text("my notes")
    expect_error("campaign", "run", spec, message="is an existing file")
    expect_error("campaign", "plan", "--no-measure", spec, message="is an existing file")
    assert (tmp_path / "campaign").read_text() == "my notes"


def test_simulation_config_with_infinite_time_step(tmp_path):
    config = yaml.safe_load((REPO / "examples/patients/normal.yaml").read_text())
    config["patient"].setdefault("time", {})["dt_ms"] = float("inf")
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(config))
    expect_error("simulate", tmp_path / "p.yaml", "-o", tmp_path / "out.h5", message="expected a finite number")


def test_debug_shows_the_traceback(tmp_path):
    spec = campaign_spec(tmp_path, samples=10**9)
    proc = run_ecgi("campaign", "plan", spec, "--debug", check=False)
    assert proc.returncode == 2 and "Traceback" in proc.stderr and "above the maximum" in proc.stderr


# ------------------------------------------------------------------ campaigns


def test_corrupt_frozen_spec_on_status_and_resume(campaign, tmp_path):
    copy = copy_campaign(campaign, tmp_path / "c")
    (copy / "spec.yaml").write_text("name: [oops\n\x00")
    before = snapshot(copy)
    for command in ("status", "resume"):
        expect_error("campaign", command, copy, message="frozen spec is damaged")
    assert snapshot(copy) == before


def test_resume_of_a_directory_that_is_not_a_campaign(tmp_path):
    expect_error("campaign", "resume", tmp_path, message="not a campaign directory")
    (tmp_path / "file").write_text("x")
    expect_error("campaign", "status", tmp_path / "file", message="is a file, not a campaign directory")


def test_moved_campaign_resumes_without_recomputing(campaign, tmp_path):
    copy = copy_campaign(campaign, tmp_path / "moved")
    samples = snapshot(copy / "samples")
    proc = run_ecgi("campaign", "resume", copy, timeout=120)
    assert "2/2 samples done (0 now, 2 before), 0 failed" in proc.stderr
    assert snapshot(copy / "samples") == samples
    assert yaml.safe_load((copy / "spec.yaml").read_text())["output_dir"] == str(copy)


def test_campaign_of_an_older_ecgi_resumes_without_recomputing(campaign, tmp_path):
    """Sample folders were once named shard-N and the spec said
    samples_per_shard: such a campaign is still done, not started afresh."""
    copy = copy_campaign(campaign, tmp_path / "old")
    for kind in ("samples", "records", "logs"):
        for folder in (copy / kind).glob("folder-*"):
            folder.rename(folder.with_name(folder.name.replace("folder-", "shard-")))
    frozen = yaml.safe_load((copy / "spec.yaml").read_text())
    frozen["samples_per_shard"] = frozen.pop("samples_per_folder")
    (copy / "spec.yaml").write_text(yaml.safe_dump(frozen))
    samples = snapshot(copy / "samples")
    proc = run_ecgi("campaign", "resume", copy, timeout=120)
    assert "2/2 samples done (0 now, 2 before), 0 failed" in proc.stderr, proc.stderr
    assert snapshot(copy / "samples") == samples and not list((copy / "samples").glob("folder-*"))
    status = json.loads(run_ecgi("campaign", "status", copy, "--json").stdout)
    assert status["done"] == 2 and [f["folder"] for f in status["folders"]] == [0]


def test_sample_corrupted_in_place_is_recomputed_with_true_totals(campaign, tmp_path):
    import h5py

    copy = copy_campaign(campaign, tmp_path / "c")
    victim = sorted((copy / "samples").rglob("*.h5"))[0]
    size = victim.stat().st_size
    with h5py.File(victim, "r+") as f:  # same size, same attributes, different values
        f["time"][0] = f["time"][0] + 1.0
    assert victim.stat().st_size == size
    proc = run_ecgi("campaign", "resume", copy, timeout=300)
    assert "checksum mismatch" in proc.stderr and "recomputing it" in proc.stderr
    assert "2/2 samples done (1 now, 1 before), 0 failed" in proc.stderr
    assert "data set of 2 samples" in proc.stderr
    manifest = json.loads((copy / "dataset" / "manifest.json").read_text())
    assert sum(s["samples"] for shards in manifest["splits"].values() for s in shards) == 2


def test_dataset_build_elsewhere_ignores_the_campaigns_own_data_set(campaign, tmp_path):
    copy = copy_campaign(campaign, tmp_path / "c")
    own = snapshot(copy / "dataset")
    proc = run_ecgi("dataset", "build", copy, "--output", tmp_path / "elsewhere", "--splits", "0.5,0,0.5")
    assert "skipped" not in proc.stderr, proc.stderr
    manifest = json.loads((tmp_path / "elsewhere" / "manifest.json").read_text())
    assert sum(s["samples"] for shards in manifest["splits"].values() for s in shards) == 2
    assert snapshot(copy / "dataset") == own


# ---------------------------------------------- outputs never replace inputs


def stat_of(root: Path) -> dict[str, tuple[int, int]]:
    """Every path under ``root`` (``root`` itself if a file) with its inode and mtime."""
    paths = [root] if root.is_file() else sorted(root.rglob("*"))
    return {str(p): (p.stat().st_ino, p.stat().st_mtime_ns) for p in paths}


def test_simulate_refuses_to_write_over_its_configuration(tmp_path):
    config = tmp_path / "cfg.yaml"
    shutil.copy(REPO / "examples" / "patients" / "normal.yaml", config)
    (tmp_path / "link.yaml").symlink_to(config)
    before = stat_of(tmp_path)
    for output in (config, tmp_path / "link.yaml", tmp_path / "sub" / ".." / "cfg.yaml"):
        expect_error("simulate", config, "-o", output, message="is the input", timeout=60)
    assert stat_of(tmp_path) == before


def test_predict_refuses_to_write_over_its_recording_or_checkpoint(trained, tmp_path):
    import numpy as np

    data, checkpoint = trained
    checkpoint = Path(shutil.copy(checkpoint, tmp_path / "net.pt"))
    recording = tmp_path / "rec.csv"
    leads = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
    rows = np.random.default_rng(0).normal(0, 0.1, (2000, 12))
    recording.write_text(",".join(leads) + "\n" + "\n".join(",".join(f"{v:.4f}" for v in r) for r in rows))
    before = stat_of(tmp_path)
    for extra in (["--output", recording], ["--output", checkpoint], ["--figure", recording],
                  ["--output", tmp_path / "p.h5", "--figure", checkpoint]):
        expect_error("predict", checkpoint, recording, "--sampling-rate", 500, *extra, message="is the input")
    assert stat_of(tmp_path) == before


def test_dataset_build_never_writes_into_a_directory_it_does_not_own(campaign, tmp_path):
    copy = copy_campaign(campaign, tmp_path / "c")
    foreign = tmp_path / "foreign"
    (foreign / "train").mkdir(parents=True)
    (foreign / "manifest.json").write_text('{"owner": "someone else"}')
    (foreign / "train" / "shard-00007.h5").write_bytes(b"someone else's")
    before, campaign_before = stat_of(foreign), stat_of(copy)
    expect_error("dataset", "build", copy, "--output", foreign, message="already holds files that are not an ecgi data set")
    expect_error("dataset", "build", copy, "--output", copy / "samples",
                 message="already holds files that are not an ecgi data set")
    assert stat_of(foreign) == before and stat_of(copy) == campaign_before
    # An ecgi data set with a shard file its manifest does not list.
    own = copy / "dataset"
    (own / "train" / "shard-00042.h5").write_bytes(b"not listed")
    expect_error("dataset", "build", copy, message="is not a shard of the data set in")
    assert (own / "train" / "shard-00042.h5").read_bytes() == b"not listed"


def test_dataset_build_resumes_into_its_own_directory_after_a_crash(campaign, tmp_path):
    """A build that ended before its manifest left its mark, which claims the
    shards it was writing: the directory is still its own to complete."""
    copy = copy_campaign(campaign, tmp_path / "c")
    output = tmp_path / "ds"
    run_ecgi("dataset", "build", copy, "--output", output, "--splits", "0.5,0,0.5")
    assert json.loads((output / ".ecgi-dataset.json").read_text())["files"] == ["test/shard-00000.h5", "train/shard-00000.h5"]
    (output / "manifest.json").unlink()
    (output / "train" / "shard-00000.h5").write_bytes(b"half-written by the crashed build")
    run_ecgi("dataset", "build", copy, "--output", output, "--splits", "0.5,0,0.5")
    from workflow.dataset import verify_dataset

    assert verify_dataset(output).split_size("train") == 1


# ------------------------------------------------------- disk full, read-only


def test_campaign_on_a_full_disk(campaign, mounts, tmp_path):
    disk = mounts.tmpfs("400k")
    expect_error("campaign", "run", campaign_spec(tmp_path, output_dir=str(disk / "campaign")),
                 message="free some space or choose another output location")
    assert not (disk / "campaign").exists()


def test_resume_and_dataset_build_while_the_disk_is_full(campaign, mounts):
    disk = mounts.tmpfs("8m")
    copy = copy_campaign(campaign, disk / "c")
    mounts.fill(disk)
    before = snapshot(copy)
    expect_error("campaign", "resume", copy, message="free some space or choose another output location")
    expect_error("dataset", "build", copy, "--output", disk / "ds", message="free some space")
    assert snapshot(copy) == before


def test_read_only_campaign_resume_and_dataset_build(campaign, mounts):
    disk = mounts.tmpfs("8m")
    copy = copy_campaign(campaign, disk / "c")
    mounts.read_only(disk)
    before = snapshot(copy)
    expect_error("campaign", "resume", copy, message="read-only file system")
    expect_error("dataset", "build", copy, message="read-only file system")
    stop = run_ecgi("campaign", "stop", copy)  # nothing to stop, nothing to write
    assert "no driver recorded" in stop.stderr and "Traceback" not in stop.stderr
    assert snapshot(copy) == before


@pytest.mark.parametrize("kind", ["full", "read-only"])
def test_simulate_refuses_an_unwritable_output_before_simulating(mounts, kind):
    disk = mounts.tmpfs("400k")
    if kind == "read-only":
        mounts.read_only(disk)
    start = time.monotonic()
    message = "read-only file system" if kind == "read-only" else "free some space"
    expect_error("simulate", REPO / "examples/patients/normal.yaml", "-o", disk / "out.h5", message=message)
    assert time.monotonic() - start < 20  # before the simulation, not after it
    expect_error("plot", REPO / "examples/patients/normal.yaml", "-o", disk / "figures",
                 message=message if kind == "read-only" else "free some space")


@pytest.mark.parametrize("kind", ["full", "read-only"])
def test_train_and_evaluate_refuse_an_unwritable_output(trained, mounts, tmp_path, kind):
    data, checkpoint = trained
    disk = mounts.tmpfs("400k")
    if kind == "read-only":
        mounts.read_only(disk)
    message = "read-only file system" if kind == "read-only" else "free some space"
    config = tmp_path / "train.yaml"
    config.write_text("epochs: 2\nbatch_size: 4\ntensorboard: false\ndata: {num_workers: 0}\n"
                      "network: {architecture: reference_act}\n")
    expect_error("train", config, "--data", data, "--output", disk / "run", message=message)
    expect_error("evaluate", checkpoint, data, "--report", disk / "report", message=message)
    record = REPO / "tests/data/clinical/cinc2020/A0002.hea"
    expect_error("predict", checkpoint, record, "--output", disk / "p.h5", message=message)
    expect_error("predict", checkpoint, record, "--output", tmp_path / "p.h5", "--report", disk / "report",
                 message=message)
    assert not (tmp_path / "p.h5").exists()  # refused before any work


def test_train_resume_on_a_full_disk_then_no_temporary_is_left(trained, mounts, tmp_path):
    data, checkpoint = trained
    disk = mounts.tmpfs("24m")
    run = disk / "run"
    run.mkdir()
    shutil.copy(checkpoint, run / "last.pt")
    (run / ".last.pt.tmp-999999").write_bytes(b"partial copy left by a killed run")
    config = tmp_path / "train.yaml"
    config.write_text("epochs: 2\nbatch_size: 4\ntensorboard: false\ndata: {num_workers: 0}\n"
                      "network: {architecture: reference_act}\n")
    mounts.fill(disk)
    before = snapshot(run)
    expect_error("train", config, "--data", data, "--output", run, "--resume", message="free some space")
    assert snapshot(run) == before
    (disk / "filler").unlink()
    run_ecgi("train", config, "--data", data, "--output", run, "--resume", "--quiet")
    assert not list(run.glob(".*.tmp-*"))


def test_checkpoint_write_on_a_disk_that_fills_up(mounts):
    """torch reports a full disk as "unexpected pos"; ecgi says what it is, and leaves no partial copy."""
    import torch

    from model.checkpoint import save_checkpoint
    from solver.common.errors import OutputError

    disk = mounts.tmpfs("300k")
    with pytest.raises(OutputError, match="no space left on device"):
        save_checkpoint(disk / "last.pt", {"model": {"w": torch.zeros(200_000)}})
    assert list(disk.iterdir()) == []


# -------------------------------------------------------------------- models


def _every_use_of(checkpoint: Path, data: Path, tmp_path: Path, message: str) -> None:
    """predict, evaluate, evaluate --ensemble and train --resume all refuse ``checkpoint`` with ``message``."""
    record = REPO / "tests/data/clinical/cinc2020/A0002.hea"
    good = tmp_path / "good.pt"
    expect_error("predict", checkpoint, record, "--output", tmp_path / "p.h5", message=message)
    expect_error("evaluate", checkpoint, data, message=message)
    expect_error("evaluate", good, data, "--ensemble", checkpoint, message=message)
    expect_error("predict", good, record, "--ensemble", checkpoint, "--output", tmp_path / "p.h5", message=message)
    run = tmp_path / "run"
    run.mkdir(exist_ok=True)
    shutil.copy(checkpoint, run / "last.pt")
    config = tmp_path / "train.yaml"
    config.write_text("epochs: 2\nbatch_size: 4\ntensorboard: false\ndata: {num_workers: 0}\n"
                      "network: {architecture: reference_act}\n")
    expect_error("train", config, "--data", data, "--output", run, "--resume", message=message)
    assert not (tmp_path / "p.h5").exists()


def test_a_checkpoint_changed_in_place_is_refused_everywhere(trained, tmp_path):
    """2,000 bytes flipped inside the weights still load as a zip of
    tensors; the digest written with them tells."""
    import torch

    data, checkpoint = trained
    shutil.copy(checkpoint, tmp_path / "good.pt")
    raw = bytearray(checkpoint.read_bytes())
    weights = max(torch.load(checkpoint, weights_only=True)["model"].values(), key=lambda t: t.numel())
    start = raw.find(weights.numpy().tobytes()[:64])
    assert start > 0 and weights.numel() * 4 > 4000
    raw[start + 1000:start + 3000] = bytes(b ^ 0x5A for b in raw[start + 1000:start + 3000])
    damaged = tmp_path / "damaged.pt"
    damaged.write_bytes(bytes(raw))
    _every_use_of(damaged, data, tmp_path, "do not match the digest written with them")


@pytest.mark.parametrize("change, message", [
    (lambda s: s.update(config="a string"), "checkpoint metadata: train: expected a mapping"),
    (lambda s: s["config"]["network"].update(architecture="squeezenet9"), "train.network.architecture: 'squeezenet9'"),
    (lambda s: s["config"]["network"].update(dropout="0.5"), "train.network.dropout: expected a number"),
    (lambda s: s.update(inputs={"scaling": 3}), "checkpoint metadata: inputs.scaling"),
    (lambda s: s["inputs"].update(ecg_mean=[0.0] * 3), "one value per lead"),
    (lambda s: s["inputs"].update(ood={"mean": "x"}), "ood.mean: expected a list"),
    (lambda s: s.update(epoch=-4), "is not a count of epochs"),
])
def test_forged_checkpoint_metadata_is_refused_everywhere(trained, tmp_path, change, message):
    """A loadable checkpoint with a valid digest but metadata no training
    writes: one line naming the field. Every command reads a checkpoint
    through load_checkpoint, which checks the metadata after the digest
    (the damaged checkpoint above goes through each command)."""
    from model.checkpoint import load_checkpoint, save_checkpoint

    data, checkpoint = trained
    shutil.copy(checkpoint, tmp_path / "good.pt")
    state = load_checkpoint(checkpoint)
    change(state)
    save_checkpoint(tmp_path / "forged.pt", state)
    expect_error("predict", tmp_path / "forged.pt", REPO / "tests/data/clinical/cinc2020/A0002.hea",
                 "--output", tmp_path / "p.h5", message=message)


def test_random_bytes_checkpoint(trained, tmp_path):
    data, _ = trained
    junk = tmp_path / "junk.pt"
    junk.write_bytes(os.urandom(4096))
    proc = expect_error("evaluate", junk, data, message="not a readable checkpoint")
    assert "weights_only" not in proc.stderr


def test_corrupt_chunk_in_a_test_shard(trained, tmp_path):
    data, checkpoint = trained
    copy = tmp_path / "data"
    shutil.copytree(data, copy)
    shard = copy / "test" / "shard-00000.h5"
    raw = bytearray(shard.read_bytes())
    middle = len(raw) // 2
    raw[middle:middle + 64] = os.urandom(64)
    shard.write_bytes(bytes(raw))
    expect_error("evaluate", checkpoint, copy, message="sha256 differs from the manifest")


# ------------------------------------------------------------- MPI stays out

#: Runs an ecgi command and reports whether it loaded mpi4py.MPI (whose first
#: import starts Open MPI's daemon, which inherits open HDF5 files and their locks).
MPI_PROBE = ("import sys; from workflow.cli import main; code = main(sys.argv[1:]); "
             "print('mpi4py.MPI loaded' if 'mpi4py.MPI' in sys.modules else 'mpi4py.MPI not loaded', file=sys.stderr); "
             "sys.exit(code)")


def test_driver_and_data_set_commands_never_load_mpi(campaign, tmp_path):
    import numpy as np

    copy = copy_campaign(campaign, tmp_path / "c")
    llnl = tmp_path / "llnl" / "data_hearts_dd_0p2"
    llnl.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for volunteer in (1, 2, 3):
        np.save(llnl / f"pECGData_hearts_dd_0p2_volunteer.v{volunteer}_pattern.0.npy", rng.normal(size=(500, 10)))
        np.save(llnl / f"VmData_hearts_dd_0p2_volunteer.v{volunteer}_pattern.0.npy",
                np.where(np.arange(500)[:, None] > rng.integers(10, 200, 75), 20.0, -85.0))
    commands = [
        ("campaign", "plan", "--no-measure", campaign_spec(tmp_path)),
        ("campaign", "status", copy),
        ("campaign", "resume", copy, "--verify"),
        ("dataset", "build", copy, "--output", tmp_path / "ds", "--splits", "0.5,0,0.5"),
        ("dataset", "import-llnl", tmp_path / "llnl", "--output", tmp_path / "llnl-ds"),
    ]
    for args in commands:
        proc = subprocess.run([ECGI[0], "-c", MPI_PROBE, *map(str, args)], cwd=REPO,
                              env=clean_env(), capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        assert "mpi4py.MPI not loaded" in proc.stderr, (args, proc.stderr)


def test_resume_verify_recomputes_a_silently_altered_sample_up_front(campaign, tmp_path):
    """A byte changed inside a sample's data (same size, marks intact) passes
    the cheap done-check; ``resume --verify`` recomputes every checksum first
    and reruns exactly that sample in its main pass (a plain resume finds it
    only when the data set build verifies the files, and says so)."""
    import h5py

    from solver.numerics.output import IncompleteFileError, verify_simulation_file

    copy = copy_campaign(campaign, tmp_path / "c")
    victim = sorted((copy / "samples").rglob("*.h5"))[0]
    with h5py.File(victim) as f:
        offset = f["act_sites"].id.get_offset()  # contiguous: its bytes lie at one place in the file
    assert offset is not None
    data = bytearray(victim.read_bytes())
    data[offset] ^= 0xFF
    victim.write_bytes(bytes(data))
    with pytest.raises(IncompleteFileError, match="checksum mismatch"):
        verify_simulation_file(victim)

    def finished() -> dict[str, str]:
        return {p.stem: json.loads(p.read_text())["finished_at"] for p in (copy / "records").rglob("*.json")}

    before = finished()
    assert len(before) == 2 and victim.stem in before
    proc = run_ecgi("campaign", "resume", copy, "--verify", timeout=300)
    after = finished()
    assert {k for k in after if after[k] != before[k]} == {victim.stem}
    assert "recomputing it" not in proc.stderr, proc.stderr  # found by --verify, not by the build
    verify_simulation_file(victim)


# ----------------------------------------------------------------- processes


def _wait_for(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.5)
    return condition()


def _running_samples(root: Path) -> bool:
    return any(json.loads(p.read_text()).get("state") == "running" for p in (root / "records").rglob("*.json"))


@pytest.mark.parametrize("how", ["stop-live-driver", "SIGKILL-then-stop"])
def test_a_stopped_driver_leaves_no_process_behind(tmp_path, how):
    """`campaign stop` of a live driver (SIGTERM: the driver cleans up) and
    after a hard kill (the one clean-up command of docs/cluster-guide.md)."""
    from workflow.processes import campaign_processes, is_running

    spec = campaign_spec(tmp_path, samples=2, solver={"duration_ms": 20000})
    root = tmp_path / "campaign"
    driver = subprocess.Popen([*ECGI, "campaign", "run", str(spec)], cwd=REPO, env=clean_env(),
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        assert _wait_for(lambda: root.is_dir() and _running_samples(root), 120), "no sample started"
        assert campaign_processes(root), "the driver's workers carry no campaign mark"
        helpers = [helper["pid"] for helper in json.loads((root / "driver.json").read_text())["helpers"]]
        assert helpers, "the driver recorded no interchange"
        if how == "SIGKILL-then-stop":
            driver.kill()
            driver.wait(timeout=60)
            assert campaign_processes(root), "workers ended with the driver; nothing left to test"
        run_ecgi("campaign", "stop", root, timeout=120)
        if how == "stop-live-driver":
            assert driver.wait(timeout=60) == 130
            assert "Traceback" not in driver.stderr.read()
        assert _wait_for(lambda: not any(map(is_running, helpers)), 15), "the interchange is still running"
        assert _wait_for(lambda: not campaign_processes(root), 15), campaign_processes(root)
        assert not (root / "driver.json").exists()
    finally:
        if driver.poll() is None:
            driver.kill()
        run_ecgi("campaign", "stop", root, check=False, timeout=60)


def test_no_junk_file_gets_past_the_checkpoint_reader(tmp_path):
    """Random bytes, whole or behind a zip or pickle header, are refused as
    'not a readable checkpoint' however torch's safe unpickler trips on them."""
    import numpy as np

    from model.checkpoint import load_checkpoint
    from solver.common.errors import ConfigError

    rng = np.random.default_rng(0)
    junk = tmp_path / "junk.pt"
    for i in range(300):
        body = rng.integers(0, 256, int(rng.integers(1, 4096)), dtype=np.uint8).tobytes()
        junk.write_bytes((b"", b"PK\x03\x04", b"\x80\x02")[i % 3] + body)
        with pytest.raises(ConfigError, match="not a readable checkpoint|not an ecgi checkpoint"):
            load_checkpoint(junk)


# -------------------------------------- process identity, in a private namespace
#
# Each case runs inside a new pid namespace *and* a new session: a signal
# sent to the wrong pid, to pid -1 or to a process group then reaches only
# the namespace's own processes, never the machine or this test run.

NAMESPACE_SCRIPT = r"""
set -u
sleep 300 & bystander=$!
while [ ! -e /proc/$bystander/stat ]; do sleep 0.05; done
"$PYTHON" - "$bystander" <<'PY'
import json, os, socket, sys, time
from workflow.processes import ProcessIdentity
pid = int(sys.argv[1])
identity = ProcessIdentity.of(pid).record()
records = {
    "pid -1": {"pid": -1, "host": socket.gethostname(), "heartbeat": time.time()},
    "pid 0": {"pid": 0, "host": socket.gethostname(), "heartbeat": time.time()},
    "forged pid -1 identity": {"host": socket.gethostname(), "heartbeat": time.time(),
                               "process": {**identity, "pid": -1}},
    "old record of a bystander's pid": {"pid": pid, "host": socket.gethostname(), "heartbeat": time.time()},
    "stale identity of a bystander's pid": {"host": socket.gethostname(), "heartbeat": time.time(),
                                            "process": {**identity, "start_ticks": identity["start_ticks"] - 1}},
    "live bystander": {"host": socket.gethostname(), "heartbeat": time.time(), "process": identity},
    "helpers: -1, 0, 1 and a bystander": {"host": socket.gethostname(), "heartbeat": time.time() - 3600,
                                          "helpers": [{**identity, "pid": p} for p in (-1, 0, 1)]
                                          + [{**identity, "start_ticks": 0}]},
}
with open(os.path.join(os.environ["CAMPAIGN"], "driver.json"), "w") as f:
    json.dump(records[os.environ["CASE"]], f)
PY
before=$(stat -c '%i %Y' "$CAMPAIGN/spec.yaml")
eval "$COMMAND"
echo "exit=$?"
sleep 0.3
kill -0 $bystander 2>/dev/null && echo "bystander=alive" || echo "bystander=dead"
[ "$before" = "$(stat -c '%i %Y' "$CAMPAIGN/spec.yaml")" ] && echo "spec=unchanged" || echo "spec=changed"
kill $bystander 2>/dev/null
exit 0
"""


def in_private_namespace(campaign: Path, case: str, command: str) -> subprocess.CompletedProcess:
    """Run ``command`` beside a bystander ``sleep``, with the campaign's
    driver.json written as ``case`` says, in a new pid namespace and session."""
    if os.geteuid() != 0 or shutil.which("unshare") is None or shutil.which("setsid") is None:
        pytest.skip("a private pid namespace needs root and util-linux's unshare")
    env = {**clean_env(), "PYTHON": ECGI[0], "CAMPAIGN": str(campaign), "CASE": case, "COMMAND": command,
           "PYTHONPATH": str(REPO)}
    proc = subprocess.run(["setsid", "unshare", "--pid", "--fork", "--mount-proc", "bash", "-c", NAMESPACE_SCRIPT],
                          capture_output=True, text=True, timeout=120, cwd=REPO, env=env)
    if proc.returncode != 0 and "unshare" in proc.stderr:
        pytest.skip(f"cannot make a pid namespace here: {proc.stderr.strip()}")
    return proc


def namespace_outcome(proc: subprocess.CompletedProcess) -> dict[str, str]:
    return dict(line.split("=", 1) for line in proc.stdout.splitlines() if line.count("=") == 1)


@pytest.mark.parametrize("case, message", [
    ("pid -1", "driver.json names no process ecgi can recognise"),
    ("pid 0", "driver.json names no process ecgi can recognise"),
    ("forged pid -1 identity", "driver.json names no process ecgi can recognise"),
    ("old record of a bystander's pid", "driver.json names no process ecgi can recognise"),
    ("stale identity of a bystander's pid", "now belongs to another process, not the driver"),
    ("helpers: -1, 0, 1 and a bystander", "driver.json names no process ecgi can recognise"),
])
def test_campaign_stop_signals_nothing_it_did_not_start(tmp_path, case, message):
    """`campaign stop` signals only the very process its driver recorded:
    never pid -1 (everyone), 0 (its own group), 1, or a pid reused since."""
    campaign = tmp_path / "campaign"
    campaign.mkdir()
    shutil.copy(campaign_spec(tmp_path), campaign / "spec.yaml")
    proc = in_private_namespace(campaign, case, f"{ECGI[0]} -m workflow.cli campaign stop {campaign}")
    outcome = namespace_outcome(proc)
    assert outcome.get("exit") == "0", proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    assert "no live driver: " in proc.stderr and message in proc.stderr, proc.stderr
    assert "stopped driver" not in proc.stderr and "stopped 0 process(es)" in proc.stderr, proc.stderr
    assert outcome.get("bystander") == "alive", proc.stdout + proc.stderr
    assert outcome.get("spec") == "unchanged"
    assert not (campaign / "driver.json").exists(), "a stale driver record stays after stop"


CLAIM = f"{ECGI[0]} -c 'from workflow.layout import CampaignLayout, claim_driver; " \
        "import os; claim_driver(CampaignLayout(os.environ[\"CAMPAIGN\"])); print(\"claimed\")'"


@pytest.mark.parametrize("case", ["stale identity of a bystander's pid", "old record of a bystander's pid", "pid -1"])
def test_resume_takes_over_a_stale_lock_without_signalling_its_pid(tmp_path, case):
    """A driver.json whose pid is now another process's is a stale lock: a
    new driver takes the campaign over and leaves that process alone."""
    campaign = tmp_path / "campaign"
    campaign.mkdir()
    shutil.copy(campaign_spec(tmp_path), campaign / "spec.yaml")
    proc = in_private_namespace(campaign, case, CLAIM)
    assert "claimed" in proc.stdout, proc.stdout + proc.stderr
    assert namespace_outcome(proc).get("bystander") == "alive", proc.stdout + proc.stderr
    assert "claim_driver" in json.loads((campaign / "driver.json").read_text())["process"]["command"]


def test_a_live_driver_keeps_a_second_one_out_and_is_what_stop_ends(tmp_path):
    """A driver.json whose identity is a running process's is a live driver:
    `campaign resume` refuses to start beside it; `campaign stop` ends it."""
    campaign = tmp_path / "campaign"
    campaign.mkdir()
    shutil.copy(campaign_spec(tmp_path), campaign / "spec.yaml")
    resume = in_private_namespace(campaign, "live bystander", f"{ECGI[0]} -m workflow.cli campaign resume {campaign}")
    assert namespace_outcome(resume) == {"exit": "2", "bystander": "alive", "spec": "unchanged"}, resume.stderr
    assert "Traceback" not in resume.stderr
    assert "another driver (pid" in resume.stderr and "ecgi campaign stop" in resume.stderr, resume.stderr
    stop = in_private_namespace(campaign, "live bystander", f"{ECGI[0]} -m workflow.cli campaign stop {campaign}")
    assert namespace_outcome(stop) == {"exit": "0", "bystander": "dead", "spec": "unchanged"}, stop.stderr
    assert "stopped driver" in stop.stderr and "Traceback" not in stop.stderr
