"""Data set aggregation throughput: sample files per second into shards.

    python -m bench.aggregation_throughput [--samples 200] [--length 500] [--json PATH]

Writes --samples synthetic sample files (the real writer,
solver.numerics.output.write_simulation, with action-potential-shaped Vm at the 75
sites and electrode potentials from a fixed random lead field, so that the
traces compress like simulated ones) to a temporary directory, then times
``workflow.dataset.build_dataset``:

* a first build (verify every file, write every shard, train statistics);
* a rebuild of the same inputs (verify, find every shard unchanged), which
  must leave the manifest byte-identical;

and reports samples/s of both, and the bytes per sample of the sample files
and of the shards.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.harness import Figure, Run, add_json_option
from model.synthetic_sample import write_synthetic_sample


def generate(directory: Path, count: int, samples: int, seed: int = 0) -> list[Path]:
    """``count`` sample files over count // 10 (at least 3) geometries."""
    rng = np.random.default_rng(seed)
    geometries = max(3, count // 10)
    return [
        write_synthetic_sample(
            directory / f"sample-{i:05d}.h5", f"geometry-{i % geometries:03d}", "normal",
            {"conduction_scale": float(rng.uniform(0.8, 1.2)), "apd_scale": float(rng.uniform(0.9, 1.1))},
            rng, samples,
        )
        for i in range(count)
    ]

def measure(count: int, samples: int, samples_per_shard: int) -> dict:
    from workflow.dataset import build_dataset

    with tempfile.TemporaryDirectory(prefix="ecgi-aggregation-") as tmp:
        files = generate(Path(tmp) / "samples", count, samples)
        output = Path(tmp) / "dataset"
        start = time.perf_counter()
        first = build_dataset(files, output, samples_per_shard, samples_per_trace=samples)
        build_s = time.perf_counter() - start
        manifest_bytes = (output / "manifest.json").read_bytes()
        start = time.perf_counter()
        again = build_dataset(files, output, samples_per_shard, samples_per_trace=samples)
        rebuild_s = time.perf_counter() - start
        shard_bytes = sum(p.stat().st_size for p in output.rglob("shard-*.h5"))
        return {
            "samples": count,
            "length": samples,
            "samples_per_shard": samples_per_shard,
            "build_s": round(build_s, 3),
            "build_samples_per_s": round(count / build_s, 1),
            "rebuild_s": round(rebuild_s, 3),
            "rebuild_samples_per_s": round(count / rebuild_s, 1),
            "rebuild_shards_written": len(again.report.written),
            "rebuild_manifest_identical": (output / "manifest.json").read_bytes() == manifest_bytes,
            "shards": len(first.report.written),
            "sample_file_bytes_per_sample": round(sum(p.stat().st_size for p in files) / count),
            "shard_bytes_per_sample": round(shard_bytes / count),
        }

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--samples", type=int, default=200, help="sample files to aggregate (200)")
    parser.add_argument("--length", type=int, default=500, help="time samples per trace, 1 ms apart (500)")
    parser.add_argument("--samples-per-shard", type=int, default=64, help="samples per shard (64)")
    add_json_option(parser, "aggregation_throughput")
    args = parser.parse_args()
    bench = Run("aggregation_throughput", "Aggregation of sample files into shards", "throughput")
    report = measure(args.samples, args.length, args.samples_per_shard)
    bench.write(args.json, [Figure("first build (checksums verified)", report["build_samples_per_s"], "samples/s"),
                            Figure("rebuild, every shard unchanged", report["rebuild_samples_per_s"], "samples/s")],
                details=report)
    if args.json == "-":
        return
    print(f"{report['samples']} samples of {report['length']} ms, {report['shards']} shards of {report['samples_per_shard']}")
    print(f"  build   {report['build_s']:8.2f} s  {report['build_samples_per_s']:8.1f} samples/s")
    print(f"  rebuild {report['rebuild_s']:8.2f} s  {report['rebuild_samples_per_s']:8.1f} samples/s "
          f"({report['rebuild_shards_written']} shards rewritten, manifest identical: {report['rebuild_manifest_identical']})")
    print(f"  bytes per sample: sample file {report['sample_file_bytes_per_sample']}, shards {report['shard_bytes_per_sample']}")

if __name__ == "__main__":
    main()
