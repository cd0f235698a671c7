"""``ecgi predict``: read a 12-lead ECG, condition it, find its beats and map the median beat to
75 activation times (and traces), with an out-of-distribution score and per-site uncertainty.

The steps (docs/clinical.md tells them in full):

1. ``model.clinical.readers`` reads the file (HDF5, CSV, WFDB, DICOM, GE MUSE
   or HL7 aECG XML) into 12 leads in mV and refuses implausible records.
2. ``beats="median"`` (the default for records of 1.5 s and more):
   ``model.clinical.conditioning`` removes baseline wander, mains hum and
   high-frequency noise and resamples to 1 kHz; ``model.clinical.beats``
   detects every QRS, rejects ectopic and noisy beats, forms the median beat,
   delineates its QRS and windows it so the QRS onset lies where the training
   data puts it.  ``beats="all"`` also predicts every clean beat and reports
   the spread.  ``beats="none"`` (the default for shorter records, which are
   taken to be one prepared beat) resamples and crops or zero-pads as is.
3. The network runs on the window; with dropout it runs ``passes`` times
   (MC dropout) for a per-site spread; ``model.clinical.trust`` scores how
   far the input lies from the training inputs when a reference is known.
4. Consistency: the predicted total activation time (the latest minus the
   earliest of the 75 activation times) is compared with the QRS duration
   delineated on the median beat; they disagree when the span minus the QRS
   lies outside ``SPAN_MINUS_QRS_MS`` (see ``span_check``).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Sequence

import h5py
import numpy as np
import torch

from solver.common.errors import ConfigError
from solver.common.files import atomic_output
from solver.common.sites import LEAD_NAMES, SITE_NAMES, site_group
from solver.common.traces import apd90_ms

from .clinical import beats as beatlib
from .clinical.conditioning import Conditioned, condition, resample
from .clinical.readers import MAX_AMPLITUDE_MV, EcgRecord, EcgWarning, check_amplitude, read_ecg
from .clinical.trust import N_FEATURES, OodReference, mc_dropout, reference_from_dataset
from .ensemble import Ensemble, Member, load_members

__all__ = ["MAX_AMPLITUDE_MV", "SPAN_MINUS_QRS_MS", "EcgRecord", "EcgWarning", "Prediction", "activation_span_ms",
           "check_amplitude", "format_table", "predict", "prepare_ecg", "read_ecg", "span_check", "write_prediction"]

TARGET_RATE_HZ = 1000.0
#: Records at least this long are searched for beats; shorter ones are one prepared beat.
AUTO_MEDIAN_MS = 1500.0
BeatMode = Literal["auto", "median", "all", "none"]
#: How far the predicted activation span (the sites' latest minus earliest activation) may lie
#: from the QRS duration measured on the median beat, as (lowest, highest) span minus QRS in ms.
#: Total ventricular activation lasts as long as the QRS complex (Durrer et al., Total excitation
#: of the isolated human heart, Circulation 41:899, 1970), but the 75 sites miss the earliest
#: endocardial breakthroughs and the latest basal epicardium: on the `make demo` patients, whose
#: activation is known, their span is 24-31 ms shorter than the delineated QRS; QRS onset and
#: offset differ by about 10 ms between delineation methods (CSE, Willems et al. 1985). A span
#: more than 50 ms short of the QRS (a bundle branch block, QRS >= 120 ms, predicted with a
#: normal span) or more than 20 ms beyond it (activation outlasting the QRS) is a disagreement.
SPAN_MINUS_QRS_MS = (-50.0, 20.0)


def prepare_ecg(record: EcgRecord, samples: int) -> np.ndarray:
    """Resample to 1 kHz and crop or zero-pad to ``samples``: (samples, 12) in mV."""
    check_amplitude(record)
    x = resample(record.signals, record.rate_hz, TARGET_RATE_HZ)
    if len(x) > samples:
        warnings.warn(f"{record.source}: {len(x)} ms long; using the first {samples} ms", EcgWarning, stacklevel=2)
        x = x[:samples]
    elif len(x) < samples:
        warnings.warn(f"{record.source}: {len(x)} ms long; zero-padded to {samples} ms", EcgWarning, stacklevel=2)
        x = np.concatenate([x, np.zeros((samples - len(x), x.shape[1]))])
    return x.astype(np.float32)


@dataclass
class Prediction:
    ecg: np.ndarray  # (T, 12) mV, the network's input before scaling
    act: np.ndarray  # (75,) ms
    vm: np.ndarray | None  # (T, 75) mV
    architecture: str
    act_std: np.ndarray | None = None  # (75,) ms, spread over MC-dropout passes or the ensemble
    uncertainty: str = "none"  # "mc-dropout (N passes)", "ensemble of N", or "none"
    beat_mode: str = "none"
    record: EcgRecord | None = None
    conditioned: Conditioned | None = None
    beats: beatlib.Beats | None = None
    beat_act: np.ndarray | None = None  # (B, 75) ms, one row per clean beat (beats="all")
    ood_score: float | None = None
    ood_threshold: float | None = None

    @property
    def ood_warning(self) -> bool:
        return self.ood_score is not None and self.ood_threshold is not None and self.ood_score > self.ood_threshold

    @property
    def span_ms(self) -> float:
        """Predicted total activation time at the sites: the latest minus the earliest of the 75."""
        return activation_span_ms(self.act)

    @property
    def qrs_ms(self) -> float | None:
        """The QRS duration measured on the recording (median beat), when beats were delineated."""
        return float(self.beats.qrs_ms) if self.beats is not None else None

    @property
    def span_warning(self) -> bool:
        return self.qrs_ms is not None and not span_check(self.span_ms, self.qrs_ms)


def activation_span_ms(act: np.ndarray) -> float:
    """The latest minus the earliest activation time (ms): Durrer's total activation time, at the sites."""
    return float(np.max(act) - np.min(act))


def span_check(span_ms: float, qrs_ms: float, allowed: tuple[float, float] | None = None) -> bool:
    """Whether span minus QRS duration lies in ``allowed`` (``SPAN_MINUS_QRS_MS`` by default), bounds included."""
    low, high = SPAN_MINUS_QRS_MS if allowed is None else allowed
    return low <= span_ms - qrs_ms <= high


def _ood_reference(member: Member, path: str | Path) -> OodReference | None:
    """The OOD reference stored with the first network, if it has a current one."""
    ood = member.inputs.get("ood")
    reference = OodReference(**ood) if isinstance(ood, dict) else None
    if reference is not None and len(reference.mean) != N_FEATURES:
        warnings.warn(f"{path}: its OOD reference uses an older feature set; no OOD score "
                      "(give --reference DATASET)", EcgWarning, stacklevel=3)
        reference = None
    return reference


def _run(members: Sequence[Member], ecgs: np.ndarray, passes: int) -> tuple[dict[str, np.ndarray], np.ndarray | None, str]:
    """Physical outputs for a batch (B, T, 12), the per-site activation spread (B, 75) and how it was found.

    One network: its deterministic outputs and the spread of ``passes`` MC-dropout passes.
    An ensemble: the members' mean of the outputs they all have (traces only when every member
    draws them), and their spread.
    """
    ensemble = Ensemble(list(members))
    batch = torch.from_numpy(np.ascontiguousarray(ecgs.transpose(0, 2, 1), dtype=np.float32))
    with torch.no_grad():
        outputs = [{k: v.numpy() for k, v in o.items()} for o in ensemble.member_outputs(batch)]
    if len(members) > 1:
        stacked = {k: np.stack([o[k] for o in outputs]) for k in ensemble.outputs}
        return {k: v.mean(axis=0) for k, v in stacked.items()}, stacked["act"].std(axis=0), f"ensemble of {len(members)}"
    sampled = mc_dropout(members[0].model, members[0].network_input(batch.numpy()), passes)
    if sampled is None:
        return outputs[0], None, "none"
    return outputs[0], sampled["act"].numpy().std(axis=0), f"mc-dropout ({passes} passes)"


def predict(checkpoint: str | Path, ecg_path: str | Path, sampling_rate_hz: float | None = None, *,
            beats: BeatMode = "auto", mains_hz: float | None | str = "auto", passes: int = 30,
            ensemble: Sequence[str | Path] = (), reference: str | Path | None = None) -> Prediction:
    """Read, check and prepare an ECG (see the module docstring), then run the network(s) on it."""
    members = load_members([checkpoint, *ensemble])
    samples = int(members[0].inputs["samples"])
    record = read_ecg(ecg_path, sampling_rate_hz)
    mode = beats
    if mode == "auto":
        mode = "median" if record.duration_ms >= AUTO_MEDIAN_MS else "none"
    prediction = Prediction(np.zeros((samples, 12), np.float32), np.zeros(75), None, members[0].model.architecture,
                            beat_mode=mode, record=record)
    if mode == "none":
        window = prepare_ecg(record, samples)
        batch = window[None]
    elif mode in ("median", "all"):
        window, batch = _beat_windows(record, samples, mode, mains_hz, prediction)
    else:
        raise ConfigError(f"--beats must be auto, median, all or none, not {beats!r}")
    outputs, spread, method = _run(members, batch, passes)
    prediction.ecg = window
    prediction.act = outputs["act"][0]
    prediction.vm = outputs["vm"][0].T if "vm" in outputs else None
    prediction.act_std = spread[0] if spread is not None else None
    prediction.uncertainty = method
    if mode == "all":
        prediction.beat_act = outputs["act"][1:]
    ood = _ood_reference(members[0], checkpoint)
    if reference is not None:
        inputs = members[0].inputs
        ood = reference_from_dataset(reference, inputs["scaling"], inputs["ecg_mean"], inputs["ecg_std"])
    if ood is not None:
        prediction.ood_score = float(ood.distance(members[0].network_input(window.T[None])[0].numpy()))
        prediction.ood_threshold = ood.threshold
        if prediction.ood_warning:
            warnings.warn(f"{record.source}: out-of-distribution score {prediction.ood_score:.1f} is above the "
                          f"threshold {ood.threshold:.1f}: this ECG is unlike the training ECGs; the prediction "
                          "is an extrapolation", EcgWarning, stacklevel=2)
    if prediction.span_warning:
        warnings.warn(f"{record.source}: predicted activation span {prediction.span_ms:.0f} ms disagrees with the "
                      f"measured QRS duration {prediction.qrs_ms:.0f} ms (span minus QRS outside "
                      f"{SPAN_MINUS_QRS_MS[0]:+.0f}..{SPAN_MINUS_QRS_MS[1]:+.0f} ms)",
                      EcgWarning, stacklevel=2)
    return prediction


def _beat_windows(record: EcgRecord, samples: int, mode: str, mains_hz, prediction: Prediction) -> tuple[np.ndarray, np.ndarray]:
    """Condition, find beats, window the median beat (and, for "all", every clean beat)."""
    conditioned = condition(record.signals, record.rate_hz, mains_hz)
    prediction.conditioned = conditioned
    if conditioned.quality.flat:
        raise ConfigError(f"{record.source}: {conditioned.quality.problems()[0]}; a disconnected lead cannot be used")
    for problem in conditioned.quality.problems():
        warnings.warn(f"{record.source}: {problem}", EcgWarning, stacklevel=3)
    try:
        found = beatlib.analyse(conditioned.signals, samples)
    except ConfigError as exc:
        raise ConfigError(f"{record.source}: {exc}") from None
    prediction.beats = found
    clean = int(found.clean.sum())
    if clean < 3:
        warnings.warn(f"{record.source}: only {clean} clean beat(s) of {len(found.peaks)}; the median beat is "
                      "not robust", EcgWarning, stacklevel=3)
    end = beatlib.next_beat_ms(found, samples)
    if end is not None:
        warnings.warn(f"{record.source}: at RR {found.rr_ms:.0f} ms the next beat falls inside the {samples}-ms "
                      f"window; samples from {end} ms after the QRS onset are set to rest", EcgWarning, stacklevel=3)
    window = beatlib.network_window(found.median, found.onset, samples, end=end)
    batch = window[None]
    if mode == "all":
        batch = np.concatenate([batch, beatlib.beat_windows(found, samples)])
    return window, batch


def write_prediction(path: str | Path, prediction: Prediction, source: str, checkpoint: str) -> Path:
    """HDF5 with ``act`` (75,) ms, ``vm`` (T, 75) mV when predicted, and the prepared ``ecg``."""
    path = Path(path)
    with atomic_output(path) as tmp, h5py.File(tmp, "w") as f:
        f.attrs.update(format="ecgi-prediction", format_version=1, source=source, checkpoint=checkpoint,
                       architecture=prediction.architecture)
        act = f.create_dataset("act", data=prediction.act.astype(np.float32))
        act.attrs.update(sites=list(SITE_NAMES), units="ms")
        ecg = f.create_dataset("ecg", data=prediction.ecg)
        ecg.attrs.update(leads=list(LEAD_NAMES), dt_ms=1.0, units="mV")
        if prediction.vm is not None:
            vm = f.create_dataset("vm", data=prediction.vm.astype(np.float32))
            vm.attrs.update(sites=list(SITE_NAMES), dt_ms=1.0, units="mV")
            f.create_dataset("apd90", data=apd90_ms(prediction.vm.T).astype(np.float32)).attrs["units"] = "ms"
        _write_trust(f, prediction)
    return path


def _write_trust(f: h5py.File, prediction: Prediction) -> None:
    """Uncertainty, OOD score and beats, where known."""
    f.attrs.update(beats=prediction.beat_mode, uncertainty=prediction.uncertainty,
                   activation_span_ms=prediction.span_ms, span_minus_qrs_allowed_ms=list(SPAN_MINUS_QRS_MS))
    if prediction.qrs_ms is not None:
        f.attrs.update(qrs_duration_ms=prediction.qrs_ms, span_agrees=not prediction.span_warning)
    if prediction.act_std is not None:
        f.create_dataset("act_std", data=prediction.act_std.astype(np.float32)).attrs["units"] = "ms"
    if prediction.ood_score is not None:
        f.attrs.update(ood_score=prediction.ood_score, ood_threshold=prediction.ood_threshold)
    if prediction.beats is not None:
        b = prediction.beats
        g = f.create_group("beats")
        g.create_dataset("peaks_ms", data=b.peaks.astype(np.float64) * 1.0)
        g.create_dataset("clean", data=b.clean)
        g.create_dataset("median", data=b.median.astype(np.float32)).attrs.update(dt_ms=1.0, units="mV")
        g.attrs.update(qrs_onset_ms=b.onset, qrs_offset_ms=b.offset, rr_ms=b.rr_ms)
    if prediction.beat_act is not None:
        f.create_dataset("beat_act", data=prediction.beat_act.astype(np.float32)).attrs["units"] = "ms"


def format_table(prediction: Prediction) -> str:
    """One line per site: group, activation time (+- its spread) and (with traces) APD90."""
    apd = apd90_ms(prediction.vm.T) if prediction.vm is not None else None
    spread = prediction.act_std
    if prediction.beat_act is not None:
        spread = prediction.beat_act.std(axis=0)
    header = f"{'site':<18} {'group':<6} {'act (ms)':>9}" + (f" {'+-':>6}" if spread is not None else "")
    header += f" {'APD90 (ms)':>11}" if apd is not None else ""
    lines = [header, "-" * len(header)]
    for i, site in enumerate(SITE_NAMES):
        line = f"{site:<18} {site_group(site):<6} {prediction.act[i]:9.1f}"
        if spread is not None:
            line += f" {spread[i]:6.1f}"
        if apd is not None:
            line += f" {apd[i]:11.1f}" if np.isfinite(apd[i]) else f" {'-':>11}"
        lines.append(line)
    lines.append(f"earliest {prediction.act.min():.1f} ms ({SITE_NAMES[int(prediction.act.argmin())]}), "
                 f"latest {prediction.act.max():.1f} ms ({SITE_NAMES[int(prediction.act.argmax())]})")
    if spread is not None:
        what = (f"spread over {len(prediction.beat_act)} beats" if prediction.beat_act is not None
                else prediction.uncertainty)
        lines.append(f"+-: standard deviation ({what})")
    if prediction.beats is not None:
        b = prediction.beats
        lines.append(f"beats: {len(b.peaks)} detected, {int(b.clean.sum())} clean, RR {b.rr_ms:.0f} ms, "
                     f"QRS {b.qrs_ms} ms on the median beat")
    if prediction.ood_score is not None:
        verdict = "ABOVE the threshold: unlike the training ECGs" if prediction.ood_warning else "within the training range"
        lines.append(f"OOD score {prediction.ood_score:.1f} (threshold {prediction.ood_threshold:.1f}): {verdict}")
    lines.append(span_line(prediction))
    return "\n".join(lines)


def span_line(prediction: Prediction) -> str:
    """The predicted activation span beside the measured QRS duration, and whether they agree."""
    line = f"activation span {prediction.span_ms:.0f} ms (latest - earliest site)"
    if prediction.qrs_ms is None:
        return line + "; no QRS duration measured (single prepared beat)"
    verdict = "DISAGREE" if prediction.span_warning else "agree"
    low, high = SPAN_MINUS_QRS_MS
    return line + f", measured QRS {prediction.qrs_ms:.0f} ms: {verdict} (span - QRS within {low:+.0f}..{high:+.0f} ms)"
