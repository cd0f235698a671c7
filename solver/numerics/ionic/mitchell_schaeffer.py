"""Mitchell–Schaeffer (2003) two-variable model, mapped to millivolts.

The model works on a normalised voltage v in [0, 1]:

    dv/dt = h v^2 (1 - v) / tau_in  -  v / tau_out  +  J_stim
    dh/dt = (1 - h) / tau_open   if v < v_gate
            -h / tau_close       otherwise

Vm = v_rest + (v_peak - v_rest) v.  Stimulus currents arrive in mV/ms and are
divided by the voltage range.  The gate h is advanced exactly (Rush–Larsen),
since its right-hand side is linear in h.  Cheap: the model for ensembles.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Mapping, Optional

import numba
import numpy as np

from .base import IonicModel


@numba.njit(cache=True, fastmath=True, nogil=True)
def _ms_step(vm, states, i_stim, dt, params, close_factor):
    tau_in, tau_out, tau_open, tau_close, v_gate, v_rest, v_peak = params[:7]
    span = v_peak - v_rest
    inv_span = 1.0 / span
    open_factor = np.exp(-dt / tau_open)
    for i in range(vm.shape[0]):
        v = (vm[i] - v_rest) * inv_span
        h = states[i, 0]
        dv = h * v * v * (1.0 - v) / tau_in - v / tau_out + i_stim[i] * inv_span
        if v < v_gate:
            h = 1.0 - (1.0 - h) * open_factor
        else:
            h = h * close_factor[i]
        states[i, 0] = h
        vm[i] = v_rest + span * (v + dt * dv)


@dataclass
class MitchellSchaeffer(IonicModel):
    name: ClassVar[str] = "mitchell_schaeffer"
    state_names: ClassVar[tuple[str, ...]] = ("h",)
    default_parameters: ClassVar[Mapping[str, float]] = {
        "tau_in": 0.3,  # ms
        "tau_out": 6.0,  # ms
        "tau_open": 120.0,  # ms
        "tau_close": 150.0,  # ms
        "v_gate": 0.13,  # normalised
        "v_rest": -85.0,  # mV
        "v_peak": 15.0,  # mV
    }
    repolarisation_parameters: ClassVar[frozenset[str]] = frozenset({"tau_close"})

    #: Per-cell multiplier of tau_close, which sets the APD (APD ~ tau_close
    #: log(1 / h_threshold)); None: uniform.
    _apd_scale: Optional[np.ndarray] = None
    _close_factor: Optional[np.ndarray] = None
    _close_factor_dt: float = -1.0

    def set_apd_scale(self, scale: np.ndarray) -> None:
        self._apd_scale = np.ascontiguousarray(scale, dtype=np.float64)
        self._close_factor_dt = -1.0

    def initial_state(self, cell_type: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n = len(cell_type)
        p = self.parameter_vector()
        return np.full(n, p[5]), np.ones((n, 1))

    def _gate_closing(self, n: int, dt: float) -> np.ndarray:
        """exp(-dt / tau_close) per cell, computed once per time step size."""
        if self._close_factor_dt != dt or self._close_factor is None or len(self._close_factor) != n:
            scale = self._apd_scale if self._apd_scale is not None else np.ones(n)
            self._close_factor = np.exp(-dt / (self.parameter_vector()[3] * scale))
            self._close_factor_dt = dt
        return self._close_factor

    def step(self, vm, states, i_stim, dt, cell_type) -> None:
        dt = float(dt)
        _ms_step(vm, states, i_stim, dt, self.parameter_vector(), self._gate_closing(len(vm), dt))
