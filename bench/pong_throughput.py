"""Pong DQN training throughput (env steps/s while learning): stock SB3 DQN("CnnPolicy") vs spiking-dqn's
ANN path (IIRDQN + Nature-DQN with fused Adam, bfloat16 autocast, channels_last), same hyperparameters,
measured one after the other in one process; optionally the spiking T5 stage too. Prints the ratio.

    python bench/pong_throughput.py [--steps 3000] [--warmup 1500] [--snn]
"""
from __future__ import annotations

import argparse
import time

import torch
from spiking_dqn.agents.dqn import IIRDQN
from spiking_dqn.agents.policy import IIRPolicy
from spiking_dqn.envs import make_env
from stable_baselines3 import DQN

COMMON = {"learning_rate": 1e-4, "batch_size": 32, "buffer_size": 100_000, "optimize_memory_usage": True,
          "replay_buffer_kwargs": {"handle_timeout_termination": False}, "target_update_interval": 1000,
          "train_freq": 4, "gradient_steps": 1, "exploration_fraction": 0.1, "exploration_final_eps": 0.01,
          "seed": 0, "verbose": 0}


def rate(model: DQN, warmup: int, steps: int) -> float:
    """Env steps per second over `steps` learning steps, after `warmup` steps that fill the buffer."""
    model.learning_starts = warmup // 2
    model.learn(warmup)
    start = time.perf_counter()
    model.learn(steps, reset_num_timesteps=False)
    return steps / (time.perf_counter() - start)


def main() -> None:
    """Run the comparison and print env steps/s and the ratio."""
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--warmup", type=int, default=1500)
    p.add_argument("--snn", action="store_true", help="also time the spiking T5 stage")
    args = p.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device cpu")
    stock = rate(DQN("CnnPolicy", make_env("pong"), **COMMON), args.warmup, args.steps)
    print(f"stock SB3 DQN(CnnPolicy):            {stock:7.1f} env steps/s")
    fast_kwargs = {"optimizer_kwargs": {"fused": True}, "arch": "nature", "hidden": [], "channels_last": True}
    ours = rate(IIRDQN(IIRPolicy, make_env("pong"), bf16=True, policy_kwargs=fast_kwargs, **COMMON),
                args.warmup, args.steps)
    print(f"spiking-dqn ANN (fused, bf16, NHWC): {ours:7.1f} env steps/s   ratio {ours / stock:.2f}x")
    if args.snn:
        snn = rate(IIRDQN(IIRPolicy, make_env("pong"), bf16=True, policy_kwargs={**fast_kwargs, "timesteps": 5},
                          **COMMON), args.warmup, args.steps)
        print(f"spiking-dqn SNN T5 stage:            {snn:7.1f} env steps/s   ratio {snn / stock:.2f}x")


if __name__ == "__main__":
    main()
