"""The campaign driver: run what is missing, track it, never lose work.

The driver process never initialises MPI (it only plans, submits and reads
files): MPI runtimes leave environment variables behind that would confuse
the ``mpiexec`` of the tasks it starts.

Resuming needs no checkpoint of the driver itself: the plan is a function of
the frozen spec and a sample is done exactly when its file and record say
so, so any driver, started any number of times, after any crash, runs only
what is missing, failed (retryable) or corrupt.
"""
from __future__ import annotations

import concurrent.futures
import os
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, TextIO

import yaml

from solver.errors import ConfigError
from solver.files import write_text_atomic

from .executors import classify_failure, parsl_config, task_command
from .layout import CampaignLayout, SampleRecord, driver_alive, write_json_atomic
from .sampling import SamplePlan, plan_samples
from .spec import CampaignSpec, spec_from_dict


@dataclass
class RunSummary:
    planned: int
    already_done: int
    submitted: int
    done: int = 0
    failed: dict[str, str] = field(default_factory=dict)  #: sample id -> reason
    wall_time_s: float = 0.0


def spec_differences(old: dict, new: dict, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two spec dicts."""
    keys = sorted(set(old) | set(new))
    out = []
    for k in keys:
        a, b = old.get(k), new.get(k)
        path = f"{prefix}{k}"
        if isinstance(a, dict) and isinstance(b, dict):
            out += spec_differences(a, b, path + ".")
        elif a != b:
            out.append(f"{path}: {a!r} -> {b!r}")
    return out


def freeze_spec(spec: CampaignSpec, layout: CampaignLayout, force: bool) -> None:
    """Copy the spec into the campaign directory, or check it against the copy."""
    new = spec.to_dict()
    if layout.spec_path.exists():
        old = yaml.safe_load(layout.spec_path.read_text())
        changes = spec_differences(old, new)
        if changes and not force:
            raise ConfigError(
                f"the spec differs from the one frozen in {layout.spec_path}:\n  " + "\n  ".join(changes)
                + "\nrerun with --force to adopt it (samples whose parameters changed are recomputed)"
            )
        if not changes:
            return
    write_text_atomic(layout.spec_path, yaml.safe_dump(new, sort_keys=False))


def load_frozen_spec(campaign_dir: Path) -> CampaignSpec:
    layout = CampaignLayout(campaign_dir)
    if not layout.spec_path.is_file():
        raise ConfigError(f"{campaign_dir} is not a campaign directory (no spec.yaml); start it with `ecgi campaign run SPEC`")
    return spec_from_dict(yaml.safe_load(layout.spec_path.read_text()))


def samples_to_run(spec: CampaignSpec, layout: CampaignLayout, retry_failed: bool = False, full_check: bool = False):
    """(plan, done plans, to-do plans, permanently failed plans)."""
    plans = plan_samples(spec)
    refuse_other_sample_format(layout, plans)
    done, todo, final = [], [], []
    for plan in plans:
        record = layout.read_record(plan)
        if layout.is_done(plan, record, full_check) and _same_parameters(record, plan):
            done.append(plan)
        elif record is not None and record.state == "failed" and not record.retryable and not retry_failed:
            final.append(plan)
        else:
            todo.append(plan)
    return plans, done, todo, final


def refuse_other_sample_format(layout: CampaignLayout, plans) -> None:
    """A campaign holds samples of one format version: refuse to add new
    samples to a directory an older ecgi filled (its first sample decides)."""
    import h5py

    from solver.output import FORMAT_VERSION, format_mismatch

    for plan in plans:
        path = layout.sample_path(plan)
        if not path.is_file():
            continue
        try:
            with h5py.File(path, "r") as f:
                version = f.attrs.get("format_version")
        except OSError:
            continue  # an unreadable file is recomputed anyway
        if version != FORMAT_VERSION:
            raise ConfigError(format_mismatch(path, version))
        return


def _same_parameters(record: Optional[SampleRecord], plan: SamplePlan) -> bool:
    return record is not None and yaml.safe_dump(record.parameters) == yaml.safe_dump(dict(plan.values))


class Progress:
    """One status line: done / running / failed, rate, ETA."""

    def __init__(self, total: int, stream: TextIO, name: str):
        self.total, self.stream, self.name = total, stream, name
        self.start = time.time()
        self.last = 0.0
        self.tty = stream.isatty()

    def due(self) -> bool:
        return time.time() - self.last >= (1.0 if self.tty else 15.0)

    def update(self, done: int, running: int, failed: int, force: bool = False) -> None:
        now = time.time()
        if not force and not self.due():
            return
        self.last = now
        elapsed = now - self.start
        rate = done / elapsed if elapsed > 0 else 0.0
        remaining = self.total - done - failed
        eta = f"{remaining / rate / 60:.1f} min" if rate > 0 else "?"
        width = 30
        filled = int(width * (done + failed) / max(self.total, 1))
        bar = "#" * filled + "." * (width - filled)
        line = (f"[{self.name}] [{bar}] {done}/{self.total} done, {running} running, {failed} failed | "
                f"{rate * 60:.1f} samples/min | ETA {eta}")
        self.stream.write(("\r" + line) if self.tty else line + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")


def claim_driver(layout: CampaignLayout) -> None:
    other = driver_alive(layout)
    if other is not None and other.get("pid") != os.getpid():
        raise ConfigError(
            f"another driver (pid {other.get('pid')} on {other.get('host')}) is running this campaign; "
            "wait for it or stop it first"
        )
    beat(layout)


def beat(layout: CampaignLayout) -> None:
    """Mark this process as the campaign's live driver (see layout.driver_alive)."""
    write_json_atomic(layout.driver_path, {"pid": os.getpid(), "host": socket.gethostname(), "heartbeat": time.time()})


def run_campaign(
    spec: CampaignSpec, *, force: bool = False, retry_failed: bool = False, full_check: bool = False,
    stream: TextIO = sys.stderr, build_dataset: bool = True,
) -> RunSummary:
    """Run every sample that is not done yet; returns what happened."""
    layout = CampaignLayout(spec.output_dir)
    freeze_spec(spec, layout, force)
    claim_driver(layout)
    try:
        plans, done, todo, final = samples_to_run(spec, layout, retry_failed, full_check)
        summary = RunSummary(planned=len(plans), already_done=len(done), submitted=len(todo))
        summary.failed = {p.sample_id: _reason(layout.read_record(p)) for p in final}
        start = time.time()
        if todo:
            _execute(spec, layout, todo, summary, stream)
        summary.wall_time_s = time.time() - start
        if build_dataset:
            _build_dataset(spec, layout, stream)
        return summary
    finally:
        layout.driver_path.unlink(missing_ok=True)


def _reason(record: Optional[SampleRecord]) -> str:
    return f"{record.error_kind}: {record.error}" if record else "unknown"


def _execute(spec: CampaignSpec, layout: CampaignLayout, todo: list[SamplePlan], summary: RunSummary, stream) -> None:
    import parsl

    # Parsl starts its interchange and workers by name from PATH: make them
    # the ones installed beside this Python, even when the venv is not active.
    bin_dir = str(Path(sys.executable).parent)
    if bin_dir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")
    dfk = parsl.load(parsl_config(spec, layout.parsl_dir))
    progress = Progress(summary.planned, stream, spec.name)
    done_before = summary.already_done
    try:
        submit = _submitter(spec, layout)
        pending = {submit(plan): plan for plan in todo}
        last_beat = 0.0
        while pending:
            # Block until a task ends (no busy polling: the driver shares the
            # machine with the simulations when running locally).
            finished, _ = concurrent.futures.wait(list(pending), timeout=2.0, return_when=concurrent.futures.FIRST_COMPLETED)
            for future in finished:
                _settle(future, pending.pop(future), layout, summary)
            now = time.time()
            if now - last_beat > 10:
                last_beat = now
                beat(layout)
            if progress.due():
                progress.update(done_before + summary.done, _count_running(layout, pending.values()), len(summary.failed))
        progress.update(done_before + summary.done, 0, len(summary.failed), force=True)
    finally:
        progress.close()
        dfk.cleanup()
        parsl.clear()


def _submitter(spec: CampaignSpec, layout: CampaignLayout):
    """A function submitting one planned sample to Parsl, returning its future."""
    from parsl import bash_app, python_app

    from .apps import simulate_in_worker, simulate_with_mpi

    timeout = spec.resources.task_timeout_s
    ranks = spec.resources.ranks_per_simulation
    if ranks == 1:
        app = python_app(simulate_in_worker)

        def submit(plan: SamplePlan):
            kwargs = {"walltime": timeout} if timeout else {}
            return app(str(layout.root), plan.sample_id, str(layout.log_path(plan)), **kwargs)
        return submit

    app = bash_app(simulate_with_mpi)
    # Parsl's MPI mode (SLURM) places each task on a node of the block.
    mpi_mode = {"parsl_resource_specification": {"num_nodes": 1, "ranks_per_node": ranks, "num_ranks": ranks}} \
        if spec.resources.executor == "slurm" else {}

    def submit(plan: SamplePlan):
        log = layout.log_path(plan)
        log.parent.mkdir(parents=True, exist_ok=True)
        kwargs = {"stdout": (str(log), "a"), "stderr": (str(log), "a"), **mpi_mode}
        if timeout:
            kwargs["walltime"] = timeout
        return app(task_command(spec, layout.root, plan.sample_id), **kwargs)
    return submit


def _settle(future, plan: SamplePlan, layout: CampaignLayout, summary: RunSummary) -> None:
    """Record a finished task: done, or failed with its classified reason."""
    exc = future.exception()
    record = layout.read_record(plan)
    if exc is None and layout.is_done(plan, record):
        summary.done += 1
        return
    kind = classify_failure(exc) if exc is not None else "io_error"
    if record is None or record.state != "failed":
        record = record or SampleRecord(sample_id=plan.sample_id, state="failed", log_path=str(layout.log_path(plan)),
                                        seed=plan.seed, parameters=dict(plan.values))
        record.state, record.error_kind = "failed", kind
        record.error = str(exc) if exc is not None else "task ended without a valid sample file"
        record.finished_at = time.time()
        layout.write_record(plan, record)
    summary.failed[plan.sample_id] = _reason(record)


def _count_running(layout: CampaignLayout, plans) -> int:
    """Tasks that have started (their record says running) but not ended;
    among the first 256 pending, which is where running tasks are."""
    count = 0
    for plan in list(plans)[:256]:
        record = layout.read_record(plan)
        count += record is not None and record.state == "running"
    return count


def _build_dataset(spec: CampaignSpec, layout: CampaignLayout, stream) -> None:
    from .dataset import build_dataset

    plans, done, _, _ = samples_to_run(spec, layout)
    if not done:
        return
    build_dataset([layout.sample_path(p) for p in done], layout.dataset_dir,
                  samples_per_shard=spec.dataset_samples_per_shard,
                  split_fractions=(spec.splits.train, spec.splits.validation, spec.splits.test),
                  seed=spec.splits.seed)
    stream.write(f"[{spec.name}] data set of {len(done)} samples in {layout.dataset_dir}\n")
