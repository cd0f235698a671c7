"""What a simulation records: activation times, probe traces, snapshots.

Each recorder works on this rank's cells and gathers to rank 0 in the
natural voxel order, so outputs do not depend on the rank count.
"""
from __future__ import annotations

import numpy as np
from mpi4py import MPI

from .partition import local_positions


class ActivationTimes:
    """First upward crossing of a threshold, linearly interpolated in the step."""

    def __init__(self, n_local: int, threshold_mv: float):
        self.threshold = threshold_mv
        self.times = np.full(n_local, np.nan)
        #: Cells not activated yet: only these are checked, and once none is
        #: left (within the QRS) the rest of the beat costs nothing here.
        self._pending = np.arange(n_local)

    @property
    def all_activated(self) -> bool:
        return self._pending.size == 0

    def update(self, v_before: np.ndarray, v_after: np.ndarray, t_before: float, dt: float) -> None:
        if self.all_activated:
            return
        thr, pending = self.threshold, self._pending
        vb, va = v_before[pending], v_after[pending]
        crossed = (vb < thr) & (va >= thr)
        if crossed.any():
            vb, va = vb[crossed], va[crossed]
            self.times[pending[crossed]] = t_before + dt * (thr - vb) / (va - vb)
            self._pending = pending[~crossed]

    def n_inactive(self, comm: MPI.Comm) -> int:
        return comm.allreduce(int(np.isnan(self.times).sum()), op=MPI.SUM)


class ProbeTraces:
    """Vm at named voxels, sampled at every output time."""

    def __init__(self, probe_natural: np.ndarray, owned_natural: np.ndarray, n_samples: int):
        self.owned, self.local = local_positions(owned_natural, probe_natural)
        self.values = np.zeros((n_samples, len(probe_natural)))

    def record(self, sample: int, vm: np.ndarray) -> None:
        self.values[sample, self.owned] = vm[self.local]

    def gather(self, comm: MPI.Comm, n_recorded: int) -> np.ndarray:
        """(n_recorded, n_probes) on every rank: each probe has one owner."""
        return comm.allreduce(self.values[:n_recorded], op=MPI.SUM)


def gather_natural(local: np.ndarray, owned_natural: np.ndarray, n: int, comm: MPI.Comm) -> np.ndarray | None:
    """Assemble a per-cell array in natural order on rank 0 (None elsewhere)."""
    pieces = comm.gather((owned_natural, local), root=0)
    if comm.Get_rank() != 0:
        return None
    out = np.empty((n,) + local.shape[1:], dtype=local.dtype)
    for index, values in pieces:
        out[index] = values
    return out
