"""A fake SLURM for the fast test layer: ``sbatch``, ``squeue``, ``scancel``,
``sacct`` and ``srun`` as small programs on PATH that run batch scripts as
local process groups, in the manner of submitit's and psij's scheduler
mocks.  No root, no daemons: every ecgi path that talks to SLURM (Parsl's
SlurmProvider for campaigns, ``ecgi train --submit``) runs against it in
seconds, beside the tests on the real single-node cluster
(tests/slurm_cluster.py).

What it does, per command:
    sbatch [options] SCRIPT [ARGS]   starts ``bash SCRIPT ARGS`` in a new
        session with the SLURM_* variables of a one-node job, stdout and
        stderr where ``--output``/``--error`` (options or #SBATCH lines) say;
        prints "Submitted batch job N" (or "N" with --parsable)
    squeue --job IDS --format '%i %t'   one "ID R" line per live job
    scancel IDS                      ends each job's process group
    sacct                            fails as on a cluster without accounting
    srun [--ntasks N] [-l] CMD ...    runs N copies of CMD (default: the job's
        tasks), SLURM_PROCID 0..N-1, as one step
The cluster has one node: a job asking for more is refused, as sbatch
refuses what a partition cannot hold.
Every call is logged to $FAKE_SLURM_DIR/calls.log (one JSON line each).
"""
from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

COMMANDS = ("sbatch", "squeue", "scancel", "sacct", "srun")


def _state_dir() -> Path:
    return Path(os.environ["FAKE_SLURM_DIR"])


def _log(command: str, argv: list[str]) -> None:
    with open(_state_dir() / "calls.log", "a") as f:
        f.write(json.dumps({"command": command, "argv": argv}) + "\n")


def _options(argv: list[str]) -> tuple[dict[str, str], list[str]]:
    """sbatch's own options (``--name=value``, ``--name value`` or flags) and the script with its arguments."""
    options, rest, i = {}, [], 0
    while i < len(argv):
        arg = argv[i]
        if not arg.startswith("-"):
            rest = argv[i:]
            break
        name, _, value = arg.lstrip("-").partition("=")
        if not value and name in ("job-name", "output", "error", "nodes", "partition", "time", "account", "qos",
                                  "ntasks-per-node", "cpus-per-task", "gpus-per-node", "J", "o", "e", "N", "p", "t"):
            i += 1
            value = argv[i]
        options[name] = value or "true"
        i += 1
    return options, rest


def _script_options(script: Path) -> dict[str, str]:
    found = {}
    for line in script.read_text().splitlines():
        if line.startswith("#SBATCH"):
            found.update(_options(shlex.split(line[len("#SBATCH"):]))[0])
    return found


def sbatch(argv: list[str]) -> int:
    options, rest = _options(argv)
    if not rest:
        print("sbatch: error: no batch script given", file=sys.stderr)
        return 1
    script = Path(rest[0])
    options = {**_script_options(script), **options}
    counter = _state_dir() / "next_job_id"
    job_id = int(counter.read_text()) if counter.exists() else 1000
    counter.write_text(str(job_id + 1))
    name = options.get("job-name", options.get("J", script.name))
    nodes = int(options.get("nodes", options.get("N", "1")))
    if nodes != 1:
        print(f"sbatch: error: the fake cluster has one node, {nodes} requested", file=sys.stderr)
        return 1
    tasks = int(options.get("ntasks-per-node", "1"))
    env = {**os.environ, "SLURM_JOB_ID": str(job_id), "SLURM_JOBID": str(job_id), "SLURM_JOB_NAME": name,
           "SLURM_JOB_NUM_NODES": "1", "SLURM_NNODES": "1", "SLURM_NTASKS": str(tasks),
           "SLURM_CPUS_PER_TASK": options.get("cpus-per-task", "1"), "SLURM_CPUS_ON_NODE": str(os.cpu_count()),
           "SLURM_JOB_NODELIST": socket.gethostname(), "SLURM_SUBMIT_DIR": os.getcwd()}
    out = Path(options.get("output", options.get("o", f"slurm-{job_id}.out")).replace("%j", str(job_id)))
    err = Path(options.get("error", options.get("e", str(out))).replace("%j", str(job_id)))
    with open(out, "ab") as stdout, open(err, "ab") as stderr:
        proc = subprocess.Popen(["bash", str(script), *rest[1:]], env=env, stdout=stdout, stderr=stderr,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    (_state_dir() / f"job-{job_id}.json").write_text(json.dumps({"pid": proc.pid, "name": name}))
    print(job_id if "parsable" in options else f"Submitted batch job {job_id}")
    return 0


@dataclass
class Job:
    job_id: int
    pid: int
    name: str

    @property
    def alive(self) -> bool:
        try:
            os.killpg(self.pid, 0)
        except ProcessLookupError:
            return False
        # A finished job's leader may be a zombie of no one's: it counts as ended.
        try:
            return Path(f"/proc/{self.pid}/stat").read_text().split()[2] != "Z"
        except OSError:
            return False


def jobs() -> dict[int, Job]:
    out = {}
    for path in _state_dir().glob("job-*.json"):
        info = json.loads(path.read_text())
        job_id = int(path.stem.split("-")[1])
        out[job_id] = Job(job_id, info["pid"], info["name"])
    return out


def _job_ids(argv: list[str]) -> list[int]:
    ids = []
    for i, arg in enumerate(argv):
        value = None
        if arg in ("--job", "--jobs", "-j") and i + 1 < len(argv):
            value = argv[i + 1]
        elif arg.startswith(("--job=", "--jobs=")):
            value = arg.split("=", 1)[1]
        if value:
            ids += [int(x) for x in value.replace("'", "").split(",") if x.strip().isdigit()]
    return ids


def squeue(argv: list[str]) -> int:
    wanted = _job_ids(argv) or sorted(jobs())
    known = jobs()
    for job_id in wanted:
        job = known.get(job_id)
        if job is not None and job.alive:
            print(f"{job_id} R")
    return 0


def scancel(argv: list[str]) -> int:
    known = jobs()
    for arg in argv:
        for part in arg.split(","):
            if part.strip().isdigit() and int(part) in known:
                try:
                    os.killpg(known[int(part)].pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
    return 0


def sacct(argv: list[str]) -> int:
    print("Slurm accounting storage is disabled", file=sys.stderr)
    return 1


def srun(argv: list[str]) -> int:
    ntasks, i = int(os.environ.get("SLURM_NTASKS", "1")), 0
    while i < len(argv) and argv[i].startswith("-"):
        arg = argv[i]
        if arg in ("--ntasks", "-n"):
            ntasks, i = int(argv[i + 1]), i + 2
            continue
        if arg.startswith("--ntasks="):
            ntasks = int(arg.split("=", 1)[1])
        elif arg in ("--ntasks-per-node", "--cpus-per-task", "--nodes", "-N", "-c"):
            i += 1  # a value follows
        i += 1
    command = argv[i:]
    procs = [subprocess.Popen(command, env={**os.environ, "SLURM_PROCID": str(rank), "SLURM_LOCALID": str(rank),
                                            "SLURM_NODEID": "0", "SLURM_STEP_ID": "0", "SLURM_NTASKS": str(ntasks)})
             for rank in range(ntasks)]
    codes = [p.wait() for p in procs]
    return next((c for c in codes if c), 0)


def install(bin_dir: Path, state_dir: Path) -> dict[str, str]:
    """Write the five commands into ``bin_dir``; the environment that puts them first on PATH."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    state_dir.mkdir(parents=True, exist_ok=True)
    for command in COMMANDS:
        path = bin_dir / command
        path.write_text(f"#!/bin/sh\nexec {shlex.quote(sys.executable)} {shlex.quote(__file__)} {command} \"$@\"\n")
        path.chmod(0o755)
    return {"PATH": f"{bin_dir}:{os.environ['PATH']}", "FAKE_SLURM_DIR": str(state_dir)}


def main() -> int:
    command, argv = sys.argv[1], sys.argv[2:]
    _log(command, argv)
    return {"sbatch": sbatch, "squeue": squeue, "scancel": scancel, "sacct": sacct, "srun": srun}[command](argv)


if __name__ == "__main__":
    sys.exit(main())
