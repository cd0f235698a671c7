"""Campaign throughput: Parsl overhead per task and core utilisation.

    python -m bench.campaign_throughput [--samples 200] [--slurm] [--json PATH]

Runs a campaign of small simulations (3 mm heart, Mitchell–Schaeffer,
100 ms) on the local cores, or with --slurm through a private single-node
SLURM started for the occasion (workflow/local_slurm.py), and reports:

* core utilisation = sum of the samples' own wall times / (wall time x
  cores), over the whole command and over the window from the first sample's
  start to the last one's end (the whole command adds the fixed costs of
  starting Parsl's executor and building the data set);
* overhead per task = (campaign wall time x simultaneous slots - sum of
  sample wall times) / samples: what Parsl, process start-up and the driver
  add to each sample;
* samples per minute.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from bench.harness import REPO, Comparison, Figure, Run, add_json_option

#: The core utilisation the driver set out to reach while samples flow.
GOAL_UTILISATION = 0.90


def campaign_spec(directory: Path, samples: int, slurm=None) -> Path:
    resources: dict = {"executor": "local", "retries": 0}
    if slurm is not None:
        resources = {"executor": "slurm", "retries": 0, "slurm": {
            "partition": slurm.partition, "cores_per_node": os.cpu_count(), "walltime": "01:00:00",
            "worker_init": slurm.worker_init, "driver_address": "127.0.0.1"}}
    spec = {
        "name": "bench", "output_dir": str(directory / "campaign"), "samples": samples, "samples_per_folder": 50,
        "seed": 0, "geometry": {"count": 10},
        "parameters": {"heart_scale": {"kind": "uniform", "low": 0.9, "high": 1.1},
                       "condition": {"kind": "choice", "values": ["normal", "lbbb", "rbbb"]}},
        "solver": {"dx_mm": 3.0, "dt_ms": 0.1, "ionic_model": "mitchell_schaeffer", "duration_ms": 100},
        "resources": resources,
    }
    path = directory / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def run(samples: int, slurm=None) -> dict:
    from workflow.mpi_env import clean_mpi_env

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        spec = campaign_spec(tmp, samples, slurm)
        env = clean_mpi_env({**os.environ, **(slurm.env if slurm else {})})
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "workflow.cli", "campaign", "run", str(spec)],
                       check=True, env=env, cwd=REPO, capture_output=True)
        wall = time.perf_counter() - start
        records = [json.loads(p.read_text()) for p in (tmp / "campaign" / "records").rglob("*.json")]
    busy = sum(r["wall_time_s"] for r in records if r["state"] == "done")
    cores = os.cpu_count() or 1
    window = max(r["finished_at"] for r in records) - min(r["started_at"] for r in records)
    return {
        "executor": "slurm" if slurm else "local", "samples": samples, "done": sum(r["state"] == "done" for r in records),
        "wall_s": wall, "cores": cores, "mean_sample_s": busy / max(len(records), 1),
        "core_utilisation": busy / (wall * cores), "overhead_per_task_s": (wall * cores - busy) / samples,
        "window_s": window, "window_core_utilisation": busy / (window * cores),
        "window_overhead_per_task_s": (window * cores - busy) / samples,
        "samples_per_min": samples / wall * 60,
    }


def figures(results: list[dict]) -> tuple[list[Figure], list[Comparison]]:
    """Samples per minute and core utilisation while samples flow, per executor."""
    found, compared = [], []
    for r in results:
        executor = {"slurm": "SLURM"}.get(r["executor"], r["executor"])
        utilisation = f"{executor}: core utilisation, first to last sample"
        found += [Figure(f"{executor}: samples/min", r["samples_per_min"], "samples/min"),
                  Figure(utilisation, r["window_core_utilisation"], "fraction"),
                  Figure(f"{executor}: overhead per task", r["window_overhead_per_task_s"], "s")]
        compared.append(Comparison(utilisation, "goal", "goal", GOAL_UTILISATION, "fraction"))
    return found, compared


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--slurm", action="store_true", help="also run through a private local SLURM")
    add_json_option(parser, "campaign_throughput")
    args = parser.parse_args()
    bench = Run("campaign_throughput", f"Campaign, {args.samples} small samples through Parsl", "throughput")
    results = [run(args.samples)]
    if args.slurm:
        from workflow.local_slurm import SlurmCluster

        with SlurmCluster() as cluster:
            results.append(run(args.samples, cluster))
    bench.write(args.json, *figures(results), details=results)
    if args.json == "-":
        return
    for r in results:
        print(f"{r['executor']:>6}: {r['done']}/{r['samples']} samples in {r['wall_s']:.1f} s on {r['cores']} cores: "
              f"{r['samples_per_min']:.1f} samples/min, mean sample {r['mean_sample_s']:.2f} s, "
              f"core utilisation {100 * r['core_utilisation']:.0f}% overall, "
              f"{100 * r['window_core_utilisation']:.0f}% from first to last sample "
              f"(overhead {r['window_overhead_per_task_s'] * 1000:.0f} ms/task there)")


if __name__ == "__main__":
    main()
