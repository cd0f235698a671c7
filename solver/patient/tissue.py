"""What makes one patient's tissue differ from its anatomy's: a scar, the
fast subendocardial layer (minus the blocked bundle branch), applied in place
to the patient's copy of the heart's conductivity."""
from __future__ import annotations

import numpy as np

from ..common.errors import ConfigError
from .config import PatientConfig
from .heart import Heart
from .segments import HeartCoordinates
from .sites import endocardial_site, epicardial_site


def apply_scar(heart: Heart, config: PatientConfig, coords: HeartCoordinates) -> None:
    """Scar core (conductivity 0) and border zone (reduced), in place."""
    scar = config.activation.scar
    if scar is None:
        return
    scale = heart.anatomy.conductivity_scale
    index = tuple(heart.numbering.ijk.T)
    centre = scar_centre(heart, coords, scar.aha_segment)
    r = np.linalg.norm(heart.positions - centre, axis=1)
    values = scale[index]
    values[r <= scar.core_radius_mm + scar.border_zone_mm] *= scar.border_conductivity_scale
    values[r <= scar.core_radius_mm] = 0.0
    scale[index] = values


def fast_layer_mask(heart: Heart, config: PatientConfig, coords: HeartCoordinates) -> np.ndarray:
    """Tissue voxels (natural order) of the fast subendocardial layer, minus
    the ventricle a bundle branch block disconnects."""
    hc = config.heart
    layer = np.zeros(heart.numbering.n, bool)
    if hc.fast_layer_mm <= 0 or hc.fast_layer_conductivity_factor == 1.0:
        return layer
    depth = _endocardial_depth(heart)
    below = coords.height <= hc.fast_layer_max_height
    lv_layer = (depth["lv"] <= hc.fast_layer_mm) & below
    rv_layer = (depth["rv"] <= hc.fast_layer_mm) & below & ~lv_layer
    if config.activation.condition != "lbbb":
        layer |= lv_layer
    if config.activation.condition != "rbbb":
        layer |= rv_layer
    return layer


def apply_fast_layer(heart: Heart, config: PatientConfig, layer: np.ndarray) -> None:
    """Raise the conductivity of the fast layer's voxels, in place."""
    scale = heart.anatomy.conductivity_scale
    index = tuple(heart.numbering.ijk.T)
    values = scale[index]
    values[layer] *= config.heart.fast_layer_conductivity_factor
    scale[index] = values


def _endocardial_depth(heart: Heart) -> dict[str, np.ndarray]:
    """Distance (mm) of each tissue voxel from the LV and RV endocardial surfaces."""
    from scipy import ndimage

    out = {}
    for name, surface in (("lv", heart.surfaces.lv_endo), ("rv", heart.surfaces.rv_endo)):
        grid = np.ones(heart.anatomy.shape, bool)
        grid[tuple(heart.numbering.ijk[surface].T)] = False
        out[name] = ndimage.distance_transform_edt(grid, sampling=heart.anatomy.dx)[tuple(heart.numbering.ijk.T)]
    return out


def scar_centre(heart: Heart, coords: HeartCoordinates, segment: int) -> np.ndarray:
    """Mid-wall point of an AHA segment: halfway between the points of its
    endocardial and epicardial sites (solver.patient.sites)."""
    name = f"AHA{segment:02d}"
    try:
        endo = endocardial_site(heart, coords, name)
    except ConfigError:
        raise ConfigError(f"scar: AHA segment {segment} has no endocardial voxels at this resolution") from None
    epi = epicardial_site(heart, coords, name, endo)
    return 0.5 * (endo.point(heart.positions) + epi.point(heart.positions))
