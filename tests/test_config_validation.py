"""Every invalid configuration is refused before any work, saying what to change."""
from __future__ import annotations

import copy

import pytest
import yaml
from mpi4py import MPI

from solver.numerics.config import config_from_dict, load_config
from solver.common.errors import ConfigError
from solver.numerics.simulation import Simulation
from tests.conftest import REPO

VALID = {
    "anatomy": {"dx_mm": 0.5, "slab": {"size_mm": [4, 2, 1]}},
    "conductivity": {"intracellular": {"longitudinal": 0.17, "transverse": 0.019}},
    "ionic": {"model": "mitchell_schaeffer"},
    "time": {"dt_ms": 0.05, "duration_ms": 5},
    "stimuli": [{"amplitude_uA_per_mm3": 50, "box": {"min_mm": [0, 0, 0], "max_mm": [1, 1, 1]}}],
}


def changed(path: str, value):
    config = copy.deepcopy(VALID)
    *parents, last = path.split(".")
    node = config
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    if value is DELETE:
        del node[last]
    else:
        node[last] = value
    return config


DELETE = object()


def test_valid_configuration_builds_a_simulation():
    Simulation(config_from_dict(VALID), MPI.COMM_SELF)


@pytest.mark.parametrize(
    "path, value, message",
    [
        ("ionic.model", "hodgkin_huxley", "unknown ionic model 'hodgkin_huxley'; choose one of"),
        ("ionic.parameters", {"g_Kx_scale": 0.5}, "has no parameter(s) g_Kx_scale"),
        ("anatomy.dx_mm", 0.0, "dx_mm must be within [0.01, 5] mm, got 0"),
        ("anatomy.dx_mm", 500.0, "dx_mm must be within [0.01, 5] mm, got 500"),
        ("anatomy.dx_mm", -0.5, "dx_mm must be within [0.01, 5] mm"),
        ("time.dt_ms", 1e-300, "dt_ms must be within [0.0001, 2] ms, got 1e-300"),
        ("time.dt_ms", 0, "dt_ms must be within [0.0001, 2] ms"),
        ("time.dt_ms", 2.5, "dt_ms must be within [0.0001, 2] ms"),
        ("time.dt_ms", "fast", "config.time.dt_ms: expected a number, got 'fast'"),
        ("time.duration_ms", -1, "duration_ms must be a positive number"),
        ("time.diffusion", "spectral", "'spectral' is not one of"),
        ("stimuli", [], "at least one stimulus"),
        ("anatomy.slab", DELETE, "give exactly one anatomy source"),
        ("anatomy.colour", "red", "unknown key(s) 'colour'"),
        ("conductivity.intracellular.transverse", -0.1, "transverse must be a positive number"),
        ("output", {"interval_ms": 0.07}, "must be a whole multiple of time.dt_ms"),
        ("anatomy.slab", {"size_mm": [4.2, 2, 1]}, "not a whole multiple of dx"),
        ("stimuli.0.spread_m_per_s", 0.5, "spread_m_per_s needs a sphere"),
        ("stimuli.0.spread_m_per_s", -1.0, "spread_m_per_s must be a positive number"),
    ],
)
def test_invalid_configuration_is_refused_with_its_message(path, value, message):
    with pytest.raises(ConfigError) as error:
        Simulation(config_from_dict(changed(path, value)), MPI.COMM_SELF)
    assert message in str(error.value)


def test_stimulus_outside_the_tissue_is_refused():
    config = changed("stimuli", [{"amplitude_uA_per_mm3": 50, "sphere": {"centre_mm": [30, 0, 0], "radius_mm": 1}}])
    with pytest.raises(ConfigError, match=r"stimuli\[0\] covers no tissue voxel; move or enlarge"):
        Simulation(config_from_dict(config), MPI.COMM_SELF)


def test_stimulus_voxel_outside_the_grid_is_refused():
    config = changed("stimuli", [{"amplitude_uA_per_mm3": 50, "voxels": [[0, 0, 0], [99, 0, 0]]}])
    with pytest.raises(ConfigError, match=r"stimulus voxels \[\(99, 0, 0\)\] are not tissue"):
        Simulation(config_from_dict(config), MPI.COMM_SELF)


def test_empty_tissue_mask_is_refused(tmp_path):
    import numpy as np

    from solver.numerics.anatomy import VoxelAnatomy

    shape = (3, 3, 3)
    with pytest.raises(ConfigError, match="tissue mask is empty"):
        VoxelAnatomy(0.5, np.zeros(3), np.zeros(shape, bool), np.zeros(shape + (3,)),
                     np.zeros(shape, np.int8), np.ones(shape))


def test_unstable_explicit_step_names_the_largest_stable_dt():
    config = changed("time", {"dt_ms": 2.0, "duration_ms": 10})
    config["output"] = {"interval_ms": 2.0}
    with pytest.raises(ConfigError) as error:
        Simulation(config_from_dict(config), MPI.COMM_SELF)
    text = str(error.value)
    assert "exceeds the explicit diffusion stability limit" in text
    d_l, d_t = 0.17 / 1.4, 0.019 / 1.4  # mm^2/ms
    assert f"use dt_ms <= {0.5**2 / (2 * (d_l + 2 * d_t)):.4g}" in text
    assert "crank-nicolson" in text


def test_probe_outside_the_tissue_is_refused():
    config = changed("output", {"probes": {"lost": [50, 0, 0]}})
    with pytest.raises(ConfigError, match=r"output.probes.lost: point \[50.0, 0.0, 0.0\] mm is .* from the nearest tissue voxel"):
        Simulation(config_from_dict(config), MPI.COMM_SELF)


def test_missing_file_and_bad_yaml_are_reported(tmp_path):
    with pytest.raises(ConfigError, match="no such configuration file"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("anatomy: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_cli_reports_config_errors_without_traceback(tmp_path, ecgi):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(changed("ionic.model", "nonsense")))
    proc = ecgi("simulate", path, "-o", tmp_path / "out.h5", check=False)
    assert proc.returncode == 2
    assert "ecgi simulate: error:" in proc.stderr and "unknown ionic model 'nonsense'" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "out.h5").exists()


def test_a_campaign_frozen_by_an_older_ecgi_resumes(tmp_path):
    """A setting added to the spec since the campaign was frozen takes its
    default: resuming is no change of the spec; a changed value still is."""
    from workflow.layout import CampaignLayout
    from workflow.spec import freeze_spec
    from workflow.spec import load_spec

    spec = load_spec(REPO / "examples" / "campaigns" / "tiny.yaml")
    layout = CampaignLayout(tmp_path / "campaign")
    layout.spec_path.parent.mkdir(parents=True)
    freeze_spec(spec, layout, force=False)
    frozen = yaml.safe_load(layout.spec_path.read_text())
    del frozen["solver"]["petsc_options"]  # as an older ecgi froze it
    layout.spec_path.write_text(yaml.safe_dump(frozen))
    freeze_spec(spec, layout, force=False, resuming=True)
    frozen["solver"]["dt_ms"] = 0.05
    layout.spec_path.write_text(yaml.safe_dump(frozen))
    with pytest.raises(ConfigError, match=r"solver.dt_ms: 0.05 -> 0.1"):
        freeze_spec(spec, layout, force=False, resuming=True)


@pytest.mark.parametrize("options, message", [
    ("-laplace_ksp_type cg -torso_pc_type gamg -diffusion_ksp_monitor", None),
    ("-torso_ksp_rtol 1e-10 -laplace_ksp_max_it -1", None),
    ("laplace_ksp_type cg", "is a value without an option name"),
    ("-laplace_ksp_type cg gmres", "is a value without an option name"),
    ("-laplace ksp; rm -rf /", "is a value without an option name"),
    ("-$(reboot)", "is not an option name"),
    ("-torso_ksp_type 'unterminated", "No closing quotation"),
])
def test_petsc_options_are_checked_before_any_work(options, message):
    from solver.numerics.petsc_options import parse_petsc_options

    if message is None:
        assert parse_petsc_options(options)
    else:
        with pytest.raises(ConfigError, match=message):
            parse_petsc_options(options)


def test_every_example_campaign_is_valid(monkeypatch):
    from workflow.spec import load_spec

    monkeypatch.setenv("USER", "alice")  # the cluster example writes to /scratch/$USER
    specs = sorted((REPO / "examples" / "campaigns").glob("*.yaml"))
    assert len(specs) >= 6
    for path in specs:
        spec = load_spec(path)
        assert spec.samples > 0 and spec.name, path.name
    assert str(load_spec(REPO / "examples" / "campaigns" / "cluster.yaml").output_dir) == "/scratch/alice/ecgi/reference"
    monkeypatch.delenv("USER")
    with pytest.raises(ConfigError, match=r"uses \$USER, not set in this environment: export it"):
        load_spec(REPO / "examples" / "campaigns" / "cluster.yaml")


@pytest.mark.parametrize("section, values, message", [
    ("heart", {"footprint_softness_voxels": -0.5}, "footprint_softness_voxels must be within [0, 2], got -0.5"),
    ("heart", {"grid_offset_mm": [0.5, 0, 0], "anatomy_file": "heart.h5"},
     "grid_offset_mm moves the grid on the analytic shape; leave it at 0 with an anatomy_file"),
    ("activation", {"root_spread_m_per_s": 0}, "activation.root_spread_m_per_s must be a positive speed, got 0"),
])
def test_invalid_patient_reading_of_the_grid_is_refused(section, values, message):
    from solver.patient import load_patient_config

    patient = {"heart": {"dx_mm": 2.5}, section: values}
    if section == "heart":
        patient["heart"].update(values)
    with pytest.raises(ConfigError) as error:
        load_patient_config(patient)
    assert message in str(error.value)
