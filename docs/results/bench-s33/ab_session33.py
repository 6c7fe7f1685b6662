"""The thirty-third session's two changes to the ANN path, each undone on its own, timed interleaved in one process
as bench/pong_throughput.py times its models (the `pong` preset's ANN settings, buffer slots written before timing).

    python docs/results/bench-s33/ab_session33.py [--steps 3000] [--warmup 1000] [--chunk 250]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from spiking_dqn.agents.buffers import ChannelsLastNStepReplayBuffer
from spiking_dqn.agents.dqn import IIRDQN
from spiking_dqn.agents.pipeline import dqn_kwargs
from spiking_dqn.agents.policy import IIRPolicy, QNet
from spiking_dqn.envs import make_env
from stable_baselines3.common.buffers import ReplayBuffer

from spiking_dqn.config import load_preset

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "bench"))
from pong_throughput import rates


class ModuleCalls(QNet):
    """The decision as before: the Sequential's module calls, a new tensor per ReLU."""

    def _predict(self, observation: torch.Tensor, deterministic: bool = True) -> torch.Tensor:
        return self(observation).argmax(dim=1).reshape(-1)


class ModuleCallsPolicy(IIRPolicy):
    """IIRPolicy whose Q-networks decide through module calls."""

    def make_q_net(self) -> QNet:  # type: ignore[override]
        q = super().make_q_net()
        q.__class__ = ModuleCalls
        return q


class CopyingBuffer(ChannelsLastNStepReplayBuffer):
    """The channels-last n-step buffer with SB3's copy of every sampled array."""

    def to_torch(self, array: np.ndarray, copy: bool = True) -> torch.Tensor:
        return ReplayBuffer.to_torch(self, array, copy)


def main() -> None:
    """Print env steps/s of the ANN path and of each change undone, with ratios to the first."""
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--warmup", type=int, default=1000)
    p.add_argument("--chunk", type=int, default=250)
    args = p.parse_args()
    cfg = {**load_preset("pong"), "device": "cpu"}
    ann = dqn_kwargs(cfg, cfg["ann"], spiking=False)
    models = {"ANN path (this session)": IIRDQN(IIRPolicy, make_env("pong"), seed=0, **ann),
              "decisions through module calls": IIRDQN(ModuleCallsPolicy, make_env("pong"), seed=0, **ann),
              "samples copied as SB3 copies them": IIRDQN(IIRPolicy, make_env("pong"), seed=0,
                                                          **{**ann, "replay_buffer_class": CopyingBuffer})}
    result = rates(models, args.warmup, args.steps, args.chunk)
    base = result["ANN path (this session)"]
    for name, value in result.items():
        print(f"{name:36s} {value:7.1f} env steps/s   ratio {value / base:.3f}x")


if __name__ == "__main__":
    main()
