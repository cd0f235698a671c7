"""One synthetic patient's simulation: parameter set in, training sample out.

``PatientSimulation`` takes the heart of its anatomy (built once per
process), applies the patient's tissue (scar, fast layer, APD gradients),
turns it into a monodomain simulation with the 75 sites as probes and the
ECG recorder as an observer, runs it and returns the sample.
"""
from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional

import numpy as np
from mpi4py import MPI

from ..common.sites import SITE_NAMES
from ..common.typedconfig import to_mapping
from ..numerics.conduction import assemble_diffusion_operator
from ..numerics.config import AnatomyConfig, OutputConfig, SimulationConfig, SphereRegion, StimulusConfig
from ..numerics.simulation import Simulation, SimulationResult
from .calibration import calibrate_shared, scaled_conductivity
from .config import PatientConfig, RootSite
from .ecg import ECGRecorder, electrode_lead_fields, heart_to_torso, reference_of, source_weights
from .heart import Heart, HeartConfig, build_heart, check_heart_memory
from .footprint import Footprint
from .segments import HeartCoordinates, endocardial_point, heart_coordinates
from .sites import FootprintRecorder, place_sites, read_activation, read_traces
from .tissue import apply_fast_layer, apply_scar, fast_layer_mask


def calibrated(config: PatientConfig, comm: MPI.Comm) -> PatientConfig:
    """The configuration with conductivities calibrated for its grid and model."""
    cal = calibrate_shared(comm, config.calibration, config.heart.dx_mm, config.time.dt_ms,
                           config.ionic, config.membrane)
    heart = config.heart
    if cal.fast_layer_factor is not None:
        heart = replace(heart, fast_layer_conductivity_factor=cal.fast_layer_factor)
    return replace(config, heart=heart, conductivity=scaled_conductivity(config.conductivity, cal), calibration=None)


@dataclass
class PatientSample:
    """The simulation result plus what a training sample needs (rank 0)."""

    result: SimulationResult
    config: PatientConfig
    site_vm: np.ndarray  #: (T, 75) mV, read over each site's footprint
    site_activation_ms: np.ndarray  #: (75,)
    site_positions: np.ndarray  #: (75, 3) mm


#: Hearts built in this process, by anatomy.  A campaign worker runs many
#: samples of one anatomy, and a heart's Laplace coordinates, fibres,
#: segments and sites depend on the anatomy alone (a third of a coarse
#: sample's cost), so they are built once per anatomy and process.
_HEARTS: "OrderedDict[str, tuple[Heart, HeartCoordinates, list[Footprint]]]" = OrderedDict()
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


def heart_of(config: HeartConfig, comm: MPI.Comm) -> tuple[Heart, HeartCoordinates, list[Footprint]]:
    """The heart, its coordinates and its 75 sites, built once per
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
        if config.heart.anatomy_file is None:
            check_heart_memory(config.heart)  # before calibration's cables on the same grid
        if config.calibration is not None:
            config = calibrated(config, comm)
        self.config = config
        self.comm = comm
        self.heart, self.coords, self.sites = heart_of(config.heart, comm)
        apply_scar(self.heart, config, self.coords)
        # The ECG's sources see ordinary myocardium (see solver.patient.ecg): keep
        # the conductivity before the fast layer is raised.
        self.source_conductivity_scale = self.heart.anatomy.conductivity_scale.copy()
        apply_fast_layer(self.heart, config, fast_layer_mask(self.heart, config, self.coords))
        self._apply_apd_gradient()
        # The simulation file's probes: each site's nearest voxel.
        positions = self.heart.positions
        probes = {name: tuple(map(float, positions[site.heaviest])) for name, site in zip(SITE_NAMES, self.sites)}
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
        self.site_recorder = FootprintRecorder(self.sites, self.simulation.owned, self.simulation.n_samples)
        self.simulation.observers.append(self.site_recorder)

    def _apply_apd_gradient(self) -> None:
        heart = self.heart
        scale = np.ones(heart.anatomy.shape)
        scale[tuple(heart.numbering.ijk.T)] = self.config.repolarisation.apd_scale(heart.transmural, heart.apicobasal)
        heart.anatomy.apd_scale = scale

    def _root_stimulus(self, root: RootSite) -> StimulusConfig:
        """A root excites a patch of endocardium outward from its centre, a
        point of the surface (not a voxel), at the speed of the Purkinje
        network's spread; see StimulusConfig.spread_m_per_s."""
        act, positions, dx = self.config.activation, self.heart.positions, self.heart.anatomy.dx
        footprint = endocardial_point(self.heart, self.coords, root.ventricle, root.height, root.angle_deg, root.septal)
        centre = footprint.point(positions)
        # On a curved stretch of endocardium the footprint's point can lie
        # farther than the patch's radius from its voxels: the patch always
        # reaches the heaviest.
        reach = float(np.linalg.norm(positions[footprint.heaviest] - centre)) + 0.01 * dx
        return StimulusConfig(
            amplitude_uA_per_mm3=act.stimulus_amplitude_uA_per_mm3,
            start_ms=root.onset_ms,
            duration_ms=act.stimulus_duration_ms,
            sphere=SphereRegion(centre_mm=tuple(map(float, centre)), radius_mm=max(root.radius_mm, dx, reach)),
            spread_m_per_s=act.root_spread_m_per_s,
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

    def destroy(self) -> None:
        """Free the simulation's PETSc objects (see Simulation.destroy)."""
        self.simulation.destroy()

    def __enter__(self) -> "PatientSimulation":
        return self

    def __exit__(self, *exc) -> None:
        self.destroy()

    def run(self) -> Optional[PatientSample]:
        result = self.simulation.run()
        if result is None:
            return None
        recorder = self.site_recorder
        act = read_activation(self.sites, result.activation_ms)
        vm = read_traces(self.sites, recorder.voxels, recorder.vm, self.config.output_interval_ms,
                         result.activation_ms, act)
        positions = np.array([site.point(self.heart.positions) for site in self.sites])
        return PatientSample(result, self.config, vm, act, positions)
