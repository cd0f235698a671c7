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


# ---------------------------------------------------------------- tabulated kernel


def test_table_matches_exact_kernel():
    """Each tabulated gate steady state and Rush–Larsen factor (built from the
    published formulas) equals the exact kernel's, read off one step of the
    kernel from gates 0 and 1: x' = x_inf (1 - e) + e x."""
    from solver.numerics.ionic import tt06_tables

    dt = 0.05
    v = np.array([-95.0, -85.0, -60.0, -40.0, -39.9, -20.0, 0.0, 14.99, 15.0, 30.0, 60.0])
    n = len(v)
    for ct, s_name in ((EPI, "s_epi"), (ENDO, "s_endo")):
        model = TenTusscherPanfilov2006()
        cell_type = np.full(n, ct, dtype=np.int8)
        _, states = model.initial_state(cell_type)
        gates = ["m", "h", "j", "xr1", "xr2", "xs", "r", "s", "d", "f", "f2"]
        cols = [model.state_names.index(g) for g in gates]
        after = []
        for x in (0.0, 1.0):
            st = states.copy()
            st[:, cols] = x
            model.step(v.copy(), st, np.zeros(n), dt, cell_type)
            after.append(st[:, cols])
        e = after[1] - after[0]
        x_inf = after[0] / (1.0 - e)
        table = tt06_tables.exact_values(v, dt)
        col = tt06_tables.COL
        for g, name in enumerate(gates):
            key = s_name if name == "s" else name
            e_col = col[f"{key}_e"]
            inf_col = col["h_inf" if key == "j" else f"{key}_inf"]
            np.testing.assert_allclose(e[:, g], table[:, e_col], rtol=1e-9, atol=1e-12, err_msg=name)
            np.testing.assert_allclose(x_inf[:, g], table[:, inf_col], rtol=1e-6, atol=1e-9, err_msg=name)


def test_table_interpolation_error_is_small():
    """The documented bounds (docs/solver.md): within 5e-6 of each exact
    quantity, except the h and j factors in the one interval below -40 mV
    where their rates switch formula."""
    from solver.numerics.ionic import tt06_tables

    for dt in (0.01, 0.05):
        errors = tt06_tables.max_errors(dt, samples_per_interval=8)
        jumps = {"h_e": 3e-4, "j_e": 3e-5}
        for name, err in errors.items():
            assert err < jumps.get(name, 5e-6), (dt, name, err)


def _beat(kernel: str, dt: float = 0.05):
    model = TenTusscherPanfilov2006(kernel=kernel)
    vm, states = model.initial_state(TYPES)
    n_steps, n_stim = int(round(BCL / dt)), int(round(STIM_DUR / dt))
    stim, zero = np.full(3, STIM_AMP), np.zeros(3)
    trace = np.empty((n_steps, 3))
    for k in range(n_steps):
        model.step(vm, states, stim if k < n_stim else zero, dt, TYPES)
        trace[k] = vm
    return trace, states


def test_tabulated_kernel_follows_exact_over_a_beat():
    """A full 1 Hz beat of endo, M and epi cells: Vm within 0.01 mV of the
    exact kernel at every step, APD90 within 0.05 ms (the goal is 1 ms)."""
    global DT
    exact, st_exact = _beat("exact")
    fast, st_fast = _beat("tabulated")
    assert exact.max() > 20.0 and np.all(exact[-1] < -80.0)  # a whole action potential
    assert np.abs(fast - exact).max() < 0.01
    np.testing.assert_allclose(st_fast, st_exact, rtol=1e-4, atol=1e-9)
    saved, DT = DT, 0.05  # _apd90 reads the sampling interval
    try:
        for i in range(3):
            assert abs(_apd90(fast[:, i]) - _apd90(exact[:, i])) < 0.05
    finally:
        DT = saved


def test_tabulated_kernel_steps_out_of_range_blocks_exactly():
    """Cells whose Vm lies outside the table are stepped by the exact kernel:
    a block of 32 cells at +100 mV gives the exact result bit for bit."""
    ct = np.full(40, EPI, dtype=np.int8)
    results = []
    for kernel in ("exact", "tabulated"):
        model = TenTusscherPanfilov2006(kernel=kernel)
        vm, states = model.initial_state(ct)
        vm[:32] = 100.0
        vm[32:] = -120.0  # the padded remainder block is outside too
        model.step(vm, states, np.zeros(40), 0.05, ct)
        results.append((vm, states))
    assert np.array_equal(results[0][0], results[1][0])
    assert np.array_equal(results[0][1], results[1][1])


def test_table_is_built_per_dt_and_refuses_bad_ranges():
    from solver.numerics.ionic import tt06_tables

    model = TenTusscherPanfilov2006(kernel="tabulated")
    assert model.table(0.05) is model.table(0.05)  # cached in the process
    assert not np.array_equal(model.table(0.05), model.table(0.01))
    with pytest.raises(ValueError, match="whole number"):
        tt06_tables.table_for(0.05, v_min=-100.0, v_max=80.0, dv=0.07)
    with pytest.raises(ValueError, match="dt"):
        tt06_tables.table_for(0.0)
    with pytest.raises(ValueError, match="kernel"):
        TenTusscherPanfilov2006(kernel="fast")


def test_kernel_is_a_configuration_option():
    from solver.common.errors import ConfigError
    from solver.common.typedconfig import from_mapping
    from solver.numerics.config import IonicConfig

    ionic = from_mapping(IonicConfig, {"model": "tt06", "tt06_kernel": "tabulated"})
    ionic.validate()
    assert create_model(ionic.model, ionic.parameters, **ionic.options()).kernel == "tabulated"
    assert IonicConfig().tt06_kernel == "tabulated"  # the default, by the accuracy above
    assert IonicConfig(model="mitchell_schaeffer", tt06_kernel="tabulated").options() == {}
    with pytest.raises(ConfigError, match="tt06_kernel"):
        from_mapping(IonicConfig, {"model": "tt06", "tt06_kernel": "fast"})
