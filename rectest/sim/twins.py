"""Twin replicas: replicas whose trajectory is an earlier replica's, simulated once.

Real-data runs start every seed from the same trained vectors. A replica whose draw is the argmax (top-1 from
the k-lists) does not use its seed at all, so its seeds follow one trajectory: the topk experiment's 8 seeds
of k = 1 cost 8 times one. A *follower* is a replica with the same starting vectors, the same policy and the
same dynamics as an earlier replica, its *leader*, whose draw is the argmax. Each step:

1. the leader is drawn; the follower copies its draws and its RD / RR terms;
2. where the leader's top score is tied (two creators with the same float score), the draw is random: the
   follower draws those users itself, from the leader's weights (its own, as the states are equal) and its own
   uniforms, exactly as it would alone;
3. after the update, a follower whose draws equal its leader's takes its leader's vectors (equal already on
   CPU, where every operation is deterministic); one whose draws differ is a replica of its own from then on.

Only the work is shared: every replica keeps its generator, its draws and its history, and trajectories are
those of the replicas simulated apart. Not used with churn, sharded users or the creators' gradient rules; a
step scored by a recommender's embeddings (which may differ between replicas) ends the twins.
"""

from __future__ import annotations

import torch
from torch import Tensor

from rectest.sim.dynamics import BoundDynamics
from rectest.sim.policies import BoundPolicy
from rectest.sim.sampling import sample_inverse_cdf


class Twins:
    """The followers of a batch and their leaders.

    Args:
        followers: follower replica -> its leader (an earlier replica that is no follower).
    """

    def __init__(self, followers: dict[int, int] | None = None):
        self.followers = dict(followers or {})

    @classmethod
    def find(cls, users: Tensor, creators: Tensor, policy: BoundPolicy, dynamics: BoundDynamics) -> Twins:
        """The followers among replicas drawn by the argmax (top-1 from the k-lists).

        Args:
            users: ``(R, m, d)`` starting users.
            creators: ``(R, n, d)`` starting creators.
            policy: the batch's policy.
            dynamics: the batch's dynamics.
        """
        leaders: dict[tuple, list[int]] = {}  # parameters -> leaders so far
        followers = {}
        for r, beta in enumerate(policy.top1_betas()):
            if beta is None:
                continue
            group = leaders.setdefault((beta, dynamics.key(r)), [])
            leader = next(
                (
                    x
                    for x in group
                    if torch.equal(users[x], users[r]) and torch.equal(creators[x], creators[r])
                ),
                None,
            )
            if leader is None:
                group.append(r)
            else:
                followers[r] = leader
        return cls(followers)

    def __bool__(self) -> bool:
        return bool(self.followers)

    def computed(self, replicas: list[int]) -> list[int]:
        """The replicas of ``replicas`` that are simulated (followers left out)."""
        return [r for r in replicas if r not in self.followers]

    def copy_draws(
        self,
        chosen: Tensor,
        sums: Tensor,
        finite: Tensor,
        uniforms: Tensor,
        ties: list[tuple[Tensor, Tensor, Tensor]],
    ) -> None:
        """Give each follower its leader's draws, RD / RR terms and weight check; tied users draw themselves.

        Args:
            chosen: ``(R, m)`` choices, the leaders' filled in.
            sums: ``(2, R)`` RD's and RR's terms.
            finite: ``(R,)`` weight checks.
            uniforms: ``(R, m)`` the step's uniforms.
            ties: ``(leaders (t,), users (t,), weights (t, n))`` the leaders' users whose top score is tied.
        """
        for f, leader in self.followers.items():
            chosen[f] = chosen[leader]
            sums[:, f] = sums[:, leader]
            finite[f] = finite[leader]
            for leaders, users, weights in ties:
                mine = leaders == leader  # (t,)
                if bool(mine.any()):
                    j = users[mine]  # (t',)
                    picked, _ = sample_inverse_cdf(weights[mine].unsqueeze(0), uniforms[f, j].unsqueeze(0))
                    chosen[f, j] = picked[0]

    def settle(self, chosen: Tensor, users: Tensor, creators: Tensor) -> bool:
        """After the update: followers with their leader's draws take its vectors; the others leave.

        Args:
            chosen: ``(R, m)`` this step's choices.
            users: ``(R, m, d)`` the updated users (followers' rows overwritten).
            creators: ``(R, n, d)`` the updated creators (followers' rows overwritten).

        Returns:
            True if some follower left (the batch's blocks must be remade).
        """
        left = [f for f, leader in self.followers.items() if not torch.equal(chosen[f], chosen[leader])]
        for f in left:
            del self.followers[f]
        for f, leader in self.followers.items():
            users[f] = users[leader]
            creators[f] = creators[leader]
        return bool(left)

    def positions(self, replicas: int, device: torch.device) -> Tensor:
        """``(R,)`` each replica's position among the :meth:`computed` ones (a follower: its leader's), to
        spread values of the computed replicas over all ``R``."""
        position = {r: i for i, r in enumerate(self.computed(list(range(replicas))))}
        return torch.tensor([position[self.followers.get(r, r)] for r in range(replicas)], device=device)

    def state(self) -> list[list[int]]:
        """``[[follower, leader], ...]`` for checkpoints."""
        return [[f, leader] for f, leader in sorted(self.followers.items())]
