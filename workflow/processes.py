"""The processes a campaign driver starts, found and stopped again.

Parsl starts the local worker pool in a process group of its own (so a
Ctrl-C of the driver does not reach it) and the pool forks its workers; a
driver killed hard leaves them running.  Every process the driver starts
inherits ``ECGI_CAMPAIGN_DIR`` in its environment: the driver stops all of
them when it ends, and ``ecgi campaign stop DIR`` does so after a driver
was killed by the OS.
"""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path

MARKER = "ECGI_CAMPAIGN_DIR"


def marker_entry(root: Path) -> bytes:
    return f"{MARKER}={Path(root).absolute()}".encode()


def campaign_processes(root: Path) -> list[int]:
    """Processes (readable by this user) started for the campaign at ``root``, except this one."""
    want = marker_entry(root)
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:  # gone, or another user's
            continue
        if want in environ.split(b"\0"):
            found.append(int(entry.name))
    return found


def recorded_helpers(driver_file: Path) -> list[int]:
    """Helper processes a driver recorded in its driver.json (see
    workflow.runner.beat) that still run as Parsl processes."""
    import json

    try:
        pids = [int(pid) for pid in json.loads(Path(driver_file).read_text()).get("helpers", [])]
    except (OSError, ValueError, TypeError, AttributeError):
        return []
    found = []
    for pid in pids:
        try:
            title = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if title.startswith(b"parsl") and pid != os.getpid():  # not a recycled pid
            found.append(pid)
    return found


def stop_processes(pids: list[int], grace_s: float = 5.0) -> list[int]:
    """SIGTERM, then SIGKILL whatever still runs after ``grace_s``; returns the pids signalled."""
    signalled = [pid for pid in pids if _signal(pid, signal.SIGTERM)]
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and any(is_running(pid) for pid in signalled):
        time.sleep(0.1)
    for pid in signalled:
        if is_running(pid):
            _signal(pid, signal.SIGKILL)
    return signalled


def _signal(pid: int, sig: int) -> bool:
    try:
        os.kill(pid, sig)
        return True
    except OSError:
        return False


def is_running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[-1].split()[0] != "Z"  # a zombie has ended
    except OSError:
        return False
