"""Environment factories: `make_env(name, ...)` for cartpole, cartpole-pixels, pong and any ALE game."""
from __future__ import annotations

from spiking_dqn.envs.atari import ALIASES, is_atari, make_atari
from spiking_dqn.envs.cartpole import make_cartpole
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import VecEnv, VecFrameStack, VecTransposeImage

NAMES = ("cartpole", "cartpole-pixels", *ALIASES)


def check_env_name(name: str) -> None:
    """Raise ValueError naming the valid environments if `name` is not one."""
    if name not in NAMES and not is_atari(name):
        raise ValueError(f"unknown environment {name!r}; valid: {', '.join(NAMES)} or any ALE id such as "
                         "ALE/Breakout-v5 or BreakoutNoFrameskip-v4")


def make_env(name: str, n_envs: int = 1, seed: int = 0, training: bool = True, temporal: str = "stack") -> VecEnv:
    """A vectorised environment with a Monitor on each copy (episode returns are the true score).

    Image observations come channel-first (C, H, W) uint8, as SB3 policies take them.
    """
    check_env_name(name)
    if is_atari(name):
        return VecTransposeImage(make_atari(name, n_envs, seed, training))
    if name == "cartpole":
        return make_vec_env(lambda: make_cartpole(False), n_envs=n_envs, seed=seed)
    env = make_vec_env(lambda: make_cartpole(True, temporal), n_envs=n_envs, seed=seed)
    return VecTransposeImage(VecFrameStack(env, 2) if temporal == "stack" else env)
