"""How the driver reads a failed task: Parsl's own exception classes and the
task's exit statuses become the failure kinds that decide about retries."""
from __future__ import annotations

import pytest
from parsl.app.errors import AppTimeout, BashExitFailure
from parsl.executors.errors import BadStateException
from parsl.executors.high_throughput.errors import ManagerLost, WorkerLost

from workflow.apps import TaskFailed
from workflow.executors import classify_failure, retry_cost
from workflow.task import EXIT_CONFIG_ERROR, EXIT_IO_ERROR, EXIT_SOLVER_ERROR


@pytest.mark.parametrize("exc, kind", [
    (TaskFailed("s-1", EXIT_SOLVER_ERROR), "solver_error"),
    (BashExitFailure("simulate_with_mpi", EXIT_CONFIG_ERROR), "config_error"),
    (TaskFailed("s-1", EXIT_IO_ERROR), "io_error"),
    (BashExitFailure("simulate_with_mpi", 137), "killed"),
    (TaskFailed("s-1", 99), "unknown"),
    (AppTimeout("walltime exceeded"), "timeout"),
    (ManagerLost(b"manager-1", "node-7"), "node_lost"),
    (WorkerLost(3, "node-7"), "node_lost"),
    (BadStateException(None, RuntimeError("the block's job ended")), "node_lost"),
    (OSError(5, "Input/output error"), "io_error"),
    (ValueError("something else"), "unknown"),
])
def test_failure_kinds(exc, kind):
    assert classify_failure(exc) == kind


def test_only_solver_and_configuration_errors_are_final():
    """A solver or configuration error fails the same way again: the retry
    budget is spent at once; anything else (a lost node, a kill, a timeout)
    is retried."""
    assert retry_cost(TaskFailed("s-1", EXIT_SOLVER_ERROR), None) >= 1e9
    assert retry_cost(TaskFailed("s-1", EXIT_CONFIG_ERROR), None) >= 1e9
    for exc in (ManagerLost(b"m", "h"), TaskFailed("s-1", 137), AppTimeout("t"), OSError("disk")):
        assert retry_cost(exc, None) == 1.0
