"""Callbacks: TensorBoard logging of the spiking layers; periodic checkpoints for resuming."""
from __future__ import annotations

from collections.abc import Callable

import torch
from stable_baselines3.common.callbacks import BaseCallback

from spiking_dqn.network import SpikingNetwork, recording


class SpikeLogger(BaseCallback):
    """Every `every` env steps, record each layer's threshold, leak and spike rate on probe states."""

    def __init__(self, net: SpikingNetwork, probe: torch.Tensor, every: int = 1000) -> None:
        super().__init__()
        self.net, self.probe, self.every = net, probe[:256], every

    def _on_step(self) -> bool:
        if self.n_calls % self.every == 0:
            with recording(self.net), torch.no_grad():
                self.net(self.probe)
            for key, value in self.net.layer_stats().items():
                self.logger.record(f"snn/{key}", value)
        return True


class Checkpoint(BaseCallback):
    """Call `save` every `every` env steps (0: never), so an interrupted phase resumes from there."""

    def __init__(self, every: int, save: Callable[[], None]) -> None:
        super().__init__()
        self.every, self.save = every, save
        self.last = 0

    def _on_training_start(self) -> None:
        self.last = self.num_timesteps

    def _on_step(self) -> bool:
        if self.every > 0 and self.num_timesteps - self.last >= self.every:
            self.last = self.num_timesteps
            self.save()
        return True
