"""``ecgi simulate``, ``ecgi verify``, ``ecgi calibrate``, ``ecgi plot`` and ``ecgi anatomy``: the solver's commands."""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from typing import Callable

from .common.limits import DT_MS, DX_MM, VELOCITY_M_PER_S, number

#: Free space ``simulate -o`` needs before it starts (a sample file is 0.1-50 MB).
SAMPLE_FREE_BYTES = 4 << 20
#: Voxel sizes of the Niederer benchmark (mm): the paper runs 0.1, 0.2 and
#: 0.5; at 0.05 the slab has 3.4 million voxels already, above
#: 1 its 3 mm side is under four voxels.
NIEDERER_DX_MM = (0.05, 1.0)


def add_commands(commands) -> None:
    velocity = number(float, *VELOCITY_M_PER_S, "m/s")
    simulate = commands.add_parser(
        "simulate",
        help="run one simulation from a YAML configuration (works under mpiexec)",
        description="Run one monodomain simulation and write its HDF5 file. "
        "Run as `mpiexec -n K ecgi simulate CONFIG -o OUT.h5` to use K ranks.",
    )
    simulate.add_argument("config", help="simulation configuration (YAML)")
    simulate.add_argument("-o", "--output", required=True, help="HDF5 file to write")
    simulate.add_argument("--quiet", action="store_true", help="no progress line")
    simulate.add_argument("--petsc-options", default="", metavar="OPTIONS",
                          help="PETSc options of ecgi's solvers by their prefixes diffusion_, laplace_, torso_, "
                          "e.g. \"-laplace_ksp_monitor -torso_pc_type gamg\"; \"-help\" lists them. Checked by "
                          "PETSc before any work; nothing that reads or writes a file (docs/solver.md). "
                          "PETSC_OPTIONS reaches PETSc unchecked")
    simulate.set_defaults(handler=run_simulate)

    verify = commands.add_parser("verify", help="the solver against published benchmarks (docs/verification.md)")
    _add_verifications(verify, run_niederer)
    # The name before "bench" came to mean the timing scripts of bench/: still accepted, not listed.
    _add_verifications(commands.add_parser("bench"), _deprecated_bench)

    calibrate = commands.add_parser(
        "calibrate",
        help="conductivities that give target conduction velocities on a grid",
        description="Find (by 1-D cable runs) the monodomain conductivities that give the target "
        "conduction velocities for this dx, dt and ionic model, and cache them. Coarse grids "
        "conduct too slowly; calibrated conductivities make them right in time.",
    )
    calibrate.add_argument("--dx", type=number(float, *DX_MM, "mm"), required=True,
                           help=f"voxel size (mm, {DX_MM[0]:g}-{DX_MM[1]:g})")
    calibrate.add_argument("--dt", type=number(float, *DT_MS, "ms"), required=True,
                           help=f"time step (ms, {DT_MS[0]:g}-{DT_MS[1]:g})")
    calibrate.add_argument("--model", default="tt06", help="ionic model (default tt06)")
    calibrate.add_argument("--longitudinal", type=velocity, default=0.5, help="target along fibres (m/s)")
    calibrate.add_argument("--transverse", type=velocity, default=0.2, help="target across fibres (m/s)")
    calibrate.add_argument("--fast-layer", type=number(float, 0.0, VELOCITY_M_PER_S[1], "m/s"), default=1.2, help="target in the fast endocardial layer (m/s); 0 to skip")
    calibrate.add_argument("--no-cache", action="store_true", help="recompute even if cached")
    calibrate.add_argument("--json", action="store_true", help="print one JSON object")
    calibrate.set_defaults(handler=run_calibrate)

    plot = commands.add_parser(
        "plot", help="figures of a sample file (ECG, activation slices, AHA bullseye)",
        description="Write PNG figures of a synthetic-patient sample: the 12-lead ECG in the "
        "standard 4x3 layout, activation-time slices and the AHA bullseye of site activation times.",
    )
    plot.add_argument("sample", help="sample HDF5 written by `ecgi simulate`")
    plot.add_argument("-o", "--output", default=".", help="directory for the PNGs (default .)")
    plot.set_defaults(handler=run_plot)

    anatomy = commands.add_parser("anatomy", help="bring a real heart: import a mesh as a labelled voxel image")
    actions = anatomy.add_subparsers(dest="anatomy_command", metavar="ACTION", required=True)
    imported = actions.add_parser(
        "import", help="a heart mesh (tetrahedra, a surface, or epi/lv/rv patches) as a labelled voxel image",
        description="Voxelise a heart mesh into the labelled image a patient's heart.anatomy_file takes: "
        "tetrahedra (VTK, VTU, gmsh), one closed surface (VTP, VTK, PLY, STL, OBJ) with or without labels "
        "(1 base, 2 epicardium, 3 LV endocardium, 4 RV endocardium), or one file per surface, recognised "
        "by name (epi, lv, rv, base) and capped at the valves. Without labels the cavities are found. "
        "Writes the image, prints the volumes and LV/RV mass ratio, and draws three slices (docs/anatomy.md).",
    )
    imported.add_argument("mesh", nargs="*", help="mesh file, or surface patch files")
    imported.add_argument("-o", "--output", required=True, help="labelled image to write (.h5)")
    imported.add_argument("--dx", type=number(float, *DX_MM, "mm"), default=1.0,
                          help=f"voxel size (mm, {DX_MM[0]:g}-{DX_MM[1]:g}; default 1)")
    imported.add_argument("--labels", default="auto", metavar="auto|none|ARRAY",
                          help="surface labels: auto (a 'class'/'labels' array if present, else found), none "
                          "(always found), or the name of the point or cell array")
    imported.add_argument("--scale", type=number(float, 1e-6, 1e6, ""), default=1.0,
                          help="multiplies coordinates into mm (1000 for metres, 10 for cm)")
    for role in ("epi", "lv", "rv", "base"):
        imported.add_argument(f"--{role}", metavar="FILE", help=f"the {role} surface patch, whatever its name")
    imported.add_argument("--figure", help="PNG of the slices (default: OUTPUT with .png)")
    imported.set_defaults(handler=run_anatomy_import)


def _add_verifications(command: argparse.ArgumentParser, handler: Callable[[argparse.Namespace], int]) -> None:
    """The verification cases under ``command``: so far the Niederer slab."""
    cases = command.add_subparsers(dest="verify_command", metavar="BENCHMARK", required=True)
    niederer = cases.add_parser(
        "niederer",
        help="the Niederer et al. 2011 N-version slab benchmark",
        description="Run the Niederer 2011 benchmark and print activation times (ms) at the "
        "8 corners and the centre of the 20 x 7 x 3 mm slab.",
    )
    niederer.add_argument("--dx", type=number(float, *NIEDERER_DX_MM, "mm"), default=0.5,
                          help=f"voxel size in mm, {NIEDERER_DX_MM[0]:g}-{NIEDERER_DX_MM[1]:g} (default 0.5)")
    niederer.add_argument("--dt", type=number(float, *DT_MS, "ms"), default=0.05,
                          help=f"time step in ms, {DT_MS[0]:g}-{DT_MS[1]:g} (default 0.05)")
    niederer.add_argument(
        "--diffusion", default="auto", choices=["auto", "explicit", "crank-nicolson", "backward-euler"],
        help="diffusion scheme (auto: explicit when stable, else Crank-Nicolson)",
    )
    niederer.add_argument(
        "--calibrated", action="store_true",
        help="calibrate the conductivities so that cables on this grid conduct as fast as on a "
        "converged grid (dx 0.025 mm) with the benchmark's conductivities",
    )
    niederer.add_argument(
        "--tt06-kernel", choices=["tabulated", "exact"], default="tabulated",
        help="TT06's kernel: rates of Vm from a table (default) or evaluated exactly, the reference",
    )
    niederer.add_argument("--json", action="store_true", help="print one JSON object")
    niederer.add_argument("--quiet", action="store_true", help="no progress line")
    niederer.set_defaults(handler=handler)


def _deprecated_bench(args: argparse.Namespace) -> int:
    print("ecgi bench is now ecgi verify (bench/ holds the timing benchmarks)", file=sys.stderr)
    return run_niederer(args)


def _progress_printer(quiet: bool):
    if quiet:
        return None
    return lambda line: print(line, file=sys.stderr, flush=True)


def run_simulate(args: argparse.Namespace) -> int:
    """A plain simulation configuration, or a synthetic patient (top-level
    key ``patient``), which also writes the ECG and the 75 sites."""
    from .common.files import check_writable
    from .numerics.petsc_options import insert_petsc_options, parse_petsc_options

    # Before MPI, the mesh and hours of simulation: the output must be writable
    # and the PETSc options well formed.
    check_writable(args.output, SAMPLE_FREE_BYTES, inputs=[args.config])
    parse_petsc_options(args.petsc_options)
    from mpi4py import MPI

    insert_petsc_options(args.petsc_options)

    from .numerics.config import config_from_dict
    from .numerics.output import write_simulation
    from .patient import PatientSimulation, load_patient_config, write_sample
    from .numerics.simulation import Simulation
    from .common.typedconfig import load_file

    def build(data):
        if isinstance(data, dict) and set(data) == {"patient"}:
            return PatientSimulation(load_patient_config(data["patient"]), MPI.COMM_WORLD)
        return Simulation(config_from_dict(data), MPI.COMM_WORLD)

    runner = load_file(args.config, build)
    is_patient = isinstance(runner, PatientSimulation)
    simulation = runner.simulation if is_patient else runner
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

    from .verification.niederer import (
        activation_at_points,
        calibrated_niederer_config,
        niederer_config,
        points_mm,
    )
    from .numerics.simulation import Simulation

    config = niederer_config(args.dx, args.dt, args.diffusion)
    if args.calibrated:
        config = calibrated_niederer_config(config, MPI.COMM_WORLD)
    config.ionic.tt06_kernel = args.tt06_kernel
    simulation = Simulation(config, MPI.COMM_WORLD)
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
        "calibrated": args.calibrated,
        "tt06_kernel": args.tt06_kernel,
        "conductivity_S_per_m": dataclasses.asdict(config.conductivity.monodomain()),
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


def run_calibrate(args: argparse.Namespace) -> int:
    from mpi4py import MPI

    from .patient.calibration import VelocityTargets, calibrate_shared
    from .numerics.config import IonicConfig, MembraneConfig

    targets = VelocityTargets(args.longitudinal, args.transverse, args.fast_layer or None)
    targets.validate()
    ionic = IonicConfig(model=args.model)
    ionic.validate()
    result = calibrate_shared(MPI.COMM_WORLD, targets, args.dx, args.dt, ionic, MembraneConfig(),
                              use_cache=not args.no_cache)
    if MPI.COMM_WORLD.Get_rank() != 0:
        return 0
    if args.json:
        print(json.dumps(dataclasses.asdict(result)))
        return 0
    print(f"calibrated for dx {args.dx} mm, dt {args.dt} ms, {args.model}:")
    print(f"  longitudinal sigma {result.longitudinal_S_per_m:.5g} S/m -> {result.velocities_m_per_s['longitudinal']:.4g} m/s")
    print(f"  transverse   sigma {result.transverse_S_per_m:.5g} S/m -> {result.velocities_m_per_s['transverse']:.4g} m/s")
    if result.fast_layer_factor is not None:
        print(f"  fast layer   x{result.fast_layer_factor:.4g} -> {result.velocities_m_per_s['fast_layer']:.4g} m/s")
    return 0


def run_plot(args: argparse.Namespace) -> int:
    from .common.files import check_writable
    from .plots import plot_sample

    check_writable(args.output, directory=True, inputs=[args.sample])
    for path in plot_sample(args.sample, args.output):
        print(path)
    return 0


def run_anatomy_import(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .common.errors import ConfigError
    from .common.files import check_writable
    from .patient.anatomy_import import BASE, EPI, LV_ENDO, RV_ENDO, ImportOptions, import_anatomy
    from .patient.anatomy_report import summary_lines, write_figure
    from .patient.user_anatomy import save_labelled_image

    output = Path(args.output)
    if output.suffix.lower() not in (".h5", ".hdf5"):
        raise ConfigError(f"{output}: the labelled image is HDF5; name it .h5")
    figure = Path(args.figure) if args.figure else output.with_suffix(".png")
    patches = tuple((role, path) for role, path in ((EPI, args.epi), (LV_ENDO, args.lv), (RV_ENDO, args.rv),
                                                    (BASE, args.base)) if path)
    check_writable(str(output), inputs=list(args.mesh) + [p for _, p in patches])
    options = ImportOptions(dx=args.dx, labels=args.labels, scale=args.scale, patches=patches)
    anatomy = import_anatomy(args.mesh, options)
    save_labelled_image(output, anatomy.code, anatomy.dx, anatomy.origin)
    write_figure(anatomy, figure)
    for line in summary_lines(anatomy):
        print(line)
    print(f"wrote {output} and {figure}")
    return 0
