"""The cost estimate against the run: ``ecgi campaign plan``'s core-hours
beside what the same campaign then spends.

    python -m bench.cost_estimate --spec SPEC [--samples N] [--geometries G] [--json PATH]

Plans the spec (a copy with ``--samples`` and ``--geometries`` if given,
in a temporary directory), runs it, and measures the run three ways: the
CPU seconds of every process of the run (the driver, Parsl, the workers),
the tasks' own CPU seconds (``cpu_time_s`` of their records), and cores x
the window from the first sample's start to the last one's end (what an
allocation of these cores pays). The machine's load while planning and
while running goes with the figures: CPU time per sample rises under load.
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


def _tree_cpu(root, campaign_dir: Path, seen: dict) -> None:
    """Record the CPU seconds of the driver ``root``, its descendants and every process started for
    the campaign (Parsl's worker pool leaves the driver's tree), the last value seen of each."""
    import psutil

    from workflow.processes import campaign_processes

    try:
        processes = [root, *root.children(recursive=True)]
    except psutil.Error:
        processes = []
    for identity in campaign_processes(campaign_dir):
        try:
            processes.append(psutil.Process(identity.pid))
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
            data["samples_per_folder"] = min(data.get("samples_per_folder", 50), samples)
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


def figures(r: dict) -> tuple[list[Figure], list[Comparison]]:
    """The plan's CPU seconds for the whole campaign and per sample, beside the run's (core-seconds:
    a small campaign's core-hours would round to nothing)."""
    estimate = Figure("plan: CPU s, whole campaign", r["estimate_core_hours"] * 3600, "s")
    return [estimate, Figure("plan: CPU s per sample", r["estimate_sample_s"], "s")], [
        Comparison(estimate.name, "run: CPU of all its processes", "goal", r["measured_cpu_core_hours"] * 3600, "s"),
        Comparison(estimate.name, "run: the tasks' CPU", "goal", r["measured_task_core_hours"] * 3600, "s"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", type=Path, required=True, help="campaign spec to plan and run")
    parser.add_argument("--samples", type=int, help="samples (default: the spec's)")
    parser.add_argument("--geometries", type=int, help="anatomies (default: the spec's)")
    add_json_option(parser, "cost_estimate")
    args = parser.parse_args()
    bench = Run("cost_estimate", f"Cost estimate against the run: {args.spec.name}"
                + (f", {args.samples} samples" if args.samples else ""), "cost")
    r = estimate_vs_run(args.spec, args.samples, args.geometries)
    bench.write(args.json, *figures(r), details=r)
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


if __name__ == "__main__":
    main()
