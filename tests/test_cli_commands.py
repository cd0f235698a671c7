"""``ecgi calibrate``, ``ecgi plot`` and the former name of ``ecgi verify``: what they compute and write."""
from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import yaml

from solver.patient.calibration import cable_velocity
from solver.numerics.config import IonicConfig, MembraneConfig
from tests.conftest import run_ecgi


def test_calibrate_finds_conductivities_that_give_the_target_velocities():
    proc = run_ecgi("calibrate", "--dx", "2", "--dt", "0.1", "--model", "mitchell_schaeffer",
                    "--longitudinal", "0.5", "--transverse", "0.2", "--fast-layer", "0", "--json", "--no-cache")
    result = json.loads(proc.stdout)
    assert result["velocities_m_per_s"]["longitudinal"] == pytest.approx(0.5, rel=0.02)
    assert result["velocities_m_per_s"]["transverse"] == pytest.approx(0.2, rel=0.02)
    sigma_l, sigma_t = result["longitudinal_S_per_m"], result["transverse_S_per_m"]
    assert sigma_l > sigma_t > 0
    # An independent cable, twice as long as the calibration's, conducts at the target.
    ionic, membrane = IonicConfig(model="mitchell_schaeffer"), MembraneConfig()
    assert cable_velocity(sigma_l, 2.0, 0.1, ionic, membrane, length_mm=120.0) == pytest.approx(0.5, rel=0.03)
    # The coarse grid needs more than a converged one: the same conductivity
    # conducts faster on a fine grid.
    assert cable_velocity(sigma_l, 0.25, 0.01, ionic, membrane, length_mm=20.0) > 0.55
    # A second call is answered from the cache, identically.
    assert json.loads(run_ecgi("calibrate", "--dx", "2", "--dt", "0.1", "--model", "mitchell_schaeffer",
                               "--longitudinal", "0.5", "--transverse", "0.2", "--fast-layer", "0",
                               "--json").stdout) == result


@pytest.fixture(scope="module")
def patient_sample(tmp_path_factory):
    root = tmp_path_factory.mktemp("plot")
    config = root / "patient.yaml"
    config.write_text(yaml.safe_dump({"patient": {
        "geometry_id": "coarse", "heart": {"dx_mm": 2.5}, "activation": {}, "ionic": {"model": "mitchell_schaeffer"},
        "time": {"dt_ms": 0.1, "duration_ms": 60, "diffusion": "auto"}}}))
    run_ecgi("simulate", config, "-o", root / "patient.h5", "--quiet")
    return root / "patient.h5"


def _image(path):
    import matplotlib.image

    return matplotlib.image.imread(path)


def test_plot_writes_the_three_figures_of_a_sample(patient_sample, tmp_path):
    out = tmp_path / "figures"
    proc = run_ecgi("plot", patient_sample, "-o", out)
    names = {"patient-ecg.png", "patient-activation.png", "patient-bullseye.png"}
    assert {p.name for p in out.iterdir()} == names
    for name in names:
        assert str(out / name) in proc.stdout, name
        image = _image(out / name)
        assert image.ndim == 3 and min(image.shape[:2]) > 200, name
        assert image[..., :3].std() > 0.05, f"{name} is blank"
    # The ECG figure draws the traces: the same sample with its leads negated
    # (same name, same scale) gives a different picture.
    negated = tmp_path / "negated" / patient_sample.name
    negated.parent.mkdir()
    negated.write_bytes(patient_sample.read_bytes())
    with h5py.File(negated, "r+") as f:
        f["leads"][...] = -f["leads"][...]
    run_ecgi("plot", negated, "-o", tmp_path / "negated-figures")
    ecg, other = _image(out / "patient-ecg.png"), _image(tmp_path / "negated-figures" / "patient-ecg.png")
    assert ecg.shape == other.shape
    changed = (np.abs(ecg[..., :3] - other[..., :3]).max(axis=-1) > 0.25).mean()
    assert changed > 0.005


def test_plot_refuses_a_file_that_is_not_a_patient_sample(patient_sample, tmp_path):
    plain = tmp_path / "plain.h5"
    plain.write_bytes(patient_sample.read_bytes())
    with h5py.File(plain, "r+") as f:
        del f["leads"]
    proc = run_ecgi("plot", plain, "-o", tmp_path / "figures", check=False)
    assert proc.returncode == 2 and "not a synthetic-patient sample" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_bench_is_the_former_name_of_verify_accepted_with_a_note_and_not_listed():
    proc = run_ecgi("bench", "niederer", "--dx", "1", "--dt", "0.1", "--json")
    assert proc.stderr.splitlines()[0] == "ecgi bench is now ecgi verify (bench/ holds the timing benchmarks)"
    assert json.loads(proc.stdout)["dx_mm"] == 1.0
    listed = run_ecgi("--help").stdout
    assert " verify " in listed and " bench " not in listed
