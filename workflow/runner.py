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
import contextlib
import itertools
import os
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, TextIO

import yaml

from solver.common.errors import ConfigError, RunError
from solver.common.files import check_writable, write_text_atomic
from solver.common.typedconfig import load_file

from .executors import check_driver_address, classify_failure, parsl_config, task_command, workers
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


def freeze_spec(spec: CampaignSpec, layout: CampaignLayout, force: bool, resuming: bool = False) -> None:
    """Copy the spec into the campaign directory, or check it against the copy.

    A campaign directory that was moved or copied keeps working: only its
    ``output_dir`` differs from the frozen one, and the new place is adopted."""
    new = spec.to_dict()
    if layout.spec_path.exists():
        try:
            old = load_file(layout.spec_path, lambda data: data)
        except ConfigError as exc:
            if not force:
                raise ConfigError(f"{exc}; the campaign's frozen spec is damaged: run `ecgi campaign run SPEC "
                                  "--force` with the campaign's spec file to replace it") from None
            old = None
        changes = spec_differences(_with_defaults(old), new) if isinstance(old, dict) else ["spec.yaml unreadable"]
        moved = [c for c in changes if c.startswith("output_dir:")]
        changes = [c for c in changes if not c.startswith("output_dir:")]
        if changes and not force:
            fix = ("resume never changes a campaign's spec: run `ecgi campaign run SPEC --force` with the new spec"
                   if resuming else "rerun with --force to adopt it (samples whose parameters changed are recomputed)")
            raise ConfigError(
                f"the spec differs from the one frozen in {layout.spec_path}:\n  " + "\n  ".join(changes) + "\n" + fix
            )
        if not changes and not moved:
            return
    write_text_atomic(layout.spec_path, yaml.safe_dump(new, sort_keys=False))


def _with_defaults(frozen: dict) -> dict:
    """A frozen spec as this version of ecgi reads it: settings added since
    it was frozen take their defaults, so they are no change of the spec."""
    try:
        return {**spec_from_dict(frozen).to_dict(), "output_dir": frozen.get("output_dir")}
    except ConfigError:
        return frozen


def load_frozen_spec(campaign_dir: Path) -> CampaignSpec:
    """The spec frozen in a campaign directory, placed in that directory
    (wherever the campaign was first run: it may have been moved)."""
    layout = CampaignLayout(campaign_dir)
    if not layout.spec_path.is_file():
        if campaign_dir.exists() and not campaign_dir.is_dir():
            raise ConfigError(f"{campaign_dir} is a file, not a campaign directory")
        raise ConfigError(f"{campaign_dir} is not a campaign directory (no spec.yaml); start it with `ecgi campaign run SPEC`")

    def relocated(data):
        if isinstance(data, dict):
            data = {**data, "output_dir": str(Path(campaign_dir).absolute())}
        return spec_from_dict(data)

    try:
        return load_file(layout.spec_path, relocated)
    except ConfigError as exc:
        raise ConfigError(f"{exc}; the campaign's frozen spec is damaged: run `ecgi campaign run SPEC --force` "
                          "with the campaign's spec file to replace it") from None


def samples_to_run(spec: CampaignSpec, layout: CampaignLayout, retry_failed: bool = False, full_check: bool = False):
    """(plan, done plans, to-do plans, permanently failed plans); the three
    lists are views of the plan, small however many samples it has."""
    plans = plan_samples(spec)
    refuse_other_sample_format(layout)
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


def refuse_other_sample_format(layout: CampaignLayout) -> None:
    """A campaign holds samples of one format version: refuse to add new
    samples to a directory an older ecgi filled (any one sample tells)."""
    import h5py

    from solver.numerics.output import FORMAT_VERSION, format_mismatch

    for path in layout.samples_dir.glob("shard-*/*.h5"):
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
    _stop_orphans(layout)  # before beat() replaces the dead driver's record of them
    beat(layout)


def beat(layout: CampaignLayout, slurm_jobs: list[str] | None = None, helpers: list[int] | None = None) -> None:
    """Mark this process as the campaign's live driver (see layout.driver_alive),
    with what `ecgi campaign stop` must end if it dies: SLURM blocks and
    helper processes (Parsl's interchange renames itself, hiding its mark)."""
    write_json_atomic(layout.driver_path, {"pid": os.getpid(), "host": socket.gethostname(), "heartbeat": time.time(),
                                           "slurm_jobs": slurm_jobs or [], "helpers": helpers or []})


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


def _stop_orphans(layout: CampaignLayout) -> None:
    """Workers of an earlier driver that was killed hard would go on writing
    into the campaign beside this driver's: they are stopped first."""
    from .processes import campaign_processes, recorded_helpers, stop_processes

    orphans = stop_processes(campaign_processes(layout.root) + recorded_helpers(layout.driver_path))
    if orphans:
        print(f"stopped {len(orphans)} process(es) left by an earlier driver of {layout.root}", file=sys.stderr)


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
            record = layout.read_record(plan)
            record.state, record.error_kind, record.error = "failed", "io_error", f"sample file damaged: {refused.reason}"
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
    return f"{record.error_kind}: {record.error}" if record else "unknown"


def _execute(spec: CampaignSpec, layout: CampaignLayout, todo: list[SamplePlan], summary: RunSummary, stream) -> None:
    import parsl

    from .processes import MARKER, campaign_processes, stop_processes

    # Parsl starts its interchange and workers by name from PATH: make them
    # the ones installed beside this Python, even when the venv is not active.
    bin_dir = str(Path(sys.executable).parent)
    if bin_dir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")
    # Every process started from here on carries the campaign's mark (workflow.processes).
    os.environ[MARKER] = str(layout.root.absolute())
    try:
        dfk = parsl.load(parsl_config(spec, layout.parsl_dir))
    except Exception as exc:
        os.environ.pop(MARKER, None)
        stop_processes(campaign_processes(layout.root))
        if isinstance(exc, OSError) and exc.errno is not None:
            raise
        raise RunError(f"the Parsl executor did not start: {' '.join(str(exc).split())[:300]}") from exc
    beat(layout, _slurm_jobs(dfk), _helper_pids(dfk))
    progress = Progress(summary.planned, stream, spec.name)
    done_before = summary.already_done
    try:
        submit = _submitter(spec, layout)
        # Submit in a window: a million futures (and their task records in
        # Parsl) at once would exhaust the driver's memory.
        queue = iter(todo)
        window = max(256, 4 * workers(spec) * (spec.resources.slurm.max_blocks if spec.resources.executor == "slurm" else 1))
        pending: dict = {}

        def refill() -> None:
            for plan in itertools.islice(queue, max(0, window - len(pending))):
                pending[submit(plan)] = plan

        refill()
        last_beat = 0.0
        while pending:
            # Block until a task ends (no busy polling: the driver shares the
            # machine with the simulations when running locally).
            finished, _ = concurrent.futures.wait(list(pending), timeout=2.0, return_when=concurrent.futures.FIRST_COMPLETED)
            for future in finished:
                _settle(future, pending.pop(future), layout, summary)
            refill()
            now = time.time()
            if now - last_beat > 10:
                last_beat = now
                beat(layout, _slurm_jobs(dfk), _helper_pids(dfk))
                failure = _executor_failure(dfk)
                if failure is not None:
                    raise RunError(f"{failure}; `ecgi campaign resume {layout.root}` continues the campaign")
            if progress.due():
                progress.update(done_before + summary.done, _count_running(layout, pending.values()), len(summary.failed))
        progress.update(done_before + summary.done, 0, len(summary.failed), force=True)
    finally:
        progress.close()
        try:
            # On a dead interchange Parsl's clean-up only waits: cut it short.
            _shut_down(dfk, 10.0 if _executor_failure(dfk) else PARSL_SHUTDOWN_TIMEOUT_S)
            parsl.clear()
        finally:
            os.environ.pop(MARKER, None)
            # Whatever Parsl's clean-up left (idle pool workers, a pool whose
            # interchange is gone) goes too.
            stop_processes(campaign_processes(layout.root))


#: How long Parsl's clean-up may take; it waits forever on a dead interchange.
PARSL_SHUTDOWN_TIMEOUT_S = 60.0


def _shut_down(dfk, timeout_s: float) -> None:
    """``dfk.cleanup()`` in a thread, abandoned after ``timeout_s``: the
    processes it would have stopped are stopped by the caller anyway."""
    errors: list[BaseException] = []

    def cleanup() -> None:
        try:
            dfk.cleanup()
        except BaseException as exc:  # reported below, not as a thread traceback
            errors.append(exc)

    thread = threading.Thread(target=cleanup, name="parsl-cleanup", daemon=True)
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        print(f"Parsl's clean-up did not finish in {timeout_s:.0f} s; stopping its processes",
              file=sys.stderr)
    elif errors:
        print(f"Parsl's clean-up failed: {' '.join(str(errors[0]).split())[:300]}", file=sys.stderr)


def _executor_failure(dfk) -> str | None:
    """Why the executor can run nothing more, or None: its interchange
    process ended, or Parsl marked it broken (blocks that cannot start)."""
    for executor in dfk.executors.values():
        interchange = getattr(executor, "interchange_proc", None)
        if interchange is not None and interchange.poll() is not None:
            return (f"Parsl's interchange ended unexpectedly (exit status {interchange.returncode}; "
                    f"log in {executor.logdir}/interchange.log)")
        if getattr(executor, "bad_state_is_set", False):
            reason = " ".join(str(executor.executor_exception).split())[:300]
            return f"the Parsl executor failed: {reason} (logs in {executor.logdir})"
    return None


def _helper_pids(dfk) -> list[int]:
    """Processes Parsl started directly from the driver (its interchange)."""
    procs = (getattr(executor, "interchange_proc", None) for executor in dfk.executors.values())
    return [proc.pid for proc in procs if proc is not None and proc.poll() is None]


def _slurm_jobs(dfk) -> list[str]:
    """SLURM job ids of the blocks the driver submitted (for `ecgi campaign stop`)."""
    from parsl.providers import SlurmProvider

    jobs: list[str] = []
    for executor in dfk.executors.values():
        provider = getattr(executor, "provider", None)
        if isinstance(provider, SlurmProvider):
            jobs += [str(job) for job in provider.resources]
    return jobs


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
