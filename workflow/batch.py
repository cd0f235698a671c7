"""Batch jobs: what a job asks SLURM for, checked once for campaigns and training.

``ResourceSpec`` (what the job runs on) and ``JobAttributes`` (how the
scheduler treats it) follow psij-python's ``ResourceSpecV1`` and
``JobAttributes``.  A campaign's ``resources.slurm`` and ``ecgi train
--submit`` both build them, so both accept the same names and the same wall
time grammar, SLURM's own (``sbatch --time``).  Every value ends up in a
batch script or an sbatch argv: names follow SLURM's grammar, nothing holds a
line break.

The batch templates (``slurm/``) and example specs (``examples/``) are
package data of ``workflow``: ``shipped`` finds them in a checkout and in an
installed ecgi alike.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Mapping, Optional

from solver.common.errors import ConfigError

#: SLURM partition, account and QOS names (comma-separated lists for
#: partitions): what sbatch accepts, and nothing a shell would interpret.
SLURM_NAME = re.compile(r"[A-Za-z0-9_.\-]+(,[A-Za-z0-9_.\-]+)*")
#: Node features with SLURM's operators (``cpu&intel``, ``[rack1|rack2]``, ``gpu*2``).
CONSTRAINT = re.compile(r"[A-Za-z0-9_.\-:&|,\[\]*]+")
#: sbatch's --time forms: MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS.
WALLTIME_FORMS = "MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM or D-HH:MM:SS"
_WALLTIME = re.compile(r"(?:(?P<days>\d{1,3})-(?P<dh>\d{1,2})(?::(?P<dm>\d{1,2})(?::(?P<ds>\d{1,2}))?)?"
                       r"|(?P<h>\d{1,5}):(?P<hm>\d{1,2}):(?P<hs>\d{1,2})"
                       r"|(?P<m>\d{1,6})(?::(?P<ms>\d{1,2}))?)")
#: One year: longer limits are typos (SLURM's own "0"/UNLIMITED is refused too).
MAX_WALLTIME_MIN = 365 * 24 * 60
#: Ranges of the counts (the same bounds as the CLI's options).
NODES = (1, 10_000)
TASKS_PER_NODE = (1, 4096)
GPUS_PER_NODE = (0, 64)
CPUS_PER_TASK = (1, 4096)


def check_script_text(name: str, text: str) -> None:
    """No control characters (newline included) in a value written into a script line."""
    bad = sorted({repr(c) for c in text if ord(c) < 32 or ord(c) == 127})
    if bad:
        raise ConfigError(f"{name} must not contain control characters ({', '.join(bad)}), got {text!r}")


def walltime_minutes(text: str, name: str = "walltime") -> int:
    """Minutes of a SLURM time limit (seconds round up, as SLURM rounds them); one line if malformed."""
    match = _WALLTIME.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise ConfigError(f"{name} must be a SLURM time limit ({WALLTIME_FORMS}; e.g. 12:00:00 or 2-00:00:00), "
                          f"got {text!r}")
    g = {k: int(v) if v else 0 for k, v in match.groupdict().items()}
    if match["days"] is not None:
        parts = (g["days"] * 24 + g["dh"], g["dm"], g["ds"])
    elif match["h"] is not None:
        parts = (g["h"], g["hm"], g["hs"])
    else:
        parts = (0, g["m"], g["ms"])
    hours, minutes, seconds = parts
    if seconds > 59 or (minutes > 59 and match["m"] is None):
        raise ConfigError(f"{name}: minutes and seconds must be below 60 (minutes alone may be more), got {text!r}")
    total = hours * 60 + minutes + -(-seconds // 60)
    if total < 1:
        raise ConfigError(f"{name} must be at least one minute (SLURM reads 0 as no limit), got {text!r}")
    if total > MAX_WALLTIME_MIN:
        raise ConfigError(f"{name} is {text!r}, above the maximum of 365 days; give the job's real limit")
    return total


def _check_count(name: str, value: Optional[int], bounds: tuple[int, int]) -> None:
    if value is not None and not bounds[0] <= value <= bounds[1]:
        raise ConfigError(f"{name} must be in [{bounds[0]}, {bounds[1]}], got {value}")


@dataclass(frozen=True)
class ResourceSpec:
    """What a job runs on (psij's ResourceSpecV1): nodes, tasks on each, GPUs
    on each node, CPU cores per task (None: SLURM's default)."""

    nodes: int = 1
    tasks_per_node: int = 1
    gpus_per_node: int = 0
    cpus_per_task: Optional[int] = None

    def validate(self, names: Mapping[str, str] = {}) -> None:
        """``names``: how each field is called where the user wrote it (an option, a spec key)."""
        for key, bounds in (("nodes", NODES), ("tasks_per_node", TASKS_PER_NODE),
                            ("gpus_per_node", GPUS_PER_NODE), ("cpus_per_task", CPUS_PER_TASK)):
            _check_count(names.get(key, key), getattr(self, key), bounds)

    @property
    def tasks(self) -> int:
        return self.nodes * self.tasks_per_node


@dataclass(frozen=True)
class JobAttributes:
    """How the scheduler treats a job (psij's JobAttributes): its wall time
    limit (SLURM's grammar) and where it runs and is charged."""

    walltime: str = "01:00:00"
    partition: Optional[str] = None
    account: Optional[str] = None
    qos: Optional[str] = None
    constraint: Optional[str] = None

    def validate(self, names: Mapping[str, str] = {}) -> None:
        walltime_minutes(self.walltime, names.get("walltime", "walltime"))
        for key in ("partition", "account", "qos"):
            value = getattr(self, key)
            if value is not None and not SLURM_NAME.fullmatch(value):
                raise ConfigError(f"{names.get(key, key)} must be a SLURM name (letters, digits, '_', '.', '-'; "
                                  f"partitions may be a comma-separated list), got {value!r}")
        if self.constraint is not None and not CONSTRAINT.fullmatch(self.constraint):
            raise ConfigError(f"{names.get('constraint', 'constraint')} must be SLURM node features (letters, "
                              f"digits, '_', '.', '-', ':' joined by & | , [ ] *), got {self.constraint!r}")

    @property
    def minutes(self) -> int:
        return walltime_minutes(self.walltime)

    @property
    def slurm_time(self) -> str:
        """The limit as sbatch's ``[D-]HH:MM:SS``."""
        days, rest = divmod(self.minutes, 24 * 60)
        text = f"{rest // 60:02d}:{rest % 60:02d}:00"
        return f"{days}-{text}" if days else text

    @property
    def parsl_walltime(self) -> str:
        """The limit as Parsl's providers take it: ``H:MM:SS``, hours unbounded."""
        return f"{self.minutes // 60:02d}:{self.minutes % 60:02d}:00"


def sbatch_options(resources: ResourceSpec, attributes: JobAttributes) -> list[str]:
    """The sbatch options of a job, one argv element each (no shell reads them)."""
    options = [f"--nodes={resources.nodes}", f"--ntasks-per-node={resources.tasks_per_node}"]
    if resources.cpus_per_task is not None:
        options.append(f"--cpus-per-task={resources.cpus_per_task}")
    options.append(f"--time={attributes.slurm_time}")
    if resources.gpus_per_node:
        options.append(f"--gpus-per-node={resources.gpus_per_node}")
    for key in ("partition", "account", "qos", "constraint"):
        value = getattr(attributes, key)
        if value is not None:
            options.append(f"--{key}={value}")
    return options


def shipped(*parts: str) -> Path:
    """A file shipped with ecgi (``shipped("slurm", "train.sbatch")``,
    ``shipped("examples", "campaigns", "demo.yaml")``): package data of
    ``workflow``, the top-level slurm/ and examples/ of a checkout."""
    path = resources.files("workflow").joinpath(*parts)
    if not path.is_file():
        raise ConfigError(f"{'/'.join(parts)} is missing from this installation of ecgi ({path}); reinstall ecgi")
    return Path(str(path))
