"""``ecgi campaign``: plan, run, watch and resume simulation campaigns."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from solver.common.errors import ConfigError
from solver.common.limits import number

if TYPE_CHECKING:
    from .layout import CampaignLayout, DriverRecord


def add_commands(commands) -> None:
    campaign = commands.add_parser("campaign", help="plan, run, watch and resume simulation campaigns")
    sub = campaign.add_subparsers(dest="campaign_command", metavar="ACTION", required=True)

    plan = sub.add_parser("plan", help="dry run: samples, sample folders, directories, SLURM script, cost estimate",
                          description="Show what `campaign run` would do, without running anything: the number "
                          "of samples and sample folders, the directory layout, the SLURM job script (for executor "
                          "slurm) and a cost estimate calibrated by a short measured run.")
    plan.add_argument("spec", help="campaign specification (YAML)")
    plan.add_argument("--no-measure", action="store_true", help="skip the measured run (no cost estimate)")
    plan.add_argument("--json", action="store_true", help="print one JSON object")
    plan.set_defaults(handler=run_plan)

    run = sub.add_parser("run", help="run a campaign (resumes if its directory exists)",
                         description="Run every sample of the campaign that is not done yet, with Parsl on "
                         "the local cores or on SLURM, then build the training set.")
    run.add_argument("spec", help="campaign specification (YAML)")
    run.add_argument("--force", action="store_true", help="adopt a spec that differs from the frozen one")
    run.add_argument("--retry-failed", action="store_true", help="also rerun samples that failed for good")
    run.set_defaults(handler=run_run)

    resume = sub.add_parser("resume", help="rerun only what is missing, failed or corrupt",
                            description="Resume a campaign from its directory: samples whose file is complete "
                            "and intact are never recomputed. Safe to call repeatedly and after a crash.")
    resume.add_argument("directory", help="campaign directory")
    resume.add_argument("--retry-failed", action="store_true", help="also rerun samples that failed for good")
    resume.add_argument("--verify", action="store_true", help="recompute every sample file's checksum first")
    resume.set_defaults(handler=run_resume)

    status = sub.add_parser("status", help="per-folder table of done, failed, pending, running samples")
    status.add_argument("directory", help="campaign directory")
    status.add_argument("--json", action="store_true", help="print one JSON object (totals and samples)")
    status.add_argument("--failures", action="store_true", help="list each failed sample with reason and log")
    status.set_defaults(handler=run_status)

    stop = sub.add_parser("stop", help="stop a campaign's driver and every process it started",
                          description="Stop the campaign's driver (it cleans up as after Ctrl-C) and every "
                          "process started for the campaign on this machine: Parsl's interchange, worker pool "
                          "and simulations. After the OS killed a driver hard (kill -9, out of memory), this "
                          "is the one command that removes what it left running; it also cancels the SLURM "
                          "blocks the driver had submitted.")
    stop.add_argument("directory", help="campaign directory")
    stop.set_defaults(handler=run_stop)

    task = sub.add_parser("task", help="(internal) run one sample; started by the campaign driver")
    task.add_argument("directory")
    task.add_argument("sample_id")
    task.set_defaults(handler=run_task)

    measure = sub.add_parser("measure", help="(internal) short measured run for the cost model")
    measure.add_argument("spec")
    measure.add_argument("--probe-ms", type=number(float, 1.0, 10_000.0, "ms"), default=50.0)
    measure.set_defaults(handler=run_measure)


def run_plan(args: argparse.Namespace) -> int:
    import tempfile
    from dataclasses import asdict

    from .cost import estimate, measure
    from .executors import block_script, check_driver_address, workers
    from .spec import load_spec

    spec = load_spec(args.spec)
    check_driver_address(spec)
    if spec.output_dir.exists() and not spec.output_dir.is_dir():
        raise ConfigError(f"output_dir {spec.output_dir} is an existing file; choose another output_dir")
    report: dict = {
        "name": spec.name, "samples": spec.samples, "folders": spec.n_folders,
        "samples_per_folder": spec.samples_per_folder, "geometries": spec.geometry.n_geometries,
        "output_dir": str(spec.output_dir), "executor": spec.resources.executor,
        "ranks_per_simulation": spec.resources.ranks_per_simulation, "simulations_at_once_per_block": workers(spec),
        "layout": {
            "samples": f"{spec.output_dir}/samples/folder-NNNNN/<id>.h5",
            "records": f"{spec.output_dir}/records/folder-NNNNN/<id>.json",
            "logs": f"{spec.output_dir}/logs/folder-NNNNN/<id>.log",
            "dataset": f"{spec.output_dir}/dataset/<split>/shard-NNNNN.h5",
        },
    }
    if spec.resources.executor == "slurm":
        with tempfile.TemporaryDirectory() as tmp:
            report["slurm_script"] = block_script(spec, Path(tmp))
    _check_petsc_options(spec)
    if not args.no_measure:
        report["estimate"] = asdict(estimate(spec, measure(Path(args.spec).resolve(), progress=_progress), _progress))
    if args.json:
        print(json.dumps(report, indent=None))
        return 0
    print(f"campaign {spec.name}: {spec.samples} samples in {spec.n_folders} folders of {spec.samples_per_folder}, "
          f"{spec.geometry.n_geometries} anatomies")
    print(f"executor {spec.resources.executor}, {spec.resources.ranks_per_simulation} rank(s) per simulation, "
          f"{workers(spec)} simulation(s) at once per block")
    print("directories:")
    for key, value in report["layout"].items():
        print(f"  {key:8s} {value}")
    if "slurm_script" in report:
        print("SLURM job script of one block:\n" + "\n".join("  " + line for line in report["slurm_script"].splitlines()))
    if "estimate" in report:
        print_estimate(report["estimate"])
    return 0


def _progress(message: str) -> None:
    print(f"ecgi campaign plan: {message}", file=sys.stderr, flush=True)


def print_estimate(e: dict) -> None:
    m = e["model"]
    print(f"cost estimate, measured in CPU seconds on this machine in a fresh process (load {m['load']:.1f} on "
          f"{m['cpus']} cores, the measuring process had {m['cpu_share']:.0%} of a core): warm-up samples, "
          f"one per condition ({m['warmup_s']:.1f} s: compilation, calibration look-ups; paid once per worker; "
          f"the velocity calibration's cable runs and the torso's lead fields took {m['cached_s']:.1f} s, "
          f"cached on disk for every later run, not counted), "
          f"then {m['timed_samples']} sample(s) of other anatomies: set-up {m['setup_s']:.2f} s each "
          f"(heart, Laplace solves, fibres, sites; {m['reuse_setup_s']:.2f} s for an anatomy built before) and "
          f"{m['measured_ms']:g} ms of the time loop ({m['timed_steps']} steps on {m['measured_voxels']} voxels); "
          f"one sample's loop over {m['profile_ms']:g} ms gives the rate over a whole sample "
          f"({m['phase_factor']:.2f}x the first {m['measured_ms']:g} ms): {m['node_steps_per_s']:.3g} node-steps/s; "
          f"{m['finish_s']:.2f} s per run besides its steps (initial state, reading the sites); "
          f"reading the spec and writing the sample file and record {m['task_s']:.2f} s per task")
    print(f"  {e['mean_sample_s']:.2f} s per sample on one core ({e['mean_sample_s_low']:.2f}-"
          f"{e['mean_sample_s_high']:.2f}; mean {e['voxels_mean']:.0f} voxels)")
    print(f"  {e['core_hours']:.3g} core-hours (range {e['core_hours_low']:.3g}-{e['core_hours_high']:.3g}: the "
          f"fastest and slowest try of the timed samples, at least 15 % either side, widened by the load); "
          f"{e['wall_hours'] * 60:.1f} min wall time on {e['cores']} cores "
          f"({e['slots']} simulations at once, with the driver's start and the data set build), "
          f"excluding queue waits")
    if m["load"] is not None and m["load"] > m["cpus"]:
        print(f"  the machine was loaded while measuring (load {m['load']:.1f} on {m['cpus']} cores): CPU time per "
              f"sample rises under load, so cores of the campaign's own (a cluster's) may spend down to the "
              f"range's low end and a run on this machine as loaded up to its high end; plan on a quiet "
              f"machine for a tighter figure")


def run_run(args: argparse.Namespace) -> int:
    from .runner import run_campaign
    from .spec import load_spec

    spec = load_spec(args.spec)
    _check_petsc_options(spec)
    summary = run_campaign(spec, force=args.force, retry_failed=args.retry_failed)
    return _report(summary)


def run_resume(args: argparse.Namespace) -> int:
    from .runner import run_campaign
    from .spec import load_frozen_spec

    spec = load_frozen_spec(Path(args.directory).resolve())
    _check_petsc_options(spec)
    summary = run_campaign(spec, retry_failed=args.retry_failed, full_check=args.verify, resuming=True)
    return _report(summary)


def _check_petsc_options(spec) -> None:
    """PETSc must accept the spec's solver.petsc_options before any sample is
    started (each would fail on them); a child process checks them, as the
    driver never loads PETSc and MPI."""
    from solver.numerics.petsc_options import check_in_subprocess

    from .mpi_env import clean_mpi_env

    try:
        check_in_subprocess(spec.solver.petsc_options, env=clean_mpi_env())
    except ConfigError as exc:
        raise ConfigError(f"solver.petsc_options: {exc}") from None


def _report(summary) -> int:
    print(f"{summary.already_done + summary.done}/{summary.planned} samples done "
          f"({summary.done} now, {summary.already_done} before), {len(summary.failed)} failed",
          file=sys.stderr)
    for sample, reason in list(summary.failed.items())[:10]:
        print(f"  failed {sample}: {reason}", file=sys.stderr)
    return 0 if not summary.failed else 1


def run_status(args: argparse.Namespace) -> int:
    from .status import campaign_status, print_status

    status = campaign_status(Path(args.directory).resolve())
    if args.json:
        print(json.dumps(status))
    else:
        print_status(status, failures=args.failures)
    return 0


def run_stop(args: argparse.Namespace) -> int:
    """Stop the driver (only the very process driver.json recorded), every
    process carrying the campaign's mark, the recorded helpers and SLURM blocks."""
    import shutil
    import subprocess

    from .layout import CampaignLayout, DriverRecord
    from .processes import campaign_processes, recorded_helpers, stop_processes

    directory = Path(args.directory).resolve()
    layout = CampaignLayout(directory)
    if not layout.spec_path.is_file():
        raise ConfigError(f"{directory} is not a campaign directory (no spec.yaml); give the directory "
                          "that `ecgi campaign run` wrote")
    record = DriverRecord.read(layout.driver_path)
    if record is None:
        print(f"no driver recorded in {directory}", file=sys.stderr)
    elif record.is_alive and not record.here:
        raise ConfigError(f"the driver runs on {record.host} ({record.describe()}); run this command there")
    elif record.is_alive:
        _stop_driver(layout, record)
    else:
        print(f"no live driver: {_why_stale(record)}; nothing signalled for it", file=sys.stderr)
    helpers = recorded_helpers(record.helpers) if record is not None else []
    stopped = stop_processes(campaign_processes(directory) + helpers)
    print(f"stopped {len(stopped)} process(es) of campaign {directory.name}", file=sys.stderr)
    if record is not None and record.slurm_jobs and shutil.which("scancel"):
        subprocess.run(["scancel", *record.slurm_jobs], check=False)
        print(f"cancelled SLURM job(s) {', '.join(record.slurm_jobs)}", file=sys.stderr)
    if record is not None and not record.is_alive:
        layout.driver_path.unlink(missing_ok=True)
    return 0


def _stop_driver(layout: CampaignLayout, record: DriverRecord) -> None:
    """SIGTERM to the recorded driver (it cleans up as after Ctrl-C), then
    wait up to a minute for it to end."""
    import signal
    import time

    from .layout import driver_alive
    from .processes import send_signal

    assert record.process is not None
    if not send_signal(record.process, signal.SIGTERM):
        print(f"the driver ({record.describe()}) ended before it could be stopped", file=sys.stderr)
        return
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and driver_alive(layout) is not None:
        time.sleep(0.5)
    print(f"stopped driver {record.process.pid}", file=sys.stderr)


def _why_stale(record: DriverRecord) -> str:
    """Why a driver record names no live driver, in words."""
    from .processes import ProcessIdentity

    if record.process is None:
        return "driver.json names no process ecgi can recognise (damaged, or written by an older ecgi)"
    if ProcessIdentity.of(record.process.pid) is not None:
        return f"driver.json's pid {record.process.pid} now belongs to another process, not the driver"
    return f"the driver ({record.describe()}) has ended"


def run_task(args: argparse.Namespace) -> int:
    from .task import run_task as task

    return task(Path(args.directory), args.sample_id)


def run_measure(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from .cost import measure_here
    from .spec import load_spec

    print(json.dumps(asdict(measure_here(load_spec(args.spec), args.probe_ms))))
    return 0
