"""Sampled parameters reach the patients they describe, and only those.

A campaign draws every parameter for every sample (a Latin hypercube needs
every column); a condition's own parameter (the strength of an I_Kr block,
the size of a scar) must change only the patients with that condition.
"""
from __future__ import annotations

import pytest
import yaml

from workflow.patients import patient_config
from workflow.sampling import plan_samples
from workflow.spec import load_spec

MS_DEFAULT_TAU_CLOSE_MS = 150.0


@pytest.fixture
def mixed_conditions(tmp_path):
    data = {
        "name": "params", "output_dir": str(tmp_path / "campaign"), "samples": 40, "samples_per_folder": 40, "seed": 5,
        "geometry": {"count": 2},
        "parameters": {
            "condition": {"kind": "choice", "values": ["normal", "lbbb", "scar", "ikr_block"]},
            "ikr_block_g_Kr_scale": {"kind": "uniform", "low": 0.3, "high": 0.7},
            "scar_core_radius_mm": {"kind": "uniform", "low": 6.0, "high": 10.0},
        },
        "solver": {"dx_mm": 3.0, "dt_ms": 0.1, "ionic_model": "mitchell_schaeffer", "duration_ms": 100},
        "splits": {"train": 0.5, "validation": 0.25, "test": 0.25},
        "resources": {"executor": "local", "ranks_per_simulation": 1},
    }
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_spec(path)


def test_ikr_block_strength_prolongs_only_the_ikr_block_patients(mixed_conditions):
    plans = plan_samples(mixed_conditions)
    assert {p.values["condition"] for p in plans} == {"normal", "lbbb", "scar", "ikr_block"}
    for plan in plans:
        config = patient_config(mixed_conditions, plan)
        tau_close = config.ionic.parameters.get("tau_close", MS_DEFAULT_TAU_CLOSE_MS)
        if plan.values["condition"] == "ikr_block":
            # APD grows as the remaining I_Kr conductance falls: 150 / sqrt(g) ms.
            assert tau_close == pytest.approx(150.0 / plan.values["ikr_block_g_Kr_scale"] ** 0.5)
            assert tau_close > 180.0
        else:
            assert tau_close == MS_DEFAULT_TAU_CLOSE_MS, f"{plan.sample_id} ({plan.values['condition']})"


def test_scar_size_shapes_only_the_scar_patients(mixed_conditions):
    for plan in plan_samples(mixed_conditions):
        scar = patient_config(mixed_conditions, plan).activation.scar
        if plan.values["condition"] == "scar":
            assert scar is not None and scar.core_radius_mm == pytest.approx(plan.values["scar_core_radius_mm"])
        else:
            assert scar is None
