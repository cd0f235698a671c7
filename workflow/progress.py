"""The campaign driver's status line."""
from __future__ import annotations

import time
from typing import TextIO


class Progress:
    """One status line: done / running / failed, rate, ETA; redrawn every
    second on a terminal, a new line every 15 s in a log file."""

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
