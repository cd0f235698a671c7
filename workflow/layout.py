"""Where a campaign keeps things, and the per-sample records.

    DIR/spec.yaml                          the frozen spec
    DIR/samples/shard-00012/<id>.h5        one file per simulation
    DIR/records/shard-00012/<id>.json      what happened to it
    DIR/logs/shard-00012/<id>.log          its output
    DIR/dataset/                           the training set built from it
    DIR/driver.json                        the live driver (host, process identity, heartbeat)

Shard directories keep any directory to samples_per_shard entries.  A
sample is *done* only if its file opens, carries the completion mark and the
checksum its record noted; records are written atomically, so a killed
process leaves either the old record or the new one.
"""
from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

import h5py

from solver.common.files import write_text_atomic

from .failures import Failure
from .processes import ProcessIdentity
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

    def _shard_dir(self, kind: str, plan: SamplePlan) -> Path:
        return self.root / kind / f"shard-{plan.shard:05d}"

    def sample_path(self, plan: SamplePlan) -> Path:
        return self._shard_dir("samples", plan) / f"{plan.sample_id}.h5"

    def record_path(self, plan: SamplePlan) -> Path:
        return self._shard_dir("records", plan) / f"{plan.sample_id}.json"

    def log_path(self, plan: SamplePlan) -> Path:
        return self._shard_dir("logs", plan) / f"{plan.sample_id}.log"

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


def write_json_atomic(path: Path, data: Any) -> None:
    write_text_atomic(path, json.dumps(data, indent=1, sort_keys=True, default=str))


#: A driver on another host counts as alive while its heartbeat is younger
#: than this (it beats every 10 s); its pid means nothing here.
HEARTBEAT_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class DriverRecord:
    """DIR/driver.json: the campaign's driver, and what it started that
    ``ecgi campaign stop`` must end with it (see workflow.runner.beat)."""

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
