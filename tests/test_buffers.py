"""Replay buffers: images stored channels-last sample what SB3 samples; fit_buffer moves saved buffers between kinds."""
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from gymnasium import spaces
from spiking_dqn.agents.buffers import (
    MERGE_DTYPES,
    ChannelsLastNStepReplayBuffer,
    ChannelsLastReplayBuffer,
    buffer_class,
    to_hwc,
)
from spiking_dqn.agents.pipeline import dqn_kwargs, fit_buffer
from stable_baselines3.common.buffers import NStepReplayBuffer, ReplayBuffer
from stable_baselines3.common.save_util import load_from_pkl, save_to_pkl

from spiking_dqn.config import ConfigError, load_preset

IMAGE, ACTIONS = spaces.Box(0, 255, (4, 6, 5), np.uint8), spaces.Discrete(3)
KINDS = [(ReplayBuffer, ChannelsLastReplayBuffer, {"optimize_memory_usage": True, "handle_timeout_termination": False}),
         (ReplayBuffer, ChannelsLastReplayBuffer, {}),
         (NStepReplayBuffer, ChannelsLastNStepReplayBuffer, {"n_steps": 3, "gamma": 0.5})]


def _filled(cls, space=IMAGE, steps=30, size=20, **kwargs):
    """A buffer of `size` that has seen `steps` random transitions (the same ones for every class)."""
    buffer = cls(size, space, ACTIONS, **kwargs)
    rng = np.random.default_rng(0)
    obs = rng.integers(0, 256, (1, *space.shape)).astype(space.dtype)
    for t in range(steps):
        nxt = rng.integers(0, 256, (1, *space.shape)).astype(space.dtype)
        buffer.add(obs, nxt, np.array([[t % 3]]), np.array([float(t)]), np.array([t % 7 == 6]), [{}])
        obs = nxt
    return buffer


def _assert_same_samples(got, want, inds):
    a, b = got._get_samples(inds), want._get_samples(inds)
    for name in a._fields:
        x, y = getattr(a, name), getattr(b, name)
        assert (x is None and y is None) or torch.equal(x, y), name


@pytest.mark.parametrize("sb3, ours, kwargs", KINDS)
def test_channels_last_buffers_sample_what_sb3_samples_as_nhwc_memory_of_their_own(sb3, ours, kwargs):
    want, got = _filled(sb3, **kwargs), _filled(ours, **kwargs)
    assert got.observations.shape == (20, 1, 6, 5, 4)
    inds = np.array([i for i in range(20) if i != got.pos])  # a memory-optimised buffer never samples pos
    _assert_same_samples(got, want, inds)
    sample = got._get_samples(inds)
    for x in (sample.observations, sample.next_observations):
        assert x.shape == (19, 4, 6, 5) and x.is_contiguous(memory_format=torch.channels_last)
    for x in sample:  # sampled without SB3's copy: the tensors must still be the sample's own memory
        if x is not None:
            x.zero_()
    _assert_same_samples(got, want, inds)


@pytest.mark.parametrize("dtype", [*MERGE_DTYPES, np.float16, np.bool_])  # OpenCV's merge, then numpy's copy
@pytest.mark.parametrize("channels", [1, 4, 600])
def test_to_hwc_gives_the_images_transposed_as_a_contiguous_array(dtype, channels):
    images = (np.random.default_rng(0).random((2, channels, 7, 5)) * 200).astype(dtype)
    for x in (images, images[:, :, ::2]):  # also from a strided view
        hwc = to_hwc(x)
        assert hwc.flags.c_contiguous and hwc.dtype == x.dtype and np.array_equal(hwc, x.transpose(0, 2, 3, 1))
    stored_hwc = np.ascontiguousarray(images.transpose(0, 2, 3, 1))
    assert np.shares_memory(to_hwc(stored_hwc.transpose(0, 3, 1, 2)), stored_hwc)  # VecTransposeImage's views: no copy


def test_a_channels_last_buffer_of_vectors_stores_them_as_sb3_does(tmp_path):
    space = spaces.Box(-1, 1, (4,), np.float32)
    want, got = _filled(ReplayBuffer, space), _filled(ChannelsLastReplayBuffer, space)
    assert not got.channels_last and got.observations.shape == want.observations.shape
    _assert_same_samples(got, want, np.arange(20))
    save_to_pkl(tmp_path / "replay.pkl", got)
    loaded = load_from_pkl(tmp_path / "replay.pkl")
    assert type(loaded) is ChannelsLastReplayBuffer
    _assert_same_samples(loaded, want, np.arange(20))


def _refit(buffer, cls, memory_optimised, space=None, **kwargs):
    """The buffer fit_buffer makes of `buffer` for a model of size 20 asking for `cls` (`space`: the env's)."""
    model = SimpleNamespace(replay_buffer=buffer, replay_buffer_class=cls, optimize_memory_usage=memory_optimised,
                            replay_buffer_kwargs={"handle_timeout_termination": not memory_optimised, **kwargs},
                            buffer_size=20, observation_space=space or buffer.observation_space,
                            action_space=buffer.action_space, device="cpu", n_envs=1)
    fit_buffer(model)
    return model.replay_buffer


def test_fit_buffer_moves_a_saved_nchw_buffer_to_channels_last_storage_and_back(tmp_path):
    nstep = {"n_steps": 3, "gamma": 0.5}
    old = _filled(NStepReplayBuffer, **nstep)  # as runs before the thirty-second session saved replay.pkl
    save_to_pkl(tmp_path / "replay.pkl", old)
    new = _refit(load_from_pkl(tmp_path / "replay.pkl"), ChannelsLastNStepReplayBuffer, False, IMAGE, **nstep)
    assert type(new) is ChannelsLastNStepReplayBuffer and new.observations.shape == (20, 1, 6, 5, 4)
    assert new.pos == old.pos and new.full
    _assert_same_samples(new, old, np.arange(20))
    memory_optimised = _refit(new, ReplayBuffer, True, IMAGE)
    assert memory_optimised.observations.shape == (20, 1, 4, 6, 5)
    inds = np.array([i for i in range(20) if i != old.pos])
    want = _refit(old, ReplayBuffer, True)
    _assert_same_samples(memory_optimised, want, inds)
    _assert_same_samples(_refit(memory_optimised, ChannelsLastReplayBuffer, True, IMAGE), want, inds)


def test_the_atari_presets_store_images_channels_last_and_cartpole_as_sb3():
    pong, cartpole = ({**load_preset(name), "device": "cpu"} for name in ("pong", "cartpole"))
    assert dqn_kwargs(pong, pong["ann"], False)["replay_buffer_class"] is ChannelsLastNStepReplayBuffer
    assert dqn_kwargs(cartpole, cartpole["ann"], False)["replay_buffer_class"] is buffer_class(
        cartpole["ann"]["n_steps"], False) is ReplayBuffer


def test_fit_buffer_turns_a_memory_optimised_buffer_into_an_n_step_one_and_back():
    obs_space, act_space = spaces.Box(0, 100, (2,), np.float32), spaces.Discrete(2)
    old = ReplayBuffer(20, obs_space, act_space, optimize_memory_usage=True, handle_timeout_termination=False)
    for t in range(30):  # wraps: the newest 20 transitions remain, an episode ends after t=22
        obs = np.full((1, 2), t, np.float32)
        old.add(obs, obs + 1, np.array([[t % 2]]), np.array([float(t)]), np.array([t == 22]), [{}])
    inds = np.array([i for i in range(20) if i != old.pos])  # a memory-optimised buffer never samples pos
    want = old._get_samples(inds)
    plain = _refit(old, ReplayBuffer, False)
    assert type(plain) is ReplayBuffer and plain.pos == old.pos and plain.full
    got = plain._get_samples(inds)
    for name in ("observations", "actions", "next_observations", "rewards", "dones"):
        assert torch.equal(getattr(got, name), getattr(want, name)), name
    nstep = _refit(plain, NStepReplayBuffer, False, n_steps=3, gamma=0.5)
    sample = nstep._get_samples(np.array([5, 0]))  # t=25 (three steps on), t=20 (its episode ends at t=22)
    assert sample.rewards.flatten().tolist() == [25 + 0.5 * 26 + 0.25 * 27, 20 + 0.5 * 21 + 0.25 * 22]
    assert sample.next_observations[:, 0].tolist() == [28, 23] and sample.dones.flatten().tolist() == [0, 1]
    back = _refit(nstep, ReplayBuffer, True)
    assert back.optimize_memory_usage and torch.equal(back._get_samples(inds).next_observations,
                                                      want.next_observations)
    assert _refit(back, ReplayBuffer, True) is back
    small = ReplayBuffer(10, obs_space, act_space, optimize_memory_usage=True, handle_timeout_termination=False)
    with pytest.raises(ConfigError, match="holds 10 transitions, not ann.buffer_size 20"):
        _refit(small, ReplayBuffer, False)
