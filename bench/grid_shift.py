"""What the grid adds: the same patients on grids moved by fractions of a voxel.

    python -m bench.grid_shift [SPEC] [--patients 4] [--dx 2.5 2.0 1.5] [--shifts 3] [--json PATH]

A patient is a continuous shape; its voxel grid is a choice of the solver.
Moving the grid by a fraction of a voxel (``heart.grid_offset_mm``) leaves
the patient as it was, so every change of the 75 sites' activation times is
the discretisation's: a floor under the error of any predictor trained on
these simulations, which no other anatomy can teach it.

For each grid spacing this runs ``--patients`` samples of the spec (the
first drawn of evenly spaced anatomies) on ``--shifts`` + 1 grids, moved by
k / (2 * shifts) of a voxel along each axis, in two ways of reading sites and
roots from the grid:

* ``footprint``: each site a soft nearest of voxels around its point, each
  root a patch spread from a point of the surface (the default);
* ``nearest``: each site and each root's centre the nearest voxel alone,
  the whole root patch at once (``footprint_softness_voxels: 0``,
  ``root_spread_m_per_s: null``).

It reports the mean absolute difference of the site activation times
between the unshifted grid and each shifted one, over sites, patients and
shifts; divided by sqrt 2 it is the error floor for a predictor that knows
the patient exactly but not the grid.
"""
from __future__ import annotations

import argparse
import time
from dataclasses import replace

import numpy as np
from mpi4py import MPI

from bench.harness import REPO, Comparison, Figure, Run, add_json_option
from solver.patient import PatientSimulation
from solver.patient.config import PatientConfig
from workflow.patients import patient_config
from workflow.sampling import plan_samples
from workflow.spec import load_spec
READINGS = {"footprint": (0.5, 1.2), "nearest": (0.0, None)}  # softness (voxels), root spread (m/s)


def variant(config: PatientConfig, dx: float, offset: float, reading: str) -> PatientConfig:
    softness, spread = READINGS[reading]
    heart = replace(config.heart, dx_mm=dx, grid_offset_mm=(offset,) * 3, footprint_softness_voxels=softness)
    return replace(config, heart=heart, activation=replace(config.activation, root_spread_m_per_s=spread))


def site_activation(config: PatientConfig) -> np.ndarray:
    with PatientSimulation(config, MPI.COMM_SELF) as simulation:
        return simulation.run().site_activation_ms


def figures(rows: list[dict]) -> tuple[list[Figure], list[Comparison]]:
    """How far the sites move per grid spacing, read through footprints against the nearest voxel (before)."""
    found, compared = [], []
    for dx in sorted({r["dx_mm"] for r in rows}, reverse=True):
        by_reading = {r["reading"]: r for r in rows if r["dx_mm"] == dx}
        name = f"dx {dx:g} mm: sites move when the grid moves"
        if "footprint" in by_reading:
            found.append(Figure(name, by_reading["footprint"]["mad_ms"], "ms"))
            if "nearest" in by_reading:
                compared.append(Comparison(name, "nearest voxel", "previous", by_reading["nearest"]["mad_ms"], "ms"))
    return found, compared


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("spec", nargs="?", default=str(REPO / "examples" / "campaigns" / "published-8k-fixed-roots.yaml"))
    parser.add_argument("--patients", type=int, default=4)
    parser.add_argument("--dx", type=float, nargs="+", default=[2.5, 2.0, 1.5])
    parser.add_argument("--shifts", type=int, default=3)
    add_json_option(parser, "grid_shift")
    args = parser.parse_args()
    bench = Run("grid_shift", "What the grid adds", "checks")
    spec = load_spec(args.spec)
    plans = plan_samples(spec)
    chosen = plans[::max(1, len(plans) // args.patients)][:args.patients]
    rows = []
    for dx in args.dx:
        for reading in READINGS:
            start, differences = time.perf_counter(), []
            for plan in chosen:
                config = patient_config(spec, plan)
                offsets = [dx * k / (2 * args.shifts) for k in range(args.shifts + 1)]
                maps = [site_activation(variant(config, dx, offset, reading)) for offset in offsets]
                differences += [float(np.nanmean(np.abs(m - maps[0]))) for m in maps[1:]]
            seconds = (time.perf_counter() - start) / (len(chosen) * (args.shifts + 1))
            rows.append({"dx_mm": dx, "reading": reading, "mad_ms": float(np.mean(differences)),
                         "max_pair_mad_ms": float(np.max(differences)), "floor_ms": float(np.mean(differences) / np.sqrt(2)),
                         "seconds_per_sample": seconds})
            if args.json != "-":
                r = rows[-1]
                print(f"dx {dx:.2f} mm, {reading:9s}: sites move {r['mad_ms']:.2f} ms (worst pair {r['max_pair_mad_ms']:.2f}), "
                      f"floor {r['floor_ms']:.2f} ms; {seconds:.1f} s per sample", flush=True)
    bench.write(args.json, *figures(rows),
                details={"spec": args.spec, "patients": len(chosen), "shifts": args.shifts, "rows": rows})


if __name__ == "__main__":
    main()
