"""SB3 DQN with an optional expected-SARSA target, distillation terms towards a frozen teacher and an opt-in
bfloat16 update."""
from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from stable_baselines3 import DQN
from stable_baselines3.common.type_aliases import ReplayBufferSamples
from stable_baselines3.common.utils import get_device
from torch import nn


def native_bf16(device: str | torch.device) -> bool:
    """Whether the device computes bfloat16 natively (CUDA with bf16, a CPU with AVX512-BF16 or AMX): only there
    does bfloat16 autocast speed the update; an AVX2 CPU emulates it, about 10x slower than float32."""
    dev = get_device(device)
    if dev.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return dev.type == "cpu" and (torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


def bf16_weights(net: nn.Module) -> nn.Module:
    """`net` with its conv and linear layers' parameters cast to bfloat16 in place, as autocast casts them."""
    for module in net.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            module.to(torch.bfloat16)
    return net


class IIRDQN(DQN):
    """DQN: TD loss (Huber) + distill * Huber(Q, teacher's Q) + distill_policy * policy term.

    The policy term is CE(Q, teacher's greedy action) with distill_tau 0, else soft policy distillation: with the
    student's temperature s = distill_gain * distill_tau, s * CE(Q / s, softmax(teacher's Q / distill_tau)), whose
    gradient in Q, softmax(Q / s) minus softmax(teacher's Q / distill_tau), is on the scale of the hard term's and
    vanishes where Q's action gaps are distill_gain times the teacher's (gain 1: Hinton et al. 2015's one shared
    temperature; Rusu et al. 2016's student at temperature 1: distill_tau 0.01, distill_gain 100).

    The TD target bootstraps with (1 - target_eps) max Q' + target_eps mean Q': the value of playing on
    epsilon-greedily at target_eps (expected SARSA); 0 is DQN's max. With double_q the greedy part is the target
    net's value of the online net's greedy action instead of the target net's max (Double DQN, van Hasselt et al.
    2016)."""

    def __init__(self, *args: Any, distill: float = 0.0, distill_policy: float = 0.0, distill_tau: float = 0.0,
                 distill_gain: float = 1.0, bf16: bool = False, target_eps: float = 0.0, compile: bool = False,
                 double_q: bool = False, **kwargs: Any) -> None:
        self.distill, self.distill_policy = distill, distill_policy
        self.distill_tau, self.distill_gain = distill_tau, distill_gain
        self.bf16, self.target_eps, self.compile, self.double_q = bf16, target_eps, compile, double_q
        self.teacher: nn.Module | None = None
        self._compiled_q_values: Any = None
        super().__init__(*args, **kwargs)

    def _setup_model(self) -> None:
        super()._setup_model()
        if self.bf16 and self.tau == 1.0:  # the target net runs only under autocast and is replaced whole: keep its
            bf16_weights(self.q_net_target)  # weights as autocast would cast them instead of casting them every update

    def set_teacher(self, net: nn.Module) -> None:
        """Distil from a frozen copy of `net` (with bfloat16 weights when the update runs under bfloat16 autocast)."""
        teacher = copy.deepcopy(net).requires_grad_(False).eval()
        self.teacher = bf16_weights(teacher) if self.bf16 else teacher

    def set_timesteps(self, timesteps: int) -> None:
        """Set the spiking Q-networks' latency T; kept in the policy kwargs so that `load` restores it."""
        self.policy.set_timesteps(timesteps)  # type: ignore[attr-defined]
        self.policy_kwargs["timesteps"] = timesteps

    def _excluded_save_params(self) -> list[str]:
        return [*super()._excluded_save_params(), "teacher", "_compiled_q_values"]

    def _sample_action(self, learning_starts: int, action_noise: Any = None,
                       n_envs: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """SB3's; a model that has learned before (refilling a replay buffer it came without) plays its own
        epsilon-greedy policy until learning_starts, not SB3's uniformly random warm-up actions."""
        return super()._sample_action(0 if self._n_updates > 0 else learning_starts, action_noise, n_envs)

    @torch.no_grad()
    def td_target(self, data: ReplayBufferSamples, q_next: torch.Tensor,
                  greedy_next: torch.Tensor | None = None) -> torch.Tensor:
        """r + discount * (1 - done) * ((1 - target_eps) max Q'(s') + target_eps mean Q'(s')), Q' the target net's;
        with `greedy_next` (the online net's greedy actions at s') Q'(s', greedy_next) replaces max Q'(s')."""
        discounts = data.discounts if data.discounts is not None else self.gamma
        greedy = q_next.max(dim=1)[0] if greedy_next is None else q_next.gather(1, greedy_next[:, None])[:, 0]
        next_q = (1 - self.target_eps) * greedy + self.target_eps * q_next.mean(dim=1)
        return data.rewards + (1 - data.dones) * discounts * next_q.reshape(-1, 1)

    def policy_loss(self, q: torch.Tensor, teacher_q: torch.Tensor) -> torch.Tensor:
        """The policy-distillation term: hard cross-entropy (distill_tau 0) or the scaled soft cross-entropy."""
        tau = self.distill_tau
        if tau == 0:
            return F.cross_entropy(q, teacher_q.argmax(dim=1))
        student_tau = self.distill_gain * tau
        return student_tau * F.cross_entropy(q / student_tau, F.softmax(teacher_q / tau, dim=1))

    @property
    def distilling(self) -> bool:
        """Whether the update has a distillation term (a teacher and a positive weight)."""
        return self.teacher is not None and (self.distill > 0 or self.distill_policy > 0)

    def q_values(self, data: ReplayBufferSamples) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None,
                                                           torch.Tensor | None]:
        """Float32 Q-values of one batch: online net on s, target net on s', the online net's greedy actions at s'
        (None without double_q), teacher on s (None when not distilling); under autocast when bf16. This, not the loss,
        is what torch.compile compiles: with the loss inside, torch 2.13's gradients differed from eager ones when the
        TD and the distillation terms were both on (pong.md)."""
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            q = self.q_net(data.observations).float()
            with torch.no_grad():
                q_next = self.q_net_target(data.next_observations).float()
                greedy_next = self.q_net(data.next_observations).argmax(dim=1) if self.double_q else None
                teacher_q = self.teacher(data.observations).float() if self.distilling else None  # type: ignore[misc]
        return q, q_next, greedy_next, teacher_q

    def losses(self, data: ReplayBufferSamples) -> tuple[torch.Tensor, torch.Tensor]:
        """The TD loss and the distillation loss (0 without a teacher) of one batch."""
        q_all, q_next, greedy_next, teacher_q = (self._compiled_q_values if self.compile else self.q_values)(data)
        td_target = self.td_target(data, q_next, greedy_next)
        td_loss = F.smooth_l1_loss(torch.gather(q_all, 1, data.actions.long()), td_target)
        if teacher_q is None:
            return td_loss, torch.zeros_like(td_loss)
        return td_loss, (self.distill * F.smooth_l1_loss(q_all, teacher_q)
                         + self.distill_policy * self.policy_loss(q_all, teacher_q))

    def clip_gradients(self) -> None:
        """SB3's clipping of the gradients' total norm at max_grad_norm, without the pass that scales them by 1 when
        the norm is below it (clip_grad_norm_ makes it always: on a CPU, memory traffic the size of the gradients)."""
        params = [p for p in self.policy.parameters() if p.grad is not None]
        norm = torch.nn.utils.get_total_norm([p.grad for p in params])
        if self.max_grad_norm < norm.item() + 1e-6:
            torch.nn.utils.clip_grads_with_norm_(params, self.max_grad_norm, norm)

    def train(self, gradient_steps: int, batch_size: int = 100) -> None:
        """SB3's DQN update, plus the distillation term, autocast and torch.compile when enabled."""
        self.policy.set_training_mode(True)
        self._update_learning_rate(self.policy.optimizer)
        if self.compile and self._compiled_q_values is None:
            self._compiled_q_values = torch.compile(self.q_values, dynamic=False)
        losses, distill_losses = [], []
        for _ in range(gradient_steps):
            data = self.replay_buffer.sample(batch_size, env=self._vec_normalize_env)  # type: ignore[union-attr]
            td_loss, distill_loss = self.losses(data)
            self.policy.optimizer.zero_grad()
            (td_loss + distill_loss).backward()
            self.clip_gradients()
            self.policy.optimizer.step()
            losses.append(td_loss.item())
            if self.distilling:
                distill_losses.append(distill_loss.item())
        self._n_updates += gradient_steps
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        self.logger.record("train/loss", np.mean(losses))
        if distill_losses:
            self.logger.record("train/distill_loss", np.mean(distill_losses))
