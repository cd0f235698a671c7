"""``ecgi demo``: the whole pipeline, small, on this machine.

1. a local campaign of synthetic patients (examples/campaigns/demo.yaml),
   with its live progress line, aggregated into a data set split by anatomy;
2. training of the activation-time network, then of the voltage network,
   on the CPU (`ecgi train`);
3. evaluation of both on the held-out anatomies (`ecgi evaluate`);
4. ``ecgi predict`` on a real 12-lead recording (the DICOM ECG shipped with
   pydicom), its clinician's report in DIR/clinical/report.html;
5. DIR/report.html: example ECGs, the evaluation's figures and tables, the
   real recording's predicted map and the campaign's statistics.

Each step resumes: the campaign never recomputes a finished sample, training
continues from its last checkpoint, and a finished step is skipped.  Steps
run as the same commands a user types, in child processes.
"""
from __future__ import annotations

import argparse
import html
import json
import subprocess
import sys
import time
from pathlib import Path

from solver.common.errors import EcgiError
from solver.common.files import write_text_atomic
from solver.common.limits import number

#: The demo's campaign spec, shipped with ecgi (workflow.batch.shipped).
CAMPAIGN = ("examples", "campaigns", "demo.yaml")
#: Fewest patients of a demo: its data set is split by anatomy into train,
#: validation and test, and each needs a patient (tests/test_demo.py runs 12).
DEMO_MIN_SAMPLES = 12
#: (run directory name, training configuration): activation times, then voltages.
TRAININGS = (("run", ("examples", "train", "demo.yaml")),
             ("run-vm", ("examples", "train", "demo-vm.yaml")))


def run_demo(output: Path, samples: int | None = None, epochs: int | None = None) -> Path:
    from .batch import shipped
    from .runner import run_campaign
    from .spec import load_spec

    output = output.resolve()
    start = time.time()
    spec = load_spec(shipped(*CAMPAIGN))
    spec.output_dir = output / "campaign"
    if samples is not None:
        spec.samples = samples
    _step("1/5 campaign")
    run_campaign(spec, force=True)
    dataset = spec.output_dir / "dataset"
    metrics = {}
    for name, parts in TRAININGS:
        config = shipped(*parts)
        _step(f"2/5 training ({config.name})")
        train = [*_ecgi(), "train", str(config), "--data", str(dataset), "--output", str(output / name), "--resume"]
        if epochs is not None:
            train += ["--epochs", str(epochs)]
        _check(subprocess.run(train), "training")
        _step(f"3/5 evaluation ({config.name})")
        evaluation = subprocess.run([*_ecgi(), "evaluate", str(output / name / "best.pt"), str(dataset),
                                     "--report", str(output / f"evaluation-{name}"), "--json"],
                                    capture_output=True, text=True)
        _check(evaluation, "evaluation", evaluation.stderr)
        metrics[name] = json.loads(evaluation.stdout)
    _step("4/5 a real recording")
    predict_real_recording(output / "run" / "best.pt", output / "clinical")
    _step("5/5 report")
    report = write_report(output, spec, metrics["run"], metrics["run-vm"], time.time() - start)
    print(f"\nreport: {report}", flush=True)
    return report


def predict_real_recording(checkpoint: Path, directory: Path) -> Path:
    """``ecgi predict`` with its report on the real 12-lead DICOM ECG that pydicom ships."""
    from pydicom.data import get_testdata_file

    proc = subprocess.run([*_ecgi(), "predict", str(checkpoint), get_testdata_file("waveform_ecg.dcm"), "--quiet",
                           "--no-figure", "--output", str(directory / "prediction.h5"), "--report", str(directory)],
                          capture_output=True, text=True)
    _check(proc, "prediction on a real recording", proc.stderr)
    return directory / "report.html"


def _ecgi() -> list[str]:
    return [sys.executable, "-m", "workflow.cli"]


def _step(name: str) -> None:
    print(f"\n== ecgi demo: {name}", flush=True)


def _check(proc: subprocess.CompletedProcess, what: str, detail: str = "") -> None:
    if proc.returncode != 0:
        raise EcgiError(f"the demo's {what} failed (exit {proc.returncode}){': ' + detail.strip()[-2000:] if detail else ''}")


def campaign_statistics(spec) -> dict:
    """Samples, failures, core-hours and throughput from the records."""
    from .layout import CampaignLayout
    from .sampling import plan_samples

    layout = CampaignLayout(spec.output_dir)
    records = [r for r in (layout.read_record(p) for p in plan_samples(spec)) if r is not None]
    done = [r for r in records if r.state == "done"]
    busy = sum(r.wall_time_s for r in done)
    first = min((r.started_at for r in done), default=0.0)
    last = max((r.finished_at for r in done), default=0.0)
    return {
        "planned": spec.samples, "done": len(done), "failed": sum(r.state == "failed" for r in records),
        "core_hours": busy / 3600, "mean_sample_s": busy / max(len(done), 1),
        "samples_per_min": len(done) / max(last - first, 1e-9) * 60 if done else 0.0,
        "voxel_size_mm": spec.solver.dx_mm, "ionic_model": spec.solver.ionic_model,
        "anatomies": spec.geometry.n_geometries,
    }


def example_ecgs(spec, output: Path, count: int = 3) -> list[tuple[str, Path]]:
    """ECG figures of a few test-split samples of different conditions."""
    import h5py

    from solver.plots import plot_ecg

    from .layout import CampaignLayout
    from .sampling import plan_samples

    layout = CampaignLayout(spec.output_dir)
    figures, seen = [], set()
    for plan in plan_samples(spec):
        path = layout.sample_path(plan)
        if not path.is_file():
            continue
        with h5py.File(path, "r") as f:
            condition = str(f.attrs.get("condition", ""))
            if condition in seen:
                continue
            seen.add(condition)
            png = plot_ecg(f["leads"][:], float(f["leads"].attrs["dt_ms"]), output / f"ecg-{condition}.png",
                           f"{plan.sample_id} ({condition})")
        figures.append((condition, png))
        if len(figures) == count:
            break
    return figures


def write_report(output: Path, spec, act: dict, vm: dict, elapsed_s: float) -> Path:
    """DIR/report.html from the two evaluations and the campaign's records."""
    stats = campaign_statistics(spec)
    ecgs = example_ecgs(spec, output)

    def table(pairs) -> str:
        return "<table>" + "".join(f"<tr><td>{html.escape(str(k))}</td><td>{_fmt(v)}</td></tr>" for k, v in pairs) + "</table>"

    def numbers(metrics: dict) -> list:
        return [(k, v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)]

    body = [
        "<h1>ecgi demo</h1>",
        f"<p>{stats['done']} synthetic patients simulated, aggregated, learnt and evaluated on this machine in "
        f"{elapsed_s / 60:.1f} minutes. On {act.get('samples')} test patients of anatomies never seen in training: "
        f"activation-time error <b>{_fmt(act.get('act_mae_ms'))} ms</b> (mean absolute over the 75 sites), "
        f"transmembrane-voltage error <b>{_fmt(vm.get('vm_rmse_mv'))} mV</b> (RMS).</p>",
        "<h2>Example ECGs</h2>",
        *[f'<h3>{html.escape(c)}</h3><img src="{html.escape(p.name)}" alt="ECG {html.escape(c)}">' for c, p in ecgs],
        "<h2>Activation time: true vs predicted</h2>",
        '<img src="evaluation-run/scatter.png" alt="scatter">',
        "<h2>AHA bullseyes: true, predicted, error</h2>",
        '<img src="evaluation-run/bullseye.png" alt="bullseyes">',
        "<h2>Voltage traces: true and predicted</h2>",
        '<img src="evaluation-run-vm/traces.png" alt="voltage traces">',
        "<h2>Error by site group and by condition</h2>",
        '<img src="evaluation-run/errors.png" alt="errors">',
        "<h3>Activation time, by site group (MAE, ms)</h3>", table(act.get("act_mae_ms_by_group", {}).items()),
        "<h3>Activation time, by condition (MAE, ms)</h3>", table(act.get("act_mae_ms_by_condition", {}).items()),
        "<h3>Voltage, by site group (RMSE, mV)</h3>", table((vm.get("vm_rmse_mv_by_group") or {}).items()),
        "<h3>Activation-time network</h3>", table(numbers(act)),
        "<h3>Voltage network</h3>", table(numbers(vm)),
        "<h2>A real recording</h2>",
        "<p>A 10-s clinical 12-lead ECG (sinus rhythm, read as normal by its recording device; DICOM, shipped "
        "with pydicom) through <code>ecgi predict</code>: median beat, predicted map, spread and how far it lies "
        "from the training ECGs (<a href='clinical/report.html'>full report</a>).</p>",
        '<img src="clinical/median-beat.png" alt="median beat">',
        '<img src="clinical/activation.png" alt="predicted activation of the real recording">',
        "<h2>Campaign</h2>", table(stats.items()),
        "<p>Full evaluation reports: <a href='evaluation-run/report.html'>activation</a>, "
        "<a href='evaluation-run-vm/report.html'>voltage</a></p>",
    ]
    style = "body{font-family:sans-serif;max-width:1100px;margin:2em auto}td{padding:2px 12px}img{max-width:100%}"
    path = output / "report.html"
    write_text_atomic(path, f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>ecgi demo</title>"
                            f"<style>{style}</style></head><body>{''.join(body)}</body></html>\n")
    write_text_atomic(output / "summary.json", json.dumps(
        {"campaign": stats, "activation": act, "voltage": vm, "elapsed_s": elapsed_s}, indent=1))
    return path


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return html.escape(str(value))


def add_command(commands) -> None:
    demo = commands.add_parser(
        "demo", help="the whole pipeline, small, on this machine (what `make demo` runs)",
        description="Run a local campaign of synthetic patients, build the data set, train the activation-time "
        "network on the CPU, evaluate it on held-out anatomies and write DIR/report.html. Running it again "
        "resumes; interrupting it loses nothing that had finished.",
    )
    demo.add_argument("--output", default="demo", help="directory for everything (default demo)")
    from model.cli import MAX_EPOCHS

    from .spec import LIMITS

    demo.add_argument("--samples", type=number(int, DEMO_MIN_SAMPLES, LIMITS["samples"]),
                      help=f"number of patients, {DEMO_MIN_SAMPLES} to {LIMITS['samples']} "
                      "(default: examples/campaigns/demo.yaml)")
    demo.add_argument("--epochs", type=number(int, 1, MAX_EPOCHS),
                      help="training epochs (default: examples/train/demo.yaml)")
    demo.set_defaults(handler=_run_command)


def _run_command(args: argparse.Namespace) -> int:
    run_demo(Path(args.output), samples=args.samples, epochs=args.epochs)
    return 0
