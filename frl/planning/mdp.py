"""Tabular MDPs as TensorDicts, and the ones frl ships: FrozenLake, CliffWalking, gridworlds, Garnets.

An MDP is a ``TensorDict`` (any leading batch dims ``...``: a batch of MDPs is one TensorDict):

===============  ==================  =============================================================
key              shape               meaning
===============  ==================  =============================================================
``transitions``  ``[..., S, A, S]``  ``P(s' | s, a)``, rows sum to 1
``rewards``      ``[..., S, A, S]``  ``R(s, a, s')`` (``make_mdp`` broadcasts ``R(s, a)``)
``terminal``     ``[..., S]``        absorbing states whose value is 0 (arriving ends the episode)
``initial``      ``[..., S]``        the start-state distribution (for sampling and ``J(pi)``)
``gamma``        ``[...]``           the discount
===============  ==================  =============================================================
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from tensordict import TensorDict, TensorDictBase
from torch import Tensor

from frl import random

__all__ = ["cliff_walking", "from_gymnasium", "frozen_lake", "garnet", "gridworld", "make_mdp", "num_states"]


def make_mdp(
    transitions: Tensor,
    rewards: Tensor,
    *,
    gamma: float | Tensor,
    terminal: Tensor | None = None,
    initial: Tensor | None = None,
    atol: float = 1e-5,
) -> TensorDict:
    """A validated MDP TensorDict (see the module docstring).

    Args:
      transitions: ``P [..., S, A, S]``, non-negative, rows summing to 1 (within ``atol``).
      rewards: ``R [..., S, A]`` or ``R [..., S, A, S]``.
      gamma: the discount in ``[0, 1]`` (a float or a tensor ``[...]``).
      terminal: ``[..., S]`` bool (default: none).
      initial: ``[..., S]`` start distribution (default: uniform over non-terminal states).
    """
    if not isinstance(transitions, Tensor) or transitions.dim() < 3:
        raise ValueError(
            f"make_mdp: `transitions` must be a tensor [..., S, A, S], got {_shape(transitions)}"
        )
    *batch, S, A, S2 = transitions.shape
    if S != S2:
        raise ValueError(f"make_mdp: `transitions` must be [..., S, A, S], got {list(transitions.shape)}")
    dtype = transitions.dtype if transitions.dtype.is_floating_point else torch.float32
    transitions = transitions.to(dtype)
    if bool((transitions < 0).any()) or not torch.allclose(
        transitions.sum(-1), torch.ones((), dtype=dtype), atol=atol
    ):
        raise ValueError("make_mdp: `transitions` rows P[s, a, :] must be non-negative and sum to 1")
    rewards = torch.as_tensor(rewards, dtype=dtype)
    if tuple(rewards.shape) == (*batch, S, A):
        rewards = rewards.unsqueeze(-1).expand(*batch, S, A, S)
    if tuple(rewards.shape) != (*batch, S, A, S):
        raise ValueError(
            f"make_mdp: `rewards` must be [..., S, A] = {[*batch, S, A]} or [..., S, A, S], "
            f"got {list(rewards.shape)}"
        )
    terminal = torch.zeros(*batch, S, dtype=torch.bool) if terminal is None else torch.as_tensor(terminal)
    if tuple(terminal.shape) != (*batch, S) or terminal.dtype != torch.bool:
        raise ValueError(
            f"make_mdp: `terminal` must be bool [..., S] = {[*batch, S]}, got {_shape(terminal)}"
        )
    if initial is None:
        live = (~terminal).to(dtype)
        initial = live / live.sum(-1, keepdim=True).clamp_min(1.0)
    initial = torch.as_tensor(initial, dtype=dtype)
    if tuple(initial.shape) != (*batch, S) or not torch.allclose(
        initial.sum(-1), torch.ones((), dtype=dtype), atol=atol
    ):
        raise ValueError(f"make_mdp: `initial` must be a distribution [..., S] = {[*batch, S]}")
    gamma = torch.as_tensor(gamma, dtype=dtype).expand(batch).clone()
    if bool(((gamma < 0) | (gamma > 1)).any()):
        raise ValueError(f"make_mdp: `gamma` must lie in [0, 1], got {gamma}")
    return TensorDict(
        {
            "transitions": transitions,
            "rewards": rewards.contiguous(),
            "terminal": terminal,
            "initial": initial,
            "gamma": gamma,
        },
        batch_size=batch,
    )


def _shape(x: object) -> str:
    return str(list(x.shape)) if isinstance(x, Tensor) else type(x).__name__


def num_states(mdp: TensorDictBase) -> int:
    """The number of states ``S`` of an MDP (its transitions are ``[..., S, A, S]``)."""
    return mdp["transitions"].shape[-1]


def from_gymnasium(env: object, gamma: float, dtype: torch.dtype = torch.float64) -> TensorDict:
    """The MDP of a gymnasium toy-text environment from its transition table ``env.unwrapped.P``.

    ``P[s][a]`` lists ``(probability, next_state, reward, terminated)``; equal next states are
    merged (their rewards probability-weighted); a state is terminal when some transition into
    it terminates the episode; the start distribution is ``initial_state_distrib``.
    """
    base = getattr(env, "unwrapped", env)
    table = base.P
    S, A = base.observation_space.n, base.action_space.n
    P = torch.zeros(S, A, S, dtype=dtype)
    PR = torch.zeros(S, A, S, dtype=dtype)
    terminal = torch.zeros(S, dtype=torch.bool)
    for s in range(S):
        for a in range(A):
            for p, s_next, r, done in table[s][a]:
                P[s, a, int(s_next)] += p
                PR[s, a, int(s_next)] += p * r
                if done:
                    terminal[int(s_next)] = True
    R = torch.where(P > 0, PR / P.clamp_min(1e-300), torch.zeros((), dtype=dtype))
    initial = getattr(base, "initial_state_distrib", None)
    initial = None if initial is None else torch.as_tensor(initial, dtype=dtype)
    return make_mdp(P, R, gamma=gamma, terminal=terminal, initial=initial)


def frozen_lake(map_name: str = "4x4", is_slippery: bool = True, gamma: float = 0.99) -> TensorDict:
    """gymnasium's FrozenLake-v1 (``map_name`` "4x4" or "8x8"): reward 1 at the goal, holes end it."""
    import gymnasium

    env = gymnasium.make("FrozenLake-v1", map_name=map_name, is_slippery=is_slippery)
    return from_gymnasium(env, gamma)


def cliff_walking(gamma: float = 0.99) -> TensorDict:
    """gymnasium's CliffWalking-v1: -1 per step, -100 and back to the start off the cliff."""
    import gymnasium

    return from_gymnasium(gymnasium.make("CliffWalking-v1"), gamma)


_MOVES = ((-1, 0), (0, 1), (1, 0), (0, -1))  # up, right, down, left


def gridworld(
    rows: int = 5,
    cols: int = 5,
    *,
    goals: dict[tuple[int, int], float] | None = None,
    walls: Sequence[tuple[int, int]] = (),
    step_reward: float = 0.0,
    slip: float = 0.0,
    start: tuple[int, int] = (0, 0),
    gamma: float = 0.95,
    dtype: torch.dtype = torch.float64,
) -> TensorDict:
    """A configurable gridworld: 4 moves (up, right, down, left); walls and edges block.

    With probability ``slip`` the move goes to one of the two perpendicular directions (half
    each). Entering a goal cell pays its reward (plus ``step_reward``) and ends the episode.
    States are ``row * cols + col``; default goal: +1 in the far corner.
    """
    goals = {(rows - 1, cols - 1): 1.0} if goals is None else dict(goals)
    if rows < 1 or cols < 1 or not 0.0 <= slip <= 1.0:
        raise ValueError(f"gridworld: need rows, cols >= 1 and slip in [0, 1], got {rows}, {cols}, {slip}")
    blocked = set(walls)
    S = rows * cols
    P = torch.zeros(S, 4, S, dtype=dtype)
    R = torch.zeros(S, 4, S, dtype=dtype)
    terminal = torch.zeros(S, dtype=torch.bool)
    for r, c in goals:
        terminal[r * cols + c] = True

    def move(r: int, c: int, d: int) -> tuple[int, int]:
        nr, nc = r + _MOVES[d][0], c + _MOVES[d][1]
        if not (0 <= nr < rows and 0 <= nc < cols) or (nr, nc) in blocked:
            return r, c
        return nr, nc

    for r in range(rows):
        for c in range(cols):
            s = r * cols + c
            for a in range(4):
                outcomes = [(a, 1.0 - slip), ((a + 1) % 4, slip / 2), ((a + 3) % 4, slip / 2)]
                for d, p in outcomes:
                    if p == 0:
                        continue
                    nr, nc = move(r, c, d)
                    s_next = nr * cols + nc
                    P[s, a, s_next] += p
                    R[s, a, s_next] = step_reward + goals.get((nr, nc), 0.0)
    initial = torch.zeros(S, dtype=dtype)
    initial[start[0] * cols + start[1]] = 1.0
    return make_mdp(P, R, gamma=gamma, terminal=terminal, initial=initial)


def garnet(
    key: Tensor,
    num_states: int = 50,
    num_actions: int = 4,
    branching: int = 5,
    gamma: float = 0.9,
    dtype: torch.dtype = torch.float32,
) -> TensorDict:
    """A random Garnet MDP (Archibald et al. 1995): each ``(s, a)`` reaches ``branching`` distinct
    states with probabilities from a flat Dirichlet; rewards ``R(s, a) ~ U[0, 1)``; no terminal.

    A pure function of ``key`` built from ``frl.random``: ``vmap(garnet)(keys)`` makes a batch
    (pass the sizes with ``functools.partial``).
    """
    if not 1 <= branching <= num_states:
        raise ValueError(f"garnet: `branching` must lie in [1, num_states={num_states}], got {branching}")
    k_support, k_prob, k_reward = random.split(key, 3)
    scores = random.uniform(k_support, (num_states, num_actions, num_states), dtype)
    support = scores.topk(branching, dim=-1).indices
    weights = -torch.log(
        random.uniform(k_prob, (num_states, num_actions, branching), dtype, minval=1e-12, maxval=1.0)
    )
    probs = weights / weights.sum(-1, keepdim=True)
    P = torch.zeros(num_states, num_actions, num_states, dtype=dtype).scatter(-1, support, probs)
    R = random.uniform(k_reward, (num_states, num_actions), dtype).unsqueeze(-1).expand(-1, -1, num_states)
    return TensorDict(
        {
            "transitions": P,
            "rewards": R.contiguous(),
            "terminal": torch.zeros(num_states, dtype=torch.bool),
            "initial": torch.full((num_states,), 1.0 / num_states, dtype=dtype),
            "gamma": torch.tensor(gamma, dtype=dtype),
        },
        batch_size=[],
    )
