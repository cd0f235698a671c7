"""The sample file of a synthetic patient: the simulation file
(solver.numerics.output) plus the training sample's datasets (the 75 sites'
traces and activation times, electrodes and leads) and attributes that say
what the patient was."""
from __future__ import annotations

import json

import numpy as np
import yaml

from ..common.sites import SITE_NAMES
from ..common.typedconfig import to_mapping
from ..numerics.output import YAML_DUMPER, write_simulation
from .config import PatientConfig
from .simulation import PatientSample


def sample_datasets(sample: PatientSample) -> dict:
    """The training-sample datasets of the sample file (name -> (values, attrs))."""
    r, cfg = sample.result, sample.config
    dt = cfg.output_interval_ms
    traces = sample.site_vm  # (T, 75) in SITE_NAMES order
    above = traces > r.config.output.activation_threshold_mV
    first_sample = np.where(above.any(axis=0), above.argmax(axis=0) * dt, np.nan)
    out = {
        "vm_sites": (traces.astype(np.float32), {"units": "mV", "dt_ms": dt}),
        "act_sites": (sample.site_activation_ms.astype(np.float32),
                      {"units": "ms", "description": "interpolated first crossing of 0 mV, the weighted mean "
                                                      "over each site's footprint of voxels"}),
        "act_sites_sampled": (first_sample.astype(np.float32),
                              {"units": "ms", "description": "first output sample above 0 mV"}),
        "site_names": (np.array(SITE_NAMES, dtype=object), {}),
        "site_positions": (sample.site_positions, {"units": "mm", "frame": "heart"}),
    }
    for name in ("electrodes", "leads"):
        values, attrs = r.extra[name]
        out[name] = (values, {**attrs, "dt_ms": dt})
    return out


def patient_attributes(config: PatientConfig) -> dict:
    """File attributes of a sample: what it is, for data set building."""
    return {
        "geometry_id": config.geometry_id,
        "condition": config.condition_label(),
        "parameters_json": json.dumps(config.parameters, sort_keys=True),
        "patient_yaml": yaml.dump(to_mapping(config), Dumper=YAML_DUMPER, sort_keys=False),
    }


def write_sample(path, sample: PatientSample):
    """The sample file: the simulation file plus the training-sample datasets."""
    return write_simulation(path, sample.result, sample_datasets(sample), patient_attributes(sample.config))
