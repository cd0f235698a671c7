"""What the ECG cannot decide: twins that differ only in what no lead shows directly.

    python -m bench.unseen_variation [SPEC] [--patients 16] [--twins 4] [--nudge NAME=DELTA] [--json PATH]

A campaign's sample is fixed by its anatomy and parameters (condition,
conduction velocity, scar size, torso rotation, ...) and by its own seed,
which draws what the parameters leave open: each root's onset and angle
jitter, a scar's segment.  Twins share everything but the seed.  For
``--patients`` samples of the spec (distinct anatomies) this runs
``--twins`` twins each and reports

* how far the twins' activation maps are apart (mean absolute difference
  over the 75 sites, and divided by sqrt 2: the error of the best guess of
  a predictor that sees everything but the seed, their mean, if the seeds'
  effects are symmetric), next to how far apart the maps of different
  patients are;
* how far their ECGs are apart, relative to the ECGs of different patients
  (root-mean-square over the 12 leads and the window, each ECG scaled by its
  largest lead range as ``common_range`` does).

The twins' activation difference is a floor for any predictor that cannot
read the seed's effects from the ECG; how small their ECG difference is
says how hard reading them is.

``--nudge NAME=DELTA`` makes twins of another kind: the same seed, and
parameter NAME moved by k * DELTA for twin k. A nudge of an anatomy
parameter by a fraction of a voxel (``heart_scale=0.004``: 0.4 mm on a
100 mm heart, a sixth of a 2.5 mm voxel) should move the maps by a
fraction of a millisecond; how far they move instead is what the grid's
voxels add to each anatomy, which no other anatomy can teach.
"""
from __future__ import annotations

import argparse
import itertools
from dataclasses import replace

import numpy as np
from mpi4py import MPI

from bench.harness import REPO, Comparison, Figure, Run, add_json_option
from solver.patient import PatientSimulation
from solver.patient.sample_file import sample_datasets
from workflow.patients import patient_config
from workflow.sampling import plan_samples
from workflow.spec import load_spec
#: A seed offset far from any campaign's own seeds.
TWIN_SEED_STRIDE = 7_919_993


def simulate(spec, plan) -> tuple[np.ndarray, np.ndarray]:
    """(75,) site activation times (ms) and the (T, 12) ECG of one planned sample."""
    with PatientSimulation(patient_config(spec, plan), MPI.COMM_SELF) as simulation:
        data = sample_datasets(simulation.run())
    return data["act_sites"][0], data["leads"][0]


def scaled(ecg: np.ndarray) -> np.ndarray:
    return ecg / max(float(np.ptp(ecg, axis=0).max()), 1e-6)


def pairwise(values: list[np.ndarray], distance) -> list[float]:
    return [distance(a, b) for a, b in itertools.combinations(values, 2)]


def parse_nudge(text: str, parser: argparse.ArgumentParser) -> tuple[str, float]:
    name, _, delta = text.partition("=")
    try:
        return name, float(delta)
    except ValueError:
        parser.error(f"--nudge {text!r}: expected NAME=DELTA, e.g. heart_scale=0.004")


def twin(plan, k: int, nudge: tuple[str, float] | None):
    """Twin k of a planned sample: another seed, or (``nudge``) the same seed and one parameter moved."""
    if nudge is None:
        return replace(plan, seed=plan.seed + k * TWIN_SEED_STRIDE)
    name, delta = nudge
    if name not in plan.values:
        raise SystemExit(f"--nudge {name}: not a drawn parameter of this spec ({', '.join(sorted(plan.values))})")
    return replace(plan, values={**plan.values, name: plan.values[name] + k * delta})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("spec", nargs="?", default=str(REPO / "examples" / "campaigns" / "published-8k.yaml"))
    parser.add_argument("--patients", type=int, default=16)
    parser.add_argument("--twins", type=int, default=4)
    parser.add_argument("--nudge", metavar="NAME=DELTA",
                        help="twins differ by NAME + k * DELTA (same seed) instead of by their seeds")
    add_json_option(parser, "unseen_variation")
    args = parser.parse_args()
    bench = Run("unseen_variation", "What the ECG leaves open", "checks")
    spec = load_spec(args.spec)
    nudge = parse_nudge(args.nudge, parser) if args.nudge else None
    plans = plan_samples(spec)
    stride = max(1, len(plans) // args.patients)
    chosen = plans[::stride][:args.patients]
    act_distance = lambda a, b: float(np.nanmean(np.abs(a - b)))  # noqa: E731
    ecg_distance = lambda a, b: float(np.sqrt(np.mean((scaled(a) - scaled(b)) ** 2)))  # noqa: E731
    twins_act, twins_ecg, firsts = [], [], []
    for plan in chosen:
        runs = [simulate(spec, twin(plan, k, nudge)) for k in range(args.twins)]
        twins_act += pairwise([r[0] for r in runs], act_distance)
        twins_ecg += pairwise([r[1] for r in runs], ecg_distance)
        firsts.append(runs[0])
        print(f"{plan.sample_id} ({plan.values.get('condition', '?')}): twins' maps "
              f"{np.mean(pairwise([r[0] for r in runs], act_distance)):.2f} ms apart", flush=True)
    others_act = pairwise([r[0] for r in firsts], act_distance)
    others_ecg = pairwise([r[1] for r in firsts], ecg_distance)
    result = {
        "spec": str(args.spec), "patients": len(chosen), "twins": args.twins, "nudge": args.nudge,
        "twins_act_mad_ms": float(np.mean(twins_act)),
        "floor_act_mae_ms": float(np.mean(twins_act) / np.sqrt(2)),
        "patients_act_mad_ms": float(np.mean(others_act)),
        "twins_ecg_rms": float(np.mean(twins_ecg)), "patients_ecg_rms": float(np.mean(others_ecg)),
    }
    twins = "twins' activation maps, mean |difference|"
    bench.write(args.json, [Figure(twins, result["twins_act_mad_ms"], "ms"),
                            Figure("error of the twins' mean as a guess", result["floor_act_mae_ms"], "ms")],
                [Comparison(twins, "different patients", "baseline", result["patients_act_mad_ms"], "ms")], details=result)
    if args.json == "-":
        return
    print(f"activation maps, mean |difference| over sites: twins {result['twins_act_mad_ms']:.2f} ms, "
          f"different patients {result['patients_act_mad_ms']:.2f} ms")
    print(f"  error of the twins' mean as a guess (difference / sqrt 2): {result['floor_act_mae_ms']:.2f} ms")
    print(f"ECGs (common range), RMS difference: twins {result['twins_ecg_rms']:.4f}, "
          f"different patients {result['patients_ecg_rms']:.4f} "
          f"(ratio {result['twins_ecg_rms'] / result['patients_ecg_rms']:.2f})")


if __name__ == "__main__":
    main()
