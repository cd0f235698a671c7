"""The heart in the torso, the electrodes, and the ECG at every output step.

The heart sits in a right-handed torso frame (mm; x to the patient's right,
y anterior, z superior: RAS) with its centre at the origin.  Its own frame
(LV long axis z from apex to base, septum +x, anterior +y; see solver.patient.heart)
is rotated so that the long axis points from the apex up, to the right and
backwards, as in a normal chest: the apex lies left, anterior and inferior.
``TorsoConfig`` adds a per-patient rotation and shift on top.

Source model.  Each tissue voxel is a current source
I_m = div(sigma_i grad Vm) (uA/mm^3), taken from the monodomain operator as
chi Cm (sigma_i / sigma_m) A_source Vm.  A_source is the operator of ordinary
myocardium: the fast subendocardial layer conducts fast because of the
Purkinje fibres it stands for, whose mass is negligible, so its raised
conductivity speeds the activation but is not part of the ECG's source
(otherwise a 1-2 voxel sheet of eight-fold conductivity would be the largest
dipole of the heart).  Scar keeps its reduced conductivity in both.

Electrode potentials are phi_e = sum_v Z_e(x_v) I_m(x_v) h^3 with the lead
fields Z_e of ``solver.patient.torso`` (bounded torso, by reciprocity; default) or of
an infinite homogeneous medium, Z_e = 1 / (4 pi sigma |x - x_e|).  Since
both the lead fields and A_source are fixed, they are combined once into
one electrodes-by-voxels matrix W = h^3 chi Cm (sigma_i/sigma_m) Z A_source
per rank, and each output step costs one small product W Vm; ranks' sums
are added at the end.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from .leads import twelve_leads
from ..common.sites import ELECTRODE_NAMES, LEAD_NAMES
from .torso import GROUND, TorsoGeometry

Vector3 = tuple[float, float, float]

#: Nominal placement (mm, torso frame, from the heart centre).  In the
#: bounded torso each electrode moves to the nearest skin point: the limb
#: electrodes to where the arms and the left leg join the torso.
DEFAULT_ELECTRODES: dict[str, Vector3] = {
    "RA": (170.0, -10.0, 230.0),  # right arm (shoulder)
    "LA": (-170.0, -10.0, 230.0),  # left arm (shoulder)
    "LL": (-100.0, -10.0, -400.0),  # left leg (hip)
    "RL": (100.0, -10.0, -400.0),  # right leg (ground)
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
#: The long axis lies 60 degrees below the horizontal in the frontal plane
#: (the anatomical axis of a normal adult heart) and tilts 25 degrees
#: forward (apex anterior).
_BASE_DIRECTION = np.array([0.45, -0.45, 0.77])
_SEPTAL_DIRECTION = np.array([0.58, 0.75, 0.18])


@dataclass
class TorsoConfig:
    #: Extra rotation of the heart about the torso x, y, z axes (degrees).
    rotation_deg: Vector3 = (0.0, 0.0, 0.0)
    #: Shift of the heart centre in the torso (mm).
    offset_mm: Vector3 = (0.0, 0.0, 0.0)
    #: "torso": bounded volume conductor (lead fields by reciprocity);
    #: "infinite": the pseudo-ECG of an infinite homogeneous medium.
    volume_conductor: Literal["torso", "infinite"] = "torso"
    body: TorsoGeometry = field(default_factory=TorsoGeometry)
    electrodes: dict[str, Vector3] = field(default_factory=lambda: dict(DEFAULT_ELECTRODES))

    def validate(self) -> None:
        from ..common.errors import ConfigError

        missing = [e for e in ELECTRODE_NAMES if e not in self.electrodes]
        if missing:
            raise ConfigError(f"electrodes: missing {', '.join(missing)}")


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


def infinite_medium_fields(points: np.ndarray, electrodes: np.ndarray, sigma: float, dx: float) -> np.ndarray:
    """(n_electrodes, n_points) Z = 1 / (4 pi sigma r) in mV per uA, with r
    kept above half a voxel."""
    r = np.linalg.norm(points[None, :, :] - electrodes[:, None, :], axis=-1)
    return 1.0 / (4 * np.pi * sigma * np.maximum(r, 0.5 * dx))


def electrode_lead_fields(torso: TorsoConfig, points: np.ndarray, dx: float, comm,
                          blood: np.ndarray | None = None) -> np.ndarray:
    """(10, n_points) lead fields Z_e (mV per uA) in ELECTRODE_NAMES order at
    torso-frame points, relative to the ground electrode (RL) in the bounded
    torso and to infinity in the infinite medium; ``blood``: the heart's
    cavity voxel centres (torso frame, voxels of size dx) for blood pools."""
    electrodes = {name: np.asarray(torso.electrodes[name], float) for name in ELECTRODE_NAMES}
    if torso.volume_conductor == "infinite":
        return infinite_medium_fields(points, np.array(list(electrodes.values())), torso.body.conductivity_S_per_m, dx)
    from .torso import lead_fields, sample_fields

    grid, fields = lead_fields(torso.body, electrodes, comm, blood=blood, blood_voxel_mm=dx)
    return sample_fields(grid, fields, ELECTRODE_NAMES, points)


def source_weights(source_operator, lead_fields_local: np.ndarray, scale: float) -> np.ndarray:
    """W = scale * Z A_source, rows per electrode, over this rank's voxels.

    ``source_operator`` is the distributed PETSc matrix A_source; row e of W
    is scale * A_source^T z_e, one transposed product per electrode."""
    z, w = source_operator.createVecs()
    rows = []
    for values in lead_fields_local:
        z.getArray()[:] = values
        source_operator.multTranspose(z, w)
        rows.append(w.getArray().copy() * scale)
    z.destroy()
    w.destroy()
    return np.array(rows).reshape(len(lead_fields_local), -1)


class ECGRecorder:
    """Step observer: electrode potentials W Vm at every output sample."""

    def __init__(self, weights_local: np.ndarray, n_samples: int, reference: str):
        self.weights = weights_local  # (10, n_local)
        self.reference = reference
        self.potentials = np.zeros((n_samples, weights_local.shape[0]))

    def record(self, sample: int, vm: np.ndarray) -> None:
        self.potentials[sample] = self.weights @ vm

    def gather(self, comm, n_recorded: int) -> dict:
        total = comm.allreduce(self.potentials[:n_recorded])  # the default op sums
        leads = twelve_leads(total)
        return {
            "electrodes": (total.astype(np.float32), {"units": "mV", "names": list(ELECTRODE_NAMES),
                                                      "reference": self.reference}),
            "leads": (leads.astype(np.float32), {"units": "mV", "names": list(LEAD_NAMES)}),
        }


def reference_of(torso: TorsoConfig) -> str:
    return GROUND if torso.volume_conductor == "torso" else "infinity"
