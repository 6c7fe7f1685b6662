"""Configs: YAML presets shipped in spiking_dqn.configs, user files, and validated overrides."""
from __future__ import annotations

import copy
import re
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import torch
import yaml


class ConfigError(ValueError):
    """A config that cannot be read or names a key that does not exist."""


class _Loader(yaml.SafeLoader):
    """YAML with YAML 1.2 floats: 1e-5 and 3E4 are numbers, not strings."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)(?:[eE][-+]?[0-9]+)?$|^[-+]?\.(?:inf|Inf|INF)$|^\.(?:nan|NaN|NAN)$"),
    list("-+0123456789."))


def _load(text: str) -> Any:
    """Parse YAML text with the config loader."""
    return yaml.load(text, Loader=_Loader)


def load_preset(name: str) -> dict:
    """The YAML preset shipped as spiking_dqn/configs/NAME.yaml; one with a `base` key is that preset updated."""
    data = _load(resources.files("spiking_dqn.configs").joinpath(f"{name}.yaml").read_text())
    base = data.pop("base", None)
    return merge(load_preset(base), data) if base else data


def read_config(path: str) -> dict:
    """A user config file (YAML mapping), or a shipped preset by name (e.g. pong-paper)."""
    if not Path(path).exists() and resources.files("spiking_dqn.configs").joinpath(f"{path}.yaml").is_file():
        return load_preset(path)
    try:
        data = _load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"cannot read config {path}: {str(e).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config {path} must be a YAML mapping")
    return data


def _is_number(value: Any) -> bool:
    """An int or float, not a bool."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def merge(base: dict, update: dict, prefix: str = "") -> dict:
    """A copy of `base` updated with `update`; every key of `update` must exist in `base`."""
    out = copy.deepcopy(base)
    for key, value in update.items():
        name = f"{prefix}{key}"
        if key not in base:
            raise ConfigError(f"unknown config key {name!r}; valid: {', '.join(prefix + k for k in base)}")
        if _is_number(base[key]) and not (_is_number(value) or value is None):
            raise ConfigError(f"config key {name!r} must be a number, got {value!r}")
        nested = isinstance(base[key], dict) and isinstance(value, dict)
        out[key] = merge(base[key], value, name + ".") if nested else value
    return out


_RANGES: dict[str, tuple[float, float, bool]] = {  # leaf key -> (low, high, low end excluded), at any depth
    **dict.fromkeys(("epsilon", "exploration_eps", "exploration_final_eps", "exploration_fraction", "target_epsilon",
                     "gamma", "dropout", "fraction", "lr_factor", "equalize"), (0.0, 1.0, False)),
    **dict.fromkeys(("learning_rate", "learning_rate_end", "lr", "batch_size", "buffer_size", "trials",
                     "train_freq", "target_update_interval", "calibration_samples", "select_episodes", "images",
                     "eval_batch_size", "n_envs", "image_size", "distill_gain"), (0.0, float("inf"), True)),
    **dict.fromkeys(("steps", "stage_steps", "epochs", "learning_starts", "select_every", "checkpoint_every",
                     "distill", "distill_policy", "distill_tau", "threads", "workers", "weight_decay", "momentum", "pad"),
                    (0.0, float("inf"), False)),
    "percentile": (0.0, 100.0, True),
}
OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {"adam": torch.optim.Adam, "rmsprop": torch.optim.RMSprop}
_CHOICES: dict[str, tuple[Any, ...]] = {"bf16": (True, False, "auto"), "compile": (True, False),
                                        "double_q": (True, False), "optimizer": tuple(OPTIMIZERS),
                                        "temporal": ("stack", "diff"), "teacher": ("previous", "ann")}  # leaf key -> its valid values


def check_values(cfg: dict, prefix: str = "") -> None:
    """Every bounded key (probabilities, rates, sizes, counts, percentiles) holds a number in its range, and every
    key with a fixed set of values one of them."""
    for key, value in cfg.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            check_values(value, name + ".")
        elif key in _CHOICES and not any(value is c or (isinstance(c, str) and value == c) for c in _CHOICES[key]):
            valid = ", ".join(str(c).lower() for c in _CHOICES[key])
            raise ConfigError(f"config key {name!r} must be one of {valid}, got {value!r}")
        elif key in _RANGES:
            low, high, open_low = _RANGES[key]
            if not (_is_number(value) and (value > low if open_low else value >= low) and value <= high):
                bound = f"above {low:g}" if open_low else f"at least {low:g}"
                bound += "" if high == float("inf") else f" and at most {high:g}"
                raise ConfigError(f"config key {name!r} must be a number {bound}, got {value!r}")


def fill(saved: dict, defaults: dict) -> dict:
    """`saved` with every key it lacks (at any depth) taken from `defaults`: an older run gains newer keys."""
    out = copy.deepcopy(saved)
    for key, value in defaults.items():
        if key not in out:
            out[key] = copy.deepcopy(value)
        elif isinstance(value, dict) and isinstance(out[key], dict):
            out[key] = fill(out[key], value)
    return out


def apply_sets(cfg: dict, sets: Sequence[str]) -> dict:
    """Apply `key.sub=value` overrides (values parsed as YAML)."""
    for item in sets:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        update: Any = _load(value) if value else None
        for part in reversed(key.split(".")):
            update = {part: update}
        cfg = merge(cfg, update)
    return cfg
