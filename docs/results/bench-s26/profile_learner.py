import cProfile
import pstats
import sys
import time

from spiking_dqn.agents.buffers import buffer_class
from spiking_dqn.agents.dqn import IIRDQN
from spiking_dqn.agents.pipeline import dqn_kwargs
from spiking_dqn.agents.policy import IIRPolicy
from spiking_dqn.envs import make_env
from stable_baselines3 import DQN

from spiking_dqn.config import load_preset

cfg = {**load_preset("pong"), "device": "cpu"}
ann = dqn_kwargs(cfg, cfg["ann"], spiking=False)
which = sys.argv[1]
if which == "stock":
    stock = {k: v for k, v in ann.items() if k not in ("policy_kwargs", "target_eps", "double_q", "bf16", "compile")}
    stock["replay_buffer_class"] = buffer_class(cfg["ann"]["n_steps"], channels_last=False)  # SB3's own
    m = DQN("CnnPolicy", make_env("pong"), seed=0, device="cpu", **stock)
else:
    if which == "eager": ann["compile"] = False
    m = IIRDQN(IIRPolicy, make_env("pong"), seed=0, device="cpu", **ann)
m.learning_starts = 500
m.learn(1000)
pr = cProfile.Profile()
s = time.perf_counter(); pr.enable()
m.learn(2000, reset_num_timesteps=False)
pr.disable(); w = time.perf_counter() - s
print(which, "%.1f env steps/s" % (2000 / w))
pstats.Stats(pr).sort_stats("cumtime").print_stats(45)
