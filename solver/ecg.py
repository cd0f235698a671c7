"""Torso electrodes, the pseudo-ECG, and the 12 standard leads.

The heart sits in a right-handed torso frame (mm; x to the patient's right,
y anterior, z superior: RAS) with its centre at the origin.  Its own frame (LV long axis z
from apex to base, septum +x, anterior +y; see solver.heart) is rotated so
that the long axis points from the apex up, to the right and backwards, as
in a normal chest: the apex lies left, anterior and inferior.  ``TorsoConfig``
adds a per-patient rotation (degrees about the torso x, y, z axes) on top.

Pseudo-ECG in an infinite homogeneous volume conductor of conductivity
sigma_b (S/m):

    phi_e(x_e, t) = 1 / (4 pi sigma_b) * sum_voxels I_m(x, t) / |x - x_e| * h^3

with I_m = div(sigma_i grad Vm) (uA/mm^3), obtained from the diffusion
operator's output A Vm (mV/ms) as chi Cm (sigma_i / sigma_m) A Vm.  One
precomputed electrodes-by-voxels matrix per rank turns each output step
into a small matrix-vector product; ranks' sums are added at the end.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from mpi4py import MPI

from .leads import twelve_leads
from .sites import ELECTRODE_NAMES, LEAD_NAMES

Vector3 = tuple[float, float, float]

#: Standard placement relative to the heart centre (mm, torso frame).
DEFAULT_ELECTRODES: dict[str, Vector3] = {
    "RA": (300.0, 0.0, 250.0),  # right arm
    "LA": (-300.0, 0.0, 250.0),  # left arm
    "LL": (-100.0, 0.0, -500.0),  # left leg
    "RL": (100.0, 0.0, -500.0),  # right leg (ground)
    "V1": (30.0, 110.0, 40.0),  # 4th intercostal space, right sternal border
    "V2": (-30.0, 110.0, 40.0),  # 4th intercostal space, left sternal border
    "V3": (-65.0, 105.0, 15.0),  # between V2 and V4
    "V4": (-95.0, 90.0, -10.0),  # 5th intercostal space, mid-clavicular line
    "V5": (-130.0, 60.0, -10.0),  # anterior axillary line
    "V6": (-155.0, 15.0, -10.0),  # mid-axillary line
}

#: Heart long axis (apex to base: right, posterior, superior) and septal
#: axis (LV towards RV: right and anterior) in the torso frame; the heart's
#: anterior axis, base x septal, then faces left, anterior and superior.
_BASE_DIRECTION = np.array([0.55, -0.45, 0.70])
_SEPTAL_DIRECTION = np.array([0.6, 0.75, 0.1])


@dataclass
class TorsoConfig:
    #: Extra rotation of the heart about the torso x, y, z axes (degrees).
    rotation_deg: Vector3 = (0.0, 0.0, 0.0)
    #: Shift of the heart centre in the torso (mm).
    offset_mm: Vector3 = (0.0, 0.0, 0.0)
    conductivity_S_per_m: float = 0.2
    electrodes: dict[str, Vector3] = field(default_factory=lambda: dict(DEFAULT_ELECTRODES))

    def validate(self) -> None:
        from .errors import ConfigError

        missing = [e for e in ELECTRODE_NAMES if e not in self.electrodes]
        if missing:
            raise ConfigError(f"electrodes: missing {', '.join(missing)}")
        if not self.conductivity_S_per_m > 0:
            raise ConfigError("conductivity_S_per_m must be positive")


def _rotation_xyz(angles_deg) -> np.ndarray:
    ax, ay, az = np.radians(angles_deg)
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def heart_to_torso(torso: TorsoConfig, centre: np.ndarray, long_axis: np.ndarray, septal_axis: np.ndarray):
    """A function mapping heart-frame points (n, 3) to torso coordinates."""
    base = _BASE_DIRECTION / np.linalg.norm(_BASE_DIRECTION)
    septal = _SEPTAL_DIRECTION - (_SEPTAL_DIRECTION @ base) * base
    septal /= np.linalg.norm(septal)
    torso_axes = np.stack([septal, np.cross(base, septal), base], axis=1)
    heart_axes = np.stack([septal_axis, np.cross(long_axis, septal_axis), long_axis], axis=1)
    rotation = _rotation_xyz(torso.rotation_deg) @ torso_axes @ heart_axes.T
    offset = np.asarray(torso.offset_mm)
    return lambda points: (np.asarray(points) - centre) @ rotation.T + offset


def lead_field(positions_torso: np.ndarray, electrodes: np.ndarray, dx: float, sigma_b: float) -> np.ndarray:
    """(n_electrodes, n_voxels) weights h^3 / (4 pi sigma_b r): mV per uA/mm^3."""
    r = np.linalg.norm(positions_torso[None, :, :] - electrodes[:, None, :], axis=-1)
    return dx**3 / (4 * np.pi * sigma_b * np.maximum(r, 0.5 * dx))


class PseudoECG:
    """Step observer: electrode potentials at every output sample."""

    def __init__(self, weights_local: np.ndarray, source_scale: float, n_samples: int):
        self.weights = weights_local  # (10, n_local)
        self.source_scale = source_scale  # chi Cm sigma_i / sigma_m
        self.potentials = np.zeros((n_samples, weights_local.shape[0]))

    def record(self, sample: int, vm: np.ndarray, diffusion_rate: np.ndarray) -> None:
        self.potentials[sample] = self.weights @ diffusion_rate * self.source_scale

    def gather(self, comm: MPI.Comm, n_recorded: int) -> dict:
        total = comm.allreduce(self.potentials[:n_recorded], op=MPI.SUM)
        leads = twelve_leads(total)
        return {
            "electrodes": (total.astype(np.float32), {"units": "mV", "names": list(ELECTRODE_NAMES)}),
            "leads": (leads.astype(np.float32), {"units": "mV", "names": list(LEAD_NAMES)}),
        }
