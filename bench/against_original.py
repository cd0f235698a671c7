"""Training speed side by side with the seed method's published training code.

    git clone https://github.com/landajuela/cardiac_ml /tmp/cardiac_ml
    pip install tqdm  # the original's one requirement that ecgi does not install
    python -m bench.against_original --original /tmp/cardiac_ml [--samples 512] [--epochs 4] [--threads 1] [--json PATH]

One synthetic data set (model/synthetic.py) is written twice: as ecgi's
shards and, sample for sample, as the original code's ``pECGData_*.npy`` /
``VmData_*.npy`` pairs (10 electrode potentials whose 12 leads are exactly
ecgi's, and the 75 transmembrane voltages). Both codes then train their
activation-time network (the original's ``SqueezeNet`` version 1_1 from
``learn_ecg2time.py``, ecgi's ``reference_act``) on the same samples, with
``--threads`` torch threads, global batch 32 and the 0-40 sample onset shift:

* the original: its ``Ecg2TimeDataset`` (whole set in memory, one sample
  per ``__getitem__``), a ``torch.utils.data.DataLoader`` and one training
  pass of its ``TrainableModel.evaluate`` per epoch, as ``learn_ecg2time.py``
  runs it, with ``--original-workers`` loader processes (0: the main one);
* ecgi: ``model.train.train``, the loop ``ecgi train`` runs, with the
  training set held in memory (``data.in_memory: always``) and streamed
  from its compressed shards (``never``); with more than one thread also
  as that many one-thread DDP processes (gloo), ``ecgi train``'s way of
  using the cores of a node.

Each is timed over the epochs after the first; the loaders are also timed
alone (a pass over the batches, no network). Rates are given per wall and
per CPU second of the process: CPU seconds are not stretched by other jobs
on a shared machine, so their ratio holds there too. Nothing of the
original code is copied: it is imported from the clone given.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import sys
import tempfile
import time
import types
from pathlib import Path

import numpy as np
import torch

from bench.harness import Comparison, Figure, Run, add_json_option
from bench.train_throughput import Case, loader_rate, measure
from model.data import load_manifest, read_split
from model.synthetic import write_synthetic_dataset

BATCH = 32


def write_original_pairs(dataset: Path, folder: Path) -> int:
    """The training split as the original code's file pairs; returns their number.

    The original builds its 12 leads from 10 electrode potentials
    (RA LA LL RL V1..V6, Wilson's terminal from RA, LA, LL). With RA = RL = 0,
    LA = I, LL = II and each chest electrode its lead plus Wilson's terminal,
    the leads it computes are ecgi's, to rounding.
    """
    arrays = read_split(load_manifest(dataset), "train", with_vm=True)
    folder.mkdir(parents=True, exist_ok=True)
    for i, (ecg, vm) in enumerate(zip(arrays.ecg, arrays.vm)):
        lead_i, lead_ii = ecg[:, 0], ecg[:, 1]
        wilson = (lead_i + lead_ii) / 3.0
        electrodes = np.zeros((ecg.shape[0], 10), dtype=np.float64)
        electrodes[:, 1], electrodes[:, 2] = lead_i, lead_ii
        electrodes[:, 4:10] = ecg[:, 6:12] + wilson[:, None]
        np.save(folder / f"pECGData_sample{i:05d}.npy", electrodes)
        np.save(folder / f"VmData_sample{i:05d}.npy", vm.astype(np.float64))
    return len(arrays.ecg)


def _original_modules(root: Path) -> tuple[types.ModuleType, types.ModuleType, types.ModuleType]:
    """The original's data interface, training loop and training script, imported from its clone."""
    # cardiac_ml/ has no __init__.py: a package module whose path is the clone's folder lets
    # the original's own `from cardiac_ml.x import ...` lines find their modules there.
    package = types.ModuleType("cardiac_ml")
    package.__path__ = [str(root / "cardiac_ml")]
    sys.modules["cardiac_ml"] = package
    if importlib.util.find_spec("torchsummary") is None:
        # learn_ecg2time.py imports it at the top for a printed summary this benchmark never asks for
        sys.modules["torchsummary"] = types.ModuleType("torchsummary")
        sys.modules["torchsummary"].summary = None
    import cardiac_ml.data_interface as data_interface
    import cardiac_ml.trainable_model as trainable_model

    spec = importlib.util.spec_from_file_location("learn_ecg2time", root / "learn_ecg2time.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)  # its training runs under `if __name__ == '__main__'` only
    return data_interface, trainable_model, script


def original_rates(root: Path, pairs_dir: Path, epochs: int, workers: int, threads: int) -> dict[str, float]:
    """Samples per wall and CPU second of the original's loader alone and of its training epochs."""
    from torch.utils.data import DataLoader

    torch.set_num_threads(1)  # the loaders are timed on one thread, ecgi's too

    data_interface, trainable_model, script = _original_modules(root)
    with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):  # it prints a line per file read
        pairs = data_interface.read_data_dirs([str(pairs_dir)])
        dataset = data_interface.Ecg2TimeDataset(pairs, list(range(75)), 500, "normalized_unit", "none", True)
    loader = DataLoader(dataset, shuffle=True, batch_size=BATCH, num_workers=workers)
    loader_cpu = []
    for _ in range(2):
        start = time.process_time()
        count = sum(len(x) for x, _ in loader)
        loader_cpu.append(count / (time.process_time() - start))

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    network = script.SqueezeNet(version="1_1", dropout=0.1, kernel_size=3)
    optimiser = torch.optim.Adam(network.parameters(), lr=1e-3)
    trainer = trainable_model.TrainableModel(torch.nn.MSELoss(), optimiser, None, None, "cpu", progressbar=False)
    wall, cpu = [], []
    for _ in range(epochs):
        start_wall, start_cpu = time.perf_counter(), time.process_time()
        trainer.evaluate(network, loader, training=True)
        wall.append(len(dataset) / (time.perf_counter() - start_wall))
        cpu.append(len(dataset) / (time.process_time() - start_cpu))
    timed = slice(1, None) if epochs > 1 else slice(None)
    return {"parameters": sum(p.numel() for p in network.parameters()),
            "loader_per_cpu_s": max(loader_cpu[1:]),
            "train_per_s": float(np.mean(wall[timed])), "train_per_cpu_s": float(np.mean(cpu[timed]))}


def ecgi_rates(dataset: Path, loading: str, epochs: int, processes: int, threads: int) -> dict[str, float]:
    """Samples per wall and CPU second (rank 0) of ``ecgi train``'s loop and of its loader alone (one thread)."""
    args = argparse.Namespace(epochs=epochs, batch_size=BATCH, architecture="reference_act", workers=0)
    case = Case("cpu", processes, threads, loading=loading)
    per_s = measure(case, args, dataset)
    from model.network import build_network

    return {"parameters": sum(p.numel() for p in build_network("reference_act").parameters()),
            "loader_per_cpu_s": loader_rate(dataset, loading, BATCH, with_vm=False),
            "train_per_s": per_s, "train_per_cpu_s": case.samples_per_cpu_s}


def figures(results: dict[str, dict[str, float]], threads: int) -> tuple[list[Figure], list[Comparison]]:
    """ecgi's training rates, each against the original's on the same samples and threads."""
    original = results["original"]["train_per_s"]
    found, compared = [], []
    for code, rates in results.items():
        if code == "original":
            continue
        name = f"{code}, {threads} thread{'s' if threads > 1 else ''}"
        found.append(Figure(name, rates["train_per_s"], "samples/s"))
        compared.append(Comparison(name, "original training code", "peer", original, "samples/s"))
    return found, compared


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--original", type=Path, required=True,
                        help="a clone of https://github.com/landajuela/cardiac_ml")
    parser.add_argument("--samples", type=int, default=512, help="training samples (512)")
    parser.add_argument("--epochs", type=int, default=4, help="epochs per code, the first one untimed (4)")
    parser.add_argument("--original-workers", type=int, default=0,
                        help="DataLoader processes of the original (0; its script uses 20)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of each code (1)")
    add_json_option(parser, "against_original")
    args = parser.parse_args()
    if importlib.util.find_spec("tqdm") is None:
        parser.error("the original code needs tqdm (its requirements.txt): pip install tqdm")
    if not (args.original / "cardiac_ml" / "data_interface.py").is_file():
        parser.error(f"{args.original} is not a clone of the original code (no cardiac_ml/data_interface.py); "
                     "clone https://github.com/landajuela/cardiac_ml and pass its folder")
    bench = Run("against_original", "Training side by side with the original code", "throughput")
    with tempfile.TemporaryDirectory() as tmp:
        dataset = Path(tmp) / "ecgi"
        write_synthetic_dataset(dataset, train=args.samples, validation=BATCH, test=2, samples=500)
        write_original_pairs(dataset, Path(tmp) / "original")
        results = {
            "original": original_rates(args.original, Path(tmp) / "original", args.epochs, args.original_workers,
                                       args.threads),
            "ecgi, in memory": ecgi_rates(dataset, "always", args.epochs, 1, args.threads),
            "ecgi, streamed": ecgi_rates(dataset, "never", args.epochs, 1, args.threads),
        }
        if args.threads > 1:
            results[f"ecgi, {args.threads} DDP"] = ecgi_rates(dataset, "always", args.epochs, args.threads, 1)
    bench.write(args.json, *figures(results, args.threads),
                details={"samples": args.samples, "epochs": args.epochs, "threads": args.threads, "codes": results})
    if args.json == "-":
        return 0
    base = results["original"]
    print(f"{args.samples} training samples, T = 500, batch {BATCH}, {args.threads} thread(s), torch {torch.__version__}")
    print(f"{'code':<16} {'parameters':>10} {'loader/CPU s':>12} {'train/s':>8} {'train/CPU s':>11} {'vs original':>11}")
    for name, r in results.items():
        print(f"{name:<16} {r['parameters']:>10,} {r['loader_per_cpu_s']:>12.0f} {r['train_per_s']:>8.1f} "
              f"{r['train_per_cpu_s']:>11.1f} {r['train_per_s'] / base['train_per_s']:>10.2f}x")
    print("(vs original: training samples per wall second; per CPU second are the rank-0 process's)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
