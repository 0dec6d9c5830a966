"""frl.shaping: potential-based shaping leaves the optimal policy alone (exactly, through
frl.planning), a non-potential bonus does not, the transition form, and the four variants."""

from __future__ import annotations

import pytest
import torch
from tensordict import TensorDict

from frl import planning, random
from frl.planning import mdp as mdps
from frl.shaping import potential_shaping, shape_mdp, shape_transitions
from tests.variants import Case, check, variant_params


def _grid():
    # two goals: a near small one and a far large one; a step cost; slippery moves
    return mdps.gridworld(
        4, 5, goals={(0, 4): 1.0, (3, 0): 0.3}, walls=[(1, 1), (2, 3)], step_reward=-0.02, slip=0.1, gamma=0.9
    )


@pytest.mark.parametrize(
    "make", [_grid, lambda: mdps.garnet(random.key(4), 12, 3, 4, 0.9, dtype=torch.float64)]
)
def test_a_potential_keeps_the_optimal_policy_and_shifts_q_by_phi(make):
    mdp = make()
    S = mdp["terminal"].shape[-1]
    phi = 5.0 * torch.randn(S, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    plain = planning.value_iteration(mdp, tol=1e-12)
    shaped = planning.value_iteration(shape_mdp(mdp, phi), tol=1e-12)
    live = ~mdp["terminal"]
    assert torch.equal(shaped.policy[live], plain.policy[live])
    # Q'*(s, a) = Q*(s, a) - Phi(s) and V'* = V* - Phi on every non-terminal state (Ng et al. 1999)
    torch.testing.assert_close(
        shaped.q_values[live], (plain.q_values - phi[:, None])[live], rtol=0, atol=1e-9
    )
    torch.testing.assert_close(shaped.values[live], (plain.values - phi)[live], rtol=0, atol=1e-9)


def test_a_batch_of_mdps_is_shaped_member_by_member():
    keys = random.split(random.key(1), 3)
    batch = torch.stack([mdps.garnet(k, 8, 2, 3, 0.8, dtype=torch.float64) for k in keys])
    phi = torch.arange(24, dtype=torch.float64).reshape(3, 8) / 7.0
    together = shape_mdp(batch, phi)["rewards"]
    for i in range(3):
        torch.testing.assert_close(together[i], shape_mdp(batch[i], phi[i])["rewards"])


def _loop_mdp(bonus: float, potential: bool):
    """State 0 chooses: action 0 ends the episode at the goal (reward 1); action 1 steps to state 1,
    which returns to 0 (reward 0). A bonus of ``bonus`` for arriving at state 1 pays the agent to
    loop for ever; as a potential (Phi(1) = bonus) it cannot."""
    P = torch.zeros(3, 2, 3, dtype=torch.float64)
    P[0, 0, 2] = 1.0  # to the goal (terminal)
    P[0, 1, 1] = 1.0
    P[1, :, 0] = 1.0
    P[2, :, 2] = 1.0
    R = torch.zeros(3, 2, 3, dtype=torch.float64)
    R[0, 0, 2] = 1.0
    terminal = torch.tensor([False, False, True])
    mdp = mdps.make_mdp(P, R, gamma=0.9, terminal=terminal, initial=torch.tensor([1.0, 0.0, 0.0]))
    if potential:
        return shape_mdp(mdp, torch.tensor([0.0, bonus, 0.0], dtype=torch.float64))
    bonus_r = torch.zeros_like(R)
    bonus_r[:, :, 1] = bonus  # R + B(s'): not of the form gamma Phi(s') - Phi(s)
    out = mdp.copy()
    out["rewards"] = R + bonus_r
    return out


def test_a_non_potential_bonus_changes_the_optimal_policy_and_a_potential_does_not():
    plain = planning.value_iteration(_loop_mdp(0.0, potential=False)).policy[0]
    assert plain.argmax() == 0  # take the goal
    assert planning.value_iteration(_loop_mdp(2.0, potential=True)).policy[0].argmax() == 0
    assert planning.value_iteration(_loop_mdp(2.0, potential=False)).policy[0].argmax() == 1  # loops


def test_transitions_are_shaped_with_the_true_last_state_and_keep_the_raw_reward():
    obs = torch.tensor([[0.0], [1.0], [2.0], [3.0]])
    nxt = torch.tensor([[1.0], [2.0], [3.0], [9.0]])  # the 4th: a true last state (terminal)
    batch = TensorDict(
        {
            "observation": obs,
            "next": {
                "observation": nxt,
                "reward": torch.tensor([0.0, 0.0, 1.0, 5.0]),
                "terminated": torch.tensor([[False], [False], [False], [True]]),
            },
        },
        batch_size=[4],
    )
    out = shape_transitions(batch, lambda o: -o.squeeze(-1), gamma=0.5)
    # r + 0.5 * (-s') - (-s); terminal: r + s
    torch.testing.assert_close(out["next", "reward"], torch.tensor([-0.5, 0.0, 1.5, 8.0]))
    torch.testing.assert_close(out["next", "raw_reward"], batch["next", "reward"])
    assert "raw_reward" not in batch["next"]


def test_bad_input_names_it():
    r = torch.zeros(3)
    with pytest.raises(
        ValueError, match="`next_potential` must have the reward's shape \\[3\\], got \\[3, 1\\]"
    ):
        potential_shaping(r, r, torch.zeros(3, 1), torch.zeros(3, dtype=torch.bool), 0.9)
    with pytest.raises(ValueError, match="`terminated` must be bool"):
        potential_shaping(r, r, r, torch.zeros(3), 0.9)
    with pytest.raises(ValueError, match=r"shape_mdp: `potential` must be \[\.\.\., S\] = \[20\]"):
        shape_mdp(_grid(), torch.zeros(19, dtype=torch.float64))


def _args(i: int):
    g = torch.Generator().manual_seed(i)
    r, p, q = (torch.randn(5, generator=g) for _ in range(3))
    return r, p, q, torch.rand(5, generator=g) < 0.3, torch.tensor(0.9 + 0.01 * i)


CASES = [Case("potential_shaping", potential_shaping, _args, grad_argnums=(0, 1, 2, 4))]


@pytest.mark.parametrize("case,variant", variant_params(CASES))
def test_variants(case, variant):
    check(case, variant)
