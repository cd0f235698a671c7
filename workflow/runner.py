"""The campaign driver: run what is missing, track it, never lose work.

The driver process never initialises MPI (it only plans, submits and reads
files): MPI runtimes leave environment variables behind that would confuse
the ``mpiexec`` of the tasks it starts.

Resuming needs no checkpoint of the driver itself: the plan is a function of
the frozen spec and a sample is done exactly when its file and record say
so, so any driver, started any number of times, after any crash, runs only
what is missing, failed (retryable) or corrupt.

Its helpers each have a home: the frozen spec in ``spec`` (freeze_spec),
the lock on the campaign in ``layout`` (claim_driver, beat), Parsl's life
cycle in ``executors`` (parsl_running), the failures in ``failures`` and
the status line in ``progress``.
"""
from __future__ import annotations

import concurrent.futures
import contextlib
import itertools
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Optional, TextIO

import yaml

from solver.common.errors import RunError
from solver.common.files import check_writable

from .executors import check_driver_address, executor_failure, helper_processes, parsl_running, slurm_jobs, submitter, workers
from .failures import Failure, classify
from .layout import CampaignLayout, SampleRecord, beat, claim_driver
from .progress import Progress
from .sampling import SamplePlan, plan_samples
from .spec import CampaignSpec, freeze_spec


@dataclass
class RunSummary:
    planned: int
    already_done: int
    submitted: int
    done: int = 0
    failed: dict[str, str] = field(default_factory=dict)  #: sample id -> reason
    wall_time_s: float = 0.0


def samples_to_run(spec: CampaignSpec, layout: CampaignLayout, retry_failed: bool = False, full_check: bool = False):
    """(plan, done plans, to-do plans, permanently failed plans); the three
    lists are views of the plan, small however many samples it has."""
    plans = plan_samples(spec)
    layout.refuse_other_sample_format()
    done, todo, final = [], [], []
    for plan in plans:
        record = layout.read_record(plan)
        if layout.is_done(plan, record, full_check) and _same_parameters(record, plan):
            done.append(plan.index)
        elif record is not None and record.state == "failed" and not record.retryable and not retry_failed:
            final.append(plan.index)
        else:
            todo.append(plan.index)
    # The samples of one anatomy go out together, so that a worker builds
    # each heart once and reuses it (solver.patient.simulation.heart_of).
    todo.sort(key=lambda i: (i % spec.geometry.n_geometries, i))
    return plans, plans.subset(done), plans.subset(todo), plans.subset(final)


def _same_parameters(record: Optional[SampleRecord], plan: SamplePlan) -> bool:
    return record is not None and yaml.safe_dump(record.parameters) == yaml.safe_dump(dict(plan.values))


#: Free space a campaign directory needs before a driver starts (records,
#: logs and at least the first sample files).
CAMPAIGN_FREE_BYTES = 16 << 20


def run_campaign(
    spec: CampaignSpec, *, force: bool = False, retry_failed: bool = False, full_check: bool = False,
    stream: TextIO = sys.stderr, build_dataset: bool = True, resuming: bool = False,
) -> RunSummary:
    """Run every sample that is not done yet; returns what happened.

    Before the data set is built every sample file is verified (the build
    reads them all anyway): a file corrupted since it was written is
    recomputed once, and the totals count only intact samples."""
    check_driver_address(spec)
    check_writable(spec.output_dir, CAMPAIGN_FREE_BYTES, directory=True)
    layout = CampaignLayout(spec.output_dir)
    freeze_spec(spec, layout, force, resuming)
    claim_driver(layout)
    try:
        with _signals_as_interrupts():
            plans, done, todo, final = samples_to_run(spec, layout, retry_failed, full_check)
            summary = RunSummary(planned=len(plans), already_done=len(done), submitted=len(todo))
            summary.failed = {p.sample_id: _reason(layout.read_record(p)) for p in final}
            start = time.time()
            if todo:
                _execute(spec, layout, todo, summary, stream)
            summary.wall_time_s = time.time() - start
            if build_dataset:
                _verify_and_build(spec, layout, {p.sample_id for p in done}, summary, stream)
            return summary
    finally:
        layout.driver_path.unlink(missing_ok=True)


@contextlib.contextmanager
def _signals_as_interrupts():
    """SIGTERM and SIGHUP (scancel, a closed terminal) end the driver like
    Ctrl-C: through its clean-up, which stops every worker it started."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _verify_and_build(spec: CampaignSpec, layout: CampaignLayout, done_before: set[str], summary: RunSummary,
                      stream) -> None:
    from .dataset import scan_sample_files, write_dataset

    plans, done, _, _ = samples_to_run(spec, layout)
    samples, skipped = scan_sample_files([layout.sample_path(p) for p in done])
    if skipped:
        corrupt = [plans.by_id(s.path.stem) for s in skipped]
        for plan, refused in zip(corrupt, skipped):
            stream.write(f"[{spec.name}] {plan.sample_id}: {refused.reason}; recomputing it\n")
            record = layout.read_record(plan) or SampleRecord(plan.sample_id, state="done")
            record.fail(Failure.IO_ERROR, f"sample file damaged: {refused.reason}")
            layout.write_record(plan, record)
            if plan.sample_id in done_before:
                summary.already_done -= 1
            else:
                summary.done -= 1
        summary.submitted += len(corrupt)
        _execute(spec, layout, corrupt, summary, stream)
        again, _ = scan_sample_files([layout.sample_path(p) for p in corrupt if p.sample_id not in summary.failed])
        samples += again
    if not samples:
        return
    manifest = write_dataset(samples, layout.dataset_dir, samples_per_shard=spec.dataset_samples_per_shard,
                             split_fractions=(spec.splits.train, spec.splits.validation, spec.splits.test),
                             seed=spec.splits.seed)
    total = sum(manifest.split_size(split) for split in manifest.splits)
    stream.write(f"[{spec.name}] data set of {total} samples in {layout.dataset_dir}\n")


def _reason(record: Optional[SampleRecord]) -> str:
    return f"{record.error_kind}: {record.error}" if record else Failure.UNKNOWN.kind


def _execute(spec: CampaignSpec, layout: CampaignLayout, todo: list[SamplePlan], summary: RunSummary, stream) -> None:
    """Run ``todo`` through Parsl, recording each task as it ends."""
    with parsl_running(spec, layout) as dfk:
        beat(layout, slurm_jobs(dfk), helper_processes(dfk))
        progress = Progress(summary.planned, stream, spec.name)
        done_before = summary.already_done
        try:
            submit = submitter(spec, layout)
            # Submit in a window: a million futures (and their task records in
            # Parsl) at once would exhaust the driver's memory.
            queue = iter(todo)
            blocks = spec.resources.slurm.max_blocks if spec.resources.executor == "slurm" else 1
            window = max(256, 4 * workers(spec) * blocks)
            pending: dict = {}

            def refill() -> None:
                for plan in itertools.islice(queue, max(0, window - len(pending))):
                    pending[submit(plan)] = plan

            refill()
            last_beat = 0.0
            while pending:
                # Block until a task ends (no busy polling: the driver shares the
                # machine with the simulations when running locally).
                finished, _ = concurrent.futures.wait(list(pending), timeout=2.0,
                                                      return_when=concurrent.futures.FIRST_COMPLETED)
                for future in finished:
                    _settle(future, pending.pop(future), layout, summary)
                refill()
                now = time.time()
                if now - last_beat > 10:
                    last_beat = now
                    beat(layout, slurm_jobs(dfk), helper_processes(dfk))
                    failure = executor_failure(dfk)
                    if failure is not None:
                        raise RunError(f"{failure}; `ecgi campaign resume {layout.root}` continues the campaign")
                if progress.due():
                    progress.update(done_before + summary.done, _count_running(layout, pending.values()),
                                    len(summary.failed))
            progress.update(done_before + summary.done, 0, len(summary.failed), force=True)
        finally:
            progress.close()


def _settle(future, plan: SamplePlan, layout: CampaignLayout, summary: RunSummary) -> None:
    """Record a finished task: done, or failed with its classified reason."""
    exc = future.exception()
    record = layout.read_record(plan)
    if exc is None and layout.is_done(plan, record):
        summary.done += 1
        return
    if record is None or record.state != "failed":
        record = record or SampleRecord(sample_id=plan.sample_id, state="failed", log_path=str(layout.log_path(plan)),
                                        seed=plan.seed, parameters=dict(plan.values))
        if exc is not None:
            record.fail(classify(exc), str(exc))
        else:
            record.fail(Failure.IO_ERROR, "task ended without a valid sample file")
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
