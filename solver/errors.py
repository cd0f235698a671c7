"""Errors a user can act on: each message says what is wrong and what to change."""


class EcgiError(Exception):
    """Base class of the errors ecgi reports to a user without a traceback."""


class ConfigError(EcgiError, ValueError):
    """A configuration is invalid; raised before any work is done."""


class SolverError(EcgiError, RuntimeError):
    """The numerical solution failed (blow-up, solver divergence)."""
