"""Training sets held in memory: the same samples, augmentation and training as streaming from the shards."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from model.config import config_from_dict
from model.data import InMemoryDataset, ShardDataset, load_manifest, split_bytes
from model.synthetic import write_synthetic_dataset
from model.train import train
from solver.common.errors import ConfigError
from solver.common.traces import apd90_ms


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("memory") / "data"
    write_synthetic_dataset(root, train=20, validation=8, test=2, samples=500, shard_size=8, seed=9)
    return root


@pytest.mark.parametrize("scaling", ["range", "standardise"])
def test_batches_from_memory_equal_streamed_samples(dataset, scaling):
    manifest = load_manifest(dataset)
    options = dict(with_vm=True, with_apd=True, scaling=scaling, max_shift_ms=40, seed=3)
    streamed, held = ShardDataset(manifest, "train", **options), InMemoryDataset(manifest, "train", **options)
    indices = [19, 0, 7, 8, 3, 15]
    for epoch in (0, 1):
        streamed.set_epoch(epoch)
        held.set_epoch(epoch)
        batch = held.__getitems__(indices)
        shifts = held.shifts(indices)
        assert shifts.max() > 0 and len(set(shifts.tolist())) > 1
        for j, i in enumerate(indices):
            sample = streamed[i]
            for key in ("ecg", "act", "vm", "apd"):
                assert torch.allclose(batch[key][j], sample[key], atol=1e-6, equal_nan=True), (key, epoch, i)
                assert torch.allclose(held[i][key], sample[key], atol=1e-6, equal_nan=True)
            assert int(batch["index"][j]) == i
            # the APD90 target is the stored trace's, whatever the onset shift
            stored = apd90_ms(held._vm[i].numpy(), manifest.dt_ms)
            assert np.isfinite(stored).sum() > 60
            np.testing.assert_allclose(batch["apd"][j].numpy(), stored, rtol=1e-5)
    assert held.conditions() == streamed.conditions()
    streamed.close()


def test_the_loader_passes_whole_batches_through(dataset):
    held = InMemoryDataset(load_manifest(dataset), "validation", with_vm=False)
    batches = list(DataLoader(held, batch_size=3, collate_fn=InMemoryDataset.collate))
    assert [len(b["ecg"]) for b in batches] == [3, 3, 2] and "vm" not in batches[0]
    assert torch.equal(torch.cat([b["index"] for b in batches]), torch.arange(8))
    assert split_bytes(load_manifest(dataset), "validation", with_vm=False) == 4 * 8 * (500 * 12 + 75)
    assert split_bytes(load_manifest(dataset), "validation", with_vm=True, max_shift_ms=40) == 4 * 8 * (540 * 87 + 75)


def _history(dataset, tmp_path, name: str, architecture: str = "reference_act", **data) -> tuple[list[dict], str]:
    config = config_from_dict({"epochs": 2, "batch_size": 4, "tensorboard": False, "data": data,
                               "network": {"architecture": architecture}})
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return train(config, dataset, tmp_path / name, progress=True), name
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("architecture", ["reference_act", "template_vm"])
def test_training_from_memory_is_training_from_the_shards(dataset, tmp_path, capsys, architecture):
    """template_vm too: its template and APD90 targets come from memory or from the shards alike."""
    held, _ = _history(dataset, tmp_path, "memory", architecture, in_memory="always")
    streamed, _ = _history(dataset, tmp_path, "stream", architecture, in_memory="never")
    for a, b in zip(held, streamed):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)
        assert a["val_act_mae_ms"] == pytest.approx(b["val_act_mae_ms"], rel=1e-5)
    if architecture != "reference_act":
        return
    capsys.readouterr()
    _history(dataset, tmp_path, "auto", in_memory="auto")
    assert "held in memory" in capsys.readouterr().err
    _history(dataset, tmp_path, "tight", in_memory="auto", memory_fraction=1e-9)
    assert "streamed from the shards" in capsys.readouterr().err


def test_memory_settings_are_validated():
    with pytest.raises(ConfigError, match="memory_fraction"):
        config_from_dict({"data": {"memory_fraction": 0}})
    with pytest.raises(ConfigError, match="in_memory"):
        config_from_dict({"data": {"in_memory": "sometimes"}})
    assert config_from_dict({}).data.in_memory == "auto"


def test_raw_millisecond_targets_as_published(dataset, tmp_path):
    from pathlib import Path

    from model.checkpoint import load_checkpoint
    from model.config import load_train_config

    published = load_train_config(Path(__file__).resolve().parent.parent / "examples" / "train" / "published.yaml")
    assert (published.network.dropout, published.loss.act_target) == (0.1, "ms")
    raw, _ = _history(dataset, tmp_path, "raw", in_memory="always")
    config = config_from_dict({"epochs": 1, "batch_size": 4, "tensorboard": False, "loss": {"act_target": "ms"}})
    history = train(config, dataset, tmp_path / "ms", progress=False)
    state = load_checkpoint(tmp_path / "ms" / "last.pt")
    assert float(state["model"]["act_mean"].abs().max()) == 0 and float(state["model"]["act_std"].min()) == 1
    assert history[0]["train_loss"] > 100 * raw[0]["train_loss"]  # squared milliseconds, not spreads


def test_batches_from_memory_carry_the_recording_artefacts_of_the_streamed_samples(dataset):
    from model.config import RealismConfig

    manifest = load_manifest(dataset)
    options = dict(with_vm=True, max_shift_ms=20, seed=5, realism=RealismConfig(enabled=True))
    streamed, held = ShardDataset(manifest, "train", **options), InMemoryDataset(manifest, "train", **options)
    indices = [4, 11, 2]
    batch = held.__getitems__(indices)
    for j, i in enumerate(indices):
        for key in ("ecg", "act", "vm"):
            assert torch.allclose(batch[key][j], streamed[i][key], atol=1e-6, equal_nan=True), key
    assert not torch.allclose(batch["ecg"], InMemoryDataset(manifest, "train", with_vm=True, max_shift_ms=20,
                                                            seed=5).__getitems__(indices)["ecg"])
    streamed.close()
