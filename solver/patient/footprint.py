"""A point of the heart read from the voxels around it.

The heart is a voxel grid, but the places a patient's description names (a
recording site, the centre of a root of the conduction system) are points
of its shape.  Snapping each point to its nearest voxel makes what is read
there jump whenever the shape moves by a fraction of a voxel: a heart 0.4 mm
larger picks other voxels, up to a whole wall's thickness away, and moves
the sites' activation times by 3 ms on average (docs/research/performance-log.md, "What
the grid adds").  Such a jump is a property of the grid, not the patient,
and no other anatomy can teach a network to predict it.

A ``Footprint`` replaces the nearest voxel by a soft nearest: the candidate
voxels weighted by ``exp(-(d - d_min) / softness)``, with ``d`` each one's
distance from the point.  The weights change continuously as the voxels
move, a voxel that appears or disappears at the edge of the footprint
carries little weight, and the footprint's own point (the weighted mean of
its voxels) lies on the candidates' surface or inside their tissue.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Voxels whose weight is below exp(-CUTOFF) times the nearest one's are left out.
CUTOFF = 5.0


@dataclass(frozen=True)
class Footprint:
    """The voxels a point is read from (natural tissue indices) and their weights, which sum to 1."""

    voxels: np.ndarray
    weights: np.ndarray

    def point(self, positions: np.ndarray) -> np.ndarray:
        """The footprint's own position (mm): its voxels' weighted mean."""
        return self.weights @ positions[self.voxels]

    @property
    def heaviest(self) -> int:
        """The voxel that weighs most: the nearest to the point."""
        return int(self.voxels[np.argmax(self.weights)])


def soft_nearest(candidates: np.ndarray, distance: np.ndarray, softness_mm: float) -> Footprint:
    """The footprint of a point among ``candidates`` (natural indices) at
    ``distance`` (mm) from it: a voxel ``softness_mm`` farther than the
    nearest weighs e times less; softness 0 keeps the nearest alone."""
    if len(candidates) == 0:
        raise ValueError("no candidate voxels")
    if softness_mm == 0:
        return Footprint(np.asarray(candidates)[[np.argmin(distance)]], np.ones(1))
    excess = (distance - distance.min()) / softness_mm
    keep = excess <= CUTOFF
    weights = np.exp(-excess[keep])
    return Footprint(np.asarray(candidates)[keep], weights / weights.sum())


def nearest_footprint(positions: np.ndarray, candidates: np.ndarray, target: np.ndarray,
                      softness_mm: float) -> Footprint:
    """The soft nearest of the ``candidates`` (boolean mask over the voxels) to a point (mm)."""
    index = np.flatnonzero(candidates)
    return soft_nearest(index, np.linalg.norm(positions[index] - target, axis=1), softness_mm)
