"""The spiking core's semantics, each against a hand computation or an independent reference."""
import pytest
import torch
from torch import nn

from spiking_dqn import (
    Residual,
    calibrate,
    clamp_after_step,
    convert,
    energy_report,
    equalize,
    fuse_bn,
    parse_schedule,
    recording,
    run_stages,
    stages_to,
)
from spiking_dqn.network import Folded, TimeDropout, silent_layer
from spiking_dqn.neuron import GAMMA, IIRNeuron


def test_neuron_trace_matches_hand_computation():
    n = IIRNeuron(threshold=1.0, leak=0.5)
    current = torch.tensor([0.6, 0.6, 1.5, 0.2, 2.5]).reshape(5, 1, 1)
    # u: 0.6 -> 0.9 -> 1.95 (spike, u=0.95) -> 0.675 -> 2.8375 (spike, u=1.8375)
    assert n(current).flatten().tolist() == [0, 0, 1, 0, 1]


def test_spike_in_same_step_and_soft_reset_keeps_residue():
    n = IIRNeuron(threshold=1.0, leak=1.0)
    out = n(torch.full((4, 1, 1), 0.75)).flatten().tolist()
    # u: .75, 1.5 -> spike, .5 -> 1.25 spike, .25 -> 1.0 (not > 1: no spike)
    assert out == [0, 1, 1, 0]


@pytest.mark.parametrize("i1", [1.1, 1.3])  # first step below / above threshold (the reset path)
def test_surrogate_and_threshold_gradients_match_formula(i1):
    v0, leak0, i2 = 1.2, 0.9, 0.8
    n = IIRNeuron(threshold=v0, leak=leak0)
    current = torch.tensor([i1, i2]).reshape(2, 1, 1).requires_grad_()
    n(current).sum().backward()

    def sg(z: float) -> float:
        return GAMMA * max(0.0, 1 - abs(z))

    # step 1: u1 = i1, z1 = u1/v - 1, o1 = H(z1); reset u1' = u1 - v o1
    u1 = i1
    z1 = u1 / v0 - 1
    o1 = float(z1 > 0)
    u2 = leak0 * (u1 - v0 * o1) + i2
    z2 = u2 / v0 - 1
    dz1_dv = -u1 / v0**2
    do1_dv = sg(z1) * dz1_dv
    du2_dv = leak0 * (-o1 - v0 * do1_dv)
    dz2_dv = du2_dv / v0 - u2 / v0**2
    expected_dv = do1_dv + sg(z2) * dz2_dv
    du2_dleak = u1 - v0 * o1
    expected_dleak = sg(z2) * du2_dleak / v0
    # d/di1 goes through z1 and through u2 (with the reset's dependence on o1)
    do1_di1 = sg(z1) / v0
    du2_di1 = leak0 * (1 - v0 * do1_di1)
    expected_di1 = do1_di1 + sg(z2) * du2_di1 / v0
    assert n.threshold.grad.item() == pytest.approx(expected_dv, rel=1e-5)
    assert n.leak.grad.item() == pytest.approx(expected_dleak, rel=1e-5)
    assert current.grad.flatten()[0].item() == pytest.approx(expected_di1, rel=1e-5)
    assert current.grad.flatten()[1].item() == pytest.approx(sg(z2) / v0, rel=1e-5)


def test_leak_clamped_and_threshold_positive_after_optimizer_step():
    net = convert(nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)), timesteps=2)
    neuron = net.neurons()[0]
    opt = torch.optim.SGD(net.parameters(), lr=1.0)
    clamp_after_step(opt, net)
    neuron.leak.grad = torch.tensor(-5.0)
    neuron.threshold.grad = torch.tensor(10.0)
    opt.step()
    assert neuron.leak.item() == 1.0
    assert neuron.threshold.item() > 0


def test_bn_fusion_is_exact_in_eval_mode():
    torch.manual_seed(0)
    ann = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(),
                        nn.Linear(8 * 6 * 6, 5, bias=False), nn.BatchNorm1d(5))
    ann.train()
    for _ in range(3):
        ann(torch.randn(16, 3, 8, 8))  # move the running statistics away from their defaults
    with torch.no_grad():
        for bn in (ann[1], ann[5]):
            bn.weight.uniform_(0.5, 2)
            bn.bias.uniform_(-1, 1)
    ann.eval()
    fused = fuse_bn(ann)
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in fused.modules())
    x = torch.randn(10, 3, 8, 8)
    torch.testing.assert_close(fused(x), ann(x), atol=1e-5, rtol=1e-5)


def _trained_classifier() -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    x = torch.randn(2048, 4)
    y = (x[:, 0] * x[:, 1] > 0).long() + (x[:, 2] > 0.5).long()
    ann = nn.Sequential(nn.Linear(4, 64), nn.BatchNorm1d(64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(),
                        nn.Linear(64, 3))
    opt = torch.optim.Adam(ann.parameters(), lr=1e-2)
    for _ in range(300):
        opt.zero_grad()
        nn.functional.cross_entropy(ann(x), y).backward()
        opt.step()
    ann.eval()
    return ann, x


def test_conversion_converges_to_ann_as_t_grows():
    ann, x = _trained_classifier()
    errors = []
    with torch.no_grad():
        target = ann(x)
        for t in (10, 100, 1000):
            out = convert(ann, t, data=x[:512], percentile=99.9)(x)
            errors.append((out - target).abs().mean().item())
            if t == 100:
                agreement = (out.argmax(1) == target.argmax(1)).float().mean().item()
    assert errors[0] > errors[1] > errors[2]
    assert agreement >= 0.97


def _uneven_channels_net() -> tuple[nn.Sequential, torch.Tensor]:
    """A conv net whose channels differ in scale by up to 100x, as Pong's Q-networks' do by up to ~10x."""
    torch.manual_seed(2)
    ann = nn.Sequential(nn.Conv2d(2, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 3), nn.ReLU(), nn.Flatten(),
                        nn.Linear(8 * 4 * 4, 16), nn.ReLU(), nn.Linear(16, 3)).eval()
    with torch.no_grad():
        gains = torch.logspace(-2, 0, 8)
        ann[0].weight.mul_(gains.reshape(-1, 1, 1, 1))
        ann[0].bias.mul_(gains)
        ann[2].weight.div_(gains.reshape(1, -1, 1, 1))
    return ann, torch.rand(512, 2, 8, 8)


@torch.no_grad()
def test_equalize_keeps_the_function_and_levels_the_channels():
    ann, x = _uneven_channels_net()
    res = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(),
                        Residual(nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1))),
                        nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2)).eval()
    for net in (ann, res):
        torch.testing.assert_close(equalize(net, x, 99.9, 1.0)(x), net(x), atol=1e-5, rtol=1e-4)
    level = equalize(ann, x, 99.9, 1.0)
    for producer in (0, 2, 5):  # every ReLU feeding a weight layer: each channel at the layer's former percentile
        before, after = (torch.quantile(a.transpose(0, 1).reshape(a.shape[1], -1), 0.999, dim=1)
                         for a in (ann[:producer + 2](x), level[:producer + 2](x)))
        live = before > 0  # silent channels stay silent
        layer = float(torch.quantile(ann[:producer + 2](x), 0.999))
        assert live.sum() >= 4 and (after[~live] == 0).all()
        torch.testing.assert_close(after[live], torch.full_like(after[live], layer), rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(equalize(ann, x, 99.9, 0.0)[0].weight, ann[0].weight)  # power 0: unchanged


@torch.no_grad()
def test_equalized_conversion_is_closer_to_the_ann_on_uneven_channels():
    ann, x = _uneven_channels_net()
    target = ann(x)
    err = {p: (convert(ann, 100, data=x, percentile=99.9, equalize_power=p)(x) - target).abs().mean().item()
           for p in (0.0, 0.5, 1.0)}
    assert err[1.0] < err[0.5] < 0.5 * err[0.0]
    with pytest.raises(ValueError, match="calibration data"):
        convert(ann, 100, equalize_power=0.5)


@torch.no_grad()
def test_residual_block_converts_with_both_branches_on_one_scale():
    torch.manual_seed(1)

    def block(cin: int, cout: int) -> Residual:
        main = nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(),
                             nn.Conv2d(cout, cout, 3, padding=1), nn.BatchNorm2d(cout))
        short = None if cin == cout else nn.Sequential(nn.Conv2d(cin, cout, 1), nn.BatchNorm2d(cout))
        return Residual(main, short)

    ann = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), block(8, 8), nn.ReLU(), block(8, 16),
                        nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 4)).eval()
    x = torch.randn(256, 3, 8, 8)
    target = ann(x)
    err = [(convert(ann, t, data=x, percentile=99.99)(x) - target).abs().mean().item() for t in (10, 100, 1000)]
    assert err[0] > err[1] > err[2]
    assert err[2] < 0.05 * target.abs().mean().item()


def _reference_run(snn, x: torch.Tensor) -> torch.Tensor:
    """Independent per-timestep loop: every layer recomputed at every step, neuron states kept by hand."""
    layers = list(snn.head) + [m.layer if isinstance(m, Folded) else m for m in snn.body]
    states: dict[int, torch.Tensor] = {}
    outputs = []
    for _ in range(snn.timesteps):
        h = x
        for k, layer in enumerate(layers):
            if isinstance(layer, IIRNeuron):
                u = layer.leak * states.get(k, torch.zeros_like(h)) + h
                h = (u > layer.threshold).float()
                states[k] = u - layer.threshold * h
            else:
                h = layer(h)
        outputs.append(snn.tail(h))
    return torch.stack(outputs).mean(0)


@torch.no_grad()
def test_multistep_execution_equals_per_timestep_loop_and_first_layer_is_computed_once():
    torch.manual_seed(2)
    ann = nn.Sequential(nn.Conv2d(2, 6, 3, stride=2), nn.ReLU(), nn.Conv2d(6, 8, 3), nn.ReLU(),
                        nn.AvgPool2d(2), nn.Flatten(), nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
    x = torch.rand(5, 2, 12, 12)
    snn = convert(ann, timesteps=7, data=x, percentile=90)
    for n in snn.neurons():
        n.leak.fill_(0.8)
    calls = []
    snn.head[0].register_forward_hook(lambda m, i, o: calls.append(o.shape))
    out = snn(x)
    assert calls == [torch.Size([5, 6, 5, 5])]  # once per forward, batch not multiplied by T
    torch.testing.assert_close(out, _reference_run(snn, x), atol=1e-5, rtol=1e-5)


def test_dropout_mask_is_constant_over_timesteps():
    drop = TimeDropout(0.5).train()
    x = torch.ones(6, 3, 100)
    y = drop(x)
    assert torch.equal(y, y[0].expand_as(y))
    assert 0 < (y[0] == 0).float().mean() < 1


def test_spike_rate_is_spikes_per_neuron_summed_over_t():
    snn = convert(nn.Sequential(nn.Linear(1, 2), nn.ReLU(), nn.Linear(2, 1)), timesteps=4)
    with torch.no_grad():
        snn.head[0].weight.copy_(torch.tensor([[1.0], [0.0]]))
        snn.head[0].bias.zero_()
    with recording(snn):
        snn(torch.ones(3, 1))  # neuron 0 gets 1.0 per step: u=1 (no spike), then 2 (spike, back to 1) x3
    assert snn.spike_rates() == [pytest.approx(1.5)]  # (3 + 0 spikes) / 2 neurons, per inference
    assert not snn.neurons()[0].record
    assert snn.layer_stats() == {"spike_rate/layer0": pytest.approx(1.5), "threshold/layer0": 1.0,
                                 "leak/layer0": 1.0}


def test_silent_layer_detection():
    assert silent_layer([0.3, 0.0, 0.0]) == 1
    assert silent_layer([0.3, 0.1]) is None


def test_energy_against_hand_worked_example():
    ann = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 2 * 2, 3), nn.ReLU(),
                        nn.Linear(3, 2))
    snn = convert(ann, timesteps=2)
    report = energy_report(snn, torch.zeros(1, 1, 4, 4), spike_rates=[0.5, 0.25])
    # conv: 3*3*1 * 2*2 * 2 = 72; linear 8*3 = 24; linear 3*2 = 6
    assert report.ann_ops == [72, 24, 6]
    assert report.snn_ops == [72.0, 12.0, 1.5]
    assert report.energy_ratio == pytest.approx((102 * 4.6) / (72 * 4.6 + 13.5 * 0.9))
    # W = 18 + 24 + 6 = 48, N = 8 + 3 + 2 = 13, spiking neurons = 8 + 3 = 11
    assert report.memory_access_ratio == pytest.approx((2 * (48 + 13) + 2 * 1 * 11) / (48 + 13))
    snn.timesteps = 1
    assert energy_report(snn, torch.zeros(1, 1, 4, 4), [0.5, 0.25]).memory_access_ratio == 1.0


def test_calibration_uses_the_percentile_of_activations():
    ann = nn.Sequential(nn.Linear(1, 1, bias=False), nn.ReLU())
    with torch.no_grad():
        ann[0].weight.fill_(1.0)
    data = torch.arange(1, 101, dtype=torch.float32).reshape(100, 1)
    assert calibrate(ann, data, 90)[0] == pytest.approx(90.1)
    sparse = torch.cat([torch.zeros(2000, 1), data])  # 95 % zeros: the percentile of the positive ones, not the max
    assert calibrate(ann, sparse, 95)[0] == pytest.approx(95.05)
    assert calibrate(ann, torch.zeros(10, 1), 90) == [1.0]  # a silent layer


def test_schedule_parsing_and_stages():
    assert parse_schedule("5,4,3,2,1") == [5, 4, 3, 2, 1]
    assert parse_schedule([5, 3, 1]) == [5, 3, 1]
    for bad in ("5,5,1", "1,3", "a,b", "", "3,0"):
        with pytest.raises(ValueError):
            parse_schedule(bad)
    assert stages_to([5, 4, 3, 2, 1], 3) == [5, 4, 3]
    assert stages_to([5, 3, 1], 2) == [5, 3, 2]
    with pytest.raises(ValueError):
        stages_to([5, 3, 1], 6)


def test_stage_loop_starts_each_stage_from_the_previous_and_reports_silence(caplog):
    torch.manual_seed(0)
    snn = convert(nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 1)), 5)
    x = torch.randn(32, 2)
    seen, ends = [], {}

    def train(t: int) -> None:
        seen.append((t, snn.timesteps, snn.tail[0].weight.detach().clone()))
        with torch.no_grad():
            snn.tail[0].weight.add_(1.0)
        ends[t] = snn.tail[0].weight.detach().clone()

    def probe() -> list[float]:
        if snn.timesteps == 1:
            with torch.no_grad():
                snn.neurons()[1].threshold.fill_(1e6)
        with recording(snn), torch.no_grad():
            snn(x)
        return snn.spike_rates()

    stages = run_stages([5, 3, 1], lambda t: setattr(snn, "timesteps", t), probe, train,
                        lambda t: {"t": t})
    assert [s.timesteps for s in stages] == [5, 3, 1]
    assert [s.metrics for s in stages] == [{"t": 5}, {"t": 3}, {"t": 1}]
    assert [t == tt for t, tt, _ in seen] == [True] * 3
    torch.testing.assert_close(seen[1][2], ends[5])
    torch.testing.assert_close(seen[2][2], ends[3])
    assert stages[2].silent_layer == 1 and stages[0].silent_layer is None
    assert "spikes vanish at spiking layer 1" in caplog.text
