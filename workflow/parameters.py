"""What a campaign can vary, and how each value changes a patient.

Each parameter belongs to a group: ``geometry`` parameters are drawn once
per anatomy (every sample of that anatomy shares them), ``sample``
parameters once per sample.  ``apply`` writes a value into the patient
configuration (a plain dict, validated afterwards as a PatientConfig).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Literal

import numpy as np

from solver.common.errors import ConfigError

CONDITIONS = ("normal", "lbbb", "rbbb", "scar", "ikr_block")

Apply = Callable[[dict, Any, np.random.Generator], None]


@dataclass(frozen=True)
class Parameter:
    group: Literal["geometry", "sample"]
    description: str
    apply: Apply
    low: float | None = None  #: physically meaningful range
    high: float | None = None
    choices: tuple | None = None

    def check(self, name: str, dist) -> None:
        """Refuse a distribution that can produce values outside the range."""
        if self.choices is not None:
            values = dist.values if dist.kind == "choice" else [dist.value] if dist.kind == "fixed" else None
            if values is None:
                raise ConfigError(f"parameters.{name}: categorical; use 'choice' or 'fixed'")
            bad = [v for v in values if v not in self.choices]
            if bad:
                raise ConfigError(f"parameters.{name}: {bad} not among {list(self.choices)}")
            return
        values = {"uniform": [dist.low, dist.high], "normal": [dist.low, dist.high],
                  "choice": dist.values, "fixed": [dist.value]}[dist.kind]
        if dist.kind == "normal" and (dist.low is None or dist.high is None):
            values = [dist.mean - 4 * dist.std, dist.mean + 4 * dist.std]
        for v in values:
            if not isinstance(v, (int, float)) or isinstance(v, bool):
                raise ConfigError(f"parameters.{name}: expected numbers, got {v!r}")
            if (self.low is not None and v < self.low) or (self.high is not None and v > self.high):
                raise ConfigError(f"parameters.{name}: {v} outside the meaningful range [{self.low}, {self.high}] ({self.description})")


def _set(path: str) -> Apply:
    def apply(config: dict, value, rng) -> None:
        node = config
        *parents, last = path.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value
    return apply


def _scale_shape(keys: tuple[str, ...], axes: tuple[int, ...]) -> Apply:
    def apply(config: dict, value, rng) -> None:
        from solver.patient.biventricle import BiventricleShape

        shape = config.setdefault("heart", {}).setdefault("shape", {})
        defaults = BiventricleShape()
        for key in keys:
            vec = list(shape.get(key, getattr(defaults, key)))
            for a in axes:
                vec[a] *= value
            shape[key] = vec
    return apply


def _condition(config: dict, value, rng) -> None:
    activation = config.setdefault("activation", {})
    activation["condition"] = value if value in ("normal", "lbbb", "rbbb") else "normal"
    config["label"] = value
    if value == "scar":
        activation.setdefault("scar", {"aha_segment": int(rng.integers(1, 18))})
    elif value == "ikr_block":
        config.setdefault("_ikr_block", 0.5)


def _ikr_block_strength(config: dict, value, rng) -> None:
    # Drawn for every sample (a Latin hypercube needs every column), applied
    # only to the I_Kr-block patients: every other heart keeps its normal APD.
    if config.get("label") == "ikr_block":
        config["_ikr_block"] = value


def _scar_segment(config: dict, value, rng) -> None:
    scar = config.setdefault("activation", {}).get("scar")
    if scar is not None:
        scar["aha_segment"] = int(value)


def _scar_radius(config: dict, value, rng) -> None:
    scar = config.setdefault("activation", {}).get("scar")
    if scar is not None:
        scar["core_radius_mm"] = float(value)


def _root_jitter(onset_std_ms: float | None = None, height_std: float | None = None, angle_std_deg: float | None = None) -> Apply:
    def apply(config: dict, value, rng) -> None:
        roots = config.setdefault("activation", {}).setdefault("roots", [_root_dict(r) for r in durrer_roots()])
        for root in roots:
            if onset_std_ms is not None:
                root["onset_ms"] = float(max(0.0, root["onset_ms"] + value * rng.standard_normal()))
            if height_std is not None:
                root["height"] = float(np.clip(root["height"] + value * rng.standard_normal(), 0.1, 0.9))
            if angle_std_deg is not None:
                root["angle_deg"] = float(root["angle_deg"] + value * rng.standard_normal())
    return apply


def _root_drop(config: dict, value, rng) -> None:
    """Drop each root but the first of each ventricle with probability ``value``."""
    roots = config.setdefault("activation", {}).setdefault("roots", [_root_dict(r) for r in durrer_roots()])
    kept, seen = [], set()
    for root in roots:
        first = root["ventricle"] not in seen
        seen.add(root["ventricle"])
        if first or rng.random() >= value:
            kept.append(root)
    config["activation"]["roots"] = kept


def _root_dict(root) -> dict:
    from dataclasses import asdict

    return asdict(root)


def durrer_roots():
    # Imported here: the campaign driver must not load MPI (see workflow.runner).
    from solver.patient import durrer_roots as roots

    return roots()


def _torso_rotation(axis: int) -> Apply:
    def apply(config: dict, value, rng) -> None:
        rotation = list(config.setdefault("torso", {}).get("rotation_deg", [0.0, 0.0, 0.0]))
        rotation[axis] = float(value)
        config["torso"]["rotation_deg"] = rotation
    return apply


PARAMETERS: dict[str, Parameter] = {
    # Anatomy (per geometry)
    "heart_scale": Parameter("geometry", "overall size factor of both ventricles", _scale_shape(("lv_radii_mm", "rv_radii_mm", "rv_centre_mm"), (0, 1, 2)), 0.7, 1.4),
    "long_axis_scale": Parameter("geometry", "length factor along the long axis", _scale_shape(("lv_radii_mm", "rv_radii_mm"), (2,)), 0.7, 1.4),
    "rv_extent_scale": Parameter("geometry", "RV width factor (x and y radii)", _scale_shape(("rv_radii_mm",), (0, 1)), 0.8, 1.2),
    "lv_wall_mm": Parameter("geometry", "LV wall thickness (mm)", _set("heart.shape.lv_wall_mm"), 3.0, 12.0),
    "rv_wall_mm": Parameter("geometry", "RV wall thickness (mm)", _set("heart.shape.rv_wall_mm"), 2.0, 8.0),
    "base_z_mm": Parameter("geometry", "height of the base plane (mm)", _set("heart.shape.base_z_mm"), 0.0, 20.0),
    # Activation and pathology (per sample)
    "condition": Parameter("sample", "normal, lbbb, rbbb, scar or ikr_block", _condition, choices=CONDITIONS),
    "scar_segment": Parameter("sample", "AHA segment of the scar (condition scar)", _scar_segment, 1, 17),
    "scar_core_radius_mm": Parameter("sample", "scar core radius (mm)", _scar_radius, 1.0, 20.0),
    "ikr_block_g_Kr_scale": Parameter("sample", "remaining I_Kr conductance under I_Kr block (condition ikr_block)", _ikr_block_strength, 0.0, 1.0),
    "root_onset_jitter_ms": Parameter("sample", "std of each root's onset jitter (ms)", _root_jitter(onset_std_ms=1.0), 0.0, 20.0),
    "root_height_jitter": Parameter("sample", "std of each root's height jitter (normalised)", _root_jitter(height_std=1.0), 0.0, 0.3),
    "root_angle_jitter_deg": Parameter("sample", "std of each root's angle jitter (degrees)", _root_jitter(angle_std_deg=1.0), 0.0, 60.0),
    "root_drop_probability": Parameter("sample", "probability of dropping each secondary root", _root_drop, 0.0, 1.0),
    "cv_longitudinal_m_per_s": Parameter("sample", "conduction velocity along fibres (m/s)", _set("calibration.longitudinal_m_per_s"), 0.2, 1.2),
    "cv_transverse_m_per_s": Parameter("sample", "conduction velocity across fibres (m/s)", _set("calibration.transverse_m_per_s"), 0.05, 0.6),
    "cv_fast_layer_m_per_s": Parameter("sample", "speed of the fast endocardial layer (m/s)", _set("calibration.fast_layer_m_per_s"), 0.6, 4.0),
    "stimulus_amplitude_uA_per_mm3": Parameter("sample", "root stimulus current density (uA/mm^3)", _set("activation.stimulus_amplitude_uA_per_mm3"), 1.0, 1e9),
    "torso_rotation_x_deg": Parameter("sample", "heart rotation about the torso x axis (degrees)", _torso_rotation(0), -45.0, 45.0),
    "torso_rotation_y_deg": Parameter("sample", "heart rotation about the torso y axis (degrees)", _torso_rotation(1), -45.0, 45.0),
    "torso_rotation_z_deg": Parameter("sample", "heart rotation about the torso z axis (degrees)", _torso_rotation(2), -45.0, 45.0),
}

#: Application order: structural choices (condition) before what refines them.
ORDER = ("condition", "scar_segment", "scar_core_radius_mm", "ikr_block_g_Kr_scale", "root_drop_probability")


def apply_parameters(config: dict, values: dict[str, Any], rng: np.random.Generator, ionic_model: str) -> dict:
    """Apply sampled values to a patient configuration dict (in place)."""
    for name in sorted(values, key=lambda n: (ORDER.index(n) if n in ORDER else len(ORDER), n)):
        PARAMETERS[name].apply(config, values[name], rng)
    block = config.pop("_ikr_block", None)
    if block is not None:
        ionic = config.setdefault("ionic", {})
        params = ionic.setdefault("parameters", {})
        if ionic_model == "tt06":
            params["g_Kr_scale"] = float(block)
        else:
            # Phenomenological stand-in: slower repolarisation, as when I_Kr is
            # blocked (APD prolongation grows as the remaining fraction falls).
            params["tau_close"] = 150.0 / max(float(block), 0.05) ** 0.5
    return config
