"""Stimulus regions and their timing, resolved to voxels and time steps."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .anatomy import VoxelAnatomy
from .config import StimulusConfig
from ..common.errors import ConfigError
from .partition import local_positions

#: Tolerance (in voxel sizes) for points on a region's boundary.
_EDGE = 1e-6


def region_voxels(stimulus: StimulusConfig, anatomy: VoxelAnatomy, tissue_ijk: np.ndarray) -> np.ndarray:
    """Boolean mask over the natural tissue voxels inside the stimulus region."""
    pos = anatomy.position(tissue_ijk)
    eps = _EDGE * anatomy.dx
    if stimulus.box is not None:
        lo, hi = np.asarray(stimulus.box.min_mm), np.asarray(stimulus.box.max_mm)
        return np.all((pos >= lo - eps) & (pos <= hi + eps), axis=1)
    if stimulus.sphere is not None:
        d2 = ((pos - np.asarray(stimulus.sphere.centre_mm)) ** 2).sum(axis=1)
        return d2 <= (stimulus.sphere.radius_mm + eps) ** 2
    assert stimulus.voxels is not None
    wanted = np.asarray(stimulus.voxels, dtype=np.int64)
    outside = [tuple(v) for v in wanted if not _is_tissue(anatomy, v)]
    if outside:
        raise ConfigError(f"stimulus voxels {outside[:5]} are not tissue voxels of the anatomy (grid shape {anatomy.shape})")
    flat = np.ravel_multi_index(tissue_ijk.T, anatomy.shape)
    return np.isin(flat, np.ravel_multi_index(wanted.T, anatomy.shape))


def _is_tissue(anatomy: VoxelAnatomy, ijk) -> bool:
    return all(0 <= int(i) < n for i, n in zip(ijk, anatomy.shape)) and bool(anatomy.tissue[tuple(ijk)])


@dataclass
class Pulse:
    local_cells: np.ndarray  #: indices into this rank's cells
    amplitude: float  #: mV/ms (current density over chi * Cm)
    start_step: int
    duration_steps: int
    period_steps: int
    count: int
    #: Per local cell: steps after ``start_step`` its pulse starts (a spread).
    delay_steps: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.delay_steps is None:
            self.delay_steps = np.zeros(len(self.local_cells), dtype=np.int64)
        latest = int(self.delay_steps.max()) if len(self.delay_steps) else 0
        # Outside [start_step, last_step) no cell is stimulated: the common case costs one comparison.
        self.last_step = self.start_step + latest + (self.count - 1) * self.period_steps + self.duration_steps

    def stimulated(self, step: int) -> np.ndarray:
        """The local cells this pulse stimulates during time step ``step``."""
        if not self.start_step <= step < self.last_step:
            return self.local_cells[:0]
        offset = step - self.start_step - self.delay_steps
        beat, within = np.divmod(offset, self.period_steps)
        on = (offset >= 0) & (beat < self.count) & (within < self.duration_steps)
        return self.local_cells[on]


class StimulusSchedule:
    """The applied current of every local cell at every time step."""

    def __init__(self, pulses: list[Pulse], n_local: int):
        self.pulses = pulses
        self._current = np.zeros(n_local)
        self._zero = np.zeros(n_local)

    @classmethod
    def build(cls, stimuli, anatomy, tissue_ijk, owned_natural, dt: float, chi_cm: float) -> "StimulusSchedule":
        """Resolve every stimulus; refuse one that covers no tissue."""
        pulses = []
        for number, stim in enumerate(stimuli, start=1):
            inside = region_voxels(stim, anatomy, tissue_ijk)
            if not inside.any():
                lo = anatomy.position(tissue_ijk.min(axis=0))
                hi = anatomy.position(tissue_ijk.max(axis=0))
                raise ConfigError(
                    f"stimuli[{number - 1}] covers no tissue voxel; move or enlarge its region "
                    f"(the tissue spans {np.round(lo, 3).tolist()} to {np.round(hi, 3).tolist()} mm)"
                )
            owned, local = local_positions(owned_natural, np.flatnonzero(inside))
            period = stim.period_ms if stim.period_ms is not None else stim.duration_ms
            delays = spread_delays(stim, anatomy, tissue_ijk[inside], dt)
            pulses.append(
                Pulse(
                    local_cells=local,
                    amplitude=stim.amplitude_uA_per_mm3 / chi_cm,
                    start_step=int(round(stim.start_ms / dt)),
                    duration_steps=max(1, int(round(stim.duration_ms / dt))),
                    period_steps=max(1, int(round(period / dt))),
                    count=stim.count,
                    delay_steps=delays[owned],
                )
            )
        return cls(pulses, len(owned_natural))

    def current(self, step: int) -> np.ndarray:
        """Applied current (mV/ms) per local cell during time step ``step``."""
        stimulated = [(p, p.stimulated(step)) for p in self.pulses]
        if not any(len(cells) for _, cells in stimulated):
            return self._zero
        self._current[:] = 0.0
        for pulse, cells in stimulated:
            self._current[cells] += pulse.amplitude
        return self._current


def spread_delays(stimulus: StimulusConfig, anatomy: VoxelAnatomy, ijk: np.ndarray, dt: float) -> np.ndarray:
    """Per voxel of a stimulus region: the steps its pulse starts late (a spread from the centre)."""
    if stimulus.spread_m_per_s is None:
        return np.zeros(len(ijk), dtype=np.int64)
    distance = np.linalg.norm(anatomy.position(ijk) - np.asarray(stimulus.sphere.centre_mm), axis=1)
    return np.round(distance / stimulus.spread_m_per_s / dt).astype(np.int64)  # m/s = mm/ms
