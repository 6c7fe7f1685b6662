"""ANN Q-network backbones as plain nn.Sequential (the form the spiking core converts)."""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

ARCHS = ("mlp", "paper-conv", "nature")


def _flat_size(features: nn.Sequential, obs_shape: Sequence[int]) -> int:
    with torch.no_grad():
        return features(torch.zeros(1, *obs_shape)).shape[1]


def build_ann(arch: str, obs_shape: Sequence[int], n_actions: int, hidden: Sequence[int] = (256, 256)) -> nn.Sequential:
    """mlp: hidden ReLU layers; paper-conv: conv 16/32/32 5x5/2 with BN + linear (paper A.5.1);
    nature: Nature-DQN conv 32 8x8/4, 64 4x4/2, 64 3x3/1, linear 512, linear n_actions."""
    if arch == "mlp":
        layers: list[nn.Module] = [nn.Flatten()]
        width = int(torch.tensor(obs_shape).prod())
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        return nn.Sequential(*layers, nn.Linear(width, n_actions))
    c = obs_shape[0]
    if arch == "paper-conv":
        features = nn.Sequential(
            nn.Conv2d(c, 16, 5, 2), nn.BatchNorm2d(16), nn.ReLU(),
            nn.Conv2d(16, 32, 5, 2), nn.BatchNorm2d(32), nn.ReLU(),
            nn.Conv2d(32, 32, 5, 2), nn.BatchNorm2d(32), nn.ReLU(), nn.Flatten())
        return nn.Sequential(*features, nn.Linear(_flat_size(features, obs_shape), n_actions))
    if arch == "nature":
        features = nn.Sequential(
            nn.Conv2d(c, 32, 8, 4), nn.ReLU(), nn.Conv2d(32, 64, 4, 2), nn.ReLU(),
            nn.Conv2d(64, 64, 3, 1), nn.ReLU(), nn.Flatten())
        return nn.Sequential(*features, nn.Linear(_flat_size(features, obs_shape), 512), nn.ReLU(),
                             nn.Linear(512, n_actions))
    raise ValueError(f"unknown arch {arch!r}; valid: {', '.join(ARCHS)}")


@torch.no_grad()
def infer(net: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """`net(x)` without autograd, its convolutions, linear layers and flattens called as their functional ops and a
    ReLU after one of them applied in place: the same numbers, with batch-1 Nature-DQN decisions 2 to 3 % faster in
    a Pong learning loop on a 2-core CPU (module calls and a new tensor per ReLU are much of a decision there:
    pong.md, thirty-third session)."""
    owned = False  # whether x is a tensor made here (never the caller's input)
    for layer in net:
        if type(layer) is nn.Conv2d and layer.padding_mode == "zeros":
            x, owned = F.conv2d(x, layer.weight, layer.bias, layer.stride, layer.padding, layer.dilation,
                                layer.groups), True
        elif type(layer) is nn.Linear:
            x, owned = F.linear(x, layer.weight, layer.bias), True
        elif type(layer) is nn.ReLU:
            x = x.relu_() if owned else x.relu()
        elif type(layer) is nn.Flatten:
            x = x.flatten(layer.start_dim, layer.end_dim)
        else:
            x, owned = layer(x), False
    return x
