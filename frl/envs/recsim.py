"""Recommendation with user feedback: RecSim's interest-evolution model as a pure torch environment.

Written from the description of RecSim's interest-evolution environment (Ie et al. 2019,
"RecSim: a configurable simulation platform for recommender systems", section 5 and its
``interest_evolution`` example); the constants below are this module's, chosen so that the
myopic-vs-long-term lesson of the paper shows.

Each step the recommender sees ``M`` candidate documents and shows the user a slate of ``k`` of
them; the user clicks at most one, watches it, and the session goes on while the user's time
budget lasts::

    documents   topic c ~ Uniform{0..T-1}, quality q ~ N(mu_c, sigma_q), length L (fixed)
                mu_c: the first 70 % of topics are "trashy" (mu in [-3, 0], click appeal
                a_c = trashy_appeal), the rest "nutritious" (mu in [0, 3], appeal 0)
    user        interests u in [-1, 1]^T (uniform at the start), time budget B
    choice      score_j = u[c_j] + a[c_j] - position_bias * j   (slate position j = 0..k-1)
                "mnl":     P(click j) = exp(score_j) / (exp(no_click_score) + sum_i exp(score_i))
                "cascade": positions examined in order, j clicked with sigmoid(score_j -
                           no_click_score), the first click ends the scan
    response    watch = min(L, B) on a click (the reward), 0 otherwise
    budget      B <- B - step_penalty - watch + budget_gain * watch * q   (on a click)
    interests   on a click on topic c: u[c] +/- interest_rate * (1 - u[c]), "+" with
                probability (u[c] + 1) / 2 (interests drift toward what was consumed), clipped
    end         terminated when B <= 0; truncated at ``max_episode_steps``

Trashy documents are clicked more and shorten the session; nutritious ones are clicked less
and lengthen it: a recommender that maximises the immediate click probability (``greedy``)
gets the higher click-through rate and the shorter, poorer sessions.

Observation (float32): the user's interests ``[T]`` when ``observable_interests`` (RecSim's
default hides them), then the candidates' topics one-hot, ``[M * T]`` (quality is latent, as in
RecSim). Action: a slate, ``int64 [k]`` distinct candidate indices (:class:`~frl.envs.spaces.Slate`).
Reward: watch time. ``clicks`` are the steps with a positive reward, the session length the
episode length.

The physical state is one vector ``[u (T), B (1), topics (M), qualities (M)]`` (topics stored as
floats). :func:`greedy_slate`, :func:`quality_slate` and :func:`random_slate` are the baselines;
:func:`rollout_sessions` runs any slate policy for whole sessions;
:func:`log_sessions` records a behaviour policy's sessions with its propensities, for learning
from logged feedback (:mod:`frl.algos.logged`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from tensordict import TensorDict
from torch import Tensor

from frl import random
from frl.distributions import PlackettLuce
from frl.envs._checks import check_count as _check_count
from frl.envs._checks import check_number as _check_number
from frl.envs.base import Environment
from frl.envs.spaces import Box, Slate

__all__ = [
    "CHOICE_MODELS",
    "InterestEvolution",
    "InterestEvolutionObserved",
    "InterestEvolutionParams",
    "greedy_slate",
    "log_sessions",
    "quality_slate",
    "random_slate",
    "rollout_sessions",
    "softmax_greedy",
]

CHOICE_MODELS = ("mnl", "cascade")


@dataclass(frozen=True)
class InterestEvolutionParams:
    """The user model's constants (see the module docstring for the equations)."""

    time_budget: float = 60.0
    """B at the start of a session (minutes)."""
    step_penalty: float = 0.5
    """Budget every step costs, clicked or not."""
    document_length: float = 4.0
    """L, the watch time of a click (minutes)."""
    budget_gain: float = 0.3
    """How much a watched document's quality gives back (or takes) per minute watched."""
    interest_rate: float = 0.1
    """How far a click moves the interest in its topic."""
    no_click_score: float = 0.0
    """The score of not clicking."""
    position_bias: float = 1.0
    """Score lost per slate position."""
    trashy_appeal: float = 1.0
    """Extra click score of trashy topics."""
    quality_std: float = 0.1
    """sigma_q, the spread of quality inside a topic."""

    def __post_init__(self) -> None:
        owner = "InterestEvolutionParams"
        for name in ("time_budget", "document_length"):
            _check_number(owner, name, getattr(self, name), low=0.0, strict=True)
        for name in ("step_penalty", "budget_gain", "position_bias", "quality_std"):
            _check_number(owner, name, getattr(self, name), low=0.0)
        _check_number(owner, "interest_rate", self.interest_rate, low=0.0)
        if self.interest_rate > 1.0:
            raise ValueError(f"{owner}: `interest_rate` must lie in [0, 1], got {self.interest_rate!r}")
        _check_number(owner, "no_click_score", self.no_click_score)
        _check_number(owner, "trashy_appeal", self.trashy_appeal)


@dataclass(frozen=True)
class InterestEvolution(Environment):
    """RecSim's interest-evolution recommender (module docstring): slates of ``slate_size`` out of
    ``num_candidates`` documents on ``num_topics`` topics, watch time as the reward.

    Settings (fixed per environment, checked on construction): ``num_candidates`` M,
    ``slate_size`` k (``k <= M``), ``num_topics`` T (>= 2; ``trashy_fraction`` of them trashy),
    ``observable_interests``, ``choice_model`` (``"mnl"`` or ``"cascade"``).
    """

    id: ClassVar[str] = "RecSim-InterestEvolution-v0"
    max_episode_steps: ClassVar[int] = 200
    Params: ClassVar[type] = InterestEvolutionParams
    random_transition: ClassVar[bool] = True

    num_candidates: int = 20
    slate_size: int = 3
    num_topics: int = 10
    trashy_fraction: float = 0.7
    observable_interests: bool = False
    choice_model: str = "mnl"

    def __post_init__(self) -> None:
        _check_count(self.id, "num_candidates", self.num_candidates, 1)
        _check_count(self.id, "slate_size", self.slate_size, 1)
        _check_count(self.id, "num_topics", self.num_topics, 2)
        if self.slate_size > self.num_candidates:
            raise ValueError(
                f"{self.id}: `slate_size` ({self.slate_size}) must not exceed "
                f"`num_candidates` ({self.num_candidates}): a slate shows distinct candidates"
            )
        if not isinstance(self.trashy_fraction, (int, float)) or not 0.0 < self.trashy_fraction < 1.0:
            raise ValueError(f"{self.id}: `trashy_fraction` must lie in (0, 1), got {self.trashy_fraction!r}")
        if self.choice_model not in CHOICE_MODELS:
            raise ValueError(
                f"{self.id}: `choice_model` must be one of {', '.join(CHOICE_MODELS)}, "
                f"got {self.choice_model!r}"
            )
        if not isinstance(self.observable_interests, bool):
            raise ValueError(
                f"{self.id}: `observable_interests` must be a bool, got {self.observable_interests!r}"
            )

    # -- spaces ----------------------------------------------------------------------------

    @property
    def user_dim(self) -> int:
        """Observed user features: ``T`` interests when observable, else none."""
        return self.num_topics if self.observable_interests else 0

    @property
    def document_dim(self) -> int:
        """Observed features per candidate (its topic, one-hot)."""
        return self.num_topics

    @property
    def observation_space(self) -> Box:  # type: ignore[override]
        n = self.user_dim + self.num_candidates * self.document_dim
        return Box((-1.0,) * self.user_dim + (0.0,) * (n - self.user_dim), (1.0,) * n, (n,))

    @property
    def action_space(self) -> Slate:  # type: ignore[override]
        return Slate.of(self.num_candidates, self.slate_size)

    # -- topics ----------------------------------------------------------------------------

    @property
    def num_trashy(self) -> int:
        return min(max(1, round(self.trashy_fraction * self.num_topics)), self.num_topics - 1)

    def quality_means(self, device: Any = None) -> Tensor:
        """``mu_c [T]``: trashy topics spread over ``[-3, 0]``, nutritious ones over ``[0, 3]``."""
        trashy = torch.linspace(-3.0, 0.0, self.num_trashy, dtype=self.dtype, device=device)
        nutritious = torch.linspace(
            0.0, 3.0, self.num_topics - self.num_trashy, dtype=self.dtype, device=device
        )
        if self.num_trashy == 1:
            trashy = torch.full((1,), -1.5, dtype=self.dtype, device=device)
        if self.num_topics - self.num_trashy == 1:
            nutritious = torch.full((1,), 1.5, dtype=self.dtype, device=device)
        return torch.cat([trashy, nutritious])

    def appeal(self, params: InterestEvolutionParams, device: Any = None) -> Tensor:
        """``a_c [T]``: ``trashy_appeal`` on trashy topics, 0 on nutritious ones."""
        trashy = torch.arange(self.num_topics, device=device) < self.num_trashy
        return torch.where(trashy, params.trashy_appeal, 0.0).to(self.dtype)

    # -- state -----------------------------------------------------------------------------

    def unpack(self, physics: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``(interests [*, T], budget [*], topics int64 [*, M], quality [*, M])``."""
        T, M = self.num_topics, self.num_candidates
        return (
            physics[..., :T],
            physics[..., T],
            physics[..., T + 1 : T + 1 + M].long(),
            physics[..., T + 1 + M :],
        )

    def _documents(self, key: Tensor, params: InterestEvolutionParams, batch: tuple[int, ...]) -> Tensor:
        """A fresh candidate set ``[*batch, 2M]``: topics (as floats), then qualities."""
        k_topic, k_quality = random.split(key)
        M = self.num_candidates
        u = random.uniform(k_topic, (*batch, M), self.dtype)
        topics = torch.clamp((u * self.num_topics).long(), max=self.num_topics - 1)
        noise = random.normal(k_quality, (*batch, M), self.dtype)
        quality = self.quality_means(key.device)[topics] + params.quality_std * noise
        return torch.cat([topics.to(self.dtype), quality], dim=-1)

    def init_physics(
        self, key: Tensor, params: InterestEvolutionParams, batch: tuple[int, ...] = ()
    ) -> Tensor:
        k_user, k_docs = random.split(key)
        interests = random.uniform(k_user, (*batch, self.num_topics), self.dtype, -1.0, 1.0)
        budget = torch.full((*batch, 1), params.time_budget, dtype=self.dtype, device=key.device)
        return torch.cat([interests, budget, self._documents(k_docs, params, batch)], dim=-1)

    def _one_hot(self, topics: Tensor) -> Tensor:
        """Topics ``[...]`` one-hot ``[..., T]`` (``F.one_hot`` cannot be vmapped)."""
        return (topics.unsqueeze(-1) == torch.arange(self.num_topics, device=topics.device)).to(self.dtype)

    def observe(self, physics: Tensor) -> Tensor:
        interests, _, topics, _ = self.unpack(physics)
        docs = self._one_hot(topics).flatten(-2)
        return torch.cat([interests, docs], dim=-1) if self.observable_interests else docs

    # -- the user --------------------------------------------------------------------------

    def scores(self, physics: Tensor, params: InterestEvolutionParams) -> Tensor:
        """Every candidate's click score before the position bias, ``u[c] + a[c]``: ``[*, M]``."""
        interests, _, topics, _ = self.unpack(physics)
        return torch.gather(interests, -1, topics) + self.appeal(params, physics.device)[topics]

    def click_probabilities(self, physics: Tensor, slate: Tensor, params: InterestEvolutionParams) -> Tensor:
        """``P(click slate position j)`` under the choice model: ``[*, k]`` (no click: 1 - sum)."""
        return self.choice(self.scores(physics, params), slate, params)

    def choice(self, scores: Tensor, slate: Tensor, params: InterestEvolutionParams) -> Tensor:
        """The choice model on candidate scores ``[*, M]`` (:meth:`scores`): ``P(click slate
        position j)``, ``[*, k]``, position bias included (no click: 1 - sum)."""
        score = torch.gather(scores, -1, slate)
        score = score - params.position_bias * torch.arange(
            self.slate_size, device=scores.device, dtype=score.dtype
        )
        if self.choice_model == "mnl":
            no_click = torch.full_like(score[..., :1], params.no_click_score)
            return torch.softmax(torch.cat([no_click, score], dim=-1), dim=-1)[..., 1:]
        p = torch.sigmoid(score - params.no_click_score)
        reach = torch.cumprod(torch.cat([torch.ones_like(p[..., :1]), 1.0 - p[..., :-1]], dim=-1), dim=-1)
        return reach * p

    def observed_scores(self, obs: Tensor, params: InterestEvolutionParams) -> Tensor:
        """The candidates' click scores ``u[c] + a[c]`` read from observations ``[*, T + M T]``
        (``observable_interests`` only: with latent interests the choice model is not observed):
        ``[*, M]``."""
        if not self.observable_interests:
            raise ValueError(
                f"{self.id}: the click scores are not observable with latent interests; use "
                "RecSim-InterestEvolution-Observed-v0 (or observable_interests=True)"
            )
        T = self.num_topics
        docs = obs[..., T:].unflatten(-1, (self.num_candidates, T))
        per_topic = obs[..., :T] + self.appeal(params, obs.device)
        return (docs * per_topic.unsqueeze(-2)).sum(-1)

    def transition(self, physics: Tensor, action: Tensor, params: InterestEvolutionParams, key: Tensor):
        interests, budget, topics, quality = self.unpack(physics)
        batch = tuple(budget.shape)
        k_choice, k_docs = random.split(key)
        u = random.uniform(k_choice, (*batch, 2), self.dtype)
        probs = self.click_probabilities(physics, action, params)  # [*, k]
        # inverse CDF over (slate positions..., no click): position j if u < P(0) + ... + P(j)
        position = (u[..., :1] >= torch.cumsum(probs, dim=-1)).sum(-1)  # k means no click
        clicked = position < self.slate_size
        chosen = torch.gather(action, -1, position.clamp(max=self.slate_size - 1).unsqueeze(-1))
        topic = torch.gather(topics, -1, chosen).squeeze(-1)
        q = torch.gather(quality, -1, chosen).squeeze(-1)
        watch = torch.where(
            clicked, torch.minimum(torch.full_like(budget, params.document_length), budget), 0.0
        )
        budget = budget - params.step_penalty - watch + params.budget_gain * watch * q
        mask = self._one_hot(topic) * clicked.unsqueeze(-1)
        current = torch.gather(interests, -1, topic.unsqueeze(-1)).squeeze(-1)
        sign = torch.where(u[..., 1] < (current + 1.0) / 2.0, 1.0, -1.0)
        step = (sign * params.interest_rate * (1.0 - current)).unsqueeze(-1)
        interests = torch.clamp(interests + mask * step, -1.0, 1.0)
        next_physics = torch.cat(
            [interests, budget.unsqueeze(-1), self._documents(k_docs, params, batch)], dim=-1
        )
        return next_physics, watch, budget <= 0.0

    def _check_action(self, action: Tensor, batch: tuple[int, ...]) -> None:
        expected = (*batch, self.slate_size)
        if (
            not isinstance(action, Tensor)
            or action.dtype.is_floating_point
            or tuple(action.shape) != expected
        ):
            got = (
                f"dtype {action.dtype} and shape {list(action.shape)}"
                if isinstance(action, Tensor)
                else type(action)
            )
            raise ValueError(
                f"{self.id}: `action` must be a slate, integer candidate indices in "
                f"[0, {self.num_candidates}) of shape {list(expected)}, got {got}"
            )

    @property
    def discrete(self) -> bool:
        return False


@dataclass(frozen=True)
class InterestEvolutionObserved(InterestEvolution):
    """:class:`InterestEvolution` with the user's interests in the observation (RecSim's
    "observable" user model): the variant whose choice model an agent can compute (SlateQ)."""

    id: ClassVar[str] = "RecSim-InterestEvolution-Observed-v0"

    observable_interests: bool = True


# -- baselines -------------------------------------------------------------------------------


def greedy_slate(
    env: InterestEvolution, physics: Tensor, params: InterestEvolutionParams, key: Tensor
) -> Tensor:
    """The myopic recommender: the ``k`` candidates with the highest click score, best first
    (the slate of highest immediate click probability; it reads the user's true interests)."""
    return torch.topk(env.scores(physics, params), env.slate_size, dim=-1).indices


def quality_slate(
    env: InterestEvolution, physics: Tensor, params: InterestEvolutionParams, key: Tensor
) -> Tensor:
    """The quality oracle: the ``k`` candidates of highest (latent) quality, best first."""
    return torch.topk(env.unpack(physics)[3], env.slate_size, dim=-1).indices


def random_slate(
    env: InterestEvolution, physics: Tensor, params: InterestEvolutionParams, key: Tensor
) -> Tensor:
    """``k`` distinct candidates uniformly at random."""
    scores = random.uniform(key, (*physics.shape[:-1], env.num_candidates), env.dtype)
    return torch.topk(scores, env.slate_size, dim=-1).indices


SlatePolicy = Callable[[InterestEvolution, Tensor, InterestEvolutionParams, Tensor], Any]
"""``policy(env, physics, params, key) -> slate [S, k]`` (or ``(slate, log_prob [S])``)."""


def softmax_greedy(temperature: float = 0.5) -> SlatePolicy:
    """A stochastic greedy recommender, for logging feedback with known propensities: slates
    drawn by Plackett-Luce from the click scores over ``temperature`` (greedy as it goes to 0);
    returns ``(slate, log_prob)``."""
    if not isinstance(temperature, (int, float)) or isinstance(temperature, bool) or not temperature > 0:
        raise ValueError(f"softmax_greedy: `temperature` must be a number > 0, got {temperature!r}")

    def behaviour(env: InterestEvolution, physics: Tensor, params: InterestEvolutionParams, key: Tensor):
        ranking = PlackettLuce(env.slate_size)
        scores = env.scores(physics, params) / temperature
        slate = ranking.sample(key, scores)
        return slate, ranking.log_prob(scores, slate)

    return behaviour


def _check_sessions(owner: str, sessions: Any) -> None:
    if isinstance(sessions, bool) or not isinstance(sessions, int) or sessions < 1:
        raise ValueError(f"{owner}: `sessions` must be a positive int, got {sessions!r}")


def _run_sessions(
    env: InterestEvolution,
    policy: SlatePolicy,
    key: Tensor,
    sessions: int,
    params: InterestEvolutionParams,
    record: bool,
) -> dict[str, Tensor]:
    """Step ``sessions`` sessions until each has ended once; per step ``[T, S]``: ``reward``,
    ``live`` (the step belongs to the first session) and, with ``record``, ``observation``,
    ``action`` and the policy's ``action_log_prob`` (zeros for a policy that returns none)."""
    k_reset, key = random.split(key)
    _, state = env.reset(k_reset, params, num_envs=sessions)
    live = torch.ones(sessions, dtype=torch.bool)
    steps: dict[str, list[Tensor]] = {"reward": [], "live": []}
    if record:
        steps.update(observation=[], action=[], action_log_prob=[])
    for _ in range(env.max_episode_steps):
        key, k_policy, k_step = random.split(key, 3)
        physics = state["physics"]
        out = policy(env, physics, params, k_policy)
        slate, log_prob = out if isinstance(out, tuple) else (out, torch.zeros(sessions, dtype=env.dtype))
        _, state, reward, terminated, truncated, _ = env.step(k_step, state, slate, params)
        steps["reward"].append(reward)
        steps["live"].append(live)
        if record:
            steps["observation"].append(env.observe(physics))
            steps["action"].append(slate)
            steps["action_log_prob"].append(log_prob)
        live = live & ~(terminated | truncated)
        if not bool(live.any()):
            break
    return {name: torch.stack(values) for name, values in steps.items()}


def rollout_sessions(
    env: InterestEvolution,
    policy: SlatePolicy,
    key: Tensor,
    sessions: int,
    params: InterestEvolutionParams | None = None,
) -> dict[str, Tensor]:
    """Run ``sessions`` whole sessions side by side with ``policy`` and return per-session
    ``watch_time``, ``clicks``, ``length`` and ``ctr`` (clicks / length), each ``[sessions]``.
    A session ends at its first terminal or truncated step; finished sessions are stepped on but
    no longer counted."""
    _check_sessions("rollout_sessions", sessions)
    params = env.default_params() if params is None else params
    steps = _run_sessions(env, policy, key, sessions, params, record=False)
    live, reward = steps["live"], steps["reward"]
    watch = torch.where(live, reward, 0.0).sum(0)
    clicks = (live & (reward > 0)).long().sum(0)
    length = live.long().sum(0)
    return {"watch_time": watch, "clicks": clicks, "length": length, "ctr": clicks / length}


def log_sessions(
    env: InterestEvolution,
    behaviour: SlatePolicy,
    key: Tensor,
    sessions: int,
    *,
    gamma: float = 0.99,
    params: InterestEvolutionParams | None = None,
) -> TensorDict:
    """Logged feedback: ``sessions`` whole sessions of ``behaviour`` (which returns ``(slate,
    log_prob)``, e.g. :func:`softmax_greedy`), one row per step of every session ``[N]``:
    ``observation``, ``action`` (the slate), ``action_log_prob`` (the behaviour's propensity),
    ``next.reward`` (watch time) and ``value_target``, the discounted watch time from that step to
    the session's end, ``G_t = r_t + gamma G_{t+1}``."""
    _check_sessions("log_sessions", sessions)
    if not isinstance(gamma, (int, float)) or not 0.0 <= gamma <= 1.0:
        raise ValueError(f"log_sessions: `gamma` must lie in [0, 1], got {gamma!r}")
    params = env.default_params() if params is None else params
    steps = _run_sessions(env, behaviour, key, sessions, params, record=True)
    live, reward = steps["live"], torch.where(steps["live"], steps["reward"], 0.0)
    returns = torch.zeros_like(reward)
    following = torch.zeros_like(reward[0])
    for t in range(reward.shape[0] - 1, -1, -1):  # a session's steps are a prefix of its column
        following = reward[t] + gamma * following
        returns[t] = following
    rows = live.transpose(0, 1).reshape(-1)  # session-major

    def flat(x: Tensor) -> Tensor:
        return x.transpose(0, 1).reshape(-1, *x.shape[2:])[rows]

    return TensorDict(
        {
            "observation": flat(steps["observation"]),
            "action": flat(steps["action"]),
            "action_log_prob": flat(steps["action_log_prob"]),
            "next": {"reward": flat(reward)},
            "value_target": flat(returns),
        },
        batch_size=[int(rows.sum())],
    )
