"""Training data sets: splits by geometry, the documented shard layout,
streaming statistics, skipped files, idempotent rebuilds, the LLNL import."""
from __future__ import annotations

import argparse
import json
import os
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from model.synthetic_sample import synthetic_vm, write_synthetic_sample
from solver.common.errors import ConfigError
from solver.common.sites import ELECTRODE_NAMES, LEAD_NAMES, SITE_NAMES
from workflow import dataset_cli
from solver.common.files import sha256_file
from solver.common.datasets import SPLITS, Manifest, RunningMoments, fit_length
from workflow.dataset import (
    assign_splits, build_dataset, find_sample_files, split_counts, verify_dataset,
)
from solver.common.traces import threshold_crossing_ms
from workflow.llnl import find_pairs, import_llnl

LENGTH = 40  # time samples in the sample files
TRACE = 50  # time samples in the data set: the files are padded
GEOMETRIES = ("anatomy-a", "anatomy-b", "anatomy-c", "anatomy-d", "anatomy-e")
CONDITIONS = ("normal", "lbbb", "rbbb", "scar")


def _parameters(i: int) -> dict[str, float]:
    """Every sample has ``cv``; only even ones have ``apd``, so the table has NaN holes."""
    return {"cv": 0.5 + 0.01 * i, **({"apd": 250.0 + i} if i % 2 == 0 else {})}


def _write_samples(directory: Path, count: int = 12, seed: int = 0) -> list[Path]:
    rng = np.random.default_rng(seed)
    return [
        write_synthetic_sample(directory / f"sample-{i:03d}.h5", GEOMETRIES[i % len(GEOMETRIES)],
                               CONDITIONS[i % len(CONDITIONS)], _parameters(i), rng, LENGTH)
        for i in range(count)
    ]


@pytest.fixture(scope="module")
def sample_files(tmp_path_factory) -> list[Path]:
    return _write_samples(tmp_path_factory.mktemp("samples"))


@pytest.fixture(scope="module")
def built(sample_files, tmp_path_factory) -> tuple[Path, Manifest]:
    root = tmp_path_factory.mktemp("built") / "dataset"
    return root, build_dataset(sample_files, root, samples_per_shard=3, samples_per_trace=TRACE)


def _read_split(root: Path, manifest: Manifest, split: str) -> dict[str, np.ndarray]:
    parts: dict[str, list] = {}
    for shard in manifest.splits[split]:
        with h5py.File(root / shard.file, "r") as f:
            for name in ("ecg", "vm", "act", "sample_ids", "geometry_ids", "conditions", "parameters"):
                parts.setdefault(name, []).append(f[name][()])
    return {name: np.concatenate(values) for name, values in parts.items()}


def _strings(values: np.ndarray) -> list[str]:
    return [v.decode() if isinstance(v, bytes) else str(v) for v in values]


def test_splits_are_disjoint_by_geometry_and_cover_every_sample_once(built, sample_files):
    root, manifest = built
    geometries, ids = {}, []
    for split in SPLITS:
        data = _read_split(root, manifest, split)
        split_ids = _strings(data["sample_ids"])
        assert split_ids == sorted(split_ids)
        assert len(split_ids) == manifest.split_size(split) > 0
        geometries[split] = set(_strings(data["geometry_ids"]))
        ids += split_ids
    assert sorted(ids) == sorted(p.stem for p in sample_files)
    assert not (geometries["train"] & geometries["validation"]) and not (geometries["train"] & geometries["test"])
    assert not (geometries["validation"] & geometries["test"])
    assert set().union(*geometries.values()) == set(GEOMETRIES)


def test_split_assignment_is_deterministic_and_leaves_no_split_empty():
    assert split_counts(5, (0.8, 0.1, 0.1)) == [3, 1, 1]
    assert split_counts(3, (0.8, 0.1, 0.1)) == [1, 1, 1]
    assert split_counts(100, (0.8, 0.1, 0.1)) == [80, 10, 10]
    for n in range(3, 40):
        for fractions in ((0.8, 0.1, 0.1), (0.98, 0.01, 0.01), (0.34, 0.33, 0.33)):
            counts = split_counts(n, fractions)
            assert sum(counts) == n and min(counts) >= 1
    ids = [f"g{i}" for i in range(20)]
    assert assign_splits(ids, (0.8, 0.1, 0.1), 7) == assign_splits(reversed(ids), (0.8, 0.1, 0.1), 7)
    assert assign_splits(ids, (0.8, 0.1, 0.1), 7) != assign_splits(ids, (0.8, 0.1, 0.1), 8)


def test_shards_have_the_documented_layout(built, sample_files):
    root, manifest = built
    shard = manifest.splits["train"][0]
    with h5py.File(root / shard.file, "r") as f:
        k = shard.samples
        attrs = {key: f.attrs[key] for key in ("format", "format_version", "split", "complete")}
        assert attrs == {"format": "ecgi-shard", "format_version": 1, "split": "train", "complete": True}
        expected = {"ecg": ((k, TRACE, 12), np.float32), "vm": ((k, TRACE, 75), np.float32),
                    "act": ((k, 75), np.float32), "parameters": ((k, 2), np.float64)}
        for name, (shape, dtype) in expected.items():
            assert f[name].shape == shape and f[name].dtype == dtype, name
            assert f[name].chunks == (1, *shape[1:]) and f[name].compression == "gzip", name
        for name in ("sample_ids", "geometry_ids", "conditions"):
            assert f[name].shape == (k,) and h5py.check_string_dtype(f[name].dtype) is not None
            assert f[name].chunks == (1,) and f[name].compression == "gzip"
        assert list(f["ecg"].attrs["leads"]) == list(LEAD_NAMES) and f["ecg"].attrs["dt_ms"] == 1.0
        assert list(f["vm"].attrs["sites"]) == list(SITE_NAMES)
        assert list(f["parameters"].attrs["parameter_names"]) == ["apd", "cv"]
        first = _strings(f["sample_ids"][()])[0]
        row = {"ecg": f["ecg"][0], "vm": f["vm"][0], "act": f["act"][0], "parameters": f["parameters"][0],
               "condition": _strings(f["conditions"][()])[0]}
    i = int(first.split("-")[1])
    with h5py.File(sample_files[i], "r") as source:
        leads, vm, act = source["leads"][()], source["vm_sites"][()], source["act_sites"][()]
    np.testing.assert_array_equal(row["ecg"][:LENGTH], leads)
    np.testing.assert_array_equal(row["ecg"][LENGTH:], np.repeat(leads[-1:], TRACE - LENGTH, axis=0))
    np.testing.assert_array_equal(row["vm"][:LENGTH], vm)
    np.testing.assert_array_equal(row["act"], act)
    assert row["condition"] == CONDITIONS[i % len(CONDITIONS)]
    expected_apd = _parameters(i).get("apd", np.nan)
    np.testing.assert_array_equal(row["parameters"], [expected_apd, _parameters(i)["cv"]])


def test_fit_length_crops_or_holds_the_last_value():
    trace = np.arange(8, dtype=np.float64).reshape(4, 2)
    np.testing.assert_array_equal(fit_length(trace, 2), trace[:2])
    np.testing.assert_array_equal(fit_length(trace, 6)[4:], [[6, 7], [6, 7]])
    assert fit_length(trace, 6).dtype == np.float32


def test_manifest_records_the_shards_and_verify_catches_a_changed_one(built, tmp_path):
    root, manifest = built
    raw = json.loads((root / "manifest.json").read_text())
    assert list(raw) == ["format", "format_version", "leads", "sites", "dt_ms", "samples_per_step", "splits", "statistics"]
    assert raw["samples_per_step"] == TRACE and raw["leads"] == list(LEAD_NAMES)
    for split in SPLITS:
        for entry in raw["splits"][split]:
            assert entry["sha256"] == sha256_file(root / entry["file"])
    assert Manifest.load(root) == manifest
    assert verify_dataset(root) == manifest

    copy = tmp_path / "copy"
    shutil.copytree(root, copy)
    victim = copy / manifest.splits["test"][0].file
    with h5py.File(victim, "r+") as f:
        f["act"][0] = f["act"][0] + 1.0
    with pytest.raises(ConfigError, match=str(victim.name)):
        verify_dataset(copy)
    victim.unlink()
    with pytest.raises(ConfigError, match="missing"):
        verify_dataset(copy)


def test_statistics_are_numpys_on_the_train_split(built):
    root, manifest = built
    train = _read_split(root, manifest, "train")
    for name, axes in (("ecg", (0, 1)), ("vm", (0, 1)), ("act", 0)):
        values = train[name].astype(np.float64)
        np.testing.assert_allclose(manifest.statistics[f"{name}_mean"], values.mean(axis=axes), rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(manifest.statistics[f"{name}_std"], values.std(axis=axes), rtol=1e-9, atol=1e-9)


def test_running_moments_merge_batches_and_skip_nan():
    rng = np.random.default_rng(1)
    x = rng.normal(3.0, 2.0, (100, 4))
    x[rng.random(x.shape) < 0.2] = np.nan
    x[:, 3] = np.nan
    moments = RunningMoments(4)
    for batch in np.array_split(x, 7):
        moments.update(batch)
    mean, std = moments.result()
    np.testing.assert_allclose(mean[:3], np.nanmean(x[:, :3], axis=0))
    np.testing.assert_allclose(std[:3], np.nanstd(x[:, :3], axis=0))
    assert (mean[3], std[3]) == (0.0, 1.0)


def test_incomplete_or_corrupted_files_are_skipped_and_reported(sample_files, tmp_path):
    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(sample_files[0].read_bytes()[:5000])
    altered = tmp_path / "altered.h5"
    shutil.copy(sample_files[1], altered)
    with h5py.File(altered, "r+") as f:
        f["leads"][0, 0] += 1.0
    manifest = build_dataset([*sample_files, truncated, altered], tmp_path / "dataset", samples_per_trace=TRACE)
    reasons = {s.path.name: s.reason for s in manifest.report.skipped}
    assert set(reasons) == {"truncated.h5", "altered.h5"}
    assert "checksum" in reasons["altered.h5"]
    assert sum(manifest.split_size(s) for s in SPLITS) == len(sample_files)
    with pytest.raises(ConfigError, match="no usable sample files"):
        build_dataset([truncated], tmp_path / "nothing")


def test_sample_ids_are_file_names_and_must_be_unique(sample_files, tmp_path):
    twin = tmp_path / "elsewhere" / sample_files[0].name
    twin.parent.mkdir()
    shutil.copy(sample_files[0], twin)
    with pytest.raises(ConfigError, match=f"{sample_files[0].stem}.*must be unique"):
        build_dataset([*sample_files, twin], tmp_path / "dataset")


def test_rebuild_is_idempotent_and_rewrites_only_changed_shards(sample_files, tmp_path):
    inputs = tmp_path / "samples"
    inputs.mkdir()
    files = [Path(shutil.copy(p, inputs)) for p in sample_files]
    root = tmp_path / "dataset"
    first = build_dataset(files, root, samples_per_shard=2, samples_per_trace=TRACE)
    manifest_bytes = (root / "manifest.json").read_bytes()
    shards = sorted(root.rglob("shard-*.h5"))
    stamps = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in shards}

    again = build_dataset(files, root, samples_per_shard=2, samples_per_trace=TRACE)
    assert again.report.written == [] and len(again.report.reused) == len(shards) == len(first.report.written)
    assert (root / "manifest.json").read_bytes() == manifest_bytes
    assert {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in shards} == stamps

    other = tmp_path / "elsewhere"
    build_dataset(files, other, samples_per_shard=2, samples_per_trace=TRACE)
    assert (other / "manifest.json").read_bytes() == manifest_bytes

    write_synthetic_sample(files[4], GEOMETRIES[4], "normal", _parameters(4), np.random.default_rng(99), LENGTH)
    changed = build_dataset(files, root, samples_per_shard=2, samples_per_trace=TRACE)
    assert len(changed.report.written) == 1
    with h5py.File(root / changed.report.written[0], "r") as f:
        assert "sample-004" in _strings(f["sample_ids"][()])

    smaller = build_dataset(files, root, samples_per_shard=64, samples_per_trace=TRACE)
    assert smaller.report.removed and sorted(root.rglob("shard-*.h5")) == sorted(
        root / s.file for shards in smaller.splits.values() for s in shards)


def test_the_model_reads_the_data_set(built):
    data = pytest.importorskip("model.data")
    root, manifest = built
    loaded = data.load_manifest(root)
    data.validate_dataset(loaded, SPLITS, check_sha256=True)
    assert loaded.split_size("train") == manifest.split_size("train")


def test_dataset_build_command(sample_files, tmp_path, capsys):
    parser = argparse.ArgumentParser(prog="ecgi")
    dataset_cli.add_commands(parser.add_subparsers(dest="command"))
    campaign = tmp_path / "campaign"
    shutil.copytree(sample_files[0].parent, campaign)
    args = parser.parse_args(["dataset", "build", str(campaign), "--samples-per-shard", "5", "--splits", "0.6,0.2,0.2"])
    assert args.handler(args) == 0
    assert "manifest.json" in capsys.readouterr().out
    assert verify_dataset(campaign / "dataset").split_size("train") > 0
    assert all("dataset" not in p.parts for p in find_sample_files(campaign, exclude=campaign / "dataset"))
    with pytest.raises(SystemExit):
        parser.parse_args(["dataset", "build", str(campaign), "--splits", "most,some"])
    with pytest.raises(ConfigError, match="add up to 1"):
        build_dataset(sample_files, tmp_path / "bad", split_fractions=(0.5, 0.1, 0.1))



def test_two_campaigns_make_one_data_set(sample_files, tmp_path, capsys):
    """The halves of a campaign run as two (say, two seeds) build the same
    data set as all the files in one directory."""
    parser = argparse.ArgumentParser(prog="ecgi")
    dataset_cli.add_commands(parser.add_subparsers(dest="command"))
    halves = [tmp_path / "first", tmp_path / "second"]
    for i, path in enumerate(sample_files):
        halves[i % 2].mkdir(exist_ok=True)
        shutil.copy(path, halves[i % 2])
    together = build_dataset(sample_files, tmp_path / "together", samples_per_shard=5)
    args = parser.parse_args(["dataset", "build", *map(str, halves), "--output", str(tmp_path / "both"),
                              "--samples-per-shard", "5"])
    assert args.handler(args) == 0
    both = verify_dataset(tmp_path / "both")
    for split in SPLITS:
        ids = _strings(_read_split(tmp_path / "both", both, split)["sample_ids"])
        assert ids == _strings(_read_split(tmp_path / "together", together, split)["sample_ids"])
    args = parser.parse_args(["dataset", "build", *map(str, halves)])
    with pytest.raises(ConfigError, match="--output"):
        args.handler(args)


LLNL_LENGTH = 500
LLNL_FILES = {
    "data_hearts_dd_0p2": [f"hearts_dd_0p2_volunteer.{v}_pattern.{p}" for v in ("v1", "v10", "v2") for p in (0, 1)],
    "data_hearts_dd_0p2_geo_act_3_bcl": [
        f"hearts_dd_0p2_geo_act_3_bcl_bcl.1000.pattern.0.volunteer.{v}" for v in ("v1", "v10", "v2")
    ],
}


def _llnl_arrays(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Electrodes, Vm and the activation times Vm was built from; the last site never activates."""
    act = rng.uniform(10.0, 200.0, len(SITE_NAMES))
    vm = synthetic_vm(act, LLNL_LENGTH)
    vm[:, -1] = -85.0
    electrodes = rng.normal(0.0, 1.0, (LLNL_LENGTH, len(ELECTRODE_NAMES)))
    return electrodes, vm, act


@pytest.fixture(scope="module")
def llnl(tmp_path_factory) -> tuple[Path, dict[str, tuple[np.ndarray, np.ndarray]]]:
    root = tmp_path_factory.mktemp("intracardiac_dataset")
    rng = np.random.default_rng(5)
    arrays = {}
    for folder, tags in LLNL_FILES.items():
        (root / folder).mkdir()
        for tag in tags:
            electrodes, vm, _ = _llnl_arrays(rng)
            np.save(root / folder / f"pECGData_{tag}.npy", electrodes)
            np.save(root / folder / f"VmData_{tag}.npy", vm)
            arrays[f"{folder}/{tag}"] = (electrodes, vm)
    (root / "README.txt").write_text("not data")
    return root, arrays


def _expected_leads(e: np.ndarray) -> np.ndarray:
    ra, la, ll = e[:, 0], e[:, 1], e[:, 2]
    wilson = (ra + la + ll) / 3
    limb = [la - ra, ll - ra, ll - la, 1.5 * (ra - wilson), 1.5 * (la - wilson), 1.5 * (ll - wilson)]
    return np.stack(limb + [e[:, k] - wilson for k in range(4, 10)], axis=1)


def test_llnl_import_leads_activation_and_volunteer_splits(llnl, tmp_path):
    root, arrays = llnl
    manifest = import_llnl(root, tmp_path / "dataset", samples_per_shard=4)
    seen = {}
    for split in SPLITS:
        data = _read_split(tmp_path / "dataset", manifest, split)
        volunteers = set(_strings(data["geometry_ids"]))
        assert len(volunteers) == 1, "three volunteers, one per split"
        assert set(_strings(data["conditions"])) == {"unknown"} and data["parameters"].shape[1] == 0
        for i, sample_id in enumerate(_strings(data["sample_ids"])):
            seen[sample_id] = split
            electrodes, vm = arrays[sample_id]
            assert _strings(data["geometry_ids"])[i] == sample_id.split("volunteer.")[1].split("_")[0]
            np.testing.assert_allclose(data["ecg"][i], _expected_leads(electrodes), rtol=1e-6, atol=1e-6)
            np.testing.assert_array_equal(data["vm"][i], vm.astype(np.float32))
            np.testing.assert_array_equal(data["act"][i], threshold_crossing_ms(vm, 1.0, axis=0).astype(np.float32))
    assert sorted(seen) == sorted(arrays)
    verify_dataset(tmp_path / "dataset")


def test_activation_is_the_interpolated_first_crossing_of_zero():
    vm = np.array([[-80.0, 5.0, -80.0], [-20.0, 10.0, -80.0], [20.0, -50.0, -80.0], [30.0, 30.0, -80.0]])
    act = threshold_crossing_ms(vm, 1.0, axis=0)
    assert act[0] == pytest.approx(1.5)  # -20 -> 20 mV between 1 and 2 ms
    assert act[1] == 0.0  # above from the first sample; the later dip does not count
    assert np.isnan(act[2])
    _, vm, upstroke = _llnl_arrays(np.random.default_rng(3))
    act = threshold_crossing_ms(vm, 1.0, axis=0)
    assert np.all(np.abs(act[:-1] - upstroke[:-1]) < 1.0) and np.isnan(act[-1])


def test_llnl_errors_name_the_problem(llnl, tmp_path):
    root, _ = llnl
    with pytest.raises(ConfigError, match="no such"):
        find_pairs(tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="no pECGData"):
        find_pairs(tmp_path / "empty")
    broken = tmp_path / "broken"
    shutil.copytree(root, broken)
    orphan = next((broken / "data_hearts_dd_0p2").glob("VmData_*v10_pattern.1.npy"))
    os.remove(orphan.with_name(orphan.name.replace("VmData_", "pECGData_")))
    with pytest.raises(ConfigError, match=f"{orphan.name}: unpaired"):
        find_pairs(broken)
    np.save(orphan.with_name(orphan.name.replace("VmData_", "pECGData_")), np.zeros((500, 12)))
    with pytest.raises(ConfigError, match=r"shape \(500, 12\), expected \(T, 10\)"):
        find_pairs(broken)
