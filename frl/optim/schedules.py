"""Step-size schedules whose constants are tensors in the optimizer state.

A :class:`Schedule` maps a step count to a value. Its constants (initial, peak and end values,
step counts) live in the optimizer state under ``hyperparams``, so they can be changed (or
vmapped over) without recompiling. Call ``schedule(count)`` to evaluate it standalone.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch
from tensordict import TensorDict, TensorDictBase
from torch import Tensor

from frl.optim.base import scalar

__all__ = [
    "Schedule",
    "constant_schedule",
    "cosine_decay_schedule",
    "linear_schedule",
    "warmup_cosine_decay_schedule",
]


@dataclass(frozen=True)
class Schedule:
    """``value = fn(count, constants)``, with ``constants`` 0-d tensors.

    Attributes:
      fn: a pure function of the step count (0-d int tensor) and a mapping of constants (a
        TensorDict or a dict of 0-d tensors, by name).
      constants: the default constants, by name.
    """

    fn: Callable[[Tensor, Mapping[str, Tensor]], Tensor]
    constants: Mapping[str, float] = field(default_factory=dict)

    def init(self, device: torch.device | None = None) -> TensorDict:
        """The constants as 0-d float64 tensors (like every optimizer hyper-parameter)."""
        return TensorDict(
            {k: torch.tensor(v, dtype=torch.float64, device=device) for k, v in self.constants.items()},
            batch_size=[],
        )

    def __call__(self, count: int | Tensor, constants: TensorDictBase | None = None) -> Tensor:
        count = torch.as_tensor(count)
        return self.fn(count, self.init(count.device) if constants is None else constants)


def _fraction(count: Tensor, begin: Tensor, steps: Tensor) -> Tensor:
    """``clip((count - begin) / steps, 0, 1)``, with ``steps <= 0`` meaning "already done"."""
    steps_pos = torch.clamp(steps, min=1.0)
    frac = torch.clamp((count - begin) / steps_pos, 0.0, 1.0)
    return torch.where(steps > 0, frac, torch.ones_like(frac))


def constant_schedule(value: float) -> Schedule:
    """``value`` at every step."""
    scalar(value, "value", "constant_schedule")
    return Schedule(lambda count, c: c["value"] + 0.0 * count, {"value": value})


def linear_schedule(
    init_value: float, end_value: float, transition_steps: int, transition_begin: int = 0
) -> Schedule:
    """``init_value`` until ``transition_begin``, then linearly to ``end_value`` over ``transition_steps``.

    ``v(t) = init + clip((t - begin) / steps, 0, 1) * (end - init)``.
    """
    scalar(float(transition_steps), "transition_steps", "linear_schedule", minimum=0)
    scalar(float(transition_begin), "transition_begin", "linear_schedule", minimum=0)

    def fn(count: Tensor, c: TensorDictBase) -> Tensor:
        frac = _fraction(count, c["transition_begin"], c["transition_steps"])
        return c["init_value"] + frac * (c["end_value"] - c["init_value"])

    return Schedule(
        fn,
        {
            "init_value": init_value,
            "end_value": end_value,
            "transition_steps": float(transition_steps),
            "transition_begin": float(transition_begin),
        },
    )


def _cosine(frac: Tensor, alpha: Tensor, exponent: Tensor) -> Tensor:
    cosine = 0.5 * (1.0 + torch.cos(math.pi * frac))
    return (1.0 - alpha) * cosine**exponent + alpha


def cosine_decay_schedule(
    init_value: float, decay_steps: int, alpha: float = 0.0, exponent: float = 1.0
) -> Schedule:
    """Cosine decay (Loshchilov & Hutter 2017, https://arxiv.org/abs/1608.03983).

    ``v(t) = init * ((1 - alpha) * (0.5 (1 + cos(pi min(t, T) / T)))**exponent + alpha)``.
    """
    scalar(float(decay_steps), "decay_steps", "cosine_decay_schedule", minimum=1)

    def fn(count: Tensor, c: TensorDictBase) -> Tensor:
        frac = _fraction(count, torch.zeros_like(c["decay_steps"]), c["decay_steps"])
        return c["init_value"] * _cosine(frac, c["alpha"], c["exponent"])

    return Schedule(
        fn,
        {"init_value": init_value, "decay_steps": float(decay_steps), "alpha": alpha, "exponent": exponent},
    )


def warmup_cosine_decay_schedule(
    init_value: float, peak_value: float, warmup_steps: int, decay_steps: int, end_value: float = 0.0
) -> Schedule:
    """Linear warmup from ``init_value`` to ``peak_value``, then cosine decay to ``end_value``.

    ``decay_steps`` counts the whole schedule, warmup included (as optax).
    """
    scalar(float(warmup_steps), "warmup_steps", "warmup_cosine_decay_schedule", minimum=0)
    if decay_steps <= warmup_steps:
        raise ValueError(
            f"warmup_cosine_decay_schedule: `decay_steps` ({decay_steps}) must exceed `warmup_steps` "
            f"({warmup_steps})"
        )

    def fn(count: Tensor, c: TensorDictBase) -> Tensor:
        zero = torch.zeros_like(c["warmup_steps"])
        warm = c["init_value"] + _fraction(count, zero, c["warmup_steps"]) * (
            c["peak_value"] - c["init_value"]
        )
        frac = _fraction(count, c["warmup_steps"], c["decay_steps"] - c["warmup_steps"])
        cosine = 0.5 * (1.0 + torch.cos(math.pi * frac))
        decayed = c["end_value"] + (c["peak_value"] - c["end_value"]) * cosine
        return torch.where(count < c["warmup_steps"], warm, decayed)

    return Schedule(
        fn,
        {
            "init_value": init_value,
            "peak_value": peak_value,
            "warmup_steps": float(warmup_steps),
            "decay_steps": float(decay_steps),
            "end_value": end_value,
        },
    )
