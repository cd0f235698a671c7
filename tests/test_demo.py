"""A miniature of `make demo`, through the same code path."""
from __future__ import annotations

import json
import re

import pytest

from tests.conftest import run_ecgi


@pytest.mark.slow
def test_miniature_demo_produces_every_artefact(tmp_path):
    out = tmp_path / "demo"
    proc = run_ecgi("demo", "--output", out, "--samples", "12", "--epochs", "1", timeout=900)
    assert f"report: {out / 'report.html'}" in proc.stdout
    html = (out / "report.html").read_text()
    images = re.findall(r'<img src="([^"]+)"', html)
    assert len(images) >= 6
    for image in images:
        data = (out / image).read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 1000, image
    summary = json.loads((out / "summary.json").read_text())
    assert summary["campaign"]["done"] == 12 and summary["campaign"]["failed"] == 0
    act, vm = summary["activation"], summary["voltage"]
    assert set(act["act_mae_ms_by_group"]) == {"AHA", "RV", "EPI", "MID", "SEPTM"}
    # The summary holds the evaluation of run/best.pt, baselines included.
    dataset = out / "campaign" / "dataset"
    again = json.loads(run_ecgi("evaluate", out / "run" / "best.pt", dataset, "--json").stdout)
    assert again["act_mae_ms"] == act["act_mae_ms"] and again["baselines"] == act["baselines"]
    assert f"<b>{act['act_mae_ms']:.3g} ms</b>" in html
    # Against the baselines on the same test samples.  One epoch on about
    # eight samples teaches the network little (measured: 1.01 x the
    # site-mean baseline's MAE, 8.5 ms), so no claim that it beats it; but it
    # answers in the units and site order of the data: a network whose
    # outputs were scaled, shifted or permuted wrongly is far off the site
    # means it starts from.
    site_mean, ridge = act["baselines"]["site_mean"], act["baselines"]["ridge"]
    assert 1.0 < site_mean["act_mae_ms"] < 60.0 and 0 < ridge["act_mae_ms"] < 60.0
    assert act["act_mae_ms"] <= 1.5 * site_mean["act_mae_ms"]
    for group, error in act["act_mae_ms_by_group"].items():
        assert error <= 2.0 * site_mean["act_mae_ms_by_group"][group], group
    # The voltage network after one epoch is far from the site-mean traces
    # (measured 3.5 x their RMSE); the baselines' traces are checked instead.
    assert 0 < vm["baselines"]["site_mean"]["vm_rmse_mv"] < 40.0 and vm["vm_rmse_mv"] > 0
    assert vm["baselines"]["site_mean"]["act_mae_ms"] == site_mean["act_mae_ms"]
    manifest = json.loads((dataset / "manifest.json").read_text())
    assert sum(s["samples"] for split in manifest["splits"].values() for s in split) == 12
    for run in ("run", "run-vm"):
        assert (out / run / "best.pt").is_file() and (out / run / "metrics.csv").is_file()
    assert "A real recording" in html and (out / "clinical" / "report.html").is_file()
