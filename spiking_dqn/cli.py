"""The `spiking-dqn` command: train / evaluate RL runs and train vision runs; config presets and overrides."""
from __future__ import annotations

import argparse
import logging
import os
import re
import shutil
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

import yaml

from spiking_dqn.config import ConfigError, apply_sets, check_values, fill, load_preset, merge, read_config
from spiking_dqn.report import atomic_write


class UsageError(ConfigError):
    """Bad user input: reported in one line with exit code 2."""


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors."""

    def error(self, message: str) -> NoReturn:
        print(f"spiking-dqn: error: {message}", file=sys.stderr)
        sys.exit(2)


def prepare_out(out: Path, resume: bool, overwrite: bool) -> None:
    """Create the run directory; never touch an existing one unless --resume or --overwrite."""
    if resume:
        if not (out / "config.yaml").exists():
            raise UsageError(f"nothing to resume in {out} (no config.yaml)")
        return
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise UsageError(f"run directory {out} exists; use --resume to continue it or --overwrite to replace it")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)


def resolve_device(device: str) -> str:
    """'auto', 'cpu' or 'cuda' (the latter only if available)."""
    import torch

    if device not in ("auto", "cpu", "cuda"):
        raise UsageError(f"--device must be auto, cpu or cuda, got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda requested but no CUDA device is available")
    return device


def set_threads(cfg: dict) -> None:
    """Use the config's CPU thread count (0: torch's default); small networks run fastest on one thread."""
    import torch

    if cfg.get("threads", 0) > 0:
        torch.set_num_threads(cfg["threads"])


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--timesteps", type=int, required=True, help="target SNN latency T (forward passes per decision)")
    p.add_argument("--schedule", default="5,4,3,2,1", help="descending latencies, e.g. 5,4,3,2,1 or 5,3,1")
    p.add_argument("--config", help="YAML file (or shipped preset name, e.g. pong-paper) overriding the preset")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    p.add_argument("--out", help="run directory (default runs/NAME-T<T>-s<seed>)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run directory")


def build_parser() -> Parser:
    """The command-line interface."""
    parser = Parser(prog="spiking-dqn", description="IIR-SNN: spiking DQNs and classifiers down to T=1.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    train = sub.add_parser("train", help="ANN-DQN -> converted T100 baseline -> IIR stages, evaluated")
    train.add_argument("env", help="cartpole | cartpole-pixels | pong | any ALE id")
    _common(train)
    train.add_argument("--trials", type=int, help="evaluation episodes per row (default 20)")
    train.add_argument("--ann-from", metavar="RUN_DIR",
                       help="a new run whose ANN phase goes on from RUN_DIR's ANN and replay buffer up to ann.steps "
                            "(without RUN_DIR/replay.pkl: after refilling ann.learning_starts transitions)")
    ev = sub.add_parser("evaluate", help="re-run the evaluation of a finished RL run")
    ev.add_argument("run_dir")
    ev.add_argument("--trials", type=int)
    ev.add_argument("--epsilon", type=float,
                    help="play at this epsilon instead of the run's; rows go to RUN_DIR/eval-eps<E>/, the run's stay")
    ev.add_argument("--rows", help="only these rows, e.g. ann,T5,T1 (the others keep their saved values)")
    vision = sub.add_parser("vision", help="image classification on the same spiking core")
    vt = vision.add_subparsers(dest="vision_command", required=True, parser_class=Parser).add_parser(
        "train", help="ANN -> IIR stages on an image dataset")
    vt.add_argument("dataset", help="digits (offline default) | cifar10 | cifar100 | imagenet")
    vt.add_argument("--arch", default="vgg6", help="vgg6 | vgg16 | resnet20")
    _common(vt)
    vt.add_argument("--data-dir", help="dataset folder (CIFAR archives or ImageNet class folders)")
    vt.add_argument("--download", action="store_true", help="fetch the CIFAR archive (checksum-checked)")
    vt.add_argument("--trials", type=int, help="test-set shards for mean ± std (default 10)")
    return parser


def check_trials(trials: int | None) -> None:
    """--trials, when given, must be positive."""
    if trials is not None and trials < 1:
        raise UsageError("--trials must be at least 1")


def _rl_config(args: argparse.Namespace) -> dict:
    from spiking_dqn.envs import check_env_name
    from spiking_dqn.iir import parse_schedule, stages_to

    try:
        check_env_name(args.env)
        stages = stages_to(parse_schedule(args.schedule), args.timesteps)
    except ValueError as e:
        raise UsageError(str(e)) from None
    cfg = load_preset(rl_preset(args.env))
    if args.config:
        cfg = merge(cfg, read_config(args.config))
    cfg = apply_sets(cfg, args.set)
    cfg["env"] = args.env
    check_trials(args.trials)
    if args.trials is not None:
        cfg["eval"]["trials"] = args.trials
    cfg.update(seed=args.seed, device=resolve_device(args.device), timesteps=args.timesteps, stages=stages)
    return cfg


def rl_preset(env: str) -> str:
    """The shipped preset an RL environment starts from."""
    return env if env in ("cartpole", "cartpole-pixels", "pong") else "atari"


def run_dir(args: argparse.Namespace, name: str) -> Path:
    """--out, or runs/NAME-T<T>-s<seed>."""
    return Path(args.out or f"runs/{re.sub(r'[^A-Za-z0-9_.-]+', '-', name)}-T{args.timesteps}-s{args.seed}")


def check_ann_source(source: Path, cfg: dict, out: Path, resume: bool) -> None:
    """--ann-from names another run, with a finished ANN phase, of the same environment and network as `cfg`."""
    from spiking_dqn.agents.pipeline import ANN_FILES

    if resume:
        raise UsageError("--ann-from starts a new run; leave out --resume")
    if source.resolve() == out.resolve():
        raise UsageError("--ann-from must name another run directory than --out")
    if not all((source / f).exists() for f in ANN_FILES):
        raise UsageError(f"--ann-from {source} has no finished ANN phase ({', '.join(ANN_FILES)})")
    saved = read_config(str(source / "config.yaml"))  # a YAML mapping, else a one-line ConfigError
    keys = ("env", "arch", "hidden")
    got = tuple(saved.get(k) for k in keys)
    if got != tuple(cfg[k] for k in keys):
        raise UsageError(f"--ann-from {source} trained {got[1]} on {got[0]}, not {cfg['arch']} on {cfg['env']}")


def check_buffer(cfg: dict) -> None:
    """ann.n_steps is a positive integer, above 1 only with a buffer that stores next observations."""
    n = cfg["ann"]["n_steps"]
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise UsageError(f"ann.n_steps must be a positive integer, got {n!r}")
    if n > 1 and cfg["ann"]["optimize_memory_usage"]:
        raise UsageError("ann.n_steps > 1 needs ann.optimize_memory_usage=false (SB3's n-step buffer)")


def start_run(args: argparse.Namespace, name: str, preset: str, make_config: Callable[[], dict],
              check: Callable[[dict], None] = lambda cfg: None) -> tuple[Path, dict]:
    """The run directory and its config: new (from `make_config()`) or resumed (saved, gaining keys newer than
    the run from `preset`, plus overrides); ranges and `check(cfg)` checked before anything is written."""
    out = run_dir(args, name)
    first_rank = int(os.environ.get("RANK", "0")) == 0  # under torchrun only rank 0 prepares the directory
    if args.resume:  # the saved config, with any --config / --set given now (e.g. a longer budget)
        prepare_out(out, True, False)
        cfg = fill(read_config(str(out / "config.yaml")), load_preset(preset))  # keys newer than the run
        cfg = apply_sets(merge(cfg, read_config(args.config)) if args.config else cfg, args.set)
    else:
        cfg = make_config()
    check_values(cfg)
    check(cfg)
    if first_rank and not args.resume:
        prepare_out(out, False, args.overwrite)
    if first_rank:
        atomic_write(out / "config.yaml", yaml.safe_dump(cfg, sort_keys=False))
    set_threads(cfg)
    return out, cfg


def run_train(args: argparse.Namespace) -> None:
    """`spiking-dqn train`."""
    from spiking_dqn.agents.pipeline import Run, continue_ann

    source, new_cfg = Path(args.ann_from) if args.ann_from else None, None
    if source is not None:  # checked before start_run, which may clear --out under --overwrite
        new_cfg = {**_rl_config(args), "ann_from": str(source.resolve())}
        check_ann_source(source, new_cfg, run_dir(args, args.env), args.resume)
    out, cfg = start_run(args, args.env, rl_preset(args.env), lambda: new_cfg or _rl_config(args), check_buffer)
    if source is not None:
        continue_ann(source, out)
    Run(cfg, out).run()
    print((out / "results.md").read_text())
    print(f"run directory: {out}")


def _vision_config(args: argparse.Namespace) -> dict:
    from spiking_dqn.vision.pipeline import resolve

    cfg = load_preset("vision")
    if args.config:
        cfg = merge(cfg, read_config(args.config))
    cfg = apply_sets(cfg, args.set)
    cfg.update(dataset=args.dataset, arch=args.arch, timesteps=args.timesteps, schedule=args.schedule,
               seed=args.seed, device=resolve_device(args.device), download=args.download or cfg["download"],
               data_dir=args.data_dir if args.data_dir is not None else cfg["data_dir"])
    check_trials(args.trials)
    if args.trials is not None:
        cfg["trials"] = args.trials
    try:
        cfg = resolve(cfg)
    except ValueError as e:
        raise UsageError(str(e)) from None
    if cfg["dataset"] != "digits" and cfg["data_dir"] is None:
        raise UsageError(f"{cfg['dataset']} needs --data-dir (with --download to fetch CIFAR into it)")
    if cfg["data_dir"] is not None and not Path(cfg["data_dir"]).is_dir() and not cfg["download"]:
        raise UsageError(f"--data-dir {cfg['data_dir']} is not a directory")
    return cfg


def run_vision(args: argparse.Namespace) -> None:
    """`spiking-dqn vision train`."""
    from spiking_dqn.vision.pipeline import run

    out, cfg = start_run(args, f"{args.dataset}-{args.arch}", "vision", lambda: _vision_config(args))
    try:
        run(cfg, out, resume=args.resume)
    except (ValueError, FileNotFoundError) as e:  # data that is missing or malformed
        raise UsageError(str(e).splitlines()[0]) from None
    print((out / "results.md").read_text())
    print(f"run directory: {out}")


def run_evaluate(args: argparse.Namespace) -> None:
    """`spiking-dqn evaluate`."""
    from spiking_dqn.agents.pipeline import Run, row_keys, stage_file

    out = Path(args.run_dir)
    if not (out / "config.yaml").exists() or not (out / "ann.zip").exists():
        raise UsageError(f"{out} is not a finished run directory (no config.yaml / ann.zip)")
    cfg = read_config(str(out / "config.yaml"))
    cfg = fill(cfg, load_preset(rl_preset(cfg["env"])))  # keys newer than the run
    check_trials(args.trials)
    if args.trials is not None:
        cfg["eval"]["trials"] = args.trials
    results = out
    if args.epsilon is not None:
        if not 0.0 <= args.epsilon <= 1.0:
            raise UsageError(f"--epsilon must be between 0 and 1, got {args.epsilon}")
        cfg["eval"]["epsilon"] = args.epsilon
        results = out / f"eval-eps{args.epsilon:g}"
    check_values(cfg)
    only = None if args.rows is None else [r.strip() for r in args.rows.split(",")]
    for key in only or []:
        if key not in row_keys(cfg):
            raise UsageError(f"--rows: unknown row {key!r} (choose from {', '.join(row_keys(cfg))})")
        if key.startswith("T") and not (out / stage_file(int(key[1:]))).exists():
            raise UsageError(f"--rows: {out} has no finished stage {key}")
    results.mkdir(exist_ok=True)
    set_threads(cfg)
    Run(cfg, out, results).reevaluate(only)
    print((results / "results.md").read_text())


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `spiking-dqn` console script."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        {"train": run_train, "evaluate": run_evaluate, "vision": run_vision}[args.command](args)
    except ConfigError as e:
        print(f"spiking-dqn: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
