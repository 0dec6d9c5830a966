"""frl.algos.config: every field of every agent's Config declares what it accepts, and a value
outside it is refused with an error naming the config and the field (hypothesis explores the
values: non-finite, out of range, off by type, not an integer, not a choice)."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from frl.algos import AGENTS, AgentConfig, hyper, ppo, setting
from frl.algos.config import Constraint

FIELDS = [
    (name, f.name, f.metadata["constraint"])
    for name, agent in sorted(AGENTS.items())
    for f in dataclasses.fields(agent.config)
    if "constraint" in f.metadata
]
IDS = [f"{agent}.{field}" for agent, field, _ in FIELDS]


def invalid_values(c: Constraint) -> st.SearchStrategy:
    """Values ``c`` must refuse."""
    wrong_type = st.sampled_from(["0.5", None, [1], {"a": 1}])
    if c.kind == "bool":
        return st.one_of(wrong_type, st.integers(), st.floats())
    if c.kind == "str":
        return st.one_of(
            st.integers(), st.text().filter(lambda s: c.choices is not None and s not in c.choices)
        )
    if c.kind == "sizes":
        bad_entry = st.one_of(st.integers(max_value=0), st.floats(), st.booleans())
        return st.one_of(
            st.just(()),
            st.lists(bad_entry, min_size=1, max_size=3).map(tuple),
            st.integers(1, 64),
        )
    out: list[st.SearchStrategy] = [wrong_type, st.booleans()]
    if c.kind == "float":
        out.append(st.sampled_from([math.nan, math.inf, -math.inf]))
    else:
        out.append(
            st.floats(allow_nan=False, allow_infinity=False).filter(lambda x: not float(x).is_integer())
        )
    if c.low is not None:
        below = st.floats(max_value=c.low, exclude_max=not c.low_open, allow_nan=False, allow_infinity=False)
        out.append(below.map(int) if c.kind == "int" else below)
        if c.kind == "int":
            out.append(st.integers(max_value=math.ceil(c.low) - 1))
    if c.high is not None:
        above = st.floats(
            min_value=c.high, exclude_min=not c.high_open, allow_nan=False, allow_infinity=False
        )
        out.append(above)
    return st.one_of(out).filter(lambda v: not (c.kind == "int" and isinstance(v, int) and c.accepts(v)))


@pytest.mark.parametrize(("agent", "field", "constraint"), FIELDS, ids=IDS)
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_every_field_refuses_invalid_values_naming_the_field(agent, field, constraint, data):
    value = data.draw(invalid_values(constraint))
    config = AGENTS[agent].config
    if (
        constraint.kind == "int"
        and isinstance(value, float)
        and value.is_integer()
        and not isinstance(value, bool)
    ):
        value = value + 0.5  # 3.0 is an int in disguise: the refusal under test is of a non-integer
    with pytest.raises((ValueError, TypeError), match=rf"^{agent}\.Config: `{field}` must be "):
        config(**{field: value})


@pytest.mark.parametrize(
    ("agent", "field", "constraint"),
    [f for f in FIELDS if f[2].kind == "float"],
    ids=[i for i, f in zip(IDS, FIELDS) if f[2].kind == "float"],
)
@settings(max_examples=15, deadline=None)
@given(data=st.data())
def test_float_fields_accept_finite_values_in_range(agent, field, constraint, data):
    low = -1e6 if constraint.low is None else constraint.low
    high = 1e6 if constraint.high is None else constraint.high
    value = data.draw(
        st.floats(
            low, high, exclude_min=constraint.low_open, exclude_max=constraint.high_open, allow_nan=False
        )
    )
    assert getattr(AGENTS[agent].config(**{field: value}), field) == value


def test_hyperparameters_are_the_float_fields_the_math_reads():
    assert set(ppo.Config.hyperparam_names()) == {
        "learning_rate",
        "gamma",
        "gae_lambda",
        "clip_coef",
        "ent_coef",
        "vf_coef",
        "max_grad_norm",
    }
    assert "log_std_init" in ppo.Config.setting_names()  # read once, when the networks are built
    hp = ppo.Config(gamma=0.9).hyperparams()
    assert hp["gamma"].dtype == torch.float64 and float(hp["gamma"]) == 0.9
    assert ppo.Config(gamma=1).gamma == 1.0 and isinstance(ppo.Config(gamma=1).gamma, float)
    with pytest.raises(ValueError, match="`num_envs` is a setting"):
        ppo.Config().with_hyperparams(num_envs=8)


def test_a_users_config_gets_the_same_validation():
    @dataclasses.dataclass(frozen=True)
    class MyConfig(AgentConfig):
        agent = "mine"
        lr: float = hyper(1e-3, low=0.0, low_open=True)
        layers: int = setting(2, low=1)
        mode: str = setting("a", choices=("a", "b"))

    assert MyConfig().hyperparam_names() == ("lr",)
    for kwargs, message in (
        ({"lr": 0.0}, "mine.Config: `lr` must be a finite number in (0, inf), got 0.0"),
        (
            {"lr": 1e300},  # finite in Python, inf as the float32 it is kept as
            "mine.Config: `lr` must be a finite number in (0, inf) and within float32's range, "
            "|x| <= 3.4e+38 (hyper-parameters are float32 data), got 1e+300",
        ),
        ({"lr": -1e300}, "mine.Config: `lr` must be a finite number in (0, inf), got -1e+300"),
        ({"layers": 0}, "mine.Config: `layers` must be an int in [1, inf), got 0"),
        ({"mode": "c"}, "mine.Config: `mode` must be one of ['a', 'b'], got 'c'"),
    ):
        with pytest.raises(ValueError) as err:
            MyConfig(**kwargs)
        assert str(err.value) == message
