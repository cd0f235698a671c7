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
    assert summary["activation"]["act_mae_ms"] > 0 and set(summary["activation"]["act_mae_ms_by_group"]) == {
        "AHA", "RV", "EPI", "MID", "SEPTM"}
    assert summary["voltage"]["vm_rmse_mv"] > 0
    manifest = json.loads((out / "campaign" / "dataset" / "manifest.json").read_text())
    assert sum(s["samples"] for split in manifest["splits"].values() for s in split) == 12
    for run in ("run", "run-vm"):
        assert (out / run / "best.pt").is_file() and (out / run / "metrics.csv").is_file()
    assert "A real recording" in html and (out / "clinical" / "report.html").is_file()
