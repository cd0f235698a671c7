"""Training data sets: verified sample files in, HDF5 shards and a manifest out.

The layout is documented in docs/data-formats.md.  Samples are split by
geometry, so that no anatomy is seen in training and evaluation alike.
Everything the build writes is a deterministic function of its inputs: the
same samples and settings give byte-identical shards and manifest, and a
shard whose sources did not change is left alone (its ``source_digest``
attribute records what it was made from), so rebuilding after a campaign
added or repaired a few samples rewrites only what changed.

Any source of samples (``SourceSample``) can be written with ``write_dataset``;
``build_dataset`` feeds it the sample files of ``ecgi simulate``, and
``workflow.llnl`` the public LLNL data set.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Mapping, Protocol, Sequence

import h5py
import numpy as np

from solver.common.datasets import (
    DT_MS,
    FORMAT_VERSION,
    MANIFEST_NAME,
    SHARD_FORMAT,
    SPLITS,
    Manifest,
    SampleArrays,
    ShardInfo,
    ShardSample,
    check_shard,
    train_statistics,
    write_shard,
)
from solver.common.errors import ConfigError
from solver.common.files import sha256_file, write_text_atomic
from solver.common.sites import LEAD_NAMES, SITE_NAMES

_SHARD_NAME = re.compile(r"shard-\d{5}\.h5")

log = logging.getLogger(__name__)


class SourceSample(ShardSample, Protocol):
    """A sample a build reads (solver.common.datasets.ShardSample) that also
    says when its content changed."""

    @property
    def fingerprint(self) -> str:
        """Changes whenever the sample's content does; decides whether a shard is rewritten."""
        ...


@dataclass(frozen=True)
class SkippedFile:
    path: Path
    reason: str


@dataclass
class BuildReport:
    """What a build did, for the command line and the benchmarks (not stored on disk)."""

    skipped: list[SkippedFile] = field(default_factory=list)
    written: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class SampleFile:
    """A verified sample file of ``ecgi simulate`` (see solver.patient.write_sample)."""

    path: Path
    sample_id: str
    geometry_id: str
    condition: str
    parameters: Mapping[str, float]
    fingerprint: str  #: the file's own content checksum, verified on reading

    def read(self) -> SampleArrays:
        with h5py.File(self.path, "r") as f:
            return SampleArrays(f["leads"][()], f["vm_sites"][()], f["act_sites"][()])


def find_sample_files(directory: Path, exclude: Path | Sequence[Path] | None = None) -> list[Path]:
    """Every ``*.h5`` under ``directory`` (sorted), leaving out hidden files
    (half-written temporaries) and anything under ``exclude`` (data sets
    written inside the campaign directory)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ConfigError(f"{directory}: no such directory of sample files")
    excludes = [exclude] if isinstance(exclude, (str, Path)) else list(exclude or [])
    excluded = [Path(e).resolve() for e in excludes]
    found = []
    for path in sorted(directory.rglob("*.h5")):
        if path.name.startswith("."):
            continue
        if any(path.resolve().is_relative_to(e) for e in excluded):
            continue
        found.append(path)
    return found


def scan_sample_files(paths: Sequence[Path]) -> tuple[list[SampleFile], list[SkippedFile]]:
    """The usable sample files, and why each other one was refused.

    A sample's id is its file name without ``.h5`` (campaigns name files by
    sample id), so it stays the same wherever the file is kept; two files of
    the same name are refused as ambiguous."""
    by_id: dict[str, Path] = {}
    samples: list[SampleFile] = []
    skipped: list[SkippedFile] = []
    for path in map(Path, paths):
        if path.stem in by_id:
            raise ConfigError(f"{path}: sample id {path.stem!r} is also the name of {by_id[path.stem]}; "
                              "sample file names must be unique")
        by_id[path.stem] = path
        try:
            samples.append(_read_sample_file(path, path.stem))
        except _Refused as exc:
            skipped.append(SkippedFile(path, str(exc)))
            log.warning("skipping %s: %s", path, exc)
    return samples, skipped


class _Refused(Exception):
    """A sample file that cannot go into a data set; the build skips it."""


_SAMPLE_DATASETS = {"leads": len(LEAD_NAMES), "vm_sites": len(SITE_NAMES)}


def _read_sample_file(path: Path, sample_id: str) -> SampleFile:
    from solver.numerics.output import IncompleteFileError, verify_simulation_file

    try:
        verify_simulation_file(path)
        with h5py.File(path, "r") as f:
            return _sample_file_metadata(f, path, sample_id)
    except IncompleteFileError as exc:
        raise _Refused(str(exc)) from None
    except OSError as exc:
        raise _Refused(f"unreadable ({exc})") from None


def _sample_file_metadata(f: h5py.File, path: Path, sample_id: str) -> SampleFile:
    from solver.numerics.output import FORMAT_VERSION, format_mismatch

    if f.attrs.get("format_version") != FORMAT_VERSION:
        raise ConfigError(format_mismatch(path, f.attrs.get("format_version")))
    missing = [name for name in (*_SAMPLE_DATASETS, "act_sites") if name not in f]
    if missing:
        raise _Refused(f"not a patient sample file (no {', '.join(missing)}; a plain simulation?)")
    lengths = set()
    for name, columns in _SAMPLE_DATASETS.items():
        shape = f[name].shape
        if len(shape) != 2 or shape[1] != columns or shape[0] == 0:
            raise _Refused(f"{name} has shape {shape}, expected (T, {columns})")
        lengths.add(shape[0])
        dt = float(f[name].attrs.get("dt_ms", math.nan))
        if dt != DT_MS:
            raise _Refused(f"{name} is sampled every {dt} ms; data sets use {DT_MS} ms")
    if len(lengths) != 1:
        raise _Refused("leads and vm_sites have different lengths")
    if f["act_sites"].shape != (len(SITE_NAMES),):
        raise _Refused(f"act_sites has shape {f['act_sites'].shape}, expected ({len(SITE_NAMES)},)")
    try:
        geometry, condition = str(f.attrs["geometry_id"]), str(f.attrs["condition"])
        parameters = json.loads(f.attrs["parameters_json"])
        parameters = {str(k): float(v) for k, v in parameters.items()}
    except KeyError as exc:
        raise _Refused(f"attribute {exc} missing") from None
    except (TypeError, ValueError, AttributeError) as exc:
        raise _Refused(f"parameters_json is not a JSON object of numbers ({exc})") from None
    return SampleFile(path, sample_id, geometry, condition, parameters, str(f.attrs["checksum_sha256"]))


def build_dataset(
    sample_files: list[Path],
    output_dir: Path,
    samples_per_shard: int = 64,
    split_fractions: Sequence[float] = (0.8, 0.1, 0.1),
    seed: int = 0,
    samples_per_trace: int = 500,
) -> Manifest:
    """Write the data set of ``sample_files`` to ``output_dir``.

    Files failing verification (incomplete, corrupted, not a patient sample)
    are skipped and listed in ``manifest.report.skipped``; the build fails
    only when none is usable."""
    samples, skipped = scan_sample_files(sample_files)
    if not samples:
        reasons = "; ".join(f"{s.path}: {s.reason}" for s in skipped[:3])
        raise ConfigError(f"no usable sample files among {len(sample_files)}" + (f" ({reasons})" if reasons else ""))
    return write_dataset(samples, output_dir, samples_per_shard, split_fractions, seed, samples_per_trace, skipped)


def write_dataset(
    samples: Sequence[SourceSample],
    output_dir: Path,
    samples_per_shard: int = 64,
    split_fractions: Sequence[float] = (0.8, 0.1, 0.1),
    seed: int = 0,
    samples_per_trace: int = 500,
    skipped: Sequence[SkippedFile] = (),
) -> Manifest:
    """Split ``samples`` by geometry, write the shards that changed, the
    train statistics and the manifest (last, atomically)."""
    fractions = validate_settings(samples_per_shard, split_fractions, samples_per_trace)
    _check_unique_ids(samples)
    output_dir = Path(output_dir)
    report = BuildReport(skipped=list(skipped))
    assignment = assign_splits((s.geometry_id for s in samples), fractions, seed)
    parameter_names = sorted({name for s in samples for name in s.parameters})
    chunks = {split: list(_batches(sorted((s for s in samples if assignment[s.geometry_id] == split),
                                          key=lambda s: s.sample_id), samples_per_shard)) for split in SPLITS}
    claim_dataset_dir(output_dir, (shard_file(split, index) for split in SPLITS for index in range(len(chunks[split]))))
    previous = _previous_hashes(output_dir)
    splits: dict[str, list[ShardInfo]] = {
        split: [_ensure_shard(output_dir, split, index, chunk, parameter_names, samples_per_trace, previous, report)
                for index, chunk in enumerate(chunks[split])]
        for split in SPLITS
    }
    _remove_stale_shards(output_dir, splits, report)
    manifest = Manifest(
        splits=splits,
        statistics=train_statistics([output_dir / s.file for s in splits["train"]]),
        samples_per_step=samples_per_trace,
        report=report,
    )
    write_text_atomic(output_dir / MANIFEST_NAME, manifest.to_json())
    return manifest


#: Written into a data set directory before any shard: the shard files that
#: builds of this data set have written or are about to write.  With the
#: manifest it says which files there are ecgi's, also after a build that
#: ended before its manifest.
OWNER_MARK = ".ecgi-dataset.json"


def check_dataset_dir(output_dir: Path) -> None:
    """Refuse, before any work, a data set directory that ecgi does not own:
    only a new or empty directory, or one that data set builds wrote (every
    shard file in it claimed by its manifest or its mark), may be written."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return
    entries = sorted(entry.name for entry in output_dir.iterdir())
    if not entries:
        return
    fix = "choose a new or empty directory, or one that `ecgi dataset build` wrote"
    claimed = _claimed_files(output_dir)
    if claimed is None:
        raise ConfigError(f"{output_dir} already holds files that are not an ecgi data set "
                          f"({', '.join(entries[:3])}{', ...' if len(entries) > 3 else ''}); {fix}")
    unclaimed = [file for file in _shard_files(output_dir) if file not in claimed]
    if unclaimed:
        raise ConfigError(f"{output_dir / unclaimed[0]} is not a shard of the data set in {output_dir}; "
                          f"{fix}, or move that file away")


def _claimed_files(output_dir: Path) -> set[str] | None:
    """The shard files the manifest and the mark claim; None if neither is there."""
    claims: set[str] | None = None
    try:
        manifest = Manifest.load(output_dir / MANIFEST_NAME)
        claims = {shard.file for shards in manifest.splits.values() for shard in shards}
    except ConfigError:
        pass
    try:
        marked = json.loads((output_dir / OWNER_MARK).read_text())["files"]
        claims = (claims or set()) | {str(file) for file in marked}
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return claims


def claim_dataset_dir(output_dir: Path, files: Iterable[str]) -> None:
    """Check that the directory is ecgi's to write (``check_dataset_dir``),
    then add ``files`` to its mark before any of them is written."""
    check_dataset_dir(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    claims = (_claimed_files(output_dir) or set()) | set(files)
    write_text_atomic(output_dir / OWNER_MARK, json.dumps({
        "about": "the shard files of this ecgi data set; `ecgi dataset build` rewrites them", "files": sorted(claims),
    }, indent=1))


def shard_file(split: str, index: int) -> str:
    """A shard's file, relative to the data set directory."""
    return f"{split}/shard-{index:05d}.h5"


def _shard_files(root: Path) -> list[str]:
    """The shard-named files under a data set directory's split folders."""
    return [f"{split}/{path.name}" for split in SPLITS if (root / split).is_dir()
            for path in sorted((root / split).iterdir()) if _SHARD_NAME.fullmatch(path.name)]


def validate_settings(
    samples_per_shard: int, split_fractions: Sequence[float], samples_per_trace: int,
) -> tuple[float, float, float]:
    """Refuse impossible settings before anything is read or written."""
    if samples_per_shard < 1:
        raise ConfigError(f"samples per shard must be at least 1, got {samples_per_shard}")
    if samples_per_trace < 1:
        raise ConfigError(f"samples per trace must be at least 1, got {samples_per_trace}")
    fractions = tuple(float(x) for x in split_fractions)
    if len(fractions) != len(SPLITS) or any(not (x >= 0) for x in fractions):
        raise ConfigError(f"split fractions must be {len(SPLITS)} numbers >= 0 (train, validation, test), got {split_fractions}")
    if abs(sum(fractions) - 1.0) > 1e-6 or fractions[0] <= 0:
        raise ConfigError(f"split fractions must add up to 1 with a positive train fraction, got {split_fractions}")
    return fractions[0], fractions[1], fractions[2]


def _check_unique_ids(samples: Sequence[SourceSample]) -> None:
    seen: set[str] = set()
    for sample in samples:
        if sample.sample_id in seen:
            raise ConfigError(f"sample id {sample.sample_id!r} occurs twice; sample ids must be unique")
        seen.add(sample.sample_id)


def split_counts(n_geometries: int, fractions: Sequence[float]) -> list[int]:
    """Geometries per split: largest remainders of the fractions, then one
    geometry moved from the largest split into each empty split with a
    positive fraction while there are enough geometries to go round."""
    exact = [f * n_geometries for f in fractions]
    counts = [math.floor(x) for x in exact]
    by_remainder = sorted(range(len(counts)), key=lambda i: (-(exact[i] - counts[i]), i))
    for i in by_remainder[: n_geometries - sum(counts)]:
        counts[i] += 1
    if n_geometries >= sum(1 for f in fractions if f > 0):
        for i, fraction in enumerate(fractions):
            if fraction > 0 and counts[i] == 0:
                counts[max(range(len(counts)), key=lambda j: (counts[j], -j))] -= 1
                counts[i] += 1
    return counts


def assign_splits(geometry_ids: Iterable[str], fractions: Sequence[float], seed: int) -> dict[str, str]:
    """Geometry id -> split: the sorted ids shuffled with ``seed``, then cut by ``fractions``."""
    geometries = sorted(set(geometry_ids))
    order = np.random.default_rng(seed).permutation(len(geometries))
    shuffled = [geometries[i] for i in order]
    assignment: dict[str, str] = {}
    start = 0
    for split, count in zip(SPLITS, split_counts(len(geometries), fractions)):
        assignment.update({g: split for g in shuffled[start:start + count]})
        start += count
    return assignment


def _batches(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def shard_digest(samples: Sequence[SourceSample], parameter_names: Sequence[str], samples_per_trace: int) -> str:
    """SHA-256 of everything a shard is made from; equal digests mean equal shards."""
    document = {
        "format_version": FORMAT_VERSION,
        "samples_per_trace": samples_per_trace,
        "parameter_names": list(parameter_names),
        "samples": [
            [s.sample_id, s.geometry_id, s.condition, s.fingerprint,
             [s.parameters.get(name) for name in parameter_names]]
            for s in samples
        ],
    }
    return hashlib.sha256(json.dumps(document).encode()).hexdigest()


def _ensure_shard(
    root: Path, split: str, index: int, samples: list[SourceSample], parameter_names: list[str],
    samples_per_trace: int, previous: dict[str, str], report: BuildReport,
) -> ShardInfo:
    """Write the shard unless an intact copy made from the same sources is in place."""
    file = shard_file(split, index)
    path = root / file
    digest = shard_digest(samples, parameter_names, samples_per_trace)
    if _shard_digest_on_disk(path) == digest:
        sha = sha256_file(path)
        if previous.get(file, sha) == sha:
            report.reused.append(file)
            return ShardInfo(file, len(samples), sha)
    sha = write_shard(path, split, samples, parameter_names, samples_per_trace, {"source_digest": digest})
    report.written.append(file)
    return ShardInfo(file, len(samples), sha)


def _shard_digest_on_disk(path: Path) -> str | None:
    if not path.is_file():
        return None
    try:
        with h5py.File(path, "r") as f:
            if f.attrs.get("format") != SHARD_FORMAT or not f.attrs.get("complete", False):
                return None
            return str(f.attrs.get("source_digest", ""))
    except OSError:
        return None


def _previous_hashes(root: Path) -> dict[str, str]:
    """Shard file -> sha256 of the last manifest written here (none if unreadable)."""
    try:
        manifest = Manifest.load(root / MANIFEST_NAME)
    except ConfigError:
        return {}
    return {s.file: s.sha256 for shards in manifest.splits.values() for s in shards}


def _remove_stale_shards(root: Path, splits: dict[str, list[ShardInfo]], report: BuildReport) -> None:
    """Delete shards an earlier, larger build left that the new manifest no longer lists."""
    listed = {s.file for shards in splits.values() for s in shards}
    for file in _shard_files(root):  # every one claimed by this data set (claim_dataset_dir)
        if file not in listed:
            (root / file).unlink()
            report.removed.append(file)


def verify_dataset(directory: str | Path) -> Manifest:
    """Check that every shard the manifest lists is present with its recorded sha256."""
    manifest = Manifest.load(directory)
    for shards in manifest.splits.values():
        for shard in shards:
            check_shard(shard, manifest, check_sha256=True)
    return manifest
