"""bench.learning_curve: the data sets it trains on are valid, its random split loses and repeats no sample,
and one tiny curve runs end to end."""
from __future__ import annotations

import json

import numpy as np
import pytest

from bench import learning_curve
from model.data import load_manifest, read_split, validate_dataset
from model.synthetic import write_synthetic_dataset


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("curve") / "data"
    write_synthetic_dataset(root, train=16, validation=6, test=6, samples=500, seed=11)
    return root


def test_random_split_is_a_permutation_of_every_sample(dataset):
    pools = learning_curve.split_pools(dataset, "random", seed=0)
    manifest = load_manifest(dataset)
    every = np.concatenate([read_split(manifest, s, with_vm=False).act for s in ("train", "validation", "test")])
    drawn = np.concatenate([pools[s].act for s in ("train", "validation", "test")])
    assert [len(pools[s].act) for s in ("train", "validation", "test")] == [16, 6, 6]
    assert np.array_equal(np.sort(every, axis=0), np.sort(drawn, axis=0))
    assert not np.array_equal(pools["test"].act, read_split(manifest, "test", with_vm=False).act)


def test_written_subsets_are_valid_data_sets(dataset, tmp_path):
    pools = learning_curve.split_pools(dataset, "anatomy", seed=0)
    subset = learning_curve.take(pools["train"], np.arange(5))
    root = learning_curve.write_dataset(tmp_path / "d", {"train": subset, "validation": pools["validation"],
                                                "test": pools["test"]}, 1.0)
    manifest = load_manifest(root)
    validate_dataset(manifest, ("train", "validation", "test"), check_sha256=True)
    assert manifest.split_size("train") == 5
    assert np.allclose(manifest.statistic("act_mean"), np.nanmean(subset.act, axis=0))


def test_a_tiny_curve_runs(dataset, tmp_path, monkeypatch):
    out = tmp_path / "c"
    monkeypatch.setattr("sys.argv", ["learning_curve.py", str(dataset), "--sizes", "4,all", "--epochs", "1",
                                     "--split", "anatomy", "--output", str(out), "--json", str(out.with_suffix(".json"))])
    assert learning_curve.main() == 0
    result = json.loads(out.with_suffix(".json").read_text())
    points = result["details"]["points"]
    # every size's network beside its two baselines on the same subset
    assert [(c["figure"], c["name"]) for c in result["compared_with"]] == [
        (f["name"], baseline) for f in result["figures"] for baseline in ("ridge", "site mean")]
    assert [p["size"] for p in points] == [4, 16] and all(p["ridge_mae_ms"] > 0 for p in points)
    assert out.with_suffix(".png").stat().st_size > 0


def test_extrapolation_finds_where_the_network_reaches_half_the_ridge():
    # network 8 N^-0.5, ridge 2 N^-0.25: equal at N = 256, half at N = 4096.
    sizes = [64, 256, 1024]
    points = [learning_curve.Point("anatomy", n, 0, 8 * n ** -0.5, 2 * n ** -0.25, 12.0, 1.0) for n in sizes]
    fit = learning_curve.extrapolate(points, "anatomy")
    assert fit["network"]["exponent"] == pytest.approx(0.5) and fit["ridge"]["scale"] == pytest.approx(2.0)
    assert fit["size_for_ratio"] == pytest.approx(4096, rel=1e-6)


def test_extrapolation_says_never_when_the_network_does_not_gain():
    points = [learning_curve.Point("random", n, 0, 3 * n ** -0.2, 2 * n ** -0.2, 12.0, 1.0) for n in (100, 400, 1600)]
    assert learning_curve.extrapolate(points, "random")["size_for_ratio"] is None
    assert learning_curve.extrapolate(points[:2], "random") is None  # two sizes fix no curve worth extrapolating
