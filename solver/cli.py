"""``ecgi simulate`` and ``ecgi bench``: the solver's commands."""
from __future__ import annotations

import argparse
import json
import sys


def add_commands(commands) -> None:
    simulate = commands.add_parser(
        "simulate",
        help="run one simulation from a YAML configuration (works under mpiexec)",
        description="Run one monodomain simulation and write its HDF5 file. "
        "Run as `mpiexec -n K ecgi simulate CONFIG -o OUT.h5` to use K ranks.",
    )
    simulate.add_argument("config", help="simulation configuration (YAML)")
    simulate.add_argument("-o", "--output", required=True, help="HDF5 file to write")
    simulate.add_argument("--quiet", action="store_true", help="no progress line")
    simulate.set_defaults(handler=run_simulate)

    bench = commands.add_parser("bench", help="verification benchmarks of the solver")
    benches = bench.add_subparsers(dest="bench", metavar="BENCHMARK", required=True)
    niederer = benches.add_parser(
        "niederer",
        help="the Niederer et al. 2011 N-version slab benchmark",
        description="Run the Niederer 2011 benchmark and print activation times (ms) at the "
        "8 corners and the centre of the 20 x 7 x 3 mm slab.",
    )
    niederer.add_argument("--dx", type=float, default=0.5, help="voxel size in mm (default 0.5)")
    niederer.add_argument("--dt", type=float, default=0.05, help="time step in ms (default 0.05)")
    niederer.add_argument(
        "--diffusion", default="auto", choices=["auto", "explicit", "crank-nicolson", "backward-euler"],
        help="diffusion scheme (auto: explicit when stable, else Crank-Nicolson)",
    )
    niederer.add_argument("--json", action="store_true", help="print one JSON object")
    niederer.add_argument("--quiet", action="store_true", help="no progress line")
    niederer.set_defaults(handler=run_niederer)


def _progress_printer(quiet: bool):
    if quiet:
        return None
    return lambda line: print(line, file=sys.stderr, flush=True)


def run_simulate(args: argparse.Namespace) -> int:
    """A plain simulation configuration, or a synthetic patient (top-level
    key ``patient``), which also writes the ECG and the 75 sites."""
    from mpi4py import MPI

    from .config import config_from_dict
    from .errors import ConfigError
    from .output import write_simulation
    from .patient import PatientSimulation, load_patient_config, write_sample
    from .simulation import Simulation
    from .typedconfig import load_yaml

    data = load_yaml(args.config)
    is_patient = isinstance(data, dict) and set(data) == {"patient"}
    try:
        if is_patient:
            runner = PatientSimulation(load_patient_config(data["patient"]), MPI.COMM_WORLD)
            simulation = runner.simulation
        else:
            runner = simulation = Simulation(config_from_dict(data), MPI.COMM_WORLD)
    except ConfigError as exc:
        raise ConfigError(f"{args.config}: {exc}") from None
    simulation.progress = _progress_printer(args.quiet)
    outcome = runner.run()
    if outcome is None:  # not rank 0
        return 0
    path = write_sample(args.output, outcome) if is_patient else write_simulation(args.output, outcome)
    if not args.quiet:
        print(f"wrote {path}", file=sys.stderr)
    return 0


def run_niederer(args: argparse.Namespace) -> int:
    from mpi4py import MPI

    from .niederer import activation_at_points, niederer_config, points_mm
    from .simulation import Simulation

    simulation = Simulation(niederer_config(args.dx, args.dt, args.diffusion), MPI.COMM_WORLD)
    simulation.progress = _progress_printer(args.quiet or args.json)
    result = simulation.run()
    if result is None:
        return 0
    times = activation_at_points(result, points_mm())
    report = {
        "dx_mm": args.dx,
        "dt_ms": args.dt,
        "diffusion": result.provenance["diffusion_scheme"],
        "ranks": result.provenance["ranks"],
        "wall_time_s": round(result.provenance["wall_time_s"], 3),
        "activation_ms": {k: round(v, 3) for k, v in times.items()},
    }
    if args.json:
        print(json.dumps(report))
    else:
        print(f"Niederer 2011 slab, dx {args.dx} mm, dt {args.dt} ms ({report['diffusion']}, "
              f"{report['ranks']} rank(s), {report['wall_time_s']} s)")
        print(f"{'point (mm)':>14}  activation (ms)")
        for label, t in times.items():
            print(f"{label:>14}  {t:10.2f}")
    return 0
