"""The configuration of one synthetic patient, validated at load.

A ``PatientConfig`` describes a heart (shape, fibres, layers), how it is
activated (root sites after Durrer et al. 1970, bundle branch blocks, a
scar), how it repolarises (APD gradients), its membrane (ionic model, I_Kr
block), its place in the torso, and the solver settings.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional

import numpy as np

from ..common.errors import ConfigError
from ..common.typedconfig import from_mapping
from ..numerics.config import ConductivityConfig, IonicConfig, MembraneConfig, TimeConfig, TissueConductivity
from .calibration import VelocityTargets
from .ecg import TorsoConfig
from .heart import HeartConfig

Condition = Literal["normal", "lbbb", "rbbb"]


@dataclass
class RootSite:
    """An early endocardial activation site: where, how large, and when."""

    name: str
    ventricle: Literal["lv", "rv"]
    height: float  #: normalised LV height, 0 apex .. 1 base
    angle_deg: float  #: about the LV axis: 0 septal, 90 anterior, -90 inferior
    onset_ms: float = 0.0
    radius_mm: float = 2.5
    septal: Optional[bool] = None  #: RV roots: on the septal (True) or free wall

    def validate(self) -> None:
        if not 0.0 <= self.height <= 1.0:
            raise ConfigError(f"root {self.name}: height must be within [0, 1], got {self.height}")
        if self.onset_ms < 0 or self.radius_mm <= 0:
            raise ConfigError(f"root {self.name}: onset_ms must be >= 0 and radius_mm > 0")


def durrer_roots() -> list[RootSite]:
    """The early activation sites of the isolated human heart (Durrer 1970):
    three LV areas excited 0-5 ms after the onset, a posterior LV site soon
    after, the RV septum where the right bundle enters the moderator band,
    and the RV free wall at the insertion of the anterior papillary muscle,
    which the moderator band reaches a few milliseconds later."""
    return [
        RootSite("lv_mid_septal", "lv", 0.50, 0.0, onset_ms=0.0),
        RootSite("lv_anterior_paraseptal", "lv", 0.70, 60.0, onset_ms=2.0),
        RootSite("lv_posterior_paraseptal", "lv", 0.35, -60.0, onset_ms=4.0),
        RootSite("lv_posterior", "lv", 0.55, -120.0, onset_ms=8.0),
        RootSite("rv_septal_moderator_band", "rv", 0.35, 20.0, onset_ms=5.0, septal=True),
        RootSite("rv_anterior_papillary", "rv", 0.40, 0.0, onset_ms=8.0, septal=False),
    ]


@dataclass
class ScarConfig:
    """Non-conducting core with a border zone of reduced conductivity,
    centred in the mid-wall of one AHA segment."""

    aha_segment: int
    core_radius_mm: float = 7.0
    border_zone_mm: float = 4.0
    border_conductivity_scale: float = 0.3

    def validate(self) -> None:
        if not 1 <= self.aha_segment <= 17:
            raise ConfigError(f"scar: aha_segment must be 1..17, got {self.aha_segment}")
        if self.core_radius_mm <= 0 or self.border_zone_mm < 0:
            raise ConfigError("scar: core_radius_mm must be > 0 and border_zone_mm >= 0")
        if not 0 < self.border_conductivity_scale <= 1:
            raise ConfigError("scar: border_conductivity_scale must be within (0, 1]")


@dataclass
class ActivationConfig:
    condition: Condition = "normal"
    roots: list[RootSite] = field(default_factory=durrer_roots)
    scar: Optional[ScarConfig] = None
    stimulus_amplitude_uA_per_mm3: float = 60.0
    stimulus_duration_ms: float = 2.0
    #: Speed at which a root's patch is excited outward from its centre: the
    #: Purkinje network's, as the fast subendocardial layer's target speed
    #: (None: the whole patch at once).
    root_spread_m_per_s: Optional[float] = 1.2

    def validate(self) -> None:
        if self.root_spread_m_per_s is not None and not 0 < self.root_spread_m_per_s < float("inf"):
            raise ConfigError(f"activation.root_spread_m_per_s must be a positive speed, got {self.root_spread_m_per_s}")


@dataclass
class RepolarisationConfig:
    """Spatial gradients of the action potential duration (APD).

    Two gradients make the T wave of a normal heart concordant with its QRS:
    transmurally the endocardium, activated first, repolarises last (longer
    APD; the activation-recovery inverse relation, Franz et al. 1987), and
    along the long axis apical myocardium has a shorter APD than basal
    myocardium (more I_Ks and I_to at the apex; Szentadrassy et al. 2005).
    Both become APD multipliers, realised through tau_close in
    Mitchell–Schaeffer and through g_Ks in TT06 (on top of its endo, mid and
    epi cell types, whose single-cell APDs leave the endocardium shorter
    than the epicardium):

        APD scale = 1 + transmural (0.5 - phi_epi) + apicobasal (psi - 0.5)

    with phi_epi 0 at the endocardium and 1 at the epicardium, psi 0 at the
    apex and 1 at the base.
    """

    #: Endocardial APD minus epicardial APD, as a fraction of the mean APD.
    transmural_apd_fraction: float = 0.12
    #: Basal APD minus apical APD, as a fraction of the mean APD.
    apicobasal_apd_fraction: float = 0.10

    def validate(self) -> None:
        for name in ("transmural_apd_fraction", "apicobasal_apd_fraction"):
            if not -0.5 < getattr(self, name) < 0.5:
                raise ConfigError(f"repolarisation.{name} must be within (-0.5, 0.5), got {getattr(self, name)}")

    def apd_scale(self, transmural: np.ndarray, apicobasal: np.ndarray) -> np.ndarray:
        return 1.0 + self.transmural_apd_fraction * (0.5 - transmural) + self.apicobasal_apd_fraction * (apicobasal - 0.5)


def default_conductivity() -> ConductivityConfig:
    """Myocardial conductivities (S/m) of the Niederer benchmark."""
    return ConductivityConfig(
        intracellular=TissueConductivity(longitudinal=0.17, transverse=0.019),
        extracellular=TissueConductivity(longitudinal=0.62, transverse=0.24),
    )


@dataclass
class PatientConfig:
    geometry_id: str = "default"
    heart: HeartConfig = field(default_factory=HeartConfig)
    activation: ActivationConfig = field(default_factory=ActivationConfig)
    repolarisation: RepolarisationConfig = field(default_factory=RepolarisationConfig)
    conductivity: ConductivityConfig = field(default_factory=default_conductivity)
    ionic: IonicConfig = field(default_factory=lambda: IonicConfig(model="tt06"))
    membrane: MembraneConfig = field(default_factory=MembraneConfig)
    time: TimeConfig = field(default_factory=lambda: TimeConfig(dt_ms=0.05, duration_ms=500.0, diffusion="auto"))
    torso: TorsoConfig = field(default_factory=TorsoConfig)
    output_interval_ms: float = 1.0
    #: Conduction velocities to calibrate the conductivities to on this grid
    #: (replaces the conductivities' scale and the fast-layer factor); None
    #: uses ``conductivity`` and ``heart.fast_layer_conductivity_factor`` as given.
    calibration: Optional[VelocityTargets] = field(default_factory=VelocityTargets)
    #: Condition label stored in data sets; derived from the settings when None.
    label: Optional[str] = None
    #: Sampled parameters to store with the sample (campaigns fill this in).
    parameters: dict[str, float] = field(default_factory=dict)

    def validate(self) -> None:
        roots = self.active_roots()
        if not roots:
            raise ConfigError("activation: no root site is left to start activation "
                              f"(condition {self.activation.condition!r} removes the roots given)")

    def active_roots(self) -> list[RootSite]:
        """Roots after the block: LBBB silences the LV roots, RBBB the RV ones."""
        blocked = {"lbbb": "lv", "rbbb": "rv"}.get(self.activation.condition)
        return [r for r in self.activation.roots if r.ventricle != blocked]

    def condition_label(self) -> str:
        """The label a data set stores: a block, else scar, else I_Kr block, else normal."""
        if self.label:
            return self.label
        if self.activation.condition != "normal":
            return self.activation.condition
        if self.activation.scar is not None:
            return "scar"
        if self.ionic.parameters.get("g_Kr_scale", 1.0) < 1.0:
            return "ikr_block"
        return "normal"


def load_patient_config(data: dict, where: str = "patient") -> PatientConfig:
    """A validated PatientConfig from a mapping; errors name ``where`` and the dotted key."""
    return from_mapping(PatientConfig, data, where)
