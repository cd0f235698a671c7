"""OOD score and MC-dropout spread: what they separate and when they are absent."""
from __future__ import annotations

import numpy as np
import torch

from model.clinical.trust import THRESHOLD_PERCENTILE, features, fit_reference, mc_dropout
from model.network import build_network


def _inputs(rng: np.random.Generator, n: int, shift: float = 0.0) -> np.ndarray:
    """Beats of one shape with random amplitude per lead, as range-scaled inputs (n, 12, 500)."""
    t = np.arange(500)
    shape = np.exp(-0.5 * ((t - 40 - shift) / 12.0) ** 2) - 0.3 * np.exp(-0.5 * ((t - 250) / 40.0) ** 2)
    signs = np.where(np.arange(12) % 3 == 0, -1.0, 1.0)[None, :, None]  # the same polarities in every set
    gains = rng.uniform(0.5, 1.5, (n, 12, 1)) * signs
    return gains * shape + 0.02 * rng.standard_normal((n, 12, 500))


def test_ood_threshold_separates_unlike_inputs():
    rng = np.random.default_rng(0)
    reference = fit_reference(_inputs(rng, 400))
    inside = reference.distance(_inputs(rng, 200))
    assert np.mean(inside > reference.threshold) < 0.05  # about 1 - THRESHOLD_PERCENTILE / 100
    assert THRESHOLD_PERCENTILE == 99.0
    late = reference.distance(_inputs(rng, 50, shift=60.0))  # the same beat 60 ms later
    inverted = reference.distance(-_inputs(rng, 50))  # every lead's polarity flipped
    assert np.all(late > reference.threshold) and np.all(inverted > reference.threshold)
    assert features(_inputs(rng, 3)).shape == (3, 38)


def test_mc_dropout_spread_is_reproducible_and_needs_dropout():
    torch.manual_seed(0)
    x = torch.randn(2, 12, 500)
    model = build_network("reference_act", dropout=0.5).eval()
    a, b = mc_dropout(model, x, 6), mc_dropout(model, x, 6)
    assert a["act"].shape == (6, 2, 75) and torch.equal(a["act"], b["act"]) and a["act"].std(0).max() > 0
    assert not any(m.training for m in model.modules())  # dropout switched back off
    assert mc_dropout(build_network("reference_act", dropout=0.0).eval(), x, 6) is None
    assert mc_dropout(build_network("consistent").eval(), x, 6) is None
