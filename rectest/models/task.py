"""One LightningModule that trains any recommender network (MF or two-tower).

The network is injected (``RecommenderTask(net, ...)``) and must provide::

    forward(user (B,), item (B,) or (B, k)) -> scores of the same shape as item
    score_matrix(user (B,), item (N,)) -> (B, N)
    score_all(user (B,)) -> (B, n)          # full ranking (cosine nets: rectest.sim.scoring.cosine_scores)
    user_vectors() -> (m, d), item_vectors() -> (n, d)   # unit-norm, for export
    penalty(user, item) -> scalar           # optional, per-example L2 of touched parameters
    mse_and_penalty(user, item, rating) -> (mse, penalty)   # optional fused explicit training loss
    num_items -> int                        # catalogue size (the exclude_positives masks are B x num_items)

Losses: "mse" (explicit ratings), "bpr" (pairwise, over sampled negatives), "softmax" (cross-entropy of
the positive against the sampled negatives and, with ``in_batch=True``, the other positives of the batch) and
"full_softmax" (cross-entropy of the positive against every item of the catalogue: exact, no sampling bias;
a batch costs B x n scores, 110 MB for 1,024 users x 26,744 ML-20M movies).
"""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from rectest.data.datamodule import EXPLICIT, FEEDBACKS, IMPLICIT, pairs_to_mask
from rectest.errors import ConfigError
from rectest.models.full_softmax import full_softmax_loss
from rectest.models.metrics import ranking_metrics

LOSS_MSE = "mse"
LOSS_BPR = "bpr"
LOSS_SOFTMAX = "softmax"
LOSS_FULL_SOFTMAX = "full_softmax"
LOSSES = {EXPLICIT: (LOSS_MSE,), IMPLICIT: (LOSS_BPR, LOSS_SOFTMAX, LOSS_FULL_SOFTMAX)}

OPTIMIZERS = {"adam": torch.optim.Adam, "sgd": torch.optim.SGD, "adagrad": torch.optim.Adagrad}
SPARSE_ADAM = "sparse_adam"  # SparseAdam for sparse embeddings (lazy: only a batch's rows), Adam for the rest
SPARSE_OK = ("sgd", "adagrad", SPARSE_ADAM)  # optimizers that accept sparse gradients

TAG_TRAIN_LOSS = "train/loss"
UNIFORMITY_ITEMS = 1024  # catalogue items drawn uniformly per batch for the uniformity loss
TAG_RMSE = "rmse"
TAG_MAE = "mae"


def recall_tag(k: int) -> str:
    return f"recall@{k}"


def ndcg_tag(k: int) -> str:
    return f"ndcg@{k}"


def uniformity_loss(x: Tensor, t: float) -> Tensor:
    """``log mean_{i < j} exp(-t ||x_i - x_j||^2)`` of unit vectors ``x`` ``(N, d)`` (Wang & Isola, 2020):
    lowest when the points are spread uniformly over the sphere."""
    return torch.pdist(x).pow(2).mul(-t).exp().mean().log()


def _sparse_parameters(net: nn.Module) -> list[nn.Parameter]:
    """Weights of the net's embeddings built with ``sparse=True`` (their gradients are sparse tensors)."""
    return [m.weight for m in net.modules() if isinstance(m, nn.Embedding) and m.sparse]


class RecommenderTask(pl.LightningModule):
    """Trains an injected recommender network and evaluates it.

    Args:
        net: the network (see the module docstring for the interface).
        feedback: "explicit" or "implicit".
        loss: "mse" (explicit), "bpr", "softmax" or "full_softmax" (implicit; the full softmax ignores
            sampled negatives, so train it with ``num_negatives=0``).
        lr: Adam learning rate.
        weight_decay: Adam (coupled L2) weight decay on all parameters.
        l2: weight of the net's per-example penalty (MF's classic regulariser); 0 = off.
        temperature: implicit losses divide scores by it (cosine scores need well below 1).
        in_batch: softmax loss also uses the batch's other positives as negatives.
        k: list length of the ranking metrics.
        lr_decay: the learning rate is multiplied by it after every epoch (1 = constant).
        optimizer: "adam", "sgd", "adagrad" (SGD's lr multiplies the batch-mean gradient) or "sparse_adam"
            (for nets built with sparse embeddings: :class:`torch.optim.SparseAdam` updates only the rows a
            batch touches, Adam the dense parameters; ``weight_decay`` applies to the dense ones only).
        fused: use the optimizer's single-kernel implementation (``fused=True``: one pass over all
            parameters per step instead of one per tensor; CPU needs torch >= 2.4; dense gradients only).
        uniformity: weight of the uniformity loss of Wang & Isola (ICML 2020) on the items, added to an
            implicit loss: ``log mean_{i != j} exp(-t ||v_i - v_j||^2)`` over the unit vectors of 1,024
            catalogue items drawn uniformly per batch (not the batch's positives, which follow popularity:
            the rarely rated items are most of the creators a simulation starts from). It spreads the items
            over the sphere, towards the paper's near-isotropic starting geometry; 0 = off. Needs a net with
            ``unit_vectors`` (the two-tower).
        user_uniformity: the same loss over the batch's distinct users, with its own weight (0 = off).
        uniformity_t: the ``t`` of the uniformity losses.

    Optimisation is manual (one backward and one step per batch, the learning rate decayed per epoch) and
    the training loss is summed on the fly and logged once per epoch: the per-step work outside the
    model stays small, so large batches train at the speed of the tensor operations.
    """

    def __init__(
        self,
        net: nn.Module,
        feedback: str = EXPLICIT,
        loss: str = LOSS_MSE,
        lr: float = 1e-2,
        weight_decay: float = 0.0,
        l2: float = 0.0,
        temperature: float = 1.0,
        in_batch: bool = False,
        k: int = 10,
        lr_decay: float = 1.0,
        optimizer: str = "adam",
        fused: bool = False,
        uniformity: float = 0.0,
        user_uniformity: float = 0.0,
        uniformity_t: float = 2.0,
    ) -> None:
        super().__init__()
        if feedback not in FEEDBACKS:
            raise ConfigError(f"model.feedback={feedback!r}: expected one of {FEEDBACKS}")
        if loss not in LOSSES[feedback]:
            raise ConfigError(
                f"model.task.loss={loss!r} with feedback={feedback!r}: expected one of {LOSSES[feedback]}"
            )
        if temperature <= 0 or lr <= 0 or k < 1 or not 0 < lr_decay <= 1:
            raise ConfigError(
                f"temperature={temperature}, lr={lr}, k={k}, lr_decay={lr_decay}: expected positive values, lr_decay <= 1"
            )
        if optimizer not in (*OPTIMIZERS, SPARSE_ADAM):
            raise ConfigError(
                f"model.task.optimizer={optimizer!r}: expected one of {(*OPTIMIZERS, SPARSE_ADAM)}"
            )
        if _sparse_parameters(net) and optimizer not in SPARSE_OK:
            raise ConfigError(
                f"model.task.optimizer={optimizer!r} cannot update sparse embeddings (model.net.sparse=true): "
                f"expected one of {SPARSE_OK}"
            )
        if in_batch and loss != LOSS_SOFTMAX:
            raise ConfigError(
                f"model.task.in_batch=true with loss={loss!r}: in-batch negatives need loss='softmax'"
            )
        if fused and (optimizer == SPARSE_ADAM or _sparse_parameters(net)):
            raise ConfigError(
                "model.task.fused=true with sparse embeddings (model.net.sparse=true or optimizer=sparse_adam): "
                "fused optimizers take dense gradients only (set fused=false)"
            )
        if uniformity < 0 or user_uniformity < 0 or uniformity_t <= 0:
            raise ConfigError(
                f"model.task.uniformity={uniformity}, user_uniformity={user_uniformity}, "
                f"uniformity_t={uniformity_t}: expected >= 0, >= 0 and > 0"
            )
        if (uniformity > 0 or user_uniformity > 0) and (
            feedback != IMPLICIT or not hasattr(net, "unit_vectors")
        ):
            raise ConfigError(
                f"model.task.uniformity={uniformity}, user_uniformity={user_uniformity}: the uniformity loss "
                "needs implicit feedback and a net with unit vectors (model=two_tower); got "
                f"feedback={feedback!r}, net {type(net).__name__}"
            )
        self.save_hyperparameters(ignore=["net"])
        # items the uniformity loss draws from (None: the whole catalogue); see set_uniformity_pool
        self.uniformity_pool: Tensor | None = None
        self.automatic_optimization = False
        self.net = net
        self.feedback = feedback
        self.loss_name = loss
        self.register_buffer("rating_range", torch.tensor([float("-inf"), float("inf")]))
        self._sums: dict[str, Tensor] = {}
        self._train_sums: dict[str, Tensor] = {}

    # ----------------------------------------------------------------- set-up
    @property
    def monitor(self) -> tuple[str, str]:
        """(metric tag, "min" | "max") that early stopping and checkpoints follow."""
        if self.feedback == EXPLICIT:
            return f"val/{TAG_RMSE}", "min"
        return f"val/{ndcg_tag(self.hparams.k)}", "max"

    def on_fit_start(self) -> None:
        """Explicit feedback: start the global bias at the training mean; clip predictions to the rating range."""
        dm = getattr(self.trainer, "datamodule", None)
        if self.feedback == EXPLICIT and dm is not None:
            ratings = torch.as_tensor(dm.split.train.rating)
            self.rating_range.copy_(torch.stack([ratings.min(), ratings.max()]).float())
            mean = getattr(self.net, "global_mean", None)
            if isinstance(mean, nn.Parameter):
                with torch.no_grad():
                    mean.fill_(float(ratings.float().mean()))

    def configure_optimizers(self) -> tuple[list[torch.optim.Optimizer], list]:
        """One optimiser (two with "sparse_adam": sparse embeddings, dense rest), each decayed per epoch."""
        lr, decay = self.hparams.lr, self.hparams.weight_decay
        sparse = _sparse_parameters(self.net)
        opts: list[torch.optim.Optimizer] = []
        if self.hparams.optimizer == SPARSE_ADAM:
            ids = {id(p) for p in sparse}
            dense = [p for p in self.parameters() if p.requires_grad and id(p) not in ids]
            opts += [torch.optim.SparseAdam(sparse, lr=lr)] if sparse else []
            opts += [torch.optim.Adam(dense, lr=lr, weight_decay=decay)] if dense else []
        else:
            kind = OPTIMIZERS[self.hparams.optimizer]
            extra = {"fused": True} if self.hparams.fused else {}
            opts.append(kind(self.parameters(), lr=lr, weight_decay=decay, **extra))
        schedules = [torch.optim.lr_scheduler.ExponentialLR(o, gamma=self.hparams.lr_decay) for o in opts]
        return opts, schedules

    # ----------------------------------------------------------------- training
    def predict_ratings(self, user: Tensor, item: Tensor) -> Tensor:
        """(B,) users, (B,) items -> (B,) predicted ratings clipped to the training rating range."""
        return self.net(user, item).clamp(self.rating_range[0], self.rating_range[1])

    def _implicit_loss(self, batch: dict[str, Tensor]) -> Tensor:
        """The implicit loss of a batch; with ``batch["seen"]`` (each row's user's training items as (row,
        item) pairs), a user's other training items are never its negatives (BPR drops those terms; the
        softmax losses mask them out of the denominator)."""
        user, pos, neg = batch["user"], batch["pos"], batch["neg"]
        t = self.hparams.temperature
        if self.loss_name == LOSS_FULL_SOFTMAX and hasattr(self.net, "score_factors"):
            # fused with its matmul, chunked: no (B, n) scores, mask or log-softmax in memory
            return full_softmax_loss(*self.net.score_factors(user), pos, t, batch.get("seen"))
        seen = None
        if "seen" in batch:  # (2, nnz) (row, item) pairs -> (B, n) bool
            seen = pairs_to_mask(batch["seen"], len(user), self.net.num_items)
        if self.loss_name == LOSS_BPR:
            pos_s = self.net(user, pos)  # (B,)
            neg_s = self.net(user, neg)  # (B, k)
            terms = -F.logsigmoid((pos_s.unsqueeze(-1) - neg_s) / t)  # (B, k)
            if seen is None:
                return terms.mean()
            keep = ~seen.gather(1, neg)  # (B, k) negatives that are not the user's items
            return (terms * keep).sum() / keep.sum().clamp_min(1)
        if self.loss_name == LOSS_FULL_SOFTMAX:
            logits = self.net.score_all(user) / t  # (B, n), label = the positive
            if seen is not None:
                others = seen.scatter(1, pos.unsqueeze(-1), False)  # (B, n) the user's other items
                logits = logits.masked_fill(others, float("-inf"))
            return F.cross_entropy(logits, pos)
        parts = []
        if self.hparams.in_batch:
            logits = self.net.score_matrix(user, pos)  # (B, B); the diagonal holds the positives
            hits = pos.unsqueeze(0) == pos.unsqueeze(1)  # (B, B) accidental hits: the same item
            if seen is not None:
                hits |= seen[:, pos]  # or another of the user's items
            hits.fill_diagonal_(False)
            parts.append(logits.masked_fill(hits, float("-inf")))
        else:
            parts.append(self.net(user, pos).unsqueeze(-1))  # (B, 1)
        if neg.shape[-1] > 0:
            neg_s = self.net(user, neg)  # (B, k)
            if seen is not None:
                neg_s = neg_s.masked_fill(seen.gather(1, neg), float("-inf"))
            parts.append(neg_s)
        logits = torch.cat(parts, dim=-1) / t  # (B, B + k) or (B, 1 + k)
        label = (
            torch.arange(len(user), device=user.device) if self.hparams.in_batch else torch.zeros_like(user)
        )
        return F.cross_entropy(logits, label)

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        user, l2 = batch["user"], self.hparams.l2
        if self.feedback == EXPLICIT and hasattr(self.net, "mse_and_penalty"):
            loss, penalty = self.net.mse_and_penalty(user, batch["item"], batch["rating"])  # scalars
            total = loss + l2 * penalty if l2 > 0 else loss
        else:
            if self.feedback == EXPLICIT:
                item = batch["item"]
                loss = F.mse_loss(self.net(user, item), batch["rating"])
            else:
                item = torch.cat([batch["pos"].unsqueeze(-1), batch["neg"]], dim=-1)  # (B, 1 + k)
                loss = self._implicit_loss(batch)
            total = loss
            if l2 > 0 and hasattr(self.net, "penalty"):
                total = total + l2 * self.net.penalty(user, item)
            if self.hparams.uniformity > 0 or self.hparams.user_uniformity > 0:
                total = total + self._uniformity(user)
        opts = self._optimizer_list()
        for opt in opts:
            opt.zero_grad(set_to_none=True)
        self.manual_backward(total)
        for opt in opts:
            opt.step()
        rows = loss.new_tensor(float(len(user)))
        self._train_sums = {
            "loss": self._train_sums.get("loss", 0.0) + loss.detach() * rows,
            "n": self._train_sums.get("n", 0.0) + rows,
        }
        return loss.detach()

    def set_uniformity_pool(self, items: Tensor | None) -> None:
        """Draw the uniformity loss's items from ``items`` (``(P,)`` indices) instead of the catalogue: the
        pipeline passes the items it will use as creators (``sim.n_creators`` most rated), so that the set
        the simulation starts from is the one spread over the sphere."""
        self.uniformity_pool = None if items is None else torch.as_tensor(items, dtype=torch.long)

    def _uniformity(self, user: Tensor) -> Tensor:
        """The weighted uniformity losses of ``UNIFORMITY_ITEMS`` catalogue items drawn uniformly and of
        the batch's distinct users (see the class docstring)."""
        pool = self.uniformity_pool
        if pool is None:
            items = torch.randint(self.net.num_items, (UNIFORMITY_ITEMS,), device=user.device)
        else:  # uniformly among the pool (e.g. the items a simulation will use as creators)
            pool = pool.to(user.device)
            items = pool[torch.randint(len(pool), (UNIFORMITY_ITEMS,), device=user.device)]
        u, v = self.net.unit_vectors(user.unique(), items)  # (B', d), (UNIFORMITY_ITEMS, d)
        total = self.hparams.uniformity * uniformity_loss(v, self.hparams.uniformity_t)
        if self.hparams.user_uniformity > 0:
            total = total + self.hparams.user_uniformity * uniformity_loss(u, self.hparams.uniformity_t)
        return total

    def _optimizer_list(self) -> list:
        opts = self.optimizers()
        return opts if isinstance(opts, list) else [opts]

    def on_train_epoch_end(self) -> None:
        """Log the epoch's mean training loss (summed over data-parallel processes); decay the learning rate."""
        s, self._train_sums = self._train_sums, {}
        if s:
            total = self.trainer.strategy.reduce(s["loss"], reduce_op="sum")
            rows = self.trainer.strategy.reduce(s["n"], reduce_op="sum")
            self.log(TAG_TRAIN_LOSS, total / rows, prog_bar=True)
        schedules = self.lr_schedulers()
        for schedule in schedules if isinstance(schedules, list) else [schedules]:
            if schedule is not None:
                schedule.step()

    # ----------------------------------------------------------------- evaluation
    def _accumulate(self, values: dict[str, Tensor]) -> None:
        for name, v in values.items():
            self._sums[name] = self._sums.get(name, torch.zeros((), device=v.device)) + v.detach()

    def _eval_step(self, batch: dict[str, Tensor]) -> None:
        if self.feedback == EXPLICIT:
            err = self.predict_ratings(batch["user"], batch["item"]) - batch["rating"]  # (B,)
            self._accumulate(
                {"sq": err.pow(2).sum(), "abs": err.abs().sum(), "n": err.new_tensor(float(len(err)))}
            )
            return
        scores = self.net.score_all(batch["user"])  # (B, n)
        recall, ndcg = ranking_metrics(scores, batch["target"], batch["exclude"], self.hparams.k)
        self._accumulate(
            {"recall": recall.sum(), "ndcg": ndcg.sum(), "n": recall.new_tensor(float(len(recall)))}
        )

    def _eval_end(self, stage: str) -> None:
        s, self._sums = self._sums, {}
        names = ("sq", "abs", "n") if self.feedback == EXPLICIT else ("recall", "ndcg", "n")
        zero = torch.zeros((), device=self.device)
        # sum over data-parallel processes (identity in a single process)
        s = {name: self.trainer.strategy.reduce(s.get(name, zero), reduce_op="sum") for name in names}
        if float(s["n"]) == 0:
            return
        n = s["n"]
        if self.feedback == EXPLICIT:
            metrics = {TAG_RMSE: (s["sq"] / n).sqrt(), TAG_MAE: s["abs"] / n}
        else:
            k = self.hparams.k
            metrics = {recall_tag(k): s["recall"] / n, ndcg_tag(k): s["ndcg"] / n}
        self.log_dict({f"{stage}/{name}": v for name, v in metrics.items()}, prog_bar=stage == "val")

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._eval_step(batch)

    def on_validation_epoch_end(self) -> None:
        self._eval_end("val")

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._eval_step(batch)

    def on_test_epoch_end(self) -> None:
        self._eval_end("test")
