"""The configuration of one simulation, as typed dataclasses.

Units are part of every field name (mm, ms, S/m, uA/mm^3, mV): a YAML file
reads unambiguously without the documentation at hand.  ``load_config``
parses and validates; what can only be checked against the voxelised
anatomy (a stimulus that misses the tissue, a probe outside the heart, the
explicit stability limit) is checked by ``solver.numerics.simulation`` before the
first time step.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Optional

from ..common.errors import ConfigError
from ..common.limits import DT_MS, DX_MM, check_range
from ..common.typedconfig import from_mapping, load_file, to_mapping

Vector3 = tuple[float, float, float]


def _positive(name: str, value: float) -> None:
    if not (value > 0 and math.isfinite(value)):
        raise ConfigError(f"{name} must be a positive number, got {value}")


@dataclass
class SlabAnatomy:
    """A rectangular block with uniform fibres; voxel centres on its corners."""

    size_mm: Vector3
    fibre_direction: Vector3 = (1.0, 0.0, 0.0)
    cell_type: Literal["endo", "mid", "epi"] = "epi"

    def validate(self) -> None:
        for axis, length in zip("xyz", self.size_mm):
            if not length >= 0:
                raise ConfigError(f"size_mm: the {axis} extent must be >= 0, got {length}")
        if math.hypot(*self.fibre_direction) == 0:
            raise ConfigError("fibre_direction must be a non-zero vector")


@dataclass
class VoxelFileAnatomy:
    """A voxel anatomy saved by ``solver.numerics.anatomy.save_anatomy`` (HDF5)."""

    path: Path


@dataclass
class AnatomyConfig:
    dx_mm: float
    slab: Optional[SlabAnatomy] = None
    voxel_file: Optional[VoxelFileAnatomy] = None
    #: Set when another component built the anatomy (e.g. "patient": the
    #: synthetic-patient builder); its own configuration is stored beside.
    built_by: Optional[str] = None

    def validate(self) -> None:
        check_range("dx_mm", self.dx_mm, DX_MM, "mm")
        chosen = [name for name in ("slab", "voxel_file", "built_by") if getattr(self, name) is not None]
        if len(chosen) != 1:
            raise ConfigError(
                "give exactly one anatomy source (slab or voxel_file), "
                f"got {', '.join(chosen) or 'none'}"
            )


@dataclass
class TissueConductivity:
    """Longitudinal (along fibres) and transverse conductivities in S/m."""

    longitudinal: float
    transverse: float

    def validate(self) -> None:
        _positive("longitudinal", self.longitudinal)
        _positive("transverse", self.transverse)


@dataclass
class ConductivityConfig:
    """Monodomain conductivity: intracellular, optionally combined with the
    extracellular one harmonically (sigma = si*se/(si+se)) as in the
    bidomain-to-monodomain reduction of equal anisotropy ratios."""

    intracellular: TissueConductivity
    extracellular: Optional[TissueConductivity] = None

    def monodomain(self) -> TissueConductivity:
        si, se = self.intracellular, self.extracellular
        if se is None:
            return si
        return TissueConductivity(
            longitudinal=si.longitudinal * se.longitudinal / (si.longitudinal + se.longitudinal),
            transverse=si.transverse * se.transverse / (si.transverse + se.transverse),
        )


@dataclass
class MembraneConfig:
    surface_to_volume_per_mm: float = 140.0  # chi
    capacitance_uF_per_mm2: float = 0.01  # Cm (= 1 uF/cm^2)

    def validate(self) -> None:
        _positive("surface_to_volume_per_mm", self.surface_to_volume_per_mm)
        _positive("capacitance_uF_per_mm2", self.capacitance_uF_per_mm2)


@dataclass
class IonicConfig:
    model: str = "tt06"
    parameters: dict[str, float] = field(default_factory=dict)
    #: TT06 only: "tabulated" reads the Vm-only rates from a table in Vm, within
    #: 1e-3 ms of "exact" in activation and APD and 2-3 times faster (docs/solver.md,
    #: TT06 tables); "exact" evaluates every rate at each step, the reference.
    tt06_kernel: Literal["exact", "tabulated"] = "tabulated"

    def options(self) -> dict[str, str]:
        """Keyword arguments of the model beyond its parameters."""
        return {"kernel": self.tt06_kernel} if self.model == "tt06" else {}

    def validate(self) -> None:
        from .ionic import MODELS, create_model

        if self.model not in MODELS:
            raise ConfigError(f"unknown ionic model {self.model!r}; choose one of: {', '.join(sorted(MODELS))}")
        try:
            create_model(self.model, self.parameters, **self.options())
        except ValueError as exc:
            raise ConfigError(str(exc)) from None


@dataclass
class BoxRegion:
    min_mm: Vector3
    max_mm: Vector3

    def validate(self) -> None:
        if any(lo > hi for lo, hi in zip(self.min_mm, self.max_mm)):
            raise ConfigError(f"min_mm {self.min_mm} must not exceed max_mm {self.max_mm}")


@dataclass
class SphereRegion:
    centre_mm: Vector3
    radius_mm: float

    def validate(self) -> None:
        _positive("radius_mm", self.radius_mm)


@dataclass
class StimulusConfig:
    """A current injected into the voxels of one region.

    Give exactly one of ``box``, ``sphere`` or ``voxels`` (grid indices).
    With ``period_ms`` the pulse repeats ``count`` times.  With
    ``spread_m_per_s`` (a sphere only) each voxel's pulse starts later by its
    distance from the centre over that speed: a wave leaving the centre, so
    that the voxels a sphere happens to hold on its grid barely change when
    the tissue around them activates.
    """

    amplitude_uA_per_mm3: float
    start_ms: float = 0.0
    duration_ms: float = 2.0
    box: Optional[BoxRegion] = None
    sphere: Optional[SphereRegion] = None
    voxels: Optional[list[tuple[int, int, int]]] = None
    period_ms: Optional[float] = None
    count: int = 1
    spread_m_per_s: Optional[float] = None

    def validate(self) -> None:
        chosen = [n for n in ("box", "sphere", "voxels") if getattr(self, n) is not None]
        if len(chosen) != 1:
            raise ConfigError(f"give exactly one region (box, sphere or voxels), got {', '.join(chosen) or 'none'}")
        if self.voxels is not None and not self.voxels:
            raise ConfigError("voxels: the list is empty")
        if self.start_ms < 0:
            raise ConfigError(f"start_ms must be >= 0, got {self.start_ms}")
        _positive("duration_ms", self.duration_ms)
        if self.count < 1:
            raise ConfigError(f"count must be >= 1, got {self.count}")
        if self.spread_m_per_s is not None:
            _positive("spread_m_per_s", self.spread_m_per_s)
            if self.sphere is None:
                raise ConfigError("spread_m_per_s needs a sphere: the spread leaves its centre")
        if self.count > 1:
            if self.period_ms is None:
                raise ConfigError("count > 1 needs period_ms")
            if self.period_ms < self.duration_ms:
                raise ConfigError(f"period_ms ({self.period_ms}) must be at least duration_ms ({self.duration_ms})")


DiffusionScheme = Literal["explicit", "crank-nicolson", "backward-euler", "auto"]


@dataclass
class TimeConfig:
    dt_ms: float
    duration_ms: float
    #: ``auto`` takes the explicit scheme when dt is within its stability
    #: limit and Crank–Nicolson otherwise.
    diffusion: DiffusionScheme = "explicit"
    #: Stop as soon as every tissue voxel has activated (benchmarks, calibration).
    stop_when_activated: bool = False
    linear_solver_rtol: float = 1e-9

    def validate(self) -> None:
        check_range("dt_ms", self.dt_ms, DT_MS, "ms")
        _positive("duration_ms", self.duration_ms)
        if self.dt_ms > self.duration_ms:
            raise ConfigError(f"dt_ms ({self.dt_ms}) exceeds duration_ms ({self.duration_ms})")
        _positive("linear_solver_rtol", self.linear_solver_rtol)


@dataclass
class OutputConfig:
    interval_ms: float = 1.0
    activation_threshold_mV: float = 0.0
    #: Named points (mm) whose nearest tissue voxel is recorded every interval.
    probes: dict[str, Vector3] = field(default_factory=dict)
    #: Full-field Vm every this many ms (None: no snapshots).
    snapshot_interval_ms: Optional[float] = None
    #: |Vm| above this (mV) is treated as a numerical blow-up.
    runaway_limit_mV: float = 500.0

    def validate(self) -> None:
        _positive("interval_ms", self.interval_ms)
        if self.snapshot_interval_ms is not None:
            _positive("snapshot_interval_ms", self.snapshot_interval_ms)
        _positive("runaway_limit_mV", self.runaway_limit_mV)


@dataclass
class SimulationConfig:
    anatomy: AnatomyConfig
    conductivity: ConductivityConfig
    time: TimeConfig
    stimuli: list[StimulusConfig]
    ionic: IonicConfig = field(default_factory=IonicConfig)
    membrane: MembraneConfig = field(default_factory=MembraneConfig)
    output: OutputConfig = field(default_factory=OutputConfig)

    def validate(self) -> None:
        if not self.stimuli:
            raise ConfigError("stimuli: at least one stimulus is needed to start activation")
        dt = self.time.dt_ms
        for name, interval in (
            ("output.interval_ms", self.output.interval_ms),
            ("output.snapshot_interval_ms", self.output.snapshot_interval_ms),
        ):
            if interval is not None and not _is_multiple(interval, dt):
                raise ConfigError(f"{name} ({interval}) must be a whole multiple of time.dt_ms ({dt})")

    def to_dict(self) -> dict:
        return to_mapping(self)


def _is_multiple(value: float, step: float) -> bool:
    ratio = value / step
    return abs(ratio - round(ratio)) < 1e-6 * max(1.0, ratio) and round(ratio) >= 1


def load_config(path: str | Path) -> SimulationConfig:
    """Read and validate a simulation configuration file."""
    return load_file(path, config_from_dict)


def config_from_dict(data: object) -> SimulationConfig:
    return from_mapping(SimulationConfig, data, "config")
