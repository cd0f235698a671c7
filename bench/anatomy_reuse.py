"""Samples per core-hour with and without reusing a heart across the samples
of one anatomy (what a campaign worker does), on one core.

    python -m bench.anatomy_reuse --dx 2.0 --samples 6 [--json PATH]

Samples of one anatomy differ in condition (normal, LBBB, RBBB, in turn);
each is timed from its configuration to its result.  "rebuilt" clears the
per-process heart cache before every sample, as every sample did before the
cache; the two modes alternate, so machine noise hits both alike.
"""
from __future__ import annotations

import argparse
import time

from mpi4py import MPI

import solver.patient as patient
import solver.patient.simulation as patient_simulation
from bench.harness import Comparison, Figure, Run, add_json_option
from bench.patients import bench_patient

CONDITIONS = ("normal", "lbbb", "rbbb")


def one_sample(condition: str, dx: float, duration: float) -> float:
    config = bench_patient(condition, dx, duration)
    start = time.perf_counter()
    patient.PatientSimulation(config, MPI.COMM_SELF).run()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dx", type=float, default=2.0)
    parser.add_argument("--duration", type=float, default=500.0)
    parser.add_argument("--samples", type=int, default=6)
    add_json_option(parser, "anatomy_reuse")
    args = parser.parse_args()
    bench = Run("anatomy_reuse", "Samples of one anatomy", "cost")
    one_sample("normal", args.dx, 20.0)  # warm: calibration, lead fields, compiled kernels
    times = {"rebuilt": [], "reused": []}
    for i in range(args.samples):
        condition = CONDITIONS[i % len(CONDITIONS)]
        patient_simulation._HEARTS.clear()
        times["rebuilt"].append(one_sample(condition, args.dx, args.duration))
        times["reused"].append(one_sample(condition, args.dx, args.duration))  # heart from the cache
    for mode, values in times.items():
        mean = sum(values) / len(values)
        print(f"{mode:8s} {mean:6.2f} s/sample  {3600 / mean:7.0f} samples per core-hour")
    print(f"speed-up {sum(times['rebuilt']) / sum(times['reused']):.2f}x")
    reused, rebuilt = (sum(times[m]) / len(times[m]) for m in ("reused", "rebuilt"))
    name = f"dx {args.dx:g} mm, {args.duration:g} ms: wall time per sample, heart reused"
    bench.write(args.json, [Figure(name, reused, "s")],
                [Comparison(name, "heart rebuilt for every sample", "previous", rebuilt, "s")], details=times)


if __name__ == "__main__":
    main()
