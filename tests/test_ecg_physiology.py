"""The synthetic 12-lead ECG against textbook clinical criteria.

Each condition of the example patients is simulated once (the default
biventricle in the bounded torso, Mitchell–Schaeffer at dx 2 mm, calibrated
velocities; TT06 for the T wave) and read as a cardiologist reads an ECG.
The criteria are the textbook ones (Surawicz & Knilans, Chou's
Electrocardiography in Clinical Practice; AHA/ACCF/HRS 2009 recommendations
for intraventricular conduction disturbances).
"""
from __future__ import annotations

import numpy as np
import pytest
from mpi4py import MPI

from solver.patient.ecg_measures import BeatMeasures, measure_beat
from solver.patient import PatientSimulation, load_patient_config
from solver.common.sites import LEAD_NAMES

# --- every condition -------------------------------------------------------
MIN_LIMB_TO_PRECORDIAL = 0.25  # largest limb-lead QRS over the largest precordial
MAX_NOTCHES = 2  # turning points per lead beyond those of a q-R-S complex

# --- normal conduction ------------------------------------------------------
NORMAL_QRS_MS = (70.0, 110.0)
NORMAL_AXIS_DEG = (-30.0, 90.0)
V1_MAX_R_OVER_S = 1.0
V5_V6_MIN_R_OVER_S = 1.5
R_RESOLUTION_MV = 0.05  # half a small box at 10 mm/mV: R waves equal within it
TRANSITION_LEADS = ("V3", "V4", "V5")  # first lead with R/S >= 1 lies after V2, by V5

# --- left bundle branch block ----------------------------------------------
BBB_MIN_QRS_MS = 120.0
LBBB_V1_V2_MAX_R_OVER_S = 0.2
LBBB_LATERAL_MIN_R_OVER_S = 3.0
LBBB_MIN_R_PEAK_TIME_MS = 60.0  # V5-V6
Q_WAVE_FRACTION = 0.1  # a q deeper than this fraction of R counts as a q wave

MAX_NOTCHES_BBB = 3
BBB_MAJOR_LEAD_FRACTION = 1 / 3  # leads whose QRS is at least this share of the largest

# --- right bundle branch block ---------------------------------------------
RBBB_AXIS_DEG = (-30.0, 90.0)  # from the initial 60 ms


def simulate(condition: str, model: str = "mitchell_schaeffer", dx: float = 2.0, dt: float = 0.1,
             duration: float = 450.0, **settings) -> tuple[np.ndarray, BeatMeasures]:
    config = load_patient_config({
        "geometry_id": "textbook", "heart": {"dx_mm": dx}, "activation": {"condition": condition},
        "ionic": {"model": model}, "time": {"dt_ms": dt, "duration_ms": duration, "diffusion": "auto"},
        **settings,
    })
    sample = PatientSimulation(config, MPI.COMM_SELF).run()
    leads = sample.result.extra["leads"][0].astype(np.float64)
    return leads, measure_beat(leads, config.output_interval_ms)


@pytest.fixture(scope="module")
def beats() -> dict[str, tuple[np.ndarray, BeatMeasures]]:
    return {condition: simulate(condition) for condition in ("normal", "lbbb", "rbbb")}


@pytest.mark.parametrize("condition", ["normal", "lbbb", "rbbb"])
def test_every_ecg_obeys_the_lead_laws_and_has_clinical_proportions(beats, condition):
    leads, m = beats[condition]
    lead = {name: leads[:, i] for i, name in enumerate(LEAD_NAMES)}
    np.testing.assert_allclose(lead["II"], lead["I"] + lead["III"], atol=1e-5)
    np.testing.assert_allclose(lead["aVR"] + lead["aVL"] + lead["aVF"], 0.0, atol=1e-5)
    assert m.limb_to_precordial_ratio >= MIN_LIMB_TO_PRECORDIAL
    # Clinical amplitudes: a precordial QRS of the order of a millivolt.
    assert 0.5 <= max(m[n].peak_to_peak_mV for n in LEAD_NAMES[6:]) <= 5.0


def test_the_normal_qrs_is_smooth(beats):
    _, m = beats["normal"]
    notched = {n: m[n].notches for n in LEAD_NAMES if m[n].notches > MAX_NOTCHES}
    assert not notched


@pytest.mark.parametrize("condition", ["lbbb", "rbbb"])
def test_bundle_branch_block_qrs_is_notched_at_most_as_in_the_clinic(beats, condition):
    """A notched R is a sign of bundle branch block (Strauss et al. 2011); a
    jagged QRS is not: the leads that carry the QRS notch at most a little."""
    _, m = beats[condition]
    largest = max(m[n].peak_to_peak_mV for n in LEAD_NAMES)
    major = [n for n in LEAD_NAMES if m[n].peak_to_peak_mV >= BBB_MAJOR_LEAD_FRACTION * largest]
    assert all(m[n].notches <= MAX_NOTCHES_BBB for n in major), {n: m[n].notches for n in major}


def test_normal_conduction(beats):
    _, m = beats["normal"]
    assert NORMAL_QRS_MS[0] <= m.qrs_ms <= NORMAL_QRS_MS[1]
    assert NORMAL_AXIS_DEG[0] <= m.frontal_axis_deg <= NORMAL_AXIS_DEG[1]
    assert m["I"].net_area > 0 and m["II"].net_area > 0 and m["aVR"].net_area < 0
    assert m["V1"].r_over_s < V1_MAX_R_OVER_S
    assert m["V5"].r_over_s > V5_V6_MIN_R_OVER_S and m["V6"].r_over_s > V5_V6_MIN_R_OVER_S
    r_waves = [m[f"V{k}"].r_mV for k in range(1, 5)]
    assert all(b >= a - R_RESOLUTION_MV for a, b in zip(r_waves, r_waves[1:])), r_waves
    transition = next(f"V{k}" for k in range(1, 7) if m[f"V{k}"].r_over_s >= 1.0)
    assert transition in TRANSITION_LEADS


def test_left_bundle_branch_block(beats):
    _, m = beats["lbbb"]
    assert m.qrs_ms >= BBB_MIN_QRS_MS
    for lead in ("V1", "V2"):
        assert m[lead].net_area < 0 and m[lead].r_over_s < LBBB_V1_V2_MAX_R_OVER_S
    for lead in ("I", "aVL", "V6"):
        assert m[lead].net_area > 0 and m[lead].r_over_s > LBBB_LATERAL_MIN_R_OVER_S
        assert m[lead].q_mV <= Q_WAVE_FRACTION * m[lead].r_mV, f"q wave in {lead}"
    assert max(m["V5"].r_peak_time_ms, m["V6"].r_peak_time_ms) > LBBB_MIN_R_PEAK_TIME_MS


def test_right_bundle_branch_block(beats):
    _, m = beats["rbbb"]
    assert m.qrs_ms >= BBB_MIN_QRS_MS
    assert m["V1"].terminal_area > 0 and not m["V1"].ends_negative  # R'
    assert m["I"].ends_negative and m["V6"].ends_negative  # terminal S
    # The last 40 ms point to the right (negative in I) and forward (positive in V1).
    assert m["I"].terminal_area < 0 and m["V1"].terminal_area > 0
    assert RBBB_AXIS_DEG[0] <= m.frontal_axis_initial_deg <= RBBB_AXIS_DEG[1]


def test_bundle_branch_blocks_widen_the_qrs_of_the_same_heart(beats):
    normal = beats["normal"][1].qrs_ms
    assert beats["lbbb"][1].qrs_ms > normal + 30 and beats["rbbb"][1].qrs_ms > normal + 30


def t_wave_concordant(m: BeatMeasures, leads=("I", "II", "V5", "V6")) -> dict[str, bool]:
    return {lead: np.sign(m[lead].t_area) == np.sign(m[lead].net_area) for lead in leads}


def test_normal_t_waves_are_concordant_with_mitchell_schaeffer_apd_gradients(beats):
    _, m = beats["normal"]
    assert all(t_wave_concordant(m).values()), t_wave_concordant(m)
    assert m["aVR"].t_area < 0
    assert all(m[lead].t_area > 0 for lead in ("I", "II", "V3", "V4", "V5", "V6"))


def test_uniform_membrane_gives_discordant_t_waves():
    """Without the APD gradients the T wave mirrors the QRS (its area cancels
    it): the gradients, not chance, make the T wave upright."""
    _, m = simulate("normal", repolarisation={"transmural_apd_fraction": 0.0, "apicobasal_apd_fraction": 0.0})
    assert not any(t_wave_concordant(m).values())


def test_normal_t_waves_are_concordant_with_tt06_cell_types():
    _, m = simulate("normal", model="tt06", dt=0.05, duration=450.0)
    assert all(t_wave_concordant(m).values()), t_wave_concordant(m)


def test_a_campaign_of_older_samples_is_refused_not_mixed(tmp_path):
    import h5py

    from solver.common.errors import ConfigError
    from tests.test_campaign_local import spec
    from workflow.layout import CampaignLayout
    from workflow.sampling import plan_samples
    from workflow.spec import load_spec

    campaign = load_spec(spec(tmp_path))
    layout = CampaignLayout(tmp_path / "campaign")
    plans = plan_samples(campaign)
    layout.refuse_other_sample_format()  # an empty campaign is fine
    path = layout.sample_path(plans[1])
    path.parent.mkdir(parents=True)
    with h5py.File(path, "w") as f:
        f.attrs.update(format="ecgi-simulation", format_version=1, complete=True)
    with pytest.raises(ConfigError, match="format version 1.*cannot be mixed; start a new campaign directory"):
        layout.refuse_other_sample_format()
