"""From a planned sample to the synthetic patient that produces it."""
from __future__ import annotations

import numpy as np

from solver.patient import PatientConfig, load_patient_config

from .parameters import apply_parameters
from .sampling import SamplePlan
from .spec import CampaignSpec


def patient_config(spec: CampaignSpec, plan: SamplePlan) -> PatientConfig:
    """The validated patient configuration of one planned sample."""
    solver = spec.solver
    config: dict = {
        "geometry_id": plan.geometry_id,
        "heart": {"dx_mm": solver.dx_mm},
        "ionic": {"model": solver.ionic_model},
        "time": {"dt_ms": solver.dt_ms, "duration_ms": solver.duration_ms, "diffusion": solver.diffusion},
        "parameters": {k: float(v) for k, v in plan.values.items() if isinstance(v, (int, float)) and not isinstance(v, bool)},
    }
    if spec.geometry.files:
        config["heart"]["anatomy_file"] = str(spec.geometry.files[plan.geometry_index])
    apply_parameters(config, plan.values, np.random.default_rng(plan.seed), solver.ionic_model)
    return load_patient_config(config, f"sample {plan.sample_id}")
