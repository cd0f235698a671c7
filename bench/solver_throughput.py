"""Solver throughput: node-steps per second per core, against the memory roofline.

    python -m bench.solver_throughput [--voxels 300000] [--steps 300] [--tt06-kernel exact] [--json PATH]
    python -m bench.solver_throughput --compare-tt06-kernels [--repeats 5] [--niederer 0.5 0.05 300]

Runs a slab of about --voxels tissue voxels (oblique fibres, so the full
19-point stencil) with each ionic model for --steps explicit steps, on 1 and
on 2 MPI ranks, and reports:

* node-steps/s per core, split into ionic kernel and diffusion (MatMult);
* the parallel efficiency from 1 to 2 ranks (rate_2 / (2 rate_1));
* this machine's memory bandwidth (a STREAM-like triad, one core) and the
  bandwidth roofline of each part: the node-steps/s the bytes it must move
  would allow if it were purely bandwidth-bound.

``--compare-tt06-kernels`` instead times TT06's exact and tabulated kernels
(``ionic.tt06_kernel``) against each other, interleaved, ``--repeats``
times each, and writes bench/results/tt06_kernels.json: the membrane
kernel alone (in this process, cells spread over rest, upstroke and
plateau) and whole Niederer slab runs (one MPI rank each, the kernels
alternating), with the largest difference in activation time between them.
On a shared machine each figure is the best of its repeats, and the load
average is recorded beside each run.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import time

import numpy as np

from bench.harness import REPO, RESULTS, Comparison, Figure, Run

#: What the solver set out to reach per core (node-steps/s, 1 rank) and from 1 to 2 ranks.
GOALS = {"tt06": 5e6, "mitchell_schaeffer": 20e6}
NAMES = {"tt06": "TT06", "mitchell_schaeffer": "Mitchell–Schaeffer"}
GOAL_EFFICIENCY = 0.85


def stream_triad_gbs(n: int = 20_000_000, repeats: int = 5) -> float:
    """Best-of triad a = b + s c on one core, counted as 24 bytes per element."""
    import numba

    @numba.njit(cache=True)
    def triad(a, b, c, s):
        for i in range(a.shape[0]):
            a[i] = b[i] + s * c[i]

    a, b, c = np.zeros(n), np.ones(n), np.full(n, 2.0)
    triad(a, b, c, 3.0)
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        triad(a, b, c, 3.0)
        best = min(best, time.perf_counter() - t0)
    return 24 * n / best / 1e9


def slab_config(voxels: int, model: str, steps: int, dt: float = 0.02, dx: float = 0.25,
                tt06_kernel: str = "exact") -> dict:
    # A 4 : 2 : 1 block of about `voxels` voxels.
    side = (voxels / 8) ** (1 / 3)
    size = [round(4 * side) * dx, round(2 * side) * dx, round(side) * dx]
    return {
        "anatomy": {"dx_mm": dx, "slab": {"size_mm": size, "fibre_direction": [0.8, 0.5, 0.3]}},
        "conductivity": {"intracellular": {"longitudinal": 0.17, "transverse": 0.019},
                         "extracellular": {"longitudinal": 0.62, "transverse": 0.24}},
        "ionic": {"model": model, "tt06_kernel": tt06_kernel},
        "time": {"dt_ms": dt, "duration_ms": steps * dt},
        "stimuli": [{"amplitude_uA_per_mm3": 50, "box": {"min_mm": [0, 0, 0], "max_mm": [1, 1, 1]}}],
        "output": {"interval_ms": dt * 50},
    }


# Bytes each part must move per node-step at least (read + write of the
# state it touches), for the bandwidth roofline.
def ionic_bytes(n_states: int) -> int:
    return 16 * (n_states + 1) + 8 + 1  # states and Vm in and out, stimulus, cell type


def diffusion_bytes(nonzeros_per_row: float) -> float:
    return nonzeros_per_row * 12 + 4 + 3 * 8  # CSR values + column indices, row pointer, x, y, axpy


def worker(args) -> None:
    from mpi4py import MPI

    from solver.numerics.config import config_from_dict
    from solver.numerics.simulation import Simulation

    comm = MPI.COMM_WORLD
    config = config_from_dict(slab_config(args.voxels, args.model, args.steps, tt06_kernel=args.tt06_kernel))
    sim = Simulation(config, comm)
    warm = config_from_dict(slab_config(1000, args.model, 5, tt06_kernel=args.tt06_kernel))
    Simulation(warm, comm).run()  # compile the kernels before timing
    comm.Barrier()
    result = sim.run()
    info = sim.operator.matrix.getInfo()
    if comm.rank == 0:
        p = result.provenance
        print(json.dumps({
            "model": args.model, "ranks": comm.size, "voxels": p["tissue_voxels"], "steps": p["steps"],
            "wall_s": p["wall_time_s"], "ionic_s": p["ionic_time_s"], "diffusion_s": p["diffusion_time_s"],
            "nonzeros_per_row": info["nz_used"] / p["tissue_voxels"], "n_states": sim.model.n_states,
        }))


def run_worker(model: str, ranks: int, voxels: int, steps: int, tt06_kernel: str = "exact") -> dict:
    return _run_module(["--worker", "--model", model, "--voxels", str(voxels), "--steps", str(steps),
                        "--tt06-kernel", tt06_kernel], ranks)


def _run_module(arguments: list[str], ranks: int = 1) -> dict:
    """This module as a child (under mpiexec for several ranks): the JSON line it prints last."""
    command = [sys.executable, "-m", "bench.solver_throughput", *arguments]
    if ranks > 1:
        command = [shutil.which("mpiexec") or "mpiexec", "-n", str(ranks), "--bind-to", "core", *command]
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    out = subprocess.run(command, check=True, capture_output=True, text=True, env=env, cwd=REPO).stdout
    return json.loads(out.strip().splitlines()[-1])


# ---------------------------------------------------------------- TT06 kernels

TT06_KERNELS = ("exact", "tabulated")


def kernel_rates(dt: float, cells: int, steps: int, repeats: int) -> dict[str, list[float]]:
    """TT06 membrane kernel alone, cell-steps/s of each kernel per repeat, the
    kernels alternating.  Cells of one type (epi) spread evenly over -86..40 mV,
    as across a wave front and its plateau, restarted from there each repeat."""
    from solver.numerics.ionic import EPI, TenTusscherPanfilov2006

    cell_type = np.full(cells, EPI, dtype=np.int8)
    zero = np.zeros(cells)
    models = {k: TenTusscherPanfilov2006(kernel=k) for k in TT06_KERNELS}
    vm0, states0 = models["exact"].initial_state(cell_type)
    vm0[:] = np.linspace(-86.0, 40.0, cells)
    for model in models.values():  # compile and build the table before timing
        model.step(vm0.copy(), states0.copy(), zero, dt, cell_type)
    rates: dict[str, list[float]] = {k: [] for k in TT06_KERNELS}
    for _ in range(repeats):
        for kernel, model in models.items():
            vm, states = vm0.copy(), states0.copy()
            t0 = time.perf_counter()
            for _ in range(steps):
                model.step(vm, states, zero, dt, cell_type)
            rates[kernel].append(cells * steps / (time.perf_counter() - t0))
    return rates


def niederer_worker(args) -> None:
    """One Niederer slab run with the kernel named: wall and membrane time, activation times."""
    from mpi4py import MPI

    from solver.numerics.simulation import Simulation
    from solver.verification.niederer import (
        activation_at_points,
        niederer_config,
        points_mm,
    )

    dx, dt, duration = args.niederer[:3]
    warm = niederer_config(1.0, dt, max_duration_ms=5 * dt)
    warm.ionic.tt06_kernel = args.tt06_kernel
    Simulation(warm, MPI.COMM_WORLD).run()  # compile or load the kernels, build the table, before timing
    config = niederer_config(dx, dt, max_duration_ms=duration)
    config.ionic.tt06_kernel = args.tt06_kernel
    load = list(os.getloadavg())
    result = Simulation(config, MPI.COMM_WORLD).run()
    p = result.provenance
    print(json.dumps({
        "kernel": args.tt06_kernel, "voxels": p["tissue_voxels"], "steps": p["steps"], "wall_s": p["wall_time_s"],
        "ionic_s": p["ionic_time_s"], "load_start": load, "load_end": list(os.getloadavg()),
        "activation_ms": activation_at_points(result, points_mm()),
    }))


def niederer_runs(dx: float, dt: float, duration: float, repeats: int) -> dict[str, list[dict]]:
    """Whole Niederer runs of each kernel, alternating, ``repeats`` times each."""
    runs: dict[str, list[dict]] = {k: [] for k in TT06_KERNELS}
    for _ in range(repeats):
        for kernel in TT06_KERNELS:
            runs[kernel].append(_run_module(["--niederer-worker", "--tt06-kernel", kernel,
                                             "--niederer", str(dx), str(dt), str(duration)]))
    return runs


def activation_difference(runs: dict[str, list[dict]]) -> tuple[float, int]:
    """Largest |tabulated - exact| activation time over the points both activated, and how many."""
    exact, tabulated = runs["exact"][0]["activation_ms"], runs["tabulated"][0]["activation_ms"]
    both = [k for k in exact if math.isfinite(exact[k]) and math.isfinite(tabulated[k])]
    return max((abs(tabulated[k] - exact[k]) for k in both), default=math.nan), len(both)


def compare_tt06_kernels(args) -> None:
    """Exact against tabulated: the membrane kernel alone, then whole Niederer runs, interleaved."""
    if len(args.niederer) % 3:
        raise SystemExit("--niederer takes DX DT MS, once per grid")
    grids = [tuple(args.niederer[i:i + 3]) for i in range(0, len(args.niederer), 3)]
    run = Run("tt06_kernels", "TT06 kernels: exact and tabulated", "throughput")
    rates = kernel_rates(grids[0][1], args.kernel_cells, args.kernel_steps, args.repeats)
    best = {k: max(v) for k, v in rates.items()}
    found = [Figure("Membrane kernel alone, tabulated", best["tabulated"], "node-steps/s")]
    compared = [Comparison(found[0].name, "exact kernel", "previous", best["exact"], "node-steps/s")]
    details = {"kernel_dt_ms": grids[0][1], "kernel_cells": args.kernel_cells, "kernel_steps": args.kernel_steps,
               "repeats": args.repeats, "kernel_rates": rates,
               "speedup_kernel_alone": best["tabulated"] / best["exact"], "niederer": []}
    _run_module(["--niederer-worker", "--tt06-kernel", "tabulated", "--niederer", "0.5", "0.05", "5"])  # compile
    for dx, dt, duration in grids:
        runs = niederer_runs(dx, dt, duration, args.repeats)
        diff, points = activation_difference(runs)
        node_steps = runs["exact"][0]["voxels"] * runs["exact"][0]["steps"]
        wall = {k: min(r["wall_s"] for r in v) for k, v in runs.items()}
        ionic = {k: min(r["ionic_s"] for r in v) for k, v in runs.items()}
        grid = f"Niederer dx {dx:g} mm, dt {dt:g} ms, {duration:g} ms"
        membrane = Figure(f"{grid}: membrane kernel, tabulated", node_steps / ionic["tabulated"], "node-steps/s")
        whole = Figure(f"{grid}: whole run, tabulated", node_steps / wall["tabulated"], "node-steps/s")
        found += [membrane, whole]
        compared += [Comparison(membrane.name, "exact kernel", "previous", node_steps / ionic["exact"], "node-steps/s"),
                     Comparison(whole.name, "exact kernel", "previous", node_steps / wall["exact"], "node-steps/s")]
        if points:  # in microseconds: the difference is far below what milliseconds would show
            accuracy = Figure(f"{grid}: largest activation-time difference ({points} points)", 1e3 * diff, "us")
            found.append(accuracy)
            compared.append(Comparison(accuracy.name, "goal", "goal", 100.0, "us"))
        details["niederer"].append({
            "dx_mm": dx, "dt_ms": dt, "duration_ms": duration, "runs": runs, "activation_difference_ms": diff,
            "speedup_membrane": ionic["exact"] / ionic["tabulated"], "speedup_run": wall["exact"] / wall["tabulated"]})
    run.write(args.json, found, compared, details=details)
    if args.json == "-":
        return
    print(f"membrane kernel alone: tabulated {best['tabulated']:.3g}, exact {best['exact']:.3g} cell-steps/s "
          f"(x{details['speedup_kernel_alone']:.2f})")
    for g in details["niederer"]:
        print(f"Niederer dx {g['dx_mm']:g} dt {g['dt_ms']:g}: membrane x{g['speedup_membrane']:.2f}, "
              f"whole run x{g['speedup_run']:.2f}; activation times within {g['activation_difference_ms']:.2g} ms")


def figures(rows: list[dict], bandwidth_gbs: float) -> tuple[list[Figure], list[Comparison]]:
    """Each model's rate per core and parallel efficiency, against the goals and the kernels' rooflines."""
    found, compared = [], []
    for r in rows:
        model = NAMES.get(r["model"], r["model"])
        roofline = f"roofline at {bandwidth_gbs:.1f} GB/s"
        rate = f"{model}: node-steps/s per core, 1 rank"
        efficiency = f"{model}: parallel efficiency, 1 to 2 ranks"
        kernel = f"{model}: membrane kernel, node-steps/s"
        diffusion = f"{model}: diffusion (MatMult, AXPY), node-steps/s"
        found += [Figure(rate, r["node_steps_per_s_per_core_1rank"], "node-steps/s"),
                  Figure(efficiency, r["parallel_efficiency"], "fraction"),
                  Figure(kernel, r["ionic_node_steps_per_s"], "node-steps/s"),
                  Figure(diffusion, r["diffusion_node_steps_per_s"], "node-steps/s")]
        compared += [Comparison(efficiency, "goal", "goal", GOAL_EFFICIENCY, "fraction"),
                     Comparison(kernel, roofline, "roofline", r["ionic_roofline"], "node-steps/s"),
                     Comparison(diffusion, roofline, "roofline", r["diffusion_roofline"], "node-steps/s")]
        if r["model"] in GOALS:
            compared.append(Comparison(rate, "goal", "goal", GOALS[r["model"]], "node-steps/s"))
    return found, compared


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--voxels", type=int, default=300_000)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--models", nargs="+", default=["tt06", "mitchell_schaeffer"])
    parser.add_argument("--tt06-kernel", choices=TT06_KERNELS, default="exact", help="TT06's kernel (default exact)")
    parser.add_argument("--compare-tt06-kernels", action="store_true",
                        help="time TT06's exact and tabulated kernels against each other instead")
    parser.add_argument("--repeats", type=int, default=5, help="with --compare-tt06-kernels: runs of each kernel")
    parser.add_argument("--niederer", type=float, nargs="+", default=[0.5, 0.05, 300.0], metavar="DX DT MS",
                        help="with --compare-tt06-kernels: the Niederer slab's grid and longest duration, "
                             "three numbers per grid (default 0.5 0.05 300)")
    parser.add_argument("--kernel-cells", type=int, default=50_000)
    parser.add_argument("--kernel-steps", type=int, default=50)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--niederer-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--json", metavar="PATH", default=None,
                        help="write the result here (default bench/results/solver_throughput.json, or "
                             "tt06_kernels.json with --compare-tt06-kernels; '-' prints it)")
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    if args.niederer_worker:
        niederer_worker(args)
        return
    if args.compare_tt06_kernels:
        args.json = args.json or str(RESULTS / "tt06_kernels.json")
        compare_tt06_kernels(args)
        return
    args.json = args.json or str(RESULTS / "solver_throughput.json")

    run = Run("solver_throughput", "Solver", "throughput")
    bandwidth = stream_triad_gbs()
    rows = []
    for model in args.models:
        runs = {ranks: run_worker(model, ranks, args.voxels, args.steps, args.tt06_kernel) for ranks in (1, 2)}
        one = runs[1]
        per_core = {r: run["voxels"] * run["steps"] / run["wall_s"] / r for r, run in runs.items()}
        ionic_rate = one["voxels"] * one["steps"] / one["ionic_s"]
        diffusion_rate = one["voxels"] * one["steps"] / one["diffusion_s"]
        ionic_roof = bandwidth * 1e9 / ionic_bytes(one["n_states"])
        diffusion_roof = bandwidth * 1e9 / diffusion_bytes(one["nonzeros_per_row"])
        rows.append({
            "model": model, "voxels": one["voxels"], "steps": one["steps"],
            "node_steps_per_s_per_core_1rank": per_core[1],
            "node_steps_per_s_per_core_2ranks": per_core[2],
            "parallel_efficiency": per_core[2] / per_core[1],
            "ionic_node_steps_per_s": ionic_rate, "ionic_roofline": ionic_roof,
            "diffusion_node_steps_per_s": diffusion_rate, "diffusion_roofline": diffusion_roof,
            "ionic_share": one["ionic_s"] / one["wall_s"],
        })
    report = {"stream_triad_GBps": bandwidth, "cores": os.cpu_count(), "results": rows}
    run.write(args.json, *figures(rows, bandwidth), details=report)
    if args.json == "-":
        return
    print(f"memory bandwidth (triad, 1 core): {bandwidth:.1f} GB/s")
    for r in rows:
        print(f"\n{r['model']}: {r['voxels']} voxels x {r['steps']} steps")
        print(f"  node-steps/s per core, 1 rank : {r['node_steps_per_s_per_core_1rank']:.3g}")
        print(f"  node-steps/s per core, 2 ranks: {r['node_steps_per_s_per_core_2ranks']:.3g}"
              f"  (parallel efficiency {100 * r['parallel_efficiency']:.0f}%)")
        print(f"  ionic kernel : {r['ionic_node_steps_per_s']:.3g} node-steps/s "
              f"({100 * r['ionic_node_steps_per_s'] / r['ionic_roofline']:.0f}% of its bandwidth roofline "
              f"{r['ionic_roofline']:.3g}); {100 * r['ionic_share']:.0f}% of the time")
        print(f"  diffusion    : {r['diffusion_node_steps_per_s']:.3g} node-steps/s "
              f"({100 * r['diffusion_node_steps_per_s'] / r['diffusion_roofline']:.0f}% of its bandwidth roofline "
              f"{r['diffusion_roofline']:.3g})")


if __name__ == "__main__":
    main()
