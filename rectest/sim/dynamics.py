"""Impact functions and the synchronous user / creator updates (spec section 2)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from rectest.sim import update as native_update
from rectest.sim.params import PerReplica, as_list, check_range, column, per_replica
from rectest.sim.scoring import normalize, normalize_
from rectest.sim.shards import UserShards, creator_sums

Impact = str | Callable[[Tensor], Tensor]
IMPACT_NAMES = ("sign", "identity", "tanh")
CREATOR_RULES = ("audience", "exposure", "engagement")
"""What creators want: to move toward their audience (the paper), or up the gradient of their expected
exposure or engagement under the current policy (beyond the paper)."""


def impact_function(name_or_fn: Impact, tanh_slope: float = 1.0) -> Callable[[Tensor], Tensor]:
    """Resolve an impact function: ``sign``, ``identity``, ``tanh`` (``tanh(slope x)``) or a callable.

    A callable must map a tensor of scores to a tensor of the same shape whose sign agrees with its
    argument (not checked).

    Raises:
        ValueError: an unknown name.
    """
    if callable(name_or_fn):
        return name_or_fn
    if name_or_fn == "sign":
        return torch.sign
    if name_or_fn == "identity":
        return lambda x: x
    if name_or_fn == "tanh":
        return lambda x: torch.tanh(tanh_slope * x)
    raise ValueError(f"impact function {name_or_fn!r}: expected one of {IMPACT_NAMES} or a callable")


@dataclass
class Dynamics:
    """Update rules; ``eta_u``, ``eta_c`` and ``fixed_dims`` are scalars or per-replica sequences.

    The engine accepts rates in ``[0, 1]``: ``eta = 0`` freezes that side (used by the "static" test);
    a user-facing CLI may refuse 0 since the paper's rates are positive.

    Attributes:
        eta_u: user update rate.
        eta_c: creator update rate.
        f: user impact function (name or callable).
        g: creator impact function (name or callable).
        fixed_dims: *(reconstruction)* the first ``fixed_dims`` coordinates of every user are frozen;
            only the other coordinates take the update, and the free part is rescaled so the norm is 1
            (a user whose frozen part alone has norm >= 1 is left unchanged). Must be ``< d``.
        tanh_slope: slope of the ``tanh`` impact function.
        creator_rule: *(beyond the paper)* ``audience`` (the paper's rule: toward the users shown the
            creator), ``exposure`` or ``engagement``: a step of size ``eta_c`` up the gradient on the sphere
            (projected on the tangent plane, then back onto the sphere) of the creator's expected exposure
            ``(n / m) sum_j p_ij`` or engagement ``(n / m) sum_j p_ij s_ij`` under the current policy, with the
            eligible sets held fixed (their boundaries have measure zero). ``n / m`` makes uniform traffic an
            exposure of 1. Needs the oracle's scores and a softmax-family policy (no rho, no MMR).
        creator_cost: *(beyond the paper)* adjustment cost ``c >= 0`` of every rule: the step is the proximal
            step of the linearised objective with the quadratic cost ``(1 + c) / (2 eta_c) ||v - v_t||^2``,
            i.e. the plain step scaled by ``1 / (1 + c)``; scalar or per replica.
    """

    eta_u: PerReplica = 0.1
    eta_c: PerReplica = 0.1
    f: Impact = "sign"
    g: Impact = "sign"
    fixed_dims: PerReplica = 0
    tanh_slope: float = 1.0
    creator_rule: str | Sequence[str] = "audience"
    creator_cost: PerReplica = 0.0

    def __post_init__(self) -> None:
        for rule in self.rules():
            if rule not in CREATOR_RULES:
                raise ValueError(
                    f"dynamics.creator_rule={rule!r}: expected one of {', '.join(CREATOR_RULES)}"
                )
        check_range(as_list(self.creator_cost, "dynamics.creator_cost"), "dynamics.creator_cost", 0.0, 1e30)
        for name in ("eta_u", "eta_c"):
            values = as_list(getattr(self, name), f"dynamics.{name}")
            if values is None:
                raise ValueError(f"dynamics.{name}=None: expected a rate in [0, 1]")
            check_range(values, f"dynamics.{name}", 0.0, 1.0)
        for x in as_list(self.fixed_dims, "dynamics.fixed_dims") or [0.0]:
            if x != int(x) or x < 0:
                raise ValueError(f"dynamics.fixed_dims={x:g}: expected an integer >= 0")
        if not math.isfinite(self.tanh_slope) or self.tanh_slope <= 0:
            raise ValueError(f"dynamics.tanh_slope={self.tanh_slope}: expected a positive number")
        impact_function(self.f, self.tanh_slope)
        impact_function(self.g, self.tanh_slope)

    def rules(self) -> list[str]:
        """``creator_rule`` as a list (one element, or one per replica)."""
        return [self.creator_rule] if isinstance(self.creator_rule, str) else list(self.creator_rule)

    def check(self, d: int) -> None:
        """Refuse as many fixed dimensions as the vectors have (the check that needs ``d``).

        Raises:
            ValueError: ``fixed_dims >= d``.
        """
        fixed = as_list(self.fixed_dims, "dynamics.fixed_dims") or [0.0]
        if max(fixed) >= d:
            raise ValueError(f"dynamics.fixed_dims={int(max(fixed))}: expected fewer than d = {d} dimensions")

    def bind(self, replicas: int, d: int, device: torch.device, dtype: torch.dtype) -> BoundDynamics:
        """Resolve the parameters for ``replicas`` replicas in dimension ``d``.

        Raises:
            ValueError: a per-replica list of the wrong length, or ``fixed_dims >= d``.
        """
        self.check(d)
        return BoundDynamics(self, replicas, d, device, dtype)


class BoundDynamics:
    """Dynamics with per-replica parameters as tensors; applies one synchronous update."""

    def __init__(self, dyn: Dynamics, replicas: int, d: int, device: torch.device, dtype: torch.dtype):
        def values(name: str) -> list[float]:
            return per_replica(as_list(getattr(dyn, name), f"dynamics.{name}"), replicas, f"dynamics.{name}")

        self.eta_u = column(values("eta_u"), device, dtype)  # (R, 1, 1)
        self.eta_c = column(values("eta_c"), device, dtype)  # (R, 1, 1)
        fixed = [int(x) for x in values("fixed_dims")]
        self.free = None
        if max(fixed) > 0:
            dims = torch.arange(d, device=device).view(1, 1, d)
            self.free = (dims >= torch.tensor(fixed, device=device).view(-1, 1, 1)).to(dtype)  # (R, 1, d)
        self.f = impact_function(dyn.f, dyn.tanh_slope)
        self.g = impact_function(dyn.g, dyn.tanh_slope)
        rules = per_replica(dyn.rules(), replicas, "dynamics.creator_rule")
        self.rules = rules
        self.climbs = None  # (R, 1, 1) bool: the replicas whose creators climb a gradient (None: none)
        if any(r != "audience" for r in rules):
            self.climbs = torch.tensor([r != "audience" for r in rules], device=device).view(-1, 1, 1)
        self.engagement = torch.tensor([r == "engagement" for r in rules], device=device).view(-1, 1, 1)
        cost = column(values("creator_cost"), device, dtype)  # (R, 1, 1)
        self.eta_c = self.eta_c / (1 + cost)  # the proximal step of the adjustment cost
        # the compiled step (rectest/sim/update.c: float32 on the CPU) for the impacts it computes
        impacts = (dyn.f, dyn.g)
        self.native = (
            all(isinstance(x, str) and x in native_update.IMPACTS for x in impacts)
            and self.free is None
            and native_update.available(device, dtype)
        )
        self.impacts = impacts

    def key(self, r: int) -> tuple:
        """Replica ``r``'s parameters (equal keys: the same update of the same vectors)."""
        free = None if self.free is None else tuple(self.free[r].flatten().tolist())
        return float(self.eta_u[r]), float(self.eta_c[r]), free, self.rules[r]

    def update(
        self,
        users: Tensor,
        creators: Tensor,
        chosen: Tensor,
        shards: UserShards | None = None,
        gradient: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """One synchronous update from the time-t vectors.

        Args:
            users: ``(R, m, d)`` unit user vectors at time t (this rank's share when sharded).
            creators: ``(R, n, d)`` unit creator vectors at time t.
            chosen: ``(R, m)`` int64 index of the creator shown to each user.
            shards: adds the other ranks' users to each creator's audience (None: all users are here).
            gradient: ``(R, n, d)`` the creators' objective gradient (needed when some replica's rule is
                ``exposure`` or ``engagement``; see :func:`rectest.sim.incentives.creator_gradient`).

        Returns:
            New ``(R, m, d)`` users and ``(R, n, d)`` creators, on the sphere; under the audience rule a
            creator shown to nobody is returned unchanged (bit for bit).
        """
        (R, m, d), n = users.shape, creators.shape[1]
        if self.climbs is not None and gradient is None:
            raise ValueError("dynamics.creator_rule: the exposure and engagement rules need the gradient")
        if self.native:  # the same steps compiled (rectest/sim/update.c)
            chosen = native_update.check_choices(chosen, n)  # (the kernels read the creators it names)
            new_users, s = native_update.move_users(users, creators, chosen, self.eta_u, self.impacts[0])
            if shards is None:
                acc = native_update.creator_sums(users, s, chosen, n, self.impacts[1])  # (R, n, d + 1)
            else:
                acc = shards.pull(self._terms(s.unsqueeze(-1), users), chosen, n)
            new_creators = native_update.move_creators(creators, acc, self.eta_c)  # (R, n, d)
        else:
            rows = (chosen + torch.arange(R, device=chosen.device).view(R, 1) * n).reshape(-1)  # (R m,)
            shown = creators.reshape(R * n, d).index_select(0, rows).view(R, m, d)  # (R, m, d) v_{i_j}
            s = (users * shown).sum(-1, keepdim=True)  # (R, m, 1) s_{i_j j}
            new_users = self._move_users(users, self.eta_u * self.f(s) * shown)  # (R, m, d)
            terms = self._terms(s, users)  # (R, m, d + 1)
            acc = creator_sums(terms, chosen, n) if shards is None else shards.pull(terms, chosen, n)
            pull, count = acc[..., :d], acc[..., d:]  # (R, n, d) sum_{j in S_i} g(s_ij) u_j, (R, n, 1) |S_i|
            moved = normalize_((self.eta_c * pull).div_(count.clamp_min(1)).add_(creators))  # (R, n, d)
            new_creators = torch.where(count > 0, moved, creators)
        if self.climbs is not None:
            tangent = gradient - (gradient * creators).sum(-1, keepdim=True) * creators  # (R, n, d)
            climbed = torch.where(self.eta_c > 0, normalize(creators + self.eta_c * tangent), creators)
            new_creators = torch.where(self.climbs, climbed, new_creators)
        return new_users, new_creators

    def _terms(self, s: Tensor, users: Tensor) -> Tensor:
        """``(R, m, d + 1)`` each user's term of its creator's sums: ``g(s_ij) u_j`` and 1 (the audience's size)."""
        return torch.cat([self.g(s) * users, torch.ones_like(s)], -1)

    def _move_users(self, users: Tensor, step: Tensor) -> Tensor:
        """``P(u + step)``, keeping the fixed dimensions (if any) frozen."""
        if self.free is None:
            return normalize_(step.add_(users))  # (step is a temporary)
        frozen = users * (1 - self.free)  # (R, m, d)
        free = (users + step) * self.free  # (R, m, d)
        frozen_sq = (frozen * frozen).sum(-1, keepdim=True)  # (R, m, 1)
        free_norm = free.norm(dim=-1, keepdim=True)  # (R, m, 1)
        ok = (frozen_sq < 1) & (free_norm > 0)
        scale = (1 - frozen_sq).clamp_min(0).sqrt() / free_norm.clamp_min(1e-30)
        return torch.where(ok, frozen + free * scale, users)
