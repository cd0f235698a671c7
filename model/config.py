"""The training configuration, as typed dataclasses (YAML -> ``TrainConfig``).

Every key has a default, ecgi's reference settings, so an empty file is a
valid configuration; ``examples/train/tiny.yaml`` shows each section.  The
defaults keep the published architecture and optimiser (1-D SqueezeNet
activation-time network, Adam at a constant 1e-3, batch 32, MSE, per-lead
range scaling, onset-shift augmentation of 0-40 ms) but differ from the
published configuration (``config/ecg2time.config`` of the original code)
in two ways: dropout 0.5 where it uses 0.1, and standardised per-site
activation targets where it fits raw milliseconds.  ``examples/train/
published.yaml`` sets both to the published values.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from solver.common.errors import ConfigError
from solver.common.limits import LEARNING_RATE, check_range
from solver.common.typedconfig import from_mapping, load_file

Architecture = Literal["reference_act", "reference_vm", "multitask", "consistent", "resnet_act", "positional_act",
                       "ridge_act", "template_vm"]


@dataclass
class NetworkConfig:
    """Which network to train (``model.network`` describes each).

    ``architecture``:
      * ``reference_act`` (default) -- the published 1-D SqueezeNet that maps
        the ECG to 75 activation times;
      * ``reference_vm`` -- the published stride-1 SqueezeNet that maps it to
        75 voltage traces;
      * ``multitask`` -- one stride-1 trunk shared by an activation head and
        a voltage head, trained on both targets;
      * ``consistent`` -- the voltage network whose activation times are the
        soft-argmax of each predicted trace's derivative (physically
        consistent: a time is where its own trace rises), trained on both.
      * ``resnet_act`` -- not published: a residual, dilated 1-D CNN with
        batch normalisation mapping the ECG to 75 activation times.
      * ``positional_act`` -- not published: the reference trunk with an
        activation head that keeps 16 positions in time (``resnet_act``'s).
      * ``ridge_act`` -- the ridge baseline as a network (one linear map of
        the whole ECG), fitted in closed form instead of by epochs; a member
        for ensembles.
      * ``template_vm`` -- not published: the reference trunk with
        positional activation-time and APD90 heads; each site's trace is its mean
        training action potential stretched to the APD and placed at the
        time, trained on both targets (``loss.act_weight``, ``loss.apd_weight``).

    ``dropout`` is applied before the activation head; ``softargmax_temperature``
    (normalised Vm per ms) sets how sharply ``consistent`` picks the steepest rise.
    """

    architecture: Architecture = "reference_act"
    dropout: float = 0.5
    softargmax_temperature: float = 0.02

    def validate(self) -> None:
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}")
        _positive("softargmax_temperature", self.softargmax_temperature)


@dataclass
class DataConfig:
    """How shards are read and the ECG is scaled.

    ``input_scaling``: ``range`` (reference) divides each lead by its own
    max - min within the sample, so amplitude differences between recording
    systems do not matter; ``common_range`` divides all twelve leads by the
    largest lead's max - min, which removes the overall gain but keeps the
    leads' relative amplitudes (the electrical axis, the R-wave progression);
    ``standardise`` uses the manifest's per-lead mean and standard deviation.
    ``verify_sha256`` hashes every shard before training (slow for large
    sets).  ``num_workers`` DataLoader worker processes per rank read the shards.

    ``in_memory``: ``auto`` reads the train and validation splits into
    memory once per process when they fit in the budget, ``memory_fraction``
    of the available memory (MemAvailable) divided by the processes on the
    node (each holds its own copy), and streams them from the shards
    otherwise; ``always`` and ``never`` force one or the other.  In memory,
    batches are served by array operations and ``num_workers`` is ignored.
    """

    input_scaling: Literal["range", "common_range", "standardise"] = "range"
    verify_sha256: bool = False
    num_workers: int = 0
    in_memory: Literal["auto", "always", "never"] = "auto"
    memory_fraction: float = 0.5

    def validate(self) -> None:
        if self.num_workers < 0:
            raise ConfigError(f"num_workers must be >= 0, got {self.num_workers}")
        if not 0.0 < self.memory_fraction <= 1.0:
            raise ConfigError(f"memory_fraction must be in (0, 1], got {self.memory_fraction}")


@dataclass
class RealismConfig:
    """Recording artefacts added to training ECGs (``model.augment`` describes each), off by default.

    ``wander_mv``, ``mains_mv`` and ``emg_mv`` are the largest amplitudes drawn
    (baseline wander, 50/60 Hz hum, EMG-like RMS noise); ``gain`` the relative
    amplitude change per lead; ``lead_mixing`` the electrode displacement
    (fraction of a neighbouring precordial lead, frontal-plane rotation in
    radians); ``time_warp`` the relative stretch of the beat and its targets.
    """

    enabled: bool = False
    wander_mv: float = 0.3
    mains_mv: float = 0.05
    emg_mv: float = 0.03
    gain: float = 0.2
    lead_mixing: float = 0.15
    time_warp: float = 0.05

    def validate(self) -> None:
        for name in ("wander_mv", "mains_mv", "emg_mv", "gain", "lead_mixing", "time_warp"):
            value = getattr(self, name)
            if not (0.0 <= value and math.isfinite(value)):
                raise ConfigError(f"{name} must be a number >= 0, got {value}")
        if self.gain >= 1.0 or self.time_warp >= 0.5 or self.lead_mixing > 0.5:
            raise ConfigError("gain must be < 1, time_warp < 0.5 and lead_mixing <= 0.5")


@dataclass
class AugmentConfig:
    """Random onset shift: the ECG is delayed by 0..max_onset_shift_ms (zeros in front)
    and the targets by the same amount, so the network does not learn a fixed QRS onset.
    ``realism`` adds recording artefacts (``enabled: true`` to switch them on)."""

    max_onset_shift_ms: int = 40
    realism: RealismConfig = field(default_factory=RealismConfig)

    def validate(self) -> None:
        if self.max_onset_shift_ms < 0:
            raise ConfigError(f"max_onset_shift_ms must be >= 0, got {self.max_onset_shift_ms}")


@dataclass
class OptimiserConfig:
    """Adam; ``schedule`` ``cosine`` anneals the rate to zero over the configured epochs."""

    lr: float = 1e-3
    weight_decay: float = 0.0
    schedule: Literal["constant", "cosine"] = "constant"

    def validate(self) -> None:
        check_range("lr", self.lr, LEARNING_RATE)
        # An L2 penalty: 1e-5-1e-2 in practice; above 1 it outweighs any loss.
        check_range("weight_decay", self.weight_decay, (0.0, 1.0))


@dataclass
class LossConfig:
    """Weights of the mean-squared errors (networks with several outputs) and the activation target.

    ``apd_weight`` weighs the APD90 error of ``template_vm`` (standardised per
    site by the training statistics; APD90 read from the target traces),
    whose traces follow from its times and APDs and get no loss of their own.

    ``act_target``: ``standardised`` (ecgi) fits each site's time minus the
    training mean over the training spread (manifest statistics); ``ms``
    fits the raw times in milliseconds, as the published code does.
    """

    act_weight: float = 1.0
    vm_weight: float = 1.0
    apd_weight: float = 1.0
    act_target: Literal["standardised", "ms"] = "standardised"

    def validate(self) -> None:
        if self.act_weight < 0 or self.vm_weight < 0 or self.apd_weight < 0 or self.act_weight + self.vm_weight == 0:
            raise ConfigError("act_weight, vm_weight and apd_weight must be >= 0, act_weight and vm_weight not both zero")


@dataclass
class TrainConfig:
    """One training run.

    ``batch_size`` is the global batch, split evenly over the ranks (it must
    be divisible by their number), so a run gives the same result on any
    number of processes.  ``precision: bf16`` (autocast) and ``compile``
    (torch.compile) apply on GPUs only.  ``deterministic`` asks torch for
    deterministic kernels (slower on GPUs).  ``tensorboard`` logs to
    RUNDIR/tensorboard when the tensorboard package is installed.
    """

    epochs: int = 100
    batch_size: int = 32
    seed: int = 0
    network: NetworkConfig = field(default_factory=NetworkConfig)
    data: DataConfig = field(default_factory=DataConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    optimiser: OptimiserConfig = field(default_factory=OptimiserConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    precision: Literal["fp32", "bf16"] = "fp32"
    compile: bool = False
    deterministic: bool = False
    tensorboard: bool = True

    def validate(self) -> None:
        if self.epochs < 1:
            raise ConfigError(f"epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {self.batch_size}")


def _positive(name: str, value: float) -> None:
    if not (value > 0 and math.isfinite(value)):
        raise ConfigError(f"{name} must be a positive number, got {value}")


def config_from_dict(data: dict | None) -> TrainConfig:
    """Validate parsed YAML (None: an empty file, all defaults)."""
    return from_mapping(TrainConfig, data or {}, "train")


def load_train_config(path: str | Path) -> TrainConfig:
    """Read and validate a training configuration file."""
    return load_file(path, config_from_dict)
