"""Learning from logged feedback: off-policy policy gradients on what a behaviour policy logged,
then online fine-tuning from there.

A recommender in production logs its sessions with the probability it gave each slate (its
propensity). :func:`pretrain_from_logs` trains an actor-critic agent's networks on such logs
(:func:`frl.envs.recsim.log_sessions`) with REINFORCE weighted by clipped importance ratios
(``frl.losses.reinforce_loss(max_importance_weight=c)``, Chen et al. 2019) before any online
step; :func:`starting_from` turns the agent into one whose every member starts from those
params, so ``frl.run`` fine-tunes them online::

    logs = recsim.log_sessions(env, recsim.softmax_greedy(0.5), key, 500)
    train = ppo.make_train(ppo.Config.preset("RecSim-InterestEvolution-v0"))
    params, history = pretrain_from_logs(train, logs, key=frl.random.key(0))
    result = frl.run(starting_from(train, params), seeds=8)
"""

from __future__ import annotations

import dataclasses
from typing import Any

from tensordict import TensorDict, TensorDictBase
from torch import Tensor

from frl import optim, random
from frl.algos.train import Train
from frl.losses import bind, reinforce_loss
from frl.update import make_update

__all__ = ["pretrain_from_logs", "starting_from"]

LOG_KEYS = ("observation", "action", "action_log_prob", "value_target")


def _check_positive(name: str, value: Any, kind: type = int) -> None:
    ok = isinstance(value, kind) and not isinstance(value, bool) and value > 0
    if kind is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0
    if not ok:
        raise ValueError(f"pretrain_from_logs: `{name}` must be a positive {kind.__name__}, got {value!r}")


def pretrain_from_logs(
    train: Train,
    logs: TensorDictBase,
    *,
    key: Tensor,
    epochs: int = 20,
    minibatch_size: int = 256,
    learning_rate: float = 1e-3,
    max_importance_weight: float = 10.0,
    value_coef: float = 0.5,
    entropy_coef: float = 0.0,
    max_grad_norm: float = 10.0,
) -> tuple[TensorDict, list[dict[str, float]]]:
    """Train ``train``'s actor and critic off-policy on ``logs`` (no environment step).

    Every epoch visits the rows ``[N]`` of ``logs`` in a fresh random order, in minibatches; each
    step minimises ``reinforce_loss`` with the critic as baseline and the clipped importance
    weight ``min(pi(a|s) / mu(a|s), max_importance_weight)`` (Adam, gradient norm clipped), and
    an entropy bonus ``entropy_coef``: a policy left soft keeps exploring when fine-tuned online.

    Args:
      train: an actor-critic agent (``parts`` ``actor``, ``critic``, ``dist``: PPO, A2C).
      logs: ``observation``, ``action``, ``action_log_prob`` (the behaviour's), ``value_target``
        (returns), batch ``[N]``.
      key: initialises the networks and orders the minibatches.

    Returns:
      ``(params, history)``: params ``{"actor", "critic"}`` in the agent's layout, and one row of
      mean metrics per epoch.
    """
    for part in ("actor", "critic", "dist"):
        if part not in train.parts:
            raise ValueError(f"pretrain_from_logs: {train.name} is not an actor-critic agent (no `{part}`)")
    missing = [k for k in LOG_KEYS if k not in logs.keys()]  # noqa: SIM118 (a TensorDict's `in` is not its keys)
    if missing or logs.batch_dims != 1:
        raise ValueError(
            f"pretrain_from_logs: `logs` must be a TensorDict of batch [N] with {', '.join(LOG_KEYS)}; "
            f"missing {missing}, batch {list(logs.batch_size)}"
        )
    _check_positive("epochs", epochs)
    _check_positive("minibatch_size", minibatch_size)
    for name, value in (("learning_rate", learning_rate), ("max_importance_weight", max_importance_weight)):
        _check_positive(name, value, float)
    actor, critic, dist = train.parts["actor"], train.parts["critic"], train.parts["dist"]
    loss = bind(
        reinforce_loss,
        "actor",
        "critic",
        policy_apply=actor.apply,
        dist=dist,
        value_apply=critic.apply,
        value_coef=value_coef,
        entropy_coef=entropy_coef,
        max_importance_weight=max_importance_weight,
    )
    update = make_update(
        loss, optim.chain(optim.clip_by_global_norm(max_grad_norm), optim.adam(learning_rate))
    )
    k_actor, k_critic, key = random.split(key, 3)
    state = update.init(
        TensorDict({"actor": actor.init(k_actor), "critic": critic.init(k_critic)}, batch_size=[])
    )
    rows = logs.select(*LOG_KEYS)
    n = rows.batch_size[0]
    size = min(minibatch_size, n)
    history = []
    for epoch in range(epochs):
        key, k_order = random.split(key)
        order = random.permutation(k_order, n)
        sums: dict[str, float] = {}
        batches = range(0, n - size + 1, size)
        for start in batches:
            state, metrics = update.step(state, rows[order[start : start + size]])
            for name, value in metrics.items():
                sums[name] = sums.get(name, 0.0) + float(value)
        history.append({"epoch": epoch + 1, **{k: v / len(batches) for k, v in sums.items()}})
    return state["params"], history


def starting_from(train: Train, params: TensorDictBase) -> Train:
    """``train`` whose every member starts from ``params`` (one member's params, in the agent's
    layout) instead of fresh initial ones; everything else (optimizer state, counters, the
    environments' draws) is built as before. An entry missing from ``params``, or of another
    shape, is a ValueError naming it."""
    probe = train.build(random.key(0), train.config.hyperparams())["params"]
    for name, expected in probe.items(include_nested=True, leaves_only=True):
        got = params.get(name, None)
        if got is None or got.shape != expected.shape or got.dtype != expected.dtype:
            found = "missing" if got is None else f"{got.dtype} {list(got.shape)}"
            raise ValueError(
                f"starting_from: params entry {name!r} must be {expected.dtype} {list(expected.shape)}, "
                f"got {found}"
            )
    start = params.select(*probe.keys(include_nested=True, leaves_only=True)).detach().clone()
    build = train.build

    def build_from(key: Tensor, hyperparams: TensorDictBase) -> TensorDict:
        state = build(key, hyperparams)
        state["params"] = start.clone()
        return state

    return dataclasses.replace(train, build=build_from)
