"""Tests of the ten Tusscher–Panfilov 2006 membrane model (solver.numerics.ionic.tt06)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from solver.numerics.ionic import ENDO, EPI, MID, TenTusscherPanfilov2006, create_model

DT = 0.02  # ms
BCL = 1000.0  # ms, 1 Hz pacing
STIM_AMP = 52.0  # mV/ms (= pA/pF), depolarising
STIM_DUR = 1.0  # ms
TYPES = np.array([ENDO, MID, EPI], dtype=np.int8)


def _pace(model, cell_type, beats):
    """Pace all cells at BCL; return the Vm trace of the last beat (steps, n)."""
    vm, states = model.initial_state(cell_type)
    n = len(cell_type)
    n_steps = int(round(BCL / DT))
    n_stim = int(round(STIM_DUR / DT))
    stim = np.full(n, STIM_AMP)
    zero = np.zeros(n)
    trace = np.empty((n_steps, n))
    for _ in range(beats):
        for k in range(n_steps):
            model.step(vm, states, stim if k < n_stim else zero, DT, cell_type)
            trace[k] = vm
    return trace, states


def _apd90(v):
    """APD90 (ms) of one beat sampled every DT ms from the stimulus onset."""
    t = DT * np.arange(1, len(v) + 1)
    v_peak = v.max()
    v_rest = v[-1]
    thr = v_peak - 0.9 * (v_peak - v_rest)
    k_up = int(np.argmax(v > thr))
    t_up = t[k_up - 1] + (thr - v[k_up - 1]) / (v[k_up] - v[k_up - 1]) * DT
    k_pk = int(np.argmax(v))
    k_dn = k_pk + int(np.argmax(v[k_pk:] < thr))
    t_dn = t[k_dn - 1] + (thr - v[k_dn - 1]) / (v[k_dn] - v[k_dn - 1]) * DT
    return t_dn - t_up


@pytest.fixture(scope="module")
def paced_default():
    trace, states = _pace(TenTusscherPanfilov2006(), TYPES, beats=5)
    apd = {int(c): _apd90(trace[:, i]) for i, c in enumerate(TYPES)}
    return trace, states, apd


# ---------------------------------------------------------------- interface


def test_interface_and_registry():
    model = create_model("tt06")
    assert isinstance(model, TenTusscherPanfilov2006)
    assert model.name == "tt06"
    assert len(model.state_names) == 18 == model.n_states
    assert len(set(model.state_names)) == 18
    for key in ("g_Na_scale", "g_CaL_scale", "g_Kr_scale", "g_Ks_scale", "g_K1_scale",
                "g_to_scale", "g_NaCa_scale"):
        assert model.default_parameters[key] == 1.0
    for key in ("Ko", "Cao", "Nao"):
        assert key in model.default_parameters
    vm, states = model.initial_state(TYPES)
    assert vm.shape == (3,) and states.shape == (3, 18)
    np.testing.assert_allclose(vm, [-86.709, -85.423, -85.23])
    # published variant differences survive in the initial state: s gate endo vs epi/M
    s = states[:, model.state_names.index("s")]
    assert s[0] < 0.5 < s[1] and s[2] > 0.99


def test_unknown_parameter_raises():
    with pytest.raises(ValueError, match="g_Kr_scal"):
        TenTusscherPanfilov2006(parameters={"g_Kr_scal": 0.5})
    with pytest.raises(ValueError):
        create_model("tt06", {"no_such_parameter": 1.0})


def test_unknown_cell_type_raises():
    with pytest.raises(ValueError, match="cell type"):
        TenTusscherPanfilov2006().initial_state(np.array([0, 7], dtype=np.int8))


def test_step_refuses_bad_state_array():
    model = TenTusscherPanfilov2006()
    ct = np.full(4, EPI, dtype=np.int8)
    vm, states = model.initial_state(ct)
    with pytest.raises(ValueError):
        model.step(vm, np.asfortranarray(states), np.zeros(4), DT, ct)
    with pytest.raises(ValueError):
        model.step(vm, states[:3], np.zeros(4), DT, ct)


# ---------------------------------------------------------------- physiology


def test_rest_is_stable():
    model = TenTusscherPanfilov2006()
    ct = np.array([EPI], dtype=np.int8)
    vm, states = model.initial_state(ct)
    v0 = vm[0]
    assert -86.0 < v0 < -85.0
    zero = np.zeros(1)
    v_min = v_max = v0
    for _ in range(int(round(1000.0 / DT))):
        model.step(vm, states, zero, DT, ct)
        v_min = min(v_min, vm[0])
        v_max = max(v_max, vm[0])
    assert v0 - 1.0 < v_min and v_max < v0 + 1.0
    assert np.all(np.isfinite(states))


def test_paced_action_potentials(paced_default):
    trace, states, apd = paced_default
    assert np.all(np.isfinite(trace)) and np.all(np.isfinite(states))
    assert np.all(trace.max(axis=0) > 20.0)  # overshoot
    assert np.all(trace.max(axis=0) < 60.0)
    # resting potential back near -85 mV at the end of the beat
    assert np.all((trace[-1] > -87.5) & (trace[-1] < -84.0))
    # published APD90 ranges at 1 Hz: epi ~ 270-310 ms, M cell clearly longer,
    # endo about equal to epi
    assert 270.0 < apd[EPI] < 310.0
    assert apd[MID] > apd[EPI] + 40.0
    assert abs(apd[ENDO] - apd[EPI]) < 30.0
    # spike-and-dome: the strong I_to of epi cells gives a notch after the
    # upstroke that endo cells (small I_to) lack
    k_pk = trace[:, 2].argmax()
    notch_epi = trace[k_pk, 2] - trace[k_pk:k_pk + int(30 / DT), 2].min()
    k_pk = trace[:, 0].argmax()
    notch_endo = trace[k_pk, 0] - trace[k_pk:k_pk + int(30 / DT), 0].min()
    assert notch_epi > notch_endo + 5.0


def test_gKr_block_prolongs_apd(paced_default):
    _, _, apd = paced_default
    trace, _ = _pace(TenTusscherPanfilov2006({"g_Kr_scale": 0.5}), TYPES, beats=3)
    for i, c in enumerate(TYPES):
        assert _apd90(trace[:, i]) > apd[int(c)] + 5.0


# ---------------------------------------------------------------- numerics


def test_independent_of_number_of_cells():
    model = TenTusscherPanfilov2006()

    def run(cell_type, n_steps=3000):
        vm, states = model.initial_state(cell_type)
        stim = np.zeros(len(cell_type))
        zero = np.zeros(len(cell_type))
        stim[:] = STIM_AMP
        for k in range(n_steps):
            model.step(vm, states, stim if k < 50 else zero, DT, cell_type)
        return vm, states

    single = run(np.array([EPI], dtype=np.int8))
    many_ct = np.resize(np.array([EPI, ENDO, MID], dtype=np.int8), 100)
    many = run(many_ct)
    assert many[0][0] == single[0][0]
    assert np.array_equal(many[1][0], single[1][0])
    # every epi cell of the big array, whatever its position, agrees too
    for i in np.flatnonzero(many_ct == EPI):
        assert many[0][i] == single[0][0]
        assert np.array_equal(many[1][i], single[1][0])


def _reference_step(v, y, stim, dt, ct):
    """Literal transcription of the published equations (authors' code order)."""
    cai, casr, cass, rr, nai, ki, m, h, j, xr1, xr2, xs, r, s, d, f, f2, fcass = y
    R, F, T = 8314.472, 96485.3415, 310.0
    rtf = R * T / F
    ko, cao, nao = 5.4, 2.0, 140.0
    vc, vsr, vss, cm = 0.016404, 0.001094, 0.00005468, 0.185
    gks = 0.098 if ct == MID else 0.392
    gto = 0.073 if ct == ENDO else 0.294
    ek = rtf * math.log(ko / ki)
    ena = rtf * math.log(nao / nai)
    eks = rtf * math.log((ko + 0.03 * nao) / (ki + 0.03 * nai))
    eca = 0.5 * rtf * math.log(cao / cai)
    ak1 = 0.1 / (1 + math.exp(0.06 * (v - ek - 200)))
    bk1 = (3 * math.exp(0.0002 * (v - ek + 100)) + math.exp(0.1 * (v - ek - 10))) / (
        1 + math.exp(-0.5 * (v - ek)))
    e2 = math.exp(2 * (v - 15) / rtf)
    i_na = 14.838 * m ** 3 * h * j * (v - ena)
    i_cal = (3.98e-5 * d * f * f2 * fcass * 4 * (v - 15) * F / rtf
             * (0.25 * e2 * cass - cao) / (e2 - 1))
    i_to = gto * r * s * (v - ek)
    i_kr = 0.153 * xr1 * xr2 * (v - ek)
    i_ks = gks * xs * xs * (v - eks)
    i_k1 = 5.405 * ak1 / (ak1 + bk1) * (v - ek)
    i_naca = (1000 / (87.5 ** 3 + nao ** 3) / (1.38 + cao)
              / (1 + 0.1 * math.exp(-0.65 * v / rtf))
              * (math.exp(0.35 * v / rtf) * nai ** 3 * cao
                 - math.exp(-0.65 * v / rtf) * nao ** 3 * cai * 2.5))
    i_nak = (2.724 * ko / (ko + 1) * nai / (nai + 40)
             / (1 + 0.1245 * math.exp(-0.1 * v / rtf) + 0.0353 * math.exp(-v / rtf)))
    i_pca = 0.1238 * cai / (0.0005 + cai)
    i_pk = 0.0146 * (v - ek) / (1 + math.exp((25 - v) / 5.98))
    i_bna = 0.00029 * (v - ena)
    i_bca = 0.000592 * (v - eca)
    i_ion = (i_na + i_cal + i_to + i_kr + i_ks + i_k1 + i_naca + i_nak + i_pca + i_pk
             + i_bna + i_bca)
    kcasr = 2.5 - 1.5 / (1 + (1.5 / casr) ** 2)
    rr += dt * (0.005 * (1 - rr) - 0.045 * kcasr * cass * rr)
    k1 = 0.15 / kcasr
    o = k1 * cass ** 2 * rr / (0.06 + k1 * cass ** 2)
    i_rel = 0.102 * o * (casr - cass)
    i_leak = 0.00036 * (casr - cai)
    i_up = 0.006375 / (1 + (0.00025 / cai) ** 2)
    i_xfer = 0.0038 * (cass - cai)

    def buffered(c, dc, btot, kb):
        b = btot - btot * c / (c + kb) - dc - c + kb
        cc = kb * (btot * c / (c + kb) + dc + c)
        return (math.sqrt(b * b + 4 * cc) - b) / 2

    casr_n = buffered(casr, dt * (i_up - i_rel - i_leak), 10.0, 0.3)
    cass_n = buffered(cass, dt * (-i_xfer * vc / vss + i_rel * vsr / vss
                                  - i_cal * cm / (2 * vss * F)), 0.4, 0.00025)
    cai_n = buffered(cai, dt * (-(i_bca + i_pca - 2 * i_naca) * cm / (2 * vc * F)
                                - (i_up - i_leak) * vsr / vc + i_xfer), 0.2, 0.001)
    nai += -dt * (i_na + i_bna + 3 * i_nak + 3 * i_naca) * cm / (vc * F)
    ki += -dt * (i_k1 + i_to + i_kr + i_ks - 2 * i_nak + i_pk - stim) * cm / (vc * F)

    ex = math.exp
    tau_m = (1 / (1 + ex((-60 - v) / 5))) * (0.1 / (1 + ex((v + 35) / 5))
                                             + 0.1 / (1 + ex((v - 50) / 200)))
    m_inf = 1 / (1 + ex((-56.86 - v) / 9.03)) ** 2
    h_inf = 1 / (1 + ex((v + 71.55) / 7.43)) ** 2
    if v >= -40:
        rate_h = 0.77 / (0.13 * (1 + ex(-(v + 10.66) / 11.1)))
        rate_j = 0.6 * ex(0.057 * v) / (1 + ex(-0.1 * (v + 32)))
    else:
        rate_h = 0.057 * ex(-(v + 80) / 6.8) + 2.7 * ex(0.079 * v) + 3.1e5 * ex(0.3485 * v)
        rate_j = ((-2.5428e4 * ex(0.2444 * v) - 6.948e-6 * ex(-0.04391 * v)) * (v + 37.78)
                  / (1 + ex(0.311 * (v + 79.23)))
                  + 0.02424 * ex(-0.01052 * v) / (1 + ex(-0.1378 * (v + 40.14))))
    if ct == ENDO:
        s_inf = 1 / (1 + ex((v + 28) / 5))
        tau_s = 1000 * ex(-(v + 67) ** 2 / 1000) + 8
    else:
        s_inf = 1 / (1 + ex((v + 20) / 5))
        tau_s = 85 * ex(-(v + 45) ** 2 / 320) + 5 / (1 + ex((v - 20) / 5)) + 3
    gates = [
        (m, m_inf, tau_m),
        (h, h_inf, 1 / rate_h),
        (j, h_inf, 1 / rate_j),
        (xr1, 1 / (1 + ex((-26 - v) / 7)),
         450 / (1 + ex((-45 - v) / 10)) * 6 / (1 + ex((v + 30) / 11.5))),
        (xr2, 1 / (1 + ex((v + 88) / 24)),
         3 / (1 + ex((-60 - v) / 20)) * 1.12 / (1 + ex((v - 60) / 20))),
        (xs, 1 / (1 + ex((-5 - v) / 14)),
         1400 / math.sqrt(1 + ex((5 - v) / 6)) / (1 + ex((v - 35) / 15)) + 80),
        (r, 1 / (1 + ex((20 - v) / 6)), 9.5 * ex(-(v + 40) ** 2 / 1800) + 0.8),
        (s, s_inf, tau_s),
        (d, 1 / (1 + ex((-8 - v) / 7.5)),
         (1.4 / (1 + ex((-35 - v) / 13)) + 0.25) * 1.4 / (1 + ex((v + 5) / 5))
         + 1 / (1 + ex((50 - v) / 20))),
        (f, 1 / (1 + ex((v + 20) / 7)),
         1102.5 * ex(-(v + 27) ** 2 / 225) + 200 / (1 + ex((13 - v) / 10))
         + 180 / (1 + ex((v + 30) / 10)) + 20),
        (f2, 0.67 / (1 + ex((v + 35) / 7)) + 0.33,
         600 * ex(-(v + 25) ** 2 / 170) + 31 / (1 + ex((25 - v) / 10))
         + 16 / (1 + ex((v + 30) / 10))),
        (fcass, 0.6 / (1 + (cass_n / 0.05) ** 2) + 0.4, 80 / (1 + (cass_n / 0.05) ** 2) + 2),
    ]
    new_gates = [x_inf - (x_inf - x) * ex(-dt / tau) for x, x_inf, tau in gates]
    return v + dt * (stim - i_ion), [cai_n, casr_n, cass_n, rr, nai, ki, *new_gates]


def test_matches_literal_transcription():
    """The optimised kernel is an exact rewrite of the published equations:
    over two paced beats (docs/verification.md: agreement to 7e-9 mV)."""
    model = TenTusscherPanfilov2006()
    vm, states = model.initial_state(TYPES)
    ref = [(vm[i], list(states[i])) for i in range(3)]
    n_steps, n_stim = int(round(BCL / DT)), int(round(STIM_DUR / DT))
    max_dv, peaks = 0.0, []
    for _beat in range(2):
        peak = np.full(3, -np.inf)
        for k in range(n_steps):
            stim = np.full(3, STIM_AMP if k < n_stim else 0.0)
            model.step(vm, states, stim, DT, TYPES)
            for i, c in enumerate(TYPES):
                ref[i] = _reference_step(ref[i][0], ref[i][1], stim[i], DT, int(c))
                max_dv = max(max_dv, abs(vm[i] - ref[i][0]))
            peak = np.maximum(peak, vm)
        peaks.append(peak)
    assert max_dv < 1e-8, max_dv
    for i in range(3):
        np.testing.assert_allclose(states[i], ref[i][1], rtol=1e-9, atol=1e-15)
    assert np.min(peaks) > 20.0  # each of the two beats was an action potential in every cell
    assert np.all(vm < -80.0)  # and repolarised
