"""How the driver reads a failed task: Parsl's own exception classes and the
task's exit statuses become the failures of workflow.failures, which decide
about retries."""
from __future__ import annotations

import pytest
from parsl.app.errors import AppTimeout, BashExitFailure
from parsl.executors.errors import BadStateException
from parsl.executors.high_throughput.errors import ManagerLost, WorkerLost

from solver.common.errors import ConfigError, SolverError
from workflow.failures import FINAL_COST, Failure, TaskFailed, classify, failure_in_task, retry_cost
from workflow.layout import SampleRecord

SOLVER, CONFIG, IO = (Failure.SOLVER_ERROR.exit_status, Failure.CONFIG_ERROR.exit_status, Failure.IO_ERROR.exit_status)


@pytest.mark.parametrize("exc, kind", [
    (TaskFailed("s-1", SOLVER), "solver_error"),
    (BashExitFailure("simulate_with_mpi", CONFIG), "config_error"),
    (TaskFailed("s-1", IO), "io_error"),
    (BashExitFailure("simulate_with_mpi", 137), "killed"),
    (TaskFailed("s-1", -15), "killed"),
    (TaskFailed("s-1", 99), "unknown"),
    (AppTimeout("walltime exceeded"), "timeout"),
    (ManagerLost(b"manager-1", "node-7"), "node_lost"),
    (WorkerLost(3, "node-7"), "node_lost"),
    (BadStateException(None, RuntimeError("the block's job ended")), "node_lost"),
    (OSError(5, "Input/output error"), "io_error"),
    (ValueError("something else"), "unknown"),
])
def test_failure_kinds(exc, kind):
    assert classify(exc).kind == kind


def test_only_solver_and_configuration_errors_are_final():
    """A solver or configuration error fails the same way again: the retry
    budget is spent at once; anything else (a lost node, a kill, a timeout)
    is retried."""
    assert [f.kind for f in Failure if not f.retryable] == ["solver_error", "config_error"]
    assert retry_cost(TaskFailed("s-1", SOLVER), None) == FINAL_COST
    assert retry_cost(TaskFailed("s-1", CONFIG), None) == FINAL_COST
    for exc in (ManagerLost(b"m", "h"), TaskFailed("s-1", 137), AppTimeout("t"), OSError("disk"), ValueError()):
        assert retry_cost(exc, None) == 1.0


def test_a_task_reports_what_it_caught_by_exit_status():
    """The statuses a task returns come back as the same failure, and each
    kind has one status (none is shared)."""
    for exc, failure in ((SolverError("blow-up"), Failure.SOLVER_ERROR), (ConfigError("bad"), Failure.CONFIG_ERROR),
                         (OSError(28, "No space left on device"), Failure.IO_ERROR)):
        assert failure_in_task(exc) is failure
        assert Failure.of_exit_status(failure.exit_status) is failure
    assert failure_in_task(KeyError("x")) is None
    statuses = [status for f in Failure for status in f.exit_statuses]
    assert len(statuses) == len(set(statuses)) and 0 not in statuses
    with pytest.raises(ValueError, match="timeout is not reported by a task's exit status"):
        _ = Failure.TIMEOUT.exit_status


@pytest.mark.parametrize("kind, retryable", [
    ("solver_error", False), ("config_error", False), ("io_error", True), ("node_lost", True),
    ("killed", True), ("timeout", True), ("unknown", True), ("a kind from a newer ecgi", True),
])
def test_a_record_is_retried_by_its_kind(kind, retryable):
    record = SampleRecord(sample_id="s-1", state="failed", error_kind=kind)
    assert record.retryable is retryable


def test_the_architecture_documents_every_failure_as_the_code_treats_it():
    """docs/architecture.md, "Failures and retries": one row per kind, with
    its exit statuses and whether it is retried, as workflow.failures says."""
    from tests.conftest import REPO

    text = (REPO / "docs" / "architecture.md").read_text().split("## Failures and retries")[1].split("\n## ")[0]
    rows = {cells[0].strip("` "): cells for cells in
            ([c.strip() for c in line.strip("|").split("|")] for line in text.splitlines() if line.startswith("| `"))}
    assert list(rows) == [f.kind for f in Failure]
    for failure in Failure:
        _, statuses, retried, meaning = rows[failure.kind]
        assert retried == ("yes" if failure.retryable else "no")
        for status in failure.exit_statuses:
            assert str(status) in statuses
