"""Callbacks: TensorBoard logging of the spiking layers; periodic checkpoints; keeping a stage's best weights."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from spiking_dqn.agents.policy import EpsilonGreedy
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.vec_env import VecEnv

from spiking_dqn.network import SpikingNetwork, recording
from spiking_dqn.report import atomic_save


class SpikeLogger(BaseCallback):
    """Every `every` env steps, record each layer's threshold, leak and spike rate on probe states."""

    def __init__(self, net: SpikingNetwork, probe: torch.Tensor, every: int = 1000) -> None:
        super().__init__()
        self.net, self.probe, self.every = net, probe[:256], every

    def _on_step(self) -> bool:
        if self.n_calls % self.every == 0:
            with recording(self.net), torch.no_grad():
                self.net(self.probe)
            for key, value in self.net.layer_stats().items():
                self.logger.record(f"snn/{key}", value)
        return True


class Checkpoint(BaseCallback):
    """Call `save` every `every` env steps (0: never), so an interrupted phase resumes from there."""

    def __init__(self, every: int, save: Callable[[], None]) -> None:
        super().__init__()
        self.every, self.save = every, save
        self.last = 0

    def _on_training_start(self) -> None:
        self.last = self.num_timesteps

    def _on_step(self) -> bool:
        if self.every > 0 and self.num_timesteps - self.last >= self.every:
            self.last = self.num_timesteps
            self.save()
        return True


class KeepBest(BaseCallback):
    """Validate the (epsilon-)greedy policy at the start, every `every` env steps and at the end (unless a validation
    stopped the phase); keep the best weights (ties to the later) in `path`, where a resumed phase finds them; stop the
    phase once a validation scores at least `stop` (None: never): SB3's EvalCallback and
    StopTrainingOnRewardThreshold, plus the start."""

    def __init__(self, env: VecEnv, episodes: int, every: int, path: Path, stop: float | None = None,
                 epsilon: float = 0.0, seed: int = 0) -> None:
        super().__init__()
        self.env, self.episodes, self.every, self.path, self.stop = env, episodes, every, path, stop
        self.epsilon, self.seed = epsilon, seed
        self.best = torch.load(path)["score"] if path.exists() else float("-inf")

    @property
    def reached(self) -> bool:
        """Whether the best validation so far has reached the stop score."""
        return self.stop is not None and self.best >= self.stop

    def _on_training_start(self) -> None:
        self.validate()

    def _on_step(self) -> bool:
        if self.n_calls % self.every == 0:
            self.validate()
        return not self.reached

    def _on_training_end(self) -> None:
        if self.n_calls % self.every != 0 and not self.reached:  # a stop was a validation: its weights are kept
            self.validate()

    def validate(self) -> float:
        """Play the validation episodes; save the weights if they score at least the best so far; print a line; the
        score."""
        self.env.seed(self.seed)  # the same starting states and, below, the same random draws every time
        policy = EpsilonGreedy(self.model.policy, self.epsilon, self.seed)
        returns, _ = evaluate_policy(policy, self.env, n_eval_episodes=self.episodes, return_episode_rewards=True)
        score = sum(returns) / len(returns)
        self.logger.record("select/mean_reward", score)
        self.logger.dump(self.num_timesteps)  # as EvalCallback: a validation that ends the phase is logged too
        kept = score >= self.best
        if kept:
            self.best = score
            atomic_save(self.path, lambda p: torch.save({"score": score, "state": self.model.policy.state_dict()}, p))
        print(f"validation ({self.path.name}) at {self.num_timesteps} env steps: {score:.2f} over {len(returns)} games"
              f"{', kept' if kept else ''}; best {self.best:.2f}", flush=True)  # as EvalCallback's verbose line
        return score

    def restore(self, policy: torch.nn.Module) -> None:
        """Load the best weights saved so far (if any) into `policy`."""
        if self.path.exists():
            policy.load_state_dict(torch.load(self.path)["state"])
