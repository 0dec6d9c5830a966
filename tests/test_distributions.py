"""frl.distributions against torch.distributions, sampling statistics, stability and the four variants."""

from __future__ import annotations

import math

import pytest
import torch
import torch.distributions as td

import frl.random as fr
from frl import distributions as D
from tests.variants import Case, check, variant_params


def logits(i: int = 0, shape=(5, 4)) -> torch.Tensor:
    return 2 * torch.randn(*shape, generator=torch.Generator().manual_seed(i))


def gaussian(i: int = 0, shape=(5, 3)) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(100 + i)
    return torch.randn(*shape, generator=g), 0.5 * torch.randn(*shape, generator=g) - 0.3


def test_categorical_matches_torch():
    cat, x, y = D.Categorical(), logits(0), logits(1)
    ref = td.Categorical(logits=x)
    action = torch.tensor([0, 3, 1, 2, 2])
    torch.testing.assert_close(cat.log_prob(x, action), ref.log_prob(action))
    torch.testing.assert_close(cat.entropy(x), ref.entropy())
    torch.testing.assert_close(cat.kl(x, y), td.kl_divergence(ref, td.Categorical(logits=y)))
    torch.testing.assert_close(cat.probs(x), ref.probs)
    assert torch.equal(cat.mode(x), x.argmax(-1))
    draws = torch.stack([cat.sample(k, x) for k in fr.split(fr.key(0), 4000)])
    freq = torch.stack([(draws == a).double().mean(0) for a in range(4)], -1)
    torch.testing.assert_close(freq, ref.probs.double(), atol=0.03, rtol=0)


def test_multi_categorical_is_a_product_of_torch_categoricals():
    """``MultiDiscrete([4, 2, 3])``: log-probabilities, entropies and KLs add over the dims (each
    a ``torch.distributions.Categorical`` on its slice of the logits); draws follow each dim's
    probabilities; the mode is each dim's argmax."""
    nvec = (4, 2, 3)
    multi, x, y = D.MultiCategorical(nvec), logits(0, (5, 9)), logits(1, (5, 9))
    refs = [td.Categorical(logits=part) for part in torch.split(x, list(nvec), -1)]
    others = [td.Categorical(logits=part) for part in torch.split(y, list(nvec), -1)]
    action = torch.tensor([[0, 1, 2], [3, 0, 0], [1, 1, 1], [2, 0, 2], [3, 1, 0]])
    torch.testing.assert_close(
        multi.log_prob(x, action), sum(r.log_prob(action[:, i]) for i, r in enumerate(refs))
    )
    torch.testing.assert_close(multi.entropy(x), sum(r.entropy() for r in refs))
    torch.testing.assert_close(multi.kl(x, y), sum(td.kl_divergence(r, o) for r, o in zip(refs, others)))
    assert torch.equal(multi.mode(x), torch.stack([r.probs.argmax(-1) for r in refs], -1))
    draws = torch.stack([multi.sample(k, x) for k in fr.split(fr.key(0), 4000)])
    assert draws.shape == (4000, 5, 3) and draws.dtype == torch.int64
    for i, (n, ref) in enumerate(zip(nvec, refs)):
        freq = torch.stack([(draws[..., i] == a).double().mean(0) for a in range(n)], -1)
        torch.testing.assert_close(freq, ref.probs.double(), atol=0.03, rtol=0)
    with pytest.raises(ValueError, match=r"`logits` must end in sum\(nvec\) = 9"):
        multi.log_prob(logits(0, (5, 8)), action)
    with pytest.raises(ValueError, match="`action` must end in K = 3"):
        multi.log_prob(x, action[:, :2])
    with pytest.raises(ValueError, match="`nvec` must be a non-empty tuple of positive ints"):
        D.MultiCategorical((3, 0))


def _sequential_reference(scores: torch.Tensor, slate: torch.Tensor) -> torch.Tensor:
    """log pi(slate) as a chain of torch Categoricals, each over the items not yet taken."""
    total = torch.zeros(scores.shape[:-1])
    taken = torch.zeros(scores.shape, dtype=torch.bool)
    for i in range(slate.shape[-1]):
        ref = td.Categorical(logits=scores.masked_fill(taken, -float("inf")))
        total = total + ref.log_prob(slate[..., i])
        taken = taken | torch.nn.functional.one_hot(slate[..., i], scores.shape[-1]).bool()
    return total


def test_plackett_luce_is_a_chain_of_torch_categoricals():
    """Slates of 3 out of 5: log-probabilities equal a chain of torch Categoricals over the items
    left; they sum to 1 over all 60 slates; draws follow them; the mode is the top 3 in order;
    the entropy is exact for k = 1 and for equal scores."""
    import itertools

    pl, x = D.PlackettLuce(3), logits(0, (4, 5))
    slates = torch.tensor(list(itertools.permutations(range(5), 3)))  # [60, 3]
    every = torch.stack([pl.log_prob(x, s.expand(4, 3)) for s in slates], -1)  # [4, 60]
    reference = torch.stack([_sequential_reference(x, s.expand(4, 3)) for s in slates], -1)
    torch.testing.assert_close(every, reference)
    torch.testing.assert_close(every.exp().sum(-1), torch.ones(4))
    assert torch.equal(pl.mode(x), torch.topk(x, 3).indices)
    draws = torch.stack([pl.sample(k, x[0]) for k in fr.split(fr.key(0), 6000)])  # [6000, 3]
    assert draws.dtype == torch.int64 and bool((draws.sort(-1).values.diff(dim=-1) > 0).all())
    index = {tuple(s.tolist()): i for i, s in enumerate(slates)}
    freq = (
        torch.bincount(torch.tensor([index[tuple(d.tolist())] for d in draws]), minlength=60).double() / 6000
    )
    torch.testing.assert_close(freq, every[0].exp().double(), atol=0.02, rtol=0)
    one = D.PlackettLuce(1)
    torch.testing.assert_close(one.entropy(x), td.Categorical(logits=x).entropy())
    uniform = torch.zeros(2, 5)
    torch.testing.assert_close(pl.entropy(uniform), torch.full((2,), math.log(5 * 4 * 3)))
    with pytest.raises(ValueError, match="`scores` must end in N >= k = 3"):
        pl.log_prob(logits(0, (4, 2)), slates[:4, :2])
    with pytest.raises(ValueError, match="`slate` must be integer indices of shape"):
        pl.log_prob(x, slates[:4].float())
    with pytest.raises(ValueError, match="slate size `k` must be a positive int"):
        D.PlackettLuce(0)


def test_plackett_luce_gradients_are_finite_and_right():
    """d log pi / d scores by autograd equals the chain rule written out (one-hot minus the
    softmax of the items left, summed over positions), finite where items are masked."""
    pl, x = D.PlackettLuce(2), logits(3, (6,)).requires_grad_()
    slate = torch.tensor([4, 1])
    (grad,) = torch.autograd.grad(pl.log_prob(x, slate), x)
    p0 = torch.softmax(x.detach(), -1)
    p1 = torch.softmax(x.detach().masked_fill(torch.arange(6) == 4, -float("inf")), -1)
    expected = torch.nn.functional.one_hot(slate, 6).sum(0).float() - p0 - p1
    torch.testing.assert_close(grad, expected)
    (grad_h,) = torch.autograd.grad(pl.entropy(x), x)
    assert torch.isfinite(grad_h).all()


def test_diag_gaussian_matches_torch():
    g, (mean, log_std), (m2, l2) = D.DiagGaussian(), gaussian(0), gaussian(1)
    ref = td.Independent(td.Normal(mean, log_std.exp()), 1)
    x = torch.randn(5, 3)
    torch.testing.assert_close(g.log_prob((mean, log_std), x), ref.log_prob(x))
    torch.testing.assert_close(g.entropy((mean, log_std)), ref.entropy())
    other = td.Independent(td.Normal(m2, l2.exp()), 1)
    torch.testing.assert_close(g.kl((mean, log_std), (m2, l2)), td.kl_divergence(ref, other))
    k = fr.key(3)
    torch.testing.assert_close(g.sample(k, (mean, log_std)), mean + log_std.exp() * fr.normal(k, (5, 3)))
    # reparameterised: d sample / d mean = 1
    grad = torch.func.grad(lambda m: g.sample(k, (m, log_std)).sum())(mean)
    torch.testing.assert_close(grad, torch.ones_like(mean))


def tanh_reference(mean, log_std, low, high) -> td.Distribution:
    scale, bias = (high - low) / 2, (high + low) / 2
    base = td.Independent(td.Normal(mean, log_std.exp()), 1)
    return td.TransformedDistribution(
        base, [td.TanhTransform(), td.AffineTransform(bias, scale, event_dim=1)]
    )


def test_tanh_gaussian_matches_torch_and_is_stable():
    low, high = torch.tensor([-2.0, 0.0, -1.0]), torch.tensor([2.0, 1.0, 3.0])
    dist = D.TanhGaussian(low=low.tolist(), high=high.tolist())
    mean, log_std = gaussian(2)
    noise = fr.normal(fr.key(4), (5, 3))
    action, log_prob = dist.sample_and_log_prob_from_noise((mean, log_std), noise)
    torch.testing.assert_close(
        action, torch.tanh(mean + log_std.exp() * noise) * (high - low) / 2 + (high + low) / 2
    )
    ref = tanh_reference(mean, log_std, low, high)
    torch.testing.assert_close(log_prob, ref.log_prob(action), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(dist.log_prob((mean, log_std), action), log_prob, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(
        dist.mode((mean, log_std)), torch.tanh(mean) * (high - low) / 2 + (high + low) / 2
    )
    assert bool((action >= low).all() and (action <= high).all())
    # saturated pre-tanh values: the softplus form stays finite where log(1 - tanh^2) is -inf
    _, lp = dist.sample_and_log_prob_from_noise(
        (torch.full((2, 3), 30.0), torch.zeros(2, 3)), torch.zeros(2, 3)
    )
    assert bool(torch.isfinite(lp).all())
    grads = torch.func.grad(lambda m: dist.sample_and_log_prob_from_noise((m, log_std), noise)[1].sum())(
        mean * 20
    )
    assert bool(torch.isfinite(grads).all())
    with pytest.raises(NotImplementedError):
        dist.entropy((mean, log_std))


def test_epsilon_greedy():
    q = torch.tensor([[0.0, 5.0, 1.0]]).expand(20000, 3)
    keys = fr.key(0)
    assert bool((D.epsilon_greedy(keys, q, 0.0) == 1).all())
    for eps in (0.3, torch.tensor(0.3), torch.tensor(1.0)):
        a = D.epsilon_greedy(keys, q, eps)
        e = float(eps)
        freq = torch.bincount(a, minlength=3).double() / a.numel()
        expected = torch.tensor([e / 3, 1 - e + e / 3, e / 3], dtype=torch.float64)
        torch.testing.assert_close(freq, expected, atol=0.015, rtol=0)
    per_env = D.epsilon_greedy(keys, q[:4], torch.tensor([0.0, 0.0, 1.0, 0.0]))
    assert per_env[[0, 1, 3]].tolist() == [1, 1, 1]
    with pytest.raises(ValueError, match="`q_values`"):
        D.epsilon_greedy(keys, torch.tensor(1.0), 0.1)


@pytest.mark.parametrize(
    "call,error,match",
    [
        (lambda: D.Categorical().log_prob(logits(), torch.zeros(5)), TypeError, "`action`"),
        (
            lambda: D.Categorical().log_prob(logits(), torch.zeros(5, 1, dtype=torch.int64)),
            ValueError,
            "`action`",
        ),
        (
            lambda: D.DiagGaussian().log_prob((torch.zeros(2, 3), torch.zeros(2, 2)), torch.zeros(2, 3)),
            ValueError,
            "`log_std`",
        ),
    ],
)
def test_bad_input_raises_a_clear_error(call, error, match):
    with pytest.raises(error, match=match):
        call()


CAT, GAUSS, TANH = D.Categorical(), D.DiagGaussian(), D.TanhGaussian(low=-2.0, high=1.0)
ACTIONS = torch.tensor([0, 3, 1, 2, 2])


def categorical_all(k, x, y):
    return CAT.log_prob(x, ACTIONS), CAT.entropy(x), CAT.kl(x, y), CAT.sample(k, x), CAT.mode(x)


MULTI = D.MultiCategorical((2, 3))
MULTI_ACTIONS = torch.tensor([[0, 2], [1, 0], [1, 1], [0, 0], [1, 2]])


def multi_categorical_all(k, x, y):
    return (
        MULTI.log_prob(x, MULTI_ACTIONS),
        MULTI.entropy(x),
        MULTI.kl(x, y),
        MULTI.sample(k, x),
        MULTI.mode(x),
    )


PLACKETT_LUCE = D.PlackettLuce(3)
SLATES = torch.tensor([[0, 1, 2], [5, 3, 1], [2, 0, 4], [1, 5, 0], [3, 4, 5]])


def plackett_luce_all(k, x):
    return (
        PLACKETT_LUCE.log_prob(x, SLATES),
        PLACKETT_LUCE.entropy(x),
        PLACKETT_LUCE.sample(k, x),
        PLACKETT_LUCE.mode(x),
    )


def gaussian_all(k, mean, log_std, x):
    p = (mean, log_std)
    return (
        GAUSS.log_prob(p, x),
        GAUSS.entropy(p),
        GAUSS.kl(p, (mean + 1, log_std * 0.5)),
        GAUSS.sample(k, p),
        *TANH.sample_and_log_prob(k, p),
        TANH.log_prob(p, torch.tanh(x) * 0.9 - 0.5),
        TANH.mode(p),
    )


CASES = [
    Case(
        "categorical", categorical_all, lambda i: (fr.key(i), logits(i), logits(i + 9)), grad_argnums=(1, 2)
    ),
    Case(
        "gaussian",
        gaussian_all,
        lambda i: (fr.key(i), *gaussian(i), gaussian(i + 50)[0]),
        grad_argnums=(1, 2, 3),
        rtol=1e-5,
        atol=1e-5,
    ),
    Case(
        "multi_categorical",
        multi_categorical_all,
        lambda i: (fr.key(i), logits(i, (5, 5)), logits(i + 9, (5, 5))),
        grad_argnums=(1, 2),
    ),
    Case(
        "plackett_luce",
        plackett_luce_all,
        lambda i: (fr.key(i), logits(i, (5, 6))),
        grad_argnums=(1,),
    ),
    Case("epsilon_greedy", D.epsilon_greedy, lambda i: (fr.key(i), logits(i), torch.tensor(0.2 * i))),
]


@pytest.mark.parametrize("case,variant", variant_params(CASES))
def test_variants(case, variant):
    check(case, variant)
