"""An SB3 DQN policy whose online and target Q-networks are an ANN or a spiking network with settable T."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from spiking_dqn.agents.buffers import to_hwc
from spiking_dqn.agents.networks import build_ann, infer
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.preprocessing import is_image_space
from stable_baselines3.dqn.policies import DQNPolicy
from torch import nn

from spiking_dqn.convert import convert
from spiking_dqn.network import SpikingNetwork, clamp_after_step


class QNet(BasePolicy):
    """Q-values of `net` on preprocessed observations; greedy actions."""

    def __init__(self, observation_space: spaces.Space, action_space: spaces.Discrete, net: nn.Module,
                 normalize_images: bool = True, channels_last: bool = False) -> None:
        super().__init__(observation_space, action_space, normalize_images=normalize_images)
        self.net = net
        self.channels_last = channels_last
        self.scale_images = normalize_images and is_image_space(observation_space)
        if channels_last:
            self.net.to(memory_format=torch.channels_last)

    def preprocess(self, obs: torch.Tensor) -> torch.Tensor:
        """Observation as the network sees it (images scaled to [0, 1]; NHWC memory if channels_last), as SB3's
        `preprocess_obs` on a Box space, with the image test done once (it reads numpy: torch.compile stops there)."""
        x = obs.float() / 255.0 if self.scale_images else obs.float()
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last and x.dim() == 4 else x

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(self.preprocess(obs))

    def _predict(self, observation: torch.Tensor, deterministic: bool = True) -> torch.Tensor:
        x = self.preprocess(observation)
        q = infer(self.net, x) if isinstance(self.net, nn.Sequential) else self.net(x)
        return q.argmax(dim=1).reshape(-1)


class EpsilonGreedy:
    """A policy's greedy actions, each game's replaced by a random one with probability `epsilon` (Nature DQN's
    evaluation: deterministic games such as Pong would otherwise replay a handful of identical games)."""

    def __init__(self, policy: BasePolicy, epsilon: float, seed: int) -> None:
        self.policy, self.epsilon = policy, epsilon
        self.rng = np.random.default_rng(seed)

    def predict(self, observation: np.ndarray, state: Any = None, episode_start: np.ndarray | None = None,
                deterministic: bool = True) -> tuple[np.ndarray, Any]:
        actions, state = self.policy.predict(observation, state, episode_start, deterministic=True)
        explore = self.rng.random(len(actions)) < self.epsilon
        actions[explore] = self.rng.integers(self.policy.action_space.n, size=int(explore.sum()))
        return actions, state


class IIRPolicy(DQNPolicy):
    """DQN policy over the backbone `arch`; an ANN when `timesteps` is None, else a spiking network run for T."""

    q_net: QNet
    q_net_target: QNet

    def __init__(self, observation_space: spaces.Space, action_space: spaces.Discrete, lr_schedule: Any,
                 arch: str = "mlp", hidden: Sequence[int] = (256, 256), timesteps: int | None = None,
                 channels_last: bool = False, **kwargs: Any) -> None:
        self.arch, self.hidden, self.timesteps = arch, tuple(hidden), timesteps
        self.channels_last = channels_last
        super().__init__(observation_space, action_space, lr_schedule, **kwargs)

    def build_ann(self) -> nn.Sequential:
        """A fresh ANN of this policy's backbone."""
        return build_ann(self.arch, self.observation_space.shape, int(self.action_space.n), self.hidden)

    def make_q_net(self) -> QNet:  # type: ignore[override]
        ann = self.build_ann()
        net = ann if self.timesteps is None else convert(ann, self.timesteps)
        return QNet(self.observation_space, self.action_space, net, self.normalize_images,
                    self.channels_last).to(self.device)

    def _build(self, lr_schedule: Any) -> None:
        super()._build(lr_schedule)
        if self.spiking:
            clamp_after_step(self.optimizer, self.q_net.net)

    @property
    def spiking(self) -> bool:
        """True when the Q-networks are spiking."""
        return self.timesteps is not None

    @property
    def snn(self) -> SpikingNetwork:
        """The online spiking Q-network."""
        assert isinstance(self.q_net.net, SpikingNetwork)
        return self.q_net.net

    def set_timesteps(self, timesteps: int) -> None:
        """Set the latency T of the online and target networks (saved with the policy)."""
        self.timesteps = timesteps
        self.q_net.net.timesteps = timesteps
        self.q_net_target.net.timesteps = timesteps

    def predict(self, observation: Any, state: Any = None, episode_start: np.ndarray | None = None,
                deterministic: bool = False) -> tuple[np.ndarray, Any]:
        """SB3's predict; a batch of array observations skips its per-call checks and its walk setting every module
        to eval mode when the policy already is (about 0.3 ms of a 1 ms Nature-DQN decision on a CPU: pong.md), and
        with channels_last, images reach the network as NHWC memory made by `to_hwc` (no transposing copy of them
        as floats)."""
        if not isinstance(observation, np.ndarray) or observation.shape[1:] != self.observation_space.shape:
            return super().predict(observation, state, episode_start, deterministic)
        if self.training:
            self.set_training_mode(False)
        if self.channels_last and observation.ndim == 4:
            obs = torch.as_tensor(to_hwc(observation), device=self.device).permute(0, 3, 1, 2)
        else:
            obs = torch.as_tensor(observation, device=self.device)
        with torch.no_grad():
            actions = self._predict(obs, deterministic)
        return actions.cpu().numpy(), state

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(arch=self.arch, hidden=self.hidden, timesteps=self.timesteps, channels_last=self.channels_last)
        return data
