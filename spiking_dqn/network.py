"""Running a spiking network for T timesteps: time-major layers, readout and spike-rate probes."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from spiking_dqn.neuron import IIRNeuron


class Residual(nn.Module):
    """ANN residual block: main(x) + shortcut(x); the ReLU after it is a separate layer."""

    def __init__(self, main: nn.Sequential, shortcut: nn.Module | None = None) -> None:
        super().__init__()
        self.main = main
        self.shortcut = shortcut if shortcut is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x) + self.shortcut(x)


class Folded(nn.Module):
    """Apply a stateless layer to all timesteps at once by folding T into the batch."""

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x.flatten(0, 1)).unflatten(0, x.shape[:2])


class TimeDropout(nn.Module):
    """Dropout with one mask per forward, shared by every timestep of a [T, B, ...] input."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        mask = torch.bernoulli(torch.full_like(x[0], 1 - self.p)) / (1 - self.p)
        return x * mask


class Scale(nn.Module):
    """Multiply by a learnable scalar (an identity shortcut carrying spikes back to current units)."""

    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = nn.Parameter(torch.tensor(float(value)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.value


class SpikingResidual(nn.Module):
    """Spiking residual block on [T, B, ...] tensors: the two branches' currents are summed."""

    def __init__(self, main: nn.Sequential, shortcut: nn.Module) -> None:
        super().__init__()
        self.main = main
        self.shortcut = shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x) + self.shortcut(x)


class SpikingNetwork(nn.Module):
    """A converted network run for `timesteps` steps with direct input encoding.

    head: analog layers before the first neuron, computed once per input (same current every step);
    body: time-major layers on [T, B, ...]; tail: the non-spiking output layers, applied to the mean over
    T of their input, which equals the mean over T of the output currents because the tail is linear.
    """

    def __init__(
        self,
        head: nn.Sequential,
        body: nn.Sequential,
        tail: nn.Sequential,
        timesteps: int,
        weight_sources: list[int | None],
    ) -> None:
        super().__init__()
        self.head, self.body, self.tail = head, body, tail
        self.timesteps = timesteps
        self.weight_sources = weight_sources

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        current = self.head(x)
        spikes = self.body(current.unsqueeze(0).expand(self.timesteps, *current.shape))
        return self.tail(spikes.mean(0))

    def neurons(self) -> list[IIRNeuron]:
        """The spiking layers in order."""
        return [m for m in self.modules() if isinstance(m, IIRNeuron)]

    def weight_layers(self) -> list[nn.Module]:
        """Conv/Linear layers in order; `weight_sources[i]` is the neuron feeding layer i (None: analog)."""
        return [m for m in self.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]

    def clamp_(self) -> None:
        """Apply every neuron's leak and threshold constraints."""
        for n in self.neurons():
            n.clamp_()

    def spike_rates(self) -> list[float]:
        """Per-layer spike rates counted since recording started."""
        return [n.spike_rate() for n in self.neurons()]

    def layer_stats(self) -> dict[str, float]:
        """Spike rate (since recording started), threshold and leak of every spiking layer, for logging."""
        stats = {}
        for k, n in enumerate(self.neurons()):
            stats.update({f"spike_rate/layer{k}": n.spike_rate(), f"threshold/layer{k}": n.threshold.item(),
                          f"leak/layer{k}": n.leak.item()})
        return stats


@contextmanager
def recording(net: SpikingNetwork) -> Iterator[SpikingNetwork]:
    """Count spikes of every layer inside the block; read them with `net.spike_rates()`."""
    for n in net.neurons():
        n.reset_stats()
        n.record = True
    try:
        yield net
    finally:
        for n in net.neurons():
            n.record = False


def silent_layer(rates: list[float]) -> int | None:
    """Index of the first spiking layer that emitted no spike (spikes vanish there), else None."""
    return next((i for i, r in enumerate(rates) if r == 0.0), None)


def clamp_after_step(optimizer: torch.optim.Optimizer, *nets: SpikingNetwork) -> None:
    """Register a hook so every optimiser step is followed by the neurons' leak/threshold clamp."""

    def hook(*_: object) -> None:
        for net in nets:
            net.clamp_()

    optimizer.register_step_post_hook(hook)
