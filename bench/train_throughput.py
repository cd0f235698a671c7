"""Training throughput: samples per second of ``ecgi train``'s own loop.

    python -m bench.train_throughput [--architecture reference_act] [--samples 256] [--loading both] [--json PATH]

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

``--loading`` times each case with the training set streamed from the
shards (``data.in_memory: never``), held in memory (``always``) or both, on
the same data; ``--cases`` picks cases (``cpu-1x1`` is one process on one
thread).  Before the training cases it times the loader alone (one epoch of
batches with the augmentation, no network) for each way of loading.  Rates
are also given per CPU second of the (rank-0) process, which other
processes on a shared machine do not change.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.multiprocessing as mp

from bench.harness import Comparison, Figure, Run, add_json_option
from model.config import config_from_dict
from model.network import ARCHITECTURES
from model.synthetic import write_synthetic_dataset
from model.train import train


@dataclass
class Case:
    device: str
    processes: int
    threads: int
    precision: str = "fp32"
    compile: bool = False
    loading: str = "never"
    samples_per_s: float = 0.0
    samples_per_cpu_s: float = 0.0

    @property
    def name(self) -> str:
        return f"{self.device}-{self.processes}x{self.threads}"


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
    steps: dict[int, list[tuple[float, int]]] = {}

    def observe(info) -> None:
        steps.setdefault(info.epoch, []).append((time.process_time(), len(info.indices)))

    history = train(config_from_dict(config), data, Path(out) / "run", progress=False, observer=observe)
    if rank == 0:
        Path(out, "history.json").write_text(json.dumps(history))
        Path(out, "cpu.json").write_text(json.dumps(_cpu_rate(steps)))


def _cpu_rate(steps: dict[int, list[tuple[float, int]]]) -> float:
    """Samples per CPU second of this process over the timed epochs, from step to step.

    CPU time, unlike wall time, is not stretched by other processes on a
    shared machine, so it compares two ways of loading fairly there.
    """
    timed = [s for epoch, s in sorted(steps.items()) if epoch > 0] or list(steps.values())
    samples = sum(n for epoch in timed for _, n in epoch[1:])
    seconds = sum(epoch[-1][0] - epoch[0][0] for epoch in timed)
    return samples / seconds if seconds > 0 else float("nan")


def measure(case: Case, args: argparse.Namespace, data: Path) -> float:
    config = {
        "epochs": args.epochs, "batch_size": args.batch_size, "tensorboard": False,
        "network": {"architecture": args.architecture}, "precision": case.precision, "compile": case.compile,
        "data": {"num_workers": args.workers, "in_memory": case.loading},
    }
    with tempfile.TemporaryDirectory() as out:
        mp.spawn(_worker, args=(case, _free_port(), config, str(data), out), nprocs=case.processes, join=True)
        history = json.loads(Path(out, "history.json").read_text())
        case.samples_per_cpu_s = json.loads(Path(out, "cpu.json").read_text())
    timed = history[1:] or history
    return sum(r["samples_per_s"] for r in timed) / len(timed)


def cases(cores: int, loadings: list[str], names: list[str] | None) -> list[Case]:
    found = [Case("cpu", 1, 1), Case("cpu", 1, cores), Case("cpu", 2, max(1, cores // 2))]
    if torch.cuda.is_available():
        found += [Case("cuda", 1, cores, precision, compiled) for precision in ("fp32", "bf16") for compiled in (False, True)]
    found = [c for c in found if names is None or c.name in names]
    return [Case(c.device, c.processes, c.threads, c.precision, c.compile, loading) for c in found for loading in loadings]


def loader_rate(data: Path, loading: str, batch_size: int, with_vm: bool, epochs: int = 3) -> float:
    """Samples per CPU second of the training loader alone: read, shift, scale and batch, one thread."""
    from torch.utils.data import DataLoader

    from model.data import InMemoryDataset, ShardDataset, load_manifest

    torch.set_num_threads(1)
    manifest = load_manifest(data)
    dataset = (InMemoryDataset if loading == "always" else ShardDataset)(
        manifest, "train", with_vm=with_vm, max_shift_ms=40, seed=0)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True,
                        collate_fn=InMemoryDataset.collate if loading == "always" else None)
    rates = []
    for epoch in range(epochs):
        dataset.set_epoch(epoch)
        start = time.process_time()  # CPU time: not stretched by other processes on a shared machine
        count = sum(len(batch["ecg"]) for batch in loader)
        rates.append(count / (time.process_time() - start))
    dataset.close()
    return max(rates[1:] or rates)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--architecture", default="reference_act",
                        choices=ARCHITECTURES)
    parser.add_argument("--samples", type=int, default=256, help="training samples in the synthetic set (256)")
    parser.add_argument("--length", type=int, default=500, help="samples per trace (500)")
    parser.add_argument("--batch-size", type=int, default=32, help="global batch (32)")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per case, the first one untimed (3)")
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers per process (0)")
    parser.add_argument("--loading", choices=["stream", "memory", "both"], default="both",
                        help="training set streamed from the shards, held in memory, or each in turn (both)")
    parser.add_argument("--cases", help="comma-separated cases to run, e.g. cpu-1x1 (default: all)")
    add_json_option(parser, "train_throughput")
    args = parser.parse_args()
    cores = len(os.sched_getaffinity(0))
    loadings = {"stream": ["never"], "memory": ["always"], "both": ["never", "always"]}[args.loading]
    names = args.cases.split(",") if args.cases else None
    with_vm = args.architecture != "reference_act"
    bench = Run("train_throughput", "Training, samples per CPU second", "throughput")
    quiet = args.json == "-"
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        write_synthetic_dataset(data, train=args.samples, validation=args.batch_size, test=2, samples=args.length)
        loader_rates = {loading: loader_rate(data, loading, args.batch_size, with_vm) for loading in loadings}
        if not quiet:
            for loading, rate in loader_rates.items():
                print(f"  loader alone, {_LOADING[loading]:<9} {rate:9.0f} samples per CPU second", file=sys.stderr, flush=True)
        results = []
        for case in cases(cores, loadings, names):
            case.samples_per_s = measure(case, args, data)
            results.append(case)
            if not quiet:
                print(f"  {case.device:<5} {case.processes} proc x {case.threads} thr  {case.precision:<5} "
                      f"compile={'on' if case.compile else 'off':<3}  {_LOADING[case.loading]:<9} "
                      f"{case.samples_per_s:9.1f} samples/s ({case.samples_per_cpu_s:.1f} per CPU second)",
                      file=sys.stderr, flush=True)
    report = {"architecture": args.architecture, "length": args.length, "batch_size": args.batch_size,
              "cores": cores, "torch": torch.__version__, "samples": args.samples,
              "loader_samples_per_s": {_LOADING[k]: v for k, v in loader_rates.items()},
              "cases": [asdict(c) for c in results]}
    bench.write(args.json, *figures(results, loader_rates), details=report)
    if quiet:
        return 0
    print(f"\n{args.architecture}, T = {args.length}, global batch {args.batch_size}, {cores} CPU cores, torch {torch.__version__}")
    print(f"{'device':<6} {'procs':>5} {'threads':>7} {'precision':>9} {'compile':>7} {'loading':>9} {'samples/s':>10} "
          f"{'per CPU s':>10}")
    for c in results:
        print(f"{c.device:<6} {c.processes:>5} {c.threads:>7} {c.precision:>9} {str(c.compile):>7} "
              f"{_LOADING[c.loading]:>9} {c.samples_per_s:>10.1f} {c.samples_per_cpu_s:>10.1f}")
    for loading in loadings:
        rates = {c.name: c.samples_per_s for c in results if c.loading == loading and c.device == "cpu"}
        single, ddp = rates.get("cpu-1x1"), rates.get(f"cpu-2x{max(1, cores // 2)}")
        if single and ddp:
            print(f"{_LOADING[loading]}: 2 DDP processes {ddp / single:.2f}x one 1-thread process")
    if len(loadings) == 2:
        for c in results:
            if c.loading == "always":
                before = next(r for r in results if r.loading == "never" and r.name == c.name
                              and (r.precision, r.compile) == (c.precision, c.compile))
                print(f"{c.name} {c.precision}{' compiled' if c.compile else ''}: in memory "
                      f"{c.samples_per_s / before.samples_per_s:.2f}x streamed in samples/s, "
                      f"{c.samples_per_cpu_s / before.samples_per_cpu_s:.2f}x per CPU second")
    return 0


_LOADING = {"never": "streamed", "always": "in memory"}


def case_label(case: Case) -> str:
    """ "1 process x 1 thread", "2 DDP processes x 1 thread", "GPU, bf16 compiled"."""
    if case.device != "cpu":
        return f"GPU, {case.precision}{' compiled' if case.compile else ''}"
    if case.processes == 1:
        return f"1 process x {case.threads} thread{'s' if case.threads > 1 else ''}"
    return f"{case.processes} DDP processes x {case.threads} thread{'s' if case.threads > 1 else ''}"


def figures(results: list[Case], loader_rates: dict[str, float]) -> tuple[list[Figure], list[Comparison]]:
    """Training samples per CPU second of each case and of the loader alone, in memory against streamed
    (the way before) where both were timed; per CPU second, other jobs on the machine do not change them."""
    found, compared = [], []
    streamed = {case_label(c): c.samples_per_cpu_s for c in results if c.loading == "never"}
    for c in results:
        name = f"{case_label(c)}, {_LOADING[c.loading]}: training"
        found.append(Figure(name, c.samples_per_cpu_s, "samples/CPU s"))
        if c.loading == "always" and case_label(c) in streamed:
            compared.append(Comparison(name, "streamed from the shards (before)", "previous", streamed[case_label(c)],
                                       "samples/CPU s"))
    for loading, rate in loader_rates.items():
        found.append(Figure(f"loader alone, {_LOADING[loading]}", rate, "samples/CPU s"))
    if len(loader_rates) == 2:
        compared.append(Comparison("loader alone, in memory", "streamed from the shards (before)", "previous",
                                   loader_rates["never"], "samples/CPU s"))
    return found, compared


if __name__ == "__main__":
    raise SystemExit(main())
