"""PETSc options given to ecgi, the way PETSc's own examples take them.

Every PETSc solver of ecgi has an options prefix and calls
``setFromOptions``, so any PETSc option reaches it by name:

    diffusion_   the implicit diffusion step (solver.numerics.timestepping)
    laplace_     the heart's Laplace coordinates (solver.patient.laplace)
    torso_       the torso's lead fields (solver.patient.torso)

Options come from ``ecgi simulate --petsc-options "..."`` or from a campaign
spec's ``solver.petsc_options``; both are checked here before any work and
inserted into PETSc's options database.  A spec may come from someone else,
so what they accept is narrow:

* options under the three prefixes, plus ALLOWED_GLOBAL;
* no option that reads or writes a file: PETSc's viewers and monitors
  (``*_view``, ``*_monitor``...) may print to the standard output, so they
  take no value (``-ksp_view ascii:FILE`` and ``binary`` write files);
* values are words and numbers, never paths;
* and PETSc itself must accept each one: ``check_with_petsc`` sets up a
  solver of each prefix on a tiny matrix with the options and names the
  first it refuses (``-diffusion_ksp_type nonsense``).

``PETSC_OPTIONS`` in the environment is PETSc's own and reaches it
unchecked: it is the user's own setting, like any other PETSc program's.
"""
from __future__ import annotations

import re
import shlex
from typing import Iterator

from ..common.errors import ConfigError

PREFIXES = ("diffusion_", "laplace_", "torso_")
#: Options without a prefix that are accepted, each for a reason:
#: ``help`` lists each solver's options as it is set up (how to find an
#: option's name); ``options_left`` lists at the end the options nothing
#: used (a misspelt option is otherwise ignored without a word).
ALLOWED_GLOBAL = ("help", "options_left")
#: Parts of an option name (between underscores) that mean a file is read
#: or written, or a window opened: never accepted.
FILE_WORDS = frozenset({"file", "filename", "load", "dump", "history", "log", "save", "output", "binary",
                        "hdf5", "vtk", "matlab", "socket", "saws", "draw", "plot"})
#: Parts that mean a viewer: accepted without a value only (the standard output).
VIEWER_WORDS = ("view", "monitor", "converged", "reason")

_NAME = re.compile(r"-[A-Za-z][A-Za-z0-9_]*")
_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")
#: A value: a word or a number (lists with commas); no path, no viewer spec.
_VALUE = re.compile(r"[A-Za-z0-9_.+,-]+")
#: PETSc's error codes a refused option gives, in words.
_PETSC_ERRORS = {56: "not supported by this PETSc build", 62: "a value it cannot use", 63: "a value it cannot read",
                 86: "an unknown type, or one this PETSc was built without"}


def parse_petsc_options(text: str) -> list[str]:
    """The tokens of an options string: option names (``-name``), each
    followed by at most one value; refused with the reason otherwise.
    Checked without PETSc (the campaign driver never loads it)."""
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
    for name, value in _pairs(tokens):
        _check_option(name, value)
    return tokens


def _pairs(tokens: list[str]) -> Iterator[tuple[str, str | None]]:
    """(name without its dash, value or None) of well-formed tokens."""
    i = 0
    while i < len(tokens):
        has_value = i + 1 < len(tokens) and not _NAME.fullmatch(tokens[i + 1])
        yield tokens[i][1:], tokens[i + 1] if has_value else None
        i += 2 if has_value else 1


def _check_option(name: str, value: str | None) -> None:
    """Refuse an option outside the prefixes, one touching files, a viewer with a value."""
    option = f"-{name}" + (f" {value}" if value is not None else "")
    words = set(name.lower().split("_"))
    if words & FILE_WORDS or name.startswith("options_") and name != "options_left":
        raise ConfigError(f"PETSc option {option}: options that read or write files are not accepted; "
                          f"give ecgi's solvers options under {', '.join(PREFIXES)} only")
    if name in ALLOWED_GLOBAL:
        if value is not None:
            raise ConfigError(f"PETSc option {option}: -{name} takes no value here")
        return
    if not name.startswith(PREFIXES):
        raise ConfigError(f"PETSc option -{name}: only options of ecgi's solvers are accepted, named by their "
                          f"prefixes {', '.join(PREFIXES)} (e.g. -{PREFIXES[0]}ksp_type cg), and "
                          f"-{', -'.join(ALLOWED_GLOBAL)}")
    if value is None:
        return
    if any(word.startswith(VIEWER_WORDS) for word in words):
        raise ConfigError(f"PETSc option {option}: a viewer or monitor prints to the standard output and takes "
                          f"no value here (a viewer's value would write a file); give -{name} alone")
    if not _VALUE.fullmatch(value):
        raise ConfigError(f"PETSc option {option}: a value is a word or a number "
                          "(letters, digits and _ . + , -), never a path")


def insert_petsc_options(text: str) -> None:
    """Check the options (as parse_petsc_options, then with PETSc) and add
    them to this process's options database, before the solvers are set up
    (they read it in ``setFromOptions``)."""
    tokens = parse_petsc_options(text)
    if not tokens:
        return
    from petsc4py import PETSc

    solver_options = [(n, v) for n, v in _pairs(tokens) if n not in ALLOWED_GLOBAL]
    check_with_petsc(solver_options)
    # -help last: it would print each check's options too.
    PETSc.Options().insertString(" ".join(shlex.quote(t) for t in tokens))


def check_with_petsc(options: list[tuple[str, str | None]]) -> None:
    """Insert the options one by one, each time setting up a solver of its
    prefix on a 2 x 2 matrix; the first option PETSc refuses is named (with
    its reason) and every option inserted is removed again."""
    from petsc4py import PETSc

    database = PETSc.Options()
    matrix = PETSc.Mat().createAIJ([2, 2], nnz=1, comm=PETSc.COMM_SELF)
    for i in range(2):
        matrix.setValue(i, i, 1.0)
    matrix.assemble()
    inserted: list[str] = []
    PETSc.Sys.pushErrorHandler("ignore")  # PETSc's error dump is not the user's line
    try:
        for name, value in options:
            database.insertString(f"-{name}" + ("" if value is None else f" {shlex.quote(value)}"))
            inserted.append(name)
            prefix = next(p for p in PREFIXES if name.startswith(p))
            code = _set_up(matrix, prefix)
            if code:
                option = f"-{name}" + (f" {value}" if value is not None else "")
                reason = _PETSC_ERRORS.get(code, f"PETSc error code {code}")
                raise ConfigError(f"PETSc option {option}: PETSc refuses it ({reason}); leave it out, or list "
                                  "the solvers' options with `ecgi simulate CONFIG -o OUT --petsc-options=-help`")
    finally:
        PETSc.Sys.popErrorHandler()
        for name in inserted:
            database.delValue(name)
        matrix.destroy()


def _set_up(matrix, prefix: str) -> int:
    """0, or the PETSc error code of setting up a KSP with ``prefix`` on ``matrix``."""
    from petsc4py import PETSc

    ksp = PETSc.KSP().create(PETSc.COMM_SELF)
    try:
        ksp.setOptionsPrefix(prefix)
        ksp.setOperators(matrix)
        ksp.setFromOptions()
        ksp.setUp()
        return 0
    except PETSc.Error as exc:
        return exc.ierr or -1
    finally:
        ksp.destroy()


def check_in_subprocess(text: str, env: dict[str, str] | None = None) -> None:
    """``insert_petsc_options`` in a child process, for a caller that must
    not load PETSc and MPI itself (the campaign driver), before any sample."""
    import subprocess
    import sys

    if not parse_petsc_options(text):
        return
    proc = subprocess.run([sys.executable, "-m", __name__, text], capture_output=True, text=True, timeout=300, env=env)
    lines = proc.stderr.strip().splitlines()
    if proc.returncode == 2 and lines:
        raise ConfigError(lines[-1])
    if proc.returncode != 0:
        from ..common.errors import RunError

        raise RunError(f"checking the PETSc options failed (exit status {proc.returncode}): "
                       f"{lines[-1] if lines else 'no message'}")


if __name__ == "__main__":  # check_in_subprocess's child
    import sys

    try:
        insert_petsc_options(sys.argv[1])
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        sys.exit(2)
