"""The ``ecgi`` command line: one tool, one subcommand per task.

Each package contributes its subcommands through ``add_commands``; heavy
imports (MPI, PETSc, torch, Parsl) happen inside the handlers so that
``ecgi --help`` is instant and a missing optional dependency only affects
the commands that need it.
"""
from __future__ import annotations

import argparse
import sys
from typing import Callable, Sequence

Handler = Callable[[argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    from model import cli as model_cli
    from solver import cli as solver_cli

    from . import campaign_cli, dataset_cli

    parser = argparse.ArgumentParser(
        prog="ecgi",
        description="Cardiac electrical imaging: simulate synthetic hearts on MPI + PETSc, run "
        "campaigns of them with Parsl (locally or on SLURM), and train networks that map a "
        "12-lead ECG to activation times and transmembrane voltages.",
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    solver_cli.add_commands(commands)
    campaign_cli.add_commands(commands)
    dataset_cli.add_commands(commands)
    campaign_cli.add_demo_command(commands)
    model_cli.add_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
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
    from solver.errors import EcgiError

    try:
        return handler(args)
    except EcgiError as exc:
        _print_once(f"ecgi {args.command}: error: {exc}")
        return 2
    except KeyboardInterrupt:
        _print_once(f"ecgi {args.command}: interrupted")
        return 130
    except Exception:
        _abort_other_ranks_if_mpi()
        raise


def _print_once(message: str) -> None:
    """Print on rank 0 only when running under MPI (every rank hit the same error)."""
    mpi = sys.modules.get("mpi4py.MPI")
    if mpi is None or mpi.COMM_WORLD.Get_rank() == 0:
        print(message, file=sys.stderr)


def _abort_other_ranks_if_mpi() -> None:
    """An unexpected error on one rank would leave the others waiting forever."""
    mpi = sys.modules.get("mpi4py.MPI")
    if mpi is not None and mpi.COMM_WORLD.Get_size() > 1:
        import traceback

        traceback.print_exc()
        sys.stderr.flush()
        mpi.COMM_WORLD.Abort(1)


if __name__ == "__main__":
    sys.exit(main())
