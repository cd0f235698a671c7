"""One record for every benchmark: what was measured, where, how, and against what.

A benchmark names its figures and what each is compared with, and the
harness writes them, with the command line, the machine (CPU model, cores,
memory, load average at the start and at the end), the versions of Python
and of the libraries that set the speed, the date and the git commit, to
``bench/results/<name>.json`` (or ``--json PATH``; ``-`` prints it).
``python -m bench.report`` turns those files into docs/performance.md.

A comparison has a kind, so that no figure stands alone:

* ``peer``: another code doing the same work (the original training code);
* ``baseline``: a simpler method on the same data (ridge, site mean): an
  accuracy is never given without one;
* ``roofline``: what the hardware would allow (memory bandwidth);
* ``previous``: an earlier version of ecgi;
* ``goal``: what the project set out to reach.

Its ratio in the report is figure / comparison: below 1 is better for an
error, above 1 for a rate.
"""
from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import shlex
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Sequence

#: Where results live by default, one file per benchmark.
RESULTS = Path(__file__).resolve().parent / "results"
REPO = Path(__file__).resolve().parent.parent
#: Sections of docs/performance.md, in order; "checks" (readings that are not figures of merit) are only listed.
SECTIONS = ("throughput", "accuracy", "cost", "checks")
KINDS = ("peer", "baseline", "roofline", "previous", "goal")
#: The libraries whose versions set the figures.
LIBRARIES = ("numpy", "torch", "petsc4py", "mpi4py", "numba")


@dataclass(frozen=True)
class Figure:
    """One measured number."""

    name: str
    value: float
    unit: str


@dataclass(frozen=True)
class Comparison:
    """A number the figure called ``figure`` is compared with."""

    figure: str
    name: str
    kind: str
    value: float
    unit: str

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"comparison kind {self.kind!r} is not one of {', '.join(KINDS)}")


def add_json_option(parser: argparse.ArgumentParser, name: str) -> None:
    """``--json PATH``: where the result goes (bench/results/<name>.json; ``-`` for stdout)."""
    parser.add_argument("--json", metavar="PATH", default=str(RESULTS / f"{name}.json"),
                        help=f"write the result here (default bench/results/{name}.json; '-' prints it)")


def machine() -> dict[str, Any]:
    """The CPU model, cores, memory and operating system of this machine."""
    return {"cpu": _cpu_model(), "cores": os.cpu_count(), "memory_gib": _memory_gib(),
            "os": platform.platform(terse=True)}


def versions() -> dict[str, str | None]:
    """Python's version and the installed libraries' (read from their metadata: nothing is imported,
    so a benchmark that starts MPI children does not initialise MPI here)."""
    found: dict[str, str | None] = {"python": platform.python_version()}
    for library in LIBRARIES:
        try:
            found[library] = metadata.version(library)
        except metadata.PackageNotFoundError:
            found[library] = None
    return found


def git_commit() -> str | None:
    """HEAD's hash, with ``+dirty`` when the working tree differs from it."""
    try:
        head = _git("rev-parse", "--short=12", "HEAD")
        dirty = _git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("+dirty" if dirty else "")


@dataclass
class Run:
    """A benchmark run: started when created, written by :meth:`write`."""

    name: str
    title: str
    section: str
    command: str = field(default_factory=lambda: _command_line())
    date: str = field(default_factory=lambda: datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))
    load_start: list[float] = field(default_factory=lambda: _load())

    def __post_init__(self) -> None:
        if self.section not in SECTIONS:
            raise ValueError(f"section {self.section!r} is not one of {', '.join(SECTIONS)}")

    def record(self, figures: Sequence[Figure], compared_with: Sequence[Comparison] = (),
               details: Any = None) -> dict[str, Any]:
        """The result as it is stored: this run's circumstances, then its numbers."""
        names = {f.name for f in figures}
        unknown = [c.figure for c in compared_with if c.figure not in names]
        if unknown:
            raise ValueError(f"comparisons name figures that were not measured: {unknown}")
        return {
            "name": self.name, "title": self.title, "section": self.section, "source": "measured",
            "command": self.command, "date": self.date, "commit": git_commit(),
            "machine": machine(), "load": {"start": self.load_start, "end": _load()}, "versions": versions(),
            "figures": [asdict(f) for f in figures], "compared_with": [asdict(c) for c in compared_with],
            "details": details,
        }

    def write(self, path: str | Path, figures: Sequence[Figure], compared_with: Sequence[Comparison] = (),
              details: Any = None) -> dict[str, Any]:
        """Write the result to ``path`` (``-``: stdout) and return it."""
        result = _finite(self.record(figures, compared_with, details))
        text = json.dumps(result, indent=1, ensure_ascii=False, allow_nan=False) + "\n"
        if str(path) == "-":
            sys.stdout.write(text)
        else:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            Path(path).write_text(text, encoding="utf-8")
            print(f"result written to {path}", file=sys.stderr)
        return result


def load_results(directory: Path = RESULTS) -> list[dict[str, Any]]:
    """Every result in ``directory``, by file name."""
    return [json.loads(p.read_text(encoding="utf-8")) for p in sorted(directory.glob("*.json"))]


def _finite(value: Any) -> Any:
    """``value`` with NaN and infinities as None: JSON has no such numbers, and a rate
    that could not be measured is no number."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _command_line() -> str:
    # Run as ``python -m bench.x``, argv[0] is the module's path: name the module instead.
    module = Path(sys.argv[0]).stem
    return shlex.join(["python", "-m", f"bench.{module}", *sys.argv[1:]])


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=REPO, check=True, capture_output=True, text=True).stdout.strip()
