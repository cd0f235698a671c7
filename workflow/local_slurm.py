"""A private single-node SLURM: munged, slurmctld and slurmd started from a
temporary directory, with their own ``slurm.conf``, state, spool, logs and
(free) ports.  Pass :attr:`SlurmCluster.env` to a command (or export
``SLURM_CONF``) and ``sbatch``/``squeue``/``srun``/``scancel`` and Parsl's
``SlurmProvider`` talk to it.  The test suite runs its SLURM tests on one
(the ``slurm_cluster`` fixture of tests/slurm_cluster.py), and
``python -m bench.campaign_throughput --slurm`` times a campaign through one.
Stopping it cancels every job and stops every process it started.

Facts about this SLURM (Debian 12, slurm-wlm 22.05) that the design follows:

* ``sacct`` cannot work without slurmdbd: 22.05 ships only
  ``accounting_storage/none`` and ``accounting_storage/slurmdbd`` (the old
  ``filetxt`` accounting storage is gone), and ``sacct`` then fails with
  "Slurm accounting storage is disabled".  Job states therefore come from
  ``scontrol show job`` (kept ``MinJobAge`` seconds after the end) and, for
  older jobs, from the job completion log (``JobCompType=jobcomp/filetxt``).
  Parsl's ``SlurmProvider`` detects this itself and falls back to ``squeue``.
* munged refuses a socket whose directory is not world-executable, and needs
  the key's directory private; pytest's own ``tmp_path`` lives under a 0700
  directory, hence a directory of our own under ``/tmp`` (also keeps the unix
  socket paths short).
* The controller and the node are addressed as 127.0.0.1 (``SlurmctldHost=
  host(127.0.0.1)``, ``NodeAddr=127.0.0.1``) so that nothing depends on the
  short host name resolving; the names still have to be the host name.
* ``proctrack/linuxproc`` + ``task/none`` + ``jobacct_gather/none``: no cgroup
  is touched, so no ``cgroup.conf`` is needed and it works in containers.
* Open MPI as root needs ``OMPI_ALLOW_RUN_AS_ROOT(_CONFIRM)``, and a process
  that imported mpi4py carries a singleton's ``PMIX_*``/``OMPI_*`` variables in
  its C environment, which a child ``mpiexec`` takes for a parent job: the
  environment given to jobs (:attr:`SlurmCluster.env`,
  :attr:`SlurmCluster.worker_init`) drops them.
"""
from __future__ import annotations

import atexit
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

__all__ = ["SlurmCluster", "SlurmClusterError", "missing_requirements"]

DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "squeue", "scancel", "scontrol", "sinfo", "srun")
TERMINAL_STATES = frozenset({
    "COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "PREEMPTED",
    "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE", "REVOKED", "SPECIAL_EXIT",
})
MPI_RUNTIME_PREFIXES = ("OMPI_", "PMIX_", "PMI_", "ORTE_", "OPAL_")
#: Open MPI refuses to run as root without these.  Deliberately no
#: oversubscription: ranks must fit the tasks SLURM allocated.
MPI_ENV = {
    "OMPI_ALLOW_RUN_AS_ROOT": "1",
    "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
}
#: Set in the daemons' environment (slurmstepd inherits it): how the
#: processes of one cluster are found again at teardown.
MARKER = "ECGI_TEST_SLURM_CLUSTER"


class SlurmClusterError(RuntimeError):
    """The private SLURM did not start, misbehaved or left processes behind."""


def missing_requirements() -> str | None:
    """Why this machine cannot run the private SLURM, or None if it can."""
    if os.geteuid() != 0:
        return "the private SLURM needs root (slurmd runs jobs as their user)"
    missing = [b for b in (*DAEMONS, *CLIENTS) if shutil.which(b) is None]
    if missing:
        return f"SLURM/munge binaries missing: {' '.join(missing)} (apt-get install slurmctld slurmd slurm-client munge)"
    return None


def _free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _node_hardware() -> dict[str, int]:
    """CPUs and memory (MiB) as slurmd sees them, CPUs capped at ``nproc``."""
    out = subprocess.run(["slurmd", "-C"], capture_output=True, text=True, timeout=30).stdout
    hw = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", out.splitlines()[0] if out else "")}
    nproc = len(os.sched_getaffinity(0))
    if "RealMemory" not in hw:
        hw["RealMemory"] = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20
    if hw.get("CPUs") != nproc:   # restricted CPU set, or no topology: CPUs only
        hw = {"CPUs": nproc, "RealMemory": hw["RealMemory"]}
    return hw


def _clean_environ() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(MPI_RUNTIME_PREFIXES) and not k.startswith("SLURM_")}
    env.update(MPI_ENV)
    return env


def _pid_environ(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return b""


def _pid_alive(pid: int) -> bool:
    """Running and not a zombie (PID 1 here reaps orphans only now and then)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _pid_cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


class SlurmCluster:
    """A private single-node SLURM (munged + slurmctld + slurmd) in ``root``.

    Use as a context manager, or :meth:`start` / :meth:`stop`.  Nothing of the
    caller's environment is changed: pass :attr:`env` to subprocesses, or
    export ``SLURM_CONF`` yourself (the test suite's fixture does).
    """

    def __init__(self, root: str | os.PathLike | None = None, *, partition: str = "debug",
                 cluster_name: str = "ecgitest", start_timeout: float = 60.0, keep: bool = False):
        self.root = Path(root or tempfile.mkdtemp(prefix="ecgi-slurm-", dir="/tmp"))
        self.partition = partition
        self.cluster_name = cluster_name
        self.start_timeout = start_timeout
        self.keep = keep or bool(os.environ.get("ECGI_KEEP_SLURM"))
        self.hostname = socket.gethostname().split(".")[0]
        self.node_name = self.hostname
        self.conf = self.root / "etc" / "slurm.conf"
        self.log_dir = self.root / "log"
        self.jobcomp_log = self.log_dir / "jobcomp.log"
        self.job_dir = self.root / "jobs"
        self.munge_socket = self.root / "run" / "munge.socket"
        self.ctld_port, self.slurmd_port = _free_ports(2)
        self.hardware: dict[str, int] = {}
        self.procs: dict[str, subprocess.Popen] = {}
        self.env: dict[str, str] = {}
        self._started = False
        self._nsubmitted = 0

    # ------------------------------------------------------------------ set-up
    def write_config(self) -> Path:
        for sub, mode in (("", 0o755), ("etc", 0o755), ("run", 0o755), ("munge", 0o700),
                          ("state", 0o700), ("spool", 0o755), ("log", 0o755), ("jobs", 0o755)):
            d = self.root / sub
            d.mkdir(parents=True, exist_ok=True)
            d.chmod(mode)
        hw = self.hardware = _node_hardware()
        # A bit under what slurmd detects: more than that would drain the node.
        memory = max(256, int(hw["RealMemory"] * 0.95) - 256)
        topology = " ".join(f"{k}={hw[k]}" for k in ("CPUs", "Boards", "SocketsPerBoard", "CoresPerSocket",
                                                     "ThreadsPerCore") if k in hw)
        # CR_Core needs the real topology; with CPUs only, cores = CPUs anyway.
        select = "CR_Core" if "CoresPerSocket" in hw else "CR_CPU"
        r = self.root
        (r / "etc" / "plugstack.conf").write_text("")  # no system SPANK plugins
        self.conf.write_text(f"""\
# Private single-node SLURM written by workflow/local_slurm.py
ClusterName={self.cluster_name}
SlurmctldHost={self.hostname}(127.0.0.1)
SlurmctldPort={self.ctld_port}
SlurmdPort={self.slurmd_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={self.munge_socket}
StateSaveLocation={r}/state
SlurmdSpoolDir={r}/spool/%n
SlurmctldPidFile={r}/run/slurmctld.pid
SlurmdPidFile={r}/run/slurmd-%n.pid
SlurmctldLogFile={self.log_dir}/slurmctld.log
SlurmdLogFile={self.log_dir}/slurmd-%n.log
SlurmctldDebug=info
SlurmdDebug=info
PlugStackConfig={r}/etc/plugstack.conf
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc={self.jobcomp_log}
SelectType=select/cons_tres
SelectTypeParameters={select}
SchedulerType=sched/backfill
MpiDefault=none
ReturnToService=2
MinJobAge=600
KillWait=5
InactiveLimit=0
MessageTimeout=20
SlurmctldTimeout=60
SlurmdTimeout=120
NodeName={self.node_name} NodeAddr=127.0.0.1 {topology} RealMemory={memory} State=UNKNOWN
PartitionName={self.partition} Nodes={self.node_name} Default=YES MaxTime=INFINITE State=UP
""")
        return self.conf

    def start(self) -> "SlurmCluster":
        if self._started:
            return self
        self.write_config()
        self.env = _clean_environ()
        self.env["SLURM_CONF"] = str(self.conf)
        venv_bin = str(Path(sys.executable).parent)
        if venv_bin not in self.env.get("PATH", "").split(os.pathsep):
            self.env["PATH"] = venv_bin + os.pathsep + self.env.get("PATH", "")
        self._started = True
        atexit.register(self._atexit)
        try:
            key = self.root / "munge" / "munge.key"
            key.write_bytes(os.urandom(1024))
            key.chmod(0o600)
            self._spawn("munged", ["munged", "--foreground", f"--key-file={key}",
                                   f"--socket={self.munge_socket}", f"--pid-file={self.root}/run/munged.pid",
                                   f"--seed-file={self.root}/munge/munged.seed",
                                   f"--log-file={self.log_dir}/munged.log"])
            self._wait_for("munged socket", lambda: self.munge_socket.exists(), 20)
            self._spawn("slurmctld", ["slurmctld", "-D", "-f", str(self.conf)])
            self._wait_for("slurmctld", lambda: self._run(["scontrol", "ping"], check=False).stdout.count("UP") > 0,
                           self.start_timeout)
            self._spawn("slurmd", ["slurmd", "-D", "-f", str(self.conf), "-N", self.node_name])
            self._wait_for(f"node {self.node_name} idle in sinfo", self._node_idle, self.start_timeout)
        except BaseException:
            try:
                self.stop(remove=False)
            finally:
                self.keep = True
            raise
        return self

    def _spawn(self, name: str, argv: list[str]) -> None:
        env = dict(self.env, **{MARKER: str(self.root)})
        out = open(self.log_dir / f"{name}.stdout", "ab")
        try:
            self.procs[name] = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                                env=env, cwd=self.root, start_new_session=True)
        finally:
            out.close()

    def _node_idle(self) -> bool:
        out = self._run(["sinfo", "-h", "-N", "-n", self.node_name, "-o", "%T"], check=False).stdout.strip()
        return out.startswith("idle")

    def _wait_for(self, what: str, ready, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    raise SlurmClusterError(f"{name} exited with status {proc.returncode} while waiting for {what}"
                                            f"\n{self.logs()}")
            if ready():
                return
            if time.monotonic() > deadline:
                raise SlurmClusterError(f"timed out after {timeout:.0f} s waiting for {what}\n{self.logs()}")
            time.sleep(0.2)

    # --------------------------------------------------------------- tear-down
    def stop(self, remove: bool | None = None) -> list[str]:
        """Cancel all jobs, stop the daemons, kill whatever the cluster left.

        Returns the command lines of leftover processes that had to be killed
        (empty when the shutdown was clean)."""
        if not self._started:
            return []
        self._started = False
        if self.procs.get("slurmctld") and self.procs["slurmctld"].poll() is None:
            try:
                self._run(["scancel", "--quiet", f"--partition={self.partition}"], check=False)
                deadline = time.monotonic() + 20
                while self.squeue() and time.monotonic() < deadline:
                    time.sleep(0.2)
            except (SlurmClusterError, subprocess.TimeoutExpired):
                pass   # whatever the jobs left is killed below
        for name in ("slurmd", "slurmctld", "munged"):
            proc = self.procs.get(name)
            if proc is None or proc.poll() is not None:
                continue
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        # Processes that end on their own once their parent has gone (Python's
        # multiprocessing resource tracker, a worker finishing its shutdown)
        # get a grace period before they count as left behind.
        deadline = time.monotonic() + 10
        leftovers = self.leftover_processes()
        while leftovers and time.monotonic() < deadline:
            time.sleep(0.5)
            leftovers = self.leftover_processes()
        for pid, _ in leftovers:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if leftovers:
            self.keep = True
        if remove is None:
            remove = not self.keep
        if remove:
            shutil.rmtree(self.root, ignore_errors=True)
        return [cmd for _, cmd in leftovers]

    def leftover_processes(self) -> list[tuple[int, str]]:
        """Live processes started by this cluster: daemons, slurmstepd, job tasks
        (found by the marker in the daemons' environment, or by this cluster's
        SLURM_CONF in jobs' environment)."""
        needles = (f"{MARKER}={self.root}\0".encode(), f"SLURM_CONF={self.conf}\0".encode())
        skip = {os.getpid(), *_ancestors()}
        daemons = {proc.pid for proc in self.procs.values()}
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) in skip:
                continue
            pid = int(entry.name)
            if _parent(pid) == os.getpid() and pid not in daemons:
                continue  # this process's own helpers (e.g. multiprocessing's resource tracker)
            environ = _pid_environ(pid)
            if any(n in environ for n in needles) and _pid_alive(pid):
                found.append((pid, _pid_cmdline(pid)))
        return found

    def _atexit(self) -> None:
        if self._started:
            self.stop()

    def __enter__(self) -> "SlurmCluster":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ------------------------------------------------------------- client API
    def _run(self, argv: list[str], *, check: bool = True, timeout: float = 60, **kwargs) -> subprocess.CompletedProcess:
        kwargs.setdefault("env", self.env)
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kwargs)
        if check and proc.returncode != 0:
            raise SlurmClusterError(f"{' '.join(argv)} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}")
        return proc

    def run(self, *argv: str, check: bool = True, timeout: float = 60, **kwargs) -> subprocess.CompletedProcess:
        """Run a command (``srun ...``, ``sinfo``...) against this cluster."""
        return self._run(list(argv), check=check, timeout=timeout, **kwargs)

    def sbatch(self, script_text: str, *args: str, cwd: str | os.PathLike | None = None) -> str:
        """Submit ``script_text`` (``#!/bin/bash`` is added if it has no ``#!``) with
        extra ``sbatch`` arguments; returns the job id.  The script runs in ``cwd``
        (default: this cluster's ``jobs`` directory) with :attr:`env`."""
        if not script_text.startswith("#!"):
            script_text = "#!/bin/bash\n" + script_text
        self._nsubmitted += 1
        script = self.job_dir / f"job-{self._nsubmitted}.sh"
        script.write_text(script_text)
        proc = self._run(["sbatch", "--parsable", *args, str(script)], cwd=cwd or self.job_dir)
        return proc.stdout.strip().split(";")[0]

    def scancel(self, *job_ids: str) -> None:
        self._run(["scancel", *job_ids])

    def squeue(self) -> list[dict[str, str]]:
        """Jobs the controller still lists: id, state (long form), name, partition, nodes, reason."""
        out = self._run(["squeue", "-h", "-o", "%i|%T|%j|%P|%N|%r"]).stdout
        keys = ("job_id", "state", "name", "partition", "nodes", "reason")
        return [dict(zip(keys, line.split("|"))) for line in out.splitlines() if line.strip()]

    def job_state(self, job_id: str) -> str | None:
        """``COMPLETED``, ``RUNNING``, ``CANCELLED``... from ``scontrol show job``,
        else from the job completion log; None if neither knows the job."""
        proc = self._run(["scontrol", "-o", "show", "job", str(job_id)], check=False)
        m = re.search(r"\bJobState=(\S+)", proc.stdout)
        if m:
            return m.group(1)
        record = self.jobcomp().get(str(job_id))
        return record.get("JobState") if record else None

    def jobcomp(self) -> dict[str, dict[str, str]]:
        """The job completion log (jobcomp/filetxt), job id -> its fields."""
        try:
            text = self.jobcomp_log.read_text()
        except FileNotFoundError:
            return {}
        records = {}
        for line in text.splitlines():
            fields = dict(re.findall(r"(\w+)=(\S*)", line))
            if "JobId" in fields:
                records[fields["JobId"]] = fields
        return records

    def wait(self, job_id: str, timeout: float = 60, states=TERMINAL_STATES) -> str:
        """Wait until the job reaches one of ``states`` (default: any final
        state) and return it; SlurmClusterError (with the logs) on timeout."""
        deadline = time.monotonic() + timeout
        state = None
        while time.monotonic() < deadline:
            state = self.job_state(job_id)
            if state in states:
                return state
            time.sleep(0.2)
        raise SlurmClusterError(f"job {job_id} still {state} after {timeout:.0f} s\n"
                                f"{self._run(['scontrol', 'show', 'job', str(job_id)], check=False).stdout}\n"
                                f"{self.logs()}")

    @property
    def worker_init(self) -> str:
        """Shell lines for a Parsl provider's ``worker_init``: this Python's bin
        directory first on PATH, no inherited MPI-singleton variables, Open MPI
        allowed to run as root."""
        venv_bin = Path(sys.executable).parent
        exports = " ".join(f"{k}={v}" for k, v in MPI_ENV.items())
        pattern = "|".join(MPI_RUNTIME_PREFIXES)
        return (f"export PATH={venv_bin}:$PATH\n"
                f"for v in $(compgen -e | grep -E '^({pattern})'); do unset $v; done\n"
                f"export {exports}\n")

    def logs(self, tail: int = 60) -> str:
        """The last lines of every log, for error messages."""
        parts = []
        for path in sorted(self.log_dir.glob("*")) if self.log_dir.is_dir() else []:
            try:
                lines = path.read_text(errors="replace").splitlines()[-tail:]
            except OSError as e:
                lines = [f"<{e}>"]
            parts.append(f"----- {path} -----\n" + "\n".join(lines))
        return f"(slurm.conf: {self.conf})\n" + "\n".join(parts)


def _parent(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return -1


def _ancestors() -> list[int]:
    pids, pid = [], os.getppid()
    while pid > 1:
        pids.append(pid)
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            pid = int(stat.rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            break
    return pids
