"""The Nature-DQN update (batch 32, channels_last, fused Adam, clipping, Q-value forwards under torch.compile or
eager) three ways, on one network in one process, alternating blocks of 10 updates, the order reversed every
round: bfloat16 autocast everywhere (the package's), the convolutions under autocast and the two linear layers in
float32 with oneDNN's bfloat16 fpmath for matrix products (`torch.backends.mkldnn.matmul.fp32_precision = "bf16"`:
no weight or gradient casts), and everything in float32 with bfloat16 fpmath for convolutions and matrix products.
Random observations; timed back to back, not in a learning loop. Prints median ms per update and the quartiles of
the per-round time ratios to autocast (thirty-sixth session, pong.md).

    python docs/results/bench-s36/fpmath_linear.py [--eager] [--rounds 30]
"""
from __future__ import annotations

import argparse
import copy
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from spiking_dqn.agents.networks import build_ann

CL = torch.channels_last


def main() -> None:
    """Time the three variants and print their medians and ratios."""
    p = argparse.ArgumentParser()
    p.add_argument("--eager", action="store_true")
    p.add_argument("--rounds", type=int, default=30)
    args = p.parse_args()
    torch.manual_seed(0)
    net = build_ann("nature", (4, 84, 84), 6, ()).to(memory_format=CL)
    target = copy.deepcopy(net).requires_grad_(False)
    opt = torch.optim.Adam(net.parameters(), lr=1e-4, fused=True)
    obs, nxt = (torch.randint(0, 256, (32, 84, 84, 4), dtype=torch.uint8).permute(0, 3, 1, 2) for _ in range(2))
    actions, rewards = torch.randint(0, 6, (32, 1)), torch.randn(32, 1)

    def scaled(o: torch.Tensor) -> torch.Tensor:
        return (o.float() / 255).contiguous(memory_format=CL)

    def autocast(o: torch.Tensor, n: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            q = net(scaled(o)).float()
            with torch.no_grad():
                return q, target(scaled(n)).float()

    def hybrid_net(m: torch.nn.Sequential, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            h = m[:7](x)  # the three convolutions, their ReLUs and the flatten
        return m[7:](h.float())

    def hybrid(o: torch.Tensor, n: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        q = hybrid_net(net, scaled(o))
        with torch.no_grad():
            return q, hybrid_net(target, scaled(n))

    def fpmath(o: torch.Tensor, n: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        q = net(scaled(o))
        with torch.no_grad():
            return q, target(scaled(n))

    variants: dict[str, tuple[Callable, str, str]] = {
        "autocast": (autocast, "ieee", "ieee"), "convs autocast, linears fpmath": (hybrid, "bf16", "ieee"),
        "all fpmath": (fpmath, "bf16", "bf16")}
    if not args.eager:
        variants = {k: (torch.compile(f, dynamic=False), m, c) for k, (f, m, c) in variants.items()}

    def updates(name: str, n: int) -> float:
        forwards, matmul, conv = variants[name]
        torch.backends.mkldnn.matmul.fp32_precision, torch.backends.mkldnn.conv.fp32_precision = matmul, conv
        start = time.perf_counter()
        for _ in range(n):
            q, q_next = forwards(obs, nxt)
            loss = F.smooth_l1_loss(q.gather(1, actions), rewards + 0.99 * q_next.max(1, keepdim=True)[0])
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 10)
            opt.step()
        return 1e3 * (time.perf_counter() - start) / n

    for name in variants:
        updates(name, 3)  # compiles
    ms: dict[str, list[float]] = {name: [] for name in variants}
    for r in range(args.rounds):
        for name in (list(variants) if r % 2 else list(reversed(variants))):
            ms[name].append(updates(name, 10))
    print("eager" if args.eager else "compiled", {k: round(statistics.median(v), 2) for k, v in ms.items()})
    for name in list(variants)[1:]:
        ratios = [b / a for a, b in zip(ms["autocast"], ms[name])]
        print(f"  {name} / autocast, time per round: quartiles",
              ", ".join(f"{x:.3f}" for x in statistics.quantiles(ratios, n=4)))


if __name__ == "__main__":
    main()
