"""The published 1-D SqueezeNet: output shapes, layer layout and initialisation."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from solver.common.traces import apd90_ms, threshold_crossing_ms

from model.network import (
    ARCHITECTURES, VM_OFFSET_MV, VM_SCALE_MV, Fire, PositionalHead, build_network, crossing_times, upstroke_time_ms,
)


def action_potential_template(half: int = 500, apd_ms: float = 250.0) -> np.ndarray:
    """(75, 2 half) traces aligned at activation (sample ``half``): rest, a 1-ms upstroke, a plateau, repolarisation."""
    tau = np.arange(2 * half, dtype=np.float64) - half
    upstroke = 0.5 * (1.0 + np.tanh((tau + 0.5) / 0.5))
    repolarisation = 0.5 * (1.0 - np.tanh((tau - apd_ms) / 24.0))
    trace = -85.0 + 110.0 * upstroke * repolarisation
    return np.repeat(trace[None], 75, axis=0)


def with_template(net, half: int = 500):
    traces = action_potential_template(half)
    net.renderer.set_template(traces, 1.0, apd90_ms(traces), np.full(75, 250.0), np.full(75, 30.0))
    return net


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_output_shapes(architecture):
    net = build_network(architecture).eval()
    if architecture == "template_vm":
        with_template(net)
    out = net(torch.randn(2, 12, 500))
    expected = {"reference_act": {"act"}, "resnet_act": {"act"}, "positional_act": {"act"}, "ridge_act": {"act"},
                "reference_vm": {"vm"}, "template_vm": {"act", "apd", "vm"}}.get(architecture, {"act", "vm"})
    assert set(out) == expected == set(net.outputs)
    if "act" in out:
        assert out["act"].shape == (2, 75)
    if "vm" in out:
        assert out["vm"].shape == (2, 75, 500)


def test_activation_trunk_downsamples_and_voltage_trunk_keeps_the_length():
    act, vm = build_network("reference_act"), build_network("reference_vm")
    x = torch.randn(1, 12, 500)
    assert act.features(x).shape == (1, 512, 33)  # 500 -> 250 -> 126 -> 64 -> 33
    assert vm.features(x).shape == (1, 512, 500)
    assert vm.vm_head.conv.kernel_size == (1,) and act.vm_head is None and vm.act_head is None


def test_positional_networks_share_the_reference_trunk():
    """positional_act and template_vm differ from reference_act only in their heads."""
    reference = build_network("reference_act")
    for architecture in ("positional_act", "template_vm"):
        net = build_network(architecture)
        assert [type(m) for m in net.features] == [type(m) for m in reference.features]
        assert isinstance(net.act_head, PositionalHead) and net.act_head.layers[-1].in_features == 512 * 16


def test_fire_layout_matches_squeezenet_1_1():
    fires = [m for m in build_network("reference_act").features if isinstance(m, Fire)]
    layout = [(f.squeeze.in_channels, f.squeeze.out_channels, f.expand1x1.out_channels, f.expand3x3.out_channels) for f in fires]
    assert layout == [(64, 16, 64, 64), (128, 16, 64, 64), (128, 32, 128, 128), (256, 32, 128, 128),
                      (256, 48, 192, 192), (384, 48, 192, 192), (384, 64, 256, 256), (512, 64, 256, 256)]
    first = build_network("reference_act").features[0]
    assert (first.in_channels, first.out_channels, first.kernel_size, first.stride, first.padding) == (12, 64, (3,), (2,), (1,))
    head = build_network("reference_act").act_head.layers
    assert isinstance(head[0], nn.Dropout) and isinstance(head[3], nn.AdaptiveAvgPool1d)
    assert (head[1].in_channels, head[1].out_channels, head[1].stride) == (512, 75, (2,))
    assert (head[4].in_channels, head[4].out_channels, head[4].stride) == (75, 75, (2,))
    assert not any(isinstance(m, (nn.BatchNorm1d, nn.LayerNorm, nn.GroupNorm)) for m in build_network("multitask").modules())


def test_initialisation_is_kaiming_uniform_with_zero_biases():
    torch.manual_seed(0)
    net = build_network("multitask")
    convs = [m for m in net.modules() if isinstance(m, nn.Conv1d)]
    assert convs and all(torch.count_nonzero(c.bias) == 0 for c in convs)
    for conv in convs:
        fan_in = conv.in_channels * conv.kernel_size[0]
        bound = math.sqrt(2.0) * math.sqrt(3.0 / fan_in)
        w = conv.weight.detach()
        assert w.abs().max() <= bound + 1e-6
        assert w.abs().max() > 0.8 * bound  # uniform over the whole range, not a narrower default


def test_upstroke_soft_argmax_finds_the_steepest_rise():
    t = torch.arange(200, dtype=torch.float32)
    onsets = torch.tensor([30.0, 77.0, 150.0])
    vm = torch.sigmoid((t[None] - onsets[:, None]) / 0.5)[None]  # (1, 3, 200), normalised 0..1
    times = upstroke_time_ms(vm, temperature=0.02)
    assert torch.allclose(times[0], onsets, atol=0.6)


def test_threshold_crossing_interpolates_and_marks_silent_traces():
    vm = torch.full((3, 10), -80.0)
    vm[0, 4:] = 20.0  # -80 at 3, +20 at 4: crosses 0 at 3.8
    vm[1, 0:] = 10.0  # above from the start
    times = crossing_times(vm)  # a silent trace gets the end of the window
    assert times.tolist() == pytest.approx([3.8, 0.0, 10.0])


def test_outputs_map_back_to_milliseconds_and_millivolts():
    net = build_network("multitask").eval()
    net.set_activation_statistics(torch.full((75,), 50.0), torch.full((75,), 10.0))
    out = {"act": torch.ones(1, 75), "vm": torch.zeros(1, 75, 5)}
    physical = net.to_physical(out)
    assert torch.allclose(physical["act"], torch.full((1, 75), 60.0))
    assert torch.allclose(physical["vm"], torch.full((1, 75, 5), VM_OFFSET_MV))
    assert VM_OFFSET_MV + VM_SCALE_MV == pytest.approx(50.0)


def test_configuration_names_every_architecture():
    import typing

    from model.config import Architecture

    assert typing.get_args(Architecture) == ARCHITECTURES


def test_sites_that_never_activate_are_left_out_of_the_loss():
    """A scar core has no activation time (NaN): the loss stays finite, ignores
    those sites, and still trains the others."""
    from model.config import LossConfig
    from model.train import compute_loss

    net = build_network("reference_act")
    net.set_activation_statistics(torch.zeros(75), torch.ones(75))
    out = {"act": torch.zeros(2, 75, requires_grad=True)}
    act = torch.full((2, 75), 3.0)
    act[0, :10] = float("nan")
    loss = compute_loss(net, out, {"ecg": torch.zeros(2, 12, 500), "act": act}, LossConfig())
    assert torch.isfinite(loss) and loss.item() == pytest.approx(9.0)
    loss.backward()
    assert torch.isfinite(out["act"].grad).all() and (out["act"].grad[0, :10] == 0).all()


def test_residual_network_is_the_reference_size_and_learns_from_position():
    net = build_network("resnet_act")
    count = sum(p.numel() for p in net.parameters())
    reference = sum(p.numel() for p in build_network("reference_act").parameters())
    assert 0.5 * reference < count < 1.5 * reference
    assert net.features(torch.randn(1, 12, 500)).shape == (1, 128, 63)
    x = torch.zeros(1, 12, 500)
    x[0, :, 100] = 1.0
    later = torch.roll(x, 200, dims=2)
    net.eval()
    assert not torch.allclose(net(x)["act"], net(later)["act"])  # the head keeps when the beat happens


def test_template_traces_rise_at_the_predicted_time_and_last_the_predicted_apd():
    """template_vm's renderer: the trace's 0 mV crossing and APD90 are the heads' outputs."""
    renderer = with_template(build_network("template_vm")).renderer
    template = action_potential_template()
    template_crossing = threshold_crossing_ms(template[0]) - 500  # where the template itself crosses, from sample 500
    act = torch.tensor([[40.3] * 75, [121.7] * 75])
    apd = torch.tensor([[200.0] * 75, [310.0] * 75])
    act.requires_grad_(True)
    apd.requires_grad_(True)
    vm = renderer(act, apd, 500) * VM_SCALE_MV + VM_OFFSET_MV
    crossing = threshold_crossing_ms(vm.detach().numpy())
    # Within the 1-ms sampling of a 1-ms upstroke (each trace is interpolated twice).
    np.testing.assert_allclose(crossing[:, 0], [40.3 + template_crossing, 121.7 + template_crossing], atol=0.3)
    np.testing.assert_allclose(apd90_ms(vm.detach().numpy())[:, 0], [200.0, 310.0], atol=1.0)
    assert vm[0, 0, :30].detach().numpy() == pytest.approx(-85.0, abs=0.1)  # at rest before activation
    vm.sum().backward()  # differentiable in both: the losses reach both heads
    assert act.grad.abs().sum() > 0 and apd.grad.abs().sum() > 0


def test_template_travels_with_the_weights():
    trained = with_template(build_network("template_vm"), half=300).eval()
    fresh = build_network("template_vm").eval()
    fresh.load_state_dict(trained.state_dict())
    x = torch.randn(1, 12, 300)
    assert torch.equal(fresh(x)["vm"], trained(x)["vm"])
    with pytest.raises(RuntimeError, match="no template"):
        build_network("template_vm")(x)
