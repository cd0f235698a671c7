"""Sample files as ``ecgi simulate`` writes them for a patient, from made-up
traces: the real writer (solver.numerics.output.write_simulation) with action-potential
shaped Vm at the 75 sites and electrode potentials from a random lead field.
Nothing is simulated, so a data set of many samples costs milliseconds (the
data set tests, bench.aggregation_throughput); model.synthetic writes data sets
of shards directly instead."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from solver.common.sites import ELECTRODE_NAMES, LEAD_NAMES, SITE_NAMES

#: The smallest simulation configuration: the sample file stores it, nothing runs it.
_TINY_CONFIG = {
    "anatomy": {"dx_mm": 0.5, "slab": {"size_mm": [1, 1, 1]}},
    "conductivity": {"intracellular": {"longitudinal": 0.17, "transverse": 0.019}},
    "ionic": {"model": "mitchell_schaeffer"},
    "time": {"dt_ms": 0.05, "duration_ms": 1},
    "stimuli": [{"amplitude_uA_per_mm3": 50, "box": {"min_mm": [0, 0, 0], "max_mm": [1, 1, 1]}}],
}


def synthetic_vm(act_ms: np.ndarray, samples: int, apd_ms: float = 250.0) -> np.ndarray:
    """(samples, sites) mV: model.synthetic's action potential at each activation time."""
    from .synthetic import action_potentials

    sites = len(act_ms)
    return action_potentials(act_ms[None], np.full((1, sites), apd_ms), np.ones((1, sites)), samples)[0]


def write_synthetic_sample(
    path: Path, geometry_id: str, condition: str, parameters: dict[str, float],
    rng: np.random.Generator, samples: int = 500,
) -> Path:
    """A sample file with random activation times at the 75 sites."""
    from solver.numerics.config import config_from_dict
    from solver.patient.leads import twelve_leads
    from solver.numerics.output import write_simulation
    from solver.patient import PatientConfig, patient_attributes
    from solver.numerics.simulation import SimulationResult

    n_sites = len(SITE_NAMES)
    act = rng.uniform(5.0, 0.3 * samples, n_sites)
    vm = synthetic_vm(act, samples)
    weights = rng.normal(0.0, 0.02, (len(ELECTRODE_NAMES), n_sites))
    electrodes = (vm - vm[:1]) @ weights.T  # no potential at rest
    result = SimulationResult(
        config=config_from_dict(_TINY_CONFIG), dx_mm=0.5, origin_mm=np.zeros(3), grid_shape=(1, 1, 1),
        tissue_ijk=np.zeros((1, 3), np.int32), activation_ms=np.zeros(1), time_ms=np.arange(samples, dtype=float),
        probe_names=list(SITE_NAMES), probe_ijk=np.zeros((n_sites, 3), np.int32), probe_vm=vm,
        snapshot_time_ms=np.zeros(0), snapshot_vm=None,
    )
    datasets = {
        "vm_sites": (vm.astype(np.float32), {"units": "mV", "dt_ms": 1.0}),
        "act_sites": (act.astype(np.float32), {"units": "ms"}),
        "electrodes": (electrodes.astype(np.float32), {"units": "mV", "names": list(ELECTRODE_NAMES), "dt_ms": 1.0}),
        "leads": (twelve_leads(electrodes).astype(np.float32), {"units": "mV", "names": list(LEAD_NAMES), "dt_ms": 1.0}),
    }
    patient = PatientConfig(geometry_id=geometry_id, label=condition, parameters=dict(parameters))
    return write_simulation(path, result, datasets, patient_attributes(patient))
