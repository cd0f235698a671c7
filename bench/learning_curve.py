"""Learning curve: test activation MAE against training-set size, network against ridge and site mean.

    python -m bench.learning_curve DATASET [--sizes 25,50,100,all] [--split both] [--seeds 0]
        [--config examples/train/reference.yaml] [--epochs 40 | --samples-seen 6800] [--output curve]
        [--json PATH]

For each split kind and training-set size, writes a data set whose train
split is the first SIZE samples of a seeded permutation of the full
training pool (nested: each size contains the smaller ones) and whose
validation and test splits are fixed, trains the configured network on it
through ``model.train.train`` (what ``ecgi train`` runs) and evaluates it with
``model.evaluate.evaluate``, which fits the ridge and site-mean baselines on
the same training subset (ridge alpha on the same validation split).
With ``--samples-seen N`` every size trains for N / SIZE epochs, so small
training sets get as many optimiser steps as large ones (with a fixed
``--epochs`` the small ones are mostly under-trained, not short of data).

* ``anatomy`` -- the data set's own splits, which never share an anatomy
  (``ecgi dataset build`` splits by anatomy);
* ``random`` -- all samples pooled and split at random in the same
  proportions, so test patients share anatomies with training ones.

Writes OUTPUT.png (MAE against size) and its result, every run's metrics
with it, to bench/results/learning_curve.json (or --json PATH).
With three sizes or more it also fits each model's curve with a power law,
MAE = scale * N ** -exponent (least squares in log-log space), and says at
what training-set size the fitted network would reach half the ridge's
error, or that it never would because it does not gain on the ridge. A
power law has no floor, so the size it gives is a lower bound: any floor
the two models share (the grid's part of the targets) only moves it out.
Works on any ecgi data set (DATASET/manifest.json), e.g. a campaign's
``dataset`` directory or ``python -m model.synthetic DIR``.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import torch

from bench import harness
from bench.harness import REPO, Comparison, Run, add_json_option
from model.config import load_train_config
from model.data import SplitArrays, load_manifest, read_split
from model.evaluate import evaluate
from model.train import train
from solver.common.files import sha256_file
from solver.common.sites import LEAD_NAMES, SITE_NAMES


@dataclass
class Point:
    split: str
    size: int
    seed: int
    network_mae_ms: float
    ridge_mae_ms: float
    site_mean_mae_ms: float
    ridge_alpha: float


def take(arrays: SplitArrays, index: np.ndarray) -> SplitArrays:
    return SplitArrays(arrays.ecg[index], arrays.act[index], arrays.vm[index] if arrays.vm is not None else None,
                       [arrays.conditions[i] for i in index])


def join(parts: list[SplitArrays]) -> SplitArrays:
    return SplitArrays(np.concatenate([p.ecg for p in parts]), np.concatenate([p.act for p in parts]),
                       np.concatenate([p.vm for p in parts]), [c for p in parts for c in p.conditions])


def write_dataset(root: Path, splits: dict[str, SplitArrays], dt_ms: float) -> Path:
    """A data set in the documented shard format, one shard per split, statistics from its train split."""
    entries = {}
    for name, arrays in splits.items():
        path = root / name / "shard-00000.h5"
        path.parent.mkdir(parents=True, exist_ok=True)
        with h5py.File(path, "w") as f:
            f.attrs.update(format="ecgi-shard", complete=True)
            f.create_dataset("ecg", data=arrays.ecg)
            f.create_dataset("vm", data=arrays.vm)
            f.create_dataset("act", data=arrays.act)
            f.create_dataset("conditions", data=np.array(arrays.conditions, dtype=object), dtype=h5py.string_dtype())
        entries[name] = [{"file": f"{name}/shard-00000.h5", "samples": len(arrays.act), "sha256": sha256_file(path)}]
    train = splits["train"]
    stats = {
        "ecg_mean": train.ecg.mean(axis=(0, 1)), "ecg_std": train.ecg.std(axis=(0, 1)),
        "act_mean": np.nanmean(train.act, axis=0), "act_std": np.nanstd(train.act, axis=0),
        "vm_mean": train.vm.mean(axis=(0, 1)), "vm_std": train.vm.std(axis=(0, 1)),
    }
    manifest = {"format": "ecgi-dataset", "format_version": 1, "leads": list(LEAD_NAMES), "sites": list(SITE_NAMES),
                "dt_ms": dt_ms, "samples_per_step": int(train.ecg.shape[1]), "splits": entries,
                "statistics": {k: np.nan_to_num(v, nan=0.0).tolist() for k, v in stats.items()}}
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


def split_pools(dataset: Path, kind: str, seed: int) -> dict[str, SplitArrays]:
    """Train pool, validation and test of one split kind."""
    manifest = load_manifest(dataset)
    splits = {name: read_split(manifest, name, with_vm=True) for name in ("train", "validation", "test")}
    if kind == "anatomy":
        return splits
    pooled = join(list(splits.values()))
    order = np.random.default_rng(seed).permutation(len(pooled.act))
    sizes = [len(splits[n].act) for n in ("train", "validation")]
    return {"train": take(pooled, order[:sizes[0]]), "validation": take(pooled, order[sizes[0]:sum(sizes)]),
            "test": take(pooled, order[sum(sizes):])}


def run_point(pools: dict[str, SplitArrays], kind: str, size: int, seed: int, args, work: Path) -> Point:
    order = np.random.default_rng(1000 + seed).permutation(len(pools["train"].act))
    splits = {"train": take(pools["train"], order[:size]), "validation": pools["validation"], "test": pools["test"]}
    data = write_dataset(work / f"{kind}-{size}-{seed}" / "data", splits, args.dt_ms)
    config = load_train_config(args.config)
    config.seed, config.tensorboard = seed, False
    run = data.parent / "run"
    epochs = max(1, round(args.samples_seen / size)) if args.samples_seen else args.epochs
    train(config, data, run, epochs=epochs, progress=False)
    metrics = evaluate(run / "best.pt", data, "test").metrics()
    base = metrics["baselines"]
    point = Point(kind, size, seed, metrics["act_mae_ms"], base["ridge"]["act_mae_ms"], base["site_mean"]["act_mae_ms"],
                  base["ridge"]["details"]["alpha"])
    print(f"  {kind:<8} {size:>6} seed {seed}: network {point.network_mae_ms:6.2f} ms, ridge {point.ridge_mae_ms:6.2f} ms, "
          f"site mean {point.site_mean_mae_ms:6.2f} ms", file=sys.stderr, flush=True)
    return point


def mean_mae(points: list[Point], kind: str, size: int, key: str) -> float:
    """One model's test MAE (``key``) at one size, averaged over the seeds."""
    return float(np.mean([getattr(p, key) for p in points if p.split == kind and p.size == size]))


@dataclass
class PowerLaw:
    """MAE(N) = scale * N ** -exponent."""

    scale: float
    exponent: float


def fit_power_law(sizes: list[int], maes: list[float]) -> PowerLaw:
    """Least squares of log MAE against log N: a straight line on the figure's axes."""
    slope, intercept = np.polyfit(np.log(sizes), np.log(maes), 1)
    return PowerLaw(float(np.exp(intercept)), float(-slope))


def size_for_ratio(network: PowerLaw, ridge: PowerLaw, ratio: float) -> float | None:
    """Training-set size where the fitted network's MAE is ``ratio`` times the fitted ridge's.

    None where the network does not fall faster than the ridge: their ratio
    then never decreases with more data of the same kind.
    """
    gain = network.exponent - ridge.exponent
    if gain <= 1e-9:
        return None
    return float((network.scale / (ratio * ridge.scale)) ** (1.0 / gain))


def extrapolate(points: list[Point], kind: str, ratio: float = 0.5) -> dict | None:
    """Both models' power laws on one split kind, and the size where the network reaches ``ratio`` x the ridge."""
    sizes = sorted({p.size for p in points if p.split == kind})
    if len(sizes) < 3:
        return None
    network, ridge = (fit_power_law(sizes, [mean_mae(points, kind, s, key) for s in sizes])
                      for key in ("network_mae_ms", "ridge_mae_ms"))
    return {"network": network.__dict__, "ridge": ridge.__dict__, "ratio": ratio,
            "size_for_ratio": size_for_ratio(network, ridge, ratio)}


def figure(points: list[Point], path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.5, 4.2))
    ax = fig.subplots()
    for i, kind in enumerate(sorted({p.split for p in points})):
        for key, style, label in (("network_mae_ms", "-o", "network"), ("ridge_mae_ms", "--s", "ridge"),
                                  ("site_mean_mae_ms", ":", "site mean")):
            sizes = sorted({p.size for p in points if p.split == kind})
            values = [mean_mae(points, kind, s, key) for s in sizes]
            ax.plot(sizes, values, style, color=f"C{i}", label=f"{label}, {kind} split")
    ax.set(xscale="log", xlabel="training samples", ylabel="test activation MAE (ms)", title="learning curve")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def figures(points: list[Point], kinds: list[str], sizes: list[int]) -> tuple[list[harness.Figure], list[Comparison]]:
    """The network's test MAE at each size, beside the ridge's and the site mean's on the same subset."""
    found, compared = [], []
    for kind in kinds:
        for size in sizes:
            name = f"network, {size:,} training patients" + (", random split" if kind == "random" else "")
            found.append(harness.Figure(name, mean_mae(points, kind, size, "network_mae_ms"), "ms"))
            compared += [Comparison(name, "ridge", "baseline", mean_mae(points, kind, size, "ridge_mae_ms"), "ms"),
                         Comparison(name, "site mean", "baseline", mean_mae(points, kind, size, "site_mean_mae_ms"), "ms")]
    return found, compared


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", type=Path, help="an ecgi data set directory (with manifest.json)")
    parser.add_argument("--sizes", default="25,50,100,all", help="training-set sizes; 'all' is the whole pool")
    parser.add_argument("--split", choices=["anatomy", "random", "both"], default="both")
    parser.add_argument("--seeds", default="0", help="comma-separated seeds (training and subset draw)")
    parser.add_argument("--config", type=Path, default=REPO / "examples" / "train" / "reference.yaml")
    parser.add_argument("--epochs", type=int, default=40, help="epochs per run (40)")
    parser.add_argument("--samples-seen", type=int, default=0,
                        help="train each size for this many samples (epochs = N / size) instead of --epochs")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1)")
    parser.add_argument("--output", type=Path, default=Path("learning-curve"), help="the figure, OUTPUT.png")
    add_json_option(parser, "learning_curve")
    args = parser.parse_args()
    bench = Run("learning_curve", f"Learning curve on {args.dataset.name}: test activation MAE", "accuracy")
    torch.set_num_threads(args.threads)
    manifest = load_manifest(args.dataset)
    args.dt_ms = manifest.dt_ms
    kinds = ["anatomy", "random"] if args.split == "both" else [args.split]
    seeds = [int(s) for s in args.seeds.split(",")]
    pool = manifest.split_size("train")
    sizes = sorted({pool if s == "all" else min(int(s), pool) for s in args.sizes.split(",")})
    points = []
    with tempfile.TemporaryDirectory() as tmp:
        for kind in kinds:
            pools = split_pools(args.dataset, kind, seed=0)
            points += [run_point(pools, kind, size, seed, args, Path(tmp)) for size in sizes for seed in seeds]
    args.output.parent.mkdir(parents=True, exist_ok=True)
    report = {"dataset": str(args.dataset), "config": str(args.config), "epochs": args.epochs,
              "samples_seen": args.samples_seen,
              "validation": manifest.split_size("validation"), "test": manifest.split_size("test"),
              "points": [p.__dict__ for p in points],
              "extrapolation": {kind: extrapolate(points, kind) for kind in kinds}}
    bench.write(args.json, *figures(points, kinds, sizes), details=report)
    figure(points, args.output.with_suffix(".png"))
    print(f"\n{'split':<8} {'size':>6} {'network':>8} {'ridge':>8} {'site mean':>9}  (test activation MAE, ms)")
    for kind in kinds:
        for size in sizes:
            network, ridge, site_mean = (mean_mae(points, kind, size, key)
                                         for key in ("network_mae_ms", "ridge_mae_ms", "site_mean_mae_ms"))
            print(f"{kind:<8} {size:>6} {network:>8.2f} {ridge:>8.2f} {site_mean:>9.2f}")
    for kind, fit in report["extrapolation"].items():
        if fit is None:
            continue
        where = (f"at about {fit['size_for_ratio']:,.0f} training samples (a power law has no floor: "
                 "a lower bound)" if fit["size_for_ratio"] else "never: the network does not gain on the ridge")
        print(f"{kind}: MAE ~ N^-{fit['network']['exponent']:.2f} (network), N^-{fit['ridge']['exponent']:.2f} "
              f"(ridge); half the ridge's error {where}")
    print(f"wrote {args.output.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
