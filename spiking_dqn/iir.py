"""Iterative Initialization and Retraining (paper Algorithm 1): the latency schedule and the stage loop."""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from itertools import pairwise

from spiking_dqn.network import silent_layer

DEFAULT_SCHEDULE = (5, 4, 3, 2, 1)
log = logging.getLogger("spiking_dqn")


def parse_schedule(spec: str | Iterable[int]) -> list[int]:
    """Parse '5,4,3,2,1' (or a list) into a strictly descending list of positive ints; ValueError if not."""
    try:
        values = [int(v) for v in (spec.split(",") if isinstance(spec, str) else spec)]
    except ValueError:
        raise ValueError(f"schedule must be comma-separated integers, got {spec!r}") from None
    if not values or any(v < 1 for v in values) or any(a <= b for a, b in pairwise(values)):
        raise ValueError(f"schedule must be strictly descending positive integers, got {spec!r}")
    return values


def stages_to(schedule: Sequence[int], target: int) -> list[int]:
    """The stages to run to reach latency `target`: the schedule's entries above it, then `target`."""
    if target < 1 or target > schedule[0]:
        raise ValueError(f"target latency T={target} must be between 1 and the schedule's start {schedule[0]}")
    return [t for t in schedule if t > target] + [target]


@dataclass
class Stage:
    """What one IIR stage started with and reached."""

    timesteps: int
    start_rates: list[float]
    silent_layer: int | None
    metrics: dict = field(default_factory=dict)


def run_stages(
    stages: Sequence[int],
    set_timesteps: Callable[[int], None],
    probe: Callable[[], list[float]],
    train: Callable[[int], None],
    evaluate: Callable[[int], dict],
    on_stage_end: Callable[[Stage], None] | None = None,
) -> list[Stage]:
    """Run the stages in order on one network trained in place, so each starts from the one before.

    At each stage's start the per-layer spike rates are probed; a layer that emits no spike (spikes vanish
    before the output, the paper's failure mode) is reported. Training proceeds anyway.
    """
    done: list[Stage] = []
    for t in stages:
        set_timesteps(t)
        rates = probe()
        silent = silent_layer(rates)
        if silent is not None:
            log.warning("T=%d: spikes vanish at spiking layer %d of %d (rates at stage start: %s)", t, silent,
                        len(rates), ", ".join(f"{r:.3f}" for r in rates))
        stage = Stage(t, rates, silent)
        train(t)
        stage.metrics = evaluate(t)
        done.append(stage)
        if on_stage_end is not None:
            on_stage_end(stage)
    return done
