"""Distribution of tissue voxels over MPI ranks.

Recursive coordinate bisection: the voxel set is cut perpendicular to its
longest extent so that the two halves hold voxel counts in proportion to the
ranks they go to.  Counts are balanced to within one voxel and each part is
a compact box-like block, which keeps the halo PETSc exchanges small.

Two numberings of the tissue voxels exist side by side:

* natural: tissue voxels in C order of their grid index; independent of the
  rank count, so every output is written in it;
* PETSc: rank 0's voxels first, then rank 1's, ...; rows of the distributed
  matrix and entries of the distributed vectors.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class TissueNumbering:
    ijk: np.ndarray  #: (n, 3) grid index of each natural tissue voxel
    petsc_of_natural: np.ndarray  #: (n,) PETSc index of each natural voxel
    natural_of_petsc: np.ndarray  #: (n,) inverse permutation
    offsets: np.ndarray  #: (n_ranks + 1,) PETSc ownership ranges
    petsc_index_grid: np.ndarray  #: int64 (nx, ny, nz); -1 outside tissue

    @property
    def n(self) -> int:
        return len(self.ijk)

    def owned_range(self, rank: int) -> tuple[int, int]:
        return int(self.offsets[rank]), int(self.offsets[rank + 1])

    def owned_natural(self, rank: int) -> np.ndarray:
        """Natural indices of the voxels ``rank`` owns, in PETSc order."""
        start, end = self.owned_range(rank)
        return self.natural_of_petsc[start:end]


def bisect(points: np.ndarray, n_parts: int) -> np.ndarray:
    """Part label (0..n_parts-1) of each point by recursive coordinate bisection."""
    labels = np.empty(len(points), dtype=np.int64)
    _bisect(points, np.arange(len(points)), 0, n_parts, labels)
    return labels


def _bisect(points: np.ndarray, index: np.ndarray, first: int, n_parts: int, labels: np.ndarray) -> None:
    if n_parts == 1:
        labels[index] = first
        return
    sub = points[index]
    axis = int(np.argmax(sub.max(axis=0) - sub.min(axis=0))) if len(sub) else 0
    left_parts = n_parts // 2
    n_left = (len(index) * left_parts) // n_parts
    # Stable sort on (axis coordinate, natural order) makes the cut reproducible.
    order = np.lexsort((index, sub[:, axis]))
    _bisect(points, index[order[:n_left]], first, left_parts, labels)
    _bisect(points, index[order[n_left:]], first + left_parts, n_parts - left_parts, labels)


def number_tissue(tissue: np.ndarray, n_ranks: int) -> TissueNumbering:
    """Partition the tissue voxels of a mask over ``n_ranks`` ranks."""
    ijk = np.argwhere(tissue).astype(np.int64)
    n = len(ijk)
    if n < n_ranks:
        raise ValueError(f"{n} tissue voxels cannot be shared among {n_ranks} ranks")
    labels = bisect(ijk.astype(np.float64), n_ranks)
    natural_of_petsc = np.lexsort((np.arange(n), labels))  # by rank, natural order within
    petsc_of_natural = np.empty(n, dtype=np.int64)
    petsc_of_natural[natural_of_petsc] = np.arange(n)
    offsets = np.concatenate([[0], np.cumsum(np.bincount(labels, minlength=n_ranks))])
    grid = np.full(tissue.shape, -1, dtype=np.int64)
    grid[tuple(ijk.T)] = petsc_of_natural
    return TissueNumbering(ijk, petsc_of_natural, natural_of_petsc, offsets, grid)


def local_positions(owned_natural: np.ndarray, natural: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Which of ``natural`` this rank owns, and their positions in its arrays.

    ``owned_natural`` is ascending (natural order is kept within a rank).
    Returns (mask over ``natural``, local positions of the owned ones).
    """
    natural = np.asarray(natural, dtype=np.int64)
    pos = np.searchsorted(owned_natural, natural)
    pos_clipped = np.minimum(pos, max(len(owned_natural) - 1, 0))
    owned = (pos < len(owned_natural)) & (owned_natural[pos_clipped] == natural) if len(owned_natural) else np.zeros(len(natural), bool)
    return owned, pos[owned]
