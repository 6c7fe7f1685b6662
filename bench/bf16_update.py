"""Nature-DQN update speed (batch 32: target forward, online forward and backward, fused Adam step) in float32
and under bfloat16 autocast, NCHW and channels_last, on this CPU. The variants take turns in rounds so that a
change in machine load hits all alike. Prints updates/s, the ratio to float32 NCHW, and whether the CPU
computes bfloat16 natively (what `bf16: auto` in the presets goes by).

    python bench/bf16_update.py [--rounds 3] [--updates 10] [--threads 1]
"""
from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from spiking_dqn.agents.dqn import native_bf16
from spiking_dqn.agents.networks import build_ann


def update_fn(bf16: bool, channels_last: bool) -> Callable[[], None]:
    """One DQN-shaped update of a fresh Nature-DQN on random Pong-sized frames."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    net = build_ann("nature", (4, 84, 84), 6).to(memory_format=fmt)
    target = build_ann("nature", (4, 84, 84), 6).to(memory_format=fmt)
    opt = torch.optim.Adam(net.parameters(), 1e-4, fused=True)
    obs = torch.rand(32, 4, 84, 84).contiguous(memory_format=fmt)
    reward = torch.rand(32)

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            with torch.no_grad():
                y = reward + 0.99 * target(obs).float().max(dim=1)[0]
            loss = F.smooth_l1_loss(net(obs).float()[:, 0], y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return step


def main() -> None:
    """Time each variant and print the rates and ratios."""
    p = argparse.ArgumentParser()
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--updates", type=int, default=10, help="updates per variant and round")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s), CPU capability "
          f"{torch.backends.cpu.get_cpu_capability()}, native bfloat16: {native_bf16('cpu')}")
    variants = {f"{'bfloat16' if bf16 else 'float32'} {'NHWC' if cl else 'NCHW'}": update_fn(bf16, cl)
                for bf16 in (False, True) for cl in (False, True)}
    spent = dict.fromkeys(variants, 0.0)
    for step in variants.values():
        step()  # warm-up
    for _ in range(args.rounds):
        for name, step in variants.items():
            start = time.perf_counter()
            for _ in range(args.updates):
                step()
            spent[name] += time.perf_counter() - start
    base = spent["float32 NCHW"]
    for name, t in spent.items():
        print(f"{name:14s} {args.rounds * args.updates / t:7.1f} updates/s   ratio {base / t:.2f}x")


if __name__ == "__main__":
    main()
