"""The twenty-second session's calibration states for a run directory without its replay buffer (pong.md).

    python docs/results/bench-s22/calibration_states.py RUN_DIR    # writes RUN_DIR/calibration.pt

1024 preprocessed observations: 8 training envs (seed 321) played by RUN_DIR's ANN at epsilon 0.05, every fifth of
640 steps. `spiking-dqn evaluate RUN_DIR --rows converted` then calibrates the converted network on them.
"""
import sys

import numpy as np
import torch
from spiking_dqn.agents.dqn import IIRDQN
from spiking_dqn.envs import make_env

torch.set_num_threads(1)
env = make_env("pong", n_envs=8, seed=321, training=True)
model = IIRDQN.load(sys.argv[1] + "/ann.zip", device="cpu")
ann, pre = model.q_net.net.eval(), model.q_net.preprocess
obs, states, rng = env.reset(), [], np.random.default_rng(0)
with torch.no_grad():
    for i in range(640):
        x = pre(torch.as_tensor(obs)).float()
        if i % 5 == 0:
            states.append(x)
        actions = ann(x).argmax(1).numpy()
        explore = rng.random(8) < 0.05
        actions[explore] = rng.integers(6, size=int(explore.sum()))
        obs, *_ = env.step(actions)
torch.save(torch.cat(states).cpu(), sys.argv[1] + "/calibration.pt")
