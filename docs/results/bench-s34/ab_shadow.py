"""The thirty-fourth session's bfloat16 master-weight copies (`shadow-adam.patch`: the update's forward on bfloat16
copies of the online net's weights, one compiled step that clips their bfloat16 gradients, steps the float32 masters
with Adam and rewrites the copies) against the ANN path as it is (autocast casting the weights each forward and
their gradients each backward, then fused Adam), learning in alternating chunks of 250 env steps in one process as
bench/pong_throughput.py times its models (the `pong` preset's ANN settings, buffer slots written before timing).
Prints each path's env steps/s, the overall ratio and the quartiles of the per-chunk-pair ratios.

    git apply docs/results/bench-s34/shadow-adam.patch
    python docs/results/bench-s34/ab_shadow.py [--steps 12000]
    git apply -R docs/results/bench-s34/shadow-adam.patch
"""
from __future__ import annotations

import argparse
import sys

from paired import compare
from spiking_dqn.agents.dqn import IIRDQN
from spiking_dqn.agents.pipeline import dqn_kwargs
from spiking_dqn.agents.policy import IIRPolicy
from spiking_dqn.envs import make_env

from spiking_dqn.config import load_preset


def main() -> None:
    """Time both paths and print the rates and ratios."""
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=12000)
    args = p.parse_args()
    if not hasattr(IIRDQN, "shadow_adam"):
        sys.exit("apply docs/results/bench-s34/shadow-adam.patch first")
    cfg = {**load_preset("pong"), "device": "cpu"}
    ann = dqn_kwargs(cfg, cfg["ann"], spiking=False)
    models = {}
    for name in ("copies", "casts"):
        model = IIRDQN(IIRPolicy, make_env("pong"), seed=0, **ann)
        if name == "casts":
            model.shadow_adam = lambda: None  # type: ignore[method-assign]
        models[name] = model
    compare(models, "copies", "casts", args.steps)


if __name__ == "__main__":
    main()
