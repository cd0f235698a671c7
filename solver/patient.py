"""Synthetic patients: one parameter set in, one training sample out.

A ``PatientConfig`` describes a heart (shape, fibres, layers), how it is
activated (root sites after Durrer et al. 1970, bundle branch blocks, a
scar), how it repolarises (APD gradients), its membrane (ionic model, I_Kr
block), its place in the torso, and the solver settings.
``PatientSimulation`` takes the heart of its anatomy (built once per
process), turns all of that into a monodomain simulation with the 75 sites
as probes and the ECG recorder as an observer, runs it and returns the
sample.
"""
from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal, Optional

import numpy as np
import yaml
from mpi4py import MPI

from .calibration import VelocityTargets, calibrate_shared, scaled_conductivity
from .config import (
    AnatomyConfig,
    ConductivityConfig,
    IonicConfig,
    MembraneConfig,
    OutputConfig,
    SimulationConfig,
    SphereRegion,
    StimulusConfig,
    TimeConfig,
    TissueConductivity,
)
from .conduction import assemble_diffusion_operator
from .ecg import ECGRecorder, TorsoConfig, electrode_lead_fields, heart_to_torso, reference_of, source_weights
from .errors import ConfigError
from .heart import Heart, HeartConfig, build_heart
from .segments import (
    HeartCoordinates,
    endocardial_point,
    heart_coordinates,
    place_sites,
)
from .simulation import Simulation, SimulationResult
from .sites import ELECTRODE_NAMES, SITE_NAMES
from .typedconfig import from_mapping, to_mapping

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


def calibrated(config: PatientConfig, comm: MPI.Comm) -> PatientConfig:
    """The configuration with conductivities calibrated for its grid and model."""
    cal = calibrate_shared(comm, config.calibration, config.heart.dx_mm, config.time.dt_ms,
                           config.ionic, config.membrane)
    heart = config.heart
    if cal.fast_layer_factor is not None:
        heart = replace(heart, fast_layer_conductivity_factor=cal.fast_layer_factor)
    return replace(config, heart=heart, conductivity=scaled_conductivity(config.conductivity, cal), calibration=None)


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
    """Mid-wall point of an AHA segment: halfway between its endocardial and
    epicardial centre voxels."""
    pos = heart.positions
    endo = heart.surfaces.lv_endo & (coords.lv_segment == segment)
    wall = (coords.lv_segment == segment) & ~heart.surfaces.lv_endo
    if not endo.any():
        raise ConfigError(f"scar: AHA segment {segment} has no endocardial voxels at this resolution")
    endo_point = pos[endo].mean(axis=0)
    endo_point = pos[np.flatnonzero(endo)[np.argmin(((pos[endo] - endo_point) ** 2).sum(1))]]
    outer = heart.surfaces.epi & (coords.lv_segment == segment)
    candidates = outer if outer.any() else wall
    epi_point = pos[np.flatnonzero(candidates)[np.argmin(((pos[candidates] - endo_point) ** 2).sum(1))]]
    return 0.5 * (endo_point + epi_point)


@dataclass
class Sample:
    """The simulation result plus what a training sample needs (rank 0)."""

    result: SimulationResult
    config: PatientConfig
    site_natural: np.ndarray
    site_positions: np.ndarray


#: Hearts built in this process, by anatomy.  A campaign worker runs many
#: samples of one anatomy, and a heart's Laplace coordinates, fibres,
#: segments and sites depend on the anatomy alone (a third of a coarse
#: sample's cost), so they are built once per anatomy and process.
_HEARTS: "OrderedDict[str, tuple[Heart, HeartCoordinates, np.ndarray]]" = OrderedDict()
HEART_CACHE_SIZE = 4


#: HeartConfig fields a patient applies to its copy of the heart (the fast
#: layer's conductivity is calibrated per sample): not part of the anatomy.
_PER_PATIENT_FIELDS = ("fast_layer_mm", "fast_layer_conductivity_factor", "fast_layer_max_height")


def _anatomy_key(config: HeartConfig, comm: MPI.Comm) -> str:
    anatomy = {k: v for k, v in to_mapping(config).items() if k not in _PER_PATIENT_FIELDS}
    stamp = None
    if config.anatomy_file is not None:
        try:
            info = Path(config.anatomy_file).stat()
            stamp = [info.st_size, info.st_mtime_ns]
        except OSError:
            stamp = "missing"  # build_heart reports it
    return json.dumps([anatomy, comm.Get_size(), stamp], sort_keys=True, default=str)


def heart_of(config: HeartConfig, comm: MPI.Comm) -> tuple[Heart, HeartCoordinates, np.ndarray]:
    """The heart, its coordinates and its 75 site voxels, built once per
    anatomy in this process; the heart returned has its own conductivity
    and APD scales, which a patient changes in place."""
    key = _anatomy_key(config, comm)
    if key not in _HEARTS:
        heart = build_heart(config, comm)
        coords = heart_coordinates(heart)
        _HEARTS[key] = (heart, coords, place_sites(heart, coords))
        while len(_HEARTS) > HEART_CACHE_SIZE:
            _HEARTS.popitem(last=False)
    _HEARTS.move_to_end(key)
    heart, coords, sites = _HEARTS[key]
    anatomy = replace(heart.anatomy, conductivity_scale=heart.anatomy.conductivity_scale.copy(), apd_scale=None)
    return replace(heart, anatomy=anatomy), coords, sites


class PatientSimulation:
    """Build the heart and the monodomain problem of one patient."""

    def __init__(self, config: PatientConfig, comm: MPI.Comm = MPI.COMM_WORLD):
        if config.calibration is not None:
            config = calibrated(config, comm)
        self.config = config
        self.comm = comm
        self.heart, self.coords, self.site_natural = heart_of(config.heart, comm)
        apply_scar(self.heart, config, self.coords)
        # The ECG's sources see ordinary myocardium (see solver.ecg): keep
        # the conductivity before the fast layer is raised.
        self.source_conductivity_scale = self.heart.anatomy.conductivity_scale.copy()
        apply_fast_layer(self.heart, config, fast_layer_mask(self.heart, config, self.coords))
        self._apply_apd_gradient()
        positions = self.heart.positions
        probes = {name: tuple(map(float, positions[i])) for name, i in zip(SITE_NAMES, self.site_natural)}
        stimuli = [self._root_stimulus(root) for root in config.active_roots()]
        sim_config = SimulationConfig(
            anatomy=AnatomyConfig(dx_mm=config.heart.dx_mm, built_by="patient"),
            conductivity=config.conductivity,
            time=config.time,
            stimuli=stimuli,
            ionic=config.ionic,
            membrane=config.membrane,
            output=OutputConfig(interval_ms=config.output_interval_ms, probes=probes),
        )
        sim_config.validate()
        self.simulation = Simulation(sim_config, comm, anatomy=self.heart.anatomy)
        self._add_ecg()

    def _apply_apd_gradient(self) -> None:
        heart = self.heart
        scale = np.ones(heart.anatomy.shape)
        scale[tuple(heart.numbering.ijk.T)] = self.config.repolarisation.apd_scale(heart.transmural, heart.apicobasal)
        heart.anatomy.apd_scale = scale

    def _root_stimulus(self, root: RootSite) -> StimulusConfig:
        act = self.config.activation
        voxel = endocardial_point(self.heart, self.coords, root.ventricle, root.height, root.angle_deg, root.septal)
        return StimulusConfig(
            amplitude_uA_per_mm3=act.stimulus_amplitude_uA_per_mm3,
            start_ms=root.onset_ms,
            duration_ms=act.stimulus_duration_ms,
            sphere=SphereRegion(centre_mm=tuple(map(float, self.heart.positions[voxel])), radius_mm=max(root.radius_mm, self.heart.anatomy.dx)),
        )

    def _add_ecg(self) -> None:
        sim, heart, cfg = self.simulation, self.heart, self.config
        to_torso = heart_to_torso(cfg.torso, heart.frame.centre, heart.frame.long_axis, heart.frame.septal_axis)
        h = heart.anatomy.dx
        blood = to_torso(heart.cavity_positions) if cfg.torso.body.blood_pools else None
        z = electrode_lead_fields(cfg.torso, to_torso(heart.positions[sim.owned]), h, self.comm, blood)
        chi_cm = cfg.membrane.surface_to_volume_per_mm * cfg.membrane.capacitance_uF_per_mm2
        sigma_i = cfg.conductivity.intracellular.longitudinal
        ordinary = replace(heart.anatomy, conductivity_scale=self.source_conductivity_scale)
        source = assemble_diffusion_operator(ordinary, sim.numbering, sim.sigma, chi_cm, self.comm)
        weights = source_weights(source.matrix, z, h**3 * chi_cm * sigma_i / sim.sigma.longitudinal)
        source.matrix.destroy()
        sim.observers.append(ECGRecorder(weights, sim.n_samples, reference_of(cfg.torso)))

    def run(self) -> Optional[Sample]:
        result = self.simulation.run()
        if result is None:
            return None
        return Sample(result, self.config, self.site_natural, self.heart.positions[self.site_natural])


def sample_datasets(sample: Sample) -> dict:
    """The training-sample datasets of the sample file (name -> (values, attrs))."""
    r, cfg = sample.result, sample.config
    dt = cfg.output_interval_ms
    act_map = r.activation_ms
    traces = r.probe_vm  # (T, 75) in SITE_NAMES order
    above = traces > r.config.output.activation_threshold_mV
    first_sample = np.where(above.any(axis=0), above.argmax(axis=0) * dt, np.nan)
    out = {
        "vm_sites": (traces.astype(np.float32), {"units": "mV", "dt_ms": dt}),
        "act_sites": (act_map[sample.site_natural].astype(np.float32),
                      {"units": "ms", "description": "interpolated first crossing of 0 mV at each site"}),
        "act_sites_sampled": (first_sample.astype(np.float32),
                              {"units": "ms", "description": "first output sample above 0 mV"}),
        "site_names": (np.array(SITE_NAMES, dtype=object), {}),
        "site_positions": (sample.site_positions, {"units": "mm", "frame": "heart"}),
    }
    for name in ("electrodes", "leads"):
        values, attrs = r.extra[name]
        out[name] = (values, {**attrs, "dt_ms": dt})
    return out


def patient_attributes(config: PatientConfig) -> dict:
    """File attributes of a sample: what it is, for data set building."""
    from .output import YAML_DUMPER

    return {
        "geometry_id": config.geometry_id,
        "condition": config.condition_label(),
        "parameters_json": json.dumps(config.parameters, sort_keys=True),
        "patient_yaml": yaml.dump(to_mapping(config), Dumper=YAML_DUMPER, sort_keys=False),
    }


def load_patient_config(data: dict, where: str = "patient") -> PatientConfig:
    return from_mapping(PatientConfig, data, where)


def write_sample(path, sample: Sample):
    """The sample file: the simulation file plus the training-sample datasets."""
    from .output import write_simulation

    return write_simulation(path, sample.result, sample_datasets(sample), patient_attributes(sample.config))
