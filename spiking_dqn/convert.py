"""ANN -> SNN conversion: batch-norm fusion, channel equalisation, data-based threshold calibration, weight rescaling.

Units: every current in the SNN is in the ANN's pre-activation units. A neuron with threshold v fires at a
rate of about a/v for an ANN activation a, so each weight layer fed by spikes has its weights multiplied by
the threshold of the neuron feeding it (an identity shortcut gets a Scale). Biases stay as they are, so the
mean over T of every current converges to the ANN's pre-activation, output included, as T grows.
"""
from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence

import torch
from torch import nn

from spiking_dqn.network import Folded, Residual, Scale, SpikingNetwork, SpikingResidual, TimeDropout
from spiking_dqn.neuron import IIRNeuron

WEIGHTED = (nn.Conv2d, nn.Linear)
STATELESS = (nn.Conv2d, nn.Linear, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.Flatten, nn.Identity, nn.Dropout)
PER_CHANNEL = (nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.Flatten, nn.Identity, nn.Dropout)  # keep channels apart


def _fuse_pair(layer: nn.Conv2d | nn.Linear, bn: nn.BatchNorm1d | nn.BatchNorm2d) -> nn.Module:
    """Fold an eval-mode batch norm into the layer before it."""
    fused = copy.deepcopy(layer)
    scale = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)
    bias = layer.bias.detach() if layer.bias is not None else torch.zeros_like(bn.running_mean)
    shape = (-1,) + (1,) * (layer.weight.dim() - 1)
    fused.weight = nn.Parameter(layer.weight.detach() * scale.reshape(shape))
    fused.bias = nn.Parameter((bias - bn.running_mean) * scale + bn.bias.detach())
    return fused


def fuse_bn(model: nn.Module) -> nn.Module:
    """A copy of `model` with every BatchNorm fused into the Conv/Linear before it (exact in eval mode)."""
    if isinstance(model, Residual):
        return Residual(fuse_bn(model.main), fuse_bn(model.shortcut))
    if not isinstance(model, nn.Sequential):
        return copy.deepcopy(model)
    out: list[nn.Module] = []
    for layer in model:
        if isinstance(layer, (nn.BatchNorm1d, nn.BatchNorm2d)):
            if not out or not isinstance(out[-1], WEIGHTED):
                raise ValueError("a BatchNorm must follow a Conv2d or Linear layer to be fused")
            out[-1] = _fuse_pair(out[-1], layer)
        else:
            out.append(fuse_bn(layer))
    return nn.Sequential(*out)


@torch.no_grad()
def _outputs(ann: nn.Module, modules: list[nn.Module], data: torch.Tensor, batch_size: int) -> list[list[torch.Tensor]]:
    """Each module's float outputs, batch by batch, while the ANN (in eval mode) runs over `data`."""
    seen: list[list[torch.Tensor]] = [[] for _ in modules]
    hooks = [m.register_forward_hook(lambda _m, _i, out, k=k: seen[k].append(out.detach().float()))
             for k, m in enumerate(modules)]
    was_training = ann.training
    ann.eval()
    try:
        for start in range(0, len(data), batch_size):
            ann(data[start:start + batch_size])
    finally:
        for h in hooks:
            h.remove()
        ann.train(was_training)
    return seen


@torch.no_grad()
def calibrate(ann: nn.Module, data: torch.Tensor, percentile: float, batch_size: int = 256,
              max_values: int = 4_000_000) -> list[float]:
    """Per-ReLU threshold: the percentile of the layer's activations on `data` (of its positive ones where that is 0)."""
    relus = [m for m in ann.modules() if isinstance(m, nn.ReLU)]
    thresholds = []
    gen = torch.Generator().manual_seed(0)
    for outputs in _outputs(ann, relus, data, batch_size):
        v = torch.cat([o.flatten() for o in outputs])
        if v.numel() > max_values:
            v = v[torch.randint(v.numel(), (max_values,), generator=gen)]
        t = float(torch.quantile(v, percentile / 100.0))
        if t <= 0:  # a sparse layer, zero at its percentile: the percentile of its positive activations
            positive = v[v > 0]  # (as the SNN toolbox of Rueckauer et al. 2017 takes for every layer)
            t = float(torch.quantile(positive, percentile / 100.0)) if positive.numel() else 1.0
        thresholds.append(t)
    return thresholds


def _pairs(model: nn.Module) -> Iterator[tuple[nn.Module, nn.ReLU, nn.Module]]:
    """(producer, ReLU, consumer) triples of weight layers joined by one ReLU and per-channel layers only
    (none into a grouped convolution, whose weights do not hold every input channel)."""
    if isinstance(model, Residual):
        yield from _pairs(model.main)
        return
    if not isinstance(model, nn.Sequential):
        return
    layers = list(model)
    for i, layer in enumerate(layers):
        yield from _pairs(layer)
        if isinstance(layer, WEIGHTED) and i + 1 < len(layers) and isinstance(layers[i + 1], nn.ReLU):
            k = i + 2
            while k < len(layers) and isinstance(layers[k], PER_CHANNEL):
                k += 1
            if k < len(layers) and isinstance(layers[k], WEIGHTED) and getattr(layers[k], "groups", 1) == 1:
                yield layer, layers[i + 1], layers[k]


@torch.no_grad()
def equalize(ann: nn.Module, data: torch.Tensor, percentile: float, power: float, batch_size: int = 256,
             max_values: int = 4_000_000) -> nn.Module:
    """A copy of a fused ANN computing the same function, each ReLU channel scaled by (layer's percentile /
    channel's percentile) ** power and the next weight layer's inputs by the inverse (ReLU is positively
    homogeneous), so that one threshold per layer serves every channel: channel-wise normalisation (Kim et al.
    2020, Spiking-YOLO) at power 1, off at 0."""
    ann = copy.deepcopy(ann).eval()
    pairs = list(_pairs(ann))
    gen = torch.Generator().manual_seed(0)
    for (producer, _, consumer), outputs in zip(pairs, _outputs(ann, [relu for _, relu, _ in pairs], data, batch_size)):
        v = torch.cat([o.transpose(0, 1).reshape(o.shape[1], -1) for o in outputs], dim=1)  # channel x values
        if v.numel() > max_values:
            v = v[:, torch.randint(v.shape[1], (max_values // v.shape[0],), generator=gen)]
        ref = torch.quantile(v.flatten(), percentile / 100.0)
        per_channel = torch.quantile(v, percentile / 100.0, dim=1)
        if ref <= 0:
            continue
        s = torch.where(per_channel > 0, (ref / per_channel.clamp(min=1e-12)) ** power, torch.ones_like(per_channel))
        producer.weight.mul_(s.reshape(-1, *(1,) * (producer.weight.dim() - 1)))
        if producer.bias is not None:
            producer.bias.mul_(s)
        if isinstance(consumer, nn.Linear):
            consumer.weight.div_(s.repeat_interleave(consumer.in_features // s.numel()))
        else:
            consumer.weight.div_(s.reshape(1, -1, 1, 1))
    return ann


class _Walk:
    """State of one conversion pass: thresholds to hand out, neuron count, weight-layer sources."""

    def __init__(self, thresholds: Iterator[float]) -> None:
        self.thresholds = thresholds
        self.neurons = 0
        self.sources: list[int | None] = []

    def sequence(self, layers: nn.Sequential, scale: float, source: int | None,
                 time_major: bool) -> tuple[list[nn.Module], float, int | None]:
        """Convert a sequence; returns modules, the scale and the spike source of its output."""
        out: list[nn.Module] = []
        for layer in layers:
            module, scale, source = self.layer(layer, scale, source, time_major)
            out.append(module)
        return out, scale, source

    def layer(self, layer: nn.Module, scale: float, source: int | None,
              time_major: bool) -> tuple[nn.Module, float, int | None]:
        """Convert one ANN layer given the scale of its input (1: currents/analog, v: spikes of threshold v)."""
        if isinstance(layer, nn.ReLU):
            threshold = float(next(self.thresholds))
            self.neurons += 1
            return IIRNeuron(threshold=threshold), threshold, self.neurons - 1
        if isinstance(layer, Residual):
            main, _, _ = self.sequence(layer.main, scale, source, True)
            if isinstance(layer.shortcut, nn.Identity):
                shortcut: nn.Module = Scale(scale)
            else:
                seq = layer.shortcut if isinstance(layer.shortcut, nn.Sequential) else nn.Sequential(layer.shortcut)
                shortcut = nn.Sequential(*self.sequence(seq, scale, source, True)[0])
            return SpikingResidual(nn.Sequential(*main), shortcut), 1.0, None
        if isinstance(layer, nn.Sequential):
            mods, scale, source = self.sequence(layer, scale, source, time_major)
            return nn.Sequential(*mods), scale, source
        if not isinstance(layer, STATELESS):
            raise TypeError(f"cannot convert layer {type(layer).__name__}")
        module = copy.deepcopy(layer)
        if isinstance(layer, WEIGHTED):
            with torch.no_grad():
                module.weight.mul_(scale)
            self.sources.append(source)
            scale, source = 1.0, None
        if not time_major:
            return module, scale, source
        if isinstance(layer, nn.Dropout):
            return TimeDropout(layer.p), scale, source
        return Folded(module), scale, source


def convert(ann: nn.Module, timesteps: int, data: torch.Tensor | None = None, percentile: float = 90.0,
            thresholds: Sequence[float] | None = None, equalize_power: float = 0.0) -> SpikingNetwork:
    """Convert an ANN (Sequential of Conv/Linear/BN/ReLU/AvgPool/Flatten/Dropout/Residual) to an SNN.

    Thresholds come from `thresholds`, else from `data` at `percentile`, else are 1.0 (structure only,
    e.g. before loading a state dict). `equalize_power` > 0 first equalises the channels on `data`.
    """
    fused = fuse_bn(ann)
    if not isinstance(fused, nn.Sequential):
        fused = nn.Sequential(fused)
    if equalize_power > 0:
        if data is None:
            raise ValueError("channel equalisation needs calibration data")
        fused = equalize(fused, data, percentile, equalize_power)
    if thresholds is None and data is not None:
        thresholds = calibrate(fused, data, percentile)
    n_relu = sum(isinstance(m, nn.ReLU) for m in fused.modules())
    values = list(thresholds) if thresholds is not None else [1.0] * n_relu
    if len(values) != n_relu:
        raise ValueError(f"{len(values)} thresholds given for {n_relu} ReLU layers")
    walk = _Walk(iter(values))
    top = list(fused)
    stateful = [i for i, layer in enumerate(top) if _stateful_ann(layer)]
    first = stateful[0] if stateful else len(top)
    last = stateful[-1] if stateful else len(top) - 1
    scale, source = 1.0, None
    head, scale, source = walk.sequence(nn.Sequential(*top[:first]), scale, source, False)
    body, scale, source = walk.sequence(nn.Sequential(*top[first:last + 1]), scale, source, True)
    tail, _, _ = walk.sequence(nn.Sequential(*top[last + 1:]), scale, source, False)
    snn = SpikingNetwork(nn.Sequential(*head), nn.Sequential(*body), nn.Sequential(*tail), timesteps, walk.sources)
    return snn.train(ann.training)


def _stateful_ann(layer: nn.Module) -> bool:
    """True if the ANN layer becomes (or contains) a spiking layer."""
    return any(isinstance(m, nn.ReLU) for m in layer.modules())
