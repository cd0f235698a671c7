"""Every way a campaign task can fail, and whether it is retried.

A task (``workflow.task``) ends with an exit status; the driver receives
that status, or one of Parsl's exceptions when the task never got to end
(a timeout, a lost worker or node).  Both become one :class:`Failure`,
which is stored in the sample's record as ``error_kind`` and decides about
retries twice:

* within a run, Parsl retries a task up to ``resources.retries`` times;
  :func:`retry_cost` (its ``retry_handler``) spends the whole budget at once
  on a failure that is not retryable;
* across runs, ``ecgi campaign resume`` runs again every sample whose
  record holds a retryable failure (``--retry-failed``: every failure).

A solver or configuration error fails the same way every time; anything
else may have been transient and is retried.
"""
from __future__ import annotations

from enum import Enum


class Failure(Enum):
    """One kind of failure: its name in records, the exit statuses it travels
    as from a task to the driver (none: Parsl reports it as an exception),
    whether it is retried, and what it means."""

    #              exit statuses        retried  meaning
    SOLVER_ERROR = ((3,),               False,   "the solution blew up or a solver diverged; it would again")
    CONFIG_ERROR = ((4,),               False,   "the sample's configuration is invalid; it would be again")
    IO_ERROR = ((5,),                   True,    "a file could not be read or written (full disk, damaged sample file)")
    KILLED = ((137, 143, -9, -15),      True,    "the task was killed by SIGKILL or SIGTERM (out of memory, scancel)")
    TIMEOUT = ((),                      True,    "the task ran longer than resources.task_timeout_s")
    NODE_LOST = ((),                    True,    "the task's worker, node or SLURM block was lost")
    UNKNOWN = ((),                      True,    "any other exit status or exception; retried in case it was transient")

    def __init__(self, exit_statuses: tuple[int, ...], retryable: bool, meaning: str):
        self.exit_statuses = exit_statuses
        self.retryable = retryable
        self.meaning = meaning

    @property
    def kind(self) -> str:
        """The name stored in a sample's record (``error_kind``)."""
        return self.name.lower()

    @property
    def exit_status(self) -> int:
        """The status a task returns for this failure (one it detects itself)."""
        if not self.exit_statuses:
            raise ValueError(f"{self.kind} is not reported by a task's exit status")
        return self.exit_statuses[0]

    @classmethod
    def named(cls, kind: str) -> "Failure":
        """The failure a record names; a name this version does not know is UNKNOWN."""
        return cls.__members__.get(kind.upper(), cls.UNKNOWN) if kind else cls.UNKNOWN

    @classmethod
    def of_exit_status(cls, status: int) -> "Failure":
        for failure in cls:
            if status in failure.exit_statuses:
                return failure
        return cls.UNKNOWN


#: The exit status of a task that wrote its sample.
EXIT_OK = 0


def failure_in_task(exc: BaseException) -> Failure | None:
    """The failure a task reports for an exception it caught, or None for
    one it does not expect (it propagates, and the driver sees UNKNOWN)."""
    from solver.common.errors import ConfigError, SolverError

    if isinstance(exc, SolverError):
        return Failure.SOLVER_ERROR
    if isinstance(exc, ConfigError):
        return Failure.CONFIG_ERROR
    if isinstance(exc, OSError):
        return Failure.IO_ERROR
    return None


class TaskFailed(Exception):
    """A sample task ended with a non-zero exit status, carrying its failure.
    (Pickled by value from a worker to the driver.)"""

    def __init__(self, sample_id: str, exitcode: int):
        self.sample_id = sample_id
        self.exitcode = exitcode
        self.failure = Failure.of_exit_status(exitcode)
        super().__init__(f"sample {sample_id} ended with exit status {exitcode} ({self.failure.kind})")

    def __reduce__(self):
        return TaskFailed, (self.sample_id, self.exitcode)


def classify(exc: BaseException) -> Failure:
    """The failure of a task exception as the driver receives it from Parsl."""
    from parsl.app.errors import AppTimeout, BashExitFailure
    from parsl.executors.errors import ExecutorError  # BadStateException is one
    from parsl.executors.high_throughput.errors import ManagerLost, WorkerLost

    if isinstance(exc, TaskFailed):
        return exc.failure
    if isinstance(exc, BashExitFailure):
        return Failure.of_exit_status(exc.exitcode)
    if isinstance(exc, AppTimeout):
        return Failure.TIMEOUT
    if isinstance(exc, (ManagerLost, WorkerLost, ExecutorError)):
        return Failure.NODE_LOST
    if isinstance(exc, OSError):
        return Failure.IO_ERROR
    return Failure.UNKNOWN


#: What a failure that is not retryable costs of a task's retry budget: all of it.
FINAL_COST = 1e9


def retry_cost(exc: BaseException, task_record) -> float:
    """Parsl's ``retry_handler``: a retryable failure costs one retry, any
    other spends the budget (``resources.retries``) at once."""
    return 1.0 if classify(exc).retryable else FINAL_COST
