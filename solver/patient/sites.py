"""The 75 recording sites: where each lies in a heart, and how it is read.

Each site is a point of the heart's shape read through a ``Footprint`` (the
soft nearest voxels, solver.patient.footprint), so that a fraction of a
voxel's change of shape moves its activation time by a fraction of a
millisecond, not by a jump to another voxel.

Placement, in the heart's LV frame (solver.patient.segments):

1. Endocardial sites (AHA01-17, RV01-13): the centroid of the segment's
   endocardial voxels, read from the segment's voxels nearest it.
2. Epicardial sites (EPI_): the epicardium of the same segment nearest the
   endocardial site.
3. Mid-wall sites (MID_): halfway between the two, read from the tissue
   there; in a wall two voxels thick that is both its surfaces' voxels.
4. Septal sites (SEPTM_): halfway between the paired LV and RV endocardial
   sites, read from the septum.

Reading, from a simulation: a site's activation time is its voxels'
weighted mean crossing time, and its trace is their traces, each moved in
time to put its upstroke at the site's activation, averaged with the same
weights (an average of unaligned traces would smear the upstroke over the
footprint's spread of activation times).
"""
from __future__ import annotations

import numpy as np

from ..common.errors import ConfigError
from ..common.sites import SITE_NAMES
from ..numerics.recording import ProbeTraces
from .footprint import Footprint, nearest_footprint
from .heart import Heart
from .segments import HeartCoordinates, heart_coordinates


def segment_mask(coords: HeartCoordinates, segment: str) -> np.ndarray:
    """Voxels of an LV (AHA01-17) or RV (RV01-13) segment, any depth."""
    if segment.startswith("AHA"):
        return coords.lv_segment == int(segment[3:])
    return coords.rv_segment == int(segment[2:])


def endocardial_site(heart: Heart, coords: HeartCoordinates, segment: str) -> Footprint:
    """The centre of a segment's endocardium."""
    surface = heart.surfaces.lv_endo if segment.startswith("AHA") else heart.surfaces.rv_endo
    mask = surface & segment_mask(coords, segment)
    if not mask.any():
        raise ConfigError(
            f"segment {segment} has no endocardial voxel at dx {heart.anatomy.dx} mm: the grid is too "
            "coarse for this anatomy's 75 recording sites; use a smaller dx"
        )
    pos = heart.positions
    return nearest_footprint(pos, mask, pos[mask].mean(axis=0), heart.footprint_softness_mm)


def epicardial_site(heart: Heart, coords: HeartCoordinates, segment: str, endo: Footprint) -> Footprint:
    """The epicardium of a segment nearest its endocardial site (any
    epicardium where the segment has none at this resolution)."""
    epi = heart.surfaces.epi
    candidates = epi & segment_mask(coords, segment)
    pos = heart.positions
    return nearest_footprint(pos, candidates if candidates.any() else epi, endo.point(pos), heart.footprint_softness_mm)


def between(heart: Heart, candidates: np.ndarray, one: Footprint, other: Footprint) -> Footprint:
    """The ``candidates`` voxels halfway between two footprints' points."""
    pos = heart.positions
    return nearest_footprint(pos, candidates, 0.5 * (one.point(pos) + other.point(pos)), heart.footprint_softness_mm)


def place_sites(heart: Heart, coords: HeartCoordinates | None = None) -> list[Footprint]:
    """The footprint of each of the 75 sites, in ``SITE_NAMES`` order."""
    coords = coords or heart_coordinates(heart)
    tissue = np.ones(heart.numbering.n, bool)
    sites: dict[str, Footprint] = {}
    for name in SITE_NAMES:
        if name.startswith(("AHA", "RV")):
            sites[name] = endocardial_site(heart, coords, name)
    for name in SITE_NAMES:
        if name.startswith("EPI_"):
            sites[name] = epicardial_site(heart, coords, name[4:], sites[name[4:]])
    for name in SITE_NAMES:
        if name.startswith("MID_"):
            sites[name] = between(heart, tissue, sites[name[4:]], sites["EPI_" + name[4:]])
        elif name.startswith("SEPTM_"):
            _, lv_name, rv_name = name.split("_")
            sites[name] = between(heart, heart.septum, sites[lv_name], sites[rv_name])
    return [sites[name] for name in SITE_NAMES]


def read_activation(sites: list[Footprint], activation_ms: np.ndarray) -> np.ndarray:
    """(75,) activation times (ms): each site's weighted mean over the voxels
    that activated; NaN where those weigh under half (a scar's core)."""
    out = np.full(len(sites), np.nan)
    for k, site in enumerate(sites):
        times = activation_ms[site.voxels]
        activated = np.isfinite(times)
        weight = site.weights[activated].sum()
        if weight >= 0.5:
            out[k] = site.weights[activated] @ times[activated] / weight
    return out


def read_traces(sites: list[Footprint], voxels: np.ndarray, vm: np.ndarray, dt_ms: float,
                activation_ms: np.ndarray, site_activation_ms: np.ndarray) -> np.ndarray:
    """(T, 75) Vm traces (mV) from ``vm`` (T, len(voxels)), the traces of
    ``voxels`` (sorted natural indices) sampled every ``dt_ms``: each voxel's
    trace moved to put its activation at the site's, then weighted."""
    out = np.empty((len(vm), len(sites)))
    for k, site in enumerate(sites):
        columns = np.searchsorted(voxels, site.voxels)
        shift = activation_ms[site.voxels] - site_activation_ms[k]  # NaN unless both activated
        aligned = np.isfinite(shift)
        if not aligned.any():
            out[:, k] = vm[:, columns] @ site.weights
            continue
        moved = delayed(vm[:, columns[aligned]], -shift[aligned] / dt_ms)
        out[:, k] = moved @ site.weights[aligned] / site.weights[aligned].sum()
    return out


def delayed(traces: np.ndarray, delay: np.ndarray) -> np.ndarray:
    """Each column of ``traces`` (T, m) delayed by ``delay`` (m,) samples,
    interpolated linearly; values before the first and after the last
    sample repeat those samples."""
    n = len(traces)
    if n < 2:
        return traces.copy()
    position = np.clip(np.arange(n)[:, None] - delay[None, :], 0, n - 1)
    left = np.minimum(position.astype(np.int64), n - 2)
    frac = position - left
    return (1 - frac) * np.take_along_axis(traces, left, 0) + frac * np.take_along_axis(traces, left + 1, 0)


class FootprintRecorder:
    """Step observer: Vm at every voxel a site reads, at every output sample.

    Its ``gather`` keeps the traces (``vm``, every rank) and adds nothing to
    the simulation file: the sample file stores the sites' traces, read by
    ``read_traces``, not those of their voxels.
    """

    def __init__(self, sites: list[Footprint], owned_natural: np.ndarray, n_samples: int):
        self.voxels = np.unique(np.concatenate([site.voxels for site in sites]))
        self._traces = ProbeTraces(self.voxels, owned_natural, n_samples)
        self.vm: np.ndarray | None = None

    def record(self, sample: int, vm: np.ndarray) -> None:
        self._traces.record(sample, vm)

    def gather(self, comm, n_recorded: int) -> dict:
        self.vm = self._traces.gather(comm, n_recorded)
        return {}
