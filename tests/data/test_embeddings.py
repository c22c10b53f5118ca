"""Bring-your-own embeddings (the failure cases are in test_bad_inputs.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rectest.data import load_embeddings


def test_rows_are_normalised_float32_copies(tmp_path: Path) -> None:
    users = np.array([[3.0, 4.0], [0.0, -2.0], [1, 1]], dtype=np.float64)
    creators = np.array([[10, 0], [-1, 1]], dtype=np.int32)
    path = tmp_path / "emb.npz"
    np.savez(path, users=users, creators=creators, extra=np.zeros(3))
    u, c = load_embeddings(path)
    assert u.dtype == np.float32 and c.dtype == np.float32
    np.testing.assert_allclose(u, [[0.6, 0.8], [0, -1], [2**-0.5, 2**-0.5]], rtol=1e-6)
    np.testing.assert_allclose(c, [[1, 0], [-(2**-0.5), 2**-0.5]], rtol=1e-6)
    assert users[0, 0] == 3.0  # the input is not modified


def test_compressed_npz(tmp_path: Path) -> None:
    path = tmp_path / "emb.npz"
    np.savez_compressed(path, users=np.ones((4, 3)), creators=np.eye(3))
    u, c = load_embeddings(str(path))
    assert u.shape == (4, 3) and c.shape == (3, 3)
