"""Training jobs on SLURM: ``ecgi train --submit``.

``model`` learns, ``workflow`` submits: the ``train`` command is model's,
and this module adds its SLURM options and, with ``--submit``, hands the run
to sbatch through the shipped ``slurm/train.sbatch`` (package data, so an
installed ecgi submits without a checkout).  The job's resources are a
``workflow.batch`` ResourceSpec and JobAttributes, checked as a campaign's
blocks are.
"""
from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from solver.common.errors import ConfigError
from solver.common.limits import number

from .batch import (CPUS_PER_TASK, GPUS_PER_NODE, NODES, TASKS_PER_NODE, WALLTIME_FORMS, JobAttributes,
                    ResourceSpec, check_script_text, sbatch_options, shipped)

#: How each batch field is called on the command line, for the error lines.
OPTION_NAMES = {"nodes": "--nodes", "tasks_per_node": "--tasks-per-node", "gpus_per_node": "--gpus-per-node",
                "cpus_per_task": "--cpus-per-task", "walltime": "--time", "partition": "--partition",
                "account": "--account", "qos": "--qos", "constraint": "--constraint"}


def add_submit_options(train: argparse.ArgumentParser) -> None:
    """Give model's ``train`` parser its SLURM options; ``--submit`` runs ``run_train`` here."""
    slurm = train.add_argument_group("SLURM submission (with --submit)")
    slurm.add_argument("--submit", action="store_true",
                       help="submit the run with sbatch (through slurm/train.sbatch) instead of training here")
    slurm.add_argument("--nodes", type=number(int, *NODES), default=1, help=f"nodes (1; at most {NODES[1]})")
    slurm.add_argument("--gpus-per-node", type=number(int, *GPUS_PER_NODE), default=1,
                       help=f"GPUs per node, one task each (1; 0 for CPU nodes; at most {GPUS_PER_NODE[1]})")
    slurm.add_argument("--tasks-per-node", type=number(int, *TASKS_PER_NODE), default=1,
                       help=f"tasks per node on CPU nodes (1; at most {TASKS_PER_NODE[1]})")
    slurm.add_argument("--cpus-per-task", type=number(int, *CPUS_PER_TASK), default=8,
                       help=f"CPU cores per task, for data loading (8; at most {CPUS_PER_TASK[1]})")
    slurm.add_argument("--time", default="12:00:00", help=f"wall time limit as sbatch takes it: {WALLTIME_FORMS} "
                       "(12:00:00)")
    slurm.add_argument("--partition", help="SLURM partition")
    slurm.add_argument("--account", help="SLURM account")
    slurm.add_argument("--qos", help="SLURM quality of service")
    slurm.add_argument("--constraint", help="node features, e.g. gpu or 'a100&nvlink'")
    slurm.add_argument("--worker-init", help="shell lines run before training on each node (module loads, venv "
                       "activation); default: the WORKER_INIT environment variable")
    slurm.add_argument("--sbatch-arg", action="append", default=[], metavar="ARG",
                       help="extra sbatch option, e.g. --sbatch-arg=--mem=64G (repeatable)")
    slurm.add_argument("--dry-run", action="store_true", help="print the sbatch command instead of running it")
    train.set_defaults(handler=run_train)


@dataclass(frozen=True)
class TrainingJob:
    """One ``ecgi train`` run as a batch job: the training's arguments and what it asks SLURM for."""

    config: Path
    data: Path
    run_dir: Path
    resources: ResourceSpec
    attributes: JobAttributes
    epochs: Optional[int] = None
    sbatch_args: tuple[str, ...] = ()

    def validate(self) -> None:
        """sbatch reads its argv without a shell, but the values also reach the
        job's environment and logs: the batch checks, and no line breaks."""
        self.resources.validate(OPTION_NAMES)
        self.attributes.validate(OPTION_NAMES)
        for extra in self.sbatch_args:
            check_script_text("--sbatch-arg", extra)
            if not extra.startswith("--"):
                raise ConfigError(f"--sbatch-arg takes one sbatch option such as --mem=64G, got {extra!r}")
        for name, value in (("--output", self.run_dir), ("--data", self.data), ("config", self.config)):
            check_script_text(name, str(value))

    def sbatch_argv(self, script: Path) -> list[str]:
        """The sbatch argv: resources as options, the training arguments after the script.

        Built as a list and run without a shell, so no value is ever parsed by a shell.
        """
        run_dir = self.run_dir.resolve()
        argv = ["sbatch", "--parsable", f"--job-name=ecgi-train-{run_dir.name}",
                *sbatch_options(self.resources, self.attributes), f"--output={run_dir / 'slurm-%j.out'}",
                *self.sbatch_args, str(script), str(self.config.resolve()), "--data", str(self.data.resolve()),
                "--output", str(run_dir), "--resume"]
        if self.epochs is not None:
            argv += ["--epochs", str(self.epochs)]
        return argv


def training_job(args: argparse.Namespace, run_dir: Path) -> TrainingJob:
    """The checked batch job of ``ecgi train ... --submit``'s arguments."""
    gpus = args.gpus_per_node
    job = TrainingJob(
        config=Path(args.config), data=Path(args.data), run_dir=run_dir,
        # One task per GPU on GPU nodes.
        resources=ResourceSpec(nodes=args.nodes, tasks_per_node=gpus or args.tasks_per_node, gpus_per_node=gpus,
                               cpus_per_task=args.cpus_per_task),
        attributes=JobAttributes(walltime=args.time, partition=args.partition, account=args.account,
                                 qos=args.qos, constraint=args.constraint),
        epochs=args.epochs, sbatch_args=tuple(args.sbatch_arg),
    )
    job.validate()
    return job


def run_train(args: argparse.Namespace) -> int:
    """``ecgi train``: model trains here; with --submit, sbatch runs it."""
    from model import cli as model_cli

    if not args.submit:
        return model_cli.run_train(args)
    from model.config import load_train_config

    config = load_train_config(args.config)
    run_dir = model_cli.run_directory(args)
    job = training_job(args, run_dir)
    if config.network.architecture == "ridge_act" and job.resources.tasks > 1:
        raise ConfigError(f"ridge_act is fitted in closed form on one process, not {job.resources.tasks} tasks; "
                          "submit it with --nodes 1 and one task (--gpus-per-node 1, or 0 with --tasks-per-node 1)")
    return submit(job, args.worker_init, dry_run=args.dry_run)


def submit(job: TrainingJob, worker_init: Optional[str], dry_run: bool = False) -> int:
    """Copy the batch script into the run directory and submit that copy."""
    template = shipped("slurm", "train.sbatch")
    if not Path(job.data, "manifest.json").is_file():
        raise ConfigError(f"{job.data}: no manifest.json; --data must be a data set directory")
    script = job.run_dir.resolve() / "train.sbatch"
    argv = job.sbatch_argv(script)
    if dry_run:
        print(shlex.join(argv))
        return 0
    if shutil.which("sbatch") is None:
        raise ConfigError("sbatch not found; --submit needs a SLURM login node (or use --dry-run)")
    job.run_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(template, script)
    env = dict(os.environ)
    if worker_init is not None:
        env["WORKER_INIT"] = worker_init
    proc = subprocess.run(argv, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise ConfigError(f"sbatch failed ({proc.returncode}): {proc.stderr.strip()}")
    job_id = proc.stdout.strip().split(";")[0]
    print(f"submitted job {job_id}; log {job.run_dir / f'slurm-{job_id}.out'}")
    return 0
