"""A learned recommender inside the simulation loop (spec section 4, beyond the paper).

The platform's view of the world is a pair of embedding tables per replica. The policy ranks creators by
the cosine of these embeddings (``s_hat``) while users and creators move by the true scores. Every step the
platform logs ``(user, creator, y)`` with ``y = s_ij`` plus optional Gaussian noise; every ``retrain_every``
steps the tables are fine-tuned (warm start, a few epochs of full-batch Adam on the squared error between
``s_hat`` and ``y``) on the interactions logged in the last ``window`` steps.

Pure torch: the fine-tuning here is a few hundred gradient steps on small tables, so it runs batched over
replicas without a Lightning Trainer.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import functional as F


class OnlineRecommender:
    """Per-replica embedding tables fine-tuned on logged feedback.

    Args:
        users: (m, d') initial user embeddings (a trained model's export).
        items: (n, d') initial creator embeddings.
        replicas: R, the number of simulation replicas.
        window: number of most recent steps whose interactions are kept for retraining.
        noise: standard deviation of the Gaussian noise added to logged feedback.
        epochs: full-batch Adam steps per retrain.
        lr: Adam learning rate.
        seed: seeds the feedback noise.
    """

    def __init__(
        self,
        users: Tensor,
        items: Tensor,
        replicas: int,
        window: int,
        noise: float,
        epochs: int,
        lr: float = 0.05,
        seed: int = 0,
    ) -> None:
        self.users = F.normalize(users, dim=-1).expand(replicas, -1, -1).clone()  # (R, m, d')
        self.items = F.normalize(items, dim=-1).expand(replicas, -1, -1).clone()  # (R, n, d')
        self.window = window
        self.noise = noise
        self.epochs = epochs
        self.lr = lr
        self.generator = torch.Generator(device=users.device).manual_seed(seed)
        self.log_creators: list[Tensor] = []  # each (R, m) long
        self.log_feedback: list[Tensor] = []  # each (R, m) float

    def vectors(self) -> tuple[Tensor, Tensor]:
        """The platform's current unit-norm embeddings: users (R, m, d'), items (R, n, d')."""
        return F.normalize(self.users, dim=-1), F.normalize(self.items, dim=-1)

    def observe(self, creators: Tensor, true_users: Tensor, true_creators: Tensor) -> None:
        """Log one step's recommendations and the users' feedback.

        Args:
            creators: (R, m) index of the creator each user was shown.
            true_users: (R, m, d) the users' true vectors at that step (before the update).
            true_creators: (R, n, d) the creators' true vectors at that step.
        """
        shown = torch.gather(true_creators, 1, creators.unsqueeze(-1).expand(-1, -1, true_creators.shape[-1]))
        y = (true_users * shown).sum(-1)  # (R, m) true scores of the shown creators
        if self.noise > 0:
            y = y + self.noise * torch.randn(
                y.shape, generator=self.generator, device=y.device, dtype=y.dtype
            )
        self.log_creators.append(creators.clone())
        self.log_feedback.append(y)
        if len(self.log_creators) > self.window:
            self.log_creators.pop(0)
            self.log_feedback.pop(0)

    def retrain(self, which: Tensor) -> None:
        """Fine-tune the replicas selected by ``which`` (R,) bool on the logged window (warm start).

        Only the selected replicas are computed; the others keep their tables untouched.
        """
        if not self.log_creators or not bool(which.any()):
            return
        idx = which.nonzero().squeeze(1)  # (S,) replicas that retrain now
        creators = torch.stack(self.log_creators, 1)[idx]  # (S, W, m)
        y = torch.stack(self.log_feedback, 1)[idx]  # (S, W, m)
        users = self.users[idx].clone().requires_grad_(True)  # (S, m, d')
        items = self.items[idx].clone().requires_grad_(True)  # (S, n, d')
        opt = torch.optim.Adam([users, items], lr=self.lr)
        S, W, m = creators.shape
        d = items.shape[-1]
        flat = creators.reshape(S, W * m)  # (S, W*m) creator of each logged pair
        who = torch.arange(m, device=flat.device).repeat(W)  # (W*m,) user of each logged pair
        for _ in range(self.epochs):
            opt.zero_grad()
            u, v = F.normalize(users, dim=-1), F.normalize(items, dim=-1)
            shown = torch.gather(v, 1, flat.unsqueeze(-1).expand(-1, -1, d))  # (S, W*m, d')
            s_hat = (u[:, who] * shown).sum(-1)  # (S, W*m)
            loss = ((s_hat - y.reshape(S, W * m)) ** 2).mean(-1).sum()  # replicas do not mix
            loss.backward()
            opt.step()
        self.users[idx], self.items[idx] = users.detach(), items.detach()

    def rmse(self, true_users: Tensor, true_creators: Tensor, pairs: Tensor) -> Tensor:
        """RMSE of ``s_hat`` against the true scores on fixed (user, creator) pairs.

        Args:
            true_users: (R, m, d); true_creators: (R, n, d); pairs: (P, 2) long of (user, creator).

        Returns:
            (R,) root-mean-square error per replica.
        """
        u_hat, v_hat = self.vectors()
        s_hat = (u_hat[:, pairs[:, 0]] * v_hat[:, pairs[:, 1]]).sum(-1)  # (R, P)
        s = (true_users[:, pairs[:, 0]] * true_creators[:, pairs[:, 1]]).sum(-1)  # (R, P)
        return ((s_hat - s) ** 2).mean(-1).sqrt()

    def state_dict(self) -> dict:
        """Everything needed to resume bit-identically (tensors and lists only)."""
        return {
            "users": self.users,
            "items": self.items,
            "generator": self.generator.get_state(),
            "log_creators": list(self.log_creators),
            "log_feedback": list(self.log_feedback),
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore from :meth:`state_dict`."""
        self.users, self.items = state["users"], state["items"]
        self.generator.set_state(state["generator"])
        self.log_creators = list(state["log_creators"])
        self.log_feedback = list(state["log_feedback"])
