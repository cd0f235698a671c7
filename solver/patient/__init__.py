"""The synthetic patient, built on the numerics (solver.numerics).

    biventricle, user_anatomy   the anatomy: analytic biventricle or a user's voxels/mesh
    anatomy_import, anatomy_report  real heart meshes as labelled voxels (ecgi anatomy import)
    laplace, fibres, heart      Laplace coordinates, rule-based fibres, the built heart
    segments                    AHA and RV segments, the 75 named sites
    calibration                 conductivities for target conduction velocities on a grid
    torso, ecg, leads           the bounded torso's lead fields, the ECG recorder, 12 leads
    ecg_measures                QRS duration, axis, R/S ratios: textbook criteria
    config                      PatientConfig: one patient's parameters
    tissue                      the patient's scar and fast layer on its copy of the heart
    simulation                  PatientSimulation: heart + tissue -> monodomain run -> sample
    sample_file                 the sample file a campaign's data sets are built from

The names below are the package's public interface.  They are loaded on
first use: the MPI-free modules (biventricle, leads, ecg_measures) can be
imported by processes that must not start MPI, such as a campaign's driver.
"""
from importlib import import_module

_PUBLIC = {
    "PatientConfig": "config", "RootSite": "config", "durrer_roots": "config", "load_patient_config": "config",
    "patient_attributes": "sample_file", "write_sample": "sample_file",
    "PatientSimulation": "simulation", "PatientSample": "simulation",
}
__all__ = sorted(_PUBLIC)


def __getattr__(name: str):
    if name not in _PUBLIC:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f".{_PUBLIC[name]}", __name__), name)
