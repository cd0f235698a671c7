"""The simulation file: one HDF5 per simulation, written atomically.

The file is written under a hidden temporary name next to its destination
and renamed into place only after it was closed, with the ``complete``
attribute and a checksum of its datasets set last; a run killed at any
moment therefore never leaves a file under the final name, and a file with
the final name that lacks ``complete`` (or whose checksum disagrees) was not
written by ecgi.  The schema is documented in docs/data-formats.md.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import h5py
import numpy as np
import yaml

from ..common.files import atomic_output

if TYPE_CHECKING:  # importing the solver would start MPI in readers of sample files
    from .simulation import SimulationResult

#: The configuration YAML stored in sample files, emitted by libyaml where
#: PyYAML has it (the same YAML, a tenth of the time of the pure-Python one).
YAML_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)

FORMAT = "ecgi-simulation"
#: 1: infinite-medium pseudo-ECG with the fast layer as a source;
#: 2: bounded-torso lead fields, sources of ordinary myocardium, physiological
#:    anatomy and APD gradients.  Files of different versions are never mixed.
FORMAT_VERSION = 2


def format_mismatch(path: Path, version) -> str:
    """The message refusing a sample file of another format version."""
    return (f"{path} is a sample file of format version {version}, and this ecgi writes version "
            f"{FORMAT_VERSION} (different ECG model): samples of both cannot be mixed; start a new "
            f"campaign directory, or build data sets from old campaigns with the ecgi that wrote them")


def write_simulation(
    path: str | Path,
    result: SimulationResult,
    datasets: dict | None = None,
    attributes: dict | None = None,
) -> Path:
    """Write ``result`` plus extra ``datasets`` (name -> (values, attrs)) and
    file ``attributes`` to ``path``, atomically."""
    path = Path(path)
    with atomic_output(path) as tmp, h5py.File(tmp, "w") as f:
        _write_contents(f, result)
        _write_datasets(f, datasets or {})
        f.attrs.update(attributes or {})
        f.attrs["checksum_sha256"] = datasets_checksum(f)
        f.attrs["complete"] = True
    return path


def _write_contents(f: h5py.File, r: SimulationResult) -> None:
    f.attrs["format"] = FORMAT
    f.attrs["format_version"] = FORMAT_VERSION
    f.attrs["config_yaml"] = yaml.dump(r.config.to_dict(), Dumper=YAML_DUMPER, sort_keys=False)
    f.attrs["provenance_json"] = json.dumps(r.provenance, sort_keys=True)

    grid = f.create_group("grid")
    grid.attrs["dx_mm"] = r.dx_mm
    grid.attrs["origin_mm"] = r.origin_mm
    grid.attrs["shape"] = np.asarray(r.grid_shape)
    grid.create_dataset("tissue_ijk", data=r.tissue_ijk.astype(np.int32), compression="gzip")

    act = f.create_dataset("activation_time", data=r.activation_ms.astype(np.float32), compression="gzip")
    act.attrs["units"] = "ms"
    act.attrs["threshold_mV"] = r.config.output.activation_threshold_mV
    act.attrs["description"] = "first upward threshold crossing per tissue voxel (grid/tissue_ijk order); NaN: never"

    t = f.create_dataset("time", data=r.time_ms)
    t.attrs["units"] = "ms"
    probes = f.create_group("probes")
    probes.create_dataset("names", data=np.array(r.probe_names, dtype=h5py.string_dtype()))
    probes.create_dataset("ijk", data=r.probe_ijk.astype(np.int32))
    pos = probes.create_dataset("position", data=r.origin_mm + r.dx_mm * r.probe_ijk)
    pos.attrs["units"] = "mm"
    vm = probes.create_dataset("vm", data=r.probe_vm.astype(np.float32))
    vm.attrs["units"] = "mV"
    vm.attrs["dt_ms"] = r.config.output.interval_ms

    if r.snapshot_vm is not None:
        snap = f.create_group("snapshots")
        snap.create_dataset("time", data=r.snapshot_time_ms).attrs["units"] = "ms"
        data = snap.create_dataset(
            "vm", data=r.snapshot_vm, compression="gzip", chunks=(1, r.snapshot_vm.shape[1])
        )
        data.attrs["units"] = "mV"

    _write_datasets(f, r.extra)


def _write_datasets(f: h5py.File, datasets: dict) -> None:
    for name, (values, attrs) in datasets.items():
        if name in f:
            del f[name]
        values = np.asarray(values)
        if values.dtype == object or values.dtype.kind == "U":
            values = values.astype(h5py.string_dtype())
        ds = f.create_dataset(name, data=values)
        for key, value in attrs.items():
            ds.attrs[key] = value


def _datasets(f: h5py.File) -> Iterator[h5py.Dataset]:
    names: list[str] = []
    f.visit(lambda name: names.append(name) if isinstance(f[name], h5py.Dataset) else None)
    for name in sorted(names):
        yield f[name]


def datasets_checksum(f: h5py.File) -> str:
    """SHA-256 over every dataset's name and raw values, in name order."""
    digest = hashlib.sha256()
    for ds in _datasets(f):
        digest.update(ds.name.encode())
        data = ds[()]
        if isinstance(data, np.ndarray) and data.dtype == object:
            data = np.array([x if isinstance(x, bytes) else str(x).encode() for x in data.ravel()])
        digest.update(np.ascontiguousarray(data).tobytes())
    return digest.hexdigest()


class IncompleteFileError(Exception):
    """A simulation file is missing, truncated or fails its checksum."""


def verify_simulation_file(path: str | Path) -> None:
    """Raise IncompleteFileError unless ``path`` is a complete, intact file."""
    path = Path(path)
    if not path.is_file():
        raise IncompleteFileError(f"{path}: no such file")
    try:
        with h5py.File(path, "r") as f:
            if f.attrs.get("format") != FORMAT or not f.attrs.get("complete", False):
                raise IncompleteFileError(f"{path}: not a complete {FORMAT} file")
            if datasets_checksum(f) != f.attrs.get("checksum_sha256"):
                raise IncompleteFileError(f"{path}: checksum mismatch (file corrupted)")
    except OSError as exc:
        raise IncompleteFileError(f"{path}: unreadable HDF5 ({exc})") from None
