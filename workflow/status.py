"""What a campaign has done so far, per sample folder and per sample."""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from .layout import CampaignLayout, driver_alive
from .spec import load_frozen_spec
from .sampling import plan_samples

STATES = ("done", "failed", "pending", "running")


def campaign_status(directory: Path) -> dict:
    """Totals, per-folder counts and per-sample states (JSON-ready)."""
    spec = load_frozen_spec(directory)
    layout = CampaignLayout(directory)
    live = driver_alive(layout) is not None
    samples, folders = [], defaultdict(lambda: {**{s: 0 for s in STATES}, "last_error": ""})
    for plan in plan_samples(spec):
        record = layout.read_record(plan)
        if layout.is_done(plan, record):
            state = "done"
        elif record is not None and record.state == "failed":
            state = "failed"
        elif record is not None and record.state == "running" and live:
            state = "running"
        else:
            state = "pending"
        entry = {"id": plan.sample_id, "state": state, "path": str(layout.sample_path(plan)), "folder": plan.folder}
        if state == "failed":
            entry.update(error_kind=record.error_kind, error=record.error, log=record.log_path,
                         retryable=record.retryable)
            folders[plan.folder]["last_error"] = f"{record.error_kind}: {record.error}"[:120]
        samples.append(entry)
        folders[plan.folder][state] += 1
    totals = {s: sum(1 for x in samples if x["state"] == s) for s in STATES}
    return {
        "campaign": spec.name, "directory": str(directory), "driver_running": live, **totals,
        "total": len(samples),
        "folders": [{"folder": k, **v} for k, v in sorted(folders.items())],
        "samples": samples,
    }


def print_status(status: dict, failures: bool = False) -> None:
    print(f"campaign {status['campaign']} ({status['directory']}), driver "
          f"{'running' if status['driver_running'] else 'not running'}")
    print(f"{'folder':>7} {'done':>6} {'failed':>6} {'pending':>7} {'running':>7}  last error")
    for folder in status["folders"]:
        print(f"{folder['folder']:>7} {folder['done']:>6} {folder['failed']:>6} {folder['pending']:>7} "
              f"{folder['running']:>7}  {folder['last_error']}")
    print(f"{'total':>7} {status['done']:>6} {status['failed']:>6} {status['pending']:>7} {status['running']:>7}")
    if failures:
        for s in status["samples"]:
            if s["state"] == "failed":
                print(f"{s['id']}: {s['error_kind']}: {s['error']}\n    log: {s['log']}")
