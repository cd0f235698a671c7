"""The interface every ionic model implements.

A model advances the membrane of many independent cells by one time step.
The transmembrane voltage lives in its own contiguous vector (it is the
array behind the PETSc vector the diffusion step works on, so no copies are
needed); the other state variables of a model live in an (n_cells, n_states)
array, one row per cell, so that a per-cell kernel touches one cache line.

Units: time in ms, voltage in mV, currents in uA/uF (= pA/pF = mV/ms),
positive outward, as in the published models.  An applied stimulus current
``i_stim`` is positive when it depolarises the cell.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import ClassVar, Mapping

import numpy as np

#: Cell-type codes stored per voxel (transmural heterogeneity).
ENDO, MID, EPI = 0, 1, 2
CELL_TYPE_NAMES = {ENDO: "endo", MID: "mid", EPI: "epi"}
CELL_TYPE_CODES = {name: code for code, name in CELL_TYPE_NAMES.items()}


@dataclass
class IonicModel(ABC):
    """A membrane model behind the common step interface.

    ``parameters`` overrides named defaults of the model (e.g. ``g_Kr_scale``);
    unknown names are refused at construction so that a typo in a
    configuration never silently runs the default model.
    """

    parameters: Mapping[str, float] = field(default_factory=dict)

    name: ClassVar[str]
    #: Names of the state variables other than Vm, in column order.
    state_names: ClassVar[tuple[str, ...]]
    #: Default parameter values; ``parameters`` may override any of them.
    default_parameters: ClassVar[Mapping[str, float]]
    #: Parameters that act on repolarisation, after the upstroke: they move
    #: the speed of a wave into resting tissue by less than half a percent
    #: (tests/test_calibration.py), so conduction-velocity calibration ignores them.
    repolarisation_parameters: ClassVar[frozenset[str]] = frozenset()

    def __post_init__(self) -> None:
        unknown = sorted(set(self.parameters) - set(self.default_parameters))
        if unknown:
            known = ", ".join(sorted(self.default_parameters))
            raise ValueError(
                f"ionic model {self.name!r} has no parameter(s) {', '.join(unknown)}; "
                f"known parameters: {known}"
            )
        values = {**self.default_parameters, **self.parameters}
        self._vector = np.array([float(values[k]) for k in self.default_parameters])

    def parameter_vector(self) -> np.ndarray:
        """Parameters in declaration order, as the float64 array the kernel takes."""
        return self._vector

    def set_apd_scale(self, scale: np.ndarray) -> None:
        """Per-cell multiplier of the action potential duration.

        Models whose heterogeneity comes from discrete cell types (TT06 endo,
        mid, epi) have no continuous APD parameter and accept only 1."""
        if not np.allclose(scale, 1.0):
            raise ValueError(f"ionic model {self.name!r} has no continuous APD gradient; "
                             "its heterogeneity comes from the cell types")

    @property
    def n_states(self) -> int:
        return len(self.state_names)

    @abstractmethod
    def initial_state(self, cell_type: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Resting Vm (n,) and states (n, n_states) for cells of the given types."""

    @abstractmethod
    def step(
        self,
        vm: np.ndarray,
        states: np.ndarray,
        i_stim: np.ndarray,
        dt: float,
        cell_type: np.ndarray,
    ) -> None:
        """Advance ``vm`` and ``states`` in place by ``dt`` ms (forward Euler for
        Vm and the non-gating variables, Rush–Larsen for the gates)."""
