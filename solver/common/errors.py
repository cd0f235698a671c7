"""Errors a user can act on: each message says what is wrong and what to change.

The command line prints an ``EcgiError`` as one line and exits with its
``exit_code``: 2 for a mistake the user can fix (configuration, input files,
output location), 1 for a computation that failed.
"""
from __future__ import annotations


class EcgiError(Exception):
    """Base class of the errors ecgi reports to a user without a traceback."""

    exit_code = 2


class ConfigError(EcgiError, ValueError):
    """A configuration or input is invalid; raised before any work is done."""


class OutputError(EcgiError):
    """An output location cannot be written: missing permission, read-only, full."""


class SolverError(EcgiError, RuntimeError):
    """The numerical solution failed (blow-up, solver divergence)."""

    exit_code = 1


class RunError(EcgiError, RuntimeError):
    """A computation failed for a reason outside the user's input (a dead executor,
    a failed helper process)."""

    exit_code = 1
