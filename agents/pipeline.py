"""The RL run: ANN-DQN -> converted T100 baseline -> IIR stages T5..T1, each evaluated, in one run directory."""
from __future__ import annotations

import copy
import json
import os
import shutil
from collections.abc import Collection
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
from spiking_dqn.agents.buffers import buffer_class, relayout, stores_channels_last
from spiking_dqn.agents.callbacks import Checkpoint, KeepBest, SpikeLogger
from spiking_dqn.agents.dqn import IIRDQN, native_bf16
from spiking_dqn.agents.policy import EpsilonGreedy, IIRPolicy, QNet
from spiking_dqn.envs import make_env
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.callbacks import BaseCallback, CallbackList
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.utils import LinearSchedule
from stable_baselines3.common.vec_env import VecEnv
from tqdm import tqdm

from spiking_dqn.config import OPTIMIZERS, ConfigError
from spiking_dqn.convert import convert
from spiking_dqn.iir import Stage, run_stages
from spiking_dqn.network import SpikingNetwork, recording
from spiking_dqn.report import Row, ann_row, atomic_save, atomic_write, snn_row, write_results

ANN_FILES = ("config.yaml", "ann.zip")  # what a run needs to hand its finished ANN phase on (replay.pkl if it has one)


def stage_file(t: int, kind: str = "zip") -> str:
    """The file name of stage T`t`'s network (`zip`), mid-stage checkpoint (`ckpt.zip`) or best weights (`best.pt`)."""
    return f"stage_T{t}.{kind}"


def continue_ann(source: Path, out: Path) -> None:
    """Seed a new run's ANN phase with another run's ANN and replay buffer (if it has one), as its mid-phase
    checkpoint."""
    for name, target in (("ann.zip", "ann.ckpt.zip"), ("replay.pkl", "replay.pkl")):
        if not (source / name).exists():
            continue
        try:  # a hard link costs no disk; runs replace their files (atomic_save), so the source stays intact
            os.link(source / name, out / target)
        except OSError:
            shutil.copyfile(source / name, out / target)


def fit_buffer(model: IIRDQN) -> None:
    """Move a loaded replay buffer's transitions into the kind of buffer the model's settings ask for (n-step or
    not, memory-optimised or not, images stored channels-last or not), sharing the arrays where their layout is the
    same; no-op when it already is that kind."""
    old = model.replay_buffer
    assert old is not None
    kwargs = model.replay_buffer_kwargs
    if (type(old) is model.replay_buffer_class and old.optimize_memory_usage == model.optimize_memory_usage
            and getattr(old, "n_steps", 1) == kwargs.get("n_steps", 1)):
        return
    new = model.replay_buffer_class(model.buffer_size, model.observation_space, model.action_space,
                                    device=model.device, n_envs=model.n_envs,
                                    optimize_memory_usage=model.optimize_memory_usage, **kwargs)
    if new.observations.size != old.observations.size:
        raise ConfigError(f"the saved replay buffer holds {old.buffer_size * old.n_envs} transitions, "
                          f"not ann.buffer_size {model.buffer_size}")
    to_channels_last = stores_channels_last(new)
    moved = (lambda a: a) if to_channels_last == stores_channels_last(old) else (lambda a: relayout(a, to_channels_last))
    new.observations = moved(old.observations)
    for name in ("actions", "rewards", "dones", "timeouts"):
        setattr(new, name, getattr(old, name))
    new.pos, new.full = old.pos, old.full
    if not new.optimize_memory_usage and old.optimize_memory_usage:  # next observation i is observation i + 1
        # (the oldest transition, at pos, lost its observation to the newest next one: replaced at the next step)
        new.next_observations[:-1] = new.observations[1:]
        new.next_observations[-1] = new.observations[0]
    elif not new.optimize_memory_usage:
        new.next_observations = moved(old.next_observations)
    elif not old.optimize_memory_usage and old.size():  # memory-optimised: the newest next observation at pos
        new.observations[new.pos] = moved(old.next_observations[new.pos - 1][None])[0]
    model.replay_buffer = new


def dqn_kwargs(cfg: dict, section: dict, spiking: bool) -> dict[str, Any]:
    """SB3 DQN arguments for the ANN phase or the SNN stages."""
    common = {k: section[k] for k in ("learning_rate", "batch_size", "target_update_interval", "train_freq",
                                      "gradient_steps")}
    common.update(target_eps=section["target_epsilon"], double_q=section["double_q"])
    ann = cfg["ann"]
    opt = {"optimizer_class": OPTIMIZERS[ann["optimizer"]], "optimizer_kwargs": {"fused": True} if ann["fused"] else {}}
    buffer_kwargs: dict[str, Any] = {"handle_timeout_termination": not ann["optimize_memory_usage"]}
    if ann["n_steps"] > 1:
        buffer_kwargs.update(n_steps=ann["n_steps"], gamma=ann["gamma"])
    common.update(gamma=ann["gamma"], buffer_size=ann["buffer_size"],
                  bf16=native_bf16(cfg["device"]) if ann["bf16"] == "auto" else ann["bf16"], compile=ann["compile"],
                  optimize_memory_usage=ann["optimize_memory_usage"], channels_last=ann["channels_last"],
                  replay_buffer_class=buffer_class(ann["n_steps"], ann["channels_last"]),
                  replay_buffer_kwargs=buffer_kwargs)
    if spiking:
        eps = section["exploration_eps"]
        lr = LinearSchedule(section["learning_rate"], section["learning_rate_end"], 1.0)  # decays within each stage
        common.update(learning_rate=lr, learning_starts=0, exploration_initial_eps=eps, exploration_final_eps=eps,
                      exploration_fraction=1.0, distill=section["distill"],
                      distill_policy=section["distill_policy"], distill_tau=section["distill_tau"],
                      distill_gain=section["distill_gain"])
    else:
        common.update(learning_starts=ann["learning_starts"], exploration_fraction=ann["exploration_fraction"],
                      exploration_final_eps=ann["exploration_final_eps"])
    policy = {"arch": cfg["arch"], "hidden": cfg["hidden"], "channels_last": common.pop("channels_last"), **opt}
    return {"policy_kwargs": policy, **common}


def row_keys(cfg: dict) -> list[str]:
    """The result rows a run of `cfg` produces, in table order."""
    return ["ann", "converted", *(f"T{t}" for t in cfg["stages"])]


def evaluate(qnet: QNet, env: VecEnv, trials: int, seed: int, label: str,
             epsilon: float = 0.0) -> tuple[list[float], list[float] | None]:
    """Epsilon-greedy play of `trials` episodes (one per env copy, seeds seed..seed+trials-1): scores in trial order
    (SB3 returns them in the order the games end), spike rates. Game i of every row starts from the same state and
    draws its random actions at the same steps, so two rows' scores pair up game by game."""
    bar = tqdm(total=trials, desc=f"eval {label} T{getattr(qnet.net, 'timesteps', '-')}", leave=False)
    env.seed(seed)  # every row is played on the same starting states
    ended: list[int] = []  # the env copy of each episode evaluate_policy records, in its order

    def on_step(local: dict, _global: dict) -> None:
        if local["done"] and (not local["is_monitor_wrapped"] or "episode" in local["info"]):
            ended.append(local["i"])
            bar.update(1)  # an update(0) per step would still redraw the bar, flooding a non-terminal log

    net = qnet.net
    spiking = isinstance(net, SpikingNetwork)
    with recording(net) if spiking else nullcontext():
        returns, _ = evaluate_policy(EpsilonGreedy(qnet, epsilon, seed), env, n_eval_episodes=trials,
                                     return_episode_rewards=True, callback=on_step)
    rates = net.spike_rates() if spiking else None
    bar.close()
    return [float(r) for _, r in sorted(zip(ended, returns, strict=True), key=lambda pair: pair[0])], rates


class Run:
    """One run directory: config, checkpoints, replay buffer, finished rows; resumable phase by phase."""

    def __init__(self, cfg: dict, out: Path, results: Path | None = None) -> None:
        self.cfg, self.out, self.results = cfg, out, results or out
        self.state_path = self.results / "state.json"
        self.rows: dict[str, dict] = json.loads(self.state_path.read_text())["rows"] if self.state_path.exists() else {}
        self.env = make_env(cfg["env"], cfg["n_envs"], cfg["seed"], True, cfg["temporal"])
        self.eval_seed = cfg["seed"] + 10_000
        self.eval_env = make_env(cfg["env"], cfg["eval"]["trials"], self.eval_seed, False, cfg["temporal"])
        self.select_envs: dict[int, VecEnv] = {}

    def keep_best(self, section: dict, path: Path) -> KeepBest | None:
        """The section's validation games (own seeds) keeping a phase's best weights; None if `select_every` is 0."""
        if not section["select_every"]:
            return None
        n, cfg = section["select_episodes"], self.cfg
        seed = cfg["seed"] + 20_000
        if n not in self.select_envs:
            self.select_envs[n] = make_env(cfg["env"], n, seed, False, cfg["temporal"])
        return KeepBest(self.select_envs[n], n, section["select_every"], path, section["stop_reward"],
                        cfg["eval"]["epsilon"], seed)

    def finish(self, key: str, row: Row) -> None:
        """Record a finished phase and rewrite the results."""
        self.rows[key] = row.__dict__
        atomic_write(self.state_path, json.dumps({"rows": self.rows}, indent=1))
        order = ["ann", "converted"] + [f"T{t}" for t in sorted((r["timesteps"] for k, r in self.rows.items()
                                                                  if k.startswith("T")), reverse=True)]
        rows = [Row(**self.rows[k]) for k in order if k in self.rows]
        cfg = self.cfg
        write_results(self.results, cfg["env"], "reward", cfg["eval"]["trials"], cfg["seed"], rows,
                      f"Every game played epsilon-greedy at epsilon {cfg['eval']['epsilon']:g}.")

    def model(self, spiking: bool, path: Path | None = None) -> IIRDQN:
        """A new (or loaded) DQN for the ANN phase or the SNN stages."""
        cfg = self.cfg
        kwargs = dqn_kwargs(cfg, cfg["snn" if spiking else "ann"], spiking)
        if path is not None and path.exists():  # the saved network, trained on with the config's settings
            kwargs.pop("policy_kwargs")
            return IIRDQN.load(path, env=self.env, device=cfg["device"], tensorboard_log=str(self.out / "tb"),
                               **kwargs)
        if spiking:
            kwargs["policy_kwargs"]["timesteps"] = cfg["stages"][0]
        return IIRDQN(IIRPolicy, self.env, seed=cfg["seed"], device=cfg["device"], verbose=0,
                      tensorboard_log=str(self.out / "tb"), **kwargs)

    def calibration_states(self, model: IIRDQN) -> torch.Tensor:
        """Replay-buffer states (preprocessed as the network sees them) for thresholds and probes; cached."""
        path = self.out / "calibration.pt"
        if path.exists():
            return torch.load(path).to(model.device)
        obs = model.replay_buffer.sample(self.cfg["snn"]["calibration_samples"]).observations
        states = model.q_net.preprocess(obs).float()
        torch.save(states.cpu(), path)
        return states

    def learn(self, model: IIRDQN, steps: int, name: str, ckpt: Path, callbacks: list[BaseCallback]) -> None:
        """Learn until the model has `steps` env steps in this phase, checkpointing model and buffer."""
        remaining = steps - model.num_timesteps
        if remaining > 0:
            saver = Checkpoint(self.cfg["checkpoint_every"], lambda: self.checkpoint(model, ckpt))
            model.learn(remaining, tb_log_name=name, progress_bar=True, reset_num_timesteps=model.num_timesteps == 0,
                        callback=CallbackList([*callbacks, saver]))

    def checkpoint(self, model: IIRDQN, path: Path) -> None:
        """Save the replay buffer, then the model, each atomically."""
        atomic_save(self.out / "replay.pkl", model.save_replay_buffer)
        atomic_save(path, model.save)

    def resume_point(self, spiking: bool, *paths: Path | None, buffer: ReplayBuffer | None = None) -> IIRDQN | None:
        """The first saved model of `paths` that exists, with the run's replay buffer (`buffer` when already loaded,
        else read from disk; with none on disk, an empty one that the model refills for learning_starts env steps
        before it learns again); None if no model exists."""
        for p in paths:
            if p is not None and p.exists():
                model = self.model(spiking, p)
                if buffer is not None:  # the run keeps one replay.pkl: the ANN phase's load is the stages' buffer too
                    model.replay_buffer = buffer
                elif (self.out / "replay.pkl").exists():
                    model.load_replay_buffer(self.out / "replay.pkl")
                else:
                    model.learning_starts += model.num_timesteps
                fit_buffer(model)
                return model
        return None

    def train_ann(self) -> IIRDQN:
        """Train (or load, or continue) the ANN-DQN; its replay buffer stays on disk."""
        path, ckpt, best = self.out / "ann.zip", self.out / "ann.ckpt.zip", self.out / "ann.best.pt"
        model = self.resume_point(False, path, ckpt)
        if model is None or not path.exists():
            model = model or self.model(False)
            keep = self.keep_best(self.cfg["ann"], best)
            steps = self.cfg["ann"]["steps"]
            if 0 < model.num_timesteps < model.learning_starts:  # refilling the buffer it came without: the
                steps = max(steps, model.learning_starts)  # stages need one
            self.learn(model, steps, "ann", ckpt, [keep] if keep else [])
            if keep is not None:
                keep.restore(model.policy)
            self.checkpoint(model, path)
            ckpt.unlink(missing_ok=True)
            best.unlink(missing_ok=True)
        return model

    def run(self) -> None:
        """Every phase not finished yet, in order."""
        ann = self.train_ann()
        states = self.calibration_states(ann)
        self.reference_rows(ann, states)
        self.iir(ann, states)

    def reevaluate(self, only: Collection[str] | None = None) -> None:
        """Evaluate the saved ANN, the converted baseline and every saved stage again (or only the rows `only`)."""
        self.rows = {} if only is None else {k: v for k, v in self.rows.items() if k not in only}
        keys = row_keys(self.cfg) if only is None else list(only)
        ann = self.model(False, self.out / "ann.zip")
        states = self.calibration_states(ann)
        self.reference_rows(ann, states, keys)
        for t in self.cfg["stages"]:
            path = self.out / stage_file(t)
            if f"T{t}" in keys and path.exists():
                self.finish(f"T{t}", self.score("iir", self.model(True, path).q_net, states))

    def score(self, model: str, qnet: QNet, states: torch.Tensor) -> Row:
        """Evaluate a Q-network (ANN or spiking) into its result row."""
        ev = self.cfg["eval"]
        scores, rates = evaluate(qnet, self.eval_env, ev["trials"], self.eval_seed, model, ev["epsilon"])
        mean, std, net = float(np.mean(scores)), float(np.std(scores)), qnet.net
        row = ann_row(net, states, mean, std) if rates is None else snn_row(model, net, states, rates, mean, std)
        row.scores = scores
        return row

    def reference_rows(self, ann: IIRDQN, states: torch.Tensor,
                       keys: Collection[str] = ("ann", "converted")) -> None:
        """Evaluate the ANN and the converted long-latency baseline (those named in `keys`), unless already done."""
        if "ann" in keys and "ann" not in self.rows:
            self.finish("ann", self.score("ann", ann.q_net, states))
        if "converted" in keys and "converted" not in self.rows:
            b = self.cfg["baseline"]
            net = convert(ann.q_net.net, b["timesteps"], data=states, percentile=b["percentile"],
                          equalize_power=b["equalize"]).to(ann.device)
            self.finish("converted", self.score("converted", QNet(ann.observation_space, ann.action_space, net).eval(),
                                                states))

    def iir(self, ann: IIRDQN, states: torch.Tensor) -> None:
        """IIR stages from the ANN converted at the 90th percentile, each from the one before, distilled from `snn.teacher`."""
        cfg = self.cfg
        stages = cfg["stages"]
        done = [t for t in stages if f"T{t}" in self.rows]
        todo = [t for t in stages if t not in done]
        if not todo:
            return
        ckpt = self.out / stage_file(todo[0], "ckpt.zip")
        last = self.out / stage_file(done[-1]) if done else None
        snn = self.resume_point(True, ckpt, last, buffer=ann.replay_buffer)  # mid-stage checkpoint, else the last stage
        if snn is not None and not ckpt.exists():
            snn.num_timesteps = 0  # the stage to run counts its own env steps
        if snn is None:
            snn = self.model(True)
            snn.replay_buffer = ann.replay_buffer  # carried from the ANN phase
            start = convert(ann.q_net.net, stages[0], data=states, percentile=cfg["snn"]["percentile"])
            snn.q_net.net.load_state_dict(start.state_dict())
            snn.q_net_target.net.load_state_dict(start.state_dict())
        from_ann = cfg["snn"]["teacher"] == "ann"
        teacher = self.model(True, last).q_net if last and not from_ann else ann.q_net  # snn.set_teacher copies it
        policy: IIRPolicy = snn.policy

        def probe() -> list[float]:
            with recording(policy.snn), torch.no_grad():
                policy.snn(states)
            return policy.snn.spike_rates()

        def train(t: int) -> None:
            snn.set_teacher(teacher)
            keep = self.keep_best(cfg["snn"], self.out / stage_file(t, "best.pt"))
            callbacks = [SpikeLogger(policy.snn, states), *([keep] if keep else [])]
            self.learn(snn, cfg["snn"]["stage_steps"], f"iir_T{t}", self.out / stage_file(t, "ckpt.zip"), callbacks)
            if keep is not None:
                keep.restore(policy)

        def evaluate_stage(_t: int) -> dict:
            return {"row": self.score("iir", policy.q_net, states)}

        def on_stage_end(stage: Stage) -> None:
            nonlocal teacher
            self.checkpoint(snn, self.out / stage_file(stage.timesteps))
            for leftover in (stage_file(stage.timesteps, "ckpt.zip"), stage_file(stage.timesteps, "best.pt")):
                (self.out / leftover).unlink(missing_ok=True)
            snn.num_timesteps = 0  # the next stage counts its own env steps
            self.finish(f"T{stage.timesteps}", stage.metrics["row"])
            if not from_ann:
                teacher = copy.deepcopy(policy.q_net)

        run_stages(todo, snn.set_timesteps, probe, train, evaluate_stage, on_stage_end)
