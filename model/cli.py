"""``ecgi train``, ``ecgi evaluate`` and ``ecgi predict``: the network's commands.

torch is imported inside the handlers, so ``ecgi --help`` stays instant and
``ecgi train --submit`` works on a login node without it.
"""
from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

from solver.common.errors import ConfigError
from solver.common.limits import number

#: Free space checked before work: a run directory holds two checkpoints
#: (a few MB each) and their temporary copy; a report its figures.
RUN_FREE_BYTES = 16 << 20
REPORT_FREE_BYTES = 8 << 20
#: Epochs of one run: published runs train for a few hundred.
MAX_EPOCHS = 100_000
#: MC-dropout passes: two give a spread; a thousand already estimate it to
#: about 2 % and take seconds, more only take longer.
MC_PASSES = (2, 1000)


def add_commands(commands) -> None:
    _add_train(commands)
    _add_evaluate(commands)
    _add_predict(commands)


def _add_train(commands) -> None:
    train = commands.add_parser(
        "train",
        help="train a network on a data set (works under torchrun and srun)",
        description="Train the network a YAML configuration describes on DATASET's train split, "
        "validating on its validation split after every epoch. The same command runs as one process, "
        "as `torchrun --nproc_per_node N ecgi ...` or as `srun ecgi train ...` (one task per GPU); "
        "`--submit` hands it to SLURM through slurm/train.sbatch.",
    )
    train.add_argument("config", help="training configuration (YAML; see examples/train/tiny.yaml)")
    train.add_argument("--data", required=True, help="data set directory (with manifest.json)")
    train.add_argument("--output", help="run directory for checkpoints and metrics (default runs/CONFIG-NAME)")
    train.add_argument("--resume", action="store_true", help="continue from RUNDIR/last.pt (a fresh start if there is none)")
    train.add_argument("--epochs", type=number(int, 1, MAX_EPOCHS),
                       help=f"total number of epochs, at most {MAX_EPOCHS} (overrides the configuration)")
    train.add_argument("--quiet", action="store_true", help="no progress lines")
    # --submit and the SLURM options are workflow's (workflow.jobs): model
    # trains, workflow submits.
    train.set_defaults(handler=run_train)


def _add_evaluate(commands) -> None:
    evaluate = commands.add_parser(
        "evaluate",
        help="errors of a trained network on a data set split",
        description="Activation-time MAE (overall, per site group, per condition) and, for networks "
        "with a voltage head, Vm RMSE, trace correlation and APD90 error; the same for the site-mean and "
        "ridge-regression baselines fitted on the data set's train split (key 'baselines').",
    )
    evaluate.add_argument("checkpoint", help="checkpoint (RUNDIR/best.pt or last.pt)")
    evaluate.add_argument("dataset", help="data set directory")
    evaluate.add_argument("--split", default="test", help="split to evaluate (test)")
    evaluate.add_argument("--report", metavar="DIR", help="write report.md, report.html and figures to DIR")
    evaluate.add_argument("--sites", help="comma-separated sites whose traces the report shows")
    evaluate.add_argument("--batch-size", type=number(int, 1, 65_536), default=64,
                          help="samples per forward pass (64; at most 65536)")
    evaluate.add_argument("--json", action="store_true", help="print one JSON object")
    evaluate.add_argument("--ensemble", action="append", default=[], metavar="CHECKPOINT",
                          help="another checkpoint trained on the same inputs; the members' mean is evaluated (repeatable)")
    evaluate.add_argument("--no-baselines", action="store_true",
                          help="skip the site-mean and ridge baselines (fitted on the train and validation splits)")
    evaluate.set_defaults(handler=run_evaluate)


def _add_predict(commands) -> None:
    predict = commands.add_parser(
        "predict",
        help="activation times (and traces) from one 12-lead ECG",
        description="Read a 12-lead ECG (HDF5, CSV with named lead columns, WFDB .hea with .dat or .mat, DICOM "
        "ECG waveform, GE MUSE or HL7 aECG XML), remove baseline wander, mains hum and noise, find its beats, "
        "form the median beat and align its QRS onset as in the training data, then write the network's 75 "
        "activation times (with their spread) and voltage traces to HDF5, print them as a table and draw them. "
        "docs/clinical.md describes each step.",
    )
    predict.add_argument("checkpoint", help="checkpoint (RUNDIR/best.pt)")
    predict.add_argument("ecg", help="ECG file (.h5, .csv, .hea/.dat/.mat, .dcm or .xml)")
    predict.add_argument("--output", help="HDF5 file to write (default ECGNAME.prediction.h5 here)")
    # Its plausible range (50-20000 Hz) is checked with the file it describes.
    predict.add_argument("--sampling-rate", type=number(float, 0.0, 1e6, "Hz"), metavar="HZ",
                         help="sampling rate of a CSV without time column")
    predict.add_argument("--beats", choices=("auto", "median", "all", "none"), default="auto",
                         help="median: predict on the median beat; all: also on every clean beat, reporting the "
                         "spread; none: use the record as one prepared beat (auto: median for records of 1.5 s "
                         "or more, else none)")
    predict.add_argument("--mains", choices=("auto", "50", "60", "off"), default="auto",
                         help="mains frequency to notch out (auto: found from the spectrum)")
    predict.add_argument("--passes", type=number(int, *MC_PASSES), default=30,
                         help=f"MC-dropout passes for the per-site spread (30; {MC_PASSES[0]}-{MC_PASSES[1]})")
    predict.add_argument("--ensemble", action="append", default=[], metavar="CHECKPOINT",
                         help="another checkpoint of the same kind; the spread is then over the ensemble (repeatable)")
    predict.add_argument("--reference", metavar="DATASET",
                         help="data set whose training split gives the out-of-distribution reference (default: the one "
                         "stored in the checkpoint by training)")
    predict.add_argument("--report", metavar="DIR", help="write a clinician's report (report.html and PNGs) to DIR")
    predict.add_argument("--figure", help="PNG to draw (default: the output with .png)")
    predict.add_argument("--no-figure", action="store_true", help="draw nothing")
    predict.add_argument("--quiet", action="store_true", help="no table")
    predict.set_defaults(handler=run_predict)


def run_directory(args: argparse.Namespace) -> Path:
    """The run directory of ``ecgi train``: --output, or runs/CONFIG-NAME."""
    return Path(args.output or Path("runs") / Path(args.config).stem)


def run_train(args: argparse.Namespace) -> int:
    from solver.common.files import check_writable

    from .config import load_train_config
    from .train import train

    config = load_train_config(args.config)
    run_dir = run_directory(args)
    check_writable(run_dir, RUN_FREE_BYTES, directory=True, inputs=[args.data])
    train(config, args.data, run_dir, resume=args.resume, epochs=args.epochs, progress=not args.quiet)
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    from .evaluate import evaluate

    if args.report:
        from solver.common.files import check_writable

        check_writable(args.report, REPORT_FREE_BYTES, directory=True, inputs=[args.dataset])
    result = evaluate(args.checkpoint, args.dataset, args.split, args.batch_size, baselines=not args.no_baselines,
                      ensemble=args.ensemble)
    metrics = result.metrics()
    if args.report:
        from .report import DEFAULT_TRACE_SITES, write_evaluation_report

        sites = _sites(args.sites) if args.sites else DEFAULT_TRACE_SITES
        path = write_evaluation_report(result, args.report, sites)
        print(f"wrote {path} and {path.with_suffix('.html')}", file=sys.stderr)
    if args.json:
        print(json.dumps(metrics))
    else:
        _print_metrics(metrics)
    return 0


def _sites(text: str) -> list[str]:
    from solver.common.sites import SITE_NAMES

    sites = [s.strip() for s in text.split(",") if s.strip()]
    unknown = [s for s in sites if s not in SITE_NAMES]
    if unknown:
        raise ConfigError(f"unknown site(s) {', '.join(unknown)}; names are those of solver.common.sites.SITE_NAMES")
    return sites


def _print_metrics(metrics: dict) -> None:
    print(f"{metrics['architecture']} on {metrics['split']} ({metrics['samples']} samples)")
    _print_errors(metrics)
    for name, baseline in metrics.get("baselines", {}).items():
        print(f"baseline {name}")
        _print_errors(baseline)


def _print_errors(metrics: dict) -> None:
    print(f"  activation MAE {metrics['act_mae_ms']:.2f} ms (RMSE {metrics['act_rmse_ms']:.2f} ms)")
    for key, title in (("act_mae_ms_by_group", "site group"), ("act_mae_ms_by_condition", "condition")):
        print(f"  by {title}: " + ", ".join(f"{k} {v:.2f}" for k, v in metrics[key].items()))
    if metrics["vm_rmse_mv"] is not None:
        print(f"  Vm RMSE {metrics['vm_rmse_mv']:.2f} mV, correlation {_or_na(metrics['vm_correlation'])}, "
              f"APD90 MAE {_or_na(metrics['apd90_mae_ms'])} ms over {metrics['apd90_traces']} traces, "
              f"activation from traces MAE {_or_na(metrics['vm_act_mae_ms'])} ms")


def _or_na(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def run_predict(args: argparse.Namespace) -> int:
    from solver.common.files import check_writable

    from .predict import format_table, predict, write_prediction

    # Every output place is checked before the record is read and the network runs.
    inputs = [*_recording_files(Path(args.ecg)), args.checkpoint, *args.ensemble]
    output = Path(args.output or f"{Path(args.ecg).stem}.prediction.h5")
    check_writable(output, inputs=inputs)
    if not args.no_figure:
        from solver.plots import check_figure_path

        check_writable(args.figure or output.with_suffix(".png"), inputs=inputs)
        check_figure_path(args.figure or output.with_suffix(".png"))
    if args.report:
        check_writable(args.report, REPORT_FREE_BYTES, directory=True, inputs=inputs)
    mains = {"auto": "auto", "off": None, "50": 50.0, "60": 60.0}[args.mains]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        prediction = predict(args.checkpoint, args.ecg, args.sampling_rate, beats=args.beats, mains_hz=mains,
                             passes=args.passes, ensemble=args.ensemble, reference=args.reference)
    for warning in caught:
        print(f"ecgi predict: warning: {warning.message}", file=sys.stderr)
    write_prediction(output, prediction, str(args.ecg), str(args.checkpoint))
    if not args.quiet:
        print(format_table(prediction))
    print(f"wrote {output}", file=sys.stderr)
    if not args.no_figure:
        from .report import prediction_figure

        figure = prediction_figure(prediction.ecg, prediction.act, prediction.vm,
                                   Path(args.figure or output.with_suffix(".png")), f"{Path(args.ecg).name}")
        print(f"wrote {figure}", file=sys.stderr)
    if args.report:
        from .clinical.report import write_clinical_report

        page = write_clinical_report(prediction, args.report, Path(args.ecg).name, [str(w.message) for w in caught])
        print(f"wrote {page}", file=sys.stderr)
    return 0


def _recording_files(ecg: Path) -> list[Path]:
    """The files a recording is read from: a WFDB header names its signal
    file beside it (.dat, or .mat in the PhysioNet challenges' layout)."""
    if ecg.suffix.lower() == ".hea":
        return [ecg, ecg.with_suffix(".dat"), ecg.with_suffix(".mat")]
    return [ecg]
