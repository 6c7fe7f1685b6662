"""Configs: YAML presets shipped in spiking_dqn.configs, user files, and validated overrides."""
from __future__ import annotations

import copy
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    """A config that cannot be read or names a key that does not exist."""


def load_preset(name: str) -> dict:
    """The YAML preset shipped as spiking_dqn/configs/NAME.yaml."""
    return yaml.safe_load(resources.files("spiking_dqn.configs").joinpath(f"{name}.yaml").read_text())


def read_config(path: str) -> dict:
    """A user config file (YAML mapping), or a shipped preset by name (e.g. pong-paper)."""
    if not Path(path).exists() and resources.files("spiking_dqn.configs").joinpath(f"{path}.yaml").is_file():
        return load_preset(path)
    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"cannot read config {path}: {str(e).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config {path} must be a YAML mapping")
    return data


def merge(base: dict, update: dict, prefix: str = "") -> dict:
    """A copy of `base` updated with `update`; every key of `update` must exist in `base`."""
    out = copy.deepcopy(base)
    for key, value in update.items():
        name = f"{prefix}{key}"
        if key not in base:
            raise ConfigError(f"unknown config key {name!r}; valid: {', '.join(prefix + k for k in base)}")
        nested = isinstance(base[key], dict) and isinstance(value, dict)
        out[key] = merge(base[key], value, name + ".") if nested else value
    return out


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
        update: Any = yaml.safe_load(value) if value else None
        for part in reversed(key.split(".")):
            update = {part: update}
        cfg = merge(cfg, update)
    return cfg
