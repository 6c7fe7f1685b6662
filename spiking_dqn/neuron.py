"""The IIR leaky integrate-and-fire neuron: learnable threshold and leak, soft reset, linear surrogate."""
from __future__ import annotations

import torch
from torch import nn

GAMMA = 0.3


class SpikeFn(torch.autograd.Function):
    """Heaviside spike on z = u/v - 1 with the surrogate gradient gamma * max(0, 1 - |z|)."""

    @staticmethod
    def forward(ctx, z: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(z)
        return (z > 0).to(z.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        (z,) = ctx.saved_tensors
        return grad * GAMMA * torch.clamp(1.0 - z.abs(), min=0.0)


spike = SpikeFn.apply


class IIRNeuron(nn.Module):
    """A layer of LIF neurons sharing one learnable threshold and one learnable leak.

    Input is the current of every timestep, shape [T, B, ...]; output the binary spikes, same shape.
    """

    def __init__(self, threshold: float = 1.0, leak: float = 1.0) -> None:
        super().__init__()
        self.threshold = nn.Parameter(torch.tensor(float(threshold)))
        self.leak = nn.Parameter(torch.tensor(float(leak)))
        self.record = False
        self.spike_sum = 0.0
        self.samples = 0
        self.neurons = 0

    def forward(self, current: torch.Tensor) -> torch.Tensor:
        """Integrate, spike in the same step, soft-reset; loop over T elementwise only."""
        v, leak = self.threshold, self.leak
        u = torch.zeros_like(current[0])
        out = []
        for t in range(current.shape[0]):
            u = leak * u + current[t]
            o = spike(u / v - 1.0)
            u = u - v * o
            out.append(o)
        spikes = torch.stack(out)
        if self.record:
            self.spike_sum += float(spikes.detach().sum())
            self.samples += spikes.shape[1]
            self.neurons = spikes[0, 0].numel()
        return spikes

    def reset_stats(self) -> None:
        """Forget the spikes counted so far."""
        self.spike_sum, self.samples = 0.0, 0

    def spike_rate(self) -> float:
        """Spikes per neuron per inference, summed over T (the paper's definition)."""
        return self.spike_sum / max(1, self.samples * self.neurons)

    @torch.no_grad()
    def clamp_(self, min_threshold: float = 1e-3) -> None:
        """Keep leak <= 1 and the threshold positive (applied after each optimiser step)."""
        self.leak.clamp_(max=1.0)
        self.threshold.clamp_(min=min_threshold)

    def extra_repr(self) -> str:
        return f"threshold={self.threshold.item():.4g}, leak={self.leak.item():.4g}"
