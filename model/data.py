"""Reading a training data set (docs/data-formats.md): manifest, validation, samples.

Shards are opened lazily and per process: ``ShardDataset`` keeps its h5py
handles in a dict tagged with the pid that opened them and drops them when
pickled or used from another process, so no HDF5 handle crosses a fork into
a DataLoader worker (HDF5 state shared by forked processes corrupts reads).
Validation opens each shard briefly and closes it before any worker starts.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Literal, Sequence

import h5py
import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from solver.common.datasets import Manifest, check_dataset
from solver.common.limits import available_memory_bytes  # noqa: F401 (model.train imports it from here)
from solver.common.sites import LEAD_NAMES, SITE_NAMES
from solver.common.traces import apd90_ms

InputScaling = Literal["range", "common_range", "standardise"]


def load_manifest(root: str | Path) -> Manifest:
    """The data set's manifest (solver.common.datasets), checked."""
    return Manifest.load(root)


def validate_dataset(manifest: Manifest, splits: Sequence[str], check_sha256: bool = False) -> None:
    """Every shard of ``splits`` exists, matches the manifest and has the documented shapes."""
    check_dataset(manifest, splits, check_sha256)


def scale_leads(ecg: np.ndarray, scaling: InputScaling, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """(..., 12, T) mV -> network inputs: the one definition of each input scaling.

    ``range`` divides each lead by its own max - min; ``common_range`` divides
    all twelve by the largest lead's max - min, so the leads keep their
    relative amplitudes (the electrical axis, R/S progression) and only the
    overall gain is removed; ``standardise`` uses the data set's per-lead
    mean and spread.
    """
    ecg = np.asarray(ecg, dtype=np.float32)
    if scaling == "standardise":
        return ((ecg - mean[:, None]) / np.maximum(std[:, None], 1e-6)).astype(np.float32)
    span = ecg.max(axis=-1, keepdims=True) - ecg.min(axis=-1, keepdims=True)
    if scaling == "common_range":
        span = span.max(axis=-2, keepdims=True)
    return ecg / np.maximum(span, 1e-6)


def scale_ecg(ecg: np.ndarray, scaling: InputScaling, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """(T, 12) mV -> (12, T) network input, as in training and in prediction."""
    return scale_leads(np.asarray(ecg, dtype=np.float32).T, scaling, mean, std)


def scale_ecg_batch(ecg: np.ndarray, scaling: InputScaling, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """(N, T, 12) mV -> (N, 12, T) network inputs; ``scale_ecg`` for many samples at once."""
    return np.ascontiguousarray(scale_leads(np.asarray(ecg, dtype=np.float32).transpose(0, 2, 1), scaling, mean, std))


@dataclass
class SplitArrays:
    """Every sample of one split in memory, in ``ShardDataset`` index order (ECG (N, T, 12) and Vm (N, T, 75) in mV)."""

    ecg: np.ndarray
    act: np.ndarray
    vm: np.ndarray | None
    conditions: list[str]


def iter_shards(manifest: Manifest, split: str, *, with_vm: bool) -> Iterator[SplitArrays]:
    """Each shard of a split in memory, in order: one bulk read per shard dataset, no per-sample HDF5 calls."""
    for entry in manifest.splits[split]:
        with h5py.File(entry.path, "r") as f:
            yield SplitArrays(
                f["ecg"][...].astype(np.float32, copy=False), f["act"][...].astype(np.float32, copy=False),
                f["vm"][...].astype(np.float32, copy=False) if with_vm else None,
                [c.decode() if isinstance(c, bytes) else str(c) for c in f["conditions"][:]],
            )


def read_split(manifest: Manifest, split: str, *, with_vm: bool) -> SplitArrays:
    """A whole split in memory, in ``ShardDataset`` index order."""
    shards = list(iter_shards(manifest, split, with_vm=with_vm))
    return SplitArrays(
        np.concatenate([s.ecg for s in shards]), np.concatenate([s.act for s in shards]),
        np.concatenate([s.vm for s in shards]) if with_vm else None, [c for s in shards for c in s.conditions],
    )


def shift_samples(max_shift_ms: float, dt_ms: float) -> int:
    """The largest onset shift in samples: what the datasets draw up to and the in-memory store pads."""
    return int(round(max_shift_ms / dt_ms))


def onset_shifts(seed: int, epoch: int, indices: np.ndarray | Sequence[int], max_shift: int) -> np.ndarray:
    """The onset shift (samples, 0..max_shift) of each sample index in an epoch.

    A counter-based draw: a hash (SplitMix64's finaliser) of (seed, epoch,
    index), so a sample's shift depends on nothing else (rank, worker, batch,
    resume) and a whole batch is drawn in a few array operations, where a
    generator per sample would cost more than copying the batch.
    """
    with np.errstate(over="ignore"):  # uint64 arithmetic wraps, as the hash intends
        key = np.asarray(indices, dtype=np.uint64)
        key = key + np.uint64(seed & 0xFFFFFFFF) * np.uint64(0x9E3779B97F4A7C15) \
            + np.uint64(epoch & 0xFFFFFFFF) * np.uint64(0xD1B54A32D192ED03)
        key = (key ^ (key >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        key = (key ^ (key >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        key = key ^ (key >> np.uint64(31))
    return (key % np.uint64(max_shift + 1)).astype(np.int64)


def shift_onset(
    ecg: np.ndarray, act: np.ndarray, vm: np.ndarray | None, shift: int, dt_ms: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Delay the beat by ``shift`` samples: ECG zero-padded in front, traces padded with their first value."""
    if shift == 0:
        return ecg, act, vm
    ecg = np.concatenate([np.zeros((shift, ecg.shape[1]), ecg.dtype), ecg[:-shift]])
    if vm is not None:
        vm = np.concatenate([np.repeat(vm[:1], shift, axis=0), vm[:-shift]])
    return ecg, act + shift * dt_ms, vm


class ShardDataset(Dataset):
    """The samples of one split: network input, targets in ms and mV, and the sample index.

    ``ecg_stats`` (mean, std per lead) replace the manifest's for ``standardise``
    scaling, so a model is evaluated with the statistics it was trained with.

    ``set_epoch`` changes the augmentation; the shift of sample i in epoch e
    depends only on (seed, e, i), so it is the same whichever rank or worker
    reads the sample and after a resume.

    ``with_apd`` adds each site's APD90 (ms) of the stored trace, the target of
    ``template_vm``: a delay of the onset does not change it, even where it
    pushes repolarisation out of the window (the network still predicts the
    whole action potential).
    """

    def __init__(
        self, manifest: Manifest, split: str, *, with_vm: bool, scaling: InputScaling | None = "range",
        max_shift_ms: int = 0, seed: int = 0, ecg_stats: tuple[np.ndarray, np.ndarray] | None = None,
        realism=None, with_apd: bool = False,
    ) -> None:
        if with_apd and not with_vm:
            raise ValueError("with_apd needs with_vm: the APD90 targets come from the traces")
        self.entries = manifest.splits[split]
        self.offsets = np.cumsum([0] + [e.samples for e in self.entries])
        self.ecg_mean, self.ecg_std = ecg_stats or (manifest.statistic("ecg_mean"), manifest.statistic("ecg_std"))
        self.dt_ms = manifest.dt_ms
        self.with_vm = with_vm
        self.with_apd = with_apd
        self.scaling = scaling
        self.max_shift = shift_samples(max_shift_ms, manifest.dt_ms)
        self.seed = seed
        self.realism = realism  # model.config.RealismConfig when recording artefacts are added
        self.epoch = 0
        self._files: dict[Path, h5py.File] = {}
        self._pid: int | None = None

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_files"], state["_pid"] = {}, None
        return state

    def _file(self, path: Path) -> h5py.File:
        if self._pid != os.getpid():
            self._files, self._pid = {}, os.getpid()
        if path not in self._files:
            self._files[path] = h5py.File(path, "r")
        return self._files[path]

    def locate(self, index: int) -> tuple[Path, int]:
        shard = int(np.searchsorted(self.offsets, index, side="right")) - 1
        return self.entries[shard].path, index - int(self.offsets[shard])

    def conditions(self) -> list[str]:
        """Every sample's condition label, in index order (opens and closes each shard)."""
        labels: list[str] = []
        for entry in self.entries:
            with h5py.File(entry.path, "r") as f:
                labels += [c.decode() if isinstance(c, bytes) else str(c) for c in f["conditions"][:]]
        return labels

    def _raw(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """ECG (T, 12), activation (75,) and Vm (T, 75) or None of one sample, as stored."""
        path, row = self.locate(index)
        f = self._file(path)
        return f["ecg"][row], f["act"][row].astype(np.float32), f["vm"][row] if self.with_vm else None

    def _stored_apd(self, index: int, vm: np.ndarray) -> np.ndarray:
        """APD90 (75,) ms of the stored traces ``vm`` (T, 75) of sample ``index``."""
        return self._trace_apd(vm)

    def _trace_apd(self, vm: np.ndarray) -> np.ndarray:
        """APD90 (75,) float32 ms of traces ``vm`` (T, 75)."""
        return apd90_ms(vm.T, self.dt_ms).astype(np.float32)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        ecg, act, vm = self._raw(index)
        apd = self._stored_apd(index, vm) if self.with_apd else None
        if self.max_shift:
            shift = int(onset_shifts(self.seed, self.epoch, [index], self.max_shift)[0])
            ecg, act, vm = shift_onset(ecg, act, vm, shift, self.dt_ms)
        if self.realism is not None and self.realism.enabled:
            from .augment import realistic

            ecg, act, vm = realistic(ecg, act, vm, np.random.default_rng([self.seed, self.epoch, index, 1]),
                                     self.dt_ms, self.realism)
            if apd is not None and self.realism.time_warp > 0:
                # a time warp stretches the action potentials too: the warped trace's own APD90
                apd = self._trace_apd(vm)
        sample = {
            "ecg": torch.from_numpy(self._network_input(ecg)),
            "act": torch.from_numpy(act),
            "index": torch.tensor(index),
        }
        if vm is not None:
            sample["vm"] = torch.from_numpy(np.ascontiguousarray(vm.T, dtype=np.float32))
        if apd is not None:
            sample["apd"] = torch.from_numpy(apd)
        return sample

    def _network_input(self, ecg: np.ndarray) -> np.ndarray:
        """(T, 12) mV -> (12, T): scaled, or in mV with ``scaling=None`` (an
        ensemble's members each scale it themselves, model.ensemble)."""
        if self.scaling is None:
            return np.ascontiguousarray(ecg.T, dtype=np.float32)
        return scale_ecg(ecg, self.scaling, self.ecg_mean, self.ecg_std)

    def close(self) -> None:
        if self._pid == os.getpid():
            for f in self._files.values():
                f.close()
        self._files = {}


class InMemoryDataset(ShardDataset):
    """A ``ShardDataset`` whose split is read once, in bulk, into memory (``read_split``).

    Samples are the same as the streaming class's, augmentation included.
    ``__getitems__`` serves a whole batch: the onset shifts drawn at once
    (``onset_shifts``), each shifted trace one contiguous window of a store
    padded in front by the largest shift, and one vectorised scaling,
    instead of a read, a shift and a scaling per sample. The DataLoader
    calls it when the dataset has it and ``collate`` passes its dict through.
    """

    def __init__(self, manifest: Manifest, split: str, **kwargs) -> None:
        super().__init__(manifest, split, **kwargs)
        arrays = read_split(manifest, split, with_vm=self.with_vm)
        # Stored with the largest onset shift already in front (ECG zero, Vm its first value), so a
        # shifted sample is one contiguous window; _ecg and _vm are the unshifted views, (N, 12 | 75, T).
        self._ecg_padded = _front_padded(arrays.ecg, self.max_shift, repeat_first=False)
        self._ecg = self._ecg_padded[..., self.max_shift:]
        self._act = torch.from_numpy(arrays.act)
        self._vm_padded = _front_padded(arrays.vm, self.max_shift, repeat_first=True) if arrays.vm is not None else None
        self._vm = self._vm_padded[..., self.max_shift:] if self._vm_padded is not None else None
        self._conditions = arrays.conditions
        # once per sample, not per step: APD90 does not move with the onset shift (float64: the
        # template's APD statistics are summed from these)
        self._apd_ms = torch.from_numpy(np.concatenate(
            [apd90_ms(self._vm[rows].numpy(), self.dt_ms) for rows in self._chunks()]
        )) if self.with_apd else None

    def _chunks(self, chunk: int = 256) -> Iterator[slice]:
        """The stored samples, ``chunk`` rows at a time: whole-set passes stay in cache-sized pieces."""
        return (slice(i, i + chunk) for i in range(0, len(self._act), chunk))

    def traces(self, chunk: int = 256) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray | None]]:
        """Vm (n, T, 75) mV, activation (n, 75) ms and APD90 (n, 75) ms or None (without
        ``with_apd``) of the stored samples, ``chunk`` at a time (views)."""
        assert self._vm is not None
        for rows in self._chunks(chunk):
            apd = self._apd_ms[rows].numpy() if self._apd_ms is not None else None
            yield self._vm[rows].numpy().transpose(0, 2, 1), self._act[rows].numpy(), apd

    def _stored_apd(self, index: int, vm: np.ndarray) -> np.ndarray:
        assert self._apd_ms is not None
        return self._apd_ms[index].numpy().astype(np.float32)

    def _raw(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        vm = self._vm[index].numpy().T if self._vm is not None else None
        return self._ecg[index].numpy().T, self._act[index].numpy().copy(), vm

    def conditions(self) -> list[str]:
        return list(self._conditions)

    def shifts(self, indices: Sequence[int]) -> np.ndarray:
        """The onset shift (samples) of each index this epoch: the streaming class's draw."""
        if not self.max_shift:
            return np.zeros(len(indices), dtype=np.int64)
        return onset_shifts(self.seed, self.epoch, indices, self.max_shift)

    def __getitems__(self, indices: Sequence[int]) -> dict[str, torch.Tensor]:
        if self.realism is not None and self.realism.enabled:
            # recording artefacts are drawn sample by sample (still from memory)
            from torch.utils.data import default_collate

            return default_collate([self[int(i)] for i in indices])
        index = torch.as_tensor(list(indices), dtype=torch.int64)
        shift = torch.from_numpy(self.shifts(indices))
        act = self._act[index] + shift[:, None].float() * self.dt_ms
        # sample t of a shifted trace is sample t - shift of the original: the window of the
        # front-padded store that starts at max_shift - shift (as ``shift_onset``)
        rows, starts, length = index.tolist(), (self.max_shift - shift).tolist(), self._ecg.shape[-1]
        ecg = _windows(self._ecg_padded, rows, starts, length)
        vm = _windows(self._vm_padded, rows, starts, length) if self._vm_padded is not None else None
        batch = {"ecg": _scale_batch(ecg, self.scaling, self.ecg_mean, self.ecg_std), "act": act, "index": index}
        if vm is not None:
            batch["vm"] = vm
        if self._apd_ms is not None:
            batch["apd"] = self._apd_ms[index].float()
        return batch

    @staticmethod
    def collate(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return batch


def _front_padded(traces: np.ndarray, width: int, *, repeat_first: bool) -> torch.Tensor:
    """(N, T, C) -> (N, C, width + T) float32, the first ``width`` samples zero or the first value repeated."""
    n, t, c = traces.shape
    padded = torch.empty((n, c, width + t), dtype=torch.float32)
    body = torch.from_numpy(traces).transpose(1, 2)
    padded[..., width:] = body
    padded[..., :width] = body[..., :1] if repeat_first else 0.0
    return padded


def _windows(store: torch.Tensor, rows: list[int], starts: list[int], length: int) -> torch.Tensor:
    """(B, C, length): row ``rows[b]`` of ``store`` (N, C, L) from sample ``starts[b]`` on.

    One contiguous copy per row: faster than one gather of the whole batch,
    which computes and reads an index per element.
    """
    return torch.stack([store[row, :, start:start + length] for row, start in zip(rows, starts)])


def _scale_batch(ecg: torch.Tensor, scaling: InputScaling, mean: np.ndarray, std: np.ndarray) -> torch.Tensor:
    """(B, 12, T) mV -> network inputs; ``scale_leads`` on a CPU tensor."""
    return torch.from_numpy(scale_leads(ecg.numpy(), scaling, mean, std))


def split_bytes(manifest: Manifest, split: str, *, with_vm: bool, max_shift_ms: float = 0.0) -> int:
    """Memory an ``InMemoryDataset`` of the split holds (float32 ECG, activation and Vm, the traces
    front-padded by the largest onset shift)."""
    length = manifest.samples + shift_samples(max_shift_ms, manifest.dt_ms)
    per_sample = length * (len(LEAD_NAMES) + (len(SITE_NAMES) if with_vm else 0)) + len(SITE_NAMES)
    return 4 * per_sample * manifest.split_size(split)


class StridedSampler(Sampler[int]):
    """Rank r of w evaluates samples r, r + w, ...: each once, no padding (counts may differ by one)."""

    def __init__(self, size: int, rank: int, world_size: int) -> None:
        self.indices = range(rank, size, world_size)

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)
