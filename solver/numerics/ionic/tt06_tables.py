"""Tables in Vm of the TT06 quantities that depend on Vm alone.

The tabulated TT06 kernel (``kernel="tabulated"`` of
:class:`~solver.numerics.ionic.tt06.TenTusscherPanfilov2006`) reads each gate's
steady state and Rush–Larsen factor exp(-dt/tau), and the Vm-only factors of
I_CaL, I_NaCa, I_NaK and I_pK, from one table by linear interpolation on a
uniform grid, instead of evaluating some 25 exponentials per cell and step.

The values are computed here from the published formulas written literally
(numpy, libm exponentials), not from the kernel, so a test comparing the
table with the exact kernel checks both.  Quantities that depend on Vm and a
concentration (I_K1 through E_K, the reversal potentials, fCass through
Ca_ss) stay exact.

A table is valid for one dt, one temperature and one tau_f2 variant, over
[V_MIN, V_MAX) mV: :func:`table_for` builds it once per process for each such
key.  Blocks of cells with a Vm outside the range are stepped by the exact
kernel (tt06._tt06_step).
"""
from __future__ import annotations

import functools
import math

import numpy as np

#: Range and spacing of the grid (mV).  -100..+80 covers rest, the upstroke
#: and the plateau with margin; -40 mV, where the h and j rates switch
#: formula, is a grid node, so the switch is not smeared beyond one interval.
V_MIN = -100.0
V_MAX = 80.0
DV = 0.05

_R = 8314.472
_F = 96485.3415

#: Columns of a table row.  *_inf: steady state; *_e: exp(-dt/tau).
COLUMNS = (
    "m_inf", "m_e", "h_inf", "h_e", "j_e", "xr1_inf", "xr1_e", "xr2_inf", "xr2_e",
    "xs_inf", "xs_e", "r_inf", "r_e", "s_endo_inf", "s_endo_e", "s_epi_inf", "s_epi_e",
    "d_inf", "d_e", "f_inf", "f_e", "f2_inf", "f2_e",
    "cal_a",  # I_CaL = 2 F g_CaL d f f2 fCass (cal_a Ca_ss - Cao cal_b)
    "cal_b",
    "naca_a",  # I_NaCa = k (Na_i^3 Cao naca_a - Nao^3 alpha Ca_i naca_b)
    "naca_b",
    "nak",  # I_NaK = k Na_i / (Na_i + K_mNa) nak
    "pk",  # I_pK = g_pK (V - E_K) pk
)
COL = {name: k for k, name in enumerate(COLUMNS)}
#: Row length: padded so that rows start on a cache line (32 doubles = 4 lines).
WIDTH = 32


def exact_values(v: np.ndarray, dt: float, temperature: float = 310.0,
                 tau_f2_cellml: bool = False) -> np.ndarray:
    """Every column at the voltages ``v`` (mV), from the published formulas: (len(v), len(COLUMNS))."""
    v = np.asarray(v, dtype=float)
    ex = np.exp
    rtf = _R * temperature / _F
    out = np.empty((v.size, len(COLUMNS)))
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        tau_m = (1 / (1 + ex((-60 - v) / 5))) * (0.1 / (1 + ex((v + 35) / 5)) + 0.1 / (1 + ex((v - 50) / 200)))
        rate_h = np.where(
            v >= -40,
            0.77 / (0.13 * (1 + ex(-(v + 10.66) / 11.1))),
            0.057 * ex(-(v + 80) / 6.8) + 2.7 * ex(0.079 * v) + 3.1e5 * ex(0.3485 * v))
        rate_j = np.where(
            v >= -40,
            0.6 * ex(0.057 * v) / (1 + ex(-0.1 * (v + 32))),
            (-2.5428e4 * ex(0.2444 * v) - 6.948e-6 * ex(-0.04391 * v)) * (v + 37.78)
            / (1 + ex(0.311 * (v + 79.23)))
            + 0.02424 * ex(-0.01052 * v) / (1 + ex(-0.1378 * (v + 40.14))))
        if tau_f2_cellml:
            tau_f2 = 562 * ex(-(v + 27) ** 2 / 240) + 31 / (1 + ex((25 - v) / 10)) + 80 / (1 + ex((v + 30) / 10))
        else:
            tau_f2 = 600 * ex(-(v + 25) ** 2 / 170) + 31 / (1 + ex((25 - v) / 10)) + 16 / (1 + ex((v + 30) / 10))
        gates = {
            "m": (1 / (1 + ex((-56.86 - v) / 9.03)) ** 2, tau_m),
            "h": (1 / (1 + ex((v + 71.55) / 7.43)) ** 2, 1 / rate_h),
            "xr1": (1 / (1 + ex((-26 - v) / 7)),
                    450 / (1 + ex((-45 - v) / 10)) * 6 / (1 + ex((v + 30) / 11.5))),
            "xr2": (1 / (1 + ex((v + 88) / 24)),
                    3 / (1 + ex((-60 - v) / 20)) * 1.12 / (1 + ex((v - 60) / 20))),
            "xs": (1 / (1 + ex((-5 - v) / 14)),
                   1400 / np.sqrt(1 + ex((5 - v) / 6)) / (1 + ex((v - 35) / 15)) + 80),
            "r": (1 / (1 + ex((20 - v) / 6)), 9.5 * ex(-(v + 40) ** 2 / 1800) + 0.8),
            "s_endo": (1 / (1 + ex((v + 28) / 5)), 1000 * ex(-(v + 67) ** 2 / 1000) + 8),
            "s_epi": (1 / (1 + ex((v + 20) / 5)),
                      85 * ex(-(v + 45) ** 2 / 320) + 5 / (1 + ex((v - 20) / 5)) + 3),
            "d": (1 / (1 + ex((-8 - v) / 7.5)),
                  (1.4 / (1 + ex((-35 - v) / 13)) + 0.25) * 1.4 / (1 + ex((v + 5) / 5))
                  + 1 / (1 + ex((50 - v) / 20))),
            "f": (1 / (1 + ex((v + 20) / 7)),
                  1102.5 * ex(-(v + 27) ** 2 / 225) + 200 / (1 + ex((13 - v) / 10))
                  + 180 / (1 + ex((v + 30) / 10)) + 20),
            "f2": (0.67 / (1 + ex((v + 35) / 7)) + 0.33, tau_f2),
        }
        for name, (x_inf, tau) in gates.items():
            out[:, COL[f"{name}_inf"]] = x_inf
            out[:, COL[f"{name}_e"]] = ex(-dt / tau)
        out[:, COL["j_e"]] = ex(-dt * rate_j)
        # I_CaL: z / (e^z - 1) with z = 2 (V - 15) F/RT, and its limit 1 at z = 0
        z = 2 * (v - 15) / rtf
        small = np.abs(z) < 1e-9
        zfac = np.where(small, 1 - 0.5 * z, z / np.where(small, 1.0, np.expm1(z)))
        out[:, COL["cal_a"]] = 0.25 * ex(z) * zfac
        out[:, COL["cal_b"]] = zfac
        u = v / rtf
        den = 1 + 0.1 * ex(-0.65 * u)
        out[:, COL["naca_a"]] = ex(0.35 * u) / den
        out[:, COL["naca_b"]] = ex(-0.65 * u) / den
        out[:, COL["nak"]] = 1 / (1 + 0.1245 * ex(-0.1 * u) + 0.0353 * ex(-u))
        out[:, COL["pk"]] = 1 / (1 + ex((25 - v) / 5.98))
    return out


def grid(v_min: float = V_MIN, v_max: float = V_MAX, dv: float = DV) -> np.ndarray:
    """The table's nodes: v_min, v_min + dv, ..., v_max."""
    n = round((v_max - v_min) / dv)
    if n < 1 or not math.isclose(v_min + n * dv, v_max, abs_tol=1e-9 * dv):
        raise ValueError(f"tt06 table: range {v_min}..{v_max} mV is not a whole number of {dv} mV steps")
    return v_min + dv * np.arange(n + 1)


@functools.lru_cache(maxsize=16)
def table_for(dt: float, temperature: float = 310.0, tau_f2_cellml: bool = False,
              v_min: float = V_MIN, v_max: float = V_MAX, dv: float = DV) -> np.ndarray:
    """The table for one dt, temperature and tau_f2 variant: (nodes, WIDTH), read-only.
    Built once per process per key (a few ms)."""
    if not (dt > 0 and math.isfinite(dt)):
        raise ValueError(f"tt06 table: dt must be a positive number, got {dt}")
    values = exact_values(grid(v_min, v_max, dv), dt, temperature, tau_f2_cellml)
    if not np.all(np.isfinite(values)):
        raise ValueError(f"tt06 table: non-finite values over {v_min}..{v_max} mV")
    table = np.zeros((values.shape[0], WIDTH))
    table[:, :len(COLUMNS)] = values
    table.flags.writeable = False
    return table


def interpolate(table: np.ndarray, v: np.ndarray, v_min: float = V_MIN, dv: float = DV) -> np.ndarray:
    """Linear interpolation of every column at ``v`` (as the kernel does it)."""
    x = (np.asarray(v, dtype=float) - v_min) * (1.0 / dv)
    k = np.minimum(x.astype(np.int64), table.shape[0] - 2)
    w = (x - k)[:, None]
    lo = table[k, :len(COLUMNS)]
    return lo + w * (table[k + 1, :len(COLUMNS)] - lo)


def max_errors(dt: float, samples_per_interval: int = 20, v_min: float = V_MIN,
               v_max: float = V_MAX, dv: float = DV) -> dict[str, float]:
    """Largest |interpolated - exact| of each column over the range, sampled
    ``samples_per_interval`` times per grid interval (and relative to the
    column's largest magnitude for the current factors, which are not in [0, 1])."""
    table = table_for(dt, v_min=v_min, v_max=v_max, dv=dv)
    n = table.shape[0] - 1
    v = v_min + dv * (np.arange(n * samples_per_interval) + 0.5) / samples_per_interval
    exact = exact_values(v, dt)
    err = np.abs(interpolate(table, v, v_min, dv) - exact)
    scale = np.where([c.endswith(("_inf", "_e")) for c in COLUMNS], 1.0, np.abs(exact).max(axis=0))
    return {c: float(e) for c, e in zip(COLUMNS, err.max(axis=0) / scale)}
