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

For speed the many exponentials of the gate kinetics share a few base
exponentials: exp(V/120) yields exp(V/k) for k = 5, 6, 7.5, 10, 12, 15, 20,
24 by repeated multiplication, exp(V/14) yields exp(V/7), exp(0.05 V F/RT)
yields the four exp(c V F/RT) terms of I_CaL, I_NaCa and I_NaK, and
exp(0.02 (V - E_K)) three of the four of I_K1.  This is an exact rewrite of
the published formulas up to rounding (relative differences ~1e-14).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, Mapping

import numba
import numpy as np

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
}

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


@numba.njit(cache=True, fastmath=True, nogil=True, error_model="numpy")
def _tt06_step(vm, states, i_stim, dt, cell_type, p):
    # ---- parameters ------------------------------------------------------
    s_Na = p[0]
    s_CaL = p[1]
    s_Kr = p[2]
    s_Ks = p[3]
    s_K1 = p[4]
    s_to = p[5]
    s_NaCa = p[6]
    s_NaK = p[7]
    s_pCa = p[8]
    s_pK = p[9]
    s_bNa = p[10]
    s_bCa = p[11]
    s_rel = p[12]
    s_up = p[13]
    Ko = p[14]
    Cao = p[15]
    Nao = p[16]
    T = p[17]
    g_Na = p[18] * s_Na
    g_CaL = p[19] * s_CaL
    g_Kr = p[20] * s_Kr * math.sqrt(Ko / 5.4)
    g_K1 = p[21] * s_K1 * math.sqrt(Ko / 5.4)
    g_to_endo = p[22] * s_to
    g_to_mid = p[23] * s_to
    g_to_epi = p[24] * s_to
    g_Ks_endo = p[25] * s_Ks
    g_Ks_mid = p[26] * s_Ks
    g_Ks_epi = p[27] * s_Ks
    p_KNa = p[28]
    stim_K = p[29]

    # ---- fixed constants of the model -----------------------------------
    R = 8314.472  # mJ K^-1 mol^-1
    F = 96485.3415  # C mol^-1
    Cm = 0.185  # uF
    Vc = 0.016404  # uL
    Vsr = 0.001094
    Vss = 0.00005468
    Bufc = 0.2
    Kbufc = 0.001
    Bufsr = 10.0
    Kbufsr = 0.3
    Bufss = 0.4
    Kbufss = 0.00025
    Vmaxup = 0.006375 * s_up
    Kup = 0.00025
    Vrel = 0.102 * s_rel
    k1p = 0.15
    k2p = 0.045
    k3 = 0.060
    k4 = 0.005
    EC = 1.5
    maxsr = 2.5
    minsr = 1.0
    Vleak = 0.00036
    Vxfer = 0.0038
    KmK = 1.0
    KmNa = 40.0
    knak = 2.724 * s_NaK
    knaca = 1000.0 * s_NaCa
    KmNai = 87.5
    KmCa = 1.38
    ksat = 0.1
    n_naca = 0.35
    alpha_naca = 2.5
    g_pCa = 0.1238 * s_pCa
    KpCa = 0.0005
    g_pK = 0.0146 * s_pK
    g_bNa = 0.00029 * s_bNa
    g_bCa = 0.000592 * s_bCa

    RTF = R * T / F
    FRT = F / (R * T)
    inv_VcF = Cm / (Vc * F)
    inv_VcF2 = Cm / (2.0 * Vc * F)
    inv_VssF2 = Cm / (2.0 * Vss * F)
    Vsr_Vc = Vsr / Vc
    Vsr_Vss = Vsr / Vss
    Vc_Vss = Vc / Vss
    log_Ko = math.log(Ko)
    log_Nao = math.log(Nao)
    log_Cao = math.log(Cao)
    K_ks = Ko + p_KNa * Nao
    log_K_ks = math.log(K_ks)
    Kup2 = Kup * Kup
    EC2 = EC * EC
    # I_CaL: exp(2 (V-15) F/RT) = exp(2 V F/RT) * c_cal
    z_cal = 30.0 * FRT
    c_cal = math.exp(-z_cal)
    two_F_gcal = 2.0 * F * g_CaL
    # I_NaCa
    naca_pre = knaca / ((KmNai * KmNai * KmNai + Nao * Nao * Nao) * (KmCa + Cao))
    nao3_a = Nao * Nao * Nao * alpha_naca
    # I_NaK
    nak_pre = knak * Ko / (Ko + KmK)
    # V-independent factors exp(c) of the gate exponentials exp((V + a)/k)
    c_m_a = math.exp(-60.0 / 5.0)
    c_m_b1 = math.exp(35.0 / 5.0)
    c_m_b2 = math.exp(-50.0 / 200.0)
    c_m_inf = math.exp(-56.86 / 9.03)
    c_h_inf = math.exp(71.55 / 7.43)
    c_h_b = math.exp(-10.66 / 11.1)
    c_h_a = 0.057 * math.exp(-80.0 / 6.8)
    c_j_b = math.exp(-3.2)
    c_j_a2 = math.exp(0.311 * 79.23)
    c_j_b2 = math.exp(-0.1378 * 40.14)
    c_xr1_inf = math.exp(-26.0 / 7.0)
    c_xr1_a = math.exp(-45.0 / 10.0)
    c_xr1_b = math.exp(30.0 / 11.5)
    c_xr2_inf = math.exp(88.0 / 24.0)
    c_xr2_ab = math.exp(-60.0 / 20.0)
    c_xs_inf = math.exp(-5.0 / 14.0)
    c_xs_a = math.exp(5.0 / 6.0)
    c_xs_b = math.exp(-35.0 / 15.0)
    c_r_inf = math.exp(20.0 / 6.0)
    c_s_inf_epi = math.exp(20.0 / 5.0)
    c_s_tau_epi = math.exp(-20.0 / 5.0)
    c_s_inf_endo = math.exp(28.0 / 5.0)
    c_d_inf = math.exp(-8.0 / 7.5)
    c_d_a = math.exp(-35.0 / 13.0)
    c_d_b = math.exp(5.0 / 5.0)
    c_d_c = math.exp(50.0 / 20.0)
    c_f_inf = math.exp(20.0 / 7.0)
    c_f_b = math.exp(13.0 / 10.0)
    c_f_c = math.exp(30.0 / 10.0)
    c_f2_inf = math.exp(35.0 / 7.0)
    c_f2_b = math.exp(25.0 / 10.0)
    c_pk = math.exp(25.0 / 5.98)
    c_k1_a = math.exp(0.06 * -200.0)
    c_k1_b = 3.0 * math.exp(0.0002 * 100.0)
    c_k1_c = math.exp(0.1 * -10.0)
    mdt = -dt

    for i in range(vm.shape[0]):
        V = vm[i]
        ct = cell_type[i]
        Cai = states[i, 0]
        CaSR = states[i, 1]
        CaSS = states[i, 2]
        RR = states[i, 3]
        Nai = states[i, 4]
        Ki = states[i, 5]
        m = states[i, 6]
        h = states[i, 7]
        j = states[i, 8]
        xr1 = states[i, 9]
        xr2 = states[i, 10]
        xs = states[i, 11]
        r = states[i, 12]
        s = states[i, 13]
        d = states[i, 14]
        f = states[i, 15]
        f2 = states[i, 16]
        fcass = states[i, 17]

        if ct == ENDO:
            g_to = g_to_endo
            g_Ks = g_Ks_endo
        elif ct == MID:
            g_to = g_to_mid
            g_Ks = g_Ks_mid
        else:
            g_to = g_to_epi
            g_Ks = g_Ks_epi

        # ---- reversal potentials ----------------------------------------
        Ek = RTF * (log_Ko - math.log(Ki))
        Ena = RTF * (log_Nao - math.log(Nai))
        Eks = RTF * (log_K_ks - math.log(Ki + p_KNa * Nai))
        Eca = 0.5 * RTF * (log_Cao - math.log(Cai))

        # ---- exp(c V F/RT), c = 0.35, 1, 2, from exp(0.05 V F/RT) -------
        u = V * FRT
        q1 = math.exp(0.05 * u)
        q2 = q1 * q1
        q4 = q2 * q2
        q16 = q4 * q4
        q16 = q16 * q16
        q18 = q16 * q2  # exp(0.9 u)
        eu = q16 * q4  # exp(u)
        e035 = q4 * q2 * q1  # exp(0.35 u)

        # ---- membrane currents ------------------------------------------
        I_Na = g_Na * m * m * m * h * j * (V - Ena)

        z = 2.0 * u - z_cal  # 2 (V - 15) F / RT
        ez = eu * eu * c_cal  # exp(z)
        if abs(z) < 1e-9:
            zfac = 1.0 - 0.5 * z
        else:
            zfac = z / (ez - 1.0)
        I_CaL = two_F_gcal * d * f * f2 * fcass * (0.25 * ez * CaSS - Cao) * zfac

        wk = V - Ek
        I_to = g_to * r * s * wk
        I_Kr = g_Kr * xr1 * xr2 * wk
        I_Ks = g_Ks * xs * xs * (V - Eks)

        # I_K1: alpha/(alpha + beta) with exp(0.06 w), exp(0.1 w), exp(0.5 w)
        # from p = exp(0.02 w)
        pw = math.exp(0.02 * wk)
        pw2 = pw * pw
        pw3 = pw2 * pw
        pw5 = pw3 * pw2
        pw25 = pw5 * pw5
        pw25 = pw25 * pw25 * pw5
        ak1 = 0.1 * (pw25 + 1.0)
        bk1 = (c_k1_b * math.exp(0.0002 * wk) + c_k1_c * pw5) * (1.0 + c_k1_a * pw3) * pw25
        I_K1 = g_K1 * ak1 / (ak1 + bk1) * wk

        Nai3 = Nai * Nai * Nai
        I_NaCa = (naca_pre * e035 * (Nai3 * Cao * eu - nao3_a * Cai)
                  / (eu + ksat * e035))
        I_NaK = nak_pre * Nai * eu / ((Nai + KmNa) * (eu + 0.1245 * q18 + 0.0353))
        I_pCa = g_pCa * Cai / (KpCa + Cai)
        I_pK = g_pK * wk / (1.0 + c_pk * math.exp(V * (-1.0 / 5.98)))
        I_bNa = g_bNa * (V - Ena)
        I_bCa = g_bCa * (V - Eca)

        I_ion = (I_Na + I_CaL + I_to + I_Kr + I_Ks + I_K1 + I_NaCa + I_NaK
                 + I_pCa + I_pK + I_bNa + I_bCa)
        stim = i_stim[i]

        # ---- calcium dynamics (authors' scheme) -------------------------
        CaSR2 = CaSR * CaSR
        kCaSR = maxsr - (maxsr - minsr) * CaSR2 / (CaSR2 + EC2)
        RR = RR + dt * (k4 * (1.0 - RR) - k2p * kCaSR * CaSS * RR)
        k1ss2 = k1p * CaSS * CaSS  # k1 = k1p / kCaSR
        OO = k1ss2 * RR / (k3 * kCaSR + k1ss2)

        I_rel = Vrel * OO * (CaSR - CaSS)
        I_leak = Vleak * (CaSR - Cai)
        Cai2 = Cai * Cai
        I_up = Vmaxup * Cai2 / (Cai2 + Kup2)
        I_xfer = Vxfer * (CaSS - Cai)

        CaCSQN = Bufsr * CaSR / (CaSR + Kbufsr)
        dCaSR = dt * (I_up - I_rel - I_leak)
        bjsr = Bufsr - CaCSQN - dCaSR - CaSR + Kbufsr
        cjsr = Kbufsr * (CaCSQN + dCaSR + CaSR)
        CaSR_new = 0.5 * (math.sqrt(bjsr * bjsr + 4.0 * cjsr) - bjsr)

        CaSSBuf = Bufss * CaSS / (CaSS + Kbufss)
        dCaSS = dt * (-I_xfer * Vc_Vss + I_rel * Vsr_Vss - I_CaL * inv_VssF2)
        bcss = Bufss - CaSSBuf - dCaSS - CaSS + Kbufss
        ccss = Kbufss * (CaSSBuf + dCaSS + CaSS)
        CaSS_new = 0.5 * (math.sqrt(bcss * bcss + 4.0 * ccss) - bcss)

        CaBuf = Bufc * Cai / (Cai + Kbufc)
        dCai = dt * (-(I_bCa + I_pCa - 2.0 * I_NaCa) * inv_VcF2
                     - (I_up - I_leak) * Vsr_Vc + I_xfer)
        bc = Bufc - CaBuf - dCai - Cai + Kbufc
        cc = Kbufc * (CaBuf + dCai + Cai)
        Cai_new = 0.5 * (math.sqrt(bc * bc + 4.0 * cc) - bc)

        Nai_new = Nai - dt * (I_Na + I_bNa + 3.0 * I_NaK + 3.0 * I_NaCa) * inv_VcF
        Ki_new = Ki - dt * (I_K1 + I_to + I_Kr + I_Ks - 2.0 * I_NaK + I_pK
                            - stim_K * stim) * inv_VcF

        # ---- gates: Rush–Larsen at the start-of-step Vm -----------------
        # Each gate x_inf and rate dt/tau is written as a ratio with one
        # shared reciprocal; exp(V/k) for k = 5, 6, 7.5, 10, 15, 20, 24, 200
        # are integer powers of exp(V/600), exp(V/7) the square of exp(V/14).
        B1 = math.exp(V * (1.0 / 600.0))
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
        C14 = math.exp(V * (1.0 / 14.0))
        E7 = C14 * C14

        # m
        am_d = E5 + c_m_a  # alpha_m = E5 / am_d
        bm1 = 1.0 + c_m_b1 * E5
        bm2 = 1.0 + c_m_b2 * E200  # beta_m = 0.1 (bm1 + bm2) / (bm1 bm2)
        t = 1.0 + c_m_inf * math.exp(V * (-1.0 / 9.03))
        t = t * t  # m_inf = 1 / t
        num = 0.1 * E5 * (bm1 + bm2)  # tau_m = num / (am_d bm1 bm2)
        inv = 1.0 / (t * num)
        m_inf = num * inv
        m = m_inf - (m_inf - m) * math.exp(mdt * am_d * bm1 * bm2 * t * inv)

        # h, j (j_inf = h_inf)
        th = 1.0 + c_h_inf * math.exp(V * (1.0 / 7.43))
        th = th * th  # h_inf = 1 / th
        if V >= -40.0:
            d1 = 0.13 * (1.0 + c_h_b * math.exp(V * (-1.0 / 11.1)))
            d2 = E10 + c_j_b
            inv = 1.0 / (d1 * d2 * th)
            h_inf = d1 * d2 * inv
            rate_h = 0.77 * d2 * th * inv
            rate_j = 0.6 * math.exp(0.057 * V) * E10 * d1 * th * inv
        else:
            rate_h = (c_h_a * math.exp(V * (-1.0 / 6.8)) + 2.7 * math.exp(0.079 * V)
                      + 3.1e5 * math.exp(0.3485 * V))
            na = ((-2.5428e4 * math.exp(0.2444 * V) - 6.948e-6 * math.exp(-0.04391 * V))
                  * (V + 37.78))
            da = 1.0 + c_j_a2 * math.exp(0.311 * V)
            nb = 0.02424 * math.exp(-0.01052 * V)
            db = 1.0 + c_j_b2 * math.exp(-0.1378 * V)
            inv = 1.0 / (da * db * th)
            h_inf = da * db * inv
            rate_j = (na * db + nb * da) * th * inv
        h = h_inf - (h_inf - h) * math.exp(mdt * rate_h)
        j = h_inf - (h_inf - j) * math.exp(mdt * rate_j)

        # xr1: inf = E7/(E7 + c); tau = 2700 E10 / ((E10 + c_a)(1 + c_b exp(V/11.5)))
        di = E7 + c_xr1_inf
        dt_ = (E10 + c_xr1_a) * (1.0 + c_xr1_b * math.exp(V * (1.0 / 11.5)))
        inv = 1.0 / (di * E10)
        xr1_inf = E7 * E10 * inv
        xr1 = xr1_inf - (xr1_inf - xr1) * math.exp(mdt * (1.0 / 2700.0) * dt_ * di * inv)

        # xr2: inf = 1/(1 + c E24); tau = 3.36 E20 / ((E20 + c)(1 + c E20))
        di = 1.0 + c_xr2_inf * E24
        inv = 1.0 / (di * E20)
        xr2_inf = E20 * inv
        dt_ = (E20 + c_xr2_ab) * (1.0 + c_xr2_ab * E20)
        xr2 = xr2_inf - (xr2_inf - xr2) * math.exp(mdt * (1.0 / 3.36) * dt_ * di * inv)

        # xs: inf = C14/(C14 + c); tau = 1400 / (S (1 + c E15)) + 80
        sq = math.sqrt(1.0 + c_xs_a / E6)
        dt_ = sq * (1.0 + c_xs_b * E15)
        nt = 1400.0 + 80.0 * dt_  # tau = nt / dt_
        di = C14 + c_xs_inf
        inv = 1.0 / (di * nt)
        xs_inf = C14 * nt * inv
        xs = xs_inf - (xs_inf - xs) * math.exp(mdt * dt_ * di * inv)

        # r: inf = E6/(E6 + c); tau = 9.5 exp(-(V+40)^2/1800) + 0.8
        vr = V + 40.0
        nt = 9.5 * math.exp(vr * vr * (-1.0 / 1800.0)) + 0.8
        di = E6 + c_r_inf
        inv = 1.0 / (di * nt)
        r_inf = E6 * nt * inv
        r = r_inf - (r_inf - r) * math.exp(mdt * di * inv)

        # s (endocardial kinetics in endo cells, epicardial otherwise)
        if ct == ENDO:
            vs = V + 67.0
            nt = 1000.0 * math.exp(vs * vs * (-1.0 / 1000.0)) + 8.0
            di = 1.0 + c_s_inf_endo * E5
            inv = 1.0 / (di * nt)
            s_inf = nt * inv
            rate = di * inv
        else:
            vs = V + 45.0
            dt_ = 1.0 + c_s_tau_epi * E5
            nt = (85.0 * math.exp(vs * vs * (-1.0 / 320.0)) + 3.0) * dt_ + 5.0
            di = 1.0 + c_s_inf_epi * E5
            inv = 1.0 / (di * nt)
            s_inf = nt * inv
            rate = dt_ * di * inv
        s = s_inf - (s_inf - s) * math.exp(mdt * rate)

        # d: inf = E75/(E75 + c); tau = (1.4/(1+a) + 0.25) 1.4/(1+b) + 1/(1+c)
        da = 1.0 + c_d_a * math.exp(V * (-1.0 / 13.0))
        db = 1.0 + c_d_b * E5
        dc = E20 + c_d_c  # 1/(1+c) = E20/dc
        nt = 1.4 * (1.4 + 0.25 * da) * dc + E20 * da * db
        dt_ = da * db * dc
        di = E75 + c_d_inf
        inv = 1.0 / (di * nt)
        d_inf = E75 * nt * inv
        d = d_inf - (d_inf - d) * math.exp(mdt * dt_ * di * inv)

        # f: inf = 1/(1 + c E7);
        # tau = 1102.5 exp(-(V+27)^2/225) + 200 E10/(E10 + c_b) + 180/(1 + c_c E10) + 20
        vf = V + 27.0
        dfb = E10 + c_f_b
        dfc = 1.0 + c_f_c * E10
        dt_ = dfb * dfc
        nt = ((1102.5 * math.exp(vf * vf * (-1.0 / 225.0)) + 20.0) * dt_
              + 200.0 * E10 * dfc + 180.0 * dfb)
        di = 1.0 + c_f_inf * E7
        inv = 1.0 / (di * nt)
        f_inf = nt * inv
        f = f_inf - (f_inf - f) * math.exp(mdt * dt_ * di * inv)

        # f2: inf = 0.67/(1 + c E7) + 0.33;
        # tau = 600 exp(-(V+25)^2/170) + 31 E10/(E10 + c_b) + 16/(1 + c_c E10)
        vf2 = V + 25.0
        dfb = E10 + c_f2_b
        dt_ = dfb * dfc
        nt = 600.0 * math.exp(vf2 * vf2 * (-1.0 / 170.0)) * dt_ + 31.0 * E10 * dfc + 16.0 * dfb
        di = 1.0 + c_f2_inf * E7
        inv = 1.0 / (di * nt)
        f2_inf = 0.67 * nt * inv + 0.33
        f2 = f2_inf - (f2_inf - f2) * math.exp(mdt * dt_ * di * inv)

        # fCass (from the updated Ca_ss, as in the authors' code):
        # inf = 0.6/(1+y) + 0.4 = (1 + 0.4 y)/(1+y); tau = 80/(1+y) + 2 = (82 + 2y)/(1+y)
        y = CaSS_new * (1.0 / 0.05)
        y = y * y
        nt = 82.0 + 2.0 * y
        di = 1.0 + y
        inv = 1.0 / (di * nt)
        fcass_inf = (1.0 + 0.4 * y) * nt * inv
        fcass = fcass_inf - (fcass_inf - fcass) * math.exp(mdt * di * di * inv)

        # ---- write back ------------------------------------------------
        states[i, 0] = Cai_new
        states[i, 1] = CaSR_new
        states[i, 2] = CaSS_new
        states[i, 3] = RR
        states[i, 4] = Nai_new
        states[i, 5] = Ki_new
        states[i, 6] = m
        states[i, 7] = h
        states[i, 8] = j
        states[i, 9] = xr1
        states[i, 10] = xr2
        states[i, 11] = xs
        states[i, 12] = r
        states[i, 13] = s
        states[i, 14] = d
        states[i, 15] = f
        states[i, 16] = f2
        states[i, 17] = fcass
        vm[i] = V + dt * (stim - I_ion)


@dataclass
class TenTusscherPanfilov2006(IonicModel):
    """ten Tusscher–Panfilov 2006 (endo / M / epi by per-cell type code)."""

    name: ClassVar[str] = "tt06"
    state_names: ClassVar[tuple[str, ...]] = _STATE_NAMES
    default_parameters: ClassVar[Mapping[str, float]] = _DEFAULT_PARAMETERS

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
        _tt06_step(vm, states, i_stim, float(dt), cell_type, self.parameter_vector())
