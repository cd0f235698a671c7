"""Data sets, their validation, the samplers, the training configuration and launcher detection."""
from __future__ import annotations

import json
import pickle
import shutil

import h5py
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, DistributedSampler

from model.config import config_from_dict, load_train_config
from model.data import (InMemoryDataset, ShardDataset, StridedSampler, load_manifest, onset_shifts, scale_ecg, shift_onset,
                        validate_dataset)
from model.distributed import expand_nodelist, launch_info, port_from_job_id
from model.synthetic import write_synthetic_dataset
from solver.common.errors import ConfigError
from solver.common.sites import LEAD_NAMES, SITE_NAMES


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("data") / "synthetic"
    write_synthetic_dataset(root, train=12, validation=4, test=4, samples=200, shard_size=8)
    return root


@pytest.fixture
def copy(dataset, tmp_path):
    target = tmp_path / "copy"
    shutil.copytree(dataset, target)
    return target


def test_synthetic_set_follows_the_shard_format(dataset):
    manifest = json.loads((dataset / "manifest.json").read_text())
    assert manifest["format"] == "ecgi-dataset" and manifest["format_version"] == 1
    assert manifest["leads"] == list(LEAD_NAMES) and manifest["sites"] == list(SITE_NAMES)
    assert [e["samples"] for e in manifest["splits"]["train"]] == [8, 4]
    assert all(len(manifest["statistics"][k]) == 12 for k in ("ecg_mean", "ecg_std"))
    with h5py.File(dataset / "train" / "shard-00001.h5") as f:
        assert f.attrs["format"] == "ecgi-shard" and f.attrs["complete"] and f.attrs["split"] == "train"
        assert f["ecg"].shape == (4, 200, 12) and f["vm"].shape == (4, 200, 75) and f["act"].shape == (4, 75)
        assert f["ecg"].chunks == (1, 200, 12) and f["ecg"].compression == "gzip"
        assert list(f["vm"].attrs["sites"]) == list(SITE_NAMES) and f["ecg"].attrs["dt_ms"] == 1.0
        assert f["parameters"].shape[1] == len(f["parameters"].attrs["parameter_names"])
        conditions = {c.decode() for c in f["conditions"][:]}
        assert conditions <= {"normal", "lbbb", "rbbb", "scar", "ikr_block"}
        # The activation times are the traces' 0 mV crossings.
        vm, act = f["vm"][0], f["act"][0]
        k = np.floor(act).astype(int)
        assert np.all(vm[k, np.arange(75)] <= 0) and np.all(vm[k + 1, np.arange(75)] > 0)
    geometries = {}
    for split in ("train", "validation", "test"):
        for entry in manifest["splits"][split]:
            with h5py.File(dataset / entry["file"]) as f:
                geometries.setdefault(split, set()).update(g.decode() for g in f["geometry_ids"][:])
    assert not (geometries["train"] & geometries["validation"]) and not (geometries["train"] & geometries["test"])


def test_valid_set_passes_validation_with_checksums(dataset):
    validate_dataset(load_manifest(dataset), ("train", "validation", "test"), check_sha256=True)


def test_missing_manifest_is_named(tmp_path):
    tmp_path.joinpath("empty").mkdir()
    with pytest.raises(ConfigError, match=r"empty/manifest.json: missing"):
        load_manifest(tmp_path / "empty")


def test_missing_shard_is_named(copy):
    (copy / "train" / "shard-00001.h5").unlink()
    with pytest.raises(ConfigError, match=r"train/shard-00001.h5: shard listed in the manifest is missing"):
        validate_dataset(load_manifest(copy), ("train",))


def test_checksum_mismatch_is_named(copy):
    with h5py.File(copy / "validation" / "shard-00000.h5", "r+") as f:
        f["act"][0, 0] += 1.0
    validate_dataset(load_manifest(copy), ("validation",))  # shapes still fine
    with pytest.raises(ConfigError, match=r"validation/shard-00000.h5: sha256 differs"):
        validate_dataset(load_manifest(copy), ("validation",), check_sha256=True)


def test_wrong_shape_is_named(copy):
    path = copy / "train" / "shard-00000.h5"
    with h5py.File(path, "r+") as f:
        del f["act"]
        f.create_dataset("act", data=np.zeros((8, 74), np.float32))
    with pytest.raises(ConfigError, match=r"shard-00000.h5: dataset 'act' has shape \(8, 74\), expected \(8, 75\)"):
        validate_dataset(load_manifest(copy), ("train",))


def test_not_hdf5_is_named(copy):
    (copy / "test" / "shard-00000.h5").write_text("not hdf5")
    with pytest.raises(ConfigError, match=r"test/shard-00000.h5: cannot be read as HDF5"):
        validate_dataset(load_manifest(copy), ("test",))


def test_foreign_manifest_is_refused(copy):
    raw = json.loads((copy / "manifest.json").read_text())
    raw["statistics"]["act_std"] = raw["statistics"]["act_std"][:10]
    (copy / "manifest.json").write_text(json.dumps(raw))
    with pytest.raises(ConfigError, match=r"statistics.act_std must be 75 finite numbers"):
        load_manifest(copy)
    (copy / "manifest.json").write_text("{")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_manifest(copy)


def test_dataset_reads_targets_in_physical_units(dataset):
    data = ShardDataset(load_manifest(dataset), "train", with_vm=True)
    sample = data[9]  # second shard, row 1
    with h5py.File(dataset / "train" / "shard-00001.h5") as f:
        assert torch.equal(sample["act"], torch.from_numpy(f["act"][1]))
        assert torch.equal(sample["vm"], torch.from_numpy(f["vm"][1].T))
        ecg = f["ecg"][1]
    span = ecg.max(axis=0) - ecg.min(axis=0)
    assert np.allclose(sample["ecg"].numpy(), (ecg / span).T, atol=1e-6)
    assert sample["ecg"].shape == (12, 200) and int(sample["index"]) == 9
    data.close()


def test_standardised_input_uses_the_manifest_statistics(dataset):
    manifest = load_manifest(dataset)
    sample = ShardDataset(manifest, "train", with_vm=False, scaling="standardise")[0]
    with h5py.File(dataset / "train" / "shard-00000.h5") as f:
        ecg = f["ecg"][0]
    expected = (ecg - manifest.statistic("ecg_mean")) / manifest.statistic("ecg_std")
    assert sample["ecg"].dtype == torch.float32 and np.allclose(sample["ecg"].numpy(), expected.T, atol=1e-5)


def test_common_range_keeps_the_leads_relative_amplitudes(dataset):
    """One gain for all twelve leads: a lead half as large as another stays half as large,
    and a recording system's overall gain does not matter."""
    manifest = load_manifest(dataset)
    sample = ShardDataset(manifest, "train", with_vm=False, scaling="common_range")[0]["ecg"].numpy()
    with h5py.File(dataset / "train" / "shard-00000.h5") as f:
        ecg = f["ecg"][0]
    span = ecg.max(axis=0) - ecg.min(axis=0)
    np.testing.assert_allclose(sample, (ecg / span.max()).T, atol=1e-6)
    np.testing.assert_allclose(np.ptp(sample, axis=1), span / span.max(), atol=1e-6)
    memory = InMemoryDataset(manifest, "train", with_vm=False, scaling="common_range")
    np.testing.assert_allclose(memory.__getitems__([0])["ecg"][0].numpy(), sample, atol=1e-6)
    assert np.allclose(scale_ecg(3.0 * ecg, "common_range", None, None), sample, atol=1e-6)


def test_no_hdf5_handle_crosses_a_pickle_or_fork(dataset):
    data = ShardDataset(load_manifest(dataset), "train", with_vm=False)
    data[0]
    assert data._files
    clone = pickle.loads(pickle.dumps(data))
    assert clone._files == {} and clone._pid is None
    batches = list(DataLoader(data, batch_size=4, num_workers=2))
    assert torch.equal(torch.cat([b["index"] for b in batches]), torch.arange(12))
    data.close()


def test_onset_shift_moves_ecg_and_targets_together():
    ecg = np.arange(20, dtype=np.float32).reshape(10, 2) + 1
    vm = np.arange(30, dtype=np.float32).reshape(10, 3) - 85
    act = np.array([1.0, 2.0, 3.0])
    e, a, v = shift_onset(ecg, act, vm, 3, 1.0)
    assert np.all(e[:3] == 0) and np.array_equal(e[3:], ecg[:7])
    assert np.array_equal(a, act + 3)
    assert np.array_equal(v[:3], np.repeat(vm[:1], 3, axis=0)) and np.array_equal(v[3:], vm[:7])


def test_augmentation_depends_on_epoch_and_index_only(dataset):
    data = ShardDataset(load_manifest(dataset), "train", with_vm=False, max_shift_ms=40, seed=3)
    plain = ShardDataset(load_manifest(dataset), "train", with_vm=False)
    shifts = []
    for epoch in (0, 1):
        data.set_epoch(epoch)
        shifts.append([float(data[i]["act"][0] - plain[i]["act"][0]) for i in range(12)])
    data.set_epoch(0)
    assert [float(data[i]["act"][0] - plain[i]["act"][0]) for i in range(12)] == shifts[0]
    assert shifts[0] != shifts[1] and all(0 <= s <= 40 and abs(s - round(s)) < 1e-4 for s in shifts[0] + shifts[1])


def test_onset_shifts_are_uniform_and_independent_of_the_batch():
    shifts = onset_shifts(3, 0, np.arange(41_000), 40)
    counts = np.bincount(shifts, minlength=41)
    assert len(counts) == 41 and counts.min() > 850 and counts.max() < 1150  # 1,000 expected per value
    assert abs(np.corrcoef(shifts[:-1], shifts[1:])[0, 1]) < 0.02  # neighbouring samples draw apart
    assert np.array_equal(onset_shifts(3, 0, [7, 40_000, 5], 40), shifts[[7, 40_000, 5]])
    for other in (onset_shifts(3, 1, np.arange(1000), 40), onset_shifts(4, 0, np.arange(1000), 40)):
        assert np.mean(other == shifts[:1000]) < 0.1


def test_every_rank_takes_the_same_number_of_steps():
    for size in (30, 31, 33):
        lengths = [len(DistributedSampler(range(size), num_replicas=2, rank=r, shuffle=True)) for r in (0, 1)]
        assert lengths[0] == lengths[1]
    evaluated = [list(StridedSampler(31, r, 2)) for r in (0, 1)]
    assert sorted(evaluated[0] + evaluated[1]) == list(range(31))


def test_config_defaults_are_the_reference_settings():
    config = config_from_dict(None)
    assert (config.network.architecture, config.batch_size, config.optimiser.lr) == ("reference_act", 32, 1e-3)
    assert config.augment.max_onset_shift_ms == 40 and config.data.input_scaling == "range"


@pytest.mark.parametrize("data, message", [
    ({"network": {"architecture": "resnet"}}, r"train.network.architecture: 'resnet' is not one of"),
    ({"batch_size": 0}, "batch_size must be >= 1"),
    ({"optimiser": {"lr": -1}}, r"lr must be within \[1e-12, 1\]"),
    ({"optimiser": {"lr": 1.0e+300}}, r"lr must be within \[1e-12, 1\], got 1e\+300"),
    ({"learning_rate": 0.1}, r"unknown key\(s\) 'learning_rate'"),
    ({"network": {"dropout": 1.0}}, r"dropout must be in \[0, 1\)"),
])
def test_invalid_configs_are_refused(data, message):
    with pytest.raises(ConfigError, match=message):
        config_from_dict(data)


def test_example_configs_are_valid():
    from pathlib import Path

    examples = Path(__file__).resolve().parent.parent / "examples" / "train"
    assert load_train_config(examples / "tiny.yaml").epochs <= 30
    configs = {path.name: load_train_config(path) for path in sorted(examples.glob("*.yaml"))}
    assert len(configs) >= 8
    assert configs["template-vm.yaml"].network.architecture == "template_vm"
    assert configs["demo-vm.yaml"].network.architecture == "template_vm"


def test_nodelist_expansion():
    assert expand_nodelist("gpu[01-03,07],login1") == ["gpu01", "gpu02", "gpu03", "gpu07", "login1"]
    assert expand_nodelist("n[8-10]") == ["n8", "n9", "n10"]
    assert expand_nodelist("rack[1-2]-node[1,3]") == ["rack1-node1", "rack1-node3", "rack2-node1", "rack2-node3"]


def test_launcher_detection():
    torchrun = {"RANK": "3", "LOCAL_RANK": "1", "WORLD_SIZE": "4", "MASTER_ADDR": "h0", "MASTER_PORT": "1234"}
    assert launch_info(torchrun) == launch_info({**torchrun, "SLURM_PROCID": "0", "SLURM_STEP_ID": "0", "SLURM_NTASKS": "8"})
    assert launch_info(torchrun).rank == 3 and launch_info(torchrun).launcher == "torchrun"
    srun = {"SLURM_PROCID": "5", "SLURM_LOCALID": "1", "SLURM_NTASKS": "8", "SLURM_STEP_ID": "0",
            "SLURM_JOB_NODELIST": "gpu[12-15]", "SLURM_JOB_ID": "4242", "PATH": ""}
    info = launch_info(srun)
    assert (info.rank, info.local_rank, info.world_size, info.master_addr, info.master_port, info.launcher) == (
        5, 1, 8, "gpu12", port_from_job_id("4242"), "slurm")
    batch_script = {k: v for k, v in srun.items() if k != "SLURM_STEP_ID"}
    assert launch_info(batch_script).world_size == 1
    assert launch_info({}).launcher == "single"
    assert 20000 <= port_from_job_id("987654321") < 40000
