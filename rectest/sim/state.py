"""The simulation state: users and creators on the unit sphere, with a replica dimension."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from rectest.sim.scoring import normalize


def random_sphere(
    replicas: int,
    count: int,
    d: int,
    generator: torch.Generator,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
) -> Tensor:
    """I.i.d. uniform vectors on the unit sphere ``S^{d-1}`` (normalised Gaussians).

    Args:
        replicas: R, the number of independent copies.
        count: vectors per replica.
        d: dimension.
        generator: the source of randomness (on ``device``).
        dtype: float32 or float64.
        device: where the tensor lives.

    Returns:
        ``(R, count, d)`` unit vectors.
    """
    x = torch.randn(replicas, count, d, generator=generator, dtype=dtype, device=device)
    return normalize(x)


@dataclass
class State:
    """Users ``(R, m, d)`` and creators ``(R, n, d)``; both are normalised on construction.

    A 2-D tensor is taken as a single replica (``R = 1``). Both tensors must share dtype, device,
    replica count and dimension, and be finite.
    """

    users: Tensor
    creators: Tensor

    def __post_init__(self) -> None:
        users, creators = self.users, self.creators
        if users.dim() == 2:
            users = users.unsqueeze(0)
        if creators.dim() == 2:
            creators = creators.unsqueeze(0)
        if users.dim() != 3 or creators.dim() != 3:
            raise ValueError(
                f"State: users {tuple(self.users.shape)} and creators {tuple(self.creators.shape)}: "
                "expected (R, m, d) and (R, n, d)"
            )
        if users.shape[0] != creators.shape[0] or users.shape[2] != creators.shape[2]:
            raise ValueError(
                f"State: users {tuple(users.shape)} and creators {tuple(creators.shape)} "
                "must share the replica count R and the dimension d"
            )
        if users.shape[1] < 1 or creators.shape[1] < 1 or users.shape[2] < 1:
            raise ValueError(
                f"State: need m, n, d >= 1, got users {tuple(users.shape)}, creators {tuple(creators.shape)}"
            )
        if not users.is_floating_point() or users.dtype != creators.dtype or users.device != creators.device:
            raise ValueError("State: users and creators must be floating tensors of one dtype on one device")
        if not (torch.isfinite(users).all() and torch.isfinite(creators).all()):
            raise ValueError("State: users and creators must be finite")
        if (users.norm(dim=-1) == 0).any() or (creators.norm(dim=-1) == 0).any():
            raise ValueError("State: a zero vector cannot be projected onto the sphere")
        self.users = normalize(users)
        self.creators = normalize(creators)

    @property
    def replicas(self) -> int:
        """R."""
        return self.users.shape[0]

    @property
    def m(self) -> int:
        """Number of users."""
        return self.users.shape[1]

    @property
    def n(self) -> int:
        """Number of creators."""
        return self.creators.shape[1]

    @property
    def d(self) -> int:
        """Dimension."""
        return self.users.shape[2]

    def clone(self) -> State:
        """A deep copy."""
        return State.of_unit(self.users.clone(), self.creators.clone())

    @classmethod
    def of_unit(cls, users: Tensor, creators: Tensor) -> State:
        """A state of ``(R, m, d)`` and ``(R, n, d)`` vectors already on the sphere (the engine's own): no
        checks and no second projection, which could move a vector by a rounding step."""
        state = cls.__new__(cls)
        state.users, state.creators = users, creators
        return state
