"""Two ANN paths learning Pong in alternating chunks of 250 env steps in one process, the order swapped every pair, as
bench/pong_throughput.py times its models (buffer slots for the timed steps written before timing)."""
from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

from stable_baselines3 import DQN

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "bench"))
from pong_throughput import touch


def compare(models: dict[str, DQN], new: str, old: str, steps: int) -> None:
    """Time `new` against `old` (keys of `models`) over `steps` learning env steps each and print the rates, the
    overall ratio and the quartiles of the per-pair ratios."""
    for model in models.values():
        model.learning_starts = 500
        model.learn(1000)
        touch(model.replay_buffer, steps)
    spent, ratios = dict.fromkeys(models, 0.0), []
    for chunk in range(steps // 250):
        took = {}
        for name, model in (models.items() if chunk % 2 else reversed(models.items())):
            start = time.perf_counter()
            model.learn(250, reset_num_timesteps=False)
            took[name] = time.perf_counter() - start
            spent[name] += took[name]
        ratios.append(took[old] / took[new])
    for name, t in spent.items():
        print(f"{name:7s} {steps / t:6.1f} env steps/s")
    print(f"{new} vs {old}: {spent[old] / spent[new]:.3f}x overall; per chunk pair, quartiles "
          + ", ".join(f"{q:.3f}" for q in statistics.quantiles(ratios, n=4)))
