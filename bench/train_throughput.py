#!/usr/bin/env python
"""Training throughput: samples per second of ``ecgi train``'s own loop.

    python bench/train_throughput.py [--architecture reference_act] [--samples 256] [--json]

Writes a synthetic data set (model/synthetic.py), then times whole training
epochs -- shard reading, augmentation, forward, backward, gradient all-reduce,
Adam -- through ``model.train.train``, the code ``ecgi train`` runs:

* on CPU with 1 process on 1 core, 1 process using every core, and 2 gloo
  DDP processes sharing the cores (the same global batch, so the same work
  per epoch);
* on a CUDA machine also on one GPU in fp32 and bf16 autocast, each with and
  without torch.compile.

The first epoch is a warm-up (allocator, compile); the rate is that of the
following ones.  Validation and checkpointing are excluded.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.multiprocessing as mp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from model.config import config_from_dict  # noqa: E402
from model.synthetic import write_synthetic_dataset  # noqa: E402
from model.train import train  # noqa: E402


@dataclass
class Case:
    device: str
    processes: int
    threads: int
    precision: str = "fp32"
    compile: bool = False
    samples_per_s: float = 0.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, case: Case, port: int, config: dict, data: str, out: str) -> None:
    if case.device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    torch.set_num_threads(case.threads)
    if case.processes > 1:
        os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(case.processes),
                          MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    history = train(config_from_dict(config), data, Path(out) / "run", progress=False)
    if rank == 0:
        Path(out, "history.json").write_text(json.dumps(history))


def measure(case: Case, args: argparse.Namespace, data: Path) -> float:
    config = {
        "epochs": args.epochs, "batch_size": args.batch_size, "tensorboard": False,
        "network": {"architecture": args.architecture}, "precision": case.precision, "compile": case.compile,
        "data": {"num_workers": args.workers},
    }
    with tempfile.TemporaryDirectory() as out:
        mp.spawn(_worker, args=(case, _free_port(), config, str(data), out), nprocs=case.processes, join=True)
        history = json.loads(Path(out, "history.json").read_text())
    timed = history[1:] or history
    return sum(r["samples_per_s"] for r in timed) / len(timed)


def cases(cores: int) -> list[Case]:
    found = [Case("cpu", 1, 1), Case("cpu", 1, cores), Case("cpu", 2, max(1, cores // 2))]
    if torch.cuda.is_available():
        found += [Case("cuda", 1, cores, precision, compiled) for precision in ("fp32", "bf16") for compiled in (False, True)]
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--architecture", default="reference_act",
                        choices=["reference_act", "reference_vm", "multitask", "consistent"])
    parser.add_argument("--samples", type=int, default=256, help="training samples in the synthetic set (256)")
    parser.add_argument("--length", type=int, default=500, help="samples per trace (500)")
    parser.add_argument("--batch-size", type=int, default=32, help="global batch (32)")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per case, the first one untimed (3)")
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers per process (0)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    args = parser.parse_args()
    cores = len(os.sched_getaffinity(0))
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        write_synthetic_dataset(data, train=args.samples, validation=args.batch_size, test=2, samples=args.length)
        results = []
        for case in cases(cores):
            case.samples_per_s = measure(case, args, data)
            results.append(case)
            if not args.json:
                print(f"  {case.device:<5} {case.processes} proc x {case.threads} thr  {case.precision:<5} "
                      f"compile={'on' if case.compile else 'off':<3}  {case.samples_per_s:9.1f} samples/s",
                      file=sys.stderr, flush=True)
    report = {"architecture": args.architecture, "length": args.length, "batch_size": args.batch_size,
              "cores": cores, "torch": torch.__version__, "cases": [asdict(c) for c in results]}
    if args.json:
        print(json.dumps(report))
        return 0
    print(f"\n{args.architecture}, T = {args.length}, global batch {args.batch_size}, {cores} CPU cores, torch {torch.__version__}")
    print(f"{'device':<6} {'procs':>5} {'threads':>7} {'precision':>9} {'compile':>7} {'samples/s':>10}")
    for c in results:
        print(f"{c.device:<6} {c.processes:>5} {c.threads:>7} {c.precision:>9} {str(c.compile):>7} {c.samples_per_s:>10.1f}")
    single, threaded, ddp = (c.samples_per_s for c in results[:3])
    print(f"2 DDP processes: {ddp / single:.2f}x one 1-thread process, {ddp / threaded:.2f}x one {cores}-thread process")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
