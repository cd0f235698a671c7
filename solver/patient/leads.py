"""The 12 standard leads from the 10 electrode potentials: pure arithmetic.

Kept apart from the solver (no MPI, no PETSc) so that data-set tools and the
inference side can derive leads without starting an MPI runtime.
"""
from __future__ import annotations

import numpy as np

from ..common.sites import ELECTRODE_NAMES, LEAD_NAMES


def twelve_leads(electrodes: np.ndarray) -> np.ndarray:
    """(T, 12) leads I..V6 from (T, 10) potentials in ELECTRODE_NAMES order.

    Einthoven's limb leads, Goldberger's augmented leads and the precordial
    leads against Wilson's central terminal WCT = (RA + LA + LL) / 3.
    """
    e = {name: electrodes[:, i] for i, name in enumerate(ELECTRODE_NAMES)}
    wct = (e["RA"] + e["LA"] + e["LL"]) / 3.0
    leads = {
        "I": e["LA"] - e["RA"],
        "II": e["LL"] - e["RA"],
        "III": e["LL"] - e["LA"],
        "aVR": 1.5 * (e["RA"] - wct),
        "aVL": 1.5 * (e["LA"] - wct),
        "aVF": 1.5 * (e["LL"] - wct),
        **{f"V{k}": e[f"V{k}"] - wct for k in range(1, 7)},
    }
    return np.stack([leads[name] for name in LEAD_NAMES], axis=1)
