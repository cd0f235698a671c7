"""The processes a campaign driver starts, found, recognised and stopped again.

Parsl starts the local worker pool in a process group of its own (so a
Ctrl-C of the driver does not reach it) and the pool forks its workers; a
driver killed hard leaves them running.  Every process the driver starts
inherits ``ECGI_CAMPAIGN_DIR`` in its environment: the driver stops all of
them when it ends, and ``ecgi campaign stop DIR`` does so after a driver
was killed by the OS.

A pid alone names no process: after a reboot, or once the process has
ended, the same number belongs to someone else.  So a process that ecgi
may signal later (the driver, Parsl's interchange) is recorded with its
:class:`ProcessIdentity` (boot, start time, command line), and every signal
goes through :func:`send_signal`, which checks that identity first and never
signals pid 0, pid 1, a negative pid (a process group, or everything) or
itself.
"""
from __future__ import annotations

import os
import signal
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable, Optional

MARKER = "ECGI_CAMPAIGN_DIR"
_BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


def boot_id() -> str:
    """This boot of this machine (a pid is only unique within one)."""
    try:
        return _BOOT_ID.read_text().strip()
    except OSError:
        return ""


@dataclass(frozen=True)
class ProcessIdentity:
    """What makes a running process this one and no other."""

    pid: int
    boot_id: str
    start_ticks: int  #: start time after boot, in clock ticks (/proc/PID/stat, field 22)
    command: str  #: the command line, arguments joined by spaces

    @classmethod
    def of(cls, pid: int) -> Optional["ProcessIdentity"]:
        """The identity of the live process ``pid``, or None if there is none."""
        if not valid_pid(pid):
            return None
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            command = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return None
        fields = stat.rsplit(")", 1)[-1].split()  # the name in parentheses may hold spaces
        if fields[0] == "Z":  # a zombie has ended
            return None
        return cls(pid, boot_id(), int(fields[19]), command.replace(b"\0", b" ").decode(errors="replace").strip())

    @classmethod
    def from_record(cls, data: Any) -> Optional["ProcessIdentity"]:
        """An identity as :meth:`record` wrote it, or None if ``data`` is not one."""
        try:
            identity = cls(int(data["pid"]), str(data["boot_id"]), int(data["start_ticks"]), str(data["command"]))
        except (TypeError, KeyError, ValueError):
            return None
        return identity if valid_pid(identity.pid) and identity.boot_id else None

    def record(self) -> dict[str, Any]:
        return asdict(self)

    def is_running(self) -> bool:
        """Whether this very process still runs (not merely its pid)."""
        return ProcessIdentity.of(self.pid) == self


def valid_pid(pid: Any) -> bool:
    """A pid that names one process other than init: pid 0, -1 and other
    negative numbers make ``kill`` signal process groups or everything."""
    return isinstance(pid, int) and not isinstance(pid, bool) and pid > 1


def this_process() -> ProcessIdentity:
    identity = ProcessIdentity.of(os.getpid())
    assert identity is not None
    return identity


def send_signal(identity: ProcessIdentity, sig: int) -> bool:
    """Signal the process if it is still the one ``identity`` describes;
    returns whether it was signalled."""
    if not valid_pid(identity.pid) or identity.pid == os.getpid() or not identity.is_running():
        return False
    try:
        os.kill(identity.pid, sig)
        return True
    except OSError:
        return False


def marker_entry(root: Path) -> bytes:
    return f"{MARKER}={Path(root).absolute()}".encode()


def _ancestors() -> set[int]:
    """This process and those it runs under: never stopped by it, whatever
    their environment says."""
    pids, pid = set(), os.getpid()
    while valid_pid(pid) and pid not in pids:
        pids.add(pid)
        try:
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[1])
        except (OSError, ValueError, IndexError):
            break
    return pids


def campaign_processes(root: Path) -> list[ProcessIdentity]:
    """Processes (readable by this user) started for the campaign at
    ``root``, except this one and its ancestors."""
    want = marker_entry(root)
    mine = _ancestors()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in mine:
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:  # gone, or another user's
            continue
        if want in environ.split(b"\0"):
            identity = ProcessIdentity.of(int(entry.name))
            if identity is not None:
                found.append(identity)
    return found


def recorded_helpers(records: Iterable[Any]) -> list[ProcessIdentity]:
    """The helper processes a driver recorded (see workflow.layout.beat)
    that still run as the very processes it recorded."""
    identities = (ProcessIdentity.from_record(record) for record in records)
    return [identity for identity in identities if identity is not None and identity.is_running()]


def stop_processes(identities: Iterable[ProcessIdentity], grace_s: float = 5.0) -> list[int]:
    """SIGTERM, then SIGKILL whatever still runs after ``grace_s``; returns the pids signalled."""
    signalled = [identity for identity in identities if send_signal(identity, signal.SIGTERM)]
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and any(identity.is_running() for identity in signalled):
        time.sleep(0.1)
    for identity in signalled:
        send_signal(identity, signal.SIGKILL)
    return [identity.pid for identity in signalled]


def is_running(pid: int) -> bool:
    return ProcessIdentity.of(pid) is not None
