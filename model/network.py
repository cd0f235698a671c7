"""The networks: a 1-D SqueezeNet (v1.1 layout) over the 12-lead ECG.

Read top to bottom: the Fire module, the trunk, the two heads, then the
assembled networks and ``build_network``, which picks one by name.

* ``reference_act`` -- the published activation-time network: strided trunk,
  activation head, 75 times.
* ``reference_vm`` -- the published voltage network: the same trunk with every
  stride 1, so the length stays T, and a 1x1 convolution to 75 traces.
* ``multitask`` -- one stride-1 trunk shared by both heads.
* ``consistent`` -- the stride-1 trunk and voltage head; each activation time
  is the soft-argmax over time of the predicted trace's derivative, so the
  times are those of the predicted upstrokes rather than a separate guess.
* ``resnet_act`` -- not published: a residual 1-D CNN with dilated
  convolutions and batch normalisation (about the reference's size), and an
  activation head that keeps 16 positions in time; compared with
  ``reference_act`` in docs/research/performance-log.md.
* ``positional_act`` -- not published: the reference trunk with the
  positional activation head of ``resnet_act`` instead of the published
  head, whose average over three positions discards when things happen in
  the beat (docs/research/performance-log.md compares them).
* ``ridge_act`` -- the ridge baseline as a network: the ECG averaged to 250
  positions in time (2 ms at 500 samples), flattened, and one linear map to
  the 75 times, fitted in closed form (``ecgi train`` solves the ridge
  regression of ``model.baselines`` for it instead of running epochs).  Its
  errors are only half correlated with a convolutional network's, so as a
  member of an ensemble (``--ensemble``) it averages away more than another
  network does (docs/research/performance-log.md).
* ``template_vm`` -- not published: the strided trunk with two positional
  heads, each site's activation time and action-potential duration (APD90); the traces
  are each site's mean training action potential stretched to that APD and
  placed at that time (``ActionPotentialRenderer``).  The upstroke of every
  trace is where the activation head puts it and its duration is the APD
  head's, so neither has to be recovered from 500 free samples per trace.

Every network maps a normalised ECG (B, 12, T) to a dict of normalised
outputs, ``act`` (B, 75) and/or ``vm`` (B, 75, T), and ``apd`` (B, 75) for
``template_vm``.  The target normalisation (per-site activation mean and
spread from the data set's manifest, the fixed voltage scaling, the APD
statistics and action-potential template of ``template_vm``) is kept in
buffers, so a state dict alone turns outputs back into milliseconds and
millivolts.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from solver.common.traces import threshold_crossing_ms

N_LEADS = 12
N_SITES = 75
#: Vm is scaled as (Vm - VM_OFFSET_MV) / VM_SCALE_MV, mapping rest..peak to about 0..1.
VM_OFFSET_MV = -85.5
VM_SCALE_MV = 135.5
#: What each network predicts.
OUTPUTS = {
    "reference_act": ("act",),
    "reference_vm": ("vm",),
    "multitask": ("act", "vm"),
    "consistent": ("act", "vm"),
    "resnet_act": ("act",),
    "positional_act": ("act",),
    "ridge_act": ("act",),
    "template_vm": ("act", "apd", "vm"),
}
ARCHITECTURES = tuple(OUTPUTS)


class Fire(nn.Module):
    """Squeeze to few channels with a 1x1 convolution, then expand with 1x1 and 3x3."""

    def __init__(self, inplanes: int, squeeze_planes: int, expand1x1_planes: int, expand3x3_planes: int) -> None:
        super().__init__()
        self.squeeze = nn.Conv1d(inplanes, squeeze_planes, kernel_size=1)
        self.squeeze_activation = nn.ReLU(inplace=True)
        self.expand1x1 = nn.Conv1d(squeeze_planes, expand1x1_planes, kernel_size=1)
        self.expand1x1_activation = nn.ReLU(inplace=True)
        self.expand3x3 = nn.Conv1d(squeeze_planes, expand3x3_planes, kernel_size=3, padding=1)
        self.expand3x3_activation = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.squeeze_activation(self.squeeze(x))
        return torch.cat(
            [self.expand1x1_activation(self.expand1x1(x)), self.expand3x3_activation(self.expand3x3(x))], 1
        )


SQUEEZENET_CHANNELS = 512


def squeezenet_trunk(stride: int) -> nn.Sequential:
    """SqueezeNet 1.1 features in 1-D; ``stride`` 2 downsamples about 16x, 1 keeps the length."""

    def pool() -> nn.MaxPool1d:
        return nn.MaxPool1d(kernel_size=3, stride=stride, padding=1, ceil_mode=True)

    return nn.Sequential(
        nn.Conv1d(N_LEADS, 64, kernel_size=3, stride=stride, padding=1),
        nn.ReLU(inplace=True),
        pool(),
        Fire(64, 16, 64, 64),
        Fire(128, 16, 64, 64),
        pool(),
        Fire(128, 32, 128, 128),
        Fire(256, 32, 128, 128),
        pool(),
        Fire(256, 48, 192, 192),
        Fire(384, 48, 192, 192),
        Fire(384, 64, 256, 256),
        Fire(SQUEEZENET_CHANNELS, 64, 256, 256),
    )


class ResidualBlock(nn.Module):
    """Two dilated 3-tap convolutions with batch norm, added to the input (projected when the shape changes)."""

    def __init__(self, inplanes: int, planes: int, dilation: int, stride: int = 1) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv1d(inplanes, planes, 3, stride=stride, padding=dilation, dilation=dilation, bias=False),
            nn.BatchNorm1d(planes),
            nn.ReLU(inplace=True),
            nn.Conv1d(planes, planes, 3, padding=dilation, dilation=dilation, bias=False),
            nn.BatchNorm1d(planes),
        )
        self.skip: nn.Module = nn.Identity()
        if inplanes != planes or stride != 1:
            self.skip = nn.Sequential(nn.Conv1d(inplanes, planes, 1, stride=stride, bias=False), nn.BatchNorm1d(planes))
        self.activation = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activation(self.body(x) + self.skip(x))


RESIDUAL_CHANNELS = 128


def residual_trunk() -> nn.Sequential:
    """Stem (stride 2) and residual blocks; dilations up to 16 see the whole beat; length 500 -> 63."""
    return nn.Sequential(
        nn.Conv1d(N_LEADS, 32, kernel_size=7, stride=2, padding=3, bias=False),
        nn.BatchNorm1d(32),
        nn.ReLU(inplace=True),
        ResidualBlock(32, 32, 1),
        ResidualBlock(32, 32, 2),
        ResidualBlock(32, 64, 1, stride=2),
        ResidualBlock(64, 64, 4),
        ResidualBlock(64, RESIDUAL_CHANNELS, 1, stride=2),
        ResidualBlock(RESIDUAL_CHANNELS, RESIDUAL_CHANNELS, 8),
        ResidualBlock(RESIDUAL_CHANNELS, RESIDUAL_CHANNELS, 16),
    )


class PositionalHead(nn.Module):
    """Features pooled to 16 positions in time (when things happen matters), then one linear map to 75 times."""

    POSITIONS = 16

    def __init__(self, channels: int, dropout: float) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.AdaptiveAvgPool1d(self.POSITIONS), nn.Flatten(1), nn.Dropout(p=dropout),
            nn.Linear(channels * self.POSITIONS, N_SITES),
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.layers(features)


class LinearMap(nn.Module):
    """The ECG averaged to 250 positions in time, flattened, one linear map to 75 times (``ridge_act``)."""

    POSITIONS = 250

    def __init__(self) -> None:
        super().__init__()
        self.flatten = nn.Sequential(nn.AdaptiveAvgPool1d(self.POSITIONS), nn.Flatten(1))
        self.linear = nn.Linear(N_LEADS * self.POSITIONS, N_SITES)

    def forward(self, ecg: torch.Tensor) -> torch.Tensor:
        return self.linear(self.flatten(ecg))


class ActivationHead(nn.Module):
    """512 feature channels of any length >= 3 -> 75 activation times."""

    def __init__(self, dropout: float) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Dropout(p=dropout),
            nn.Conv1d(512, N_SITES, kernel_size=3, stride=2),
            nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool1d(3),
            nn.Conv1d(N_SITES, N_SITES, kernel_size=3, stride=2),
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.layers(features), 1)


class VoltageHead(nn.Module):
    """512 feature channels of length T -> 75 traces of length T."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(512, N_SITES, kernel_size=1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.conv(features)


class ActionPotentialRenderer(nn.Module):
    """Traces from activation times and APDs: each site's template action
    potential stretched in time to the APD and placed at the activation time.

    ``template`` (75, 2L) is each site's mean training trace aligned at its
    activation (sample L is the activation sample; ``model.baselines``),
    normalised like the voltage targets, and ``template_apd_ms`` its APD90.
    After activation a trace follows the template at (t - act) x
    template_apd / apd, so its upstroke stays at ``act`` and its APD90
    becomes ``apd``; before activation it is the template's resting part.
    Linear interpolation keeps it differentiable in both.  ``apd_mean_ms`` and
    ``apd_std_ms`` normalise the APD head's output (training-set statistics).
    The template's length is set from the data (``set_template``) and, when
    loading, from the checkpoint.
    """

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("template", torch.zeros(N_SITES, 0))
        self.register_buffer("template_apd_ms", torch.ones(N_SITES))
        self.register_buffer("apd_mean_ms", torch.zeros(N_SITES))
        self.register_buffer("apd_std_ms", torch.ones(N_SITES))
        self.register_buffer("dt_ms", torch.ones(()))

    def set_template(self, traces_mv: np.ndarray, dt_ms: float, template_apd_ms: np.ndarray,
                     apd_mean_ms: np.ndarray, apd_std_ms: np.ndarray) -> None:
        self.template = torch.as_tensor((traces_mv - VM_OFFSET_MV) / VM_SCALE_MV, dtype=torch.float32)
        self.template_apd_ms.copy_(torch.as_tensor(template_apd_ms, dtype=torch.float32))
        self.apd_mean_ms.copy_(torch.as_tensor(apd_mean_ms, dtype=torch.float32))
        self.apd_std_ms.copy_(torch.as_tensor(apd_std_ms, dtype=torch.float32).clamp_min(1e-3))
        self.dt_ms.fill_(float(dt_ms))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        stored = state_dict.get(prefix + "template")
        if stored is not None:  # the template's length is the data's, known only now
            self.template = torch.empty_like(stored, device=self.template.device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def apd_ms(self, normalised: torch.Tensor) -> torch.Tensor:
        return normalised.float() * self.apd_std_ms + self.apd_mean_ms

    def forward(self, act_ms: torch.Tensor, apd_ms: torch.Tensor, samples: int) -> torch.Tensor:
        """(B, 75) times and APDs (ms) -> (B, 75, samples) normalised traces."""
        half = self.template.shape[1] // 2
        if half == 0:
            raise RuntimeError("the renderer has no template: call set_template (training) or load a checkpoint")
        t = torch.arange(samples, device=act_ms.device, dtype=torch.float32)
        after = t - act_ms[..., None] / self.dt_ms  # samples since activation
        # A site whose template does not repolarise within the window (NaN APD) is not stretched.
        stretch = torch.where(torch.isfinite(self.template_apd_ms), self.template_apd_ms / apd_ms.clamp_min(1.0),
                              torch.ones_like(apd_ms))[..., None]
        after = torch.where(after > 0, after * stretch, after)
        position = (half + after).clamp(0, 2 * half - 1)
        lower = position.floor().clamp(max=2 * half - 2)
        weight = position - lower
        lower = lower.long()
        template = self.template.expand(act_ms.shape[0], -1, -1)
        return torch.gather(template, 2, lower) * (1 - weight) + torch.gather(template, 2, lower + 1) * weight


def upstroke_time_ms(vm: torch.Tensor, temperature: float, dt_ms: float = 1.0) -> torch.Tensor:
    """Soft-argmax of dVm/dt over time: a differentiable upstroke time per trace.

    ``vm`` is (B, 75, T) in normalised units; the derivative between samples
    k and k+1 sits at (k + 0.5) dt.  ``temperature`` (normalised Vm per ms)
    sets how sharply the softmax picks the steepest rise.
    """
    slope = (vm[..., 1:] - vm[..., :-1]) / dt_ms
    weights = torch.softmax(slope.float() / temperature, dim=-1)
    times = (torch.arange(slope.shape[-1], device=vm.device, dtype=torch.float32) + 0.5) * dt_ms
    return (weights * times).sum(-1)


class EcgiNet(nn.Module):
    """A trunk with an activation head, a voltage head, or both.

    ``outputs`` names what ``forward`` returns.  ``act_mean``/``act_std``
    (ms, per site) normalise activation times; they are buffers so they travel
    with the weights into every checkpoint.
    """

    def __init__(self, architecture: str, dropout: float = 0.5, softargmax_temperature: float = 0.02) -> None:
        super().__init__()
        if architecture not in ARCHITECTURES:
            raise ValueError(f"unknown architecture {architecture!r}; choose one of {', '.join(ARCHITECTURES)}")
        self.architecture = architecture
        self.outputs = OUTPUTS[architecture]
        self.softargmax_temperature = softargmax_temperature
        self.act_head: nn.Module | None = None
        self.apd_head: nn.Module | None = None
        self.renderer: ActionPotentialRenderer | None = None
        if architecture == "resnet_act":
            self.features = residual_trunk()
            self.act_head = PositionalHead(RESIDUAL_CHANNELS, dropout)
        elif architecture == "positional_act":
            self.features = squeezenet_trunk(stride=2)
            self.act_head = PositionalHead(SQUEEZENET_CHANNELS, dropout)
        elif architecture == "ridge_act":
            self.features = nn.Identity()
            self.act_head = LinearMap()
        elif architecture == "template_vm":
            self.features = squeezenet_trunk(stride=2)
            self.act_head = PositionalHead(SQUEEZENET_CHANNELS, dropout)
            self.apd_head = PositionalHead(SQUEEZENET_CHANNELS, dropout)
            self.renderer = ActionPotentialRenderer()
        else:
            self.features = squeezenet_trunk(stride=2 if architecture == "reference_act" else 1)
            self.act_head = ActivationHead(dropout) if architecture in ("reference_act", "multitask") else None
        self.vm_head = VoltageHead() if "vm" in self.outputs and self.renderer is None else None
        self.register_buffer("act_mean", torch.zeros(N_SITES))
        self.register_buffer("act_std", torch.ones(N_SITES))
        self._initialise()

    def _initialise(self) -> None:
        """Kaiming-uniform weights, zero biases (as torchvision's SqueezeNet)."""
        for module in self.modules():
            if isinstance(module, nn.Conv1d):
                nn.init.kaiming_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def set_activation_statistics(self, mean_ms: torch.Tensor, std_ms: torch.Tensor) -> None:
        """Per-site activation-time mean and spread (ms) from the training split."""
        self.act_mean.copy_(torch.as_tensor(mean_ms, dtype=torch.float32))
        self.act_std.copy_(torch.as_tensor(std_ms, dtype=torch.float32).clamp_min(1e-3))

    def forward(self, ecg: torch.Tensor) -> dict[str, torch.Tensor]:
        features = self.features(ecg)
        out: dict[str, torch.Tensor] = {}
        if self.vm_head is not None:
            out["vm"] = self.vm_head(features)
        if self.act_head is not None:
            out["act"] = self.act_head(features)
        if self.renderer is not None and self.apd_head is not None:
            out["apd"] = self.apd_head(features)
            act_ms = out["act"].float() * self.act_std + self.act_mean
            out["vm"] = self.renderer(act_ms, self.renderer.apd_ms(out["apd"]), ecg.shape[-1])
        elif self.architecture == "consistent":
            act_ms = upstroke_time_ms(out["vm"], self.softargmax_temperature)
            out["act"] = (act_ms - self.act_mean) / self.act_std
        return out

    def to_physical(self, out: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Normalised outputs -> activation times (ms) and traces (mV).

        A voltage-only network's activation times are its traces' 0 mV crossings.
        """
        physical = {}
        if "apd" in out and self.renderer is not None:
            physical["apd"] = self.renderer.apd_ms(out["apd"])
        if "vm" in out:
            physical["vm"] = out["vm"].float() * VM_SCALE_MV + VM_OFFSET_MV
        if "act" in out:
            physical["act"] = out["act"].float() * self.act_std + self.act_mean
        else:
            physical["act"] = crossing_times(physical["vm"])
        return physical


def crossing_times(vm_mv: torch.Tensor) -> torch.Tensor:
    """The traces' activation times (solver.common.traces, the data sets' definition),
    for networks that predict traces only; a trace that never crosses gets the
    end of the window (not differentiable: evaluation and prediction only)."""
    window_ms = float(vm_mv.shape[-1])
    times = threshold_crossing_ms(vm_mv.detach().cpu().numpy(), never=window_ms)
    return torch.from_numpy(times.astype(np.float32)).to(vm_mv.device)


def build_network(architecture: str = "reference_act", dropout: float = 0.5, softargmax_temperature: float = 0.02) -> EcgiNet:
    """The network named ``architecture`` (see the module docstring)."""
    return EcgiNet(architecture, dropout=dropout, softargmax_temperature=softargmax_temperature)
