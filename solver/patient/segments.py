"""AHA segments, the heart's coordinates, and points on the endocardium.

Segments are defined in the LV frame of a ``Heart``: the height along the LV
long axis, normalised over the LV endocardium (0 at the cavity tip, 1 at the
base), and the circumferential angle (0 septal, 90 anterior, -90 inferior,
180 lateral).

LV, AHA 17-segment model: basal (1-6) and mid (7-12) rings of six 60-degree
segments — anterior, anteroseptal, inferoseptal, inferior, inferolateral,
anterolateral — apical ring (13-16) of four — anterior, septal, inferior,
lateral — and the apical cap (17).

RV, 13 segments: basal and mid rings of five (free wall anterior, lateral,
inferior; septal inferior, anterior: RV01-05 and RV06-10), apical ring of
three (free wall anterior, inferior; septal: RV11-13).  The free wall is
split into equal angular thirds of its extent.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .footprint import Footprint, soft_nearest
from .heart import Heart

#: Normalised heights of the ring boundaries: cap | apical | mid | basal.
LV_RINGS = (0.08, 0.36, 0.68)
RV_RINGS = (0.33, 0.66)


def _wrap(angle):
    return (np.asarray(angle) + 180.0) % 360.0 - 180.0


def aha_segment(height: np.ndarray, angle: np.ndarray) -> np.ndarray:
    """AHA segment (1-17) for normalised LV heights and angles (degrees)."""
    height, angle = np.asarray(height), _wrap(angle)
    six = np.select(
        [(angle >= 60) & (angle < 120), (angle >= 0) & (angle < 60), (angle >= -60) & (angle < 0),
         (angle >= -120) & (angle < -60), angle < -120],
        [1, 2, 3, 4, 5], default=6)
    four = np.select([(angle >= 45) & (angle < 135), (angle >= -45) & (angle < 45), (angle >= -135) & (angle < -45)],
                     [13, 14, 15], default=16)
    return np.select([height < LV_RINGS[0], height < LV_RINGS[1], height < LV_RINGS[2]],
                     [17, four, six + 6], default=six)


def rv_segment(height: np.ndarray, angle: np.ndarray, septal: np.ndarray, free_wall_limits: tuple[float, float]) -> np.ndarray:
    """RV segment (1-13): ``free_wall_limits`` are the angles splitting the
    free wall into anterior / lateral / inferior thirds."""
    angle = _wrap(angle)
    upper, lower = free_wall_limits  # anterior above `upper`, inferior below `lower`
    free3 = np.select([angle >= upper, angle >= lower], [1, 2], default=3)
    septal2 = np.where(angle < 0, 4, 5)  # inferoseptal, anteroseptal
    ring5 = np.where(septal, septal2, free3)
    apical = np.where(septal, 13, np.where(angle >= 0.5 * (upper + lower), 11, 12))
    return np.select([height < RV_RINGS[0], height < RV_RINGS[1]], [apical, ring5 + 5], default=ring5)


@dataclass
class HeartCoordinates:
    """Per-voxel segment coordinates of a heart (natural order)."""

    height: np.ndarray  #: normalised over the LV endocardium
    angle: np.ndarray
    lv_segment: np.ndarray  #: 1-17 where meaningful, else 0
    rv_segment: np.ndarray  #: 1-13 where meaningful, else 0


def heart_coordinates(heart: Heart) -> HeartCoordinates:
    pos = heart.positions
    height, angle = heart.frame.cylindrical(pos)
    s = heart.surfaces
    lv_h = height[s.lv_endo]
    h = (height - lv_h.min()) / (lv_h.max() - lv_h.min())
    rv_h = height[s.rv_endo]
    h_rv = (height - rv_h.min()) / (rv_h.max() - rv_h.min())
    lv_side = heart.lv_side
    lv_seg = np.where(lv_side, aha_segment(h, angle), 0)
    free = ~lv_side & ~heart.septum
    free_angles = _wrap(angle[free & s.rv_endo])
    limits = (np.quantile(free_angles, 2 / 3), np.quantile(free_angles, 1 / 3)) if len(free_angles) else (30.0, -30.0)
    rv_seg = np.where(~lv_side | heart.septum, rv_segment(h_rv, angle, heart.septum, limits), 0)
    return HeartCoordinates(h, angle, lv_seg, rv_seg)


def endocardial_point(heart: Heart, coords: HeartCoordinates, ventricle: str, height: float, angle_deg: float,
                      septal: bool | None = None) -> Footprint:
    """The endocardium of a ventricle nearest (height, angle), read softly
    (solver.patient.footprint) in a metric of the surface.

    ``septal`` restricts RV candidates to the septal (True) or free (False) wall.
    """
    s = heart.surfaces
    candidates = s.lv_endo.copy() if ventricle == "lv" else s.rv_endo.copy()
    if septal is not None:
        candidates &= heart.septum if septal else ~heart.septum
    idx = np.flatnonzero(candidates)
    # Distances in mm: height times the LV's endocardial length, angle times its radius.
    scale = np.ptp(heart.frame.cylindrical(heart.positions[s.lv_endo])[0])
    radius = np.median(np.linalg.norm(heart.positions[s.lv_endo] - heart.frame.centre, axis=1))
    d_height = (coords.height[idx] - height) * scale
    d_arc = np.radians(_wrap(coords.angle[idx] - angle_deg)) * radius
    return soft_nearest(idx, np.hypot(d_height, d_arc), heart.footprint_softness_mm)
