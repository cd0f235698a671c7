"""Every batch script ecgi generates, against golden files, and the values
that reach them: no field of a spec or option can inject a shell command.

A block's script is the one Parsl's own SlurmProvider.submit writes (its
sbatch call answered in-process), so the golden files pin what Parsl
submits, not a copy of its template.

Fast: nothing is submitted, no SLURM and no root needed.  After an intended
change of a script, regenerate the golden files with
``ECGI_UPDATE_GOLDEN=1 python -m pytest tests/test_batch_scripts.py``.
"""
from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from solver.common.errors import ConfigError
from tests.conftest import REPO
from workflow.batch import JobAttributes, ResourceSpec, sbatch_options, walltime_minutes
from workflow.executors import BLOCK_JOB_NAME, block_script
from workflow.jobs import training_job
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
    """The block script with this machine's paths and the submission time
    (Parsl appends time.time() to the job name) replaced by placeholders."""
    text = block_script(spec_from_dict(data), tmp_path)
    names = set(re.findall(re.escape(BLOCK_JOB_NAME) + r"\.[0-9]+\.[0-9]+", text))
    assert len(names) == 1, names  # one job name throughout: its script, output, error and JOBNAME
    text = text.replace(names.pop(), f"{BLOCK_JOB_NAME}.TIME")
    text = text.replace(shlex.quote(str(Path(sys.executable).parent)), "BIN_DIR")
    return text.replace(str(tmp_path), "SCRIPT_DIR")


def test_block_script_of_the_cluster_example(tmp_path):
    check_golden("cluster-block.sbatch", rendered(cluster_spec(), tmp_path))


def test_block_script_of_multi_rank_simulations(tmp_path):
    data = cluster_spec(driver_address="10.0.0.1")
    data["resources"]["ranks_per_simulation"] = 8
    check_golden("cluster-block-mpi.sbatch", rendered(data, tmp_path))


def test_block_script_is_what_parsl_writes(tmp_path):
    """Parsl's own additions reach the script: the cores it exports to the
    workers and the launcher's script directory."""
    text = rendered(cluster_spec(walltime="1-12"), tmp_path)
    assert "export PARSL_CORES=64\n" in text
    assert 'SCRIPT_DIR="SCRIPT_DIR"\n' in text
    assert "#SBATCH --time=2160\n" in text  # SLURM's D-HH, in minutes as Parsl writes them
    assert "#SBATCH --constraint=cpu\n" in text
    written = [p.name for p in tmp_path.iterdir()]
    assert len(written) == 1 and written[0].startswith(f"{BLOCK_JOB_NAME}.")  # Parsl's script, nothing else


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
    ("walltime", "01:00:00\ntouch pwned", "walltime must be a SLURM time limit"),
    ("walltime", "01:00:00;x", "walltime must be a SLURM time limit"),
    ("constraint", "cpu\ntouch pwned", "constraint must be SLURM node features"),
    ("constraint", "cpu;x", "constraint must be SLURM node features"),
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


@pytest.mark.parametrize("text, minutes, slurm, parsl", [
    ("45", 45, "00:45:00", "00:45:00"), ("45:30", 46, "00:46:00", "00:46:00"), ("0:30", 1, "00:01:00", "00:01:00"),
    ("12:00:00", 720, "12:00:00", "12:00:00"), ("100:00:00", 6000, "4-04:00:00", "100:00:00"),
    ("2-0", 2880, "2-00:00:00", "48:00:00"), ("1-12:30", 2190, "1-12:30:00", "36:30:00"),
    ("7-00:00:00", 10080, "7-00:00:00", "168:00:00"),
])
def test_walltime_takes_sbatch_forms(text, minutes, slurm, parsl):
    attributes = JobAttributes(walltime=text)
    attributes.validate()
    assert (attributes.minutes, attributes.slurm_time, attributes.parsl_walltime) == (minutes, slurm, parsl)


@pytest.mark.parametrize("text, message", [
    ("0", "at least one minute"), ("00:00:00", "at least one minute"), ("UNLIMITED", "a SLURM time limit"),
    ("1:00:00:00", "a SLURM time limit"), ("1-", "a SLURM time limit"), ("-5", "a SLURM time limit"),
    ("01:60:00", "below 60"), ("5:61", "below 60"), ("400-00:00:00", "above the maximum of 365 days"), ("", "a SLURM"),
])
def test_walltime_refuses_what_sbatch_would_not_take(text, message):
    with pytest.raises(ConfigError, match=message):
        walltime_minutes(text)


def test_campaigns_and_training_share_one_walltime_grammar():
    """The same text is refused by both, with the name the user wrote."""
    with pytest.raises(ConfigError, match="walltime must be a SLURM time limit"):
        spec_from_dict(cluster_spec(walltime="12h"))
    with pytest.raises(ConfigError, match="--time must be a SLURM time limit"):
        training_job(train_args(time="12h"), Path("/r"))
    assert spec_from_dict(cluster_spec(walltime="2-00")).resources.slurm.job_attributes().minutes == 2880
    assert training_job(train_args(time="2-00"), Path("/r")).attributes.slurm_time == "2-00:00:00"


def test_sbatch_options_of_a_job():
    resources = ResourceSpec(nodes=2, tasks_per_node=4, gpus_per_node=4, cpus_per_task=8)
    attributes = JobAttributes(walltime="90", partition="gpu", account="proj", qos="long", constraint="a100&nvlink")
    assert sbatch_options(resources, attributes) == [
        "--nodes=2", "--ntasks-per-node=4", "--cpus-per-task=8", "--time=01:30:00", "--gpus-per-node=4",
        "--partition=gpu", "--account=proj", "--qos=long", "--constraint=a100&nvlink"]
    assert sbatch_options(ResourceSpec(), JobAttributes()) == ["--nodes=1", "--ntasks-per-node=1", "--time=01:00:00"]


@pytest.mark.parametrize("resources, message", [
    (ResourceSpec(nodes=0), r"nodes must be in \[1, 10000\], got 0"),
    (ResourceSpec(tasks_per_node=5000), r"tasks_per_node must be in \[1, 4096\], got 5000"),
    (ResourceSpec(gpus_per_node=-1), r"gpus_per_node must be in \[0, 64\], got -1"),
    (ResourceSpec(cpus_per_task=0), r"cpus_per_task must be in \[1, 4096\], got 0"),
])
def test_resource_counts_have_ranges(resources, message):
    with pytest.raises(ConfigError, match=message):
        resources.validate()


def train_args(**changes) -> argparse.Namespace:
    values = dict(config="examples/train/tiny.yaml", data="/data/set", nodes=2, gpus_per_node=4, tasks_per_node=1,
                  cpus_per_task=8, time="12:00:00", partition="gpu", account="proj", qos="long", constraint=None,
                  sbatch_arg=["--mem=64G"], epochs=None)
    values.update(changes)
    return argparse.Namespace(**values)


def test_training_submission_command(tmp_path):
    run = Path("/scratch/runs/r1")
    argv = training_job(train_args(), run).sbatch_argv(run / "train.sbatch")
    text = shlex.join(argv).replace(str(REPO), "REPO") + "\n"
    check_golden("train-submit.txt", text)


@pytest.mark.parametrize("option", ["partition", "account", "qos"])
@pytest.mark.parametrize("value", HOSTILE)
def test_training_submission_refuses_shell_syntax_in_names(option, value):
    with pytest.raises(ConfigError, match=f"--{option} must be a SLURM name"):
        training_job(train_args(**{option: value}), Path("/r"))


@pytest.mark.parametrize("changes, message", [
    ({"time": "1:00:00\nx"}, "--time"), ({"time": "$(x)"}, "--time"),
    ({"constraint": "gpu\nx"}, "--constraint"), ({"constraint": "$(x)"}, "--constraint"),
    ({"sbatch_arg": ["--qos=a\ntouch pwned"]}, "control characters"), ({"sbatch_arg": ["x"]}, "one sbatch option"),
    ({"data": "/d\nx"}, "control characters"), ({"nodes": 0}, r"--nodes must be in \[1, 10000\]"),
])
def test_training_submission_refuses_line_breaks_and_bad_values(changes, message):
    with pytest.raises(ConfigError, match=message):
        training_job(train_args(**changes), Path("/r"))
