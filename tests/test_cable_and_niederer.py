"""Propagation against known answers: 1-D cable velocity and the Niederer slab."""
from __future__ import annotations

import json

import numpy as np
import pytest
from mpi4py import MPI

from solver.numerics.config import (
    AnatomyConfig, BoxRegion, ConductivityConfig, IonicConfig, OutputConfig, SimulationConfig,
    SlabAnatomy, StimulusConfig, TimeConfig,
)
from solver.verification.niederer import EXTRACELLULAR, INTRACELLULAR, activation_at_points
from solver.numerics.simulation import Simulation


def cable_velocity(dx: float, model: str = "tt06", dt: float = 0.01) -> float:
    """Conduction velocity (m/s = mm/ms) between 4 and 8 mm along a 10 mm cable."""
    config = SimulationConfig(
        anatomy=AnatomyConfig(dx_mm=dx, slab=SlabAnatomy(size_mm=(10.0, 0.0, 0.0))),
        conductivity=ConductivityConfig(intracellular=INTRACELLULAR, extracellular=EXTRACELLULAR),
        time=TimeConfig(dt_ms=dt, duration_ms=40.0, stop_when_activated=True),
        stimuli=[StimulusConfig(amplitude_uA_per_mm3=50.0, duration_ms=2.0,
                                box=BoxRegion(min_mm=(0, 0, 0), max_mm=(1.0, 0, 0)))],
        ionic=IonicConfig(model=model),
        output=OutputConfig(interval_ms=dt),
    )
    result = Simulation(config, MPI.COMM_SELF).run()
    times = activation_at_points(result, [(4.0, 0, 0), (8.0, 0, 0)])
    return 4.0 / (times["8,0,0"] - times["4,0,0"])


def test_cable_velocity_converges_as_dx_shrinks_to_a_physiological_value():
    velocities = [cable_velocity(dx) for dx in (0.4, 0.2, 0.1, 0.05)]
    changes = np.abs(np.diff(velocities))
    # Coarse grids under-resolve the upstroke and conduct slower; refinement
    # converges (each change smaller than the one before).
    assert all(np.diff(velocities) > 0), velocities
    assert all(changes[1:] < 0.6 * changes[:-1]), velocities
    # Longitudinal velocity with the benchmark conductivities: about 0.6-0.7 m/s.
    assert 0.5 < velocities[-1] < 0.8, velocities


def test_niederer_benchmark_at_half_millimetre(ecgi):
    """The CI case of the N-version benchmark: dx 0.5 mm, dt 0.05 ms."""
    proc = ecgi("verify", "niederer", "--dx", "0.5", "--dt", "0.05", "--json")
    report = json.loads(proc.stdout)
    act = report["activation_ms"]
    assert set(act) == {"0,0,0", "0,0,3", "0,7,0", "0,7,3", "20,0,0", "20,0,3", "20,7,0", "20,7,3", "10,3.5,1.5"}
    # Activation spreads from the stimulated corner: the far corner is last.
    assert act["0,0,0"] < 3.0
    assert max(act.values()) == act["20,7,3"]
    assert act["20,0,0"] < act["20,7,0"] and act["0,0,0"] < act["10,3.5,1.5"] < act["20,7,3"]
    # Cartesian codes at dx 0.5 are far too slow (about 120 ms at the far
    # corner in the paper); the converged answer is about 43 ms.  This
    # solver's answer is documented in docs/verification.md (132.3 ms at the
    # far corner) and changes by at most 1 ms between dt 0.05 and 0.005 ms:
    # every point within 5 % (+-6.6 ms at the far corner; 0.5 ms at the
    # stimulated one) of that table, far less than one grid refinement moves
    # it (dx 0.2 mm: 55 ms) and than the spread between the paper's codes.
    documented = {"0,0,0": 1.3, "0,0,3": 32.3, "0,7,0": 119.0, "0,7,3": 121.2, "20,0,0": 44.9,
                  "20,0,3": 54.1, "20,7,0": 130.9, "20,7,3": 132.3, "10,3.5,1.5": 56.1}
    for point, expected in documented.items():
        assert act[point] == pytest.approx(expected, rel=0.05, abs=0.5), point
