"""The thirty-fourth session's frame-stack transposes through OpenCV's channel merge (`to_hwc`) against numpy's
transposing copies, as before: first the replay buffer's `add` and a decision's input preparation alone, then the
ANN path learning with both changes against it with neither, in alternating chunks of 250 env steps in one process
as bench/pong_throughput.py times its models (the `pong` preset's ANN settings, buffer slots written before timing).

    python docs/results/bench-s34/ab_hwc.py [--steps 12000]
"""
from __future__ import annotations

import argparse
import timeit
from typing import Any

import numpy as np
import torch
from paired import compare
from spiking_dqn.agents.buffers import ChannelsLastNStepReplayBuffer, ChannelsLastReplayBuffer, to_hwc
from spiking_dqn.agents.dqn import IIRDQN
from spiking_dqn.agents.pipeline import dqn_kwargs
from spiking_dqn.agents.policy import IIRPolicy
from spiking_dqn.envs import make_env

from spiking_dqn.config import load_preset


class TransposingBuffer(ChannelsLastNStepReplayBuffer):
    """The channels-last n-step buffer adding frames through numpy's transposing copy, as before."""

    def add(self, obs: np.ndarray, next_obs: np.ndarray, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        super(ChannelsLastReplayBuffer, self).add(obs.transpose(0, 2, 3, 1), next_obs.transpose(0, 2, 3, 1),
                                                  *args, **kwargs)


def alone() -> None:
    """Microseconds per buffer add and per decision input, each way."""
    obs = np.random.default_rng(0).integers(0, 256, (1, 4, 84, 84), dtype=np.uint8)
    slot = np.empty((1, 84, 84, 4), np.uint8)

    def numpy_add() -> None:
        slot[:] = obs.transpose(0, 2, 3, 1)

    def merge_add() -> None:
        slot[:] = to_hwc(obs)

    def numpy_input() -> torch.Tensor:
        return (torch.as_tensor(obs).float() / 255.0).contiguous(memory_format=torch.channels_last)

    def merge_input() -> torch.Tensor:
        x = torch.as_tensor(to_hwc(obs)).permute(0, 3, 1, 2).float() / 255.0
        return x.contiguous(memory_format=torch.channels_last)

    for name, f in (("frame stack into a buffer slot, numpy", numpy_add), ("the same, to_hwc", merge_add),
                    ("decision input, numpy", numpy_input), ("the same, to_hwc", merge_input)):
        best = min(timeit.repeat(f, number=2000, repeat=5)) / 2000 * 1e6
        print(f"{name:40s} {best:6.1f} us (best of 5 x 2000)")


def main() -> None:
    """Time the pieces alone, then both ANN paths learning, and print the rates and ratios."""
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=12000)
    args = p.parse_args()
    alone()
    cfg = {**load_preset("pong"), "device": "cpu"}
    ann = dqn_kwargs(cfg, cfg["ann"], spiking=False)
    models = {"to_hwc": IIRDQN(IIRPolicy, make_env("pong"), seed=0, **ann),
              "numpy": IIRDQN(IIRPolicy, make_env("pong"), seed=0, **{**ann, "replay_buffer_class": TransposingBuffer})}
    models["numpy"].policy.channels_last = False  # predict hands over CHW frames; QNet transposes them as floats
    compare(models, "to_hwc", "numpy", args.steps)


if __name__ == "__main__":
    main()
