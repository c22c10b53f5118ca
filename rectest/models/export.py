"""Write and read unit-norm user and item vectors with their original ids.

Layout in a run folder::

    embeddings/users.npz   ids (m,), vectors (m, d) float32, row u is user index u (id-map order)
    embeddings/items.npz   ids (n,), vectors (n, d) float32, row i is item index i
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from rectest.data.interactions import Interactions
from rectest.errors import DataError
from rectest.files import atomic_write

EMBEDDINGS_FOLDER = "embeddings"
USERS_FILE = "users.npz"
ITEMS_FILE = "items.npz"
KEY_IDS = "ids"
KEY_VECTORS = "vectors"
NORM_TOLERANCE = 1e-4


@dataclass(frozen=True)
class Embeddings:
    """Exported vectors. ``user_vectors[u]`` belongs to original id ``user_ids[u]``; same for items."""

    user_ids: np.ndarray  # (m,)
    user_vectors: torch.Tensor  # (m, d) unit rows
    item_ids: np.ndarray  # (n,)
    item_vectors: torch.Tensor  # (n, d) unit rows


def _write_npz(path: Path, ids: np.ndarray, vectors: np.ndarray) -> None:
    """Write atomically (:func:`rectest.files.atomic_write`)."""
    atomic_write(path, lambda f: np.savez(f, **{KEY_IDS: ids, KEY_VECTORS: vectors}))


def export_embeddings(net: nn.Module, interactions: Interactions, folder: str | Path) -> dict[str, Path]:
    """Write the net's unit-norm user and item vectors with the log's original ids.

    Args:
        net: a trained network with ``user_vectors()`` (m, d) and ``item_vectors()`` (n, d).
        interactions: any log over the net's id maps (its ``user_ids`` / ``item_ids`` are written).
        folder: the run folder; files go to ``folder/embeddings/``.

    Returns:
        {"users": path, "items": path}.
    """
    was_training = net.training
    net.eval()
    try:
        users = net.user_vectors().detach().float().cpu().numpy()  # (m, d)
        items = net.item_vectors().detach().float().cpu().numpy()  # (n, d)
    finally:
        net.train(was_training)
    if users.shape[0] != interactions.num_users or items.shape[0] != interactions.num_items:
        raise DataError(
            f"{interactions.name}: {interactions.num_users} users x {interactions.num_items} items in the id maps, "
            f"but the model has {users.shape[0]} x {items.shape[0]} vectors"
        )
    out = Path(folder) / EMBEDDINGS_FOLDER
    out.mkdir(parents=True, exist_ok=True)
    paths = {"users": out / USERS_FILE, "items": out / ITEMS_FILE}
    _write_npz(paths["users"], np.asarray(interactions.user_ids), users)
    _write_npz(paths["items"], np.asarray(interactions.item_ids), items)
    return paths


def _read_npz(path: Path) -> tuple[np.ndarray, torch.Tensor]:
    if not path.is_file():
        raise DataError(f"{path}: no exported embeddings (expected a file written by export_embeddings)")
    with np.load(path, allow_pickle=False) as z:
        if KEY_IDS not in z or KEY_VECTORS not in z:
            raise DataError(
                f"{path}: expected arrays {KEY_IDS!r} and {KEY_VECTORS!r}, found {sorted(z.files)}"
            )
        ids, vectors = z[KEY_IDS], torch.from_numpy(z[KEY_VECTORS])
    if vectors.ndim != 2 or len(ids) != len(vectors):
        raise DataError(f"{path}: {len(ids)} ids but vectors of shape {tuple(vectors.shape)}")
    norms = vectors.norm(dim=-1)
    if len(norms) and (norms - 1).abs().max() > NORM_TOLERANCE:
        raise DataError(
            f"{path}: vectors are not unit-norm (norms from {norms.min():.4f} to {norms.max():.4f})"
        )
    return ids, vectors


def load_exported(folder: str | Path) -> Embeddings:
    """Read what :func:`export_embeddings` wrote into ``folder`` (the run folder)."""
    out = Path(folder) / EMBEDDINGS_FOLDER
    user_ids, user_vectors = _read_npz(out / USERS_FILE)
    item_ids, item_vectors = _read_npz(out / ITEMS_FILE)
    if user_vectors.shape[1] != item_vectors.shape[1]:
        raise DataError(f"{out}: users have dimension {user_vectors.shape[1]}, items {item_vectors.shape[1]}")
    return Embeddings(user_ids, user_vectors, item_ids, item_vectors)
