"""Where a campaign keeps things, and the per-sample records.

    DIR/spec.yaml                          the frozen spec
    DIR/samples/shard-00012/<id>.h5        one file per simulation
    DIR/records/shard-00012/<id>.json      what happened to it
    DIR/logs/shard-00012/<id>.log          its output
    DIR/dataset/                           the training set built from it
    DIR/driver.json                        the live driver (pid, host)

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

from .sampling import SamplePlan

#: Failure kinds that rerunning cannot fix; every other kind (node_lost,
#: timeout, io_error, killed, unknown) is retried.
FINAL_KINDS = ("solver_error", "config_error")


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
    error_kind: str = ""  #: solver_error, config_error, timeout, node_lost, io_error, killed, unknown
    error: str = ""
    log_path: str = ""
    code_version: str = ""
    seed: int = 0
    parameters: dict[str, Any] = field(default_factory=dict)
    file_size: int = 0
    checksum: str = ""

    @property
    def retryable(self) -> bool:
        return self.state == "failed" and self.error_kind not in FINAL_KINDS


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


def driver_alive(layout: CampaignLayout) -> Optional[dict]:
    """The live driver's description, or None if none is running."""
    try:
        info = json.loads(layout.driver_path.read_text())
    except (OSError, ValueError):
        return None
    if info.get("host") != socket.gethostname():
        return info if time.time() - info.get("heartbeat", 0) < 120 else None
    try:
        os.kill(int(info["pid"]), 0)
    except (OSError, ValueError, KeyError):
        return None
    return info
