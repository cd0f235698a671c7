"""Conduction-velocity calibration: conductivities that give target speeds.

On a coarse grid a wave travels slower than the same tissue conducts in
reality, because the upstroke is under-resolved (Niederer 2011 showed
Cartesian codes at dx 0.5 mm nearly three times too slow).  Calibration
undoes that: for the grid (dx, dt, scheme) and the ionic model actually
used, it finds by small 1-D cable runs the conductivity whose simulated
velocity equals the target, iterating sigma <- sigma (v_target / v)^2
(velocity scales with sqrt(sigma)).  Results are cached on disk, keyed by
everything that affects them, so a campaign calibrates once.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import asdict, dataclass
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

CACHE_VERSION = 1


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


def cache_path() -> Path:
    root = os.environ.get("ECGI_CACHE_DIR") or Path.home() / ".cache" / "ecgi"
    return Path(root) / "calibration.json"


def _key(targets: VelocityTargets, dx: float, dt: float, ionic: IonicConfig, membrane: MembraneConfig) -> str:
    description = {
        "version": CACHE_VERSION, "targets": asdict(targets), "dx": dx, "dt": dt,
        "ionic": {"model": ionic.model, "parameters": dict(sorted(ionic.parameters.items()))},
        "membrane": asdict(membrane),
    }
    return hashlib.sha256(json.dumps(description, sort_keys=True).encode()).hexdigest()[:16]


def calibrate(targets: VelocityTargets, dx: float, dt: float, ionic: IonicConfig, membrane: MembraneConfig,
              use_cache: bool = True) -> Calibration:
    """Calibrated conductivities for a grid and model, from the cache when known."""
    key = _key(targets, dx, dt, ionic, membrane)
    path = cache_path()
    cache = _read_cache(path)
    if use_cache and key in cache:
        return Calibration(**cache[key])
    sigma_l, v_l = calibrate_sigma(targets.longitudinal_m_per_s, dx, dt, ionic, membrane)
    sigma_t, v_t = calibrate_sigma(targets.transverse_m_per_s, dx, dt, ionic, membrane, sigma0=sigma_l * (targets.transverse_m_per_s / targets.longitudinal_m_per_s) ** 2)
    velocities = {"longitudinal": v_l, "transverse": v_t}
    fast_factor = None
    if targets.fast_layer_m_per_s is not None:
        sigma_f, v_f = calibrate_sigma(targets.fast_layer_m_per_s, dx, dt, ionic, membrane, sigma0=sigma_l * (targets.fast_layer_m_per_s / targets.longitudinal_m_per_s) ** 2)
        fast_factor = sigma_f / sigma_l
        velocities["fast_layer"] = v_f
    calibration = Calibration(sigma_l, sigma_t, fast_factor, velocities)
    if use_cache:
        cache = _read_cache(path)  # another process may have added entries meanwhile
        cache[key] = asdict(calibration)
        write_text_atomic(path, json.dumps(cache, indent=1, sort_keys=True))
    return calibration


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


def _read_cache(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}




def scaled_conductivity(base: ConductivityConfig, calibration: Calibration) -> ConductivityConfig:
    """``base`` scaled per direction so that its monodomain value is the
    calibrated one (keeps the intra/extracellular ratio the ECG needs)."""
    mono = base.monodomain()
    fl = calibration.longitudinal_S_per_m / mono.longitudinal
    ft = calibration.transverse_S_per_m / mono.transverse

    def scale(t: Optional[TissueConductivity]) -> Optional[TissueConductivity]:
        return None if t is None else TissueConductivity(t.longitudinal * fl, t.transverse * ft)

    return ConductivityConfig(intracellular=scale(base.intracellular), extracellular=scale(base.extracellular))
