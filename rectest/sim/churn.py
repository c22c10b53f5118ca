"""Creators come and go (beyond the paper): a creator whose audience over the last ``window`` steps falls
below a share of the uniform audience leaves, and an entrant takes its slot.

The batch keeps its shapes: a slot is reused, so the number of creators is conserved and every measure is
over the live population. Entrants draw from a generator of their own per replica (seeded from the
replica's seed), so churn never changes the recommendation draws, and a replica's entrants depend only on
its own trajectory.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from rectest.sim.scoring import normalize
from rectest.sim.shards import UserShards

ENTRANTS = ("uniform", "copy")
_CHURN_STREAM = 0x5DEECE66D  # offsets the entrants' seeds from the recommendation draws' seeds


@dataclass
class Churn:
    """Creator exits and entries.

    Attributes:
        window: a creator's audience is averaged over its last ``window`` steps; a creator younger than
            ``window`` steps (an entrant, or any creator before step ``window``) never leaves.
        min_share: a creator leaves when its mean audience per step is below ``min_share * m / n`` (the
            uniform audience is ``m / n``), in ``[0, 1]``; 0 = nobody leaves.
        entrant: ``uniform`` (uniform on the sphere) or ``copy`` (a noisy copy of a staying creator drawn in
            proportion to its mean audience: imitation of success).
        noise: ``copy`` only: standard deviation of the Gaussian added to the copied vector before it is put
            back on the sphere.
    """

    window: int = 50
    min_share: float = 0.1
    entrant: str = "uniform"
    noise: float = 0.1

    def __post_init__(self) -> None:
        if self.window < 1:
            raise ValueError(f"sim.churn.window={self.window}: expected a whole number >= 1")
        if not 0 <= self.min_share <= 1:
            raise ValueError(f"sim.churn.min_share={self.min_share}: expected a value in [0, 1]")
        if self.entrant not in ENTRANTS:
            raise ValueError(f"sim.churn.entrant={self.entrant!r}: expected one of {', '.join(ENTRANTS)}")
        if not self.noise >= 0:
            raise ValueError(f"sim.churn.noise={self.noise}: expected a value >= 0")


class CreatorChurn:
    """The churn state of a batch: each creator's audience over the window, its age, the exits so far."""

    def __init__(self, churn: Churn, seeds: list[int], n: int, users: int, device: torch.device):
        R = len(seeds)
        self.churn = churn
        self.users = users  # m, all ranks together
        self.audience = torch.zeros(R, churn.window, n, device=device)  # (R, W, n) users per step, a ring
        self.age = torch.zeros(R, n, dtype=torch.long, device=device)  # (R, n) steps since the slot's entry
        self.exits = torch.zeros(R, dtype=torch.long)  # (R,) creators replaced so far
        self.generators = [torch.Generator(device=device).manual_seed(s ^ _CHURN_STREAM) for s in seeds]

    def step(self, t: int, chosen: Tensor, creators: Tensor, shards: UserShards | None = None) -> Tensor:
        """Record step ``t``'s audiences, then replace the creators that leave.

        Args:
            t: the step just taken.
            chosen: ``(R, m)`` the creator shown to each user at step ``t`` (this rank's users).
            creators: ``(R, n, d)`` the creators after the step's update.
            shards: adds every rank's audiences (None: all users are here).

        Returns:
            ``(R, n, d)`` the creators with the entrants in the leavers' slots (a new tensor when any left).
        """
        R, n, d = creators.shape
        c = self.churn
        # 1. this step's audience of every creator, into the window
        audience = torch.zeros(R, n, device=creators.device).scatter_add_(
            1, chosen, torch.ones_like(chosen, dtype=torch.float32)
        )  # (R, n)
        if shards is not None:
            shards.reduce(audience)
        self.audience[:, t % c.window] = audience
        self.age += 1
        # 2. who leaves: old enough, and a mean audience below the share of the uniform one
        mean = self.audience.sum(1) / c.window  # (R, n)
        leave = (self.age >= c.window) & (mean < c.min_share * self.users / n)  # (R, n)
        if not bool(leave.any()):
            return creators
        # 3. an entrant in each leaver's slot, from the replica's own generator
        creators = creators.clone()
        for r in leave.any(1).nonzero().flatten().tolist():
            slots = leave[r].nonzero().flatten()  # (e,)
            g = self.generators[r]
            noise = torch.randn(len(slots), d, generator=g, device=creators.device, dtype=torch.float64)
            if c.entrant == "uniform":
                fresh = noise  # (e, d) Gaussian: uniform on the sphere once normalised
            else:
                weights = (mean[r] * ~leave[r]).double()  # (n,) staying creators, by success
                if weights.sum() <= 0:
                    weights = (~leave[r]).double() if bool((~leave[r]).any()) else torch.ones_like(weights)
                parents = torch.multinomial(weights, len(slots), replacement=True, generator=g)  # (e,)
                fresh = creators[r, parents].double() + c.noise * noise
            creators[r, slots] = normalize(fresh).to(creators.dtype)
            self.age[r, slots] = 0
            self.audience[r, :, slots] = 0
            self.exits[r] += len(slots)
        return creators

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume bit-identically."""
        return {
            "audience": self.audience.cpu().clone(),
            "age": self.age.cpu().clone(),
            "exits": self.exits.clone(),
            "generators": [g.get_state() for g in self.generators],
        }

    def load_state_dict(self, sd: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict` of the same shape."""
        self.audience = sd["audience"].to(self.audience)
        self.age = sd["age"].to(self.age)
        self.exits = sd["exits"].clone()
        for g, s in zip(self.generators, sd["generators"], strict=True):
            g.set_state(s)
