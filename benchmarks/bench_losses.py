"""Time per update (loss + grad + Adam + target update) for PPO, DQN and SAC: frl vs TorchRL.

Rows per algorithm: a TorchRL ``LossModule`` + ``torch.optim.Adam`` loop (the reference), frl
eager, frl compiled (``frl.compile(update.step)``); then frl compiled and vmapped over 1, 8, 32
and 128 members (each with its own params and data), reported as per-member updates per second.

* PPO: minibatch 128, 64x64 tanh actor and critic, CartPole-sized (4 obs, 2 actions).
* DQN: batch 128, 120x84 ReLU Q-network, hard target copy every 500 steps.
* SAC: batch 256, 256x256 ReLU actor and twin critics, Pendulum-sized (3 obs, 1 action).

A last row per algorithm is the update's matmul floor: every matrix product the eager update
dispatches (``mm``, ``addmm``, ``bmm``, recorded with a dispatch mode), replayed alone on tensors
of the same shapes, each through the faster of torch's call (MKL) and oneDNN where frl can call it
(:mod:`frl._inductor`; on AMD cores with AVX-512 MKL runs AVX2 kernels); compiled rows give their
time over it ("x floor", measured alternately with the floor, the median of three pairs). Compiled
steady-state calls skip guard checks, as ``frl.run`` does after a unit's first call.

Targets: compiled >= 2x the TorchRL loop per update; 32 members >= 8x one member's throughput;
the SAC update within 1.4x of its matmul floor (on one thread a 256x256 SAC update is
matmul-bound).

    python benchmarks/bench_losses.py [--algos ppo dqn sac] [--members 1 8 32 128]
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import print_table, time_call, write_json  # sets threads and cache first

# isort: split
import statistics

import torch
from tensordict import TensorDict
from tensordict.nn import TensorDictModule
from torch.utils._python_dispatch import TorchDispatchMode
from torchrl.data import Categorical as CategoricalSpec
from torchrl.modules import ProbabilisticActor, QValueActor, TanhNormal, ValueOperator
from torchrl.objectives import ClipPPOLoss, DQNLoss, HardUpdate, SACLoss, SoftUpdate

import frl
from frl import _inductor, losses, nn, optim
from frl import distributions as D
from frl import random as fr
from frl.update import make_update

# ----------------------------------------------------------------------------------------
# Problems: frl networks, params and a batch generator, per algorithm
# ----------------------------------------------------------------------------------------


def ppo_problem():
    obs_dim, n_act, batch = 4, 2, 128
    actor, critic = nn.CategoricalPolicy(obs_dim, n_act), nn.ValueNetwork(obs_dim)
    loss = losses.bind(
        losses.ppo_loss,
        "actor",
        "critic",
        policy_apply=actor.apply,
        value_apply=critic.apply,
        dist=D.Categorical(),
    )
    update = make_update(loss, optim.chain(optim.clip_by_global_norm(0.5), optim.adam(2.5e-4)))

    def params(key):
        k1, k2 = fr.split(key)
        return TensorDict({"actor": actor.init(k1), "critic": critic.init(k2)}, batch_size=[])

    def data(key):
        ks = fr.split(key, 5)
        return TensorDict(
            {
                "observation": fr.normal(ks[0], (batch, obs_dim)),
                "action": fr.randint(ks[1], (batch,), 0, n_act),
                "action_log_prob": torch.full((batch,), -0.69),
                "advantage": fr.normal(ks[2], (batch,)),
                "value_target": fr.normal(ks[3], (batch,)),
                "state_value": fr.normal(ks[4], (batch,)),
            },
            batch_size=[batch],
        )

    return update, params, data


def transitions(key, batch, obs_dim, action):
    ks = fr.split(key, 4)
    return TensorDict(
        {
            "observation": fr.normal(ks[0], (batch, obs_dim)),
            "action": action,
            "next": {
                "observation": fr.normal(ks[1], (batch, obs_dim)),
                "reward": fr.normal(ks[2], (batch,)),
                "terminated": fr.bernoulli(ks[3], 0.05, (batch,)),
                "done": fr.bernoulli(ks[3], 0.05, (batch,)),
            },
        },
        batch_size=[batch],
    )


def dqn_problem():
    obs_dim, n_act, batch = 4, 2, 128
    q = nn.QNetwork(obs_dim, n_act)
    loss = losses.bind(losses.dqn_loss, "online", "target", q_apply=q.apply, gamma=0.99)
    update = make_update(loss, optim.adam(2.5e-4), targets={"target": "online"}, target_period=500)

    def params(key):
        p = q.init(key)
        return TensorDict({"online": p, "target": p.clone()}, batch_size=[])

    def data(key):
        return transitions(key, batch, obs_dim, fr.randint(fr.fold_in(key, 9), (batch,), 0, n_act))

    return update, params, data


def sac_problem():
    obs_dim, act_dim, batch = 3, 1, 256
    actor, critic = (
        nn.TanhGaussianPolicy(obs_dim, act_dim),
        nn.Ensemble(nn.ContinuousQNetwork(obs_dim, act_dim), 2),
    )
    loss = losses.bind(
        losses.sac_loss,
        "actor",
        "critic",
        "target_critic",
        "log_alpha",
        actor_apply=actor.apply,
        critic_apply=critic.network.apply,
        gamma=0.99,
        target_entropy=-1.0,
    )
    tx = optim.partition(actor=optim.adam(3e-4), critic=optim.adam(1e-3), log_alpha=optim.adam(1e-3))
    update = make_update(loss, tx, targets={"target_critic": "critic"}, tau=0.005)

    def params(key):
        k1, k2 = fr.split(key)
        c = critic.init(k2)
        return TensorDict(
            {
                "actor": actor.init(k1),
                "critic": c,
                "target_critic": c.clone(),
                "log_alpha": torch.tensor(0.0),
            },
            batch_size=[],
        )

    def data(key):
        return transitions(
            key, batch, obs_dim, fr.uniform(fr.fold_in(key, 9), (batch, act_dim), minval=-1.0, maxval=1.0)
        )

    return update, params, data


PROBLEMS = {"ppo": ppo_problem, "dqn": dqn_problem, "sac": sac_problem}

# ----------------------------------------------------------------------------------------
# TorchRL references: LossModule + torch.optim.Adam (+ target updater), eager
# ----------------------------------------------------------------------------------------


def mlp(sizes, act):
    layers = []
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        layers.append(torch.nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(act())
    return torch.nn.Sequential(*layers)


def torchrl_layout(batch: TensorDict) -> TensorDict:
    out = batch.clone()
    for key in (
        ("next", "reward"),
        ("next", "terminated"),
        ("next", "done"),
        "advantage",
        "value_target",
        "state_value",
    ):
        if out.get(key, None) is not None:
            out.set(key, out.get(key).unsqueeze(-1))
    return out


class _SacActor(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.torso = mlp((3, 256, 256), torch.nn.ReLU)
        self.head = torch.nn.Linear(256, 2)

    def forward(self, obs):
        h = torch.relu(self.torso(obs))
        mean, log_std = self.head(h).chunk(2, -1)
        return mean, torch.exp(-5 + 3.5 * (torch.tanh(log_std) + 1))


class _Critic(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.net = mlp((4, 256, 256, 1), torch.nn.ReLU)

    def forward(self, obs, action):
        return self.net(torch.cat([obs, action], -1))


def torchrl_reference(algo: str):
    if algo == "ppo":
        module = TensorDictModule(
            mlp((4, 64, 64, 2), torch.nn.Tanh), in_keys=["observation"], out_keys=["logits"]
        )
        actor = ProbabilisticActor(
            module,
            in_keys=["logits"],
            distribution_class=torch.distributions.Categorical,
            return_log_prob=True,
        )
        critic = ValueOperator(mlp((4, 64, 64, 1), torch.nn.Tanh), in_keys=["observation"])
        loss = ClipPPOLoss(
            actor,
            critic,
            clip_epsilon=0.2,
            entropy_coeff=0.0,
            loss_critic_type="l2",
            normalize_advantage=True,
        )
        loss.set_keys(sample_log_prob="action_log_prob")
        updater = None
        opt = torch.optim.Adam(loss.parameters(), lr=2.5e-4)
        clip = 0.5
    elif algo == "dqn":
        actor = QValueActor(
            mlp((4, 120, 84, 2), torch.nn.ReLU), in_keys=["observation"], spec=CategoricalSpec(2)
        )
        loss = DQNLoss(actor, loss_function="l2", delay_value=True, action_space="categorical")
        loss.make_value_estimator(gamma=0.99)
        updater = HardUpdate(loss, value_network_update_interval=500)
        opt = torch.optim.Adam(loss.parameters(), lr=2.5e-4)
        clip = None
    else:
        module = TensorDictModule(_SacActor(), in_keys=["observation"], out_keys=["loc", "scale"])
        actor = ProbabilisticActor(module, in_keys=["loc", "scale"], distribution_class=TanhNormal)
        qvalue = ValueOperator(_Critic(), in_keys=["observation", "action"], out_keys=["state_action_value"])
        loss = SACLoss(
            actor, qvalue, num_qvalue_nets=2, loss_function="l2", target_entropy=-1.0, delay_qvalue=True
        )
        loss.make_value_estimator(gamma=0.99)
        updater = SoftUpdate(loss, tau=0.005)
        opt = torch.optim.Adam(loss.parameters(), lr=1e-3)
        clip = None

    def step(batch: TensorDict) -> None:
        out = loss(batch)
        total = sum(v for k, v in out.items() if k.startswith("loss"))
        opt.zero_grad()
        total.backward()
        if clip is not None:
            torch.nn.utils.clip_grad_norm_(loss.parameters(), clip)
        opt.step()
        if updater is not None:
            updater.step()

    return step


# ----------------------------------------------------------------------------------------


MATMULS = (
    torch.ops.aten.mm.default,
    torch.ops.aten.addmm.default,
    torch.ops.aten.bmm.default,
    torch.ops.aten.baddbmm.default,
)


class _RecordMatmuls(TorchDispatchMode):
    """Records every matrix product dispatched inside it: ``(op, argument shapes or values)``."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in MATMULS:
            shapes = [tuple(a.shape) if isinstance(a, torch.Tensor) else a for a in args]
            self.calls.append((func, shapes, kwargs))
        return func(*args, **kwargs)


def matmul_floor(step) -> tuple[callable, int, int]:
    """``(replay, products, flops)``: a function running the matrix products of one eager
    ``step()`` alone, on fresh contiguous tensors of the same shapes; their count and their
    floating-point operations."""
    with _RecordMatmuls() as recorder:
        step()
    calls, flops = [], 0
    for func, shapes, kwargs in recorder.calls:
        args = [torch.randn(x) if isinstance(x, tuple) else x for x in shapes]
        a, b = (args[1], args[2]) if func in MATMULS[1::2] else (args[0], args[1])  # addmm, baddbmm
        calls.append(_faster_library(func, args, kwargs, a, b))
        flops += 2 * a.numel() * b.shape[-1]

    def replay() -> None:
        for func, args, kwargs in calls:
            func(*args, **kwargs)

    return replay, len(calls), flops


def _faster_library(func, args: list, kwargs: dict, a: torch.Tensor, b: torch.Tensor) -> tuple:
    """``(func, args, kwargs)`` of one recorded product as torch calls it (MKL), or as oneDNN does
    (``frl_native::onednn_matmul``, which frl's compiled graphs may call, :mod:`frl._inductor`)
    where that is faster here: the floor is the faster library's, product by product."""
    if not _inductor.onednn_ready() or a.dtype != torch.float32 or kwargs:
        return func, args, kwargs
    onednn = (torch.ops.frl_native.onednn_matmul.default, [a, b], {})
    if func in MATMULS[1::2]:  # addmm, baddbmm: the bias added after the product
        onednn = (_onednn_plus, [args[0], a, b], {})
    seconds = [
        time_call(lambda f=f, x=x, k=k: f(*x, **k), repeats=20, min_seconds=0.02)
        for f, x, k in ((func, args, kwargs), onednn)
    ]
    return onednn if seconds[1] < seconds[0] else (func, args, kwargs)


def _onednn_plus(bias: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.ops.frl_native.onednn_matmul.default(a, b) + bias


def first_and_steady(fn, repeats: int, compiled: bool = False) -> tuple[float, float]:
    start = time.perf_counter()
    fn()
    first = time.perf_counter() - start
    if compiled:  # as frl.run after a unit's first call: one graph, guards not re-checked
        with torch.compiler.set_stance("default", skip_guard_eval_unsafe=True):
            return first, time_call(fn, repeats=repeats, min_seconds=0.3)
    return first, time_call(fn, repeats=repeats, min_seconds=0.3)


def over_floor(fn, floor, repeats: int) -> float:
    """The median over three alternating pairs of ``time(fn) / time(floor)`` (``fn`` compiled)."""
    ratios = []
    for _ in range(3):
        _, seconds = first_and_steady(fn, repeats, compiled=True)
        ratios.append(seconds / time_call(floor, repeats=repeats, min_seconds=0.3))
    return statistics.median(ratios)


def bench_algo(
    algo: str, member_counts: list[int], repeats: int
) -> list[tuple[str, float, float | None, int, float | None]]:
    """``(implementation, seconds per call, first-call seconds, members, time over the matmul
    floor)`` rows for one algorithm."""
    update, make_params, make_data = PROBLEMS[algo]()
    key = fr.key(0)
    state = update.init(make_params(key))
    batch = make_data(fr.fold_in(key, 1))
    reference_step, torchrl_batch = torchrl_reference(algo), torchrl_layout(batch)
    _, reference = first_and_steady(lambda: reference_step(torchrl_batch), repeats)
    floor, products, flops = matmul_floor(lambda: update.step(state, batch, key))
    floor_s = time_call(floor, repeats=repeats, min_seconds=0.3)
    results = [("TorchRL LossModule + torch.optim (eager)", reference, None, 1, reference / floor_s)]
    _, eager = first_and_steady(lambda: update.step(state, batch, key), repeats)
    results.append(("frl eager", eager, None, 1, eager / floor_s))

    def step_one(state, batch, key):  # a named wrapper per compiled function
        return update.step(state, batch, key)

    torch._dynamo.reset()  # each configuration is a fresh compile (one code object, many shapes)
    compiled = frl.compile(step_one)
    first, steady = first_and_steady(lambda: compiled(state, batch, key), repeats, compiled=True)
    ratio = over_floor(lambda: compiled(state, batch, key), floor, repeats)
    results.append(("frl compiled", steady, first, 1, ratio))

    def step_members(states, batches, keys):
        return torch.func.vmap(update.step)(states, batches, keys)

    for members in member_counts:
        keys = fr.split(fr.key(1), members)
        states = torch.func.vmap(lambda k: update.init(make_params(k)))(keys)
        batches = torch.func.vmap(make_data)(keys)
        torch._dynamo.reset()
        compiled_members = frl.compile(step_members)
        first, steady = first_and_steady(
            lambda: compiled_members(states, batches, keys), repeats, compiled=True
        )
        results.append((f"frl compiled, vmap x{members}", steady, first, members, None))
    results.append((f"matmul floor ({products} products, {flops / 1e6:.0f} MFLOP)", floor_s, None, 1, 1.0))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--algos", nargs="+", default=list(PROBLEMS), choices=list(PROBLEMS))
    parser.add_argument("--members", nargs="+", type=int, default=[1, 8, 32, 128])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    rows, records = [], []
    for algo in args.algos:
        results = bench_algo(algo, args.members, args.repeats)
        reference = results[0][1]
        one_member = next((s for name, s, *_ in results if name.endswith("vmap x1")), None)
        eager_one = results[1][1]
        for name, seconds, first, members, floor_ratio in results:
            per_member = members / seconds
            row = {
                "algo": algo,
                "impl": name,
                "ms_per_call": seconds * 1e3,
                "member_updates_per_s": per_member,
                "speedup_vs_torchrl": reference / seconds * members,
                "first_call_s": first,
                "over_matmul_floor": floor_ratio,
            }
            if "vmap" in name and one_member is not None:
                row["throughput_vs_1_member_compiled"] = per_member * one_member
                row["throughput_vs_1_member_eager"] = per_member * eager_one
            records.append(row)
            rows.append(
                [
                    algo,
                    name,
                    seconds * 1e3,
                    per_member,
                    row["speedup_vs_torchrl"],
                    row.get("throughput_vs_1_member_compiled", ""),
                    row.get("throughput_vs_1_member_eager", ""),
                    "" if first is None else f"{first:.1f}",
                    "" if floor_ratio is None else f"{floor_ratio:.2f}",
                ]
            )

    print_table(
        f"One update (loss + grad + Adam + target update), 1 thread, median of {args.repeats}",
        [
            "algo",
            "implementation",
            "ms/call",
            "member updates/s",
            "x TorchRL",
            "x 1 member (compiled)",
            "x 1 member (eager)",
            "first call s",
            "x floor",
        ],
        rows,
    )
    print(f"\nwrote {write_json('bench_losses', {'rows': records})}")


if __name__ == "__main__":
    main()
