"""The 75 named recording sites and the 12 leads, in the public data set's order.

Sites follow the AHA 17-segment model of the left ventricle and an analogous
13-segment division of the right ventricle: endocardial sites AHA01-AHA17 and
RV01-RV13, epicardial (EPI_) and mid-wall (MID_) sites under 20 of those
segments, and 5 septal mid-wall sites between paired LV and RV segments.
"""
from __future__ import annotations

LV_SEGMENTS = tuple(f"AHA{i:02d}" for i in range(1, 18))
RV_SEGMENTS = tuple(f"RV{i:02d}" for i in range(1, 14))
_TRANSMURAL_UNDER = (
    "AHA01", "AHA04", "AHA05", "AHA06", "AHA07", "AHA10", "AHA11", "AHA12", "AHA13", "AHA15",
    "AHA16", "AHA17", "RV01", "RV02", "RV03", "RV06", "RV07", "RV08", "RV11", "RV12",
)
EPI_SITES = tuple(f"EPI_{s}" for s in _TRANSMURAL_UNDER)
MID_SITES = tuple(f"MID_{s}" for s in _TRANSMURAL_UNDER)
SEPTAL_SITES = (
    "SEPTM_AHA02_RV05", "SEPTM_AHA03_RV04", "SEPTM_AHA08_RV10", "SEPTM_AHA09_RV09", "SEPTM_AHA14_RV13",
)

SITE_NAMES: tuple[str, ...] = LV_SEGMENTS + RV_SEGMENTS + EPI_SITES + MID_SITES + SEPTAL_SITES
assert len(SITE_NAMES) == 75

#: Site groups for per-group error reports.
SITE_GROUPS: dict[str, tuple[str, ...]] = {
    "AHA": LV_SEGMENTS,
    "RV": RV_SEGMENTS,
    "EPI": EPI_SITES,
    "MID": MID_SITES,
    "SEPTM": SEPTAL_SITES,
}

ELECTRODE_NAMES = ("RA", "LA", "LL", "RL", "V1", "V2", "V3", "V4", "V5", "V6")
LEAD_NAMES = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")


def site_group(name: str) -> str:
    """The group (AHA, RV, EPI, MID, SEPTM) a site belongs to."""
    for group, names in SITE_GROUPS.items():
        if name in names:
            return group
    raise KeyError(f"unknown site {name!r}")
