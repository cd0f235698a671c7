"""Training-side realism: each augmentation does what it says, targets follow the time warp,
the switch is off by default and a run trains with it on."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from model.augment import electrode_shift, realistic, recording_noise, time_warp
from model.config import RealismConfig, config_from_dict
from model.data import ShardDataset, load_manifest
from model.synthetic import write_synthetic_dataset
from model.train import train


def test_time_warp_moves_the_beat_and_its_targets_together():
    ecg = np.zeros((500, 12), np.float32)
    ecg[100, :] = 1.0
    ecg = np.apply_along_axis(lambda x: np.convolve(x, np.hanning(21), "same"), 0, ecg)
    act = np.full(75, 100.0, np.float32)
    warped, act2, _ = time_warp(ecg, act, None, 1.05)
    assert int(np.argmax(warped[:, 0])) == 105 and np.allclose(act2, 105.0)


def test_electrode_shift_keeps_einthoven_and_changes_the_leads():
    rng = np.random.default_rng(0)
    lead_i, lead_ii = rng.standard_normal(300), rng.standard_normal(300)
    from model.augment import limb_leads
    ecg = np.hstack([limb_leads(lead_i, lead_ii), rng.standard_normal((300, 6))])
    out = electrode_shift(ecg, np.random.default_rng(1), 0.15)
    assert np.allclose(out[:, 2], out[:, 1] - out[:, 0]) and np.allclose(out[:, 3], -(out[:, 0] + out[:, 1]) / 2)
    assert not np.allclose(out, ecg) and np.abs(out - ecg).max() < 1.0
    assert np.allclose(electrode_shift(ecg, np.random.default_rng(1), 0.0), ecg)


@pytest.mark.parametrize("which, band", [("wander_mv", (0.0, 0.6)), ("mains_mv", (49.0, 61.0)), ("emg_mv", (15.0, 200.0))])
def test_recording_noise_lies_in_its_band(which, band):
    amplitudes = {"wander_mv": 0.0, "mains_mv": 0.0, "emg_mv": 0.0, which: 0.5}
    noise = recording_noise(8000, np.random.default_rng(2), 1.0, **amplitudes)
    power = np.abs(np.fft.rfft(noise, axis=0)) ** 2
    freqs = np.fft.rfftfreq(8000, 1e-3)
    inside = power[(freqs >= band[0]) & (freqs <= band[1])].sum()
    assert inside > 0.9 * power.sum() and 0.0 < np.abs(noise).max() < 5.0


def test_realistic_is_reproducible_and_keeps_targets_without_warp():
    ecg = np.random.default_rng(3).standard_normal((500, 12)).astype(np.float32)
    act = np.linspace(0, 100, 75).astype(np.float32)
    config = RealismConfig(enabled=True, time_warp=0.0)
    a = realistic(ecg, act, None, np.random.default_rng(7), 1.0, config)
    b = realistic(ecg, act, None, np.random.default_rng(7), 1.0, config)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], act) and a[0].dtype == np.float32
    assert not np.allclose(a[0], ecg)


def test_dataset_switch_and_a_training_run_with_realism(tmp_path):
    write_synthetic_dataset(tmp_path / "data", train=8, validation=4, test=2, samples=500, seed=6)
    manifest = load_manifest(tmp_path / "data")
    plain = ShardDataset(manifest, "train", with_vm=False, seed=1)
    off = ShardDataset(manifest, "train", with_vm=False, seed=1, realism=RealismConfig())
    on = ShardDataset(manifest, "train", with_vm=False, seed=1, realism=RealismConfig(enabled=True, time_warp=0.0))
    assert torch.equal(plain[0]["ecg"], off[0]["ecg"])
    assert not torch.equal(plain[0]["ecg"], on[0]["ecg"]) and torch.equal(plain[0]["act"], on[0]["act"])
    assert torch.equal(on[0]["ecg"], on[0]["ecg"])  # the same sample in the same epoch: the same noise
    config = config_from_dict({"epochs": 1, "batch_size": 4, "tensorboard": False,
                               "augment": {"realism": {"enabled": True}}})
    torch.set_num_threads(1)
    history = train(config, tmp_path / "data", tmp_path / "run", progress=False)
    assert np.isfinite(history[-1]["train_loss"])
