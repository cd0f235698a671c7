"""Rule-based fibres: the Laplace–Dirichlet rule-based method (LDRB).

Bayer, Blake, Plank & Trayanova (2012), Ann Biomed Eng 40:2243.  From four
harmonic fields (apico-basal psi, transmural phi_epi, phi_lv, phi_rv) each
voxel gets local frames [circumferential, longitudinal, transmural] for the
LV and RV endocardium and the epicardium; each is rotated by the helix angle
alpha and the transverse angle beta for its depth, and the frames are
blended with bislerp (quaternion slerp that respects the frame's symmetry).
The fibre is the first axis of the blended frame:

    f = cos(alpha) e_circumferential + sin(alpha) e_longitudinal
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class FibreAngles:
    """Helix (alpha) and transverse (beta) angles in degrees."""

    alpha_endo_deg: float = 40.0
    alpha_epi_deg: float = -50.0
    beta_endo_deg: float = -65.0
    beta_epi_deg: float = 25.0


def _normalise(v: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(v, axis=-1, keepdims=True)
    return v / np.where(norm > 1e-12, norm, 1.0)


def axis_frame(longitudinal: np.ndarray, transmural: np.ndarray) -> np.ndarray:
    """Orthonormal frames (n, 3, 3) with columns [circumferential, longitudinal, transmural]."""
    e1 = _normalise(longitudinal)
    e2 = _normalise(transmural - (e1 * transmural).sum(-1, keepdims=True) * e1)
    e0 = np.cross(e1, e2)
    return np.stack([e0, e1, e2], axis=-1)


def orient(frame: np.ndarray, alpha: np.ndarray, beta: np.ndarray) -> np.ndarray:
    """Rotate frames by alpha about the transmural axis, then beta about the new
    circumferential one (angles in radians, per voxel)."""
    ca, sa, cb, sb = np.cos(alpha), np.sin(alpha), np.cos(beta), np.sin(beta)
    zero, one = np.zeros_like(alpha), np.ones_like(alpha)
    rot_alpha = np.stack([np.stack([ca, -sa, zero], -1), np.stack([sa, ca, zero], -1), np.stack([zero, zero, one], -1)], -2)
    rot_beta = np.stack([np.stack([one, zero, zero], -1), np.stack([zero, cb, sb], -1), np.stack([zero, -sb, cb], -1)], -2)
    return frame @ rot_alpha @ rot_beta


def rotation_to_quaternion(r: np.ndarray) -> np.ndarray:
    """Unit quaternions (w, x, y, z) of rotation matrices (n, 3, 3)."""
    q = np.empty(r.shape[:-2] + (4,))
    trace = np.trace(r, axis1=-2, axis2=-1)
    cases = np.stack([trace, r[..., 0, 0], r[..., 1, 1], r[..., 2, 2]], -1).argmax(-1)
    for case in range(4):
        m = cases == case
        rm = r[m]
        if case == 0:
            s = 2.0 * np.sqrt(1.0 + trace[m])
            q[m] = np.stack([0.25 * s, (rm[:, 2, 1] - rm[:, 1, 2]) / s, (rm[:, 0, 2] - rm[:, 2, 0]) / s, (rm[:, 1, 0] - rm[:, 0, 1]) / s], -1)
        else:
            i = case - 1
            j, k = (i + 1) % 3, (i + 2) % 3
            s = 2.0 * np.sqrt(np.maximum(1.0 + rm[:, i, i] - rm[:, j, j] - rm[:, k, k], 1e-300))
            comp = np.empty((len(rm), 4))
            comp[:, 0] = (rm[:, k, j] - rm[:, j, k]) / s
            comp[:, 1 + i] = 0.25 * s
            comp[:, 1 + j] = (rm[:, j, i] + rm[:, i, j]) / s
            comp[:, 1 + k] = (rm[:, k, i] + rm[:, i, k]) / s
            q[m] = comp
    return q / np.linalg.norm(q, axis=-1, keepdims=True)


def quaternion_to_rotation(q: np.ndarray) -> np.ndarray:
    w, x, y, z = np.moveaxis(q, -1, 0)
    return np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
        np.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
        np.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1),
    ], -2)


def _frame_symmetries(q: np.ndarray) -> np.ndarray:
    """q times 1, i, j, k: the same frame with two axes flipped (n, 4, 4)."""
    w, x, y, z = np.moveaxis(q, -1, 0)
    return np.stack([
        np.stack([w, x, y, z], -1),
        np.stack([-x, w, z, -y], -1),
        np.stack([-y, -z, w, x], -1),
        np.stack([-z, y, -x, w], -1),
    ], -2)


def bislerp(frame_a: np.ndarray, frame_b: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Interpolate frames: t = 0 gives a, t = 1 gives b (per voxel)."""
    qa, qb = rotation_to_quaternion(frame_a), rotation_to_quaternion(frame_b)
    candidates = _frame_symmetries(qa)
    dots = np.einsum("nci,ni->nc", candidates, qb)
    best = np.abs(dots).argmax(-1)
    qm = candidates[np.arange(len(qa)), best]
    qm *= np.sign(dots[np.arange(len(qa)), best])[:, None]  # shortest arc
    cos_theta = np.clip((qm * qb).sum(-1), -1.0, 1.0)
    theta = np.arccos(cos_theta)
    small = theta < 1e-6
    sin_theta = np.where(small, 1.0, np.sin(theta))
    wa = np.where(small, 1.0 - t, np.sin((1.0 - t) * theta) / sin_theta)
    wb = np.where(small, t, np.sin(t * theta) / sin_theta)
    q = wa[:, None] * qm + wb[:, None] * qb
    return quaternion_to_rotation(q / np.linalg.norm(q, axis=-1, keepdims=True))


def ldrb_fibres(
    grad_psi: np.ndarray,
    phi_epi: np.ndarray, grad_phi_epi: np.ndarray,
    phi_lv: np.ndarray, grad_phi_lv: np.ndarray,
    phi_rv: np.ndarray, grad_phi_rv: np.ndarray,
    angles: FibreAngles,
) -> np.ndarray:
    """Unit fibre directions (n, 3) from the harmonic fields and their gradients."""
    a_endo, a_epi = np.radians(angles.alpha_endo_deg), np.radians(angles.alpha_epi_deg)
    b_endo, b_epi = np.radians(angles.beta_endo_deg), np.radians(angles.beta_epi_deg)
    # Septal depth: 0 on the LV endocardium, 1 on the RV endocardium.
    d = np.clip(phi_rv / np.maximum(phi_lv + phi_rv, 1e-12), 0.0, 1.0)
    e = np.clip(phi_epi, 0.0, 1.0)
    alpha_s, beta_s = a_endo * (1 - d) - a_endo * d, b_endo * (1 - d) - b_endo * d
    alpha_w, beta_w = a_endo * (1 - e) + a_epi * e, b_endo * (1 - e) + b_epi * e
    frame_lv = orient(axis_frame(grad_psi, -grad_phi_lv), alpha_s, beta_s)
    frame_rv = orient(axis_frame(grad_psi, grad_phi_rv), alpha_s, beta_s)
    frame_endo = bislerp(frame_lv, frame_rv, d)
    frame_epi = orient(axis_frame(grad_psi, grad_phi_epi), alpha_w, beta_w)
    frame = bislerp(frame_endo, frame_epi, e)
    return _normalise(frame[..., 0])
