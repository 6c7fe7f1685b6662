"""The ANN phase's update with its whole TD loss compiled ([compiled-td-loss.patch](compiled-td-loss.patch), measured
and dropped in the thirty-fifth session) against the Q-value forwards alone compiled and the loss eager (the
package's), on one learner: chunks of 250 env steps alternate between
the two, the order swapped every pair, so both run on the same weights, buffer and memory (two learners in one process
differ by up to a quarter in speed on their own, pong.md). The `pong` preset's ANN settings, buffer slots written
before timing. Prints each variant's median ms per update (the `train` call: sampling, forward, backward, clipping,
Adam), env steps/s and the quartiles of the per-pair update-time ratios.

    git apply docs/results/bench-s35/compiled-td-loss.patch
    python docs/results/bench-s35/ab_td_loss.py [--pairs 24]
    git apply -R docs/results/bench-s35/compiled-td-loss.patch
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
from spiking_dqn.agents.dqn import IIRDQN
from spiking_dqn.agents.pipeline import dqn_kwargs
from spiking_dqn.agents.policy import IIRPolicy
from spiking_dqn.envs import make_env

from spiking_dqn.config import load_preset

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "bench"))
from pong_throughput import touch


def main() -> None:
    """Alternate the two update variants on one learner and print their times."""
    p = argparse.ArgumentParser()
    p.add_argument("--pairs", type=int, default=24)
    args = p.parse_args()
    if not hasattr(IIRDQN, "batch_td_loss"):
        sys.exit("apply docs/results/bench-s35/compiled-td-loss.patch first")
    cfg = {**load_preset("pong"), "device": "cpu"}
    model = IIRDQN(IIRPolicy, make_env("pong"), seed=0, **dqn_kwargs(cfg, cfg["ann"], spiking=False))
    forwards = torch.compile(model.q_values, dynamic=False)

    def forwards_only(data: Any) -> tuple[torch.Tensor, torch.Tensor]:
        q_all, q_next, greedy_next, _ = forwards(data)
        td_loss = model.td_loss(data, q_all, q_next, greedy_next)
        return td_loss, torch.zeros_like(td_loss)

    variants = {"whole TD loss compiled": model.losses, "forwards compiled": forwards_only}
    model.learning_starts = 500
    model.learn(1000)
    touch(model.replay_buffer, 500 * (args.pairs + 1))
    train, spent = model.train, {"s": 0.0}

    def timed_train(*a: Any, **k: Any) -> None:
        start = time.perf_counter()
        train(*a, **k)
        spent["s"] += time.perf_counter() - start

    model.train = timed_train  # type: ignore[method-assign]
    update_ms: dict[str, list[float]] = {name: [] for name in variants}
    wall = dict.fromkeys(variants, 0.0)
    for pair in range(-1, args.pairs):  # pair -1 compiles both and is not counted
        for name in (variants if pair % 2 else reversed(list(variants))):
            model.losses = variants[name]  # type: ignore[method-assign]
            spent["s"], start = 0.0, time.perf_counter()
            model.learn(250, reset_num_timesteps=False)
            if pair >= 0:
                wall[name] += time.perf_counter() - start
                update_ms[name].append(1e3 * spent["s"] / (250 // model.train_freq.frequency))
    for name in variants:
        print(f"{name:24s} {statistics.median(update_ms[name]):6.2f} ms per update (median), "
              f"{250 * args.pairs / wall[name]:6.1f} env steps/s")
    old, new = variants
    ratios = [b / a for a, b in zip(update_ms[old], update_ms[new])]
    print(f"update time, {new} / {old}, per pair: quartiles "
          + ", ".join(f"{q:.3f}" for q in statistics.quantiles(ratios, n=4)))


if __name__ == "__main__":
    main()
