"""CartPole from its state vector, or seen only through its rendered image."""
from __future__ import annotations

import os

import cv2
import gymnasium as gym
import numpy as np

ROWS = slice(160, 320)  # the band of the 400x600 render holding the track, cart and upright pole
SIZE = (80, 30)  # (width, height) after downscaling the full-width band (pole about 1.5 px wide)


class PixelObservation(gym.ObservationWrapper):
    """Replace the observation by the rendered frame: rows 160:320, drawn pixels 255 on a 0 background,
    downscaled to 30x80 uint8 (area averaging keeps the thin pole visible as partial coverage).

    The full width is kept (the cart's position on the track stays visible); nothing of the state vector
    reaches the observation.
    """

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.observation_space = gym.spaces.Box(0, 255, (SIZE[1], SIZE[0], 1), np.uint8)

    def observation(self, _obs: np.ndarray) -> np.ndarray:
        drawn = (cv2.cvtColor(self.env.render()[ROWS], cv2.COLOR_RGB2GRAY) < 250).astype(np.uint8) * 255
        return cv2.resize(drawn, SIZE, interpolation=cv2.INTER_AREA)[:, :, None]


class FrameDifference(gym.ObservationWrapper):
    """Two channels: the current frame and (current - previous) / 2 + 128, both uint8."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        h, w, _ = env.observation_space.shape
        self.observation_space = gym.spaces.Box(0, 255, (h, w, 2), np.uint8)
        self.previous: np.ndarray | None = None

    def reset(self, **kwargs):  # type: ignore[no-untyped-def]
        """Start with a zero difference."""
        self.previous = None
        return super().reset(**kwargs)

    def observation(self, obs: np.ndarray) -> np.ndarray:
        prev = obs if self.previous is None else self.previous
        self.previous = obs
        diff = (obs.astype(np.int16) - prev.astype(np.int16)) // 2 + 128
        return np.concatenate([obs, diff.astype(np.uint8)], axis=2)


def make_cartpole(pixels: bool, temporal: str = "stack") -> gym.Env:
    """CartPole-v1 (500-step limit); with pixels, the rendered image (temporal: 'stack' or 'diff')."""
    if not pixels:
        return gym.make("CartPole-v1")
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    os.environ.setdefault("SDL_NO_SIGNAL_HANDLERS", "1")  # else pygame's SDL swallows SIGINT/SIGTERM (no Ctrl-C)
    env = PixelObservation(gym.make("CartPole-v1", render_mode="rgb_array"))
    return FrameDifference(env) if temporal == "diff" else env
