"""Solver throughput: node-steps per second per core, against the memory roofline.

    python -m bench.solver_throughput [--voxels 300000] [--steps 300] [--json PATH]

Runs a slab of about --voxels tissue voxels (oblique fibres, so the full
19-point stencil) with each ionic model for --steps explicit steps, on 1 and
on 2 MPI ranks, and reports:

* node-steps/s per core, split into ionic kernel and diffusion (MatMult);
* the parallel efficiency from 1 to 2 ranks (rate_2 / (2 rate_1));
* this machine's memory bandwidth (a STREAM-like triad, one core) and the
  bandwidth roofline of each part: the node-steps/s the bytes it must move
  would allow if it were purely bandwidth-bound.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np

from bench.harness import REPO, Comparison, Figure, Run, add_json_option

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


def slab_config(voxels: int, model: str, steps: int, dt: float = 0.02, dx: float = 0.25) -> dict:
    # A 4 : 2 : 1 block of about `voxels` voxels.
    side = (voxels / 8) ** (1 / 3)
    size = [round(4 * side) * dx, round(2 * side) * dx, round(side) * dx]
    return {
        "anatomy": {"dx_mm": dx, "slab": {"size_mm": size, "fibre_direction": [0.8, 0.5, 0.3]}},
        "conductivity": {"intracellular": {"longitudinal": 0.17, "transverse": 0.019},
                         "extracellular": {"longitudinal": 0.62, "transverse": 0.24}},
        "ionic": {"model": model},
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
    config = config_from_dict(slab_config(args.voxels, args.model, args.steps))
    sim = Simulation(config, comm)
    warm = config_from_dict(slab_config(1000, args.model, 5))
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


def run_worker(model: str, ranks: int, voxels: int, steps: int) -> dict:
    command = [sys.executable, "-m", "bench.solver_throughput", "--worker", "--model", model, "--voxels", str(voxels), "--steps", str(steps)]
    if ranks > 1:
        command = [shutil.which("mpiexec") or "mpiexec", "-n", str(ranks), "--bind-to", "core", *command]
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    out = subprocess.run(command, check=True, capture_output=True, text=True, env=env, cwd=REPO).stdout
    return json.loads(out.strip().splitlines()[-1])


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
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    add_json_option(parser, "solver_throughput")
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return

    run = Run("solver_throughput", "Solver", "throughput")
    bandwidth = stream_triad_gbs()
    rows = []
    for model in args.models:
        runs = {ranks: run_worker(model, ranks, args.voxels, args.steps) for ranks in (1, 2)}
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
