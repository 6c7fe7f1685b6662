"""Smoke runs of the whole pipeline on real ALE games (tiny budgets from the `smoke` preset)."""
import json

import pytest
import torch
from spiking_dqn.agents.networks import build_ann
from spiking_dqn.envs import make_env

from spiking_dqn.cli import main
from spiking_dqn.convert import convert
from spiking_dqn.energy import energy_report


@pytest.mark.parametrize("game, extra", [("pong", []), ("BoxingNoFrameskip-v4", ["--set", "baseline.equalize=0.5"])])
def test_atari_pipeline_smoke(game, extra, tmp_path):
    out = tmp_path / "run"
    argv = ["train", game, "--timesteps", "1", "--schedule", "2,1", "--config", "smoke", "--out", str(out), *extra]
    assert main(argv) == 0
    res = json.loads((out / "results.json").read_text())
    assert [(r["model"], r["timesteps"]) for r in res["rows"]] == [("ann", None), ("converted", 20), ("iir", 2),
                                                                    ("iir", 1)]
    assert all(len(r["layer_spike_rates"]) == 4 for r in res["rows"][1:])  # 3 conv + the 512 linear layer
    assert all(r["energy_ratio"] > 0 and r["ms_per_decision"] > 0 for r in res["rows"])
    for f in ("ann.zip", "stage_T2.zip", "stage_T1.zip", "results.md", "results.png", "config.yaml"):
        assert (out / f).exists(), f


def test_pong_evaluation_reports_true_game_score():
    env = make_env("pong", n_envs=1, seed=0, training=False)
    obs = env.reset()
    assert obs.shape == (1, 4, 84, 84)
    total, done = 0.0, False
    while not done:
        obs, reward, dones, infos = env.step([0])
        total += float(reward[0])
        done = bool(dones[0])
    assert infos[0]["episode"]["r"] == total == -21.0  # a full game lost 0-21, not clipped, not one life


@pytest.mark.parametrize("frames, rate, ratio", [(1, 0.08, 7.55), (1, 0.42, 5.22), (4, 0.08, 2.77)])
def test_energy_ratio_of_the_papers_pong_network(frames, rate, ratio):
    # the paper's T1 and T5 ratios (7.55, 5.22) are eq. 4 on a Nature-DQN fed one frame (its official script's
    # input), the first layer in MACs; our four stacked frames quadruple that layer's MACs: 2.77 at T1's rate
    snn = convert(build_ann("nature", (frames, 84, 84), 6), 1)
    alpha = energy_report(snn, torch.zeros(1, frames, 84, 84), [rate] * 4).energy_ratio
    assert alpha == pytest.approx(ratio, rel=0.01)
