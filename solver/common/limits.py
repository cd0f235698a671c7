"""Ranges of the numbers a user gives ecgi, and the one check of each.

A number from the command line goes through ``number(kind, low, high)``
(an argparse type); a number in a configuration through ``check_range``.
Both refuse a value outside the range in one line that states it, before
any work: a step of 1e-300 ms or a voxel of 500 mm is a typo, not a request.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Callable, Union

from .errors import ConfigError

Number = Union[int, float]

#: Time step (ms).  Below 1e-4 ms a 500 ms beat takes five million steps
#: (days on one core); above 2 ms a step is longer than the upstroke of every
#: ionic model (about 1-2 ms), which it then cannot follow.
DT_MS = (1e-4, 2.0)
#: Voxel size (mm).  0.01 mm is finer than the 0.025 mm grid the Niederer
#: benchmark calls converged (a myocyte is about 0.1 mm long); above 5 mm
#: the ventricular wall (about 10 mm) is two voxels thick, a wave cannot
#: cross it and calibration would search for a conductivity without end.
DX_MM = (0.01, 5.0)
#: Torso voxel size (mm): the lead fields need the heart-to-skin distance
#: (about 30 mm) in a few voxels; below 1 mm the torso box has 10^8 voxels.
TORSO_DX_MM = (1.0, 20.0)
#: Conduction velocity (m/s): slow scar border zones conduct at about
#: 0.05, the Purkinje network at up to 4.
VELOCITY_M_PER_S = (0.01, 5.0)
#: Adam's learning rate: 1e-5-1e-2 in practice; above 1 the first step
#: throws the weights out of any range they can be trained back from.
LEARNING_RATE = (1e-12, 1.0)


def check_range(name: str, value: Number, bounds: tuple[Number, Number], unit: str = "") -> None:
    """Refuse ``value`` outside ``bounds`` (inclusive); NaN is outside every range."""
    low, high = bounds
    if not low <= value <= high:
        unit = f" {unit}" if unit else ""
        raise ConfigError(f"{name} must be within [{_show(low)}, {_show(high)}]{unit}, got {_show(value)}")


def number(kind: type, low: Number, high: Number, unit: str = "") -> Callable[[str], Number]:
    """An argparse ``type``: ``kind`` (int or float) within [low, high].

    A refused value ends the command with argparse's one error line
    (``ecgi CMD: error: argument --X: ...``) and exit status 2."""
    unit = f" {unit}" if unit else ""

    def parse(text: str) -> Number:
        try:
            value = kind(text)
        except ValueError:
            what = "an integer" if kind is int else "a number"
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if not low <= value <= high:  # NaN fails both comparisons
            raise argparse.ArgumentTypeError(f"{text} is outside [{_show(low)}, {_show(high)}]{unit}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in some messages
    return parse


def _show(value: Number) -> str:
    """An integer in full (1000000), a float in short (1e-300)."""
    return str(value) if isinstance(value, int) else f"{value:g}"


def available_memory_bytes() -> int:
    """MemAvailable of /proc/meminfo (Linux), else the physical memory size."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def check_memory(what: str, needed_bytes: float, fix: str) -> None:
    """Refuse, before allocating, work whose estimate exceeds the available memory."""
    available = available_memory_bytes()
    if needed_bytes > available:
        raise ConfigError(f"{what} needs about {_size(needed_bytes)} of memory and {_size(available)} is "
                          f"available; {fix}")


def _size(nbytes: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if nbytes < 1024 or unit == "TiB":
            return f"{nbytes:.3g} {unit}"
        nbytes /= 1024
    return f"{nbytes:.3g} PiB"
