"""ten Tusscher–Panfilov (2006) human ventricular myocyte model.

K. H. W. J. ten Tusscher and A. V. Panfilov, "Alternans and spiral breakup in
a human ventricular tissue model", Am J Physiol Heart Circ Physiol 291:H1088
(2006), building on ten Tusscher, Noble, Noble & Panfilov, Am J Physiol 286:
H1573 (2004).  Endocardial, mid-myocardial (M) and epicardial variants.

State (besides Vm): the intracellular concentrations Ca_i, Ca_SR, Ca_ss,
Na_i, K_i (mM), the RyR recovery variable R_prime (Rbar) and the twelve
Hodgkin–Huxley gates m, h, j (I_Na), xr1, xr2 (I_Kr), xs (I_Ks), r, s (I_to),
d, f, f2, fCass (I_CaL).

The variants differ as published: g_to = 0.073 nS/pF (endo) and 0.294 (M,
epi); g_Ks = 0.392 nS/pF (endo, epi) and 0.098 (M); the slow inactivation
gate s of I_to has the endocardial kinetics in endo cells and the
epicardial kinetics in M and epi cells.

Numerics follow the authors' own code: the gates are advanced with the
Rush–Larsen exponential integrator, Vm, Na_i, K_i and R_prime with forward
Euler, and the buffered calcium concentrations Ca_i, Ca_SR and Ca_ss with a
forward-Euler step of the total (free + buffered) concentration followed by
the analytic solution of the rapid-buffering quadratic for the free
concentration.  All membrane currents, and hence the Vm update, are
evaluated from the state at the beginning of the step.

Sign conventions: currents are outward positive (pA/pF); the applied
stimulus ``i_stim`` (mV/ms = pA/pF) is positive when depolarising, so that
dVm/dt = -I_ion + i_stim.  As in the published equations (dK_i/dt contains
I_stim), the applied stimulus current is carried by K+ ions; set
``stim_K_fraction`` to 0 to leave K_i untouched by the stimulus.

Where the paper, the CellML model and the authors' code differ, the code is
followed, with two notes: I_K1 carries the factor sqrt(Ko/5.4) of the paper
(the code omits it; identical at the default Ko = 5.4), and tau_f2 is the
code's 600 exp(-(V+25)^2/170) + 31/(1+exp((25-V)/10)) + 16/(1+exp((V+30)/10));
``tau_f2_cellml = 1`` selects the paper's/CellML's 562, 27, 240 and 80.

Implementation notes (speed: ~9-10 M cell-steps/s on one core of a small
AVX-512 x86 machine, against ~3.6 M for a straightforward scalar kernel):

* the many exponentials of the gate kinetics share a few base exponentials:
  exp(V/600) yields exp(V/k) for k = 5, 6, 7.5, 10, 15, 20, 24, 120, 200 by
  repeated multiplication, exp(V/14) yields exp(V/7), exp(0.05 V F/RT) the
  exp(c V F/RT) terms of I_CaL, I_NaCa and I_NaK, exp(0.02 (V - E_K)) three
  of the four exponentials of I_K1;
* each gate's x_inf and dt/tau are written as ratios sharing one division;
* exp and log are inlined table-driven versions (a few ulp accurate), so the
  cell loop contains no calls and LLVM vectorises it; cells are processed
  in blocks of fixed length (the remainder through a padded block), so each
  cell's result is bitwise independent of how many cells are stepped.

All of this is an exact rewrite of the published formulas up to rounding:
against a literal double-precision transcription of the authors' code, Vm
agrees to ~1e-8 mV over whole paced beats.

``kernel="tabulated"`` replaces the Vm-only quantities (gate steady states,
Rush–Larsen factors, the Vm factors of I_CaL, I_NaCa, I_NaK, I_pK) by linear
interpolation in a table (tt06_tables): no exponential of Vm is left in the
step.  Blocks with a Vm outside the table go through the exact code, which
stays the reference (docs/solver.md, "TT06 tables in Vm").
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, Mapping, Optional

import numba
import numpy as np

from . import tt06_tables
from .base import CELL_TYPE_NAMES, ENDO, EPI, MID, IonicModel

# --------------------------------------------------------------------------
# Parameters (order = column order of the parameter vector the kernel takes)
# --------------------------------------------------------------------------
_DEFAULT_PARAMETERS: dict[str, float] = {
    # conductance scale factors (dimensionless)
    "g_Na_scale": 1.0,
    "g_CaL_scale": 1.0,
    "g_Kr_scale": 1.0,
    "g_Ks_scale": 1.0,
    "g_K1_scale": 1.0,
    "g_to_scale": 1.0,
    "g_NaCa_scale": 1.0,
    "g_NaK_scale": 1.0,
    "g_pCa_scale": 1.0,
    "g_pK_scale": 1.0,
    "g_bNa_scale": 1.0,
    "g_bCa_scale": 1.0,
    "V_rel_scale": 1.0,  # RyR release flux
    "V_up_scale": 1.0,  # SERCA uptake
    # extracellular concentrations (mM) and temperature (K)
    "Ko": 5.4,
    "Cao": 2.0,
    "Nao": 140.0,
    "T": 310.0,
    # maximal conductances (nS/pF) as published
    "g_Na": 14.838,
    "g_CaL": 3.980e-5,  # cm ms^-1 uF^-1
    "g_Kr": 0.153,
    "g_K1": 5.405,
    "g_to_endo": 0.073,
    "g_to_mid": 0.294,
    "g_to_epi": 0.294,
    "g_Ks_endo": 0.392,
    "g_Ks_mid": 0.098,
    "g_Ks_epi": 0.392,
    "p_KNa": 0.03,
    # fraction of the applied stimulus current carried by K+ (published: 1)
    "stim_K_fraction": 1.0,
    # tau_f2 variant: 0 = the authors' published code (default; used by most
    # implementations), 1 = the formula printed in the paper / CellML model
    "tau_f2_cellml": 0.0,
}

_NS = 18  # number of states besides Vm (row length of the state array)

_STATE_NAMES = (
    "Ca_i", "Ca_SR", "Ca_ss", "R_prime", "Na_i", "K_i",
    "m", "h", "j", "xr1", "xr2", "xs", "r", "s", "d", "f", "f2", "fCass",
)

# Published steady-state initial conditions (1 Hz), per variant:
# Vm followed by the states in the order of _STATE_NAMES.
_INITIAL = {
    EPI: (-85.23, 0.000126, 3.64, 0.00036, 0.9073, 8.604, 136.89,
          0.00172, 0.7444, 0.7045, 0.00621, 0.4712, 0.0095,
          2.42e-8, 0.999998, 3.373e-5, 0.7888, 0.9755, 0.9953),
    ENDO: (-86.709, 0.00013, 3.715, 0.00036, 0.9068, 10.355, 138.4,
           0.00155, 0.7573, 0.7225, 0.00448, 0.476, 0.0087,
           2.235e-8, 0.3212, 3.164e-5, 0.8009, 0.9778, 0.9953),
    MID: (-85.423, 0.000153, 4.272, 0.00042, 0.8978, 10.132, 138.52,
          0.00165, 0.749, 0.6788, 0.0165, 0.473, 0.0174,
          2.347e-8, 0.999998, 3.288e-5, 0.7026, 0.9526, 0.9942),
}

# --------------------------------------------------------------------------
# Fixed constants of the model, as published
# --------------------------------------------------------------------------
_R = 8314.472  # mJ K^-1 mol^-1
_F = 96485.3415  # C mol^-1
_Cm = 0.185  # uF (cell capacitance)
_Vc = 0.016404  # nL cytoplasmic volume
_Vsr = 0.001094  # nL SR volume
_Vss = 0.00005468  # nL subspace volume
_Bufc = 0.2  # mM
_Kbufc = 0.001
_Bufsr = 10.0
_Kbufsr = 0.3
_Bufss = 0.4
_Kbufss = 0.00025
_Vmaxup = 0.006375  # mM/ms
_Kup = 0.00025  # mM
_Vrel = 0.102  # 1/ms
_k1p = 0.15  # mM^-2 ms^-1
_k2p = 0.045  # mM^-1 ms^-1
_k3 = 0.060  # 1/ms
_k4 = 0.005  # 1/ms
_EC = 1.5  # mM
_maxsr = 2.5
_minsr = 1.0
_Vleak = 0.00036  # 1/ms
_Vxfer = 0.0038  # 1/ms
_KmK = 1.0  # mM
_KmNa = 40.0
_knak = 2.724  # pA/pF
_knaca = 1000.0  # pA/pF
_KmNai = 87.5
_KmCa = 1.38
_ksat = 0.1
_n_naca = 0.35  # fixed: exp(n u) is built from powers of exp(0.05 u)
_alpha_naca = 2.5
_g_pCa = 0.1238  # pA/pF
_KpCa = 0.0005  # mM
_g_pK = 0.0146  # nS/pF
_g_bNa = 0.00029
_g_bCa = 0.000592

_inv_VcF = _Cm / (_Vc * _F)
_inv_VcF2 = _Cm / (2.0 * _Vc * _F)
_inv_VssF2 = _Cm / (2.0 * _Vss * _F)
_Vsr_Vc = _Vsr / _Vc
_Vsr_Vss = _Vsr / _Vss
_Vc_Vss = _Vc / _Vss
_Kup2 = _Kup * _Kup
_EC2 = _EC * _EC

# V-independent factors exp(c) of the gate exponentials exp((V + a)/k)
_c_m_a = math.exp(-60.0 / 5.0)
_c_m_b1 = math.exp(35.0 / 5.0)
_c_m_b2 = math.exp(-50.0 / 200.0)
_c_m_inf = math.exp(-56.86 / 9.03)
_c_h_inf = math.exp(71.55 / 7.43)
_c_h_b = math.exp(-10.66 / 11.1)
_c_h_a = 0.057 * math.exp(-80.0 / 6.8)
_c_j_b = math.exp(-3.2)
_c_j_a2 = math.exp(0.311 * 79.23)
_c_j_b2 = math.exp(-0.1378 * 40.14)
_c_xr1_inf = math.exp(-26.0 / 7.0)
_c_xr1_a = math.exp(-45.0 / 10.0)
_c_xr1_b = math.exp(30.0 / 11.5)
_c_xr2_inf = math.exp(88.0 / 24.0)
_c_xr2_ab = math.exp(-60.0 / 20.0)
_c_xs_inf = math.exp(-5.0 / 14.0)
_c_xs_a = math.exp(5.0 / 6.0)
_c_xs_b = math.exp(-35.0 / 15.0)
_c_r_inf = math.exp(20.0 / 6.0)
_c_s_inf_epi = math.exp(20.0 / 5.0)
_c_s_tau_epi = math.exp(-20.0 / 5.0)
_c_s_inf_endo = math.exp(28.0 / 5.0)
_c_d_inf = math.exp(-8.0 / 7.5)
_c_d_a = math.exp(-35.0 / 13.0)
_c_d_b = math.exp(5.0 / 5.0)
_c_d_c = math.exp(50.0 / 20.0)
_c_f_inf = math.exp(20.0 / 7.0)
_c_f_b = math.exp(13.0 / 10.0)
_c_f_c = math.exp(30.0 / 10.0)
_c_f2_inf = math.exp(35.0 / 7.0)
_c_f2_b = math.exp(25.0 / 10.0)
_c_pk = math.exp(25.0 / 5.98)
_c_k1_a = math.exp(0.06 * -200.0)
_c_k1_b = 3.0 * math.exp(0.0002 * 100.0)
_c_k1_c = math.exp(0.1 * -10.0)

# Cells per call of the block kernel.  A compile-time trip count lets LLVM
# prove that no index arithmetic overflows, which is what it needs to
# vectorise the (n, 18) row-major state array (strided loads/stores).
_BLOCK = 32

# Layout of the derived-constant vector handed to the block kernel.
_N_DERIVED = 37

# --------------------------------------------------------------------------
# Inline exp / log.  The kernel spends most of its time in some 35
# exponentials and 4 logarithms per cell and step; calls into libm cost
# ~4-6 ns each (and force the live floating-point registers to be spilled),
# while these inlined table-driven versions cost well under 1 ns and keep
# the loop free of calls so that LLVM can vectorise it.  Accuracy: relative
# error of a few ulp over the whole double range (|x| < 708 for exp; normal
# positive x for log), far below anything that matters for the model.
# --------------------------------------------------------------------------
# fastmath without 'reassoc': the compiler may not reorder sums, so the
# Cody–Waite reduction keeps its precision and results do not depend on
# whether a cell was processed in a vector lane or in the scalar remainder.
_FASTMATH = {"nnan", "ninf", "nsz", "arcp", "contract", "afn"}

_EXP_N = 64
_EXP_TABLE = np.array([2.0 ** (k / _EXP_N) for k in range(_EXP_N)])
_EXP_INV_LN2N = _EXP_N / math.log(2.0)
_EXP_LN2N_HI = float(np.float32(math.log(2.0) / _EXP_N))  # few significant bits: k*HI exact
_EXP_LN2N_LO = math.log(2.0) / _EXP_N - _EXP_LN2N_HI

_LOG_N = 128
_LOG_INVC = 1.0 / (1.0 + (np.arange(_LOG_N) + 0.5) / _LOG_N)
_LOG_LOGC = -np.log(_LOG_INVC)
_LN2 = math.log(2.0)


@numba.njit(fastmath=_FASTMATH, error_model="numpy", nogil=True, cache=True)
def _exp(x):
    """exp(x): x = (k/64) ln 2 + r, |r| <= ln2/128, exp(r) by degree-5 Taylor."""
    x = min(max(x, -708.0), 708.0)
    kf = math.floor(x * _EXP_INV_LN2N + 0.5)
    k = np.int64(kf)
    r = (x - kf * _EXP_LN2N_HI) - kf * _EXP_LN2N_LO
    scale = _EXP_TABLE[k & (_EXP_N - 1)] * np.int64(((k >> 6) + 1023) << 52).view(np.float64)
    p = r * (1.0 + r * (0.5 + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0)))))
    return scale + scale * p


@numba.njit(fastmath=_FASTMATH, error_model="numpy", nogil=True, cache=True)
def _log(x):
    """log(x) for positive normal x: x = 2^e m, m = c_j (1 + r), |r| < 2^-8."""
    ix = np.float64(x).view(np.int64)
    e = (ix >> 52) - 1023
    j = (ix >> 45) & (_LOG_N - 1)
    m = np.int64((ix & 0xFFFFFFFFFFFFF) | 0x3FF0000000000000).view(np.float64)
    r = m * _LOG_INVC[j] - 1.0
    p = r * (1.0 + r * (-0.5 + r * (1.0 / 3.0 + r * (-0.25 + r * (0.2 + r * (-1.0 / 6.0))))))
    return e * _LN2 + _LOG_LOGC[j] + p


# Columns of the Vm table (tt06_tables.COLUMNS), as compile-time constants.
_T_M_INF = 0
_T_M_E = 1
_T_H_INF = 2
_T_H_E = 3
_T_J_E = 4
_T_XR1_INF = 5
_T_XR1_E = 6
_T_XR2_INF = 7
_T_XR2_E = 8
_T_XS_INF = 9
_T_XS_E = 10
_T_R_INF = 11
_T_R_E = 12
_T_S_ENDO_INF = 13
_T_S_ENDO_E = 14
_T_S_EPI_INF = 15
_T_S_EPI_E = 16
_T_D_INF = 17
_T_D_E = 18
_T_F_INF = 19
_T_F_E = 20
_T_F2_INF = 21
_T_F2_E = 22
_T_CAL_A = 23
_T_CAL_B = 24
_T_NACA_A = 25
_T_NACA_B = 26
_T_NAK = 27
_T_PK = 28
assert _T_S_EPI_INF == _T_S_ENDO_INF + 2 and tt06_tables.COLUMNS[_T_PK] == "pk"


@numba.njit(fastmath=_FASTMATH, error_model="numpy", nogil=True, cache=True)
def _lerp(tab, k, w, col):
    """Column ``col`` of the table at node k + w (0 <= w < 1)."""
    lo = tab[k, col]
    return lo + w * (tab[k + 1, col] - lo)


# _derived indexes the parameter vector by position, in this order.
assert tuple(_DEFAULT_PARAMETERS) == (
    "g_Na_scale", "g_CaL_scale", "g_Kr_scale", "g_Ks_scale", "g_K1_scale",  # 0-4
    "g_to_scale", "g_NaCa_scale", "g_NaK_scale", "g_pCa_scale", "g_pK_scale",  # 5-9
    "g_bNa_scale", "g_bCa_scale", "V_rel_scale", "V_up_scale",  # 10-13
    "Ko", "Cao", "Nao", "T",  # 14-17
    "g_Na", "g_CaL", "g_Kr", "g_K1",  # 18-21
    "g_to_endo", "g_to_mid", "g_to_epi", "g_Ks_endo", "g_Ks_mid", "g_Ks_epi",  # 22-27
    "p_KNa", "stim_K_fraction", "tau_f2_cellml",  # 28-30
)


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _derived(p, dt, tab_v0, tab_dv):
    """Parameter-dependent constants of the kernel, computed once per step."""
    c = np.empty(_N_DERIVED)
    s_to = p[5]
    s_Ks = p[3]
    Ko = p[14]
    Cao = p[15]
    Nao = p[16]
    T = p[17]
    p_KNa = p[28]
    FRT = _F / (_R * T)
    c[0] = dt
    c[1] = Cao
    c[2] = p[18] * p[0]  # g_Na
    c[3] = p[20] * p[2] * math.sqrt(Ko / 5.4)  # g_Kr
    c[4] = p[21] * p[4] * math.sqrt(Ko / 5.4)  # g_K1
    c[5] = p[22] * s_to  # g_to endo
    c[6] = p[23] * s_to  # g_to M
    c[7] = p[24] * s_to  # g_to epi
    c[8] = p[25] * s_Ks  # g_Ks endo
    c[9] = p[26] * s_Ks  # g_Ks M
    c[10] = p[27] * s_Ks  # g_Ks epi
    c[11] = p_KNa
    c[12] = p[29]  # fraction of the stimulus carried by K+
    c[13] = _Vmaxup * p[13]
    c[14] = _Vrel * p[12]
    c[15] = _g_pCa * p[8]
    c[16] = _g_pK * p[9]
    c[17] = _g_bNa * p[10]
    c[18] = _g_bCa * p[11]
    c[19] = 1.0 / FRT  # RT/F
    c[20] = FRT
    c[21] = math.log(Ko)
    c[22] = math.log(Nao)
    c[23] = math.log(Cao)
    c[24] = math.log(Ko + p_KNa * Nao)
    c[25] = 30.0 * FRT  # 2 * 15 mV * F/RT
    c[26] = math.exp(-30.0 * FRT)
    c[27] = 2.0 * _F * p[19] * p[1]  # 2 F g_CaL
    c[28] = (_knaca * p[6]) / ((_KmNai ** 3 + Nao ** 3) * (_KmCa + Cao))
    c[29] = Nao ** 3 * _alpha_naca
    c[30] = _knak * p[7] * Ko / (Ko + _KmK)
    if p[30] != 0.0:  # tau_f2 as printed in the paper / CellML
        c[31] = 562.0
        c[32] = 27.0
        c[33] = -1.0 / 240.0
        c[34] = 80.0
    else:  # tau_f2 of the authors' published code
        c[31] = 600.0
        c[32] = 25.0
        c[33] = -1.0 / 170.0
        c[34] = 16.0
    c[35] = tab_v0  # first node of the Vm table (tabulated kernel)
    c[36] = 1.0 / tab_dv
    return c


@numba.njit(cache=True, fastmath=_FASTMATH, nogil=True, error_model="numpy")
def _tt06_block(vm_blk, st_blk, stim_blk, ct_blk, gks_blk, c, tab, tabulated):
    """Advance _BLOCK consecutive cells (st_blk: their rows, flattened;
    gks_blk: their I_Ks conductance multipliers).  With ``tabulated`` the
    Vm-only quantities are read from ``tab`` (tt06_tables), whose range the
    caller has checked holds every Vm of the block."""
    dt = c[0]
    Cao = c[1]
    g_Na = c[2]
    g_Kr = c[3]
    g_K1 = c[4]
    g_to_endo = c[5]
    g_to_mid = c[6]
    g_to_epi = c[7]
    g_Ks_endo = c[8]
    g_Ks_mid = c[9]
    g_Ks_epi = c[10]
    p_KNa = c[11]
    stim_K = c[12]
    Vmaxup = c[13]
    Vrel = c[14]
    g_pCa = c[15]
    g_pK = c[16]
    g_bNa = c[17]
    g_bCa = c[18]
    RTF = c[19]
    FRT = c[20]
    log_Ko = c[21]
    log_Nao = c[22]
    log_Cao = c[23]
    log_K_ks = c[24]
    z_cal = c[25]
    c_cal = c[26]
    two_F_gcal = c[27]
    naca_pre = c[28]
    nao3_a = c[29]
    nak_pre = c[30]
    f2_amp = c[31]
    f2_shift = c[32]
    f2_mwidth = c[33]
    f2_c = c[34]
    mdt = -dt
    tab_v0 = c[35]
    tab_inv_dv = c[36]
    tab_last = tab.shape[0] - 2

    for i in range(_BLOCK):
        V = vm_blk[i]
        ct = ct_blk[i]
        b = i * _NS
        Cai = st_blk[b + 0]
        CaSR = st_blk[b + 1]
        CaSS = st_blk[b + 2]
        RR = st_blk[b + 3]
        Nai = st_blk[b + 4]
        Ki = st_blk[b + 5]
        m = st_blk[b + 6]
        h = st_blk[b + 7]
        j = st_blk[b + 8]
        xr1 = st_blk[b + 9]
        xr2 = st_blk[b + 10]
        xs = st_blk[b + 11]
        r = st_blk[b + 12]
        s = st_blk[b + 13]
        d = st_blk[b + 14]
        f = st_blk[b + 15]
        f2 = st_blk[b + 16]
        fcass = st_blk[b + 17]

        if ct == ENDO:
            g_to = g_to_endo
            g_Ks = g_Ks_endo * gks_blk[i]
        elif ct == MID:
            g_to = g_to_mid
            g_Ks = g_Ks_mid * gks_blk[i]
        else:
            g_to = g_to_epi
            g_Ks = g_Ks_epi * gks_blk[i]

        # ---- reversal potentials ----------------------------------------
        Ek = RTF * (log_Ko - _log(Ki))
        Ena = RTF * (log_Nao - _log(Nai))
        Eks = RTF * (log_K_ks - _log(Ki + p_KNa * Nai))
        Eca = 0.5 * RTF * (log_Cao - _log(Cai))

        if tabulated:
            # Vm-only factors of I_CaL, I_NaCa, I_NaK, I_pK from the table
            x = (V - tab_v0) * tab_inv_dv
            k = min(np.int64(x), tab_last)
            w = x - k
            cal_a = _lerp(tab, k, w, _T_CAL_A)
            cal_b = _lerp(tab, k, w, _T_CAL_B)
            naca_a = _lerp(tab, k, w, _T_NACA_A)
            naca_b = _lerp(tab, k, w, _T_NACA_B)
            nak = _lerp(tab, k, w, _T_NAK)
            pk = _lerp(tab, k, w, _T_PK)
        else:
            k = 0
            w = 0.0
            # exp(c V F/RT), c = 0.35, 1, 2, from exp(0.05 V F/RT)
            u = V * FRT
            q1 = _exp(0.05 * u)
            q2 = q1 * q1
            q4 = q2 * q2
            q16 = q4 * q4
            q16 = q16 * q16
            q18 = q16 * q2  # exp(0.9 u)
            eu = q16 * q4  # exp(u)
            e035 = q4 * q2 * q1  # exp(0.35 u)
            z = 2.0 * u - z_cal  # 2 (V - 15) F / RT
            ez = eu * eu * c_cal  # exp(z)
            if abs(z) < 1e-9:
                cal_b = 1.0 - 0.5 * z
            else:
                cal_b = z / (ez - 1.0)
            cal_a = 0.25 * ez * cal_b
            inv = 1.0 / (eu + _ksat * e035)
            naca_b = e035 * inv
            naca_a = eu * naca_b
            nak = eu / (eu + 0.1245 * q18 + 0.0353)
            pk = 1.0 / (1.0 + _c_pk * _exp(V * (-1.0 / 5.98)))

        # ---- membrane currents ------------------------------------------
        I_Na = g_Na * m * m * m * h * j * (V - Ena)
        I_CaL = two_F_gcal * d * f * f2 * fcass * (cal_a * CaSS - Cao * cal_b)

        wk = V - Ek
        I_to = g_to * r * s * wk
        I_Kr = g_Kr * xr1 * xr2 * wk
        I_Ks = g_Ks * xs * xs * (V - Eks)

        # I_K1: alpha/(alpha + beta) with exp(0.06 w), exp(0.1 w), exp(0.5 w)
        # from p = exp(0.02 w); a function of V - E_K, so never tabulated in V
        pw = _exp(0.02 * wk)
        pw2 = pw * pw
        pw3 = pw2 * pw
        pw5 = pw3 * pw2
        pw25 = pw5 * pw5
        pw25 = pw25 * pw25 * pw5
        ak1 = 0.1 * (pw25 + 1.0)
        bk1 = (_c_k1_b * _exp(0.0002 * wk) + _c_k1_c * pw5) * (1.0 + _c_k1_a * pw3) * pw25
        I_K1 = g_K1 * ak1 / (ak1 + bk1) * wk

        Nai3 = Nai * Nai * Nai
        I_NaCa = naca_pre * (Nai3 * Cao * naca_a - nao3_a * Cai * naca_b)
        I_NaK = nak_pre * Nai * nak / (Nai + _KmNa)
        I_pCa = g_pCa * Cai / (_KpCa + Cai)
        I_pK = g_pK * wk * pk
        I_bNa = g_bNa * (V - Ena)
        I_bCa = g_bCa * (V - Eca)

        I_ion = (I_Na + I_CaL + I_to + I_Kr + I_Ks + I_K1 + I_NaCa + I_NaK
                 + I_pCa + I_pK + I_bNa + I_bCa)
        stim = stim_blk[i]

        # ---- calcium dynamics (authors' scheme) -------------------------
        CaSR2 = CaSR * CaSR
        kCaSR = _maxsr - (_maxsr - _minsr) * CaSR2 / (CaSR2 + _EC2)
        RR = RR + dt * (_k4 * (1.0 - RR) - _k2p * kCaSR * CaSS * RR)
        k1ss2 = _k1p * CaSS * CaSS  # k1 = _k1p / kCaSR
        OO = k1ss2 * RR / (_k3 * kCaSR + k1ss2)

        I_rel = Vrel * OO * (CaSR - CaSS)
        I_leak = _Vleak * (CaSR - Cai)
        Cai2 = Cai * Cai
        I_up = Vmaxup * Cai2 / (Cai2 + _Kup2)
        I_xfer = _Vxfer * (CaSS - Cai)

        CaCSQN = _Bufsr * CaSR / (CaSR + _Kbufsr)
        dCaSR = dt * (I_up - I_rel - I_leak)
        bjsr = _Bufsr - CaCSQN - dCaSR - CaSR + _Kbufsr
        cjsr = _Kbufsr * (CaCSQN + dCaSR + CaSR)
        CaSR_new = 0.5 * (math.sqrt(bjsr * bjsr + 4.0 * cjsr) - bjsr)

        CaSSBuf = _Bufss * CaSS / (CaSS + _Kbufss)
        dCaSS = dt * (-I_xfer * _Vc_Vss + I_rel * _Vsr_Vss - I_CaL * _inv_VssF2)
        bcss = _Bufss - CaSSBuf - dCaSS - CaSS + _Kbufss
        ccss = _Kbufss * (CaSSBuf + dCaSS + CaSS)
        CaSS_new = 0.5 * (math.sqrt(bcss * bcss + 4.0 * ccss) - bcss)

        CaBuf = _Bufc * Cai / (Cai + _Kbufc)
        dCai = dt * (-(I_bCa + I_pCa - 2.0 * I_NaCa) * _inv_VcF2
                     - (I_up - I_leak) * _Vsr_Vc + I_xfer)
        bc = _Bufc - CaBuf - dCai - Cai + _Kbufc
        cc = _Kbufc * (CaBuf + dCai + Cai)
        Cai_new = 0.5 * (math.sqrt(bc * bc + 4.0 * cc) - bc)

        Nai_new = Nai - dt * (I_Na + I_bNa + 3.0 * I_NaK + 3.0 * I_NaCa) * _inv_VcF
        Ki_new = Ki - dt * (I_K1 + I_to + I_Kr + I_Ks - 2.0 * I_NaK + I_pK
                            - stim_K * stim) * _inv_VcF

        # ---- gates: Rush–Larsen at the start-of-step Vm -----------------
        if tabulated:
            m_inf = _lerp(tab, k, w, _T_M_INF)
            m_e = _lerp(tab, k, w, _T_M_E)
            h_inf = _lerp(tab, k, w, _T_H_INF)
            h_e = _lerp(tab, k, w, _T_H_E)
            j_e = _lerp(tab, k, w, _T_J_E)
            xr1_inf = _lerp(tab, k, w, _T_XR1_INF)
            xr1_e = _lerp(tab, k, w, _T_XR1_E)
            xr2_inf = _lerp(tab, k, w, _T_XR2_INF)
            xr2_e = _lerp(tab, k, w, _T_XR2_E)
            xs_inf = _lerp(tab, k, w, _T_XS_INF)
            xs_e = _lerp(tab, k, w, _T_XS_E)
            r_inf = _lerp(tab, k, w, _T_R_INF)
            r_e = _lerp(tab, k, w, _T_R_E)
            s_col = _T_S_ENDO_INF if ct == ENDO else _T_S_EPI_INF
            s_inf = _lerp(tab, k, w, s_col)
            s_e = _lerp(tab, k, w, s_col + 1)
            d_inf = _lerp(tab, k, w, _T_D_INF)
            d_e = _lerp(tab, k, w, _T_D_E)
            f_inf = _lerp(tab, k, w, _T_F_INF)
            f_e = _lerp(tab, k, w, _T_F_E)
            f2_inf = _lerp(tab, k, w, _T_F2_INF)
            f2_e = _lerp(tab, k, w, _T_F2_E)
        else:
            # Each gate x_inf and rate dt/tau is written as a ratio with one
            # shared reciprocal; exp(V/k) for k = 5, 6, 7.5, 10, 15, 20, 24, 200
            # are integer powers of exp(V/600), exp(V/7) the square of exp(V/14).
            B1 = _exp(V * (1.0 / 600.0))
            B2 = B1 * B1
            E200 = B2 * B1
            E120 = E200 * B2
            b2 = E120 * E120
            b4 = b2 * b2
            E24 = b4 * E120
            E20 = E24 * E120
            E15 = b4 * b4
            E10 = E20 * E20
            E75 = E15 * E15
            E6 = E10 * E15
            E5 = E10 * E10
            C14 = _exp(V * (1.0 / 14.0))
            E7 = C14 * C14

            # m
            am_d = E5 + _c_m_a  # alpha_m = E5 / am_d
            bm1 = 1.0 + _c_m_b1 * E5
            bm2 = 1.0 + _c_m_b2 * E200  # beta_m = 0.1 (bm1 + bm2) / (bm1 bm2)
            t = 1.0 + _c_m_inf * _exp(V * (-1.0 / 9.03))
            t = t * t  # m_inf = 1 / t
            num = 0.1 * E5 * (bm1 + bm2)  # tau_m = num / (am_d bm1 bm2)
            inv = 1.0 / (t * num)
            m_inf = num * inv
            m_e = _exp(mdt * am_d * bm1 * bm2 * t * inv)

            # h, j (j_inf = h_inf)
            th = 1.0 + _c_h_inf * _exp(V * (1.0 / 7.43))
            th = th * th  # h_inf = 1 / th
            if V >= -40.0:
                d1 = 0.13 * (1.0 + _c_h_b * _exp(V * (-1.0 / 11.1)))
                d2 = E10 + _c_j_b
                inv = 1.0 / (d1 * d2 * th)
                h_inf = d1 * d2 * inv
                rate_h = 0.77 * d2 * th * inv
                rate_j = 0.6 * _exp(0.057 * V) * E10 * d1 * th * inv
            else:
                rate_h = (_c_h_a * _exp(V * (-1.0 / 6.8)) + 2.7 * _exp(0.079 * V)
                          + 3.1e5 * _exp(0.3485 * V))
                na = ((-2.5428e4 * _exp(0.2444 * V) - 6.948e-6 * _exp(-0.04391 * V))
                      * (V + 37.78))
                da = 1.0 + _c_j_a2 * _exp(0.311 * V)
                nb = 0.02424 * _exp(-0.01052 * V)
                db = 1.0 + _c_j_b2 * _exp(-0.1378 * V)
                inv = 1.0 / (da * db * th)
                h_inf = da * db * inv
                rate_j = (na * db + nb * da) * th * inv
            h_e = _exp(mdt * rate_h)
            j_e = _exp(mdt * rate_j)

            # xr1: inf = E7/(E7 + c); tau = 2700 E10 / ((E10 + c_a)(1 + c_b exp(V/11.5)))
            di = E7 + _c_xr1_inf
            dt_ = (E10 + _c_xr1_a) * (1.0 + _c_xr1_b * _exp(V * (1.0 / 11.5)))
            inv = 1.0 / (di * E10)
            xr1_inf = E7 * E10 * inv
            xr1_e = _exp(mdt * (1.0 / 2700.0) * dt_ * di * inv)

            # xr2: inf = 1/(1 + c E24); tau = 3.36 E20 / ((E20 + c)(1 + c E20))
            di = 1.0 + _c_xr2_inf * E24
            inv = 1.0 / (di * E20)
            xr2_inf = E20 * inv
            dt_ = (E20 + _c_xr2_ab) * (1.0 + _c_xr2_ab * E20)
            xr2_e = _exp(mdt * (1.0 / 3.36) * dt_ * di * inv)

            # xs: inf = C14/(C14 + c); tau = 1400 / (S (1 + c E15)) + 80
            sq = math.sqrt(1.0 + _c_xs_a / E6)
            dt_ = sq * (1.0 + _c_xs_b * E15)
            nt = 1400.0 + 80.0 * dt_  # tau = nt / dt_
            di = C14 + _c_xs_inf
            inv = 1.0 / (di * nt)
            xs_inf = C14 * nt * inv
            xs_e = _exp(mdt * dt_ * di * inv)

            # r: inf = E6/(E6 + c); tau = 9.5 exp(-(V+40)^2/1800) + 0.8
            vr = V + 40.0
            nt = 9.5 * _exp(vr * vr * (-1.0 / 1800.0)) + 0.8
            di = E6 + _c_r_inf
            inv = 1.0 / (di * nt)
            r_inf = E6 * nt * inv
            r_e = _exp(mdt * di * inv)

            # s (endocardial kinetics in endo cells, epicardial otherwise)
            if ct == ENDO:
                vs = V + 67.0
                nt = 1000.0 * _exp(vs * vs * (-1.0 / 1000.0)) + 8.0
                di = 1.0 + _c_s_inf_endo * E5
                inv = 1.0 / (di * nt)
                s_inf = nt * inv
                rate = di * inv
            else:
                vs = V + 45.0
                dt_ = 1.0 + _c_s_tau_epi * E5
                nt = (85.0 * _exp(vs * vs * (-1.0 / 320.0)) + 3.0) * dt_ + 5.0
                di = 1.0 + _c_s_inf_epi * E5
                inv = 1.0 / (di * nt)
                s_inf = nt * inv
                rate = dt_ * di * inv
            s_e = _exp(mdt * rate)

            # d: inf = E75/(E75 + c); tau = (1.4/(1+a) + 0.25) 1.4/(1+b) + 1/(1+c)
            da = 1.0 + _c_d_a * _exp(V * (-1.0 / 13.0))
            db = 1.0 + _c_d_b * E5
            dc = E20 + _c_d_c  # 1/(1+c) = E20/dc
            nt = 1.4 * (1.4 + 0.25 * da) * dc + E20 * da * db
            dt_ = da * db * dc
            di = E75 + _c_d_inf
            inv = 1.0 / (di * nt)
            d_inf = E75 * nt * inv
            d_e = _exp(mdt * dt_ * di * inv)

            # f: inf = 1/(1 + c E7);
            # tau = 1102.5 exp(-(V+27)^2/225) + 200 E10/(E10 + c_b) + 180/(1 + c_c E10) + 20
            vf = V + 27.0
            dfb = E10 + _c_f_b
            dfc = 1.0 + _c_f_c * E10
            dt_ = dfb * dfc
            nt = ((1102.5 * _exp(vf * vf * (-1.0 / 225.0)) + 20.0) * dt_
                  + 200.0 * E10 * dfc + 180.0 * dfb)
            di = 1.0 + _c_f_inf * E7
            inv = 1.0 / (di * nt)
            f_inf = nt * inv
            f_e = _exp(mdt * dt_ * di * inv)

            # f2: inf = 0.67/(1 + c E7) + 0.33;
            # tau = A exp(-(V+a)^2/w) + 31 E10/(E10 + c_b) + C/(1 + c_c E10), with
            # (A, a, w, C) = (600, 25, 170, 16) (authors' code) or (562, 27, 240, 80)
            vf2 = V + f2_shift
            dfb = E10 + _c_f2_b
            dt_ = dfb * dfc
            nt = f2_amp * _exp(vf2 * vf2 * f2_mwidth) * dt_ + 31.0 * E10 * dfc + f2_c * dfb
            di = 1.0 + _c_f2_inf * E7
            inv = 1.0 / (di * nt)
            f2_inf = 0.67 * nt * inv + 0.33
            f2_e = _exp(mdt * dt_ * di * inv)

        m = m_inf - (m_inf - m) * m_e
        h = h_inf - (h_inf - h) * h_e
        j = h_inf - (h_inf - j) * j_e
        xr1 = xr1_inf - (xr1_inf - xr1) * xr1_e
        xr2 = xr2_inf - (xr2_inf - xr2) * xr2_e
        xs = xs_inf - (xs_inf - xs) * xs_e
        r = r_inf - (r_inf - r) * r_e
        s = s_inf - (s_inf - s) * s_e
        d = d_inf - (d_inf - d) * d_e
        f = f_inf - (f_inf - f) * f_e
        f2 = f2_inf - (f2_inf - f2) * f2_e

        # fCass (from the updated Ca_ss, as in the authors' code):
        # inf = 0.6/(1+y) + 0.4 = (1 + 0.4 y)/(1+y); tau = 80/(1+y) + 2 = (82 + 2y)/(1+y)
        y = CaSS_new * (1.0 / 0.05)
        y = y * y
        nt = 82.0 + 2.0 * y
        di = 1.0 + y
        inv = 1.0 / (di * nt)
        fcass_inf = (1.0 + 0.4 * y) * nt * inv
        fcass = fcass_inf - (fcass_inf - fcass) * _exp(mdt * di * di * inv)

        # ---- write back ------------------------------------------------
        st_blk[b + 0] = Cai_new
        st_blk[b + 1] = CaSR_new
        st_blk[b + 2] = CaSS_new
        st_blk[b + 3] = RR
        st_blk[b + 4] = Nai_new
        st_blk[b + 5] = Ki_new
        st_blk[b + 6] = m
        st_blk[b + 7] = h
        st_blk[b + 8] = j
        st_blk[b + 9] = xr1
        st_blk[b + 10] = xr2
        st_blk[b + 11] = xs
        st_blk[b + 12] = r
        st_blk[b + 13] = s
        st_blk[b + 14] = d
        st_blk[b + 15] = f
        st_blk[b + 16] = f2
        st_blk[b + 17] = fcass
        vm_blk[i] = V + dt * (stim - I_ion)




@numba.njit(cache=True, nogil=True, error_model="numpy")
def _in_table(vm_blk, v_lo, v_hi):
    """Whether every Vm of a block lies in [v_lo, v_hi) (NaN does not)."""
    for i in range(vm_blk.shape[0]):
        if not (v_lo <= vm_blk[i] < v_hi):
            return False
    return True


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _tt06_step(vm, states, i_stim, dt, cell_type, g_ks_scale, p, tab, tab_v0, tab_dv, tabulated):
    """Advance all cells: full blocks in place, the remainder through a
    padded scratch block, so every cell goes through the same code.  With
    ``tabulated``, a block whose Vm all lie inside the table is stepped with
    it, any other block exactly."""
    c = _derived(p, dt, tab_v0, tab_dv)
    v_hi = tab_v0 + (tab.shape[0] - 1) * tab_dv
    n = vm.shape[0]
    n_full = n // _BLOCK
    for k in range(n_full):
        a = k * _BLOCK
        e = a + _BLOCK
        use = tabulated and _in_table(vm[a:e], tab_v0, v_hi)
        _tt06_block(vm[a:e], states[a * _NS:e * _NS], i_stim[a:e], cell_type[a:e], g_ks_scale[a:e], c, tab, use)
    rem = n - n_full * _BLOCK
    if rem > 0:
        a = n_full * _BLOCK
        vb = np.empty(_BLOCK)
        sb = np.empty(_BLOCK * _NS)
        ib = np.empty(_BLOCK)
        cb = np.empty(_BLOCK, dtype=cell_type.dtype)
        gb = np.empty(_BLOCK)
        for i in range(_BLOCK):
            src = a + i if i < rem else a  # pad with copies of the first cell
            vb[i] = vm[src]
            ib[i] = i_stim[src]
            cb[i] = cell_type[src]
            gb[i] = g_ks_scale[src]
            for q in range(_NS):
                sb[i * _NS + q] = states[src * _NS + q]
        use = tabulated and _in_table(vb, tab_v0, v_hi)
        _tt06_block(vb, sb, ib, cb, gb, c, tab, use)
        for i in range(rem):
            vm[a + i] = vb[i]
            for q in range(_NS):
                states[(a + i) * _NS + q] = sb[i * _NS + q]


#: The kernels TenTusscherPanfilov2006.kernel may name.
KERNELS = ("exact", "tabulated")
#: What the exact kernel is handed in place of a table (never read).
_NO_TABLE = np.zeros((2, tt06_tables.WIDTH))
_NO_TABLE.flags.writeable = False  # as the tables are: one compiled step serves both kernels

#: g_Ks multiplier = APD multiplier ** this (see set_apd_scale).
_G_KS_PER_APD_EXPONENT = -1.0 / 0.23


@dataclass
class TenTusscherPanfilov2006(IonicModel):
    """ten Tusscher–Panfilov 2006 (endo / M / epi by per-cell type code)."""

    name: ClassVar[str] = "tt06"
    state_names: ClassVar[tuple[str, ...]] = _STATE_NAMES
    default_parameters: ClassVar[Mapping[str, float]] = _DEFAULT_PARAMETERS

    #: "exact": every quantity evaluated at each step (the reference);
    #: "tabulated": the Vm-only quantities read from a table in Vm
    #: (tt06_tables; built per dt, blocks of cells outside its range exact).
    kernel: str = "exact"

    #: I_Ks conductance multiplier per cell (None: 1), from an APD scale.
    _g_ks_scale: Optional[np.ndarray] = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.kernel not in KERNELS:
            raise ValueError(f"tt06: kernel {self.kernel!r} is not one of {', '.join(KERNELS)}")

    def table(self, dt: float) -> np.ndarray:
        """The Vm table for this dt and the model's temperature and tau_f2 variant."""
        p = self.parameter_vector()
        return tt06_tables.table_for(float(dt), float(p[17]), bool(p[30] != 0.0))

    def set_apd_scale(self, scale: np.ndarray) -> None:
        """APD multipliers realised through I_Ks, the current that sets the
        apico-basal APD difference (Szentadrassy et al. 2005).  In single
        TT06 cells at 1 Hz APD90 ~ g_Ks^-0.23 (epi 336 -> 244 ms, endo 324 ->
        237 ms for g_Ks x0.5 -> x2), so g_Ks scales as APD scale^(-1/0.23)."""
        self._g_ks_scale = np.ascontiguousarray(np.asarray(scale, float) ** _G_KS_PER_APD_EXPONENT)

    def initial_state(self, cell_type: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        cell_type = np.asarray(cell_type)
        n = len(cell_type)
        vm = np.empty(n)
        states = np.empty((n, len(_STATE_NAMES)))
        seen = np.zeros(n, dtype=bool)
        for code, values in _INITIAL.items():
            sel = cell_type == code
            seen |= sel
            vm[sel] = values[0]
            states[sel] = values[1:]
        if not seen.all():
            bad = sorted(set(np.unique(cell_type[~seen]).tolist()))
            known = ", ".join(f"{c} ({nm})" for c, nm in CELL_TYPE_NAMES.items())
            raise ValueError(f"tt06: unknown cell type code(s) {bad}; known: {known}")
        return vm, states

    def step(self, vm, states, i_stim, dt, cell_type) -> None:
        n = vm.shape[0]
        if states.shape != (n, _NS) or i_stim.shape[0] != n or cell_type.shape[0] != n:
            raise ValueError(
                f"tt06: inconsistent shapes vm {vm.shape}, states {states.shape} "
                f"(expected ({n}, {_NS})), i_stim {i_stim.shape}, cell_type {cell_type.shape}"
            )
        if not states.flags.c_contiguous:
            raise ValueError("tt06: the state array must be C-contiguous (updated in place)")
        if self._g_ks_scale is None or len(self._g_ks_scale) != n:
            self._g_ks_scale = np.ones(n)
        tabulated = self.kernel == "tabulated"
        table = self.table(dt) if tabulated else _NO_TABLE
        _tt06_step(vm, states.reshape(-1), i_stim, float(dt), cell_type, self._g_ks_scale,
                   self.parameter_vector(), table, tt06_tables.V_MIN, tt06_tables.DV, tabulated)
