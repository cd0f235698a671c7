"""Networks read together: each member of an ensemble reads the ECG as it
was trained to (its own input scaling and statistics), and the ensemble
answers with the members' mean of the outputs they all have.

The one rule for who may join is here, for ``ecgi evaluate --ensemble`` and
``ecgi predict --ensemble`` alike: the members must read the same trace
(number of samples and time step).  Scaling may differ, so that a
range-scaled network and the standardised ``ridge_act`` can be averaged.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from solver.common.errors import ConfigError

from .checkpoint import load_checkpoint, model_from_checkpoint
from .data import scale_leads
from .network import EcgiNet


@dataclass
class Member:
    """One checkpoint's network and how it reads an ECG."""

    path: str
    model: EcgiNet
    inputs: dict[str, Any]  #: model.checkpoint.CheckpointInputs, as a mapping

    def network_input(self, ecg_mv: np.ndarray) -> torch.Tensor:
        """ECGs (N, 12, T) in mV -> this network's input, scaled as in its training."""
        inputs = self.inputs
        return torch.from_numpy(np.ascontiguousarray(scale_leads(
            np.asarray(ecg_mv, dtype=np.float32), inputs["scaling"],
            np.asarray(inputs["ecg_mean"]), np.asarray(inputs["ecg_std"]))))

    def reads_like(self, other: Member) -> bool:
        return (self.inputs["samples"], self.inputs["dt_ms"]) == (other.inputs["samples"], other.inputs["dt_ms"])


def load_member(path: str | Path) -> Member:
    state = load_checkpoint(path)
    return Member(str(path), model_from_checkpoint(state, path), state["inputs"])


def load_members(paths: Sequence[str | Path]) -> list[Member]:
    """The checkpoints' networks; refused unless all read the same trace."""
    members = [load_member(path) for path in paths]
    first = members[0]
    for member in members[1:]:
        if not member.reads_like(first):
            raise ConfigError(
                f"{member.path}: reads traces of {member.inputs['samples']} samples x {member.inputs['dt_ms']} ms, "
                f"{first.path} reads {first.inputs['samples']} x {first.inputs['dt_ms']} ms; an ensemble's members "
                "must read the same trace (each may scale it its own way)")
    return members


class Ensemble(torch.nn.Module):
    """Members' mean of the physical outputs they all have: activation
    times, and the traces when every member draws them (one member: the
    network itself)."""

    def __init__(self, members: list[Member]) -> None:
        super().__init__()
        self.members = members
        self.networks = torch.nn.ModuleList(member.model for member in members)
        # every network gives activation times in physical units (a voltage-only one from its traces' crossings)
        self.outputs = ("act", "vm") if all("vm" in m.model.outputs for m in members) else ("act",)
        names = [m.model.architecture for m in members]
        self.architecture = names[0] if len(names) == 1 else f"ensemble of {len(names)} ({', '.join(names)})"
        self.eval()

    def member_outputs(self, ecg_mv: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        """Each member's physical outputs for ECGs (N, 12, T) in mV."""
        device = next(self.parameters()).device
        raw = ecg_mv.detach().cpu().numpy()
        return [m.model.to_physical(m.model(m.network_input(raw).to(device))) for m in self.members]

    def forward(self, ecg_mv: torch.Tensor) -> dict[str, torch.Tensor]:
        outputs = self.member_outputs(ecg_mv)
        return {k: torch.stack([o[k] for o in outputs]).mean(dim=0) for k in self.outputs}
