"""PETSc options given to ecgi, the way PETSc's own examples take them.

Every PETSc solver of ecgi has an options prefix and calls
``setFromOptions``, so any PETSc option reaches it by name:

    diffusion_   the implicit diffusion step (solver.numerics.timestepping)
    laplace_     the heart's Laplace coordinates (solver.patient.laplace)
    torso_       the torso's lead fields (solver.patient.torso)

Options come from the ``PETSC_OPTIONS`` environment variable (PETSc reads it
itself), from ``ecgi simulate --petsc-options "..."``, or from a campaign
spec's ``solver.petsc_options``; the latter two are checked here before any
work and inserted into PETSc's options database.
"""
from __future__ import annotations

import re
import shlex

from ..common.errors import ConfigError

PREFIXES = ("diffusion_", "laplace_", "torso_")
_NAME = re.compile(r"-[A-Za-z][A-Za-z0-9_]*")
_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def parse_petsc_options(text: str) -> list[str]:
    """The tokens of an options string: option names (``-name``), each
    followed by at most one value; refused with the reason otherwise."""
    try:
        tokens = shlex.split(text)
    except ValueError as exc:
        raise ConfigError(f"PETSc options {text!r}: {exc}") from None
    expecting_name = True
    for token in tokens:
        if _NAME.fullmatch(token):
            expecting_name = False
            continue
        if token.startswith("-") and not _NUMBER.fullmatch(token):
            raise ConfigError(f"PETSc options: {token!r} is not an option name (-name, letters, digits and _)")
        if expecting_name:
            raise ConfigError(f"PETSc options: {token!r} is a value without an option name before it; "
                              f"give options as '-{PREFIXES[0]}ksp_type cg -{PREFIXES[1]}pc_type gamg'")
        expecting_name = True
    return tokens


def insert_petsc_options(text: str) -> None:
    """Add the options to this process's PETSc options database (before the
    solvers are set up; they read it in ``setFromOptions``)."""
    tokens = parse_petsc_options(text)
    if tokens:
        from petsc4py import PETSc

        PETSc.Options().insertString(" ".join(shlex.quote(t) for t in tokens))
