"""One training code path for a single process, ``torchrun`` and ``srun``.

``launch_info`` reads who this process is from the launcher's environment:
torchrun's RANK/LOCAL_RANK/WORLD_SIZE/MASTER_ADDR/MASTER_PORT, else SLURM's
SLURM_PROCID/SLURM_LOCALID/SLURM_NTASKS inside an ``srun`` step, with the
master on the first host of SLURM_JOB_NODELIST and a port derived from the
job id (so every task of the job computes the same address without talking
to the others).  Anything else is one process.  NCCL is used on GPUs, gloo
on CPUs.
"""
from __future__ import annotations

import datetime
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from typing import Any, Mapping

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class LaunchInfo:
    rank: int
    local_rank: int
    world_size: int
    master_addr: str
    master_port: int
    launcher: str  # "single", "torchrun" or "slurm"


def launch_info(env: Mapping[str, str] | None = None) -> LaunchInfo:
    """Rank, local rank, world size and rendezvous address of this process."""
    env = os.environ if env is None else env
    if "RANK" in env and "WORLD_SIZE" in env:
        return LaunchInfo(
            int(env["RANK"]), int(env.get("LOCAL_RANK", 0)), int(env["WORLD_SIZE"]),
            env.get("MASTER_ADDR", "127.0.0.1"), int(env.get("MASTER_PORT", 29500)), "torchrun",
        )
    # SLURM_STEP_ID is set by srun only: a batch script's own SLURM_NTASKS must not start a group.
    if "SLURM_PROCID" in env and "SLURM_STEP_ID" in env and int(env.get("SLURM_NTASKS", 1)) > 1:
        return LaunchInfo(
            int(env["SLURM_PROCID"]), int(env.get("SLURM_LOCALID", 0)), int(env["SLURM_NTASKS"]),
            env.get("MASTER_ADDR") or first_host(env["SLURM_JOB_NODELIST"]),
            int(env.get("MASTER_PORT") or port_from_job_id(env.get("SLURM_JOB_ID", "0"))), "slurm",
        )
    return LaunchInfo(0, 0, 1, "127.0.0.1", 0, "single")


def port_from_job_id(job_id: str) -> int:
    """A port in 20000-39999 that every task of a job derives alike; jobs sharing a node rarely collide."""
    digits = re.sub(r"\D", "", job_id) or "0"
    return 20000 + int(digits) % 20000


def first_host(nodelist: str) -> str:
    """First host of a SLURM node list: ``scontrol show hostnames`` when available, else our parser."""
    scontrol = shutil.which("scontrol")
    if scontrol:
        try:
            out = subprocess.run([scontrol, "show", "hostnames", nodelist], capture_output=True, text=True, timeout=30)
            if out.returncode == 0 and out.stdout.split():
                return out.stdout.split()[0]
        except (OSError, subprocess.TimeoutExpired):
            pass
    return expand_nodelist(nodelist)[0]


def expand_nodelist(nodelist: str) -> list[str]:
    """Expand the common SLURM syntax: ``gpu[01-03,07],login1`` -> gpu01, gpu02, gpu03, gpu07, login1."""
    hosts: list[str] = []
    for item in _split_top_level(nodelist):
        hosts += _expand_one(item)
    if not hosts:
        raise ValueError(f"empty node list {nodelist!r}")
    return hosts


def _split_top_level(text: str) -> list[str]:
    items, depth, current = [], 0, ""
    for char in text:
        depth += {"[": 1, "]": -1}.get(char, 0)
        if char == "," and depth == 0:
            items.append(current)
            current = ""
        else:
            current += char
    return [item.strip() for item in items + [current] if item.strip()]


def _expand_one(item: str) -> list[str]:
    match = re.match(r"^([^\[]*)\[([^\]]+)\](.*)$", item)
    if not match:
        return [item]
    prefix, ranges, rest = match.groups()
    names = []
    for part in ranges.split(","):
        lo, _, hi = part.partition("-")
        width = len(lo)
        for number in range(int(lo), int(hi or lo) + 1):
            names.append(f"{prefix}{number:0{width}d}")
    return [name + tail for name in names for tail in _expand_one(rest)] if rest else names


@dataclass
class DistContext:
    rank: int
    local_rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init_distributed(timeout_s: float = 1800.0) -> DistContext:
    """Join the process group the launcher set up (if any) and pick this rank's device."""
    info = launch_info()
    if torch.cuda.is_available():
        device = torch.device("cuda", info.local_rank % torch.cuda.device_count())
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if info.world_size > 1 and not dist.is_initialized():
        os.environ.setdefault("MASTER_ADDR", info.master_addr)
        os.environ.setdefault("MASTER_PORT", str(info.master_port))
        dist.init_process_group(
            backend="nccl" if device.type == "cuda" else "gloo", init_method="env://",
            rank=info.rank, world_size=info.world_size, timeout=datetime.timedelta(seconds=timeout_s),
        )
    return DistContext(info.rank, info.local_rank, info.world_size, device)


def close_distributed(ctx: DistContext, synchronise: bool = True) -> None:
    """Leave the process group; callers drop their DDP model first.

    The barrier makes every rank finish its collectives before any tears the
    group down; without it gloo aborts sporadically at exit.  After an error
    on one rank the others may never reach it, so it is skipped then.
    """
    if ctx.distributed and dist.is_initialized():
        if synchronise:
            dist.barrier()
        dist.destroy_process_group()


def all_reduce_sum(values: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """Sum a tensor over the ranks (in place; a no-op for one process)."""
    if ctx.distributed:
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def all_gather_objects(obj: Any, ctx: DistContext) -> list[Any]:
    """Every rank's ``obj``, in rank order."""
    if not ctx.distributed:
        return [obj]
    gathered: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(gathered, obj)
    return gathered
