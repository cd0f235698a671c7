"""The N-version benchmark of Niederer et al. (2011), Phil Trans R Soc A 369:4331.

A 20 x 7 x 3 mm slab with fibres along x, ten Tusscher–Panfilov 2006
epicardial cells, a 1.5 mm cube stimulated at the corner (0, 0, 0), and
activation times read at the 8 corners and the centre.  The paper's 11 codes
give 37.8-48.7 ms at the far corner (20, 7, 3) for dx 0.1 mm, dt 0.005 ms;
the converged answer is about 42.5-43.2 ms.
"""
from __future__ import annotations

import itertools

import numpy as np

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
from ..numerics.simulation import SimulationResult

SLAB_MM = (20.0, 7.0, 3.0)
INTRACELLULAR = TissueConductivity(longitudinal=0.17, transverse=0.019)
EXTRACELLULAR = TissueConductivity(longitudinal=0.62, transverse=0.24)
RESOLUTIONS_MM = (0.5, 0.2, 0.1)
TIME_STEPS_MS = (0.05, 0.01, 0.005)
#: The published spread of the far-corner activation at dx 0.1, dt 0.005.
PUBLISHED_FAR_CORNER_MS = (37.8, 48.7)
CONVERGED_FAR_CORNER_MS = (42.5, 43.2)


def points_mm() -> list[tuple[float, float, float]]:
    """The 8 corners of the slab, then its centre."""
    corners = list(itertools.product(*[(0.0, length) for length in SLAB_MM]))
    return corners + [tuple(length / 2 for length in SLAB_MM)]


def point_label(point) -> str:
    return ",".join(f"{c:g}" for c in point)


def niederer_config(
    dx: float, dt: float, diffusion: str = "auto", max_duration_ms: float = 300.0,
    conductivity: ConductivityConfig | None = None,
) -> SimulationConfig:
    interval = dt * max(1, int(round(1.0 / dt)))
    return SimulationConfig(
        anatomy=AnatomyConfig(dx_mm=dx, slab=SlabAnatomy(size_mm=SLAB_MM, fibre_direction=(1.0, 0.0, 0.0), cell_type="epi")),
        conductivity=conductivity or ConductivityConfig(intracellular=INTRACELLULAR, extracellular=EXTRACELLULAR),
        time=TimeConfig(dt_ms=dt, duration_ms=max_duration_ms, diffusion=diffusion, stop_when_activated=True),
        stimuli=[StimulusConfig(amplitude_uA_per_mm3=50.0, start_ms=0.0, duration_ms=2.0,
                                box=BoxRegion(min_mm=(0.0, 0.0, 0.0), max_mm=(1.5, 1.5, 1.5)))],
        ionic=IonicConfig(model="tt06"),
        membrane=MembraneConfig(surface_to_volume_per_mm=140.0, capacitance_uF_per_mm2=0.01),
        output=OutputConfig(interval_ms=interval, activation_threshold_mV=0.0),
    )


def activation_at_points(result: SimulationResult, points) -> dict[str, float]:
    """Activation times at points (mm), trilinear between voxel centres."""
    grid = np.full(result.grid_shape, np.nan)
    grid[tuple(result.tissue_ijk.T)] = result.activation_ms
    out = {}
    for p in points:
        u = (np.asarray(p) - result.origin_mm) / result.dx_mm
        lo = np.clip(np.floor(u).astype(int), 0, np.array(result.grid_shape) - 1)
        hi = np.minimum(lo + 1, np.array(result.grid_shape) - 1)
        w = np.clip(u - lo, 0.0, 1.0)
        value = 0.0
        for corner in itertools.product((0, 1), repeat=3):
            idx = tuple(hi[a] if c else lo[a] for a, c in enumerate(corner))
            weight = np.prod([w[a] if c else 1 - w[a] for a, c in enumerate(corner)])
            if weight > 0:
                value += weight * grid[idx]
        out[point_label(p)] = float(value)
    return out


def calibrated_niederer_config(config: SimulationConfig, comm) -> SimulationConfig:
    """The benchmark with conductivities calibrated on its own grid: targets
    are the velocities the benchmark conductivities reach on a converged
    grid, so only the discretisation error is removed."""
    from dataclasses import replace

    from ..patient.calibration import calibrate_shared, reference_velocities

    targets = None
    if comm.Get_rank() == 0:
        targets = reference_velocities(config.conductivity, config.ionic, config.membrane)
    targets = comm.bcast(targets, root=0)
    cal = calibrate_shared(comm, targets, config.anatomy.dx_mm, config.time.dt_ms, config.ionic, config.membrane)
    sigma = TissueConductivity(cal.longitudinal_S_per_m, cal.transverse_S_per_m)
    return replace(config, conductivity=ConductivityConfig(intracellular=sigma))
