"""Upper bound of an actor-learner split on this CPU: a learner process doing Nature-DQN updates (batch 32,
bfloat16 autocast, NHWC, fused Adam, one thread) and an actor process stepping ALE Pong with batch-1 decisions (one
thread), each timed alone and both at once. Scratch for pong.md's thirtieth session, not the package's code.

    python docs/results/bench-s30/actor_learner_split.py learner|actor SECONDS
"""
import sys
import time

import torch
import torch.nn.functional as F
from spiking_dqn.agents.networks import build_ann
from spiking_dqn.envs import make_env

torch.set_num_threads(1)
which, secs = sys.argv[1], float(sys.argv[2])
fmt = torch.channels_last
net = build_ann("nature", (4, 84, 84), 6).to(memory_format=fmt)
if which == "learner":
    target = build_ann("nature", (4, 84, 84), 6).to(memory_format=fmt).to(torch.bfloat16)
    opt = torch.optim.Adam(net.parameters(), 1e-4, fused=True)
    buf = torch.randint(0, 255, (20000, 4, 84, 84), dtype=torch.uint8)

    def step() -> None:
        """One update on a random batch of the uint8 buffer."""
        i = torch.randint(0, 20000 - 1, (32,))
        o = (buf[i].float() / 255).contiguous(memory_format=fmt)
        o2 = (buf[i + 1].float() / 255).contiguous(memory_format=fmt)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            q = net(o).float()
            with torch.no_grad():
                qn = target(o2).float()
        loss = F.smooth_l1_loss(q[:, 0], qn.max(1)[0])
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 10)
        opt.step()
else:
    env = make_env("pong")
    obs = env.reset()

    def step() -> None:
        """One batch-1 float32 decision and one env step."""
        global obs
        with torch.no_grad():
            a = net((torch.as_tensor(obs).float() / 255).contiguous(memory_format=fmt)).argmax(1).numpy()
        obs, *_ = env.step(a)
for _ in range(20):
    step()
n, start = 0, time.perf_counter()
while time.perf_counter() - start < secs:
    step()
    n += 1
print(which, f"{n / (time.perf_counter() - start):.1f} per s")
