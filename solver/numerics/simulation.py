"""One monodomain simulation: set-up, validation and the time loop.

    chi (Cm dV/dt + I_ion) = div(sigma grad V) + I_stim

Godunov operator splitting per step of dt: the membrane models advance V and
their states (stimulus included), then diffusion advances V.  Everything
that can be wrong with a configuration is checked in ``__init__``, before
the first step.
"""
from __future__ import annotations

import socket
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Optional, Protocol

import numpy as np
from mpi4py import MPI
from petsc4py import PETSc

from .anatomy import VoxelAnatomy, build_anatomy
from .conduction import assemble_diffusion_operator
from .config import SimulationConfig
from ..common.errors import ConfigError, SolverError
from .ionic import create_model
from .partition import number_tissue
from .recording import ActivationTimes, ProbeTraces, gather_natural
from .stimulus import StimulusSchedule
from .timestepping import make_diffusion_stepper


class StepObserver(Protocol):
    """Extra measurements taken at every output sample (e.g. the ECG)."""

    def record(self, sample: int, vm: np.ndarray) -> None: ...


@dataclass
class SimulationResult:
    """Everything a simulation produced, in natural voxel order (rank 0)."""

    config: SimulationConfig
    dx_mm: float
    origin_mm: np.ndarray
    grid_shape: tuple[int, int, int]
    tissue_ijk: np.ndarray  #: (n, 3)
    activation_ms: np.ndarray  #: (n,), NaN where never activated
    time_ms: np.ndarray  #: (T,) output sample times
    probe_names: list[str]
    probe_ijk: np.ndarray  #: (P, 3) voxel each probe records
    probe_vm: np.ndarray  #: (T, P) mV
    snapshot_time_ms: np.ndarray  #: (S,)
    snapshot_vm: Optional[np.ndarray]  #: (S, n) mV or None
    provenance: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)  #: datasets added by observers


@dataclass
class _TimeLoop:
    """What the time loop records on this rank, and how long its parts took."""

    activation: ActivationTimes
    probes: ProbeTraces
    snapshots: list = field(default_factory=list)
    snapshot_times: list = field(default_factory=list)
    samples_done: int = 0  #: output samples recorded
    steps_done: int = 0
    wall_s: float = 0.0
    ionic_s: float = 0.0
    diffusion_s: float = 0.0


def stable_sample_count(duration: float, interval: float) -> int:
    return max(1, int(round(duration / interval)))


class Simulation:
    def __init__(
        self,
        config: SimulationConfig,
        comm: MPI.Comm = MPI.COMM_WORLD,
        anatomy: Optional[VoxelAnatomy] = None,
    ):
        self.config = config
        self.comm = comm
        rank, size = comm.Get_rank(), comm.Get_size()
        self.anatomy = anatomy if anatomy is not None else build_anatomy(config.anatomy)
        try:
            self.numbering = number_tissue(self.anatomy.tissue, size)
        except ValueError as exc:
            raise ConfigError(f"anatomy: {exc}; run on fewer ranks") from None
        self.owned = self.numbering.owned_natural(rank)
        owned_ijk = self.numbering.ijk[self.owned]
        self.cell_type = self.anatomy.cell_type[tuple(owned_ijk.T)].astype(np.int8)

        self.model = create_model(config.ionic.model, config.ionic.parameters, **config.ionic.options())
        if self.anatomy.apd_scale is not None:
            self.model.set_apd_scale(self.anatomy.apd_scale[tuple(owned_ijk.T)])
        chi_cm = config.membrane.surface_to_volume_per_mm * config.membrane.capacitance_uF_per_mm2
        self.sigma = config.conductivity.monodomain()
        self.operator = assemble_diffusion_operator(self.anatomy, self.numbering, self.sigma, chi_cm, comm)
        dt = config.time.dt_ms
        self.diffusion = make_diffusion_stepper(
            self.operator, config.time.diffusion, dt, config.time.linear_solver_rtol
        )
        self.stimuli = StimulusSchedule.build(
            config.stimuli, self.anatomy, self.numbering.ijk, self.owned, dt, chi_cm
        )
        out = config.output
        self.output_every = int(round(out.interval_ms / dt))
        self.n_samples = stable_sample_count(config.time.duration_ms, out.interval_ms)
        self.probe_names = list(out.probes)
        self.probe_ijk = np.array(
            [self._probe_voxel(name, p) for name, p in out.probes.items()], dtype=np.int64
        ).reshape(-1, 3)
        self.snapshot_every = (
            int(round(out.snapshot_interval_ms / dt)) if out.snapshot_interval_ms is not None else 0
        )
        self.observers: list[StepObserver] = []
        self._observer_s = 0.0
        self.progress: Optional[Callable[[str], None]] = None

    def _probe_voxel(self, name: str, point) -> np.ndarray:
        ijk = self.anatomy.nearest_tissue_voxel(point)
        distance = np.linalg.norm(self.anatomy.position(ijk) - np.asarray(point))
        if distance > 2 * self.anatomy.dx:
            raise ConfigError(
                f"output.probes.{name}: point {list(point)} mm is {distance:.3g} mm from the nearest "
                f"tissue voxel; put probes inside the tissue"
            )
        return ijk

    @property
    def n_local(self) -> int:
        return len(self.owned)

    def destroy(self) -> None:
        """Free this simulation's PETSc objects (operator, stepper).

        petsc4py frees a PETSc object only when it is destroyed, not when its
        Python object goes: a process that runs many simulations (a campaign
        worker) must destroy each one, or it grows by about a megabyte and
        slows down with every sample."""
        self.diffusion.destroy()
        self.operator.matrix.destroy()

    def __enter__(self) -> "Simulation":
        return self

    def __exit__(self, *exc) -> None:
        self.destroy()

    def run(self) -> Optional[SimulationResult]:
        """Integrate to the configured duration; rank 0 gets the result."""
        cfg, comm = self.config, self.comm
        n_global = self.numbering.n
        vm, states = self.model.initial_state(self.cell_type)
        vm = np.ascontiguousarray(vm, dtype=np.float64)
        v = PETSc.Vec().createWithArray(vm, size=(self.n_local, n_global), comm=comm)
        try:
            loop = self._integrate(vm, states, v)
        finally:
            v.destroy()  # the Vec wrapping vm (vm itself is numpy's), also when the run fails
        act = gather_natural(loop.activation.times, self.owned, n_global, comm)
        probe_vm = loop.probes.gather(comm, loop.samples_done)
        extra = {}
        for observer in self.observers:
            gathered = getattr(observer, "gather", None)
            if gathered is not None:
                extra.update(gathered(comm, loop.samples_done))
        if comm.Get_rank() != 0:
            return None
        return SimulationResult(
            config=cfg,
            dx_mm=self.anatomy.dx,
            origin_mm=self.anatomy.origin,
            grid_shape=self.anatomy.shape,
            tissue_ijk=self.numbering.ijk,
            activation_ms=act,
            time_ms=np.arange(loop.samples_done) * cfg.output.interval_ms,
            probe_names=self.probe_names,
            probe_ijk=self.probe_ijk,
            probe_vm=probe_vm,
            snapshot_time_ms=np.array(loop.snapshot_times),
            snapshot_vm=np.array(loop.snapshots) if loop.snapshots else None,
            provenance=self._provenance(loop.wall_s, loop.steps_done, loop.ionic_s, loop.diffusion_s),
            extra=extra,
        )

    def _integrate(self, vm: np.ndarray, states, v: PETSc.Vec) -> _TimeLoop:
        """The time loop: operator splitting, ionic step then diffusion step, recording
        every output interval; stops early once every site has activated if asked to."""
        cfg, comm = self.config, self.comm
        dt = cfg.time.dt_ms
        n_steps = int(round(cfg.time.duration_ms / dt))
        v_before = np.empty_like(vm)
        probe_natural = np.ravel_multi_index(self.probe_ijk.T, self.anatomy.shape) if len(self.probe_ijk) else np.zeros(0, np.int64)
        tissue_flat = np.ravel_multi_index(self.numbering.ijk.T, self.anatomy.shape)
        loop = _TimeLoop(ActivationTimes(self.n_local, cfg.output.activation_threshold_mV),
                         ProbeTraces(np.searchsorted(tissue_flat, probe_natural), self.owned, self.n_samples))

        start = time.perf_counter()
        last_report = start
        self._record(0, vm, loop.probes)
        loop.samples_done = 1
        if self.snapshot_every:
            self._snapshot(0.0, vm, loop.snapshots, loop.snapshot_times)

        clock = time.perf_counter
        step = 0
        for step in range(n_steps):
            t = step * dt
            if not loop.activation.all_activated:
                np.copyto(v_before, vm)
            t0 = clock()
            self.model.step(vm, states, self.stimuli.current(step), dt, self.cell_type)
            t1 = clock()
            self.diffusion.step(v)
            t2 = clock()
            loop.ionic_s += t1 - t0
            loop.diffusion_s += t2 - t1
            loop.activation.update(v_before, vm, t, dt)
            done = step + 1
            if done % self.output_every == 0:
                self._check_finite(vm, done * dt)
                if loop.samples_done < self.n_samples:
                    self._record(loop.samples_done, vm, loop.probes)
                    loop.samples_done += 1
                if self.snapshot_every and done % self.snapshot_every == 0:
                    self._snapshot(done * dt, vm, loop.snapshots, loop.snapshot_times)
                if cfg.time.stop_when_activated and loop.activation.n_inactive(comm) == 0:
                    break
                now = time.perf_counter()
                if self.progress is not None and now - last_report > 2.0:
                    last_report = now
                    self._report(done * dt, now - start, done)
        loop.wall_s = time.perf_counter() - start
        loop.steps_done = step + 1
        if self.progress is not None:
            self._report(loop.steps_done * dt, loop.wall_s, loop.steps_done)
        return loop

    def _record(self, sample: int, vm, probes: ProbeTraces) -> None:
        probes.record(sample, vm)
        start = time.perf_counter()
        for observer in self.observers:
            observer.record(sample, vm)
        self._observer_s += time.perf_counter() - start

    def _snapshot(self, t: float, vm, snapshots: list, times: list) -> None:
        field_ = gather_natural(vm.astype(np.float32), self.owned, self.numbering.n, self.comm)
        if field_ is not None:
            snapshots.append(field_)
            times.append(t)

    def _check_finite(self, vm: np.ndarray, t: float) -> None:
        """Stop on NaN or runaway voltage, naming the time and the place."""
        limit = self.config.output.runaway_limit_mV
        bad = ~(np.abs(vm) <= limit)  # also true for NaN
        first_bad = int(self.owned[np.argmax(bad)]) if bad.any() else self.numbering.n
        first_bad = self.comm.allreduce(first_bad, op=MPI.MIN)
        if first_bad == self.numbering.n:
            return
        value = vm[np.flatnonzero(self.owned == first_bad)] if first_bad in self.owned else np.zeros(0)
        value = self.comm.allreduce(float(value[0]) if len(value) else -np.inf, op=MPI.MAX)
        ijk = self.numbering.ijk[first_bad]
        pos = np.round(self.anatomy.position(ijk), 3).tolist()
        raise SolverError(
            f"numerical blow-up at t = {t:g} ms: Vm = {value:g} mV at voxel {ijk.tolist()} "
            f"(position {pos} mm), beyond the runaway limit of {limit:g} mV; reduce time.dt_ms "
            f"or check the conductivities and stimulus amplitude"
        )

    def _report(self, t: float, wall: float, steps: int) -> None:
        rate = self.numbering.n * steps / max(wall, 1e-9)
        if self.comm.Get_rank() == 0 and self.progress is not None:
            self.progress(
                f"t = {t:8.2f} / {self.config.time.duration_ms:g} ms | wall {wall:7.1f} s | "
                f"{rate:.3g} node-steps/s"
            )

    def _provenance(self, wall: float, steps: int, ionic_s: float, diffusion_s: float) -> dict:
        from .. import __version__

        return {
            "ecgi_version": __version__,
            "python": sys.version.split()[0],
            "numpy": np.__version__,
            "petsc": ".".join(map(str, PETSc.Sys.getVersion())),
            "mpi": MPI.Get_library_version().splitlines()[0].strip(" \x00"),
            "ranks": self.comm.Get_size(),
            "host": socket.gethostname(),
            "wall_time_s": wall,
            "ionic_time_s": ionic_s,  # rank 0's share of the wall time
            "diffusion_time_s": diffusion_s,
            "observer_time_s": self._observer_s,  # e.g. the ECG
            "steps": steps,
            "tissue_voxels": self.numbering.n,
            "node_steps_per_s": self.numbering.n * steps / max(wall, 1e-9),
            "diffusion_scheme": type(self.diffusion).__name__,
        }
