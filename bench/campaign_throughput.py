#!/usr/bin/env python
"""Campaign throughput: Parsl overhead per task and core utilisation; cost estimate against the run.

    python bench/campaign_throughput.py [--samples 200] [--slurm] [--json]
    python bench/campaign_throughput.py --spec SPEC [--samples N] [--geometries G] [--json]

Runs a campaign of small simulations (3 mm heart, Mitchell–Schaeffer,
100 ms) on the local cores, or with --slurm through a private single-node
SLURM started for the occasion (tests/slurm_cluster.py), and reports:

* core utilisation = sum of the samples' own wall times / (wall time x
  cores), over the whole command and over the window from the first sample's
  start to the last one's end (the whole command adds the fixed costs of
  starting Parsl's executor and building the data set);
* overhead per task = (campaign wall time x simultaneous slots - sum of
  sample wall times) / samples: what Parsl, process start-up and the driver
  add to each sample;
* samples per minute.

With --spec, it runs ``ecgi campaign plan --json`` and then ``ecgi campaign run`` on a copy of
SPEC (in a temporary directory; --samples and --geometries scale it down) and sets the plan's
estimate against what the run spent: the CPU seconds of every process of the run (polled from
/proc: driver, interchange, workers with their warm-up), the tasks' own CPU seconds (the sample
records) and core-hours as cores x wall time of the samples, with the machine's load average
before, during and after.
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

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def campaign_spec(directory: Path, samples: int, slurm=None) -> Path:
    resources: dict = {"executor": "local", "retries": 0}
    if slurm is not None:
        resources = {"executor": "slurm", "retries": 0, "slurm": {
            "partition": slurm.partition, "cores_per_node": os.cpu_count(), "walltime": "01:00:00",
            "worker_init": slurm.worker_init, "driver_address": "127.0.0.1"}}
    spec = {
        "name": "bench", "output_dir": str(directory / "campaign"), "samples": samples, "samples_per_shard": 50,
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


def _tree_cpu(root, campaign_dir: Path, seen: dict) -> None:
    """Record the CPU seconds of the driver ``root``, its descendants and every process started for
    the campaign (Parsl's worker pool leaves the driver's tree), the last value seen of each."""
    import psutil

    from workflow.processes import campaign_processes

    try:
        processes = [root, *root.children(recursive=True)]
    except psutil.Error:
        processes = []
    for pid in campaign_processes(campaign_dir):
        try:
            processes.append(psutil.Process(pid))
        except psutil.Error:
            continue
    for process in processes:
        try:
            times = process.cpu_times()
            seen[process.pid] = times.user + times.system
        except psutil.Error:
            continue


def estimate_vs_run(spec_path: Path, samples: int | None, geometries: int | None) -> dict:
    import psutil

    from workflow.mpi_env import clean_mpi_env

    data = yaml.safe_load(spec_path.read_text())
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data["output_dir"] = str(tmp / "campaign")
        if samples:
            data["samples"] = samples
            data["samples_per_shard"] = min(data.get("samples_per_shard", 50), samples)
        if geometries:
            data.setdefault("geometry", {})["count"] = geometries
        spec = tmp / "spec.yaml"
        spec.write_text(yaml.safe_dump(data))
        # the workers must import this checkout's code, whichever ecgi is installed
        env = clean_mpi_env({**os.environ, "PYTHONPATH": str(REPO)})
        command = [sys.executable, "-m", "workflow.cli", "campaign"]
        loads = [os.getloadavg()[0]]
        plan = subprocess.run([*command, "plan", str(spec), "--json"], check=True, env=env, cwd=REPO,
                              capture_output=True, text=True)
        estimate = json.loads(plan.stdout)["estimate"]
        loads.append(os.getloadavg()[0])
        seen: dict[int, float] = {}
        start = time.perf_counter()
        driver = subprocess.Popen([*command, "run", str(spec)], env=env, cwd=REPO,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        root = psutil.Process(driver.pid)
        while driver.poll() is None:
            _tree_cpu(root, (tmp / "campaign").resolve(), seen)
            loads.append(os.getloadavg()[0])
            time.sleep(1.0)
        wall = time.perf_counter() - start
        if driver.returncode != 0:
            raise SystemExit(f"ecgi campaign run failed ({driver.returncode})")
        records = [json.loads(p.read_text()) for p in (tmp / "campaign" / "records").rglob("*.json")]
    done = [r for r in records if r["state"] == "done"]
    cores = estimate["cores"]
    window = max(r["finished_at"] for r in done) - min(r["started_at"] for r in done)
    task_cpu = sorted(r.get("cpu_time_s", 0.0) for r in done)
    return {
        "spec": str(spec_path), "samples": len(records), "done": len(done), "cores": cores,
        "estimate_core_hours": estimate["core_hours"], "estimate_range": [estimate["core_hours_low"],
                                                                           estimate["core_hours_high"]],
        "estimate_sample_s": estimate["mean_sample_s"], "estimate_wall_min": estimate["wall_hours"] * 60,
        "measured_cpu_core_hours": sum(seen.values()) / 3600,  # every process of the run
        "measured_task_core_hours": sum(task_cpu) / 3600,
        "measured_window_core_hours": window * cores / 3600,  # what an allocation of these cores pays
        "task_cpu_s_median": task_cpu[len(task_cpu) // 2], "task_cpu_s_mean": sum(task_cpu) / len(task_cpu),
        "wall_min": wall / 60, "load_plan": loads[:2], "load_run": [min(loads[2:] or [0]), max(loads[2:] or [0])],
        "model": estimate["model"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--slurm", action="store_true", help="also run through a private local SLURM")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--spec", type=Path, help="estimate against run for this campaign spec")
    parser.add_argument("--geometries", type=int, help="with --spec: anatomies (default: the spec's)")
    args = parser.parse_args()
    if args.spec is not None:
        r = estimate_vs_run(args.spec, args.samples if "--samples" in sys.argv else None, args.geometries)
        if args.json:
            print(json.dumps(r))
            return
        low, high = r["estimate_range"]
        print(f"{r['spec']}: {r['done']}/{r['samples']} samples on {r['cores']} cores, "
              f"load {r['load_plan'][0]:.1f}-{r['load_plan'][1]:.1f} while planning, "
              f"{r['load_run'][0]:.1f}-{r['load_run'][1]:.1f} while running")
        print(f"  estimate {r['estimate_core_hours']:.4f} core-hours ({low:.4f}-{high:.4f}), "
              f"{r['estimate_sample_s']:.2f} s per sample, {r['estimate_wall_min']:.1f} min")
        print(f"  run: CPU of all its processes {r['measured_cpu_core_hours']:.4f} core-hours "
              f"(estimate / run {r['estimate_core_hours'] / r['measured_cpu_core_hours']:.2f}), tasks "
              f"{r['measured_task_core_hours']:.4f} (per sample median {r['task_cpu_s_median']:.2f} s, "
              f"mean {r['task_cpu_s_mean']:.2f} s), cores x sample window {r['measured_window_core_hours']:.4f}; "
              f"{r['wall_min']:.1f} min")
        return
    results = [run(args.samples)]
    if args.slurm:
        from tests.slurm_cluster import SlurmCluster

        with SlurmCluster() as cluster:
            results.append(run(args.samples, cluster))
    if args.json:
        print(json.dumps(results))
        return
    for r in results:
        print(f"{r['executor']:>6}: {r['done']}/{r['samples']} samples in {r['wall_s']:.1f} s on {r['cores']} cores: "
              f"{r['samples_per_min']:.1f} samples/min, mean sample {r['mean_sample_s']:.2f} s, "
              f"core utilisation {100 * r['core_utilisation']:.0f}% overall, "
              f"{100 * r['window_core_utilisation']:.0f}% from first to last sample "
              f"(overhead {r['window_overhead_per_task_s'] * 1000:.0f} ms/task there)")


if __name__ == "__main__":
    main()
