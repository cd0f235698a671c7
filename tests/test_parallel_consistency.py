"""The same simulation on 1 and 2 MPI ranks gives the same answer."""
from __future__ import annotations

import h5py
import numpy as np
import pytest
import yaml


def slab_config(diffusion: str, model: str) -> dict:
    return {
        "anatomy": {"dx_mm": 0.25, "slab": {"size_mm": [5, 2.5, 1], "fibre_direction": [0.8, 0.5, 0.3]}},
        "conductivity": {
            "intracellular": {"longitudinal": 0.17, "transverse": 0.019},
            "extracellular": {"longitudinal": 0.62, "transverse": 0.24},
        },
        "ionic": {"model": model},
        "time": {"dt_ms": 0.025, "duration_ms": 30, "diffusion": diffusion},
        "stimuli": [{"amplitude_uA_per_mm3": 50, "duration_ms": 2,
                     "box": {"min_mm": [0, 0, 0], "max_mm": [1, 1, 1]}}],
        "output": {"probes": {"a": [1, 1, 0.5], "b": [4, 2, 0.5], "c": [5, 2.5, 1]},
                   "snapshot_interval_ms": 5},
    }


@pytest.mark.mpi
@pytest.mark.parametrize("diffusion, model", [("explicit", "tt06"), ("crank-nicolson", "mitchell_schaeffer")])
def test_one_and_two_ranks_agree_to_round_off(tmp_path, ecgi, diffusion, model):
    config = tmp_path / "slab.yaml"
    config.write_text(yaml.safe_dump(slab_config(diffusion, model)))
    outputs = {}
    for ranks in (1, 2):
        outputs[ranks] = tmp_path / f"ranks{ranks}.h5"
        ecgi("simulate", config, "-o", outputs[ranks], "--quiet", ranks=ranks)
    with h5py.File(outputs[1]) as one, h5py.File(outputs[2]) as two:
        act1, act2 = one["activation_time"][:], two["activation_time"][:]
        assert not np.isnan(act1).any(), "the whole slab should activate"
        np.testing.assert_allclose(act2, act1, rtol=0, atol=1e-5)  # float32 storage
        np.testing.assert_allclose(two["probes/vm"][:], one["probes/vm"][:], rtol=0, atol=1e-4)
        np.testing.assert_allclose(two["snapshots/vm"][:], one["snapshots/vm"][:], rtol=0, atol=1e-4)
        assert '"ranks": 2' in two.attrs["provenance_json"]
