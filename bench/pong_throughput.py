"""Pong DQN training throughput (env steps/s while learning): stock SB3 DQN("CnnPolicy") vs spiking-dqn's
ANN path (IIRDQN + Nature-DQN with fused Adam, channels_last, bfloat16 autocast where the CPU computes it
natively, as `bf16: auto`, and the Q-value forwards under torch.compile, as `compile: true`, and its replay buffer
storing frames channels-last), both with the `pong` preset's ANN hyperparameters (its replay buffer size and n-step
targets included); optionally the same ANN path without torch.compile or with SB3's own (channels-first) replay
buffer, and the spiking T5 stage (the preset's SNN settings, without a teacher). The models
learn in alternating chunks in one process, so a change in machine load during the run hits all of them alike.
Before timing, each replay buffer's slots for the timed steps are written once, as every slot is after a run's
first pass through its buffer (100k of its 2M env steps): a first write to fresh memory costs both learners the same
(on a 2-core VM, up to 15 ms per 2 MB huge page numpy asks for where the VM had not handed that memory out before,
0.3-0.4 ms per env step; pong.md, thirty-third session) and is not what a run spends its time on; `--fresh-pages`
times them on fresh memory instead.
Prints the rates and the ratios to stock. Two identical learners in one process differ by up to a quarter in speed,
fixed for the life of the process (pong.md, thirty-fifth session), so one run resolves the ratio only that far:
`--rounds R` runs the comparison in R fresh processes, one after another, and prints each round's ratios and their
median.

    python bench/pong_throughput.py [--steps 3000] [--warmup 1500] [--chunk 250] [--snn] [--eager] [--sb3-buffer]
        [--fresh-pages] [--device cpu|cuda] [--rounds 1]
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

import numpy as np
import torch
from spiking_dqn.agents.buffers import buffer_class
from spiking_dqn.agents.dqn import IIRDQN
from spiking_dqn.agents.pipeline import dqn_kwargs
from spiking_dqn.agents.policy import IIRPolicy
from spiking_dqn.envs import make_env
from stable_baselines3 import DQN
from stable_baselines3.common.buffers import ReplayBuffer

from spiking_dqn.config import load_preset

STOCK = "stock SB3 DQN(CnnPolicy)"


def touch(buffer: ReplayBuffer, steps: int) -> None:
    """Write the buffer's slots for its next `steps` transitions once (they are not sampled before they are added)."""
    if buffer.full:
        return
    end = min(buffer.pos + steps + 1, buffer.buffer_size)
    for name in ("observations", "next_observations", "actions", "rewards", "dones", "timeouts"):
        array = getattr(buffer, name, None)
        if isinstance(array, np.ndarray):
            array[buffer.pos:end] = 0


def rates(models: dict[str, DQN], warmup: int, steps: int, chunk: int, fresh_pages: bool = False) -> dict[str, float]:
    """Env steps per second of each model over `steps` learning steps taken in alternating chunks."""
    for model in models.values():
        model.learning_starts = warmup // 2
        model.learn(warmup)
        if not fresh_pages:
            touch(model.replay_buffer, steps)
    spent = dict.fromkeys(models, 0.0)
    for _ in range(steps // chunk):
        for name, model in models.items():
            start = time.perf_counter()
            model.learn(chunk, reset_num_timesteps=False)
            spent[name] += time.perf_counter() - start
    return {name: (steps // chunk) * chunk / t for name, t in spent.items()}


def rounds(argv: list[str], n: int) -> None:
    """Run the comparison in `n` fresh processes and print each round's ratios to stock and their medians."""
    ratios: dict[str, list[float]] = {}
    for r in range(n):
        out = subprocess.run([sys.executable, __file__, *argv, "--json"], check=False, capture_output=True, text=True)
        if out.returncode:
            sys.exit(f"round {r + 1} failed:\n{out.stderr[-3000:]}")
        result = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"round {r + 1}: " + ", ".join(f"{name} {value:.1f}" for name, value in result.items()), flush=True)
        for name, value in result.items():
            if name != STOCK:
                ratios.setdefault(name, []).append(value / result[STOCK])
    for name, values in ratios.items():
        print(f"{name:48s} ratio median {statistics.median(values):.2f}x "
              f"(min {min(values):.2f}x, max {max(values):.2f}x, {n} rounds)")


def main() -> None:
    """Run the comparison and print env steps/s and the ratio."""
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--warmup", type=int, default=1500)
    p.add_argument("--chunk", type=int, default=250)
    p.add_argument("--snn", action="store_true", help="also time the spiking T5 stage")
    p.add_argument("--eager", action="store_true", help="also time the ANN path without torch.compile")
    p.add_argument("--sb3-buffer", action="store_true",
                   help="also time the ANN path with SB3's replay buffer (frames stored channels-first)")
    p.add_argument("--fresh-pages", action="store_true",
                   help="time the steps on replay-buffer memory not written before (a run's first pass)")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="where both models learn")
    p.add_argument("--rounds", type=int, default=1, help="run the comparison in this many fresh processes")
    p.add_argument("--json", action="store_true", help="print the rates as one JSON line only (a round)")
    args = p.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("no CUDA device here: run with --device cpu")
    cfg = {**load_preset("pong"), "device": args.device}
    ann = dqn_kwargs(cfg, cfg["ann"], spiking=False)
    stock = {k: v for k, v in ann.items() if k not in ("policy_kwargs", "target_eps", "double_q", "bf16", "compile")}
    stock["replay_buffer_class"] = sb3_buffer = buffer_class(cfg["ann"]["n_steps"], channels_last=False)
    bf16 = ann["bf16"]
    card = torch.cuda.get_device_name() if args.device == "cuda" else "cpu"
    if not args.json:
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {card}, bfloat16 autocast: {bf16}, "
              f"n_steps {cfg['ann']['n_steps']}, memory-optimised buffer: {cfg['ann']['optimize_memory_usage']}, "
              f"torch.compile: {ann['compile']}, buffer pages {'fresh' if args.fresh_pages else 'written before timing'}")
    if args.rounds > 1 and not args.json:  # each round's process gets the same arguments and --json
        rounds(sys.argv[1:], args.rounds)
        return
    where = {"seed": 0, "device": args.device}
    options = "fused, NHWC" + (", bf16" if bf16 else "")
    models = {STOCK: DQN("CnnPolicy", make_env("pong"), **where, **stock),
              f"spiking-dqn ANN ({options}{', compiled' if ann['compile'] else ''})": IIRDQN(
                  IIRPolicy, make_env("pong"), **where, **ann)}
    if args.eager:
        models[f"spiking-dqn ANN ({options}, eager)"] = IIRDQN(IIRPolicy, make_env("pong"), **where,
                                                              **{**ann, "compile": False})
    if args.sb3_buffer:
        models[f"spiking-dqn ANN ({options}, SB3's buffer)"] = IIRDQN(IIRPolicy, make_env("pong"), **where,
                                                                     **{**ann, "replay_buffer_class": sb3_buffer})
    if args.snn:
        snn = dqn_kwargs(cfg, cfg["snn"], spiking=True)
        snn["policy_kwargs"]["timesteps"] = 5
        models["spiking-dqn SNN T5 stage"] = IIRDQN(IIRPolicy, make_env("pong"), **where, **snn)
    result = rates(models, args.warmup, args.steps, args.chunk, args.fresh_pages)
    if args.json:
        print(json.dumps(result))
        return
    base = result[STOCK]
    for name, value in result.items():
        print(f"{name:48s} {value:7.1f} env steps/s   ratio {value / base:.2f}x")


if __name__ == "__main__":
    main()
