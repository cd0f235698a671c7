"""Retries within one run of a campaign (docs/architecture.md, "Failures and
retries"): a retryable failure is run again and succeeds, a final one is
attempted once.

The campaign's own Parsl configuration (``workflow.executors.parsl_config``:
its ``retries`` and ``retry_handler``) runs its tasks in a thread of this
process instead of a worker pool, so that a failure can be injected into
the task at one attempt exactly; the task, its record and the driver's
loop are the real ones."""
from __future__ import annotations

import errno
import json
from pathlib import Path

import pytest
import yaml

from solver.common.errors import ConfigError, SolverError
from tests.conftest import REPO
from workflow.spec import load_spec

SAMPLE = "tiny-s000000"


@pytest.fixture
def in_threads(monkeypatch):
    """The campaign's Parsl configuration with its tasks run in one thread."""
    from parsl.config import Config
    from parsl.executors import ThreadPoolExecutor

    import workflow.executors as executors

    real = executors.parsl_config

    def config(spec, run_dir):
        made = real(spec, run_dir)
        return Config(executors=[ThreadPoolExecutor(label="simulations", max_threads=1)], run_dir=made.run_dir,
                      retries=made.retries, retry_handler=made.retry_handler)

    monkeypatch.setattr(executors, "parsl_config", config)


def campaign(tmp_path: Path, retries: int) -> Path:
    """A one-sample campaign of 10 ms on a coarse grid."""
    spec = yaml.safe_load((REPO / "examples" / "campaigns" / "tiny.yaml").read_text())
    spec.update(output_dir=str(tmp_path / "campaign"), samples=1)
    spec["solver"]["duration_ms"] = 10
    spec["resources"]["retries"] = retries
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def run(path: Path):
    from workflow.runner import run_campaign

    return run_campaign(load_spec(path), build_dataset=False)


def record(tmp_path: Path) -> dict:
    [path] = (tmp_path / "campaign" / "records").rglob(f"{SAMPLE}.json")
    return json.loads(path.read_text())


def fail_first(monkeypatch, module, name: str, exc: Exception) -> list[int]:
    """Make ``module.name`` raise ``exc`` at its first call only; the calls are counted."""
    real, calls = getattr(module, name), []

    def flaky(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise exc
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, flaky)
    return calls


def test_a_transient_io_error_is_retried_and_the_sample_done_in_the_same_run(tmp_path, in_threads, monkeypatch):
    import solver.patient

    writes = fail_first(monkeypatch, solver.patient, "write_sample", OSError(errno.EIO, "Input/output error"))
    summary = run(campaign(tmp_path, retries=1))
    assert (summary.submitted, summary.done, summary.failed) == (1, 1, {})
    assert len(writes) == 2
    done = record(tmp_path)
    assert (done["state"], done["attempts"], done["error_kind"]) == ("done", 2, "")
    log = Path(done["log_path"]).read_text()
    assert log.count(f"ecgi campaign task {SAMPLE}: io_error: [Errno 5] Input/output error") == 1


def test_without_retries_the_transient_failure_stays_failed_and_retryable(tmp_path, in_threads, monkeypatch):
    import solver.patient

    writes = fail_first(monkeypatch, solver.patient, "write_sample", OSError(errno.EIO, "Input/output error"))
    summary = run(campaign(tmp_path, retries=0))
    assert summary.done == 0 and summary.failed == {SAMPLE: "io_error: [Errno 5] Input/output error"}
    assert len(writes) == 1
    failed = record(tmp_path)
    assert (failed["state"], failed["attempts"], failed["exit_status"]) == ("failed", 1, 5)


class Diverges:
    """A patient simulation whose solver diverges at once."""

    def __init__(self, config, comm):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        return False

    def run(self):
        raise SolverError("numerical blow-up at t = 1 ms")


@pytest.mark.parametrize("kind, status", [("solver_error", 3), ("config_error", 4)])
def test_a_final_failure_is_attempted_once_despite_retries(tmp_path, in_threads, monkeypatch, kind, status):
    import solver.patient
    import workflow.patients

    calls = []
    if kind == "solver_error":
        monkeypatch.setattr(solver.patient, "PatientSimulation", lambda *a: calls.append(1) or Diverges(*a))
        message = "numerical blow-up at t = 1 ms"
    else:
        message = "heart_scale 7 is outside [0.5, 2]"
        monkeypatch.setattr(workflow.patients, "patient_config",
                            lambda *a: calls.append(1) or (_ for _ in ()).throw(ConfigError(message)))
    summary = run(campaign(tmp_path, retries=3))
    assert summary.done == 0 and summary.failed == {SAMPLE: f"{kind}: {message}"}
    assert len(calls) == 1
    failed = record(tmp_path)
    assert (failed["state"], failed["attempts"], failed["exit_status"], failed["error_kind"]) == \
        ("failed", 1, status, kind)
