"""Two campaign workers on two cores, with the BLAS's own thread pool and
with one thread per process (what campaign workers get since ecgi sets
OMP/OPENBLAS/MKL_NUM_THREADS=1 in their start-up): seconds per sample and
the ECG product's share.

    python -m bench.worker_threads [--dx 2.5] [--samples 3] [--json PATH]

Each mode starts two worker processes at once, each running ``--samples``
patients of one anatomy (Mitchell–Schaeffer, 500 ms); the modes alternate
so that machine noise hits both.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

from bench.harness import REPO, Comparison, Figure, Run, add_json_option

THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")

WORKER = r"""
import json, sys, time
from mpi4py import MPI
import solver.patient as patient
from bench.patients import bench_patient

dx, samples = float(sys.argv[1]), int(sys.argv[2])
def config(condition, duration):
    return bench_patient(condition, dx, duration)
patient.PatientSimulation(config("normal", 20.0), MPI.COMM_SELF).run()  # warm: kernels, lead fields
total = ecg = 0.0
for i in range(samples):
    start = time.perf_counter()
    sim = patient.PatientSimulation(config(("normal", "lbbb", "rbbb")[i % 3], 500.0), MPI.COMM_SELF)
    recorder = sim.simulation.observers[-1]
    record = recorder.record
    def timed(*args, _record=record):
        global ecg
        t = time.perf_counter(); _record(*args); ecg += time.perf_counter() - t
    recorder.record = timed
    sim.run()
    total += time.perf_counter() - start
print(json.dumps({"s_per_sample": total / samples, "ecg_s_per_sample": ecg / samples}))
"""


def run_pair(dx: float, samples: int, one_thread: bool) -> list[dict]:
    env = {k: v for k, v in os.environ.items() if k not in THREAD_VARIABLES}
    if one_thread:
        env.update({name: "1" for name in THREAD_VARIABLES})
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, str(dx), str(samples)], cwd=REPO, env=env,
                              stdout=subprocess.PIPE, text=True) for _ in range(2)]
    return [json.loads(p.communicate()[0].strip().splitlines()[-1]) for p in procs]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dx", type=float, default=2.5)
    parser.add_argument("--samples", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2)
    add_json_option(parser, "worker_threads")
    args = parser.parse_args()
    bench = Run("worker_threads", "Two workers on two cores", "cost")
    results = {"BLAS thread pool": [], "one thread per process": []}
    for _ in range(args.rounds):
        results["BLAS thread pool"] += run_pair(args.dx, args.samples, one_thread=False)
        results["one thread per process"] += run_pair(args.dx, args.samples, one_thread=True)
    for mode, rows in results.items():
        s = sum(r["s_per_sample"] for r in rows) / len(rows)
        e = sum(r["ecg_s_per_sample"] for r in rows) / len(rows)
        print(f"{mode:24s} {s:5.2f} s per sample per worker, ECG product {e:5.2f} s ({100 * e / s:4.1f} %)")
    pool, one = (sum(r["s_per_sample"] for r in results[m]) / len(results[m]) for m in results)
    name = f"dx {args.dx:g} mm: wall time per sample per worker, one BLAS thread"
    bench.write(args.json, [Figure(name, one, "s")], [Comparison(name, "BLAS thread pool", "previous", pool, "s")],
                details=results)


if __name__ == "__main__":
    main()
