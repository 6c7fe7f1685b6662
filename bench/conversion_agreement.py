"""How close a converted Atari Q-network stays to its ANN, per channel-equalisation power, in one run.

    python bench/conversion_agreement.py docs/results/pong-s21 --powers 0,0.5,1

Plays the run's ANN (epsilon 0.05) for a few hundred steps on 8 games, converts it at T (thresholds at the
percentile of a calibration half of those states, each power in turn) and reports on the other half: how often
the converted network's greedy action is the ANN's, the ANN's Q-value lost by taking the converted network's action
(regret), and each power's disagreement against power 0's. Minutes on a CPU; a 20-game T100 evaluation takes ~20.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import yaml
from spiking_dqn.agents.dqn import IIRDQN
from spiking_dqn.agents.policy import EpsilonGreedy
from spiking_dqn.envs import make_env

from spiking_dqn.convert import convert


@torch.no_grad()
def play_states(model: IIRDQN, env_name: str, steps: int, seed: int) -> torch.Tensor:
    """Preprocessed observations of 8 games of the ANN at epsilon 0.05, every step."""
    env = make_env(env_name, n_envs=8, seed=seed, training=False)
    player, obs, states = EpsilonGreedy(model.q_net.eval(), 0.05, seed), env.reset(), []
    for _ in range(steps):
        states.append(model.q_net.preprocess(torch.as_tensor(obs)).float())
        obs, *_ = env.step(player.predict(obs)[0])
    env.close()
    return torch.cat(states)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run_dir", help="a run directory with config.yaml and ann.zip (Atari)")
    p.add_argument("--powers", default="0,0.5,1", help="equalisation powers to compare (0 first: the reference)")
    p.add_argument("--timesteps", type=int, default=100)
    p.add_argument("--percentile", type=float, default=99.9)
    p.add_argument("--steps", type=int, default=150, help="steps of the 8 games (8x states)")
    p.add_argument("--seed", type=int, default=123)
    args = p.parse_args()
    run = Path(args.run_dir)
    model = IIRDQN.load(run / "ann.zip", device="cpu")
    env_name = yaml.safe_load((run / "config.yaml").read_text())["env"]
    states = play_states(model, env_name, args.steps, args.seed)
    order = torch.randperm(len(states), generator=torch.Generator().manual_seed(0))
    calib, test = states[order[::2]], states[order[1::2]]
    ann = model.q_net.net.float().eval()
    with torch.no_grad():
        q = ann(test)
    gap = q.topk(2, dim=1).values.diff(dim=1).abs().flatten()
    print(f"{len(calib)} calibration and {len(test)} test states of {env_name}; ANN action gap median "
          f"{float(gap.median()):.4f}, below 0.01 in {float((gap < 0.01).float().mean()):.0%} of states")
    reference = None
    for power in (float(v) for v in args.powers.split(",")):
        start = time.perf_counter()
        snn = convert(ann, args.timesteps, data=calib, percentile=args.percentile, equalize_power=power).eval()
        with torch.no_grad():
            qs = torch.cat([snn(test[i:i + 200]) for i in range(0, len(test), 200)])
        choice = qs.argmax(1)
        agree = float((choice == q.argmax(1)).float().mean())
        regret = float((q.max(1).values - q.gather(1, choice[:, None]).flatten()).mean())
        reference = reference if reference is not None else 1 - agree
        ratio = (1 - agree) / reference if reference > 0 else float("nan")
        print(f"power {power:g}: agreement {agree:.1%}, regret {regret:.5f}, disagreement {ratio:.2f}x power "
              f"{args.powers.split(',')[0]}'s ({time.perf_counter() - start:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
