"""Monodomain cardiac electrophysiology on Cartesian voxel anatomies (MPI + PETSc).

    common/         shared by every layer: errors, typed config, files, site names, data-set format
    numerics/       one monodomain simulation: operator, time loop, ionic models, output
    patient/        the synthetic patient: heart, tissue, torso and ECG, sample files
    verification/   the solver against published benchmarks
"""
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("ecgi")
except PackageNotFoundError:  # running from a source tree
    __version__ = "0+unknown"
