"""Atari games through ALE with the standard DQN preprocessing (SB3's Atari wrappers)."""
from __future__ import annotations

import ale_py
import gymnasium as gym
from stable_baselines3.common.env_util import make_atari_env
from stable_baselines3.common.vec_env import VecEnv, VecFrameStack

gym.register_envs(ale_py)

# PongNoFrameskip-v4: no sticky actions and frame skip 1 inside ALE, so SB3's AtariWrapper alone does the
# standard DQN frame skip 4 with max-pooling; the setting of the DQN literature and the rl-zoo / CleanRL
# Pong benchmarks. (ALE/Pong-v5 adds sticky actions 0.25 and its own frame skip.)
ALIASES = {"pong": "PongNoFrameskip-v4", "breakout": "BreakoutNoFrameskip-v4"}


def is_atari(name: str) -> bool:
    """True for an alias or any registered ALE id (e.g. ALE/Breakout-v5, BreakoutNoFrameskip-v4)."""
    if name in ALIASES:
        return True
    spec = gym.registry.get(name)
    return spec is not None and "ale_py" in str(spec.entry_point)


def make_atari(name: str, n_envs: int, seed: int, training: bool, frame_stack: int = 4) -> VecEnv:
    """No-op starts, frame skip 4 + max-pool, 84x84 gray, FIRE on reset, 4 stacked frames.

    Training clips rewards and ends episodes on life loss; evaluation plays full games and Monitor (inside
    the wrappers) reports the true game score.
    """
    env_id = ALIASES.get(name, name)
    kwargs = {} if "NoFrameskip" in env_id else {"env_kwargs": {"frameskip": 1}}
    env = make_atari_env(env_id, n_envs=n_envs, seed=seed,
                         wrapper_kwargs={"clip_reward": training, "terminal_on_life_loss": training}, **kwargs)
    return VecFrameStack(env, frame_stack)
