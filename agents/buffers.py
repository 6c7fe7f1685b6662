"""SB3 replay buffers that store image observations channels-last, the memory layout the NHWC convolutions take."""
from __future__ import annotations

from typing import Any

import cv2
import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.buffers import NStepReplayBuffer, ReplayBuffer
from stable_baselines3.common.type_aliases import ReplayBufferSamples
from stable_baselines3.common.vec_env import VecNormalize

CHW_TO_HWC, HWC_TO_CHW = (0, 1, 3, 4, 2), (0, 1, 4, 2, 3)  # axes of an (entries, n_envs, ...) observation array
CV_CN_MAX = 512  # OpenCV's most channels per array
MERGE_DTYPES = tuple(np.dtype(t) for t in (np.uint8, np.int8, np.uint16, np.int16, np.int32, np.float32, np.float64))


def to_hwc(images: np.ndarray) -> np.ndarray:
    """A batch of (C, H, W) images as a contiguous (n, H, W, C) array: a view of the images' own memory (read it, do
    not write it) when that is already laid out so, as SB3's VecTransposeImage hands them over, else OpenCV's channel
    merge where it takes the dtype (a 4x84x84 uint8 frame stack in about 4 us, against 20 to 50 us for numpy's
    transposing copy)."""
    hwc = images.transpose(0, 2, 3, 1)
    if hwc.flags.c_contiguous or images.dtype not in MERGE_DTYPES or not 1 < images.shape[1] <= CV_CN_MAX:
        return np.ascontiguousarray(hwc)
    out = np.empty((images.shape[0], *images.shape[2:], images.shape[1]), images.dtype)
    for image, dst in zip(images, out):
        cv2.merge(list(image), dst=dst)
    return out


class ChannelsLastReplayBuffer(ReplayBuffer):
    """SB3's ReplayBuffer (memory-optimised or not) keeping (C, H, W) image observations as (H, W, C) and sampling
    them as (C, H, W)-shaped views of that memory (torch's channels_last strides), so that the update's batches need
    no transposing copy before NHWC convolutions (about 1.4 ms per Pong batch of 32 on a 2-core CPU: pong.md,
    thirty-second session). Other observation spaces are stored as SB3 stores them."""

    def __init__(self, buffer_size: int, observation_space: spaces.Space, *args: Any, **kwargs: Any) -> None:
        self.channels_last = isinstance(observation_space, spaces.Box) and len(observation_space.shape) == 3
        if self.channels_last:
            assert isinstance(observation_space, spaces.Box)
            low, high = (b.transpose(1, 2, 0) for b in (observation_space.low, observation_space.high))
            observation_space = spaces.Box(low, high, low.shape, observation_space.dtype)  # type: ignore[arg-type]
        super().__init__(buffer_size, observation_space, *args, **kwargs)

    def add(self, obs: np.ndarray, next_obs: np.ndarray, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        if self.channels_last:
            obs, next_obs = to_hwc(obs), to_hwc(next_obs)
        super().add(obs, next_obs, *args, **kwargs)

    def to_torch(self, array: np.ndarray, copy: bool = True) -> torch.Tensor:
        """The array as a tensor on the buffer's device, without SB3's copy on a CPU: every array the sampling hands
        over is a new one of its own (gathered by index or computed), so no stored transition is shared."""
        return torch.as_tensor(array, device=self.device)

    def _get_samples(self, batch_inds: np.ndarray, env: VecNormalize | None = None) -> ReplayBufferSamples:
        data = super()._get_samples(batch_inds, env)
        if not self.channels_last:
            return data
        return data._replace(observations=data.observations.permute(0, 3, 1, 2),
                             next_observations=data.next_observations.permute(0, 3, 1, 2))


class ChannelsLastNStepReplayBuffer(ChannelsLastReplayBuffer, NStepReplayBuffer):
    """SB3's NStepReplayBuffer storing images channels-last."""


def buffer_class(n_steps: int, channels_last: bool) -> type[ReplayBuffer]:
    """The replay buffer for n-step targets or not; channels-last image storage for NHWC convolutions."""
    if channels_last:
        return ChannelsLastNStepReplayBuffer if n_steps > 1 else ChannelsLastReplayBuffer
    return NStepReplayBuffer if n_steps > 1 else ReplayBuffer


def stores_channels_last(buffer: ReplayBuffer) -> bool:
    """Whether the buffer keeps its image observations as (H, W, C)."""
    return getattr(buffer, "channels_last", False)


def relayout(observations: np.ndarray, to_channels_last: bool, chunk: int = 4096) -> np.ndarray:
    """A buffer's observation array moved between (C, H, W) and (H, W, C) storage, copied a chunk at a time."""
    axes = CHW_TO_HWC if to_channels_last else HWC_TO_CHW
    out = np.empty(tuple(observations.shape[a] for a in axes), observations.dtype)
    for i in range(0, len(observations), chunk):
        out[i:i + chunk] = observations[i:i + chunk].transpose(axes)
    return out
