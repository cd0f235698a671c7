"""A small synthetic data set in the exact shard format, for tests and first runs.

The ECG is computed from the targets, so what a network learns from it is
real: each sample draws a few early-activation sources on the endocardium, a
conduction velocity and action-potential durations; activation spreads from
the sources over approximate 3-D site positions; each site's transmembrane
voltage is an action-potential template placed at its activation time; and
the electrode potentials are a fixed lead-field sum over the sites' voltages
(the row-centred 1/r kernel makes a uniformly depolarised heart electrically
silent, giving an isoelectric ST segment).  The five conditions change the
sources (LBBB: right-ventricular only; RBBB: left-ventricular only), slow a
region (scar) or lengthen repolarisation (IKr block).

    python -m model.synthetic DIR [--train 256 --validation 64 --test 64 --samples 500]
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from solver.common.datasets import (
    MANIFEST_NAME, ArraySample, Manifest, SampleArrays, ShardInfo, train_statistics, write_shard,
)
from solver.common.files import write_text_atomic
from solver.common.sites import SITE_NAMES
from solver.common.traces import threshold_crossing_ms

V_REST_MV = -85.5
V_PEAK_MV = 50.0
CONDITIONS = ("normal", "lbbb", "rbbb", "scar", "ikr_block")
PARAMETER_NAMES = (
    "onset_ms", "conduction_velocity_mm_per_ms", "transmural_velocity_mm_per_ms",
    "apd_base_ms", "apd_scale", "scar_delay_ms", "heart_scale",
)
_LV_RADIUS_MM, _LV_LENGTH_MM, _LV_WALL_MM = 25.0, 70.0, 10.0
_RV_WALL_MM = 4.0
_RING_DEPTH = {"basal": 0.15, "mid": 0.45, "apical": 0.75}
# AHA segment centres: (ring, angle in degrees); the septum faces -x (180 degrees).
_AHA = {
    1: ("basal", 90), 2: ("basal", 150), 3: ("basal", 210), 4: ("basal", 270), 5: ("basal", 330), 6: ("basal", 30),
    7: ("mid", 90), 8: ("mid", 150), 9: ("mid", 210), 10: ("mid", 270), 11: ("mid", 330), 12: ("mid", 30),
    13: ("apical", 90), 14: ("apical", 180), 15: ("apical", 270), 16: ("apical", 0),
}
# RV free-wall segments: (ring, angle around the RV cavity centre); septal RV segments face an AHA segment.
_RV_FREE = {1: ("basal", 110), 2: ("basal", 180), 3: ("basal", 250), 6: ("mid", 110), 7: ("mid", 180),
            8: ("mid", 250), 11: ("apical", 145), 12: ("apical", 215)}
_RV_SEPTAL = {4: 3, 5: 2, 9: 9, 10: 8, 13: 14}
# Electrodes (mm) around the heart: right arm, left arm, left leg, then V1-V6 on the chest.
_ELECTRODES = np.array([
    [-300.0, 50.0, 250.0], [300.0, 50.0, 250.0], [80.0, 0.0, -600.0],
    [-45.0, 90.0, 0.0], [-5.0, 100.0, 0.0], [40.0, 95.0, -20.0],
    [80.0, 80.0, -40.0], [110.0, 45.0, -40.0], [125.0, 0.0, -40.0],
])
_LEAD_GAIN = 0.9  # mV per (mV of Vm x 1/mm), giving QRS amplitudes of about 0.5-2 mV


def _lv_point(ring_depth: float, angle_deg: float, outward_mm: float) -> np.ndarray:
    """A point on a prolate half-ellipsoid (base at z = 0), ``outward_mm`` outside the endocardium."""
    radius = (_LV_RADIUS_MM + outward_mm) * np.sqrt(1.0 - ring_depth**2)
    theta = np.deg2rad(angle_deg)
    return np.array([radius * np.cos(theta), radius * np.sin(theta), -(_LV_LENGTH_MM + outward_mm) * ring_depth])


def _rv_point(ring_depth: float, angle_deg: float, outward_mm: float) -> np.ndarray:
    """A point on the RV free wall: an arc around a cavity centre beside the septum."""
    centre_x = -(_LV_RADIUS_MM + _LV_WALL_MM + 12.0) * np.sqrt(1.0 - ring_depth**2)
    radius = (22.0 + outward_mm) * np.sqrt(1.0 - ring_depth**2)
    theta = np.deg2rad(angle_deg)
    return np.array([centre_x + radius * np.cos(theta), radius * np.sin(theta), -0.85 * _LV_LENGTH_MM * ring_depth])


def site_positions() -> dict[str, np.ndarray]:
    """Approximate positions (mm) of the 75 named sites in a reference heart."""
    pos: dict[str, np.ndarray] = {"AHA17": np.array([0.0, 0.0, -_LV_LENGTH_MM])}
    for seg, (ring, angle) in _AHA.items():
        pos[f"AHA{seg:02d}"] = _lv_point(_RING_DEPTH[ring], angle, 0.0)
    for seg, (ring, angle) in _RV_FREE.items():
        pos[f"RV{seg:02d}"] = _rv_point(_RING_DEPTH[ring], angle, 0.0)
    for seg, aha in _RV_SEPTAL.items():  # the RV side of the septum, across from an LV segment
        ring, angle = _AHA[aha]
        pos[f"RV{seg:02d}"] = _lv_point(_RING_DEPTH[ring], angle, _LV_WALL_MM)
    for name in SITE_NAMES:
        layer, _, rest = name.partition("_")
        if layer in ("EPI", "MID"):
            pos[name] = _transmural_point(rest, 1.0 if layer == "EPI" else 0.5)
        elif layer == "SEPTM":
            lv, rv = rest.split("_")
            pos[name] = (pos[lv] + pos[rv]) / 2
    return {name: pos[name] for name in SITE_NAMES}


def _transmural_point(endocardial_site: str, fraction: float) -> np.ndarray:
    """The point ``fraction`` of the wall thickness outside an endocardial site."""
    if endocardial_site == "AHA17":
        return np.array([0.0, 0.0, -_LV_LENGTH_MM - fraction * _LV_WALL_MM])
    seg = int(endocardial_site[-2:])
    if endocardial_site.startswith("AHA"):
        ring, angle = _AHA[seg]
        return _lv_point(_RING_DEPTH[ring], angle, fraction * _LV_WALL_MM)
    ring, angle = _RV_FREE[seg]
    return _rv_point(_RING_DEPTH[ring], angle, fraction * _RV_WALL_MM)


def _transmural_depth_mm() -> np.ndarray:
    """Each site's distance from the endocardium, for the slower transmural spread."""
    depth = []
    for name in SITE_NAMES:
        wall = _RV_WALL_MM if name.startswith(("EPI_RV", "MID_RV")) else _LV_WALL_MM
        depth.append(wall * {"EPI": 1.0, "MID": 0.5, "SEPTM": 0.5}.get(name.split("_")[0], 0.0))
    return np.array(depth)


def _lead_field(positions: np.ndarray) -> np.ndarray:
    """(12, 75): lead potential per mV of depolarisation at each site."""
    inverse = 1.0 / np.linalg.norm(_ELECTRODES[:, None, :] - positions[None, :, :], axis=-1)
    inverse -= inverse.mean(axis=1, keepdims=True)
    ra, la, ll, *chest = inverse * _LEAD_GAIN
    wilson = (ra + la + ll) / 3
    leads = [la - ra, ll - ra, ll - la, ra - (la + ll) / 2, la - (ra + ll) / 2, ll - (ra + la) / 2]
    return np.stack(leads + [v - wilson for v in chest])


def action_potentials(act_ms: np.ndarray, apd_ms: np.ndarray, amplitude: np.ndarray, samples: int) -> np.ndarray:
    """(K, T, 75) transmembrane voltage: upstroke crossing 0 mV at ``act_ms``, plateau, repolarisation."""
    t = np.arange(samples, dtype=np.float64)[None, :, None]
    tau = t - act_ms[:, None, :]
    zero_crossing = np.log(-V_REST_MV / V_PEAK_MV)  # logit of the fraction at which Vm crosses 0 mV
    upstroke = 1.0 / (1.0 + np.exp(-(tau / 0.6 + zero_crossing)))
    plateau = 1.0 - 0.25 * (1.0 - np.exp(-np.maximum(tau, 0.0) / 40.0))
    repolarisation = 1.0 / (1.0 + np.exp((tau - apd_ms[:, None, :]) / 12.0))
    swing = (V_PEAK_MV - V_REST_MV) * amplitude[:, None, :]
    return V_REST_MV + swing * upstroke * plateau * repolarisation


@dataclass
class SyntheticBatch:
    ecg: np.ndarray  # (K, T, 12) mV
    vm: np.ndarray  # (K, T, 75) mV
    act: np.ndarray  # (K, 75) ms
    conditions: list[str]
    parameters: np.ndarray  # (K, P)


def simulate(rng: np.random.Generator, count: int, samples: int, heart_scale: float) -> SyntheticBatch:
    """``count`` heartbeats of one synthetic anatomy (all sites scaled by ``heart_scale``)."""
    names = list(SITE_NAMES)
    positions = np.stack(list(site_positions().values())) * heart_scale
    depth = _transmural_depth_mm() * heart_scale
    endo = [i for i, n in enumerate(names) if n.startswith(("AHA", "RV"))]
    lv_septal = [names.index(n) for n in ("AHA02", "AHA03", "AHA08", "AHA09", "AHA14")]
    lv_free = [names.index(n) for n in ("AHA05", "AHA06", "AHA11", "AHA12", "AHA16")]
    rv = [i for i in endo if names[i].startswith("RV")]
    lead_field = _lead_field(positions)
    act, apd, amp, conditions, params = [], [], [], [], []
    for _ in range(count):
        condition = CONDITIONS[rng.integers(len(CONDITIONS))]
        groups = {"lbbb": [rv], "rbbb": [lv_septal, lv_free]}.get(condition, [lv_septal, lv_free, rv])
        onset = rng.uniform(5.0, 25.0)
        cv = rng.uniform(0.7, 1.1) if condition == "lbbb" else rng.uniform(1.4, 2.4)
        cv_transmural = rng.uniform(0.4, 0.8)
        sources = np.stack([positions[rng.choice(g)] + rng.normal(0.0, 4.0, 3) for g in groups])
        delays = onset + rng.uniform(0.0, 10.0, len(groups))
        distance = np.linalg.norm(positions[:, None, :] - sources[None, :, :], axis=-1)
        t = (delays[None, :] + distance / cv).min(axis=1) + depth / cv_transmural
        amplitude = np.ones(len(names))
        scar_delay = 0.0
        if condition == "scar":
            centre = positions[rng.choice(lv_free + lv_septal)]
            in_scar = np.linalg.norm(positions - centre, axis=-1) < 22.0 * heart_scale
            scar_delay = rng.uniform(15.0, 35.0)
            t = t + scar_delay * in_scar
            amplitude = np.where(in_scar, 0.7, 1.0)
        apd_base = rng.uniform(230.0, 290.0)
        apd_scale = rng.uniform(1.2, 1.4) if condition == "ikr_block" else 1.0
        transmural_apd = np.array([25.0 if n.startswith("MID") else -15.0 if n.startswith("EPI") else 0.0 for n in names])
        apd.append(apd_scale * (apd_base - 0.5 * (t - t.mean()) + transmural_apd))
        act.append(t)
        amp.append(amplitude)
        conditions.append(condition)
        params.append([onset, cv, cv_transmural, apd_base, apd_scale, scar_delay, heart_scale])
    # Activation is read from traces long enough to hold every upstroke, then cropped to ``samples``.
    vm = action_potentials(np.array(act), np.array(apd), np.array(amp), max(samples, 400))
    act_ms = threshold_crossing_ms(vm, axis=1)
    vm = vm[:, :samples]
    ecg = np.einsum("ls,kts->ktl", lead_field, vm - V_REST_MV)
    ecg += rng.normal(0.0, 0.01, ecg.shape)
    return SyntheticBatch(
        ecg=ecg.astype(np.float32), vm=vm.astype(np.float32), act=act_ms.astype(np.float32),
        conditions=conditions, parameters=np.array(params, dtype=np.float64),
    )


def _write_shard(path: Path, split: str, batch: SyntheticBatch, sample_ids: list[str], geometry_ids: list[str]) -> str:
    """One shard through the data set format's writer; returns its sha256."""
    rows = [
        ArraySample(sample_id, geometry_id, condition, dict(zip(PARAMETER_NAMES, map(float, parameters))),
                    SampleArrays(ecg, vm, act))
        for sample_id, geometry_id, condition, parameters, ecg, vm, act in zip(
            sample_ids, geometry_ids, batch.conditions, batch.parameters, batch.ecg, batch.vm, batch.act)
    ]
    return write_shard(path, split, rows, PARAMETER_NAMES, batch.ecg.shape[1])


def write_synthetic_dataset(
    root: str | Path, train: int = 256, validation: int = 64, test: int = 64, samples: int = 500,
    shard_size: int = 64, samples_per_geometry: int = 4, seed: int = 0,
) -> Path:
    """Write DATASET/manifest.json and its shards; splits never share a geometry."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    splits: dict[str, list[ShardInfo]] = {}
    geometry = 0
    for split, count in (("train", train), ("validation", validation), ("test", test)):
        splits[split] = []
        for shard, start in enumerate(range(0, count, shard_size)):
            k = min(shard_size, count - start)
            parts, geometry_ids = [], []
            for first in range(0, k, samples_per_geometry):
                n = min(samples_per_geometry, k - first)
                parts.append(simulate(rng, n, samples, heart_scale=rng.uniform(0.9, 1.1)))
                geometry_ids += [f"synthetic-geometry-{geometry:05d}"] * n
                geometry += 1
            batch = SyntheticBatch(
                ecg=np.concatenate([p.ecg for p in parts]), vm=np.concatenate([p.vm for p in parts]),
                act=np.concatenate([p.act for p in parts]), conditions=sum((p.conditions for p in parts), []),
                parameters=np.concatenate([p.parameters for p in parts]),
            )
            ids = [f"synthetic-{split}-{start + i:05d}" for i in range(k)]
            file = f"{split}/shard-{shard:05d}.h5"
            sha = _write_shard(root / file, split, batch, ids, geometry_ids)
            splits[split].append(ShardInfo(file, k, sha))
    statistics = train_statistics([root / s.file for s in splits["train"]])
    manifest = Manifest(splits=splits, statistics=statistics, samples_per_step=samples)
    path = root / MANIFEST_NAME
    write_text_atomic(path, manifest.to_json())
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m model.synthetic", description=__doc__.split("\n\n")[0])
    parser.add_argument("directory", help="data set directory to write")
    parser.add_argument("--train", type=int, default=256, help="training samples (256)")
    parser.add_argument("--validation", type=int, default=64, help="validation samples (64)")
    parser.add_argument("--test", type=int, default=64, help="test samples (64)")
    parser.add_argument("--samples", type=int, default=500, help="time samples per trace, 1 ms apart (500)")
    parser.add_argument("--shard-size", type=int, default=64, help="samples per shard (64)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    path = write_synthetic_dataset(
        args.directory, args.train, args.validation, args.test, args.samples, args.shard_size, seed=args.seed
    )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
