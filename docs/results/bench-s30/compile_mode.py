"""The ANN phase's env steps/s with the update's forwards compiled in torch.compile's default mode against a
given mode (e.g. max-autotune), interleaved as bench/pong_throughput.py does. Scratch for pong.md's thirtieth
session, not the package's code.

    python docs/results/bench-s30/compile_mode.py max-autotune
"""
import sys
from pathlib import Path

import torch
from spiking_dqn.agents.dqn import IIRDQN
from spiking_dqn.agents.pipeline import dqn_kwargs
from spiking_dqn.agents.policy import IIRPolicy
from spiking_dqn.envs import make_env

from spiking_dqn.config import load_preset

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "bench"))
from pong_throughput import rates


class Tuned(IIRDQN):
    """IIRDQN whose q_values compile in the mode given on the command line."""

    def train(self, gradient_steps: int, batch_size: int = 100) -> None:
        if self.compile and self._compiled_q_values is None:
            self._compiled_q_values = torch.compile(self.q_values, dynamic=False, mode=sys.argv[1])
        super().train(gradient_steps, batch_size)


cfg = {**load_preset("pong"), "device": "cpu"}
ann = dqn_kwargs(cfg, cfg["ann"], spiking=False)
models = {"default": IIRDQN(IIRPolicy, make_env("pong"), seed=0, device="cpu", **ann),
          sys.argv[1]: Tuned(IIRPolicy, make_env("pong"), seed=0, device="cpu", **ann)}
for name, value in rates(models, 1000, 2000, 250).items():
    print(name, f"{value:.1f}")
