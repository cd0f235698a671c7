"""The synthetic patient, built on the numerics (solver.numerics).

    biventricle, user_anatomy   the anatomy: analytic biventricle or a user's voxels/mesh
    laplace, fibres, heart      Laplace coordinates, rule-based fibres, the built heart
    segments                    AHA and RV segments, the 75 named sites
    calibration                 conductivities for target conduction velocities on a grid
    torso, ecg, leads           the bounded torso's lead fields, the ECG recorder, 12 leads
    ecg_measures                QRS duration, axis, R/S ratios: textbook criteria
    config                      PatientConfig: one patient's parameters
    tissue                      the patient's scar and fast layer on its copy of the heart
    simulation                  PatientSimulation: heart + tissue -> monodomain run -> sample
    sample_file                 the sample file a campaign's data sets are built from

The names below are the package's public interface.
"""
from .config import PatientConfig, RootSite, durrer_roots, load_patient_config
from .sample_file import patient_attributes, write_sample
from .simulation import PatientSimulation, Sample

__all__ = ["PatientConfig", "PatientSimulation", "RootSite", "Sample", "durrer_roots", "load_patient_config",
           "patient_attributes", "write_sample"]
