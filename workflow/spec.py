"""The campaign specification: a YAML file validated into typed dataclasses.

Everything is checked before anything runs: parameter names against the
registry of what can be varied (``workflow.parameters``), distributions,
counts, resources.  The spec is frozen into the campaign directory at the
first run; ``resume`` compares against that frozen copy.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional

from solver.errors import ConfigError
from solver.typedconfig import from_mapping, load_file, to_mapping


@dataclass
class Distribution:
    """How one parameter varies: ``uniform`` (low, high), ``normal`` (mean,
    std, optionally clipped to low/high), ``choice`` (values, optional
    weights) or ``fixed`` (value)."""

    kind: Literal["uniform", "normal", "choice", "fixed"]
    low: Optional[float] = None
    high: Optional[float] = None
    mean: Optional[float] = None
    std: Optional[float] = None
    values: Optional[list[Any]] = None
    weights: Optional[list[float]] = None
    value: Optional[Any] = None

    def validate(self) -> None:
        if self.kind == "uniform":
            if self.low is None or self.high is None or not self.low < self.high:
                raise ConfigError("uniform needs low < high")
        elif self.kind == "normal":
            if self.mean is None or self.std is None or not self.std > 0:
                raise ConfigError("normal needs mean and std > 0")
        elif self.kind == "choice":
            if not self.values:
                raise ConfigError("choice needs a non-empty list of values")
            if self.weights is not None:
                if len(self.weights) != len(self.values) or min(self.weights) < 0 or sum(self.weights) <= 0:
                    raise ConfigError("choice weights must be non-negative, one per value, not all zero")
        elif self.value is None:
            raise ConfigError("fixed needs a value")

    @property
    def continuous(self) -> bool:
        return self.kind in ("uniform", "normal")


@dataclass
class SolverSettings:
    dx_mm: float = 2.0
    dt_ms: float = 0.1
    ionic_model: str = "mitchell_schaeffer"
    duration_ms: float = 500.0
    diffusion: Literal["explicit", "crank-nicolson", "backward-euler", "auto"] = "auto"

    def validate(self) -> None:
        from solver.ionic import MODELS

        for name in ("dx_mm", "dt_ms", "duration_ms"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}")
        if self.ionic_model not in MODELS:
            raise ConfigError(f"unknown ionic_model {self.ionic_model!r}; choose one of: {', '.join(sorted(MODELS))}")


@dataclass
class GeometrySource:
    """Anatomies: ``count`` analytic biventricles whose shape parameters are
    sampled (from the ``geometry`` group of parameters), or a list of files."""

    count: int = 10
    files: list[Path] = field(default_factory=list)

    def validate(self) -> None:
        if not self.files and self.count < 1:
            raise ConfigError(f"count must be >= 1, got {self.count}")
        missing = [str(p) for p in self.files if not Path(p).exists()]
        if missing:
            raise ConfigError(f"anatomy files not found: {', '.join(missing[:5])}")

    @property
    def n_geometries(self) -> int:
        return len(self.files) or self.count


@dataclass
class SplitRules:
    """Fractions of geometries (not samples) in each split."""

    train: float = 0.8
    validation: float = 0.1
    test: float = 0.1
    seed: int = 0

    def validate(self) -> None:
        parts = (self.train, self.validation, self.test)
        if min(parts) < 0 or not math.isclose(sum(parts), 1.0, abs_tol=1e-6):
            raise ConfigError(f"train, validation and test must be >= 0 and sum to 1, got {parts}")


@dataclass
class SlurmResources:
    partition: Optional[str] = None
    account: Optional[str] = None
    qos: Optional[str] = None
    nodes_per_block: int = 1
    cores_per_node: Optional[int] = None
    max_blocks: int = 1
    walltime: str = "01:00:00"
    #: Shell lines run before the workers start (module loads, environment activation).
    worker_init: str = ""
    #: Extra #SBATCH lines, e.g. "#SBATCH --constraint=cpu".
    scheduler_options: str = ""
    #: Address the workers use to reach the driver (default: Parsl's guess
    #: from this host's name; set it where compute nodes see another network).
    driver_address: Optional[str] = None

    def validate(self) -> None:
        if self.nodes_per_block < 1 or self.max_blocks < 1:
            raise ConfigError("nodes_per_block and max_blocks must be >= 1")
        parts = self.walltime.split(":")
        if len(parts) != 3 or not all(p.isdigit() for p in parts):
            raise ConfigError(f"walltime must be HH:MM:SS, got {self.walltime!r}")
        for line in self.scheduler_options.splitlines():
            if line.strip() and not line.strip().startswith("#SBATCH"):
                raise ConfigError(f"scheduler_options lines must start with #SBATCH, got {line!r}")


@dataclass
class Resources:
    executor: Literal["local", "slurm"] = "local"
    ranks_per_simulation: int = 1
    #: Local executor: simultaneous MPI ranks (default: the machine's cores).
    max_cores: Optional[int] = None
    #: Attempts for retryable failures (node loss, timeout, I/O); solver errors are never retried.
    retries: int = 2
    #: Wall-clock limit of one simulation (s); exceeding it is a retryable failure.
    task_timeout_s: Optional[float] = None
    slurm: SlurmResources = field(default_factory=SlurmResources)

    def validate(self) -> None:
        if self.ranks_per_simulation < 1:
            raise ConfigError(f"ranks_per_simulation must be >= 1, got {self.ranks_per_simulation}")
        if self.retries < 0:
            raise ConfigError("retries must be >= 0")
        cores = self.cores_available()
        if self.executor == "local" and self.ranks_per_simulation > cores:
            raise ConfigError(
                f"ranks_per_simulation ({self.ranks_per_simulation}) exceeds the {cores} cores "
                "available to the local executor; lower it or raise max_cores"
            )
        if self.executor == "slurm" and self.slurm.cores_per_node and self.ranks_per_simulation > self.slurm.cores_per_node:
            raise ConfigError(
                f"ranks_per_simulation ({self.ranks_per_simulation}) exceeds slurm.cores_per_node "
                f"({self.slurm.cores_per_node}); a simulation runs within one node"
            )

    def cores_available(self) -> int:
        return self.max_cores or os.cpu_count() or 1


@dataclass
class CampaignSpec:
    name: str
    output_dir: Path
    samples: int
    samples_per_shard: int = 50
    seed: int = 0
    sampling: Literal["random", "latin_hypercube", "sobol"] = "latin_hypercube"
    parameters: dict[str, Distribution] = field(default_factory=dict)
    solver: SolverSettings = field(default_factory=SolverSettings)
    geometry: GeometrySource = field(default_factory=GeometrySource)
    splits: SplitRules = field(default_factory=SplitRules)
    resources: Resources = field(default_factory=Resources)
    #: Samples per HDF5 shard of the training set built from the campaign.
    dataset_samples_per_shard: int = 64

    def validate(self) -> None:
        from .parameters import PARAMETERS

        if not self.name or not all(c.isalnum() or c in "-_." for c in self.name):
            raise ConfigError(f"name must be letters, digits, '-', '_' or '.', got {self.name!r}")
        if self.samples < 1:
            raise ConfigError(f"samples must be >= 1, got {self.samples}")
        if self.samples_per_shard < 1 or self.dataset_samples_per_shard < 1:
            raise ConfigError("samples_per_shard and dataset_samples_per_shard must be >= 1")
        unknown = sorted(set(self.parameters) - set(PARAMETERS))
        if unknown:
            raise ConfigError(
                f"parameters: unknown parameter(s) {', '.join(unknown)}; known: {', '.join(sorted(PARAMETERS))}"
            )
        for name, dist in self.parameters.items():
            PARAMETERS[name].check(name, dist)

    @property
    def n_shards(self) -> int:
        return -(-self.samples // self.samples_per_shard)

    def to_dict(self) -> dict:
        return to_mapping(self)


def spec_from_dict(data: Any, base_dir: Path | None = None) -> CampaignSpec:
    spec = from_mapping(CampaignSpec, data, "campaign")
    # Paths may use $VARIABLES and ~ (e.g. /scratch/$USER/...).
    spec.output_dir = Path(os.path.expandvars(os.path.expanduser(str(spec.output_dir))))
    if base_dir is not None and not spec.output_dir.is_absolute():
        spec.output_dir = (base_dir / spec.output_dir).resolve()
    return spec


def load_spec(path: str | Path) -> CampaignSpec:
    """Read and validate a campaign spec; relative output_dir is taken from
    the current directory (where the user launched the command)."""
    return load_file(path, lambda data: spec_from_dict(data, Path.cwd()))
