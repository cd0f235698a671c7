"""``ecgi train``: the training loop, the same for one process, torchrun and srun.

Each rank reads its share of every epoch through a ``DistributedSampler``
(padded so every rank takes the same number of steps; a rank that ran out
early would leave the others blocked in the gradient all-reduce), with a
local batch of ``batch_size / world_size``, so the global batch and hence
the result do not depend on the number of processes.  Rank 0 writes the
run directory:

    RUNDIR/config.yaml     the validated configuration, defaults filled in
    RUNDIR/last.pt         checkpoint after every epoch (``--resume`` continues from it)
    RUNDIR/best.pt         the checkpoint with the lowest validation loss
    RUNDIR/metrics.csv     one row per epoch (also metrics.json)
    RUNDIR/tensorboard/    when the tensorboard package is installed

``ridge_act`` has no epochs: it is fitted in closed form on one process
(``model.baselines.fit_ridge_network``) into the same files, one record.
"""
from __future__ import annotations

import csv
import dataclasses
import gc
import io
import json
import math
import os
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler

from solver.common.errors import ConfigError
from solver.common.files import write_text_atomic
from solver.common.traces import apd90_ms
from solver.common.typedconfig import to_mapping

from .baselines import fit_ridge_network
from .checkpoint import (
    load_checkpoint,
    publish_copy,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from .config import LossConfig, TrainConfig
from .data import (
    InMemoryDataset,
    Manifest,
    ShardDataset,
    StridedSampler,
    available_memory_bytes,
    load_manifest,
    split_bytes,
    validate_dataset,
)
from .distributed import (
    DistContext,
    all_gather_objects,
    all_reduce_sum,
    close_distributed,
    init_distributed,
    launch_info,
)
from .network import VM_OFFSET_MV, VM_SCALE_MV, EcgiNet, build_network

LAST, BEST = "last.pt", "best.pt"


@dataclass
class StepInfo:
    """What an observer sees after each optimiser step (tests use it to check DDP)."""

    epoch: int
    step: int
    indices: torch.Tensor
    loss: torch.Tensor
    model: EcgiNet


Observer = Callable[[StepInfo], None]


def train(
    config: TrainConfig, data_dir: str | Path, run_dir: str | Path, *, resume: bool = False,
    epochs: int | None = None, observer: Observer | None = None, progress: bool = True,
) -> list[dict[str, Any]]:
    """Train (or continue) a run; returns the per-epoch metrics on every rank."""
    if epochs is not None:
        config = dataclasses.replace(config, epochs=epochs)
        config.validate()
    manifest = load_manifest(data_dir)
    validate_dataset(manifest, ("train", "validation"), config.data.verify_sha256)
    if manifest.dt_ms != 1.0:
        raise ConfigError(f"{manifest.root}: dt_ms is {manifest.dt_ms}; the networks expect 1 ms sampling")
    run_dir = Path(run_dir)
    if (run_dir / LAST).exists() and not resume:
        raise ConfigError(f"{run_dir} already holds a run ({LAST}); pass --resume to continue it or choose another --output")
    if config.network.architecture == "ridge_act":
        return _fit_closed_form(config, manifest, run_dir, progress)
    ctx = init_distributed()
    trainer: Trainer | None = None
    finished = False
    try:
        trainer = Trainer(config, manifest, run_dir, ctx, observer, progress)
        if resume:
            trainer.restore()
        history = trainer.fit()
        finished = True
        return history
    finally:
        if trainer is not None:
            trainer.close()
        del trainer
        gc.collect()  # DDP's reducer must be gone (cycles included) before the group is destroyed
        close_distributed(ctx, synchronise=finished)


def compute_loss(model: EcgiNet, out: dict[str, torch.Tensor], batch: dict[str, torch.Tensor], weights: LossConfig) -> torch.Tensor:
    """Weighted MSE on normalised targets: activation by the manifest statistics, Vm by the fixed scaling.

    Sites that never activate (a scar core) have no activation time (NaN):
    they are left out of the activation loss rather than poisoning it.
    """
    loss = torch.zeros((), device=batch["ecg"].device)
    if "act" in out:
        target = (batch["act"] - model.act_mean) / model.act_std
        known = torch.isfinite(target)
        diff = torch.where(known, out["act"].float() - torch.nan_to_num(target), torch.zeros_like(target))
        loss = loss + weights.act_weight * (diff**2).sum() / known.sum().clamp(min=1)
    if "apd" in out and model.renderer is not None:
        # The traces of template_vm follow from its times and APDs: the APD is the target, not the trace.
        target = (batch["apd"] - model.renderer.apd_mean_ms) / model.renderer.apd_std_ms
        known = torch.isfinite(target)  # traces that do not repolarise in the window have no APD90
        diff = torch.where(known, out["apd"].float() - torch.nan_to_num(target), torch.zeros_like(target))
        loss = loss + weights.apd_weight * (diff**2).sum() / known.sum().clamp(min=1)
    elif "vm" in out:
        target = (batch["vm"] - VM_OFFSET_MV) / VM_SCALE_MV
        loss = loss + weights.vm_weight * F.mse_loss(out["vm"].float(), target)
    return loss


def _fit_closed_form(config: TrainConfig, manifest: Manifest, run_dir: Path, progress: bool) -> list[dict[str, Any]]:
    """``ridge_act``: one ridge regression instead of epochs, written as a finished run (one record)."""
    if launch_info().world_size > 1:
        raise ConfigError("ridge_act is fitted in closed form on one process; start it without torchrun or srun")
    start = time.perf_counter()
    model = configured_network(config, manifest)
    ecg_stats = (manifest.statistic("ecg_mean"), manifest.statistic("ecg_std"))
    fit = fit_ridge_network(model, manifest, config.data.input_scaling, ecg_stats)
    record = {"epoch": 1, "train_loss": None, "val_loss": None, "val_act_mae_ms": fit.validation_mae,
              "val_vm_rmse_mv": None, "lr": None, "seconds": time.perf_counter() - start, "samples_per_s": None}
    run_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(run_dir / "config.yaml", yaml.safe_dump(to_mapping(config), sort_keys=False))
    save_checkpoint(run_dir / LAST, {
        "epoch": config.epochs, "model": model.state_dict(), "config": to_mapping(config),
        "inputs": checkpoint_inputs(config, manifest), "history": [record], "world_size": 1,
        "ridge": {"alpha": fit.alpha, "fitted_on": manifest.split_size("train")},
    })
    publish_copy(run_dir / LAST, run_dir / BEST)
    _write_metrics(run_dir, [record])
    if progress:
        print(f"ridge_act fitted on {manifest.split_size('train')} samples in {record['seconds']:.0f} s: "
              f"validation activation MAE {fit.validation_mae:.2f} ms (alpha {fit.alpha:.3g})", flush=True)
    return [record]


def configured_network(config: TrainConfig, manifest: Manifest) -> EcgiNet:
    """The configured network, normalising its activation times by the training split's statistics."""
    net = config.network
    model = build_network(net.architecture, net.dropout, net.softargmax_temperature)
    if config.loss.act_target == "standardised":  # else mean 0, spread 1: the network fits milliseconds
        model.set_activation_statistics(
            torch.from_numpy(manifest.statistic("act_mean")), torch.from_numpy(manifest.statistic("act_std")))
    return model


def checkpoint_inputs(config: TrainConfig, manifest: Manifest) -> dict[str, Any]:
    """What inference needs to prepare an ECG as training did: scaling, its statistics, trace length,
    and the training inputs' feature statistics for ``ecgi predict``'s OOD score."""
    from .clinical.trust import reference_from_dataset

    ecg_mean, ecg_std = manifest.statistic("ecg_mean"), manifest.statistic("ecg_std")
    ood = None  # none for a training split of one sample
    if manifest.split_size("train") >= 2:
        ood = dataclasses.asdict(reference_from_dataset(manifest.root, config.data.input_scaling, ecg_mean, ecg_std))
    return {"scaling": config.data.input_scaling, "samples": manifest.samples, "dt_ms": manifest.dt_ms,
            "ecg_mean": ecg_mean.tolist(), "ecg_std": ecg_std.tolist(), "ood": ood}


class Trainer:
    """The state of one run on one rank: model, optimiser, data, history."""

    def __init__(
        self, config: TrainConfig, manifest: Manifest, run_dir: Path, ctx: DistContext,
        observer: Observer | None, progress: bool,
    ) -> None:
        if config.batch_size % ctx.world_size:
            raise ConfigError(f"batch_size {config.batch_size} is not divisible by the {ctx.world_size} ranks")
        self.config, self.manifest, self.run_dir, self.ctx = config, manifest, run_dir, ctx
        self.observer = observer
        self.progress = progress and ctx.is_main
        self.epoch = 0
        self.history: list[dict[str, Any]] = []
        self.best_val_loss = math.inf
        _set_determinism(config.deterministic, ctx.device)
        _seed_everything(config.seed)
        self.model = configured_network(config, manifest)
        self._build_data()
        if self.model.renderer is not None:
            self._set_trace_template()
        self.model.to(ctx.device)
        self.forward = self._wrap(self.model)
        self.use_bf16 = config.precision == "bf16" and ctx.device.type == "cuda"
        self.optimiser = torch.optim.Adam(self.model.parameters(), lr=config.optimiser.lr, weight_decay=config.optimiser.weight_decay)
        self.scheduler = _scheduler(self.optimiser, config)
        _seed_everything(config.seed + ctx.rank)  # dropout masks differ between ranks
        if ctx.is_main:
            run_dir.mkdir(parents=True, exist_ok=True)
            write_text_atomic(run_dir / "config.yaml", yaml.safe_dump(to_mapping(config), sort_keys=False))
        self.tensorboard = _tensorboard(run_dir) if config.tensorboard and ctx.is_main else None

    def _set_trace_template(self) -> None:
        """``template_vm``: each site's mean training action potential and the training APD90 statistics,
        from the training set in memory when it is there (no second read of the shards)."""
        from .baselines import TemplateAccumulator, training_traces

        if isinstance(self.train_set, InMemoryDataset):
            traces = TemplateAccumulator.of(self.train_set.traces(), self.manifest.dt_ms)
        else:
            traces = training_traces(self.manifest)
        template = traces.template()
        assert self.model.renderer is not None
        self.model.renderer.set_template(template.traces, template.dt_ms, apd90_ms(template.traces, template.dt_ms),
                                         *traces.apd_statistics())

    def _wrap(self, model: EcgiNet) -> torch.nn.Module:
        wrapped: torch.nn.Module = model
        if self.ctx.distributed:
            device_ids = [self.ctx.device] if self.ctx.device.type == "cuda" else None
            wrapped = DistributedDataParallel(model, device_ids=device_ids)
        if self.config.compile and self.ctx.device.type == "cuda":
            wrapped = torch.compile(wrapped)
        return wrapped

    def _build_data(self) -> None:
        config, ctx = self.config, self.ctx
        with_vm = "vm" in self.model.outputs
        common = dict(with_vm=with_vm, with_apd="apd" in self.model.outputs,
                      scaling=config.data.input_scaling, seed=config.seed)
        in_memory = self._in_memory(with_vm)
        dataset = InMemoryDataset if in_memory else ShardDataset
        self.train_set = dataset(self.manifest, "train", max_shift_ms=config.augment.max_onset_shift_ms,
                                 realism=config.augment.realism, **common)
        self.val_set = dataset(self.manifest, "validation", **common)
        self.train_sampler = DistributedSampler(
            self.train_set, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True, seed=config.seed, drop_last=False
        )
        local_batch = config.batch_size // ctx.world_size
        # Workers are not persistent: each epoch's workers start from the dataset with its new epoch.
        loader = dict(batch_size=local_batch, num_workers=0 if in_memory else config.data.num_workers,
                      pin_memory=ctx.device.type == "cuda", collate_fn=InMemoryDataset.collate if in_memory else None)
        self.train_loader = DataLoader(self.train_set, sampler=self.train_sampler, **loader)
        self.val_loader = DataLoader(self.val_set, sampler=StridedSampler(len(self.val_set), ctx.rank, ctx.world_size), **loader)

    def _in_memory(self, with_vm: bool) -> bool:
        """Whether the train and validation splits are held in memory (``DataConfig.in_memory``)."""
        data = self.config.data
        if data.in_memory != "auto":
            return data.in_memory == "always"
        needed = (split_bytes(self.manifest, "train", with_vm=with_vm, max_shift_ms=self.config.augment.max_onset_shift_ms)
                  + split_bytes(self.manifest, "validation", with_vm=with_vm))
        per_node = int(os.environ.get("LOCAL_WORLD_SIZE", self.ctx.world_size))  # unknown: assume all on this node
        budget = data.memory_fraction * available_memory_bytes() / max(per_node, 1)
        self._say(f"training data {needed / 2**20:.0f} MiB per process, budget {budget / 2**20:.0f} MiB: "
                  f"{'held in memory' if needed <= budget else 'streamed from the shards'}")
        return needed <= budget

    def restore(self) -> None:
        """Continue from RUNDIR/last.pt if there is one (a fresh start otherwise)."""
        path = self.run_dir / LAST
        if not path.exists():
            self._say(f"no checkpoint in {self.run_dir}; starting from epoch 0")
            return
        state = load_checkpoint(path)
        if state["config"]["network"] != to_mapping(self.config.network):
            raise ConfigError(f"{path}: trained with network {state['config']['network']}, the configuration asks for "
                              f"{to_mapping(self.config.network)}; use another --output for a different network")
        if state["inputs"]["samples"] != self.manifest.samples:
            raise ConfigError(f"{path}: trained on traces of {state['inputs']['samples']} samples, "
                              f"{self.manifest.root} has {self.manifest.samples}")
        try:
            self._resume_from(state)
        except (KeyError, TypeError, ValueError, IndexError, RuntimeError) as exc:
            # A checkpoint of inference only (or one edited by hand) lacks or
            # garbles the training state; its metadata passed load_checkpoint.
            reason = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
            raise ConfigError(f"{path}: not a checkpoint training can resume from ({type(exc).__name__}: "
                              f"{reason}); use another --output to start afresh") from None
        self._say(f"resuming {path} after epoch {self.epoch}")

    def _resume_from(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimiser.load_state_dict(state["optimiser"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.epoch = int(state["epoch"])
        self.history = list(state["history"])
        self.best_val_loss = float(state["best_val_loss"])
        if len(state["rng"]) == self.ctx.world_size:
            set_rng_state(state["rng"][self.ctx.rank])
        else:
            self._say(f"checkpoint written by {len(state['rng'])} rank(s), now {self.ctx.world_size}: random streams restart")

    def fit(self) -> list[dict[str, Any]]:
        config = self.config
        if self.epoch >= config.epochs:
            self._say(f"already trained for {self.epoch} epoch(s); nothing to do")
        else:
            self._say(
                f"training {config.network.architecture} on {len(self.train_set)} samples, "
                f"{self.ctx.world_size} process(es) on {self.ctx.device.type}, epochs {self.epoch + 1}-{config.epochs}"
            )
            if (config.precision == "bf16" or config.compile) and self.ctx.device.type != "cuda":
                self._say("precision bf16 and compile apply on GPUs only; training in fp32")
        for epoch in range(self.epoch, config.epochs):
            start = time.perf_counter()
            lr = self.optimiser.param_groups[0]["lr"]
            train_loss, samples = self._train_epoch(epoch)
            train_seconds = time.perf_counter() - start
            record = {"epoch": epoch + 1, "train_loss": train_loss, **self._validate(), "lr": lr,
                      "seconds": time.perf_counter() - start, "samples_per_s": samples / train_seconds}
            self.scheduler.step()
            self.history.append(record)
            self.epoch = epoch + 1
            self._save(record["val_loss"])
        return self.history

    def _train_epoch(self, epoch: int) -> tuple[float, float]:
        self.train_sampler.set_epoch(epoch)
        self.train_set.set_epoch(epoch)
        self.forward.train()
        loss_sum = torch.zeros((), dtype=torch.float64, device=self.ctx.device)  # stays on the device: no sync per step
        samples = 0
        for step, batch in enumerate(self.train_loader):
            batch = {k: v.to(self.ctx.device, non_blocking=True) for k, v in batch.items()}
            with torch.autocast(self.ctx.device.type, dtype=torch.bfloat16, enabled=self.use_bf16):
                out = self.forward(batch["ecg"])
            loss = compute_loss(self.model, out, batch, self.config.loss)
            self.optimiser.zero_grad(set_to_none=True)
            loss.backward()
            self.optimiser.step()
            loss_sum += loss.detach().double() * len(batch["ecg"])
            samples += len(batch["ecg"])
            if self.observer is not None:
                self.observer(StepInfo(epoch, step, batch["index"].cpu(), loss.detach(), self.model))
        totals = torch.stack([loss_sum, torch.tensor(float(samples), dtype=torch.float64, device=self.ctx.device)])
        total_loss, total_samples = all_reduce_sum(totals, self.ctx).tolist()
        return total_loss / total_samples, total_samples

    @torch.no_grad()
    def _validate(self) -> dict[str, float | None]:
        """Loss, activation MAE (ms) and Vm RMSE (mV) over the whole validation split."""
        self.model.eval()
        # loss * n, n, sum |act error|, act count, sum vm error^2, vm count
        sums = torch.zeros(6, dtype=torch.float64, device=self.ctx.device)
        for batch in self.val_loader:
            batch = {k: v.to(self.ctx.device, non_blocking=True) for k, v in batch.items()}
            with torch.autocast(self.ctx.device.type, dtype=torch.bfloat16, enabled=self.use_bf16):
                out = self.model(batch["ecg"])
            n = batch["ecg"].shape[0]
            physical = self.model.to_physical(out)
            act_error = (physical["act"] - batch["act"]).abs()
            known = torch.isfinite(act_error)  # sites that never activated have no error
            act_error = torch.where(known, act_error, torch.zeros_like(act_error))
            vm_sq = ((physical["vm"] - batch["vm"]) ** 2).sum() if "vm" in physical else torch.zeros(())
            vm_count = batch["vm"].numel() if "vm" in physical else 0
            loss = compute_loss(self.model, out, batch, self.config.loss)
            sums += torch.tensor([float(loss) * n, n, float(act_error.sum()), int(known.sum()), float(vm_sq), vm_count],
                                 dtype=torch.float64, device=sums.device)
        all_reduce_sum(sums, self.ctx)
        loss, n, act_abs, act_n, vm_sq, vm_n = sums.tolist()
        return {"val_loss": loss / n, "val_act_mae_ms": act_abs / max(act_n, 1),
                "val_vm_rmse_mv": math.sqrt(vm_sq / vm_n) if vm_n else None}

    def _inputs(self) -> dict[str, Any]:
        """``checkpoint_inputs``, computed once per run."""
        if not hasattr(self, "_checkpoint_inputs"):
            self._checkpoint_inputs = checkpoint_inputs(self.config, self.manifest)
        return self._checkpoint_inputs

    def _save(self, val_loss: float) -> None:
        """Every rank contributes its RNG state; rank 0 writes the checkpoint and metrics."""
        rngs = all_gather_objects(rng_state(), self.ctx)
        improved = val_loss < self.best_val_loss
        self.best_val_loss = min(self.best_val_loss, val_loss)
        if not self.ctx.is_main:
            return
        state = {
            "epoch": self.epoch, "model": self.model.state_dict(), "optimiser": self.optimiser.state_dict(),
            "scheduler": self.scheduler.state_dict(), "rng": rngs, "config": to_mapping(self.config),
            "inputs": self._inputs(),
            "history": self.history, "best_val_loss": self.best_val_loss, "world_size": self.ctx.world_size,
        }
        save_checkpoint(self.run_dir / LAST, state)
        if improved:
            publish_copy(self.run_dir / LAST, self.run_dir / BEST)
        _write_metrics(self.run_dir, self.history)
        record = self.history[-1]
        if self.tensorboard is not None:
            for key, value in record.items():
                if key != "epoch" and value is not None:
                    self.tensorboard.add_scalar(key, value, record["epoch"])
            self.tensorboard.flush()
        self._say(_progress_line(record, self.config.epochs))

    def _say(self, line: str) -> None:
        if self.progress:
            print(line, file=sys.stderr, flush=True)

    def close(self) -> None:
        """Close shard handles and the TensorBoard writer; drop the DDP wrapper."""
        self.train_set.close()
        self.val_set.close()
        if self.tensorboard is not None:
            self.tensorboard.close()
        del self.forward


def _progress_line(record: dict[str, Any], epochs: int) -> str:
    line = (f"epoch {record['epoch']}/{epochs}  train loss {record['train_loss']:.4f}  "
            f"val loss {record['val_loss']:.4f}  act MAE {record['val_act_mae_ms']:.2f} ms")
    if record["val_vm_rmse_mv"] is not None:
        line += f"  Vm RMSE {record['val_vm_rmse_mv']:.2f} mV"
    return line + f"  {record['samples_per_s']:.0f} samples/s  {record['seconds']:.1f} s"


def _scheduler(optimiser: torch.optim.Optimizer, config: TrainConfig) -> torch.optim.lr_scheduler.LRScheduler:
    if config.optimiser.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=config.epochs)
    return torch.optim.lr_scheduler.ConstantLR(optimiser, factor=1.0, total_iters=0)


def _seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


def _set_determinism(deterministic: bool, device: torch.device) -> None:
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS needs it for reproducible GEMMs
    torch.use_deterministic_algorithms(deterministic)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = not deterministic


def _tensorboard(run_dir: Path):
    """A SummaryWriter when tensorboard is installed, else None (it is optional)."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(run_dir / "tensorboard"))


def _write_metrics(run_dir: Path, history: list[dict[str, Any]]) -> None:
    write_text_atomic(run_dir / "metrics.json", json.dumps(history, indent=1))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(history[0]))
    writer.writeheader()
    writer.writerows({k: ("" if v is None else v) for k, v in row.items()} for row in history)
    write_text_atomic(run_dir / "metrics.csv", buffer.getvalue())


