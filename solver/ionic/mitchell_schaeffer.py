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
from typing import ClassVar, Mapping

import numba
import numpy as np

from .base import IonicModel


@numba.njit(cache=True, fastmath=True, nogil=True)
def _ms_step(vm, states, i_stim, dt, params):
    tau_in, tau_out, tau_open, tau_close, v_gate, v_rest, v_peak = params[:7]
    span = v_peak - v_rest
    inv_span = 1.0 / span
    open_factor = np.exp(-dt / tau_open)
    close_factor = np.exp(-dt / tau_close)
    for i in range(vm.shape[0]):
        v = (vm[i] - v_rest) * inv_span
        h = states[i, 0]
        dv = h * v * v * (1.0 - v) / tau_in - v / tau_out + i_stim[i] * inv_span
        if v < v_gate:
            h = 1.0 - (1.0 - h) * open_factor
        else:
            h = h * close_factor
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

    def initial_state(self, cell_type: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n = len(cell_type)
        p = self.parameter_vector()
        return np.full(n, p[5]), np.ones((n, 1))

    def step(self, vm, states, i_stim, dt, cell_type) -> None:
        _ms_step(vm, states, i_stim, float(dt), self.parameter_vector())
