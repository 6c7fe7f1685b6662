"""Pong DQN training throughput (env steps/s while learning): stock SB3 DQN("CnnPolicy") vs spiking-dqn's
ANN path (IIRDQN + Nature-DQN with fused Adam, channels_last, bfloat16 autocast where the CPU computes it
natively, as `bf16: auto`), same hyperparameters,
optionally the spiking T5 stage too. The models learn in alternating chunks in one process, so a change in
machine load during the run hits all of them alike. Prints the rates and the ratios to stock.

    python bench/pong_throughput.py [--steps 3000] [--warmup 1500] [--chunk 250] [--snn]
"""
from __future__ import annotations

import argparse
import time

import torch
from spiking_dqn.agents.dqn import IIRDQN, native_bf16
from spiking_dqn.agents.policy import IIRPolicy
from spiking_dqn.envs import make_env
from stable_baselines3 import DQN

COMMON = {"learning_rate": 1e-4, "batch_size": 32, "buffer_size": 100_000, "optimize_memory_usage": True,
          "replay_buffer_kwargs": {"handle_timeout_termination": False}, "target_update_interval": 1000,
          "train_freq": 4, "gradient_steps": 1, "exploration_fraction": 0.1, "exploration_final_eps": 0.01,
          "seed": 0, "verbose": 0}


def rates(models: dict[str, DQN], warmup: int, steps: int, chunk: int) -> dict[str, float]:
    """Env steps per second of each model over `steps` learning steps taken in alternating chunks."""
    for model in models.values():
        model.learning_starts = warmup // 2
        model.learn(warmup)
    spent = dict.fromkeys(models, 0.0)
    for _ in range(steps // chunk):
        for name, model in models.items():
            start = time.perf_counter()
            model.learn(chunk, reset_num_timesteps=False)
            spent[name] += time.perf_counter() - start
    return {name: (steps // chunk) * chunk / t for name, t in spent.items()}


def main() -> None:
    """Run the comparison and print env steps/s and the ratio."""
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--warmup", type=int, default=1500)
    p.add_argument("--chunk", type=int, default=250)
    p.add_argument("--snn", action="store_true", help="also time the spiking T5 stage")
    args = p.parse_args()
    bf16 = native_bf16("cpu")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device cpu, bfloat16 autocast: {bf16}")
    fast = {"optimizer_kwargs": {"fused": True}, "arch": "nature", "hidden": [], "channels_last": True}
    models = {"stock SB3 DQN(CnnPolicy)": DQN("CnnPolicy", make_env("pong"), **COMMON),
              f"spiking-dqn ANN (fused, NHWC{', bf16' if bf16 else ''})": IIRDQN(IIRPolicy, make_env("pong"), bf16=bf16,
                                                                               policy_kwargs=fast, **COMMON)}
    if args.snn:
        models["spiking-dqn SNN T5 stage"] = IIRDQN(IIRPolicy, make_env("pong"), bf16=bf16,
                                                    policy_kwargs={**fast, "timesteps": 5}, **COMMON)
    result = rates(models, args.warmup, args.steps, args.chunk)
    stock = result["stock SB3 DQN(CnnPolicy)"]
    for name, value in result.items():
        print(f"{name:38s} {value:7.1f} env steps/s   ratio {value / stock:.2f}x")


if __name__ == "__main__":
    main()
