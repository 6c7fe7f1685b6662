"""Two identical ANN learners (the `pong` preset's ANN settings, the package's code) learning in alternating chunks of
250 env steps in one process, timed as bench/pong_throughput.py times stock against ours: how far apart two runs of the
same code land in one process, which bounds what one bench run can resolve.

    python docs/results/bench-s35/aa_split.py [--steps 6000]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from spiking_dqn.agents.dqn import IIRDQN
from spiking_dqn.agents.pipeline import dqn_kwargs
from spiking_dqn.agents.policy import IIRPolicy
from spiking_dqn.envs import make_env

from spiking_dqn.config import load_preset

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench-s34"))
from paired import compare


def main() -> None:
    """Time the two identical learners and print their rates and ratio."""
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=6000)
    args = p.parse_args()
    cfg = {**load_preset("pong"), "device": "cpu"}
    ann = dqn_kwargs(cfg, cfg["ann"], spiking=False)
    compare({name: IIRDQN(IIRPolicy, make_env("pong"), seed=0, **ann) for name in ("first", "second")},
            "first", "second", args.steps)


if __name__ == "__main__":
    main()
