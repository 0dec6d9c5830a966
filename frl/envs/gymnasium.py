"""Any gymnasium environment, through TorchRL: ``frl.envs.make("gym:<id>")``.

A :class:`GymEnvironment` is not pure (gymnasium keeps the physics in Python objects, so
``pure`` is False and it has no ``reset``/``step``): it describes the spaces (what
``make_train`` needs to build networks and buffers) and builds TorchRL environments (``GymEnv``
plus transforms) for the collectors that ``frl.run`` drives. The learner stays the same pure,
compiled update.

Transforms, in order (TorchRL's names):

* MiniGrid ids (``MiniGrid-...``, the ``minigrid`` package): the agent's partial view only
  (``ImgObsWrapper``: the 7 x 7 x 3 grid of object, colour and state indices), flattened to a
  float vector of 147 (``FlattenObservation``, ``DtypeObservation``), so MLP agents and RND's
  normalisation take it as they take any vector;
* ``DoubleToFloat``: float64 observations (MuJoCo's) become float32;
* Atari ids (``ALE/...``): gymnasium's ``AtariPreprocessing`` (no-op starts, frame skip 4,
  max-pooling, 84 x 84 grayscale, uint8), then a channel dim;
* ``frame_stack > 1``: ``CatFrames`` (the last ``frame_stack`` observations on dim -3 for
  images, the last dim otherwise);
* ``RewardSum`` and ``StepCounter``: the raw return and length of each episode (statistics are
  read from them, so reward normalisation never leaks into reported returns);
* ``norm_obs``: ``VecNorm`` on the observation (running mean/variance; the evaluation
  environment uses the training statistics, frozen);
* ``norm_reward``: ``VecNorm`` on the reward (training only).

Truncation is gymnasium's: a ``TimeLimit`` end sets ``truncated``, and ``next.observation`` is
the true final observation (TorchRL resets into the root of the next step), so a truncated step
bootstraps correctly.
"""

from __future__ import annotations

import contextlib
import importlib
import math
from dataclasses import dataclass, field
from typing import Any

import gymnasium
import numpy as np
import torch

from frl.envs import GYM_PREFIX as PREFIX
from frl.envs import is_gym_id
from frl.envs.spaces import Box, Discrete, MultiDiscrete

__all__ = ["PREFIX", "GymEnvironment", "is_gym_id", "load_norm_state", "make_gym", "norm_state"]


def _register_optional() -> None:
    """Make the optional environment families known to gymnasium (ALE, MinAtar, MiniGrid), if
    installed."""
    try:
        import ale_py

        gymnasium.register_envs(ale_py)
    except ImportError:
        pass
    if "MiniGrid-DoorKey-8x8-v0" not in gymnasium.registry:
        with contextlib.suppress(ImportError):
            import minigrid  # noqa: F401  (importing it registers MiniGrid-*)
    if "MinAtar/Breakout-v1" not in gymnasium.registry:
        try:
            from minatar.gym import register_envs  # MinAtar/<Game>-v0 (all actions), -v1 (minimal)
        except ImportError:
            return
        register_envs()


@dataclass(frozen=True)
class GymEnvironment:
    """A gymnasium environment described for frl and built for TorchRL collectors.

    Attributes:
      gym_id: the gymnasium id (without ``gym:``).
      norm_obs: normalise observations with running statistics (``VecNorm``).
      norm_reward: normalise rewards with running statistics (training environment only).
      frame_stack: observations stacked (0: 4 for Atari, else 1).
      make_kwargs: extra keyword arguments for ``gymnasium.make``.
    """

    gym_id: str
    norm_obs: bool = False
    norm_reward: bool = False
    frame_stack: int = 0
    make_kwargs: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    # filled in by __post_init__ from a probe environment
    observation_space: Box = field(init=False, compare=False)
    action_space: Box | Discrete | MultiDiscrete = field(init=False, compare=False)
    max_episode_steps: int = field(init=False, compare=False)

    dtype = torch.float32
    pure = False
    """Not a pure function: stepped outside compiled code, by TorchRL collectors (``frl.run``)."""

    def __post_init__(self) -> None:
        stack = self.frame_stack
        if isinstance(stack, bool) or not isinstance(stack, int) or stack < 0:
            raise ValueError(f"gym: `frame_stack` must be a non-negative int, got {self.frame_stack!r}")
        gym_action = _check_spaces(self.gym_id, self.make_kwargs)
        env = self.make_env(seed=0, train=False)
        try:
            obs_spec = env.observation_spec["observation"]
            action_spec = env.full_action_spec["action"]
            obs_shape = tuple(obs_spec.shape)
            obs_dtype = obs_spec.dtype
            if isinstance(gym_action, gymnasium.spaces.Box):
                # gymnasium's own bounds: TorchRL's spec turns an infinite bound into float32's max
                low = tuple(float(x) for x in gym_action.low.reshape(-1))
                high = tuple(float(x) for x in gym_action.high.reshape(-1))
                action: Box | Discrete | MultiDiscrete = Box(low, high, tuple(action_spec.shape))
            elif isinstance(gym_action, gymnasium.spaces.MultiBinary):
                action = MultiDiscrete((2,) * int(gym_action.n), binary=True)
            elif isinstance(gym_action, gymnasium.spaces.MultiDiscrete):
                action = MultiDiscrete(tuple(int(n) for n in gym_action.nvec))
            else:
                action = Discrete(int(action_spec.space.n))
        finally:
            env.close()
        size = math.prod(obs_shape)
        obs_box = Box((-math.inf,) * size, (math.inf,) * size, obs_shape, obs_dtype)
        object.__setattr__(self, "observation_space", obs_box)
        object.__setattr__(self, "action_space", action)
        limit = self.make_kwargs.get("max_episode_steps") or gymnasium.spec(self.gym_id).max_episode_steps
        object.__setattr__(self, "max_episode_steps", int(limit or _own_limit(self.gym_id, self.make_kwargs)))

    # -- what make_train reads ------------------------------------------------------------

    @property
    def id(self) -> str:
        return PREFIX + self.gym_id

    @property
    def discrete(self) -> bool:
        return isinstance(self.action_space, Discrete)

    @property
    def pixels(self) -> bool:
        """Image observations (``[C, H, W]``, uint8): networks use the Nature CNN."""
        return len(self.observation_space.shape) == 3

    @property
    def torso(self) -> str:
        """The convolutional torso for its frames: MinAtar's small CNN for ``MinAtar/`` games (their
        bool frames arrive as float32 0/1, channels last), else the Nature CNN."""
        return "minatar" if _minatar(self.gym_id) else "nature"

    @property
    def obs_dtype(self) -> torch.dtype:
        return self.observation_space.dtype

    @property
    def atari(self) -> bool:
        return self.gym_id.startswith("ALE/")

    @property
    def stack(self) -> int:
        return self.frame_stack or (4 if self.atari else 1)

    # -- TorchRL environments ---------------------------------------------------------------

    def make_env(self, seed: int | None = None, *, train: bool = True, num_envs: int = 1) -> Any:
        """A TorchRL environment with this environment's transforms (``num_envs`` stepped in one
        process by a ``SerialEnv``; the transforms act on the batch).

        ``train=False`` leaves out reward normalisation and freezes observation statistics
        (load the training environment's with :func:`load_norm_state`).
        """
        from torchrl.envs import Compose, SerialEnv, TransformedEnv

        base: Any = SerialEnv(num_envs, self._base) if num_envs > 1 else self._base()
        env = TransformedEnv(base, Compose(*self._transforms(train)))
        if seed is not None:
            env.set_seed(seed)
        return env

    def _base(self) -> Any:
        from torchrl.envs import GymWrapper

        _register_optional()
        if self.atari:
            from gymnasium.wrappers import AtariPreprocessing

            kwargs = {"frameskip": 1, "repeat_action_probability": 0.25, **self.make_kwargs}
            raw = AtariPreprocessing(gymnasium.make(self.gym_id, **kwargs), frame_skip=4, screen_size=84)
        else:
            raw = _observed(self.gym_id, gymnasium.make(self.gym_id, **self.make_kwargs))
            if _minatar(self.gym_id):  # bool frames, as the 0/1 floats frl's MinAtar games give
                from gymnasium.wrappers import DtypeObservation

                raw = DtypeObservation(raw, np.float32)
        base = GymWrapper(raw, categorical_action_encoding=True)
        keys = list(base.observation_spec.keys())
        if keys != ["observation"]:
            raise ValueError(
                f"gym: {self.gym_id} has observation keys {keys}; frl needs one array observation"
            )
        return base

    def _transforms(self, train: bool) -> list[Any]:
        from torchrl.envs import CatFrames, DoubleToFloat, RewardSum, StepCounter, UnsqueezeTransform, VecNorm

        # float64 observations (MuJoCo's) become float32, the dtype of frl's networks
        transforms: list[Any] = [DoubleToFloat()]
        if self.atari:  # [84, 84] grayscale frames get a channel dim
            transforms.append(UnsqueezeTransform(-3, in_keys=["observation"]))
        if self.stack > 1:
            transforms.append(CatFrames(N=self.stack, dim=-3 if self.atari else -1, in_keys=["observation"]))
        transforms += [RewardSum(), StepCounter()]
        if self.norm_obs:
            norm = VecNorm(in_keys=["observation"], new_api=True)
            if not train:
                norm.freeze()
            transforms.append(norm)
        if self.norm_reward and train:
            transforms.append(VecNorm(in_keys=["reward"], new_api=True))
        return transforms


def _norms(env: Any) -> dict[str, Any]:
    """The ``VecNorm`` transforms of an environment from :meth:`GymEnvironment.make_env`, by key."""
    from torchrl.envs.transforms import VecNormV2

    transform = getattr(env, "transform", None)
    found = {}
    for t in [] if transform is None else list(transform):
        if isinstance(t, VecNormV2):
            found[str(t.in_keys[0])] = t
    return found


def norm_state(env: Any) -> dict[str, dict[str, Any]]:
    """Normalisation statistics (``{"observation": ..., "reward": ...}``) of an environment."""
    out = {}
    for key, t in _norms(env).items():
        # inside a Compose the entries carry the parent's prefix ("transforms.2."): drop it
        out[key] = {name.rsplit(".", 1)[-1]: value for name, value in t.state_dict().items()}
    return out


def load_norm_state(env: Any, state: dict[str, dict[str, Any]] | None, *, freeze: bool = False) -> None:
    """Load statistics from :func:`norm_state` into ``env``'s matching transforms; ``freeze``
    stops them updating (a transform with no saved statistics keeps adapting instead: frozen
    empty statistics would turn every observation into NaN)."""
    for key, t in _norms(env).items():
        if state and key in state:
            t.load_state_dict(state[key])
            if freeze:
                t.freeze()
        elif freeze:
            t.unfreeze()


def _check_spaces(gym_id: str, make_kwargs: dict[str, Any]) -> Any:
    """Refuse, naming the space, what frl's agents cannot serve honestly: actions other than
    ``Discrete``, ``Box``, ``MultiDiscrete`` and ``MultiBinary`` (factorised policies; a
    ``Dict``/``Tuple`` of actions has none), ``Discrete``/``MultiDiscrete`` actions that do not
    start at 0 or a ``MultiDiscrete`` of more than one dim, observations other than a ``Box``
    (``Dict``/``Tuple``), and ``Box`` observations that are neither vectors nor images, or
    integer vectors (gymnasium's wrappers flatten or cast them). Returns gymnasium's action
    space (a Box keeps its infinite bounds there)."""
    spaces = gymnasium.spaces
    _register_optional()
    raw = _observed(gym_id, gymnasium.make(gym_id, **make_kwargs))
    try:
        action, obs = raw.action_space, raw.observation_space
    finally:
        raw.close()
    if not isinstance(action, (spaces.Discrete, spaces.Box, spaces.MultiDiscrete, spaces.MultiBinary)):
        raise ValueError(
            f"gym: {gym_id} has action space {action}; frl's agents take Discrete, Box, MultiDiscrete "
            "or MultiBinary actions (a Dict or Tuple of actions has no policy here)"
        )
    if isinstance(action, spaces.Discrete) and int(action.start) != 0:
        raise ValueError(f"gym: {gym_id} has action space {action}: Discrete actions must start at 0")
    if isinstance(action, spaces.MultiDiscrete) and (
        action.nvec.ndim != 1 or bool((action.start != 0).any())
    ):
        raise ValueError(
            f"gym: {gym_id} has action space {action}: MultiDiscrete actions must be one dim of "
            "choices that start at 0"
        )
    if isinstance(action, spaces.MultiBinary) and len(action.shape) != 1:
        raise ValueError(f"gym: {gym_id} has action space {action}: MultiBinary actions must be one dim")
    if not isinstance(obs, spaces.Box):
        raise ValueError(
            f"gym: {gym_id} has observation space {type(obs).__name__}; frl takes one Box "
            "observation (wrap it with gymnasium.wrappers.FlattenObservation)"
        )
    image = len(obs.shape) == 3 and (obs.dtype == np.uint8 or (obs.dtype == np.bool_ and _minatar(gym_id)))
    if len(obs.shape) != 1 and not image:
        raise ValueError(
            f"gym: {gym_id} has observations of shape {list(obs.shape)} ({obs.dtype}); frl takes "
            "vectors, uint8 images [H, W, C] or MinAtar's bool frames (wrap it with "
            "gymnasium.wrappers.FlattenObservation)"
        )
    if len(obs.shape) == 1 and not np.issubdtype(obs.dtype, np.floating):
        raise ValueError(
            f"gym: {gym_id} has {obs.dtype} vector observations; frl's networks take floats (wrap "
            "it with gymnasium.wrappers.DtypeObservation(env, numpy.float32))"
        )
    return action


def _own_limit(gym_id: str, make_kwargs: dict[str, Any]) -> int:
    """The step limit an environment without a registered ``TimeLimit`` applies itself
    (MiniGrid's ``max_steps``), else 27,000 (ALE's own cap, 108,000 frames)."""
    raw = gymnasium.make(gym_id, **make_kwargs)
    try:
        return int(getattr(raw.unwrapped, "max_steps", None) or 27_000)
    finally:
        raw.close()


def _observed(gym_id: str, raw: Any) -> Any:
    """``raw`` with the observation frl reads: a MiniGrid environment's image view, flattened to
    float32 (its dict also holds the direction and the mission text)."""
    if not gym_id.startswith("MiniGrid-"):
        return raw
    from gymnasium.wrappers import DtypeObservation, FlattenObservation
    from minigrid.wrappers import ImgObsWrapper

    return DtypeObservation(FlattenObservation(ImgObsWrapper(raw)), np.float32)


def _minatar(gym_id: str) -> bool:
    """The ``minatar`` package's games (``MinAtar/<Game>-v0|v1``): bool ``[10, 10, C]`` frames."""
    return gym_id.startswith("MinAtar/")


def make_gym(env_id: str, **options: Any) -> GymEnvironment:
    """``make("gym:<id>", norm_obs=..., norm_reward=..., frame_stack=...)``; ``gym:<module>:<id>``
    imports ``module`` first (gymnasium's convention: a user's package registers its ids)."""
    if not is_gym_id(env_id):
        raise ValueError(f"gym: expected an id 'gym:<gymnasium id>', got {env_id!r}")
    gym_id = env_id[len(PREFIX) :]
    if ":" in gym_id:  # gymnasium's "module:EnvId": the module registers the id when imported
        module, _, gym_id = gym_id.partition(":")
        try:
            importlib.import_module(module)
        except ImportError as err:
            raise ValueError(f"gym: cannot import {module!r} for {env_id!r} ({err})") from None
    _register_optional()
    try:
        gymnasium.spec(gym_id)
    except gymnasium.error.Error as err:
        raise ValueError(f"gym: gymnasium does not know {gym_id!r} ({err})") from None
    return GymEnvironment(gym_id, **options)
