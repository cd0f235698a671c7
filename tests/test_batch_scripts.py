"""Every batch script ecgi generates, against golden files, and the values
that reach them: no field of a spec or option can inject a shell command.

Fast: nothing is submitted, no SLURM and no root needed.  After an intended
change of a script, regenerate the golden files with
``ECGI_UPDATE_GOLDEN=1 python -m pytest tests/test_batch_scripts.py``.
"""
from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from model.cli import sbatch_command
from solver.common.errors import ConfigError
from tests.conftest import REPO
from workflow.executors import render_slurm_script
from workflow.spec import spec_from_dict

GOLDEN = Path(__file__).parent / "golden"
HOSTILE = ["a;touch pwned", "$(touch pwned)", "`touch pwned`", "a'b", 'a"b', "a\ntouch pwned", "a b", "a|b", "a&b"]


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("ECGI_UPDATE_GOLDEN"):
        path.write_text(text)
    assert path.is_file(), f"{path} missing; create it with ECGI_UPDATE_GOLDEN=1"
    assert text == path.read_text(), f"{name} differs from its golden file {path}"


def cluster_spec(**slurm_changes) -> dict:
    data = yaml.safe_load((REPO / "examples/campaigns/cluster.yaml").read_text())
    data["output_dir"] = "/scratch/ecgi/reference"
    data["resources"]["slurm"].update(slurm_changes)
    return data


def rendered(data: dict, tmp_path: Path) -> str:
    """The block script with this machine's paths replaced by placeholders."""
    text = render_slurm_script(spec_from_dict(data), tmp_path)
    text = text.replace(shlex.quote(str(Path(sys.executable).parent)), "BIN_DIR")
    return text.replace(str(tmp_path), "SCRIPT_DIR")


def test_block_script_of_the_cluster_example(tmp_path):
    check_golden("cluster-block.sbatch", rendered(cluster_spec(), tmp_path))


def test_block_script_of_multi_rank_simulations(tmp_path):
    data = cluster_spec(driver_address="10.0.0.1")
    data["resources"]["ranks_per_simulation"] = 8
    check_golden("cluster-block-mpi.sbatch", rendered(data, tmp_path))


def test_block_scripts_are_valid_bash(tmp_path):
    for name in ("cluster-block.sbatch", "cluster-block-mpi.sbatch"):
        subprocess.run(["bash", "-n", str(GOLDEN / name)], check=True)
    for script in (REPO / "slurm").glob("*.sbatch"):
        subprocess.run(["bash", "-n", str(script)], check=True)


@pytest.mark.parametrize("field", ["partition", "account", "qos"])
@pytest.mark.parametrize("value", HOSTILE)
def test_slurm_names_refuse_shell_syntax(field, value):
    with pytest.raises(ConfigError, match=f"{field} must be a SLURM name"):
        spec_from_dict(cluster_spec(**{field: value}))


def test_slurm_names_accept_what_slurm_accepts():
    spec = spec_from_dict(cluster_spec(partition="gpu-a100,cpu_long", account="proj.2024", qos="high-prio"))
    assert spec.resources.slurm.partition == "gpu-a100,cpu_long"


@pytest.mark.parametrize("value", HOSTILE + ["127.0.0.1; x", "", "-h"])
def test_driver_address_must_be_an_address(value):
    with pytest.raises(ConfigError, match="driver_address must be an IP address or a host name"):
        spec_from_dict(cluster_spec(driver_address=value))


@pytest.mark.parametrize("field, value, message", [
    ("walltime", "01:00:00\ntouch pwned", "walltime must be HH:MM:SS"),
    ("walltime", "01:00:00;x", "walltime must be HH:MM:SS"),
    ("scheduler_options", "#SBATCH --x\ntouch pwned", "must start with #SBATCH"),
    ("scheduler_options", "#SBATCH --x\rtouch pwned", "must start with #SBATCH"),
    ("worker_init", "module load x\r\x00", "control characters"),
])
def test_free_text_fields_stay_on_their_lines(field, value, message):
    with pytest.raises(ConfigError, match=message):
        spec_from_dict(cluster_spec(**{field: value}))


@pytest.mark.parametrize("value", ["/scratch/a;b", "/scratch/$(x)", "/scratch/`x`", "/scratch/a'b", "/scratch/a b"])
def test_campaign_directory_must_be_safe_in_a_slurm_script(value):
    data = cluster_spec()
    data["output_dir"] = value
    with pytest.raises(ConfigError, match="output_dir"):
        spec_from_dict(data)


def test_a_newline_in_the_campaign_directory_is_refused_for_any_executor():
    with pytest.raises(ConfigError, match="control characters"):
        spec_from_dict({"name": "x", "output_dir": "/tmp/a\ntouch pwned", "samples": 1})


def train_args(**changes) -> argparse.Namespace:
    values = dict(config="examples/train/tiny.yaml", data="/data/set", nodes=2, gpus_per_node=4, tasks_per_node=1,
                  cpus_per_task=8, time="12:00:00", partition="gpu", account="proj", sbatch_arg=["--qos=long"],
                  epochs=None)
    values.update(changes)
    return argparse.Namespace(**values)


def test_training_submission_command(tmp_path):
    run = Path("/scratch/runs/r1")
    argv = sbatch_command(train_args(), run, run / "train.sbatch")
    text = shlex.join(argv).replace(str(REPO), "REPO") + "\n"
    check_golden("train-submit.txt", text)


@pytest.mark.parametrize("option", ["partition", "account"])
@pytest.mark.parametrize("value", HOSTILE)
def test_training_submission_refuses_shell_syntax_in_names(option, value):
    with pytest.raises(ConfigError, match=f"--{option} must be a SLURM name"):
        sbatch_command(train_args(**{option: value}), Path("/r"), Path("/r/train.sbatch"))


@pytest.mark.parametrize("changes, message", [
    ({"time": "1:00:00\nx"}, "--time"), ({"time": "$(x)"}, "--time"),
    ({"sbatch_arg": ["--qos=a\ntouch pwned"]}, "control characters"), ({"sbatch_arg": ["x"]}, "one sbatch option"),
    ({"data": "/d\nx"}, "control characters"),
])
def test_training_submission_refuses_line_breaks_and_bad_values(changes, message):
    with pytest.raises(ConfigError, match=message):
        sbatch_command(train_args(**changes), Path("/r"), Path("/r/train.sbatch"))
