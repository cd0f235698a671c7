"""The campaign specification: a YAML file validated into typed dataclasses.

Everything is checked before anything runs: parameter names against the
registry of what can be varied (``workflow.parameters``), distributions,
counts, resources.  The spec is frozen into the campaign directory at the
first run (``freeze_spec``); ``resume`` compares against that frozen copy.
"""
from __future__ import annotations

import ipaddress
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Optional

import yaml

from solver.common.errors import ConfigError
from solver.common.files import write_text_atomic
from solver.common.limits import DT_MS, DX_MM, check_range
from solver.common.typedconfig import from_mapping, load_file, to_mapping

from .batch import JobAttributes, ResourceSpec, check_script_text

if TYPE_CHECKING:  # workflow.layout imports this module (through sampling)
    from .layout import CampaignLayout

#: Upper bounds of the spec's counts (docs/data-formats.md): far above any
#: real campaign, low enough that a typo cannot exhaust the driver's memory.
LIMITS = {
    "samples": 1_000_000,
    "samples_per_folder": 100_000,
    "dataset_samples_per_shard": 100_000,
    "geometry.count": 100_000,
    "parameters": 256,
    "resources.ranks_per_simulation": 4096,
    "resources.max_cores": 1_000_000,
    "resources.retries": 100,
    "resources.slurm.nodes_per_block": 10_000,
    "resources.slurm.cores_per_node": 4096,
    "resources.slurm.max_blocks": 10_000,
}

#: Characters allowed in paths that end up in generated batch scripts.
SCRIPT_PATH = re.compile(r"[A-Za-z0-9_./+@%:,=~\-]+")
HOSTNAME = re.compile(r"(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9\-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9\-]{0,61}[A-Za-z0-9])?)*")


def check_limit(key: str, value: int | None) -> None:
    """Refuse a count above its documented maximum (LIMITS)."""
    if value is not None and value > LIMITS[key]:
        raise ConfigError(f"{key.rsplit('.', 1)[-1]} is {value}, above the maximum of {LIMITS[key]} "
                          "(docs/data-formats.md); split the campaign into several")


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
    #: PETSc options for every sample's solvers (solver.numerics.petsc_options).
    petsc_options: str = ""

    def validate(self) -> None:
        from solver.numerics.ionic import MODELS
        from solver.numerics.petsc_options import parse_petsc_options

        parse_petsc_options(self.petsc_options)

        check_range("dx_mm", self.dx_mm, DX_MM, "mm")
        check_range("dt_ms", self.dt_ms, DT_MS, "ms")
        for name in ("duration_ms",):
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
        check_limit("geometry.count", self.count)
        check_limit("geometry.count", len(self.files))
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
        if not self.train > 0:  # the data set built at the end refuses it (workflow.dataset.validate_settings)
            raise ConfigError(f"train must be > 0: the data set needs anatomies to train on, got {self.train}")


@dataclass
class SlurmResources:
    partition: Optional[str] = None
    account: Optional[str] = None
    qos: Optional[str] = None
    #: Node features, e.g. "cpu" or "cpu&intel" (sbatch --constraint).
    constraint: Optional[str] = None
    nodes_per_block: int = 1
    cores_per_node: Optional[int] = None
    max_blocks: int = 1
    #: Wall time limit of a block, as sbatch --time takes it (HH:MM:SS, D-HH:MM:SS, MM, ...).
    walltime: str = "01:00:00"
    #: Shell lines run before the workers start (module loads, environment activation).
    worker_init: str = ""
    #: Extra #SBATCH lines, e.g. "#SBATCH --constraint=cpu".
    scheduler_options: str = ""
    #: Address the workers use to reach the driver (default: Parsl's guess
    #: from this host's name; set it where compute nodes see another network).
    driver_address: Optional[str] = None

    def validate(self) -> None:
        # Every value here is written into the batch script of a block: names
        # must follow SLURM's grammar, free text must stay on its own lines.
        if self.max_blocks < 1:
            raise ConfigError("max_blocks must be >= 1")
        for key in ("nodes_per_block", "cores_per_node", "max_blocks"):
            check_limit(f"resources.slurm.{key}", getattr(self, key))
        # The checks every batch job gets (workflow.batch), under this spec's names.
        self.job_resources().validate({"nodes": "nodes_per_block", "cpus_per_task": "cores_per_node"})
        self.job_attributes().validate()
        for line in self.scheduler_options.splitlines():
            if line.strip() and not line.strip().startswith("#SBATCH"):
                raise ConfigError(f"scheduler_options lines must start with #SBATCH, got {line!r}")
        check_script_text("scheduler_options", self.scheduler_options.replace("\n", " "))
        # worker_init is shell code by design (module loads, activation); it
        # may span lines but must not smuggle in carriage returns or NULs.
        check_script_text("worker_init", self.worker_init.replace("\n", " ").replace("\t", " "))
        if self.driver_address is not None and not _is_address(self.driver_address):
            raise ConfigError(f"driver_address must be an IP address or a host name, got {self.driver_address!r}")

    def job_resources(self) -> ResourceSpec:
        """One block: its nodes, one worker pool on each with all their cores."""
        return ResourceSpec(nodes=self.nodes_per_block, cpus_per_task=self.cores_per_node)

    def job_attributes(self) -> JobAttributes:
        return JobAttributes(walltime=self.walltime, partition=self.partition, account=self.account, qos=self.qos,
                             constraint=self.constraint)


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
        if self.max_cores is not None and self.max_cores < 1:
            raise ConfigError(f"max_cores must be >= 1, got {self.max_cores}")
        if self.task_timeout_s is not None and not self.task_timeout_s > 0:
            raise ConfigError(f"task_timeout_s must be positive, got {self.task_timeout_s}")
        for key in ("ranks_per_simulation", "max_cores", "retries"):
            check_limit(f"resources.{key}", getattr(self, key))
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
    samples_per_folder: int = 50
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
        if self.samples_per_folder < 1 or self.dataset_samples_per_shard < 1:
            raise ConfigError("samples_per_folder and dataset_samples_per_shard must be >= 1")
        for key in ("samples", "samples_per_folder", "dataset_samples_per_shard"):
            check_limit(key, getattr(self, key))
        check_limit("parameters", len(self.parameters))
        if self.seed < 0 or self.seed >= 2**32:
            raise ConfigError(f"seed must be in 0 .. 2**32 - 1, got {self.seed}")
        unknown = sorted(set(self.parameters) - set(PARAMETERS))
        if unknown:
            raise ConfigError(
                f"parameters: unknown parameter(s) {', '.join(unknown)}; known: {', '.join(sorted(PARAMETERS))}"
            )
        for name, dist in self.parameters.items():
            PARAMETERS[name].check(name, dist)

    @property
    def n_folders(self) -> int:
        return -(-self.samples // self.samples_per_folder)

    def to_dict(self) -> dict:
        return to_mapping(self)


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
        return True
    except ValueError:
        return bool(HOSTNAME.fullmatch(text))


def check_output_dir(spec: CampaignSpec) -> None:
    """The campaign directory, once $VARIABLES are expanded, must be safe to
    write into batch scripts (Parsl puts it in #SBATCH --output lines)."""
    text = str(spec.output_dir)
    try:
        check_script_text("output_dir", text)
        if spec.resources.executor == "slurm" and not SCRIPT_PATH.fullmatch(text):
            raise ConfigError(f"output_dir {text!r} is written into SLURM batch scripts: use only letters, "
                              "digits and _ . / + @ % : , = ~ - (no spaces, quotes or shell characters)")
    except ConfigError as exc:
        raise ConfigError(f"campaign.{exc}") from None


#: The name ``samples_per_folder`` had before "shard" came to mean only a
#: data set's HDF5 file; specs (and frozen specs) that use it still load.
OLD_NAMES = {"samples_per_shard": "samples_per_folder"}


def spec_from_dict(data: Any, base_dir: Path | None = None) -> CampaignSpec:
    spec = from_mapping(CampaignSpec, _renamed(data), "campaign")
    # Paths may use $VARIABLES and ~ (e.g. /scratch/$USER/...).
    written = str(spec.output_dir)
    spec.output_dir = Path(os.path.expandvars(os.path.expanduser(written)))
    unset = re.findall(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)", str(spec.output_dir))
    if unset:
        raise ConfigError(f"campaign.output_dir {written!r} uses ${', $'.join(unset)}, not set in this environment: "
                          "export it or write the path out")
    if base_dir is not None and not spec.output_dir.is_absolute():
        spec.output_dir = (base_dir / spec.output_dir).resolve()
    check_output_dir(spec)
    return spec


def _renamed(data: Any) -> Any:
    """``data`` with the old names of settings replaced by the current ones."""
    if not isinstance(data, dict):
        return data
    for old, new in OLD_NAMES.items():
        if old in data:
            if new in data:
                raise ConfigError(f"campaign: {old} is the old name of {new}; give only {new}")
            data = {(new if key == old else key): value for key, value in data.items()}
    return data


def load_spec(path: str | Path) -> CampaignSpec:
    """Read and validate a campaign spec; relative output_dir is taken from
    the current directory (where the user launched the command)."""
    return load_file(path, lambda data: spec_from_dict(data, Path.cwd()))


def spec_differences(old: dict, new: dict, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two spec dicts."""
    keys = sorted(set(old) | set(new))
    out = []
    for k in keys:
        a, b = old.get(k), new.get(k)
        path = f"{prefix}{k}"
        if isinstance(a, dict) and isinstance(b, dict):
            out += spec_differences(a, b, path + ".")
        elif a != b:
            out.append(f"{path}: {a!r} -> {b!r}")
    return out


def freeze_spec(spec: CampaignSpec, layout: "CampaignLayout", force: bool, resuming: bool = False) -> None:
    """Copy the spec into the campaign directory, or check it against the copy.

    A campaign directory that was moved or copied keeps working: only its
    ``output_dir`` differs from the frozen one, and the new place is adopted."""
    new = spec.to_dict()
    if layout.spec_path.exists():
        try:
            old = load_file(layout.spec_path, lambda data: data)
        except ConfigError as exc:
            if not force:
                raise ConfigError(f"{exc}; the campaign's frozen spec is damaged: run `ecgi campaign run SPEC "
                                  "--force` with the campaign's spec file to replace it") from None
            old = None
        changes = spec_differences(_with_defaults(old), new) if isinstance(old, dict) else ["spec.yaml unreadable"]
        moved = [c for c in changes if c.startswith("output_dir:")]
        changes = [c for c in changes if not c.startswith("output_dir:")]
        if changes and not force:
            fix = ("resume never changes a campaign's spec: run `ecgi campaign run SPEC --force` with the new spec"
                   if resuming else "rerun with --force to adopt it (samples whose parameters changed are recomputed)")
            raise ConfigError(
                f"the spec differs from the one frozen in {layout.spec_path}:\n  " + "\n  ".join(changes) + "\n" + fix
            )
        if not changes and not moved:
            return
    write_text_atomic(layout.spec_path, yaml.safe_dump(new, sort_keys=False))


def _with_defaults(frozen: dict) -> dict:
    """A frozen spec as this version of ecgi reads it: settings added since
    it was frozen take their defaults, so they are no change of the spec."""
    try:
        return {**spec_from_dict(frozen).to_dict(), "output_dir": frozen.get("output_dir")}
    except ConfigError:
        return frozen


def load_frozen_spec(campaign_dir: Path) -> CampaignSpec:
    """The spec frozen in a campaign directory, placed in that directory
    (wherever the campaign was first run: it may have been moved)."""
    from .layout import CampaignLayout

    layout = CampaignLayout(campaign_dir)
    if not layout.spec_path.is_file():
        if campaign_dir.exists() and not campaign_dir.is_dir():
            raise ConfigError(f"{campaign_dir} is a file, not a campaign directory")
        raise ConfigError(f"{campaign_dir} is not a campaign directory (no spec.yaml); start it with `ecgi campaign run SPEC`")

    def relocated(data):
        if isinstance(data, dict):
            data = {**data, "output_dir": str(Path(campaign_dir).absolute())}
        return spec_from_dict(data)

    try:
        return load_file(layout.spec_path, relocated)
    except ConfigError as exc:
        raise ConfigError(f"{exc}; the campaign's frozen spec is damaged: run `ecgi campaign run SPEC --force` "
                          "with the campaign's spec file to replace it") from None
