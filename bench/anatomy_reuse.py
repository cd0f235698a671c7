"""Samples per core-hour with and without reusing a heart across the samples
of one anatomy (what a campaign worker does), on one core.

    python bench/anatomy_reuse.py --dx 2.0 --samples 6

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
from bench_patients import bench_patient

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
    args = parser.parse_args()
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


if __name__ == "__main__":
    main()
