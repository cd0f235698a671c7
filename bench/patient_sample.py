"""Wall time of one default synthetic-patient sample, split by phase.

    python -m bench.patient_sample [--model tt06] [--dx 1.0] [--dt 0.05] [--duration 500] [--json PATH]

Runs the default heart (normal activation) on 1 and on 2 MPI ranks and
reports set-up (heart, Laplace solves, fibres, calibration, sites), the
time loop split into membrane models, diffusion and the ECG, and the
writing of the sample file.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.harness import REPO, Figure, Run, add_json_option

MODELS = {"tt06": "TT06", "mitchell_schaeffer": "Mitchell–Schaeffer"}


def worker(args) -> None:
    from mpi4py import MPI

    from solver.patient import PatientSimulation, load_patient_config, write_sample

    comm = MPI.COMM_WORLD
    config = load_patient_config({
        "heart": {"dx_mm": args.dx}, "ionic": {"model": args.model},
        "time": {"dt_ms": args.dt, "duration_ms": args.duration, "diffusion": "auto"},
    })
    # Warm-up: compile kernels and fill the calibration cache outside the timing.
    PatientSimulation(load_patient_config({"heart": {"dx_mm": 3.0}, "ionic": {"model": args.model},
                                           "time": {"dt_ms": args.dt, "duration_ms": 5}}), comm).run()
    PatientSimulation(config, comm)
    comm.Barrier()
    t0 = time.perf_counter()
    patient = PatientSimulation(config, comm)
    setup = time.perf_counter() - t0
    sample = patient.run()
    if comm.rank == 0:
        t1 = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            write_sample(Path(tmp) / "sample.h5", sample)
        write = time.perf_counter() - t1
        p = sample.result.provenance
        print(json.dumps({
            "ranks": comm.size, "voxels": p["tissue_voxels"], "steps": p["steps"], "setup_s": setup,
            "loop_s": p["wall_time_s"], "ionic_s": p["ionic_time_s"], "diffusion_s": p["diffusion_time_s"],
            "ecg_s": p["observer_time_s"], "write_s": write,
        }))


def run(ranks: int, args) -> dict:
    from workflow.mpi_env import clean_mpi_env

    command = [sys.executable, "-m", "bench.patient_sample", "--worker", "--model", args.model, "--dx", str(args.dx),
               "--dt", str(args.dt), "--duration", str(args.duration)]
    if ranks > 1:
        command = [shutil.which("mpiexec") or "mpiexec", "-n", str(ranks), *command]
    env = {**clean_mpi_env(), "OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"}
    out = subprocess.run(command, check=True, capture_output=True, text=True, env=env, cwd=REPO).stdout
    return json.loads(out.strip().splitlines()[-1])


def total_s(result: dict) -> float:
    return result["setup_s"] + result["loop_s"] + result["write_s"]


def figures(results: list[dict]) -> list[Figure]:
    """Wall time of the sample on 1 and on 2 ranks."""
    return [Figure(f"wall time, {r['ranks']} rank{'s' if r['ranks'] > 1 else ''}", total_s(r), "s") for r in results]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--model", default="tt06")
    parser.add_argument("--dx", type=float, default=1.0)
    parser.add_argument("--dt", type=float, default=0.05)
    parser.add_argument("--duration", type=float, default=500.0)
    add_json_option(parser, "patient_sample")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    bench = Run("patient_sample", f"One synthetic patient: {MODELS.get(args.model, args.model)}, default heart at "
                f"{args.dx:g} mm, {args.duration:g} ms", "cost")
    results = [run(r, args) for r in (1, 2)]
    bench.write(args.json, figures(results), details=results)
    if args.json == "-":
        return
    print(f"default heart, {args.model}, dx {args.dx} mm, dt {args.dt} ms, {args.duration} ms "
          f"({results[0]['voxels']} voxels, {results[0]['steps']} steps)")
    for r in results:
        other = r["loop_s"] - r["ionic_s"] - r["diffusion_s"] - r["ecg_s"]
        total = r["setup_s"] + r["loop_s"] + r["write_s"]
        print(f"  {r['ranks']} rank(s): total {total:6.1f} s = set-up {r['setup_s']:.1f} + membrane {r['ionic_s']:.1f} "
              f"+ diffusion {r['diffusion_s']:.1f} + ECG {r['ecg_s']:.2f} + other {other:.1f} + write {r['write_s']:.2f} s")


if __name__ == "__main__":
    main()
