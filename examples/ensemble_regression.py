"""Train 16 regression networks at once: one pure loss, vmapped over members, compiled.

Member i fits y = sin(w_i x) + noise for its own frequency w_i, from its own initial params and
its own data, all drawn from frl.random keys. The whole Adam step (forward, backward, update)
for all 16 members is one compiled call of `vmap(step)`.

    python examples/ensemble_regression.py [--members 16] [--steps 1500] [--eager]
"""

from __future__ import annotations

import argparse
import time

import torch

import frl
from frl import nn, optim, random


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--members", type=int, default=16)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--eager", action="store_true", help="skip torch.compile")
    args = parser.parse_args()
    torch.set_num_threads(1)

    # DATA: member i sees 256 points of sin(w_i x) with w_i from 1 to 4
    key = random.key(0)
    k_x, k_noise, k_init = random.split(key, 3)
    freqs = torch.linspace(1.0, 4.0, args.members)
    x = random.uniform(k_x, (args.members, 256, 1), minval=-3.0, maxval=3.0)
    y = torch.sin(freqs[:, None] * x[..., 0]) + 0.05 * random.normal(k_noise, (args.members, 256))

    # MODEL AND OPTIMIZER: one network definition, 16 sets of params
    net = nn.MLP((1, 64, 64, 1), activation="tanh")
    tx = optim.adam(args.lr)
    params = nn.ensemble_init(net.init, k_init, args.members)  # batch_size [16]
    opt_state = torch.func.vmap(tx.init)(params)

    def loss_fn(p, x, y):
        return ((net.apply(p, x).squeeze(-1) - y) ** 2).mean()

    def train_step(p, s, x, y):
        grads, loss = torch.func.grad_and_value(loss_fn)(p, x, y)
        updates, s = tx.update(grads, s, p)
        return optim.apply_updates(p, updates), s, loss

    def train_all(p, s, x, y):  # a named wrapper: compile the outermost function
        return torch.func.vmap(train_step)(p, s, x, y)

    step = train_all if args.eager else frl.compile(train_all)

    # TRAIN
    start = time.perf_counter()
    params, opt_state, first_loss = step(params, opt_state, x, y)
    compile_s = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(args.steps - 1):
        params, opt_state, loss = step(params, opt_state, x, y)
    run_s = time.perf_counter() - start

    print(f"{args.members} members x {args.steps} Adam steps, {'eager' if args.eager else 'compiled'}")
    print(
        f"first call {compile_s:.1f} s; then {(args.steps - 1) / run_s:.0f} steps/s for all members together"
    )
    print(f"{'member':>6} {'freq':>5} {'first loss':>11} {'final loss':>11}")
    for i in range(args.members):
        print(f"{i:>6} {float(freqs[i]):>5.2f} {float(first_loss[i]):>11.4f} {float(loss[i]):>11.4f}")


if __name__ == "__main__":
    main()
