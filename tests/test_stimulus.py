"""Stimulus timing: start, duration and repetition resolved to time steps."""
from __future__ import annotations

import numpy as np
from mpi4py import MPI

from solver.numerics.config import config_from_dict
from solver.numerics.simulation import Simulation
from solver.numerics.stimulus import Pulse


def test_repeated_pulse_is_on_for_its_duration_every_period():
    pulse = Pulse(local_cells=np.arange(3), amplitude=10.0, start_step=5, duration_steps=2, period_steps=10, count=3)
    on = [step for step in range(60) if len(pulse.stimulated(step))]
    assert on == [5, 6, 15, 16, 25, 26]


def test_a_spread_pulse_starts_each_cell_later_by_its_delay():
    pulse = Pulse(local_cells=np.array([7, 8, 9]), amplitude=10.0, start_step=5, duration_steps=2, period_steps=2,
                  count=1, delay_steps=np.array([0, 1, 3]))
    on = {step: pulse.stimulated(step).tolist() for step in range(12) if len(pulse.stimulated(step))}
    assert on == {5: [7], 6: [7, 8], 7: [8], 8: [9], 9: [9]}


def test_a_spread_sphere_activates_outward_at_its_speed():
    """A sphere stimulus spread at 0.5 m/s: a voxel 2 mm from the centre is
    stimulated 4 ms after the centre, so it activates about 4 ms later than
    when the whole sphere is stimulated at once."""
    def activation(spread):
        config = config_from_dict({
            "anatomy": {"dx_mm": 0.5, "slab": {"size_mm": [6, 0, 0]}},
            "conductivity": {"intracellular": {"longitudinal": 0.17, "transverse": 0.019}},
            "ionic": {"model": "mitchell_schaeffer"},
            "time": {"dt_ms": 0.05, "duration_ms": 30, "stop_when_activated": True},
            "stimuli": [{"amplitude_uA_per_mm3": 200, "duration_ms": 1, "spread_m_per_s": spread,
                         "sphere": {"centre_mm": [0, 0, 0], "radius_mm": 2.0}}],
        })
        return Simulation(config, MPI.COMM_SELF).run().activation_ms
    at_once, spread = activation(None), activation(0.5)
    assert abs(at_once[4] - at_once[0]) < 0.5  # x = 2 mm, inside the sphere
    assert 3.0 < spread[4] - spread[0] < 4.5


def test_paced_slab_fires_once_per_stimulus():
    """Two pulses 600 ms apart on a Mitchell–Schaeffer slab give two upstrokes."""
    config = config_from_dict({
        "anatomy": {"dx_mm": 0.5, "slab": {"size_mm": [2, 0, 0]}},
        "conductivity": {"intracellular": {"longitudinal": 0.17, "transverse": 0.019}},
        "ionic": {"model": "mitchell_schaeffer"},
        "time": {"dt_ms": 0.05, "duration_ms": 1000},
        "stimuli": [{"amplitude_uA_per_mm3": 50, "duration_ms": 2, "period_ms": 600, "count": 2,
                     "box": {"min_mm": [0, 0, 0], "max_mm": [0.5, 0, 0]}}],
        "output": {"probes": {"end": [2, 0, 0]}},
    })
    result = Simulation(config, MPI.COMM_SELF).run()
    v = result.probe_vm[:, 0]
    upstrokes = np.flatnonzero((v[:-1] < 0) & (v[1:] >= 0))
    assert len(upstrokes) == 2
    assert abs((upstrokes[1] - upstrokes[0]) - 600) <= 2
