"""Observation and action specs of pure environments."""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["Box", "Discrete", "MultiDiscrete", "Slate"]


@dataclass(frozen=True)
class Box:
    """A box ``[low, high]^shape`` of ``dtype`` (bounds may be ``inf``)."""

    low: tuple[float, ...]
    high: tuple[float, ...]
    shape: tuple[int, ...]
    dtype: torch.dtype = torch.float32

    def low_tensor(self, device: torch.device | str | None = None) -> torch.Tensor:
        return torch.tensor(self.low, dtype=self.dtype, device=device).reshape(self.shape)

    def high_tensor(self, device: torch.device | str | None = None) -> torch.Tensor:
        return torch.tensor(self.high, dtype=self.dtype, device=device).reshape(self.shape)

    def contains(self, x: torch.Tensor) -> bool:
        return tuple(x.shape[-len(self.shape) :]) == self.shape and bool(
            ((x >= self.low_tensor(x.device)) & (x <= self.high_tensor(x.device))).all()
        )

    @property
    def discrete(self) -> bool:
        return False


@dataclass(frozen=True)
class Discrete:
    """Integer actions ``0 .. n - 1`` (int64 scalars)."""

    n: int

    shape: tuple[int, ...] = ()
    dtype: torch.dtype = torch.int64

    def contains(self, x: torch.Tensor) -> bool:
        return not x.dtype.is_floating_point and bool(((x >= 0) & (x < self.n)).all())

    @property
    def discrete(self) -> bool:
        return True


@dataclass(frozen=True)
class MultiDiscrete:
    """``len(nvec)`` integer actions at once, the ``i``-th in ``0 .. nvec[i] - 1`` (int64
    ``[len(nvec)]``): gymnasium's ``MultiDiscrete``, and ``MultiBinary(n)`` as ``nvec = (2,) * n``.
    Policies over it are factorised (:class:`frl.distributions.MultiCategorical`)."""

    nvec: tuple[int, ...]
    binary: bool = False
    """Built from a ``MultiBinary`` space (actions 0/1)."""

    dtype: torch.dtype = torch.int64

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.nvec),)

    def contains(self, x: torch.Tensor) -> bool:
        nvec = torch.tensor(self.nvec, device=x.device)
        return (
            not x.dtype.is_floating_point
            and tuple(x.shape[-1:]) == self.shape
            and bool(((x >= 0) & (x < nvec)).all())
        )

    @property
    def discrete(self) -> bool:
        return False


@dataclass(frozen=True)
class Slate(MultiDiscrete):
    """An ordered slate of ``k`` distinct items out of ``n`` (``int64 [k]``, position 0 first):
    a recommender's action (:mod:`frl.envs.recsim`). Policies over it rank the items
    (:class:`frl.distributions.PlackettLuce`); ``nvec`` is ``(n,) * k``."""

    @classmethod
    def of(cls, n: int, k: int) -> Slate:
        if isinstance(n, bool) or isinstance(k, bool) or not (isinstance(n, int) and isinstance(k, int)):
            raise ValueError(f"Slate: `n` and `k` must be ints, got {n!r} and {k!r}")
        if not 1 <= k <= n:
            raise ValueError(f"Slate: the slate size `k` must lie in [1, n] = [1, {n}], got {k}")
        return cls((n,) * k)

    @property
    def n(self) -> int:
        """The number of items to choose from."""
        return self.nvec[0]

    @property
    def k(self) -> int:
        """The slate size."""
        return len(self.nvec)

    def contains(self, x: torch.Tensor) -> bool:
        if not super().contains(x):
            return False
        ordered = torch.sort(x, dim=-1).values
        return bool((ordered[..., 1:] != ordered[..., :-1]).all())
