"""Where the Nature-DQN update's time goes on this CPU, against the best rate its convolutions reach: each layer's
forward, input-gradient and weight-gradient kernels (bfloat16, NHWC, batch 32, as the `pong` preset's update)
timed alone with their multiply-accumulates (MACs), then the whole update (online forward and backward, target
forward, fused Adam step) as bench/bf16_update.py times it. Prints GMAC/s per kernel, the update's, and the update
time every kernel at the best measured rate would give. Also times the weight gradient as a dilated forward
convolution (batch and channel axes swapped), a formulation that oneDNN's backward kernel could be replaced by.

    python docs/results/bench-s32/update_roofline.py [--rounds 3]
"""
from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "bench"))
from bf16_update import update_fn

CL, BF16, BATCH = torch.channels_last, torch.bfloat16, 32
CONVS = {"conv1": (4, 32, 8, 4, 84), "conv2": (32, 64, 4, 2, 20), "conv3": (64, 64, 3, 1, 9)}  # in, out, k, stride, size
LINEARS = {"fc1": (3136, 512), "fc2": (512, 6)}


def ms(fn: Callable[[], object], n: int) -> float:
    """Milliseconds per call over n calls after two warm-up calls."""
    fn(), fn()
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n * 1e3


def kernels() -> dict[str, tuple[Callable[[], object], float]]:
    """Each layer's forward and backward kernels with their MACs."""
    out: dict[str, tuple[Callable[[], object], float]] = {}
    for name, (c, o, k, s, h) in CONVS.items():
        x = torch.rand(BATCH, c, h, h, dtype=BF16).contiguous(memory_format=CL)
        w = torch.randn(o, c, k, k, dtype=BF16).contiguous(memory_format=CL)
        g = F.conv2d(x, w, stride=s).contiguous(memory_format=CL)
        macs = g.numel() * c * k * k

        def bwd(mask: list[bool], x=x, w=w, g=g, o=o, s=s) -> object:
            return torch.ops.aten.convolution_backward(g, x, w, [o], [s, s], [0, 0], [1, 1], False, [0, 0], 1, mask)

        def dilated(x=x, g=g, s=s) -> object:
            xt, gt = (a.transpose(0, 1).contiguous(memory_format=CL) for a in (x, g))
            return F.conv2d(xt, gt, dilation=s).transpose(0, 1)
        out[f"{name} forward"] = (lambda x=x, w=w, s=s: F.conv2d(x, w, stride=s), macs)
        if name != "conv1":  # the update needs no gradient of the input frames
            out[f"{name} input gradient"] = (lambda bwd=bwd: bwd([True, False, False]), macs)
        out[f"{name} weight+bias gradient"] = (lambda bwd=bwd: bwd([False, True, True]), macs)
        out[f"{name} weight gradient as dilated conv"] = (dilated, macs)
    for name, (i, o) in LINEARS.items():
        x, w, g = torch.rand(BATCH, i, dtype=BF16), torch.randn(o, i, dtype=BF16), torch.randn(BATCH, o, dtype=BF16)
        out[f"{name} forward"] = (lambda x=x, w=w: F.linear(x, w), BATCH * i * o)
        out[f"{name} input gradient"] = (lambda g=g, w=w: g @ w, BATCH * i * o)
        out[f"{name} weight gradient"] = (lambda g=g, x=x: g.t() @ x, BATCH * i * o)
    return out


def main() -> None:
    """Time the kernels and the update in turns and print the rates."""
    p = argparse.ArgumentParser()
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {BATCH}, bfloat16, NHWC")
    ks, update = kernels(), update_fn(True, True)
    spent = dict.fromkeys([*ks, "update"], 0.0)
    for _ in range(args.rounds):
        for name, (fn, _) in ks.items():
            spent[name] += ms(fn, 30) / args.rounds
        spent["update"] += ms(update, 10) / args.rounds
    rate = {name: macs / spent[name] / 1e6 for name, (_, macs) in ks.items()}
    for name in ks:
        print(f"{name:38s} {spent[name]:7.3f} ms  {rate[name]:6.1f} GMAC/s")
    used = [n for n in ks if "dilated" not in n]
    update_macs = sum(ks[n][1] for n in used) + sum(ks[n][1] for n in used if n.endswith("forward"))  # + target fwd
    best = max(rate.values())
    kernels_ms = sum(spent[n] for n in used) + sum(spent[n] for n in used if n.endswith("forward"))
    print(f"update: {update_macs / 1e9:.2f} GMAC in {spent['update']:.2f} ms = {update_macs / spent['update'] / 1e6:.1f}"
          f" GMAC/s; its kernels alone {kernels_ms:.2f} ms; at the best kernel rate ({best:.1f} GMAC/s) "
          f"{update_macs / best / 1e6:.2f} ms; update / best-rate time {spent['update'] * best * 1e6 / update_macs:.2f}x")
    for name in CONVS:
        a, b = spent[f"{name} weight+bias gradient"], spent[f"{name} weight gradient as dilated conv"]
        print(f"{name} weight gradient: oneDNN backward {a:.3f} ms, dilated forward {b:.3f} ms, ratio {a / b:.2f}x")


if __name__ == "__main__":
    main()
