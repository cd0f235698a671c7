"""Conduction-velocity calibration: conductivities that give target speeds.

On a coarse grid a wave travels slower than the same tissue conducts in
reality, because the upstroke is under-resolved (Niederer 2011 showed
Cartesian codes at dx 0.5 mm nearly three times too slow).  Calibration
undoes that: for the grid (dx, dt, scheme) and the ionic model actually
used, it finds by small 1-D cable runs the conductivity whose simulated
velocity equals the target.  The cable velocities are tabulated on a
geometric grid of conductivities (``VelocityCurve``), measured on demand and
cached on disk, keyed by everything that affects them, so a campaign that
draws a velocity per sample interpolates instead of running cables per
sample.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
from mpi4py import MPI

from ..numerics.config import (
    AnatomyConfig,
    BoxRegion,
    ConductivityConfig,
    IonicConfig,
    MembraneConfig,
    OutputConfig,
    SimulationConfig,
    SlabAnatomy,
    StimulusConfig,
    TimeConfig,
    TissueConductivity,
)
from ..common.errors import ConfigError
from ..common.files import write_text_atomic

CACHE_VERSION = 2


@dataclass
class VelocityTargets:
    """Target conduction velocities (m/s = mm/ms).

    Defaults: human ventricular myocardium conducts at about 0.5 m/s along
    and 0.2 m/s across fibres; the fast subendocardial layer stands in for
    the Purkinje network's spread.  With these, the default heart gives a QRS
    of about 80 ms when normal and above 140 ms with either bundle branch
    block (docs/patients.md).
    """

    longitudinal_m_per_s: float = 0.5
    transverse_m_per_s: float = 0.2
    #: Speed along the fast subendocardial layer (None: do not calibrate it).
    fast_layer_m_per_s: Optional[float] = 1.2

    def validate(self) -> None:
        for name in ("longitudinal_m_per_s", "transverse_m_per_s", "fast_layer_m_per_s"):
            value = getattr(self, name)
            if value is not None and not 0.01 <= value <= 10:
                raise ConfigError(f"{name} must be within 0.01-10 m/s, got {value}")


@dataclass
class Calibration:
    """Monodomain conductivities (S/m) reaching the targets on one grid."""

    longitudinal_S_per_m: float
    transverse_S_per_m: float
    fast_layer_factor: Optional[float]
    velocities_m_per_s: dict[str, float]


def cable_velocity(
    sigma: float, dx: float, dt: float, ionic: IonicConfig, membrane: MembraneConfig,
    diffusion: str = "auto", length_mm: Optional[float] = None,
) -> float:
    """Velocity (m/s) of a planar wave on a 1-D cable of conductivity sigma
    (S/m), between 30% and 70% of its length; NaN if it does not propagate."""
    length = length_mm or max(20.0, 30 * dx)
    length = dx * math.ceil(length / dx)
    config = SimulationConfig(
        anatomy=AnatomyConfig(dx_mm=dx, slab=SlabAnatomy(size_mm=(length, 0.0, 0.0))),
        conductivity=ConductivityConfig(intracellular=TissueConductivity(sigma, sigma)),
        time=TimeConfig(dt_ms=dt, duration_ms=length / 0.05 + 20, diffusion=diffusion, stop_when_activated=True),
        stimuli=[StimulusConfig(amplitude_uA_per_mm3=60.0, duration_ms=2.0,
                                box=BoxRegion(min_mm=(0, 0, 0), max_mm=(max(1.0, dx), 0, 0)))],
        ionic=ionic,
        membrane=membrane,
        output=OutputConfig(interval_ms=dt * max(1, round(1.0 / dt))),
    )
    from ..numerics.simulation import Simulation

    with Simulation(config, MPI.COMM_SELF) as simulation:
        result = simulation.run()
    x = result.tissue_ijk[:, 0] * dx
    act = result.activation_ms
    window = (x >= 0.3 * length) & (x <= 0.7 * length)
    if np.isnan(act[window]).any():
        return float("nan")
    slope = np.polyfit(x[window], act[window], 1)[0]  # ms per mm
    return float(1.0 / slope) if slope > 0 else float("nan")


def calibrate_sigma(target: float, dx: float, dt: float, ionic: IonicConfig, membrane: MembraneConfig,
                    sigma0: float = 0.13, tolerance: float = 0.005, max_iterations: int = 30) -> tuple[float, float]:
    """Conductivity (S/m) whose cable velocity is ``target`` (m/s) within ``tolerance``.

    Fixed-point steps sigma <- sigma (target / v)^2 until the target is
    bracketed, then bisection in log(sigma): on very coarse grids velocity
    is not exactly proportional to sqrt(sigma) and the fixed point can cycle.
    """
    lo = hi = None  # (sigma, velocity) below and above the target
    sigma = sigma0
    for _ in range(max_iterations):
        velocity = cable_velocity(sigma, dx, dt, ionic, membrane)
        if not math.isnan(velocity) and abs(velocity - target) <= tolerance * target:
            return sigma, velocity
        if math.isnan(velocity) or velocity < target:
            lo = (sigma, velocity)
        else:
            hi = (sigma, velocity)
        if lo is not None and hi is not None:
            sigma = math.sqrt(lo[0] * hi[0])
        elif math.isnan(velocity):
            sigma *= 2.0  # below the propagation threshold: conduct more
        else:
            sigma *= min(10.0, max(0.1, (target / velocity) ** 2))
    best = min((p for p in (lo, hi) if p and not math.isnan(p[1])), key=lambda p: abs(p[1] - target), default=None)
    raise ConfigError(
        f"calibration did not reach {target:.4g} m/s at dx {dx} mm, dt {dt} ms with {ionic.model} "
        f"(closest: sigma {best[0]:.4g} S/m gives {best[1]:.4g} m/s); the grid may be too coarse"
        if best else f"calibration found no propagating conductivity at dx {dx} mm, dt {dt} ms"
    )


#: Conductivities are tabulated at sigma_k = SIGMA_ORIGIN_S_PER_M * SIGMA_RATIO ** k:
#: 4.4 % apart, about 2.2 % in velocity, close enough for interpolation to
#: land within a fraction of a percent of any target.
SIGMA_ORIGIN_S_PER_M = 0.13
SIGMA_RATIO = 2.0 ** (1.0 / 16.0)
#: Cable runs one inversion may make before giving up.
MAX_CABLE_RUNS = 40


@dataclass
class VelocityCurve:
    """Cable velocity against conductivity for one grid and model, measured at nodes sigma_k on demand.

    Velocity rises monotonically with sigma (about as its square root), so a
    target between the velocities of two neighbouring nodes is reached by
    interpolating log sigma linearly in log v.  One curve serves every
    direction (a cable is one-dimensional) and every target: a campaign that
    draws a velocity per sample measures a handful of nodes once instead of
    iterating cable runs for every sample.  Each result depends only on the
    node velocities, which are deterministic, so a sample's conductivities
    do not depend on which samples were calibrated before it.
    """

    dx: float
    dt: float
    ionic: IonicConfig
    membrane: MembraneConfig
    nodes: dict[int, float] = field(default_factory=dict)  #: k -> velocity (m/s); NaN: does not propagate
    measured: int = 0  #: cable runs this object made

    @staticmethod
    def sigma(k: int) -> float:
        return SIGMA_ORIGIN_S_PER_M * SIGMA_RATIO**k

    def velocity(self, k: int) -> float:
        if k not in self.nodes:
            self.nodes[k] = cable_velocity(self.sigma(k), self.dx, self.dt, self.ionic, self.membrane)
            self.measured += 1
        return self.nodes[k]

    def conductivity_for(self, target: float) -> tuple[float, float]:
        """(sigma, velocity) reaching ``target`` m/s: bracketed by two neighbouring nodes, interpolated."""
        for _ in range(MAX_CABLE_RUNS):
            below, above = self._bracket(target)
            if below is not None and above is not None:
                if above < below:
                    raise ConfigError(f"cable velocity does not rise with conductivity near {target:.4g} m/s "
                                      f"(sigma {self.sigma(above):.4g} and {self.sigma(below):.4g} S/m); "
                                      "use a finer grid or time step")
                if above == below + 1:
                    return self._interpolate(below, above, target)
            self.velocity(self._next_node(target, below, above))
        raise ConfigError(f"calibration found no conductivity for {target:.4g} m/s within "
                          f"{MAX_CABLE_RUNS} cable runs; the grid may be too coarse")

    def _bracket(self, target: float) -> tuple[Optional[int], Optional[int]]:
        """The highest node known slower than the target (or not propagating), the lowest known as fast or faster."""
        slower = [k for k, v in self.nodes.items() if math.isnan(v) or v < target]
        faster = [k for k, v in self.nodes.items() if not (math.isnan(v) or v < target)]
        return (max(slower) if slower else None), (min(faster) if faster else None)

    def _next_node(self, target: float, below: Optional[int], above: Optional[int]) -> int:
        """The unmeasured node nearest to where the target is predicted, inside the bracket known so far."""
        propagating = sorted(((k, v) for k, v in self.nodes.items() if not math.isnan(v)),
                             key=lambda kv: abs(math.log(kv[1] / target)))
        if not propagating:
            return max(self.nodes) + 16 if self.nodes else 0  # below the propagation threshold: double sigma
        k0, v0 = propagating[0]
        exponent = 0.5  # v ~ sqrt(sigma) in the continuum; coarse grids are steeper
        if len(propagating) > 1:
            k1, v1 = propagating[1]
            exponent = min(1.0, max(0.2, math.log(v1 / v0) / ((k1 - k0) * math.log(SIGMA_RATIO))))
        k = round(k0 + math.log(target / v0) / (exponent * math.log(SIGMA_RATIO)))
        if below is not None:
            k = max(k, below + 1)
        if above is not None:
            k = min(k, above - 1)
        return k

    def _interpolate(self, k0: int, k1: int, target: float) -> tuple[float, float]:
        v0, v1 = self.velocity(k0), self.velocity(k1)
        if math.isnan(v0) or v0 <= 0:
            # Just above the propagation threshold, where v(sigma) is steep: iterate cable runs instead.
            return calibrate_sigma(target, self.dx, self.dt, self.ionic, self.membrane, sigma0=self.sigma(k1))
        w = (math.log(target) - math.log(v0)) / (math.log(v1) - math.log(v0)) if v1 > v0 else 0.0
        return float(self.sigma(k0) * SIGMA_RATIO**w), float(target)


def cache_path() -> Path:
    root = os.environ.get("ECGI_CACHE_DIR") or Path.home() / ".cache" / "ecgi"
    return Path(root) / "velocity-curves.json"


def conduction_ionic(ionic: IonicConfig) -> IonicConfig:
    """The ionic model without its repolarisation parameters (they move the
    velocity by less than half a percent; ``IonicModel.repolarisation_parameters``)."""
    from ..numerics.ionic import MODELS

    ignored = MODELS[ionic.model].repolarisation_parameters
    return IonicConfig(ionic.model, {k: v for k, v in sorted(ionic.parameters.items()) if k not in ignored})


def _key(dx: float, dt: float, ionic: IonicConfig, membrane: MembraneConfig) -> str:
    """Everything a cable's velocity depends on: the grid, the membrane, the ionic model."""
    description = {"version": CACHE_VERSION, "dx": dx, "dt": dt, "membrane": asdict(membrane),
                   "ionic": {"model": ionic.model, "parameters": ionic.parameters}}
    return hashlib.sha256(json.dumps(description, sort_keys=True).encode()).hexdigest()[:16]


#: Velocity curves of this process, by key; each call adds the nodes other processes cached since.
_CURVES: dict[str, VelocityCurve] = {}


def velocity_curve(dx: float, dt: float, ionic: IonicConfig, membrane: MembraneConfig,
                   use_cache: bool = True) -> tuple[str, VelocityCurve]:
    """The curve of this grid and model, with every node measured before (by any process) when ``use_cache``."""
    ionic = conduction_ionic(ionic)
    key = _key(dx, dt, ionic, membrane)
    if not use_cache:
        return key, VelocityCurve(dx, dt, ionic, membrane)
    curve = _CURVES.setdefault(key, VelocityCurve(dx, dt, ionic, membrane))
    curve.nodes.update(_read_nodes(cache_path(), key))
    return key, curve


def calibrate(targets: VelocityTargets, dx: float, dt: float, ionic: IonicConfig, membrane: MembraneConfig,
              use_cache: bool = True) -> Calibration:
    """Calibrated conductivities for a grid and model: each target inverted on the grid's velocity curve."""
    key, curve = velocity_curve(dx, dt, ionic, membrane, use_cache)
    runs_before = curve.measured
    sigma_l, v_l = curve.conductivity_for(targets.longitudinal_m_per_s)
    sigma_t, v_t = curve.conductivity_for(targets.transverse_m_per_s)
    velocities = {"longitudinal": v_l, "transverse": v_t}
    fast_factor = None
    if targets.fast_layer_m_per_s is not None:
        sigma_f, v_f = curve.conductivity_for(targets.fast_layer_m_per_s)
        fast_factor = sigma_f / sigma_l
        velocities["fast_layer"] = v_f
    if use_cache and curve.measured > runs_before:
        _write_nodes(cache_path(), key, curve.nodes)
    return Calibration(sigma_l, sigma_t, fast_factor, velocities)


def calibrate_shared(comm: MPI.Comm, *args, **kwargs) -> Calibration:
    """``calibrate`` on rank 0, broadcast: every rank uses identical values."""
    calibration = calibrate(*args, **kwargs) if comm.Get_rank() == 0 else None
    return comm.bcast(calibration, root=0)


def reference_velocities(conductivity: ConductivityConfig, ionic: IonicConfig, membrane: MembraneConfig,
                         dx: float = 0.025, dt: float = 0.0025) -> VelocityTargets:
    """The grid-converged velocities of given conductivities (fine 1-D cables)."""
    mono = conductivity.monodomain()
    return VelocityTargets(
        longitudinal_m_per_s=cable_velocity(mono.longitudinal, dx, dt, ionic, membrane),
        transverse_m_per_s=cable_velocity(mono.transverse, dx, dt, ionic, membrane),
        fast_layer_m_per_s=None,
    )


def _read_nodes(path: Path, key: str) -> dict[int, float]:
    try:
        nodes = json.loads(path.read_text()).get(key, {})
        return {int(k): float(v) for k, v in nodes.items()}
    except (OSError, ValueError, AttributeError):
        return {}


def _write_nodes(path: Path, key: str, nodes: dict[int, float]) -> None:
    """Merge ``nodes`` into the cache file (other processes may have added nodes meanwhile)."""
    try:
        cache = json.loads(path.read_text())
    except (OSError, ValueError):
        cache = {}
    merged = {**cache.get(key, {}), **{str(k): v for k, v in nodes.items()}}
    cache[key] = dict(sorted(merged.items(), key=lambda kv: int(kv[0])))
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps(cache, indent=1))


def scaled_conductivity(base: ConductivityConfig, calibration: Calibration) -> ConductivityConfig:
    """``base`` scaled per direction so that its monodomain value is the
    calibrated one (keeps the intra/extracellular ratio the ECG needs)."""
    mono = base.monodomain()
    fl = calibration.longitudinal_S_per_m / mono.longitudinal
    ft = calibration.transverse_S_per_m / mono.transverse

    def scale(t: Optional[TissueConductivity]) -> Optional[TissueConductivity]:
        return None if t is None else TissueConductivity(t.longitudinal * fl, t.transverse * ft)

    return ConductivityConfig(intracellular=scale(base.intracellular), extracellular=scale(base.extracellular))
