"""Import the public LLNL intracardiac data set into the shard format.

The data set of the reference method (Landajuela et al., LLNL, "Cardiac
electrophysiology inverse problem") comes as folders ``data_hearts_dd_0p2*``
of paired NumPy files, one pair per simulated beat:

    data_hearts_dd_0p2/pECGData_hearts_dd_0p2_volunteer.v10_pattern.0.npy
    data_hearts_dd_0p2/VmData_hearts_dd_0p2_volunteer.v10_pattern.0.npy
    data_hearts_dd_0p2_geo_act_3_bcl/pECGData_hearts_dd_0p2_geo_act_3_bcl_bcl.1000.pattern.0.volunteer.v1.npy

``pECGData_<tag>.npy`` holds (T, 10) electrode potentials (RA, LA, LL, RL,
V1..V6) and ``VmData_<tag>.npy`` (T, 75) transmembrane voltages in the order
of ``solver.common.sites.SITE_NAMES`` (mV), both sampled every 1 ms (T = 500).  The
anatomy is the volunteer named in the tag (``volunteer.v10`` -> ``v10``,
wherever it appears in the tag, ``VOLUNTEER`` below); the data set splits by
it.  The sample id is ``<folder>/<tag>``, unique across folders.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import numpy as np

from solver.common.datasets import DT_MS, Manifest, SampleArrays
from solver.common.errors import ConfigError
from solver.common.sites import ELECTRODE_NAMES, SITE_NAMES
from solver.common.traces import threshold_crossing_ms

from .dataset import write_dataset

FOLDER_GLOB = "data_hearts_dd_0p2*"
#: ``pECGData_<tag>.npy`` / ``VmData_<tag>.npy``.
PAIR_FILE = re.compile(r"(?P<kind>pECGData|VmData)_(?P<tag>.+)\.npy")
#: The volunteer (heart) token of a tag, not glued to a longer word or number.
VOLUNTEER = re.compile(r"(?<![A-Za-z0-9])volunteer\.(?P<geometry>v\d+)(?!\d)")


@dataclass(frozen=True)
class LlnlPair:
    """One beat: its electrode and Vm files."""

    ecg_path: Path
    vm_path: Path
    sample_id: str
    geometry_id: str
    fingerprint: str  #: SHA-256 of both files' bytes
    condition: str = "unknown"
    parameters: Mapping[str, float] = field(default_factory=dict)

    def read(self) -> SampleArrays:
        from solver.patient.leads import twelve_leads

        electrodes = np.load(self.ecg_path).astype(np.float64)
        vm = np.load(self.vm_path)
        return SampleArrays(twelve_leads(electrodes), vm, threshold_crossing_ms(vm, DT_MS, axis=0).astype(np.float32))


def find_pairs(path: str | Path) -> list[LlnlPair]:
    """Every pair of the data set at ``path`` (the directory holding the
    ``data_hearts_dd_0p2*`` folders, or one such folder), checked for
    pairing, volunteer tag and array shapes before anything is written."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: no such LLNL data set directory")
    folders = [path] if path.is_dir() and path.match(FOLDER_GLOB) else sorted(p for p in path.glob(FOLDER_GLOB) if p.is_dir())
    pairs = [pair for folder in folders for pair in _folder_pairs(folder)]
    if not pairs:
        raise ConfigError(f"{path}: no pECGData_<tag>.npy / VmData_<tag>.npy files in folders {FOLDER_GLOB}")
    return pairs


def _folder_pairs(folder: Path) -> list[LlnlPair]:
    files: dict[str, dict[str, Path]] = {"pECGData": {}, "VmData": {}}
    for entry in sorted(folder.iterdir()):
        match = PAIR_FILE.fullmatch(entry.name)
        if match and entry.is_file():
            files[match["kind"]][match["tag"]] = entry
    ecg_files, vm_files = files["pECGData"], files["VmData"]
    for tag in sorted(set(ecg_files) ^ set(vm_files)):
        have, lack = (ecg_files[tag], "VmData") if tag in ecg_files else (vm_files[tag], "pECGData")
        raise ConfigError(f"{have}: unpaired file, {lack}_{tag}.npy is missing")
    return [_pair(folder, tag, ecg_files[tag], vm_files[tag]) for tag in sorted(ecg_files)]


def _pair(folder: Path, tag: str, ecg_path: Path, vm_path: Path) -> LlnlPair:
    volunteer = VOLUNTEER.search(tag)
    if volunteer is None:
        raise ConfigError(f"{ecg_path}: no volunteer id in the file name (expected 'volunteer.v<N>' in the tag)")
    ecg_rows = _check_shape(ecg_path, len(ELECTRODE_NAMES))
    if _check_shape(vm_path, len(SITE_NAMES)) != ecg_rows:
        raise ConfigError(f"{vm_path}: {ecg_path.name} and {vm_path.name} have different numbers of time samples")
    digest = hashlib.sha256(ecg_path.read_bytes())
    digest.update(vm_path.read_bytes())
    return LlnlPair(ecg_path, vm_path, f"{folder.name}/{tag}", volunteer["geometry"], digest.hexdigest())


def _check_shape(path: Path, columns: int) -> int:
    """Rows of a (T, columns) array file, read from its header."""
    try:
        shape = np.load(path, mmap_mode="r").shape
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: not a readable .npy array ({exc})") from None
    if len(shape) != 2 or shape[1] != columns or shape[0] == 0:
        raise ConfigError(f"{path}: array of shape {shape}, expected (T, {columns})")
    return shape[0]


def import_llnl(path: str | Path, output_dir: str | Path, samples_per_shard: int = 64, seed: int = 0) -> Manifest:
    """Write the LLNL data set at ``path`` as an ecgi data set (default splits, 500 samples per trace)."""
    return write_dataset(find_pairs(path), Path(output_dir), samples_per_shard, seed=seed)
