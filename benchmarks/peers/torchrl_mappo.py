"""TorchRL's own multi-agent PPO on VMAS navigation, written the way its multi-agent tutorial
writes it: ``MultiAgentMLP`` actor (shared parameters) with ``NormalParamExtractor`` and a
``TanhNormal`` ``ProbabilisticActor``, a centralised ``MultiAgentMLP`` critic (MAPPO), a
``Collector``, ``GAE`` on the per-agent rewards with the done flags expanded to the agents,
``ClipPPOLoss`` and a replay buffer sampled without replacement for the minibatches.

The environment, the frame budget and every setting the two share come from
``examples/vmas_mappo.py`` (frl's learner in the same TorchRL loop): ``bench_marl.py --only vmas``
runs both side by side.
"""

from __future__ import annotations

import time

import torch


def train(
    seed: int = 0,
    iterations: int = 10,
    centralised: bool = True,
    frames_per_batch: int | None = None,
    epochs: int | None = None,
    num_envs: int | None = None,
    hidden: int = 256,
    log: bool = False,
) -> dict[str, float | list[float]]:
    """Train one seed; returns the team return per iteration and env-steps/s (as frl's example)."""
    import vmas_mappo as shared
    from tensordict.nn import NormalParamExtractor, TensorDictModule
    from torch import nn
    from torchrl.collectors import Collector
    from torchrl.data import LazyTensorStorage, ReplayBuffer
    from torchrl.data.replay_buffers.samplers import SamplerWithoutReplacement
    from torchrl.modules import MultiAgentMLP, ProbabilisticActor, TanhNormal
    from torchrl.objectives import ClipPPOLoss, ValueEstimators

    frames_per_batch = frames_per_batch or shared.FRAMES_PER_BATCH
    epochs = epochs or shared.EPOCHS
    torch.set_num_threads(1)
    torch.manual_seed(seed)
    env = shared.make_env("vmas:navigation", seed, num_envs or shared.NUM_ENVS)
    n, obs_dim = shared.N_AGENTS, env.observation_spec["agents", "observation"].shape[-1]
    action_spec = env.full_action_spec[env.action_key]

    def shared_mlp(outputs: int, centralised: bool) -> MultiAgentMLP:  # one network for all agents
        return MultiAgentMLP(
            n_agent_inputs=obs_dim,
            n_agent_outputs=outputs,
            n_agents=n,
            centralised=centralised,
            share_params=True,
            depth=2,
            num_cells=hidden,
            activation_class=nn.Tanh,
        )

    policy_net = nn.Sequential(shared_mlp(2 * action_spec.shape[-1], False), NormalParamExtractor())
    policy = ProbabilisticActor(
        TensorDictModule(
            policy_net, in_keys=[("agents", "observation")], out_keys=[("agents", "loc"), ("agents", "scale")]
        ),
        spec=env.action_spec,
        in_keys=[("agents", "loc"), ("agents", "scale")],
        out_keys=[env.action_key],
        distribution_class=TanhNormal,
        distribution_kwargs={"low": action_spec.space.low[0], "high": action_spec.space.high[0]},
        return_log_prob=True,
    )
    critic = TensorDictModule(
        shared_mlp(1, centralised), in_keys=[("agents", "observation")], out_keys=[("agents", "state_value")]
    )
    collector = Collector(
        env, policy, frames_per_batch=frames_per_batch, total_frames=frames_per_batch * iterations
    )
    buffer = ReplayBuffer(
        storage=LazyTensorStorage(frames_per_batch),
        sampler=SamplerWithoutReplacement(),
        batch_size=shared.MINIBATCH,
    )
    loss_module = ClipPPOLoss(
        actor_network=policy,
        critic_network=critic,
        clip_epsilon=shared.CLIP,
        entropy_coeff=shared.ENTROPY,
        normalize_advantage=False,
    )
    loss_module.set_keys(
        reward=env.reward_key,
        action=env.action_key,
        value=("agents", "state_value"),
        done=("agents", "done"),
        terminated=("agents", "terminated"),
    )
    loss_module.make_value_estimator(ValueEstimators.GAE, gamma=shared.GAMMA, lmbda=shared.LAMBDA)
    optimizer = torch.optim.Adam(loss_module.parameters(), shared.LEARNING_RATE)

    curve, update_s, updates, collect_s = [], 0.0, 0, 0.0
    start = mark = time.perf_counter()
    for iteration, batch in enumerate(collector):
        collect_s += time.perf_counter() - mark
        agent_shape = batch.get_item_shape(("next", env.reward_key))
        for flag in ("done", "terminated"):
            batch.set(("next", "agents", flag), batch.get(("next", flag)).unsqueeze(-1).expand(agent_shape))
        with torch.no_grad():
            loss_module.value_estimator(
                batch,
                params=loss_module.critic_network_params,
                target_params=loss_module.target_critic_network_params,
            )
        buffer.extend(batch.reshape(-1))
        for _ in range(epochs):
            for _ in range(frames_per_batch // shared.MINIBATCH):
                begin = time.perf_counter()
                losses = loss_module(buffer.sample())
                loss = losses["loss_objective"] + losses["loss_critic"] + losses["loss_entropy"]
                loss.backward()
                torch.nn.utils.clip_grad_norm_(loss_module.parameters(), shared.MAX_GRAD_NORM)
                optimizer.step()
                optimizer.zero_grad()
                update_s, updates = update_s + time.perf_counter() - begin, updates + 1
        collector.update_policy_weights_()
        mark = time.perf_counter()
        curve.append(float(shared.episode_returns(batch, "agents").mean()))
        if log:
            print(f"torchrl iteration {iteration:3d}  team return {curve[-1]:7.3f}", flush=True)
    wall = time.perf_counter() - start
    collector.shutdown()
    return {
        "curve": curve,
        "final_return": curve[-1],
        "env_steps_per_s": frames_per_batch * iterations / wall,
        "compile_s": 0.0,
        "wall_s": wall,
        "update_ms": 1e3 * update_s / updates,
        "collect_s": collect_s,
    }
