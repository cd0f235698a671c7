"""Monodomain cardiac electrophysiology on Cartesian voxel anatomies (MPI + PETSc)."""
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("ecgi")
except PackageNotFoundError:  # running from a source tree
    __version__ = "0+unknown"
