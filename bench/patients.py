"""The patient the solver benchmarks time: the default anatomy, Mitchell–Schaeffer, one condition."""
from __future__ import annotations

import solver.patient as patient


def bench_patient(condition: str, dx_mm: float, duration_ms: float) -> "patient.PatientConfig":
    return patient.load_patient_config({
        "geometry_id": "bench", "heart": {"dx_mm": dx_mm}, "activation": {"condition": condition},
        "ionic": {"model": "mitchell_schaeffer"},
        "time": {"dt_ms": 0.1, "duration_ms": duration_ms, "diffusion": "auto"},
    })
