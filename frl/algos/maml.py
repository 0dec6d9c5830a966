"""MAML for policy gradients (Finn et al. 2017, "Model-agnostic meta-learning for fast adaptation
of deep networks"), with ``torch.func``: the inner updates are differentiated through, the tasks
are vmapped.

For a task ``i`` (an environment's params, e.g. a goal of :class:`frl.envs.PointNavigation`):

1. sample trajectories ``D_i`` with the policy ``theta`` (:func:`sample_trajectories`);
2. adapt: ``theta_i' = theta - alpha grad L(theta; D_i)`` (:func:`adapt`; ``L`` is the
   REINFORCE surrogate with a time-indexed mean baseline, :func:`policy_gradient_loss`), and
   again on fresh trajectories of ``theta_i'`` for each of ``inner_steps``;
3. sample ``D_i'`` with the adapted policy;

the meta-objective ``J(theta) = mean_i L(theta_i'(theta); D_i')`` (:func:`meta_loss`) is
differentiated through step 2 (second-order terms included: ``torch.func.grad`` of a function
that calls ``torch.func.grad``) and ``theta`` takes an Adam step. As in the paper, the sampling
distributions' own dependence on ``theta`` is not differentiated (the data are fixed samples).

:func:`meta_train` runs it; :func:`pretrain` is the baseline (one policy trained on the task
distribution with the same policy gradient); :func:`adaptation_returns` measures either after
``0 .. k`` inner steps on new tasks, sampling fresh trajectories before each step, as the paper
evaluates.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, ClassVar

import torch
from tensordict import TensorDict, TensorDictBase
from torch import Tensor
from torch.func import grad, vmap

from frl import nn, optim, random
from frl.distributions import DiagGaussian
from frl.envs.meta import PointNavigation
from frl.returns import discounted_returns

__all__ = [
    "Config",
    "adapt",
    "adaptation_returns",
    "meta_loss",
    "meta_train",
    "policy_gradient_loss",
    "pretrain",
    "sample_trajectories",
]


@dataclass(frozen=True)
class Config:
    """MAML on 2-D navigation, the settings measured in ``benchmarks/bench_meta.py``: Finn et
    al. 2017's inner step ``alpha = 0.1``, 20 trajectories per task and 20 tasks per meta-batch,
    with these changes: Adam on the meta-gradient (the paper used TRPO); two 64-unit ReLU layers
    (the paper's are 100 units; 64 halves the CPU time); the inner gradient scaled to global norm
    at most ``inner_max_norm`` (None: the paper's plain step; measured here, an unclipped second
    and third step from the meta-learned policy overshot, returns -18 -> -4 -> -1060 -> -427);
    and meta-training through 2 inner steps (with 1, the second step still overshot:
    -19.7 -> -5.3 -> -13.4 -> -5.2; with 2: -18.4 -> -7.5 -> -3.2 -> -4.1). ``num_tasks``: train
    on a fixed set of that many goals (drawn from the seed; each meta-batch takes distinct ones),
    None: a new draw every batch."""

    agent: ClassVar[str] = "maml"

    hidden: tuple[int, ...] = (64, 64)
    activation: str = "relu"
    inner_lr: float = 0.1
    inner_max_norm: float | None = 1.0
    inner_steps: int = 2
    meta_batch: int = 20
    num_tasks: int | None = None
    trajectories: int = 20
    meta_lr: float = 1e-3
    iterations: int = 150
    gamma: float = 0.99
    log_std_init: float = -1.0

    def __post_init__(self) -> None:
        for name in ("inner_steps", "meta_batch", "trajectories", "iterations"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"maml.Config: `{name}` must be a positive int, got {value!r}")
        if self.num_tasks is not None:
            if isinstance(self.num_tasks, bool) or not isinstance(self.num_tasks, int) or self.num_tasks < 1:
                raise ValueError(
                    f"maml.Config: `num_tasks` must be a positive int or None, got {self.num_tasks!r}"
                )
            if self.meta_batch > self.num_tasks:
                raise ValueError(
                    f"maml.Config: `meta_batch` ({self.meta_batch}) is larger than the task set "
                    f"(`num_tasks` = {self.num_tasks}): a meta-batch draws distinct tasks"
                )
        for name in ("inner_lr", "meta_lr"):
            if not getattr(self, name) > 0:
                raise ValueError(f"maml.Config: `{name}` must be positive, got {getattr(self, name)!r}")


def policy_for(env: PointNavigation, config: Config, dtype: torch.dtype = torch.float32) -> nn.GaussianPolicy:
    """The Gaussian MLP policy (``config.activation``, free log-std) MAML adapts. With ReLU the
    inner gradient jumps where a unit switches, so the meta-objective is only piecewise smooth;
    a smooth activation (tanh) makes it differentiable everywhere."""
    obs_dim, action_dim = env.observation_space.shape[0], env.action_space.shape[0]
    return nn.GaussianPolicy(
        obs_dim,
        action_dim,
        hidden=config.hidden,
        activation=config.activation,
        log_std_init=config.log_std_init,
        output_scale=0.01,
        dtype=dtype,
    )


def sample_trajectories(
    env: Any, task: Any, policy_apply: Callable, params: TensorDictBase, key: Tensor, n: int
) -> TensorDict:
    """``n`` trajectories of one episode (``env.max_episode_steps`` steps) on ``task`` (the env's
    params), actions sampled from the Gaussian ``policy_apply(params, obs)``: a TensorDict
    ``[n, H]`` with ``observation``, ``action`` and ``reward`` (no gradient)."""
    dist = DiagGaussian()
    k_reset, key = random.split(key)
    obs, state = env.reset(k_reset, task, num_envs=n)
    rows = []
    with torch.no_grad():
        for _ in range(env.max_episode_steps):
            key, k_act, k_env = random.split(key, 3)
            action = dist.sample(k_act, policy_apply(params, obs))
            next_obs, state, reward, *_ = env.step(k_env, state, action, task)
            rows.append((obs, action, reward))
            obs = next_obs
    obs, action, reward = (torch.stack(c, dim=1) for c in zip(*rows, strict=True))
    return TensorDict({"observation": obs, "action": action, "reward": reward}, batch_size=[n, len(rows)])


def policy_gradient_loss(
    params: TensorDictBase, batch: TensorDictBase, *, policy_apply: Callable, gamma: float
) -> Tensor:
    """The REINFORCE surrogate ``-mean_{n,t} log pi(a_t|s_t) A_t`` over trajectories ``[N, H]`` of
    one task: reward-to-go ``G_t`` (discount ``gamma``) less the time-indexed baseline
    ``b_t = mean_n G_t``, standardised over the batch (rllab's ``center_adv``, which MAML's
    step size ``alpha = 0.1`` assumes)."""
    reward = batch["reward"]
    never = torch.zeros_like(reward, dtype=torch.bool)
    returns = discounted_returns(reward, never, never, gamma=gamma)
    advantage = returns - returns.mean(0, keepdim=True)
    advantage = (advantage - advantage.mean()) / (advantage.std() + 1e-8)
    log_prob = DiagGaussian().log_prob(policy_apply(params, batch["observation"]), batch["action"])
    return -(log_prob * advantage.detach()).mean()


def adapt(
    params: TensorDictBase,
    batch: TensorDictBase,
    loss: Callable,
    lr: float | Tensor,
    first_order: bool = False,
    max_norm: float | None = None,
) -> TensorDictBase:
    """One inner step ``theta' = theta - lr g``, ``g = grad_theta loss(theta, batch)`` (scaled to
    global norm at most ``max_norm`` if given), differentiable in ``params``: ``torch.func.grad``
    of anything built on ``theta'`` includes the second-order terms ``-lr H d/dtheta'``, unless
    ``first_order`` treats the inner gradient as a constant (first-order MAML)."""
    g = grad(loss)(params, batch)
    if first_order:
        g = g.detach()
    if max_norm is not None:
        norm = torch.sqrt(sum((x * x).sum() for x in g.values(True, True)))
        g = g.apply(lambda x: x * torch.clamp(max_norm / (norm + 1e-12), max=1.0))
    return params.apply(lambda p, d: p - lr * d, g)


def meta_loss(
    params: TensorDictBase,
    inner: TensorDictBase | Sequence[TensorDictBase],
    outer: TensorDictBase,
    loss: Callable,
    lr: float | Tensor,
    first_order: bool = False,
    max_norm: float | None = None,
) -> Tensor:
    """``J(theta) = mean_i loss(theta_i^(k), outer_i)`` over the tasks ``i`` (the leading dim of
    every batch, vmapped), ``theta_i^(j+1) = adapt(theta_i^(j), inner[j]_i)`` from ``theta``:
    ``inner`` is one batch per inner step (or one batch for one step)."""
    steps = [inner] if isinstance(inner, TensorDictBase) else list(inner)

    def task(b_out: TensorDictBase, *b_in: TensorDictBase) -> Tensor:
        adapted = params
        for batch in b_in:
            adapted = adapt(adapted, batch, loss, lr, first_order, max_norm)
        return loss(adapted, b_out)

    return vmap(task)(outer, *steps).mean()


def _loss(config: Config, policy: nn.GaussianPolicy) -> Callable:
    def loss(params: TensorDictBase, batch: TensorDictBase) -> Tensor:
        return policy_gradient_loss(params, batch, policy_apply=policy.apply, gamma=config.gamma)

    return loss


def _sample_tasks(
    env: Any, tasks: Any, policy: Any, params: TensorDictBase, key: Tensor, n: int, per_task: bool
):
    """Trajectories ``[tasks, n, H]``; ``per_task``: ``params`` carries a leading task dim."""
    keys = random.split(key, tasks.goal.shape[0])

    def one(task: Any, p: TensorDictBase, k: Tensor) -> TensorDict:
        return sample_trajectories(env, task, policy.apply, p, k, n)

    return vmap(one, in_dims=(0, 0 if per_task else None, 0), randomness="error")(tasks, params, keys)


def _training_tasks(env: Any, config: Config, key: Tensor) -> Callable[[Tensor], Any]:
    """``draw(key) -> tasks [meta_batch]``: fresh goals, or distinct ones of a fixed set."""
    if config.num_tasks is None:
        return lambda k: env.sample_tasks(k, config.meta_batch)
    fixed = env.sample_tasks(key, config.num_tasks)

    def draw(k: Tensor) -> Any:
        chosen = torch.argsort(random.bits(k, (config.num_tasks,)))[: config.meta_batch]
        return type(fixed)(*(x[chosen] for x in fixed))

    return draw


def _mean_loss(params: TensorDictBase, data: TensorDictBase, loss: Callable) -> Tensor:
    """``mean_i loss(params, data_i)`` over the tasks (data's leading dim)."""
    return vmap(loss, in_dims=(None, 0))(params, data).mean()


def _start(
    config: Config, seed: int, env: Any
) -> tuple[Any, nn.GaussianPolicy, Callable, Tensor, TensorDict, Callable]:
    """``(env, policy, loss, key, params, draw)`` of a run from ``seed``: what MAML and the
    pretrained baseline start from (the same initial params for the same seed)."""
    env = env or PointNavigation()
    policy = policy_for(env, config)
    key, k_init = random.split(random.key(seed))
    params = policy.init(k_init)
    return (
        env,
        policy,
        _loss(config, policy),
        key,
        params,
        _training_tasks(env, config, random.fold_in(k_init, 1)),
    )


def meta_train(
    config: Config, seed: int, env: PointNavigation | None = None
) -> tuple[TensorDict, list[float]]:
    """MAML (module docstring) for ``config.iterations`` meta-iterations from ``seed``: the
    meta-learned params and the mean post-adaptation return per iteration."""
    env, policy, loss, key, params, draw = _start(config, seed, env)
    tx = optim.adam(config.meta_lr)
    opt_state, history = tx.init(params), []
    for _ in range(config.iterations):
        key, k_tasks, k_in, k_out = random.split(key, 4)
        tasks = draw(k_tasks)
        step = partial(adapt, loss=loss, lr=config.inner_lr, max_norm=config.inner_max_norm)
        inner, adapted = [], params
        for j, k_step in enumerate(random.split(k_in, config.inner_steps)):
            batch = _sample_tasks(env, tasks, policy, adapted, k_step, config.trajectories, per_task=j > 0)
            inner.append(batch)
            with torch.no_grad():
                adapted = vmap(step, in_dims=(0 if j > 0 else None, 0))(adapted, batch)
        outer = _sample_tasks(env, tasks, policy, adapted, k_out, config.trajectories, per_task=True)
        g = grad(meta_loss)(params, inner, outer, loss, config.inner_lr, max_norm=config.inner_max_norm)
        updates, opt_state = tx.update(g, opt_state, params)
        params = optim.apply_updates(params, updates)
        history.append(float(outer["reward"].sum(-1).mean()))
    return params, history


def pretrain(config: Config, seed: int, env: PointNavigation | None = None) -> tuple[TensorDict, list[float]]:
    """The baseline: one policy trained with the same policy gradient on tasks drawn from the
    distribution, ``config.iterations`` Adam steps on ``2 x trajectories`` trajectories of each
    of ``meta_batch`` tasks (MAML samples ``(inner_steps + 1) x trajectories`` per task)."""
    env, policy, loss, key, params, draw = _start(config, seed, env)
    tx = optim.adam(config.meta_lr)
    opt_state, history = tx.init(params), []
    for _ in range(config.iterations):
        key, k_tasks, k_data = random.split(key, 3)
        tasks = draw(k_tasks)
        data = _sample_tasks(env, tasks, policy, params, k_data, 2 * config.trajectories, per_task=False)
        g = grad(_mean_loss)(params, data, loss)
        updates, opt_state = tx.update(g, opt_state, params)
        params = optim.apply_updates(params, updates)
        history.append(float(data["reward"].sum(-1).mean()))
    return params, history


def adaptation_returns(
    config: Config, params: TensorDictBase, key: Tensor, *, tasks: int = 40, steps: int = 3, env: Any = None
) -> Tensor:
    """Mean return ``[steps + 1]`` over ``tasks`` new tasks after ``0 .. steps`` inner steps of
    ``config.inner_lr``, each step on ``config.trajectories`` fresh trajectories of the current
    adapted policy (the paper's evaluation)."""
    env = env or PointNavigation()
    policy, loss = policy_for(env, config), _loss(config, policy_for(env, config))
    k_tasks, key = random.split(key)
    goals = env.sample_tasks(k_tasks, tasks)
    current = params.unsqueeze(0).expand(tasks).clone()
    out = []
    for _ in range(steps + 1):
        key, k_data = random.split(key)
        data = _sample_tasks(env, goals, policy, current, k_data, config.trajectories, per_task=True)
        out.append(data["reward"].sum(-1).mean())
        step = partial(adapt, loss=loss, lr=config.inner_lr, max_norm=config.inner_max_norm)
        current = vmap(step)(current, data).detach()
    return torch.stack(out)
