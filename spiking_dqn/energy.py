"""Energy accounting (paper section 5, A.4): operation counts, energy ratio alpha, memory accesses."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from spiking_dqn.network import SpikingNetwork
from spiking_dqn.neuron import IIRNeuron

MAC_PJ = 4.6  # 32-bit float multiply-accumulate, 45 nm
ADD_PJ = 0.9  # 32-bit float addition, 45 nm


@dataclass
class Shapes:
    """Per-inference sizes of a network: ANN ops and outputs per weight layer, neurons per spiking layer."""

    ops: list[int]
    outputs: list[int]
    params: int
    neurons: list[int]


@torch.no_grad()
def measure_shapes(model: nn.Module, example: torch.Tensor) -> Shapes:
    """Count ANN ops per Conv/Linear layer (paper A.4) with one forward pass of a single example."""
    ops: list[int] = []
    outputs: list[int] = []
    neurons: list[int] = []

    def on_weight(m: nn.Module, _i: object, out: torch.Tensor) -> None:
        per_sample = out[0].numel()
        if isinstance(m, nn.Conv2d):
            kh, kw = m.kernel_size
            ops.append(kh * kw * (m.in_channels // m.groups) * per_sample)
        else:
            ops.append(m.in_features * m.out_features)
        outputs.append(per_sample)

    hooks = [m.register_forward_hook(on_weight) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    hooks += [m.register_forward_hook(lambda _m, _i, out: neurons.append(out[0, 0].numel()))
              for m in model.modules() if isinstance(m, IIRNeuron)]
    was_training = model.training
    model.eval()
    try:
        model(example[:1])
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    params = sum(m.weight.numel() for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))
    return Shapes(ops, outputs, params, neurons)


@dataclass
class EnergyReport:
    """ANN and SNN op counts per weight layer and the resulting ratios (ANN / SNN)."""

    ann_ops: list[int]
    snn_ops: list[float]
    energy_ratio: float
    memory_access_ratio: float


def energy_report(net: SpikingNetwork, example: torch.Tensor, spike_rates: list[float]) -> EnergyReport:
    """Paper eq. 4: alpha = sum(ANN ops) * 4.6 / (analog-input layers' ops * 4.6 + rest * 0.9).

    SNN ops of a layer = spike rate of the neuron layer feeding it x its ANN ops; a layer fed by analog
    values (the first layer) costs MACs. Memory accesses (a model, stated here): an ANN reads its weights
    and writes its outputs once (W + N); an SNN does so at each of T steps and also stores and reloads each
    neuron's membrane potential between steps: T (W + N) + 2 (T - 1) N_spiking. At T = 1 both are equal.
    """
    shapes = measure_shapes(net, example)
    snn_ops: list[float] = []
    energy = 0.0
    for ops, source in zip(shapes.ops, net.weight_sources):
        if source is None:
            snn_ops.append(float(ops))
            energy += ops * MAC_PJ
        else:
            snn_ops.append(spike_rates[source] * ops)
            energy += spike_rates[source] * ops * ADD_PJ
    alpha = sum(shapes.ops) * MAC_PJ / energy if energy > 0 else float("inf")
    t = net.timesteps
    ann_mem = shapes.params + sum(shapes.outputs)
    snn_mem = t * ann_mem + 2 * (t - 1) * sum(shapes.neurons)
    return EnergyReport(shapes.ops, snn_ops, alpha, snn_mem / ann_mem)
