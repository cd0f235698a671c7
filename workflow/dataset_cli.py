"""``ecgi dataset build`` and ``ecgi dataset import-llnl``: training data sets."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from solver.common.errors import ConfigError
from solver.common.limits import number

from .spec import LIMITS

if TYPE_CHECKING:
    from solver.common.datasets import Manifest


#: Free space a data set build needs before it starts (its first shards).
DATASET_FREE_BYTES = 16 << 20


def add_commands(commands) -> None:
    dataset = commands.add_parser(
        "dataset", help="build training data sets (HDF5 shards + manifest, docs/data-formats.md)",
        description="Aggregate sample files into sharded HDF5 training sets split by geometry.",
    )
    actions = dataset.add_subparsers(dest="dataset_command", metavar="ACTION", required=True)

    build = actions.add_parser(
        "build", help="a data set from the sample files of a campaign",
        description="Verify every sample file (*.h5) under each DIR, skip and report the incomplete or "
        "corrupted ones, split the rest by geometry and write shards, train statistics and "
        "manifest.json. Several DIRs (campaigns with different names) make one data set; anatomies are "
        "told apart by campaign, so campaigns that share geometry files would share anatomies across splits. "
        "Re-running leaves unchanged shards alone.",
    )
    build.add_argument("directories", nargs="+", metavar="DIR",
                       help="directory searched recursively for sample files (a campaign directory: its samples)")
    _shard_size_option(build)
    build.add_argument("--seed", type=number(int, 0, 2**32 - 1), default=0,
                       help="seed of the geometry shuffle (default 0; 0 to 2^32-1, as numpy takes it)")
    build.add_argument(
        "--splits", type=split_fractions, default=(0.8, 0.1, 0.1), metavar="TRAIN,VALIDATION,TEST",
        help="fractions of the geometries in each split (default 0.8,0.1,0.1)",
    )
    build.add_argument("--output", metavar="DATASET_DIR",
                       help="data set directory (default DIR/dataset; required with several DIRs)")
    build.set_defaults(handler=run_build)

    llnl = actions.add_parser(
        "import-llnl", help="the public LLNL intracardiac data set as an ecgi data set",
        description="Convert the data_hearts_dd_0p2* folders of pECGData_*.npy / VmData_*.npy pairs "
        "(Landajuela et al., LLNL) into the shard format: 12 leads from the electrodes, activation "
        "times from the first crossing of 0 mV, splits by volunteer.",
    )
    llnl.add_argument("path", metavar="PATH", help="directory holding the data_hearts_dd_0p2* folders (or one of them)")
    llnl.add_argument("--output", required=True, metavar="DATASET_DIR", help="data set directory to write")
    _shard_size_option(llnl)
    llnl.set_defaults(handler=run_import_llnl)


def _shard_size_option(parser: argparse.ArgumentParser) -> None:
    most = LIMITS["dataset_samples_per_shard"]
    parser.add_argument("--samples-per-shard", type=number(int, 1, most), default=64, metavar="K",
                        help=f"samples per shard file (default 64; at most {most})")


def split_fractions(text: str) -> tuple[float, ...]:
    """argparse type of ``--splits``: three comma-separated fractions."""
    fraction = number(float, 0.0, 1.0)
    try:
        return tuple(fraction(part) for part in text.split(","))
    except argparse.ArgumentTypeError as exc:
        raise argparse.ArgumentTypeError(f"expected three fractions such as 0.8,0.1,0.1, got {text!r} ({exc})") from None


def run_build(args: argparse.Namespace) -> int:
    from solver.common.files import check_writable

    from .dataset import build_dataset, check_dataset_dir

    directories = [Path(d) for d in args.directories]
    if args.output is None and len(directories) > 1:
        raise ConfigError(f"{len(directories)} directories of sample files: name the data set with --output DATASET_DIR")
    output = Path(args.output) if args.output else directories[0] / "dataset"
    check_dataset_dir(output)  # before the write probe, which touches the directory
    check_writable(output, DATASET_FREE_BYTES, directory=True, inputs=directories)
    files = [path for directory in directories for path in _campaign_sample_files(directory, output)]
    manifest = build_dataset(files, output, args.samples_per_shard, args.splits, args.seed)
    _print_summary(manifest, output)
    return 0


def _campaign_sample_files(directory: Path, output: Path) -> list[Path]:
    """The sample files under ``directory``; a campaign's own data set is never
    a source of samples, wherever this one goes."""
    from .dataset import find_sample_files

    excluded = [output, directory / "dataset"]
    if (directory / "spec.yaml").is_file() and (directory / "samples").is_dir():
        directory = directory / "samples"  # a campaign directory: its sample files only
    return find_sample_files(directory, exclude=excluded)


def run_import_llnl(args: argparse.Namespace) -> int:
    from solver.common.files import check_writable

    from .dataset import check_dataset_dir
    from .llnl import import_llnl

    check_dataset_dir(Path(args.output))
    check_writable(args.output, DATASET_FREE_BYTES, directory=True, inputs=[args.path])
    manifest = import_llnl(args.path, args.output, args.samples_per_shard)
    _print_summary(manifest, Path(args.output))
    return 0


def _print_summary(manifest: Manifest, output: Path) -> None:
    report = manifest.report
    for skipped in report.skipped:
        print(f"skipped {skipped.path}: {skipped.reason}", file=sys.stderr)
    sizes = ", ".join(f"{split} {manifest.split_size(split)}" for split in manifest.splits)
    print(f"{output / 'manifest.json'}: {sizes} samples; {len(report.written)} shard(s) written, "
          f"{len(report.reused)} unchanged, {len(report.removed)} removed, {len(report.skipped)} file(s) skipped")
