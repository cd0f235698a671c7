"""Where a campaign keeps things, and the per-sample records.

    DIR/spec.yaml                          the frozen spec
    DIR/samples/folder-00012/<id>.h5       one file per simulation
    DIR/records/folder-00012/<id>.json     what happened to it
    DIR/logs/folder-00012/<id>.log         its output
    DIR/dataset/                           the training set built from it
    DIR/driver.json                        the live driver (host, process identity, heartbeat):
                                           its lock on the campaign (claim_driver, beat)

Sample folders keep any directory to samples_per_folder entries (a
campaign an older ecgi started keeps its ``shard-NNNNN`` folders).  A
sample is *done* only if its file opens, carries the completion mark and the
checksum its record noted; records are written atomically, so a killed
process leaves either the old record or the new one.
"""
from __future__ import annotations

import functools
import json
import socket
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

import h5py

from solver.common.errors import ConfigError
from solver.common.files import write_text_atomic

from .failures import Failure
from .processes import ProcessIdentity, campaign_processes, recorded_helpers, stop_processes, this_process
from .sampling import SamplePlan


@dataclass
class SampleRecord:
    sample_id: str
    state: str  #: running, done, failed
    attempts: int = 0
    host: str = ""
    ranks: int = 1
    started_at: float = 0.0
    finished_at: float = 0.0
    wall_time_s: float = 0.0
    cpu_time_s: float = 0.0  #: CPU seconds of the task's process (rank 0, all threads) while the task ran
    exit_status: Optional[int] = None
    error_kind: str = ""  #: a workflow.failures.Failure's kind
    error: str = ""
    log_path: str = ""
    code_version: str = ""
    seed: int = 0
    parameters: dict[str, Any] = field(default_factory=dict)
    file_size: int = 0
    checksum: str = ""

    @property
    def retryable(self) -> bool:
        return self.state == "failed" and Failure.named(self.error_kind).retryable

    def fail(self, failure: Failure, error: str) -> None:
        """Mark the sample failed, with what went wrong."""
        self.state, self.error_kind, self.error = "failed", failure.kind, error


#: A sample folder's name before its number.
FOLDER_PREFIX = "folder-"
#: The same, in campaigns started before folders were named apart from data set shards.
LEGACY_FOLDER_PREFIX = "shard-"


class CampaignLayout:
    def __init__(self, root: str | Path):
        self.root = Path(root)

    @property
    def spec_path(self) -> Path:
        return self.root / "spec.yaml"

    @property
    def driver_path(self) -> Path:
        return self.root / "driver.json"

    @property
    def dataset_dir(self) -> Path:
        return self.root / "dataset"

    @property
    def parsl_dir(self) -> Path:
        return self.root / "parsl"

    @property
    def samples_dir(self) -> Path:
        return self.root / "samples"

    @functools.cached_property
    def folder_prefix(self) -> str:
        """``folder-``, or ``shard-`` in a campaign an older ecgi started."""
        for kind in ("samples", "records", "logs"):
            if next((self.root / kind).glob(f"{LEGACY_FOLDER_PREFIX}*"), None) is not None:
                return LEGACY_FOLDER_PREFIX
        return FOLDER_PREFIX

    def _folder(self, kind: str, plan: SamplePlan) -> Path:
        return self.root / kind / f"{self.folder_prefix}{plan.folder:05d}"

    def sample_path(self, plan: SamplePlan) -> Path:
        return self._folder("samples", plan) / f"{plan.sample_id}.h5"

    def record_path(self, plan: SamplePlan) -> Path:
        return self._folder("records", plan) / f"{plan.sample_id}.json"

    def log_path(self, plan: SamplePlan) -> Path:
        return self._folder("logs", plan) / f"{plan.sample_id}.log"

    def read_record(self, plan: SamplePlan) -> Optional[SampleRecord]:
        try:
            return SampleRecord(**json.loads(self.record_path(plan).read_text()))
        except (OSError, ValueError, TypeError):
            return None

    def write_record(self, plan: SamplePlan, record: SampleRecord) -> None:
        write_json_atomic(self.record_path(plan), asdict(record))

    def is_done(self, plan: SamplePlan, record: Optional[SampleRecord] = None, full_check: bool = False) -> bool:
        """Done: a record says so and the file matches it (size, checksum
        attribute, completion mark); ``full_check`` also recomputes the checksum."""
        record = record or self.read_record(plan)
        path = self.sample_path(plan)
        if record is None or record.state != "done" or not path.is_file():
            return False
        if path.stat().st_size != record.file_size:
            return False
        try:
            with h5py.File(path, "r") as f:
                if not f.attrs.get("complete", False) or f.attrs.get("checksum_sha256") != record.checksum:
                    return False
        except OSError:
            return False
        if full_check:
            from solver.numerics.output import IncompleteFileError, verify_simulation_file

            try:
                verify_simulation_file(path)
            except IncompleteFileError:
                return False
        return True

    def refuse_other_sample_format(self) -> None:
        """A campaign holds samples of one format version: refuse to add new
        samples to a directory an older ecgi filled (any one sample tells)."""
        from solver.numerics.output import FORMAT_VERSION, format_mismatch

        for path in self.samples_dir.glob(f"{self.folder_prefix}*/*.h5"):
            try:
                with h5py.File(path, "r") as f:
                    version = f.attrs.get("format_version")
            except OSError:
                continue  # an unreadable file is recomputed anyway
            if version != FORMAT_VERSION:
                raise ConfigError(format_mismatch(path, version))
            return


def write_json_atomic(path: Path, data: Any) -> None:
    write_text_atomic(path, json.dumps(data, indent=1, sort_keys=True, default=str))


#: A driver on another host counts as alive while its heartbeat is younger
#: than this (it beats every 10 s); its pid means nothing here.
HEARTBEAT_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class DriverRecord:
    """DIR/driver.json: the campaign's driver, and what it started that
    ``ecgi campaign stop`` must end with it (see beat)."""

    host: str
    heartbeat: float
    #: The driver process; None when the file names none that can be
    #: recognised (damaged, forged, or written by an older ecgi).
    process: Optional[ProcessIdentity]
    slurm_jobs: tuple[str, ...] = ()
    helpers: tuple[Any, ...] = ()  #: recorded identities of Parsl's helper processes

    @classmethod
    def read(cls, path: Path) -> Optional["DriverRecord"]:
        """The record at ``path``, or None if there is none or it is not JSON."""
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict):
            return None
        heartbeat = data.get("heartbeat")
        jobs, helpers = data.get("slurm_jobs"), data.get("helpers")
        return cls(
            host=str(data.get("host", "")),
            heartbeat=float(heartbeat) if isinstance(heartbeat, (int, float)) else 0.0,
            process=ProcessIdentity.from_record(data.get("process")),
            slurm_jobs=tuple(str(job) for job in jobs if str(job).isdigit()) if isinstance(jobs, list) else (),
            helpers=tuple(helpers) if isinstance(helpers, list) else (),
        )

    @property
    def here(self) -> bool:
        return self.host == socket.gethostname()

    @property
    def heartbeat_age_s(self) -> float:
        return time.time() - self.heartbeat

    @property
    def is_alive(self) -> bool:
        """On this host: the recorded process still runs as itself (not a
        new process that reuses its pid). Elsewhere: its heartbeat is recent."""
        if not self.here:
            return self.heartbeat_age_s < HEARTBEAT_TIMEOUT_S
        return self.process is not None and self.process.is_running()

    def describe(self) -> str:
        pid = self.process.pid if self.process else "?"
        return f"pid {pid} on {self.host or 'an unknown host'}"


def driver_alive(layout: CampaignLayout) -> Optional[DriverRecord]:
    """The live driver's record, or None if none is running."""
    record = DriverRecord.read(layout.driver_path)
    return record if record is not None and record.is_alive else None


def claim_driver(layout: CampaignLayout) -> None:
    """Become the campaign's driver, unless a live one holds it; a stale
    driver.json (its process gone, or its pid now another process's) is
    taken over, and what that driver left running is stopped."""
    other = driver_alive(layout)
    if other is not None and other.process != this_process():
        age = f"{other.heartbeat_age_s:.0f} s ago" if other.heartbeat else "never"
        raise ConfigError(
            f"another driver ({other.describe()}, last heartbeat {age}) is running this campaign; "
            f"wait for it or stop it with `ecgi campaign stop {layout.root}`"
        )
    _stop_orphans(layout)  # before beat() replaces the dead driver's record of them
    beat(layout)


def beat(layout: CampaignLayout, slurm_jobs: list[str] | None = None, helpers: list[ProcessIdentity] | None = None) -> None:
    """Mark this process as the campaign's live driver (see DriverRecord),
    with what `ecgi campaign stop` must end if it dies: SLURM blocks and
    helper processes (Parsl's interchange renames itself, hiding its mark).
    Processes are recorded by identity, never by pid alone."""
    write_json_atomic(layout.driver_path, {
        "host": socket.gethostname(), "heartbeat": time.time(), "process": this_process().record(),
        "slurm_jobs": slurm_jobs or [], "helpers": [helper.record() for helper in helpers or []],
    })


def _stop_orphans(layout: CampaignLayout) -> None:
    """Workers of an earlier driver that was killed hard would go on writing
    into the campaign beside this driver's: they are stopped first."""
    earlier = DriverRecord.read(layout.driver_path)
    helpers = recorded_helpers(earlier.helpers) if earlier is not None else []
    orphans = stop_processes(campaign_processes(layout.root) + helpers)
    if orphans:
        print(f"stopped {len(orphans)} process(es) left by an earlier driver of {layout.root}", file=sys.stderr)
