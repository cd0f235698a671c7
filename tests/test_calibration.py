"""Conduction-velocity calibration: each target is reached, on a table of
cable velocities that a campaign measures once and shares between samples."""
from __future__ import annotations

import json

import pytest

import solver.patient.calibration as calibration
from solver.numerics.config import IonicConfig, MembraneConfig
from solver.patient.calibration import VelocityTargets, cable_velocity, calibrate

DX, DT = 2.5, 0.1
MS = IonicConfig(model="mitchell_schaeffer")


@pytest.fixture
def empty_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ECGI_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(calibration, "_CURVES", {})
    return tmp_path


def independent_velocity(sigma: float, ionic: IonicConfig = MS) -> float:
    """A cable four times as long as the calibration's."""
    return cable_velocity(sigma, DX, DT, ionic, MembraneConfig(), length_mm=300.0)


def test_every_target_is_reached_and_later_samples_run_no_cable(empty_cache):
    first = calibrate(VelocityTargets(0.45, 0.2, 1.2), DX, DT, MS, MembraneConfig())
    assert independent_velocity(first.longitudinal_S_per_m) == pytest.approx(0.45, rel=0.003)
    assert independent_velocity(first.transverse_S_per_m) == pytest.approx(0.2, rel=0.003)
    assert independent_velocity(first.longitudinal_S_per_m * first.fast_layer_factor) == pytest.approx(1.2, rel=0.003)
    _, curve = calibration.velocity_curve(DX, DT, MS, MembraneConfig())
    assert curve.measured <= 12, "three targets should need a few cable runs each"

    # A campaign's samples draw velocities within the range: the nodes
    # between them are measured once, then every sample interpolates.
    for v in (0.6, 0.52):
        result = calibrate(VelocityTargets(v, 0.2, 1.2), DX, DT, MS, MembraneConfig())
        assert independent_velocity(result.longitudinal_S_per_m) == pytest.approx(v, rel=0.003)
    runs = curve.measured
    for v in (0.47, 0.51, 0.55, 0.58):
        calibrate(VelocityTargets(v, 0.2, 1.2), DX, DT, MS, MembraneConfig())
    assert curve.measured - runs <= 8  # at most the few nodes not yet bracketing a target
    runs = curve.measured
    calibrate(VelocityTargets(0.53, 0.2, 1.2), DX, DT, MS, MembraneConfig())
    assert curve.measured == runs

    # Another process reads the nodes from the cache file and measures nothing.
    nodes = json.loads((empty_cache / "velocity-curves.json").read_text())
    assert len(nodes) == 1 and len(next(iter(nodes.values()))) == len(curve.nodes)
    calibration._CURVES.clear()
    again = calibrate(VelocityTargets(0.53, 0.2, 1.2), DX, DT, MS, MembraneConfig())
    assert calibration.velocity_curve(DX, DT, MS, MembraneConfig())[1].measured == 0
    assert again.longitudinal_S_per_m == calibrate(VelocityTargets(0.53, 0.2, 1.2), DX, DT, MS, MembraneConfig(),
                                                   use_cache=False).longitudinal_S_per_m


def test_a_sample_gets_the_same_conductivities_whatever_was_calibrated_before(empty_cache):
    alone = calibrate(VelocityTargets(0.55, 0.2, None), DX, DT, MS, MembraneConfig(), use_cache=False)
    calibrate(VelocityTargets(0.45, 0.25, 1.5), DX, DT, MS, MembraneConfig())
    calibrate(VelocityTargets(0.6, 0.2, None), DX, DT, MS, MembraneConfig())
    after_others = calibrate(VelocityTargets(0.55, 0.2, None), DX, DT, MS, MembraneConfig())
    assert after_others == alone


def test_repolarisation_parameters_do_not_change_conduction(empty_cache):
    """Why calibration may ignore them (an I_Kr block patient shares the curve of a normal one):
    they move the speed of a wave into resting tissue by less than half a percent."""
    blocked = IonicConfig(model="mitchell_schaeffer", parameters={"tau_close": 300.0})
    sigma = 0.4
    assert independent_velocity(sigma, blocked) == pytest.approx(independent_velocity(sigma), rel=0.005)
    assert calibration.velocity_curve(DX, DT, blocked, MembraneConfig())[0] == \
        calibration.velocity_curve(DX, DT, MS, MembraneConfig())[0]
    # A parameter of the upstroke is not ignored.
    slower = IonicConfig(model="mitchell_schaeffer", parameters={"tau_in": 0.6})
    assert independent_velocity(sigma, slower) < 0.9 * independent_velocity(sigma)
    assert calibration.velocity_curve(DX, DT, slower, MembraneConfig())[0] != \
        calibration.velocity_curve(DX, DT, MS, MembraneConfig())[0]
