"""The private single-node SLURM of workflow/local_slurm.py as a pytest plugin.

Load it with ``pytest_plugins = ["tests.slurm_cluster"]`` in ``tests/conftest.py``
(or ``-p tests.slurm_cluster`` on the command line).  It provides the
session-scoped fixture ``slurm_cluster``: a running :class:`SlurmCluster`,
with ``SLURM_CONF`` exported for the session.  At the end of the session
every job is cancelled and every process the cluster started is stopped.
"""
from __future__ import annotations

import pytest

from workflow.local_slurm import SlurmCluster, SlurmClusterError, missing_requirements

__all__ = ["SlurmCluster", "SlurmClusterError", "missing_requirements", "slurm_cluster"]


@pytest.fixture(scope="session")
def slurm_cluster():
    """A running private SLURM for the session; SLURM_CONF (and this Python's
    bin directory on PATH, for Parsl's ``interchange.py``) exported meanwhile."""
    reason = missing_requirements()
    if reason:
        pytest.skip(reason)
    cluster = SlurmCluster()
    cluster.start()
    mp = pytest.MonkeyPatch()
    mp.setenv("SLURM_CONF", str(cluster.conf))
    mp.setenv("PATH", cluster.env["PATH"])
    try:
        yield cluster
    finally:
        mp.undo()
        leftovers = cluster.stop()
        if leftovers:
            raise SlurmClusterError(f"the private SLURM left processes behind (killed): {leftovers}; "
                                    f"logs kept in {cluster.root}")
