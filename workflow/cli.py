"""The ``ecgi`` command line: one tool, one subcommand per task.

Each package contributes its subcommands through ``add_commands``; heavy
imports (MPI, PETSc, torch, Parsl) happen inside the handlers so that
``ecgi --help`` is instant and a missing optional dependency only affects
the commands that need it.
"""
from __future__ import annotations

import argparse
import os
import sys
import traceback
from typing import Callable, Sequence

Handler = Callable[[argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    from model import cli as model_cli
    from solver import cli as solver_cli

    from . import campaign_cli, dataset_cli, demo, jobs

    parser = argparse.ArgumentParser(
        prog="ecgi",
        description="Cardiac electrical imaging: simulate synthetic hearts on MPI + PETSc, run "
        "campaigns of them with Parsl (locally or on SLURM), and train networks that map a "
        "12-lead ECG to activation times and transmembrane voltages.",
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    parser.add_argument("--debug", action="store_true",
                        help="show the traceback of an error (also accepted after the command; or ECGI_DEBUG=1)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    solver_cli.add_commands(commands)
    campaign_cli.add_commands(commands)
    dataset_cli.add_commands(commands)
    demo.add_command(commands)
    model_cli.add_commands(commands)
    # model trains; workflow submits its training to SLURM.
    jobs.add_submit_options(commands.choices["train"])
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # --debug is accepted anywhere on the line, not only before the command.
    debug = "--debug" in argv or os.environ.get("ECGI_DEBUG", "") not in ("", "0")
    argv = _join_dash_values([a for a in argv if a != "--debug"])
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        from solver import __version__

        print(__version__)
        return 0
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 0
    # "ecgi campaign run", "ecgi train": the command as the user typed it.
    action = getattr(args, f"{args.command}_command", None)
    name = f"ecgi {args.command}" + (f" {action}" if isinstance(action, str) else "")
    try:
        return handler(args)
    except KeyboardInterrupt:
        _print_once(f"{name}: interrupted")
        return 130
    except Exception as exc:
        return report_error(exc, name, debug)


#: Options whose value starts with a dash ("--petsc-options -help"), which
#: argparse would take for an option of its own.
DASH_VALUE_OPTIONS = ("--petsc-options",)


def _join_dash_values(argv: list[str]) -> list[str]:
    """``--petsc-options -help`` as ``--petsc-options=-help``: the form the
    help text shows works as well as the one with ``=``."""
    joined: list[str] = []
    i = 0
    while i < len(argv):
        if argv[i] in DASH_VALUE_OPTIONS and i + 1 < len(argv):
            joined.append(f"{argv[i]}={argv[i + 1]}")
            i += 2
        else:
            joined.append(argv[i])
            i += 1
    return joined


def report_error(exc: BaseException, prefix: str = "ecgi", debug: bool = False) -> int:
    """The CLI's one error path: an expected failure is printed as one line
    (``PREFIX: error: WHAT; FIX``) and its exit status returned (2: the
    user can fix it, 1: the computation failed); ``debug`` adds the
    traceback.  Anything else is a bug: traceback, and other MPI ranks are
    stopped."""
    described = describe_error(exc)
    if described is None:
        _abort_other_ranks_if_mpi()
        raise exc
    message, status = described
    if debug:
        traceback.print_exception(exc)
    _print_once(f"{prefix}: error: {message}")
    return status


def describe_error(exc: BaseException) -> tuple[str, int] | None:
    """(message, exit status) of an expected failure; None for a bug."""
    import errno

    from solver.common.errors import EcgiError
    from solver.common.files import describe_os_error

    if isinstance(exc, EcgiError):
        return str(exc), exc.exit_code
    if isinstance(exc, OSError):
        where = f"{exc.filename}: " if exc.filename else ""
        reason = describe_os_error(exc)
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return f"{where}{reason}; free some space or choose another output location", 2
        if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
            return f"{where}{reason}; choose a location you can write (or read)", 2
        if exc.errno is not None or exc.filename:
            return f"{where}{reason}", 2
        # h5py raises OSError with only HDF5's message (which holds the errno).
        text = " ".join(str(exc).split())[:500] or type(exc).__name__
        if "errno = 28" in text or "No space left" in text:
            text += "; no space left on device: free some space or choose another output location"
        return text, 2
    if isinstance(exc, MemoryError):
        return "out of memory; use a smaller input or configuration, or a machine with more memory", 1
    return None


def _print_once(message: str) -> None:
    """Print on rank 0 only when running under MPI (every rank hit the same error)."""
    mpi = sys.modules.get("mpi4py.MPI")
    if mpi is None or mpi.COMM_WORLD.Get_rank() == 0:
        print(message, file=sys.stderr)


def _abort_other_ranks_if_mpi() -> None:
    """An unexpected error on one rank would leave the others waiting forever."""
    mpi = sys.modules.get("mpi4py.MPI")
    if mpi is not None and mpi.COMM_WORLD.Get_size() > 1:
        traceback.print_exc()
        sys.stderr.flush()
        mpi.COMM_WORLD.Abort(1)


if __name__ == "__main__":
    sys.exit(main())
