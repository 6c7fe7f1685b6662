"""The RL side: the spiking policy inside SB3, conversion of a trained Q-network, the pipeline, the CLI."""
import json
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml
from spiking_dqn.agents import pipeline
from spiking_dqn.agents.dqn import IIRDQN, native_bf16
from spiking_dqn.agents.networks import build_ann, infer
from spiking_dqn.agents.pipeline import Run
from spiking_dqn.agents.policy import EpsilonGreedy, IIRPolicy, QNet
from spiking_dqn.envs import make_env
from stable_baselines3.common.logger import Logger
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.save_util import load_from_pkl
from stable_baselines3.common.type_aliases import ReplayBufferSamples
from stable_baselines3.common.utils import polyak_update
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from spiking_dqn.cli import main
from spiking_dqn.config import apply_sets, load_preset, merge, read_config
from spiking_dqn.convert import convert

TINY = ["--set", "ann.steps=600", "--set", "ann.learning_starts=100", "--set", "ann.train_freq=50",
        "--set", "ann.gradient_steps=10", "--set", "snn.stage_steps=200", "--set", "snn.train_freq=50",
        "--set", "snn.gradient_steps=10", "--set", "snn.calibration_samples=256", "--trials", "2"]


def test_spiking_policy_learns_saves_loads_and_predicts(tmp_path):
    env = make_env("cartpole", seed=0)
    model = IIRDQN(IIRPolicy, env, learning_starts=50, train_freq=10, gradient_steps=5, batch_size=16, seed=0,
                   policy_kwargs={"arch": "mlp", "hidden": [32, 32], "timesteps": 3})
    before = [p.detach().clone() for p in model.policy.q_net.parameters()]
    model.learn(300)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.policy.q_net.parameters()))
    assert all(n.leak.item() <= 1.0 for n in model.policy.snn.neurons())
    model.set_timesteps(2)
    model.save(tmp_path / "m.zip")
    loaded = IIRDQN.load(tmp_path / "m.zip", env=env)
    assert loaded.policy.snn.timesteps == 2 and loaded.policy.q_net_target.net.timesteps == 2
    obs = env.reset()
    a1, _ = model.predict(obs, deterministic=True)
    a2, _ = loaded.predict(obs, deterministic=True)
    assert a1.tolist() == a2.tolist()
    for p, q in zip(model.policy.state_dict().values(), loaded.policy.state_dict().values()):
        assert torch.equal(p, q)


def test_converted_trained_q_network_keeps_greedy_actions_at_t100():
    env = make_env("cartpole", seed=1)
    model = IIRDQN(IIRPolicy, env, learning_starts=200, train_freq=16, gradient_steps=16, batch_size=64, seed=1,
                   learning_rate=2e-3, policy_kwargs={"arch": "mlp", "hidden": [64, 64]})
    model.learn(3000)
    states = model.q_net.preprocess(model.replay_buffer.sample(2048).observations).float()
    snn = convert(model.q_net.net, 100, data=states[:1024], percentile=99.9)
    with torch.no_grad():
        agree = (snn(states[1024:]).argmax(1) == model.q_net.net(states[1024:]).argmax(1)).float().mean()
    assert agree >= 0.97


@pytest.mark.parametrize("tau", [0.0, 0.01])
def test_policy_distillation_pulls_greedy_actions_to_the_teachers(tau):
    env = make_env("cartpole", seed=0)
    model = IIRDQN(IIRPolicy, env, learning_starts=10, train_freq=1000, seed=0, learning_rate=1e-3, distill_policy=10.0,
                   distill_tau=tau, policy_kwargs={"arch": "mlp", "hidden": [32], "timesteps": 1})
    model.learn(300)  # fills the buffer; no update yet
    obs = torch.as_tensor(model.replay_buffer.observations[:300, 0])
    wanted = 1 - model.q_net(obs).argmax(1).float().mean().round().long()  # the action the student mostly avoids
    teacher = torch.nn.Linear(4, 2)
    torch.nn.init.zeros_(teacher.weight)
    teacher.bias.data = torch.nn.functional.one_hot(wanted, 2).float()  # always prefers `wanted`
    model.teacher = teacher
    before = (model.q_net(obs).argmax(1) == wanted).float().mean()
    model.train(gradient_steps=200, batch_size=64)
    after = (model.q_net(obs).argmax(1) == wanted).float().mean()
    assert before <= 0.5 and after > 0.95


def test_soft_policy_distillation_rests_at_the_teachers_q_values_where_the_hard_one_widens_the_gap():
    model = IIRDQN(IIRPolicy, make_env("cartpole", seed=0), distill_tau=0.01,
                   policy_kwargs={"arch": "mlp", "hidden": [8], "timesteps": 1})
    teacher_q = torch.tensor([[1.00, 1.01], [0.30, 0.20]])  # action gaps of 0.01 and 0.1, as a Pong ANN's

    def grad(q: torch.Tensor) -> torch.Tensor:
        q = q.clone().requires_grad_()
        model.policy_loss(q, teacher_q).backward()
        return q.grad

    assert grad(teacher_q).abs().max() < 1e-6
    q = torch.tensor([[1.0, 1.0], [0.3, 0.3]])
    soft = (torch.softmax(q / 0.01, 1) - torch.softmax(teacher_q / 0.01, 1)) / 2  # mean over the batch
    assert torch.allclose(grad(q), soft, atol=1e-6)
    model.distill_gain = 10.0  # the student at 10x the teacher's temperature: at rest with 10x the teacher's gaps
    assert grad(10 * teacher_q).abs().max() < 1e-6
    assert grad(teacher_q)[0, 1] < -0.1
    model.distill_tau = 0.0  # hard targets: still pushing the teacher's greedy action up at the teacher's values
    hard = grad(teacher_q)
    assert hard[0, 1] < -0.1 and hard[1, 0] < -0.1


@pytest.mark.parametrize("env_name, channels_last", [("cartpole", False), ("cartpole-pixels", False),
                                                     ("cartpole-pixels", True)])
def test_lean_predict_gives_sb3s_actions_and_eval_mode(env_name, channels_last):
    env = make_env(env_name, n_envs=3, seed=0)
    arch = "mlp" if env_name == "cartpole" else "paper-conv"  # paper-conv has batch norm: eval mode matters
    model = IIRDQN(IIRPolicy, env, seed=0, policy_kwargs={"arch": arch, "hidden": [16], "channels_last": channels_last})
    policy = model.policy
    obs = env.reset()
    for _ in range(3):
        obs, *_ = env.step(np.array([env.action_space.sample() for _ in range(3)]))
    policy.set_training_mode(True)
    actions, state = policy.predict(obs, deterministic=True)
    assert not policy.training and not any(m.training for m in policy.q_net.modules())
    expected, _ = BasePolicy.predict(policy, obs, deterministic=True)
    assert actions.shape == (3,) and actions.tolist() == expected.tolist() and state is None
    single, _ = policy.predict(obs[0], deterministic=True)  # one unbatched observation: SB3's own path
    assert np.ndim(single) == 0 and int(single) == expected[0]


@pytest.mark.parametrize("arch, shape", [("mlp", (4,)), ("paper-conv", (3, 40, 60)), ("nature", (4, 84, 84))])
def test_infer_gives_the_modules_numbers_and_leaves_its_input_alone(arch, shape):
    torch.manual_seed(0)
    net = build_ann(arch, shape, 3, hidden=[8, 8]).eval()
    x = torch.randn(5, *shape)
    if arch == "nature":
        net.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    if arch == "mlp":
        net.insert(0, torch.nn.ReLU())  # a ReLU on the input itself must not write into it
    before = x.clone()
    with torch.no_grad():
        expected = net(x)
    assert torch.equal(infer(net, x), expected) and torch.equal(x, before)


@pytest.mark.parametrize("timesteps, double_q", [(None, False), (2, False), (None, True)])
def test_compiled_update_matches_the_eager_one_and_is_not_saved(timesteps, double_q, tmp_path):
    env = make_env("cartpole", seed=0)
    kwargs = {"learning_starts": 10, "train_freq": 1000, "seed": 0, "learning_rate": 1e-3, "distill": 1.0,
              "distill_policy": 1.0, "double_q": double_q,
              "policy_kwargs": {"arch": "mlp", "hidden": [16], "timesteps": timesteps}}
    eager, compiled = IIRDQN(IIRPolicy, env, **kwargs), IIRDQN(IIRPolicy, env, compile=True, **kwargs)
    eager.learn(200)  # fills the buffer; no update yet
    compiled.replay_buffer = eager.replay_buffer
    compiled.policy.load_state_dict(eager.policy.state_dict())
    compiled.set_logger(Logger(None, []))
    teacher = torch.nn.Linear(4, 2)
    eager.teacher = compiled.teacher = teacher.requires_grad_(False)
    for step in range(3):  # the same batch for both; equal gradients (float sums in another order)
        for model in (eager, compiled):
            np.random.seed(step)
            model.train(gradient_steps=1, batch_size=32)
        for a, b in zip(eager.q_net.parameters(), compiled.q_net.parameters()):
            assert a.grad.abs().sum() > 0 and torch.allclose(a.grad, b.grad, rtol=1e-3, atol=1e-6)
            b.data.copy_(a.data)  # each step from the same weights: Adam's first steps amplify tiny differences
    assert compiled._compiled_q_values is not None
    compiled.save(tmp_path / "m.zip")
    loaded = IIRDQN.load(tmp_path / "m.zip", env=env)
    assert loaded.compile and loaded._compiled_q_values is None


@pytest.mark.parametrize("scale", [0.01, 100.0])
def test_gradient_clipping_matches_clip_grad_norm_below_and_above_the_max_norm(scale):
    model = IIRDQN(IIRPolicy, make_env("cartpole", seed=0), max_grad_norm=1.0,
                   policy_kwargs={"arch": "mlp", "hidden": [8]})
    for p in model.q_net.parameters():
        p.grad = scale * torch.randn_like(p)
    reference = [torch.nn.Parameter(p.detach().clone()) for p in model.q_net.parameters()]
    for r, p in zip(reference, model.q_net.parameters()):
        r.grad = p.grad.clone()
    torch.nn.utils.clip_grad_norm_(reference, 1.0)
    model.clip_gradients()
    assert all(torch.equal(p.grad, r.grad) for p, r in zip(model.q_net.parameters(), reference))
    total = torch.nn.utils.get_total_norm([p.grad for p in model.q_net.parameters()])
    assert (total < 1.0001) if scale > 1 else (total < 0.9)


def test_bf16_target_and_teacher_hold_the_weights_autocast_would_cast():
    model = IIRDQN(IIRPolicy, make_env("cartpole", seed=0), bf16=True, policy_kwargs={"arch": "mlp", "hidden": [8]})
    online, target = model.q_net.net, model.q_net_target.net
    with torch.no_grad():
        for p in online.parameters():
            p.add_(0.01 * torch.randn_like(p))  # weights that bfloat16 rounds
    polyak_update(online.parameters(), target.parameters(), 1.0)  # SB3's target update
    for p, q in zip(online.parameters(), target.parameters()):
        assert q.dtype == torch.bfloat16 and torch.equal(q, p.to(torch.bfloat16))
    model.set_teacher(model.q_net)
    assert next(model.teacher.parameters()).dtype == torch.bfloat16 and next(online.parameters()).dtype == torch.float32
    obs = torch.randn(16, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16), torch.no_grad():
        assert torch.equal(model.q_net_target(obs), model.q_net(obs)) and torch.equal(model.teacher(obs), model.q_net(obs))


@pytest.mark.parametrize("target_eps, bootstrap", [(0.0, 10.0), (0.5, 7.5), (1.0, 5.0)])
def test_td_target_bootstraps_with_max_or_the_epsilon_greedy_expectation(target_eps, bootstrap):
    model = IIRDQN(IIRPolicy, make_env("cartpole", seed=0), gamma=0.5, target_eps=target_eps,
                   policy_kwargs={"arch": "mlp", "hidden": [8], "timesteps": 1})
    q_next = torch.tensor([[0.0, 10.0]]).expand(3, 2)  # max 10, mean 5
    obs = torch.zeros(3, 4)
    data = ReplayBufferSamples(obs, torch.zeros(3, 1), obs, torch.tensor([[0.0], [0.0], [1.0]]),
                               torch.tensor([[1.0], [0.0], [2.0]]), torch.tensor([[0.5], [0.5], [0.25]]))
    expected = torch.tensor([[1.0 + 0.5 * bootstrap], [0.5 * bootstrap], [2.0]])  # the third is terminal
    assert torch.allclose(model.td_target(data, q_next), expected)
    assert torch.allclose(model.td_target(data._replace(discounts=None), q_next), expected)


@pytest.mark.parametrize("target_eps", [0.0, 0.5])
def test_double_q_values_the_online_nets_greedy_action_with_the_target_net(target_eps):
    model = IIRDQN(IIRPolicy, make_env("cartpole", seed=0), gamma=0.5, target_eps=target_eps, double_q=True,
                   policy_kwargs={"arch": "mlp", "hidden": [8]})
    with torch.no_grad():  # constant Q-values: the online net prefers action 0, the target net's max is action 1
        for net, values in ((model.q_net, [1.0, 0.0]), (model.q_net_target, [2.0, 10.0])):
            for p in net.parameters():
                p.zero_()
            [m for m in net.modules() if isinstance(m, torch.nn.Linear)][-1].bias.copy_(torch.tensor(values))
    obs = torch.zeros(2, 4)
    data = ReplayBufferSamples(obs, torch.zeros(2, 1, dtype=torch.long), obs, torch.zeros(2, 1),
                               torch.tensor([[1.0], [0.0]]), None)
    _, q_next, greedy_next, _ = model.q_values(data)
    assert greedy_next.tolist() == [0, 0] and torch.allclose(q_next, torch.tensor([[2.0, 10.0]]).expand(2, 2))
    bootstrap = (1 - target_eps) * 2.0 + target_eps * 6.0  # the target net's value of action 0, not its max 10
    assert torch.allclose(model.td_target(data, q_next, greedy_next), torch.tensor([[1.0], [0.0]]) + 0.5 * bootstrap)
    model.double_q = False
    assert model.q_values(data)[2] is None


@pytest.mark.parametrize("avx512_bf16, amx, native", [(False, False, False), (True, False, True), (False, True, True)])
def test_native_bf16_only_on_cpus_that_compute_bfloat16(avx512_bf16, amx, native, monkeypatch):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    assert native_bf16("cpu") is native


def test_epsilon_greedy_is_greedy_at_zero_and_explores_each_game_on_its_own():
    env = make_env("cartpole", seed=0)
    head = torch.nn.Linear(4, 2)
    torch.nn.init.zeros_(head.weight)
    head.bias.data = torch.tensor([1.0, 0.0])  # greedy action: always 0
    qnet = QNet(env.observation_space, env.action_space, head)
    obs = np.zeros((4000, 4), dtype=np.float32)  # 4000 games' observations, one step
    assert not EpsilonGreedy(qnet, 0.0, 0).predict(obs)[0].any()
    actions = EpsilonGreedy(qnet, 0.5, 0).predict(obs)[0]
    assert actions.mean() == pytest.approx(0.25, abs=0.03)  # half explore, half of those pick action 1
    np.testing.assert_array_equal(actions, EpsilonGreedy(qnet, 0.5, 0).predict(obs)[0])  # seeded


def test_evaluate_returns_the_scores_in_trial_order_not_in_the_order_the_games_end():
    torch.manual_seed(1)
    env = make_env("cartpole", 5, seed=3, training=False)
    qnet = QNet(env.observation_space, env.action_space, build_ann("mlp", (4,), 2, [8]))
    scores, rates = pipeline.evaluate(qnet, env, 5, 3, "ann")
    alone = [pipeline.evaluate(qnet, make_env("cartpole", 1, 3 + i, False), 1, 3 + i, "ann")[0][0] for i in range(5)]
    assert scores == alone and scores != sorted(scores) and rates is None  # greedy: each game as if played alone


def test_a_model_that_has_learned_refills_its_buffer_with_its_own_policy_not_random_actions():
    env = make_env("cartpole", seed=0)
    model = IIRDQN(IIRPolicy, env, learning_starts=10**6, exploration_initial_eps=0.0, exploration_final_eps=0.0,
                   seed=0, policy_kwargs={"arch": "mlp", "hidden": [8]})
    model.exploration_rate = 0.0
    observations = np.random.default_rng(0).normal(size=(50, 1, 4)).astype(np.float32)

    def warm_up_actions() -> list[int]:
        actions = []
        for obs in observations:
            model._last_obs = obs
            actions.append(int(model._sample_action(model.learning_starts)[0][0]))
        return actions

    greedy = [int(model.policy.predict(obs, deterministic=True)[0][0]) for obs in observations]
    assert warm_up_actions() != greedy  # a new model: SB3's random warm-up
    model._n_updates = 1  # as a loaded model that has learned
    assert warm_up_actions() == greedy


def test_keep_best_restores_the_best_validated_weights_and_survives_restart(tmp_path, monkeypatch, capsys):
    from spiking_dqn.agents import callbacks

    env = make_env("cartpole", seed=0)
    model = IIRDQN(IIRPolicy, env, learning_starts=20, train_freq=10, gradient_steps=5, batch_size=16, seed=0,
                   policy_kwargs={"arch": "mlp", "hidden": [16], "timesteps": 2})
    scores, seen = iter([3.0, 7.0, 5.0, 7.0 - 1e-3]), []

    def fake_evaluate(player, *a, **k):  # scripted validation scores; records the weights each one judged
        seen.append({k: v.clone() for k, v in player.policy.state_dict().items()})
        return [next(scores)], [1]

    monkeypatch.setattr(callbacks, "evaluate_policy", fake_evaluate)
    keep = callbacks.KeepBest(env, 1, 100, tmp_path / "best.pt")
    model.learn(250, callback=keep)  # validations at the start, after 100 and 200 steps, and at the end
    assert len(seen) == 4 and keep.best == 7.0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1] == "validation (best.pt) at 100 env steps: 7.00 over 1 games, kept; best 7.00"
    assert lines[2] == "validation (best.pt) at 200 env steps: 5.00 over 1 games; best 7.00"
    keep.restore(model.policy)
    for k, v in model.policy.state_dict().items():
        torch.testing.assert_close(v, seen[1][k])
    assert not torch.equal(seen[1]["q_net.net.head.1.weight"], seen[3]["q_net.net.head.1.weight"])
    assert callbacks.KeepBest(env, 1, 100, tmp_path / "best.pt").best == 7.0  # a resumed stage knows its best


def test_keep_best_stops_the_phase_at_the_stop_reward_and_a_resume_stops_at_once(tmp_path, monkeypatch):
    from spiking_dqn.agents import callbacks

    env = make_env("cartpole", seed=0)
    model = IIRDQN(IIRPolicy, env, learning_starts=20, seed=0, policy_kwargs={"arch": "mlp", "hidden": [8]})
    scores = iter([3.0, 5.0, 6.0, 9.0])
    monkeypatch.setattr(callbacks, "evaluate_policy", lambda *a, **k: ([next(scores)], [1]))
    keep = callbacks.KeepBest(env, 1, 100, tmp_path / "best.pt", stop=6.0)
    model.learn(1000, callback=keep)  # validations at 0, 100, 200: the third reaches 6 and ends the phase
    assert model.num_timesteps == 200 and keep.best == 6.0 and keep.reached
    resumed = callbacks.KeepBest(env, 1, 100, tmp_path / "best.pt", stop=6.0)
    assert resumed.reached and not callbacks.KeepBest(env, 1, 100, tmp_path / "best.pt", stop=6.5).reached
    model.learn(1000, callback=resumed, reset_num_timesteps=False)  # the start validates (9) and stops: no other
    assert model.num_timesteps == 201 and resumed.best == 9.0 and next(scores, None) is None


def test_keep_best_validates_the_same_weights_to_the_same_score(tmp_path):
    from spiking_dqn.agents import callbacks

    env = make_env("cartpole", 2, 3, False)
    model = IIRDQN(IIRPolicy, env, seed=0, policy_kwargs={"arch": "mlp", "hidden": [8]})
    model.set_logger(Logger(None, []))
    keep = callbacks.KeepBest(env, 4, 100, tmp_path / "best.pt", epsilon=0.5, seed=3)
    keep.init_callback(model)
    first = keep.validate()
    assert [keep.validate() for _ in range(3)] == [first] * 3  # same starting states, same random actions


def _train(args, tmp_path, name="run"):
    out = tmp_path / name
    code = main(["train", "cartpole", "--out", str(out), *TINY, *args])
    return code, out


def test_pipeline_writes_complete_run_dir_and_carries_buffer_and_parameters(tmp_path, monkeypatch):
    starts, targets = [], set()
    learn = IIRDQN.learn

    def spy(self, *a, **k):
        targets.add((self.policy.spiking, self.target_eps, self.bf16))
        if self.policy.spiking:
            starts.append((self.policy.timesteps, id(self.replay_buffer), self.replay_buffer.pos,
                           {k: v.clone() for k, v in self.policy.q_net.state_dict().items()}))
        return learn(self, *a, **k)

    monkeypatch.setattr(IIRDQN, "learn", spy)
    monkeypatch.setattr(pipeline, "native_bf16", lambda device: True)  # ann.bf16=auto: as the hardware allows
    code, out = _train(["--timesteps", "1", "--schedule", "3,1", "--set", "ann.target_epsilon=0.3",
                        "--set", "ann.bf16=auto"], tmp_path)
    assert code == 0 and targets == {(False, 0.3, True), (True, 0.0, True)}  # TD target from each phase's section
    for f in ("config.yaml", "ann.zip", "stage_T3.zip", "stage_T1.zip", "results.md", "results.png", "replay.pkl"):
        assert (out / f).exists(), f
    assert any((out / "tb").iterdir())
    res = json.loads((out / "results.json").read_text())
    assert res["task"] == "cartpole" and res["metric"] == "reward" and res["trials"] == 2
    assert [(r["model"], r["timesteps"]) for r in res["rows"]] == [("ann", None), ("converted", 100), ("iir", 3),
                                                                    ("iir", 1)]
    keys = {"model", "timesteps", "score_mean", "score_std", "spike_rate", "layer_spike_rates", "energy_ratio",
            "memory_access_ratio", "ms_per_decision", "scores"}
    assert all(set(r) == keys for r in res["rows"])
    for r in res["rows"]:  # one score per trial, summarised by the row's mean and std
        assert len(r["scores"]) == 2 and r["score_mean"] == pytest.approx(np.mean(r["scores"]))
        assert r["score_std"] == pytest.approx(np.std(r["scores"]))
    assert all(len(r["layer_spike_rates"]) == 2 for r in res["rows"][1:])
    (t3, buf3, pos3, _), (t1, buf1, pos1, start1) = starts
    assert (t3, t1) == (3, 1) and buf3 == buf1
    assert pos3 >= 600 and pos1 >= pos3 + 200  # the ANN's transitions are kept, new ones arrive
    end3 = IIRDQN.load(out / "stage_T3.zip").policy.q_net.state_dict()
    for k in end3:
        torch.testing.assert_close(start1[k], end3[k])


@pytest.mark.parametrize("teacher", ["previous", "ann"])
def test_stages_distil_from_the_stage_before_or_from_the_ann(teacher, tmp_path, monkeypatch):
    taught = []
    learn = IIRDQN.learn

    def spy(self, *a, **k):
        if self.policy.spiking:
            taught.append({k: v.clone() for k, v in self.teacher.state_dict().items()})
        return learn(self, *a, **k)

    monkeypatch.setattr(IIRDQN, "learn", spy)
    code, out = _train(["--timesteps", "1", "--schedule", "3,1", "--set", f"snn.teacher={teacher}"], tmp_path)
    assert code == 0
    ann = IIRDQN.load(out / "ann.zip").policy.q_net.state_dict()
    t3 = IIRDQN.load(out / "stage_T3.zip").policy.q_net.state_dict()
    expected = [ann, ann if teacher == "ann" else t3]  # T3 always learns from the ANN
    assert [sorted(t) for t in taught] == [sorted(e) for e in expected]
    for got, want in zip(taught, expected):
        for k in want:
            torch.testing.assert_close(got[k], want[k])


def test_validation_games_stop_the_ann_phase_and_a_stage_at_their_stop_reward(tmp_path, monkeypatch):
    from spiking_dqn.agents import callbacks

    scores = iter([0.0, 10.0] * 3)  # each phase: its start, then 100 env steps, reaching the stop reward
    monkeypatch.setattr(callbacks, "evaluate_policy", lambda *a, **k: ([next(scores)], [1]))
    sets = [x for k in ("ann", "snn") for x in ("--set", f"{k}.select_every=100", "--set", f"{k}.stop_reward=5")]
    code, out = _train(["--timesteps", "1", "--schedule", "2,1", *sets], tmp_path)
    assert code == 0
    assert IIRDQN.load(out / "ann.zip").num_timesteps == 100  # not the 600 of TINY
    assert [IIRDQN.load(out / f"stage_T{t}.zip").num_timesteps for t in (2, 1)] == [100, 100]  # not 200
    assert not list(out.glob("*.best.pt"))
    assert [r["timesteps"] for r in json.loads((out / "results.json").read_text())["rows"]] == [None, 100, 2, 1]
    for phase in sorted((out / "tb").iterdir()):  # every validation reaches TensorBoard, the stopping one too
        events = EventAccumulator(str(phase))
        events.Reload()
        assert [(e.step, e.value) for e in events.Scalars("select/mean_reward")] == [(0, 0.0), (100, 10.0)], phase


def test_resume_skips_finished_stages(tmp_path, monkeypatch):
    calls = []
    learn = IIRDQN.learn

    def failing(self, *a, **k):
        calls.append(self.policy.timesteps)
        if self.policy.timesteps == 1 and len(calls) < 4:
            raise KeyboardInterrupt
        return learn(self, *a, **k)

    monkeypatch.setattr(IIRDQN, "learn", failing)
    with pytest.raises(KeyboardInterrupt):
        _train(["--timesteps", "1", "--schedule", "3,1"], tmp_path)
    out = tmp_path / "run"
    assert (out / "stage_T3.zip").exists() and not (out / "stage_T1.zip").exists()
    saved = yaml.safe_load((out / "config.yaml").read_text())
    del saved["snn"]["select_every"], saved["snn"]["select_episodes"]  # as a run from before these keys
    (out / "config.yaml").write_text(yaml.safe_dump(saved))
    argv = ["train", "cartpole", "--timesteps", "1", "--out", str(out), "--resume", "--set", "snn.select_episodes=3"]
    loads, load = [], IIRDQN.load_replay_buffer
    monkeypatch.setattr(IIRDQN, "load_replay_buffer", lambda self, *a, **k: loads.append(1) or load(self, *a, **k))
    assert main(argv) == 0
    assert calls == [None, 3, 1, 1]
    assert len(loads) == 1  # the ANN phase's load of replay.pkl serves the resumed stage: one buffer in memory
    resumed = yaml.safe_load((out / "config.yaml").read_text())["snn"]
    assert resumed["select_every"] == load_preset("cartpole")["snn"]["select_every"]
    assert resumed["select_episodes"] == 3 and resumed["stage_steps"] == 200  # saved values are kept
    rows = json.loads((out / "results.json").read_text())["rows"]
    assert [r["timesteps"] for r in rows] == [None, 100, 3, 1]


def test_ann_from_continues_another_runs_ann_in_a_new_run_and_leaves_it_intact(tmp_path, monkeypatch):
    code, first = _train(["--timesteps", "1", "--schedule", "1"], tmp_path, "first")
    assert code == 0
    before = {p.relative_to(first): p.read_bytes() for p in first.rglob("*") if p.is_file()}
    learned, learn = [], IIRDQN.learn

    def spy(self, total, *a, **k):
        learned.append((self.policy.timesteps, total, self.num_timesteps))
        return learn(self, total, *a, **k)

    monkeypatch.setattr(IIRDQN, "learn", spy)
    code, second = _train(["--timesteps", "1", "--schedule", "1", "--set", "ann.steps=900", "--set", "ann.select_every=300",
                           "--ann-from", str(first)], tmp_path, "second")
    assert code == 0
    assert learned[0] == (None, 300, 600)  # the ANN phase went on from the first run's 600 env steps
    assert IIRDQN.load(second / "ann.zip").num_timesteps == 900 and not (second / "ann.ckpt.zip").exists()
    events = EventAccumulator(str(next((second / "tb").glob("ann_*"))))  # logged in the new run, from step 600
    events.Reload()
    assert [e.step for e in events.Scalars("select/mean_reward")] == [600, 900] and (second / "results.json").exists()
    assert yaml.safe_load((second / "config.yaml").read_text())["ann_from"] == str(first.resolve())
    assert {p.relative_to(first): p.read_bytes() for p in first.rglob("*") if p.is_file()} == before


@pytest.mark.parametrize("steps, learned_steps, updates", [(900, 300, 40), (600, 100, 0)])
def test_ann_from_a_run_without_its_buffer_refills_one_before_learning(steps, learned_steps, updates, tmp_path,
                                                                         monkeypatch):
    code, first = _train(["--timesteps", "1", "--schedule", "1"], tmp_path, "first")
    assert code == 0
    bare = tmp_path / "bare"  # what a run hands on without its replay buffer (docs/results/pong.md)
    bare.mkdir()
    for name in ("config.yaml", "ann.zip"):
        (bare / name).write_bytes((first / name).read_bytes())
    learned, learn = [], IIRDQN.learn

    def spy(self, total, *a, **k):
        learned.append((total, self.num_timesteps, self.learning_starts))
        return learn(self, total, *a, **k)

    monkeypatch.setattr(IIRDQN, "learn", spy)
    code, second = _train(["--timesteps", "1", "--schedule", "1", "--set", f"ann.steps={steps}",
                           "--set", "ann.select_every=0", "--ann-from", str(bare)], tmp_path, "second")
    assert code == 0 and (second / "results.json").exists()
    assert learned[0] == (learned_steps, 600, 700)  # 100 env steps (ann.learning_starts) refill it before updates
    ann = IIRDQN.load(second / "ann.zip")
    assert ann.num_timesteps == 600 + learned_steps
    assert ann._n_updates - IIRDQN.load(first / "ann.zip")._n_updates == updates  # 50-step rollouts, 10 updates each
    buffer = load_from_pkl(second / "replay.pkl")  # the refilled buffer, carried on through the 200-step T1 stage
    assert buffer.size() == learned_steps + 200 and not (bare / "replay.pkl").exists()


@pytest.mark.parametrize("extra, message", [
    (["--ann-from", "{tmp}/none"], "no finished ANN phase"),
    (["--ann-from", "{tmp}/o"], "another run directory"),
    (["--ann-from", "{tmp}/o", "--resume"], "leave out --resume"),
    (["--ann-from", "{tmp}/src", "--set", "hidden=[8]"], "trained mlp on cartpole, not mlp on"),
    (["--ann-from", "{tmp}/bare"], "bare/config.yaml must be a YAML mapping"),
])
def test_ann_from_rejects_a_bad_source_with_one_line_and_exit_2(extra, message, tmp_path, capsys):
    src = tmp_path / "src"
    src.mkdir()
    for name in ("ann.zip", "replay.pkl"):
        (src / name).write_text("x")
    (src / "config.yaml").write_text(yaml.safe_dump(load_preset("cartpole") | {"env": "cartpole"}))
    bare = tmp_path / "bare"
    bare.mkdir()
    for name in ("ann.zip", "replay.pkl", "config.yaml"):
        (bare / name).write_text("x")
    argv = ["train", "cartpole", "--timesteps", "1", "--out", str(tmp_path / "o"), "--overwrite"]
    assert main([*argv, *(e.format(tmp=tmp_path) for e in extra)]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "o").exists() and (src / "ann.zip").read_text() == "x"


@pytest.mark.parametrize("argv, message", [
    (["train", "nope", "--timesteps", "1"], "unknown environment"),
    (["train", "cartpole", "--timesteps", "0"], "between 1"),
    (["train", "cartpole", "--timesteps", "7"], "between 1"),
    (["train", "cartpole", "--timesteps", "1", "--schedule", "5,x,1"], "schedule"),
    (["train", "cartpole", "--timesteps", "1", "--schedule", "1,3,5"], "descending"),
    (["train", "cartpole", "--timesteps", "1", "--set", "ann.nope=3"], "unknown config key 'ann.nope'"),
    (["train", "cartpole", "--timesteps", "1", "--config", "/nonexistent.yaml"], "cannot read config"),
    (["train", "cartpole", "--timesteps", "1", "--device", "tpu"], "--device"),
    (["train", "cartpole"], "--timesteps"),
    (["train", "cartpole", "--timesteps", "1", "--trials", "0"], "--trials"),
    (["train", "cartpole", "--timesteps", "1", "--set", "ann.n_steps=0"], "ann.n_steps must be"),
    (["train", "cartpole", "--timesteps", "1", "--set", "ann.learning_rate=fast"], "must be a number"),
    (["train", "pong", "--timesteps", "1", "--set", "ann.optimize_memory_usage=true"], "optimize_memory_usage=false"),
    (["train", "cartpole", "--timesteps", "1", "--set", "eval.epsilon=1.5"], "'eval.epsilon' must be a number at least 0 and at most 1"),
    (["train", "cartpole", "--timesteps", "1", "--set", "ann.learning_rate=0"], "'ann.learning_rate' must be a number above 0"),
    (["train", "pong", "--timesteps", "1", "--set", "snn.percentile=150"], "'snn.percentile' must be a number above 0 and at most 100"),
    (["train", "cartpole", "--timesteps", "1", "--set", "snn.stage_steps=-5"], "'snn.stage_steps' must be a number at least 0"),
    (["train", "pong", "--timesteps", "1", "--set", "ann.bf16=maybe"], "'ann.bf16' must be one of true, false, auto"),
    (["train", "cartpole", "--timesteps", "1", "--set", "ann.optimizer=sgd"], "'ann.optimizer' must be one of adam"),
    (["train", "cartpole-pixels", "--timesteps", "1", "--set", "temporal=delta"], "'temporal' must be one of stack"),
    (["train", "pong", "--timesteps", "1", "--set", "snn.teacher=self"], "'snn.teacher' must be one of previous, ann"),
    (["train", "cartpole", "--timesteps", "1", "--set", "snn.distill_tau=-0.01"], "'snn.distill_tau' must be a number at least 0"),
    (["train", "pong", "--timesteps", "1", "--set", "snn.distill_gain=0"], "'snn.distill_gain' must be a number above 0"),
    (["train", "pong", "--timesteps", "1", "--set", "baseline.equalize=2"], "'baseline.equalize' must be a number at least 0 and at most 1"),
    (["vision", "train", "digits", "--timesteps", "1", "--set", "iir.dropout=2"], "'iir.dropout' must be a number"),
    (["evaluate", "/nonexistent-run"], "not a finished run"),
    (["vision", "train", "mnist", "--timesteps", "1"], "unknown dataset"),
    (["vision", "train", "digits", "--arch", "vgg7", "--timesteps", "1"], "unknown arch"),
    (["vision", "train", "cifar10", "--timesteps", "1"], "needs --data-dir"),
    (["vision", "train", "digits", "--timesteps", "9"], "between 1"),
])
def test_cli_rejects_bad_input_with_one_line_and_exit_2(argv, message, capsys, tmp_path):
    with pytest.raises(SystemExit) as exc:
        raise SystemExit(main([*argv, *(["--out", str(tmp_path / "o")] if "train" in argv else [])]))
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err
    assert not (tmp_path / "o").exists()


def test_resume_and_evaluate_check_values_before_writing_anything(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    saved = yaml.safe_dump(load_preset("cartpole") | {"env": "cartpole", "eval": {"trials": 2, "epsilon": 7.0}})
    (out / "config.yaml").write_text(saved)
    (out / "ann.zip").write_text("x")
    assert main(["evaluate", str(out)]) == 2 and "'eval.epsilon' must be a number" in capsys.readouterr().err
    argv = ["train", "cartpole", "--timesteps", "1", "--out", str(out), "--resume", "--set", "eval.epsilon=0.05"]
    assert main([*argv, "--set", "ann.batch_size=0"]) == 2 and "'ann.batch_size'" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["ann.zip", "config.yaml"] and (out / "config.yaml").read_text() == saved


def test_cli_never_overwrites_an_existing_run(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "results.json").write_text("precious")
    assert main(["train", "cartpole", "--timesteps", "1", "--out", str(out)]) == 2
    assert "exists" in capsys.readouterr().err
    assert (out / "results.json").read_text() == "precious"


def test_evaluate_reruns_a_finished_run(tmp_path, capsys):
    code, out = _train(["--timesteps", "2", "--schedule", "2"], tmp_path)
    assert code == 0
    saved = yaml.safe_load((out / "config.yaml").read_text())
    del saved["snn"]["select_every"], saved["snn"]["distill_policy"]  # as a run from before these keys
    (out / "config.yaml").write_text(yaml.safe_dump(saved))
    assert main(["evaluate", str(out), "--trials", "3"]) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["trials"] == 3 and [r["model"] for r in res["rows"]] == ["ann", "converted", "iir"]
    assert f"at epsilon {saved['eval']['epsilon']:g}." in (out / "results.md").read_text()
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    assert main(["evaluate", str(out), "--trials", "2", "--epsilon", "0.5"]) == 0  # beside the run's rows
    other = json.loads((out / "eval-eps0.5" / "results.json").read_text())
    assert other["trials"] == 2 and [r["model"] for r in other["rows"]] == ["ann", "converted", "iir"]
    assert "at epsilon 0.5." in (out / "eval-eps0.5" / "results.md").read_text()
    assert before == {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    assert main(["evaluate", str(out), "--epsilon", "1.5"]) == 2 and not (out / "eval-eps1.5").exists()
    assert main(["evaluate", str(out), "--trials", "4", "--epsilon", "0.5", "--rows", "T2"]) == 0  # one row again
    again = json.loads((out / "eval-eps0.5" / "results.json").read_text())
    assert again["rows"][:2] == other["rows"][:2] and len(again["rows"][2]["scores"]) == 4
    for rows, message in (("T2,T9", "unknown row 'T9'"), ("iir", "unknown row 'iir'")):
        assert main(["evaluate", str(out), "--epsilon", "0.25", "--rows", rows]) == 2
        assert message in capsys.readouterr().err and not (out / "eval-eps0.25").exists()
    (out / "stage_T2.zip").rename(out / "moved.zip")
    assert main(["evaluate", str(out), "--epsilon", "0.25", "--rows", "T2"]) == 2
    assert "no finished stage T2" in capsys.readouterr().err and not (out / "eval-eps0.25").exists()


def test_presets_config_files_and_console_script(tmp_path):
    for name in ("cartpole",):
        cfg = load_preset(name)
        assert {"ann", "snn", "baseline", "eval"} <= set(cfg)
    pong, atari = load_preset("pong"), load_preset("atari")  # atari: the pong preset with its `base` overrides
    assert "base" not in atari and atari["ann"]["n_steps"] == pong["ann"]["n_steps"] == 3
    assert atari["ann"]["stop_reward"] is None and pong["ann"]["stop_reward"] == 19.5
    (tmp_path / "c.yaml").write_text(yaml.safe_dump({"snn": {"distill": 0.5}}))
    merged = merge(load_preset("cartpole"), read_config(str(tmp_path / "c.yaml")))
    assert merged["snn"]["distill"] == 0.5
    assert merged["snn"]["stage_steps"] == load_preset("cartpole")["snn"]["stage_steps"]
    (tmp_path / "e.yaml").write_text("ann:\n  learning_rate: 3e-4\n")  # YAML 1.2 float, a string in 1.1
    assert merge(load_preset("cartpole"), read_config(str(tmp_path / "e.yaml")))["ann"]["learning_rate"] == 3e-4
    assert apply_sets(load_preset("cartpole"), ["ann.learning_rate=1E-5"])["ann"]["learning_rate"] == 1e-5
    result = subprocess.run(["spiking-dqn", "--help"], check=False, capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0 and "train" in result.stdout


def test_pixel_cartpole_observations_are_images_of_the_cart(tmp_path):
    env = make_env("cartpole-pixels", n_envs=1, seed=0)
    obs = env.reset()
    assert obs.shape == (1, 2, 30, 80) and obs.dtype.name == "uint8"
    assert obs.max() > 100 and (obs > 100).mean() < 0.2  # a dark background with the cart and pole drawn
    qnet = QNet(env.observation_space, env.action_space, torch.nn.Flatten())
    assert qnet.preprocess(torch.as_tensor(obs)).max() <= 1.0


def test_pixel_env_leaves_termination_signals_alone():
    code = ("import time; from spiking_dqn.envs import make_env; make_env('cartpole-pixels', n_envs=1).reset(); "
            "print('ready', flush=True); time.sleep(60)")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd="/")
    assert proc.stdout.readline().strip() == "ready"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == -signal.SIGTERM


def test_interrupted_phase_resumes_from_its_last_checkpoint(tmp_path, monkeypatch):
    saves, learned = [], []
    checkpoint, learn = Run.checkpoint, IIRDQN.learn

    def crash_after_first(self, model, path):
        checkpoint(self, model, path)
        saves.append((path.name, model.num_timesteps))
        if len(saves) == 1:
            raise KeyboardInterrupt

    def spy(self, total, *a, **k):
        learned.append((self.policy.timesteps, total, self.num_timesteps))
        rates.append((self.lr_schedule(1.0), type(self.replay_buffer).__name__))
        return learn(self, total, *a, **k)

    rates = []
    monkeypatch.setattr(Run, "checkpoint", crash_after_first)
    monkeypatch.setattr(IIRDQN, "learn", spy)
    with pytest.raises(KeyboardInterrupt):
        _train(["--timesteps", "2", "--schedule", "2", "--set", "checkpoint_every=250"], tmp_path)
    assert saves == [("ann.ckpt.zip", 250)]
    out = tmp_path / "run"
    assert main(["train", "cartpole", "--timesteps", "2", "--out", str(out), "--resume",
                 "--set", "ann.learning_rate=0.0005", "--set", "ann.n_steps=3"]) == 0
    assert learned[:2] == [(None, 600, 0), (None, 350, 250)]  # the ANN phase went on from step 250
    preset = load_preset("cartpole")  # then with the new rate and n-step targets, carried into the stage:
    assert rates[:3] == [(preset["ann"]["learning_rate"], "ReplayBuffer"), (0.0005, "NStepReplayBuffer"),
                         (preset["snn"]["learning_rate"], "NStepReplayBuffer")]
    assert not (out / "ann.ckpt.zip").exists() and (out / "stage_T2.zip").exists()
