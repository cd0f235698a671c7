"""The example patients' 12-lead ECGs against textbook criteria, and the
cost of the bounded torso.

    python -m bench.ecg_physiology --dx 1.0 --figures docs/figures [--json PATH]

For normal conduction, LBBB and RBBB (examples/patients/*.yaml, with the
chosen grid and ionic model) it simulates one beat in the bounded torso and
in the infinite medium, writes one figure per condition (12 leads in the
standard layout, mV; the infinite medium in grey), prints the measured
criteria as a markdown table, and reports the torso's cost: the lead-field
set-up of one anatomy (solved once, then cached) against one patient's
solve, and the per-step ECG product's share of the time loop.
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml
from mpi4py import MPI

from bench.harness import REPO, Figure, Run, add_json_option

CONDITIONS = ("normal", "lbbb", "rbbb")


def patient(condition: str, dx: float, model: str, conductor: str) -> dict:
    data = yaml.safe_load(Path(REPO / "examples" / "patients" / f"{condition}.yaml").read_text())["patient"]
    data["heart"]["dx_mm"] = dx
    data["ionic"] = {"model": model}
    data["time"] = {"dt_ms": 0.05 if model == "tt06" else min(0.1, 0.05 * dx), "duration_ms": 450, "diffusion": "auto"}
    data["torso"] = {"volume_conductor": conductor}
    return data


def simulate(data: dict):
    from solver.patient import PatientSimulation, load_patient_config

    start = time.perf_counter()
    sim = PatientSimulation(load_patient_config(data), MPI.COMM_WORLD)
    setup = time.perf_counter() - start
    result = sim.run().result
    return result.extra["leads"][0].astype(float), setup, result.provenance


def plot(condition: str, torso: np.ndarray, infinite: np.ndarray, path: Path) -> None:
    from solver.plots import plot_ecg

    name = condition.upper() if condition != "normal" else "Normal conduction"
    plot_ecg(torso, 1.0, path, f"{name}: bounded torso (black), infinite medium (grey)", background=infinite)


def criteria_row(condition: str, leads: np.ndarray) -> str:
    from solver.patient.ecg_measures import measure_beat

    m = measure_beat(leads, 1.0)
    axis = m.frontal_axis_initial_deg if condition == "rbbb" else m.frontal_axis_deg
    rs = " / ".join(f"{min(m[n].r_over_s, 99):.2g}" for n in ("V1", "V2", "V5", "V6"))
    concordant = sum(np.sign(m[n].t_area) == np.sign(m[n].net_area) for n in ("I", "II", "V5", "V6"))
    return (f"| {condition} | {m.qrs_ms:.0f} | {axis:.0f} | {m['I'].net_area:+.0f} / {m['II'].net_area:+.0f} / "
            f"{m['aVR'].net_area:+.0f} | {rs} | {max(m['V5'].r_peak_time_ms, m['V6'].r_peak_time_ms):.0f} | "
            f"{m.limb_to_precordial_ratio:.2f} | {max(m[n].peak_to_peak_mV for n in m.leads):.2f} | "
            f"{max(m[n].notches for n in m.leads)} | {concordant}/4 |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dx", type=float, default=1.0)
    parser.add_argument("--model", default="mitchell_schaeffer", choices=["mitchell_schaeffer", "tt06"])
    parser.add_argument("--figures", type=Path, help="directory for the ECG figures")
    add_json_option(parser, "ecg_physiology")
    args = parser.parse_args()
    bench = Run("ecg_physiology", "The bounded torso", "cost")

    import os

    cache = tempfile.mkdtemp(prefix="ecgi-bench-cache-")
    os.environ["ECGI_CACHE_DIR"] = cache  # a cold lead-field cache: the set-up is measured
    rows, cost = [], {}
    try:
        for i, condition in enumerate(CONDITIONS):
            torso, setup, provenance = simulate(patient(condition, args.dx, args.model, "torso"))
            infinite, setup_infinite, _ = simulate(patient(condition, args.dx, args.model, "infinite"))
            if i == 0:
                cost = {"tissue_voxels": provenance["tissue_voxels"], "lead_field_setup_s": setup - setup_infinite,
                        "loop_s": provenance["wall_time_s"], "ecg_s": provenance["observer_time_s"]}
                print(f"dx {args.dx} mm, {args.model}: {provenance['tissue_voxels']} tissue voxels")
                print(f"  set-up with the torso lead fields solved: {setup:.1f} s; in the infinite medium: "
                      f"{setup_infinite:.1f} s; lead fields: {setup - setup_infinite:.1f} s "
                      f"({(setup - setup_infinite) / (setup + provenance['wall_time_s']):.0%} of this patient)")
                print(f"  time loop {provenance['wall_time_s']:.1f} s; ECG product "
                      f"{provenance['observer_time_s']:.2f} s ({provenance['observer_time_s'] / provenance['wall_time_s']:.1%})")
            rows.append(criteria_row(condition, torso))
            if args.figures:
                args.figures.mkdir(parents=True, exist_ok=True)
                plot(condition, torso, infinite, args.figures / f"{condition}-ecg.png")
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    print("| condition | QRS (ms) | axis (deg) | net area I / II / aVR (mV ms) | R/S V1 / V2 / V5 / V6 "
          "| R-peak time V5-6 (ms) | limb / precordial | largest QRS (mV) | most notches | T concordant |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    what = f"dx {args.dx:g} mm, {args.model}"
    bench.write(args.json, [Figure(f"{what}: lead-field set-up, once per torso", cost["lead_field_setup_s"], "s"),
                            Figure(f"{what}: ECG product, share of the time loop", cost["ecg_s"] / cost["loop_s"], "fraction")],
                details={"cost": cost, "criteria": rows})


if __name__ == "__main__":
    main()
