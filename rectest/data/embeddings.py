"""Bring-your-own embeddings: read user and creator vectors from an ``.npz`` file."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from rectest.errors import DataError

USERS_KEY = "users"
CREATORS_KEY = "creators"


def _check(array: np.ndarray, key: str, path: Path) -> np.ndarray:
    """Validate one (rows, d) array and return it unit-normalised as float32."""
    if array.ndim != 2:
        raise DataError(f"{path}: array {key!r} has shape {array.shape}; expected 2-D (rows, d)")
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise DataError(
            f"{path}: array {key!r} has shape {array.shape}; expected at least one row and column"
        )
    if array.dtype.kind not in "iuf":
        raise DataError(f"{path}: array {key!r} has dtype {array.dtype}; expected numbers")
    values = array.astype(np.float64)  # (rows, d)
    finite = np.isfinite(values).all(axis=1)
    if not finite.all():
        row = int(np.flatnonzero(~finite)[0])
        raise DataError(f"{path}: {key} row {row} holds NaN or infinite values")
    norm = np.linalg.norm(values, axis=1, keepdims=True)  # (rows, 1)
    if (norm == 0).any():
        row = int(np.flatnonzero(norm[:, 0] == 0)[0])
        raise DataError(f"{path}: {key} row {row} is all zeros; cannot normalise it")
    return (values / norm).astype(np.float32)


def load_embeddings(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read ``users`` (m, d) and ``creators`` (n, d) from an ``.npz`` file (no pickles).

    Returns:
        ``(users, creators)``: float32 copies with unit-norm rows, (m, d) and (n, d).

    Raises:
        DataError: missing file or array, not an npz, non-2-D, mismatched d, zero/NaN/infinite rows.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found; expected an .npz with arrays 'users' and 'creators'")
    try:
        with np.load(path, allow_pickle=False) as npz:
            if not isinstance(npz, np.lib.npyio.NpzFile):
                raise DataError(
                    f"{path}: is a single .npy array; expected an .npz with 'users' and 'creators'"
                )
            missing = [k for k in (USERS_KEY, CREATORS_KEY) if k not in npz.files]
            if missing:
                have = ", ".join(npz.files) or "none"
                raise DataError(f"{path}: missing array(s) {', '.join(missing)}; the file has: {have}")
            users, creators = npz[USERS_KEY], npz[CREATORS_KEY]
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as err:
        raise DataError(
            f"{path}: not a readable .npz of numeric arrays ({str(err).splitlines()[0]})"
        ) from None
    users, creators = _check(users, USERS_KEY, path), _check(creators, CREATORS_KEY, path)
    if users.shape[1] != creators.shape[1]:
        raise DataError(
            f"{path}: users have d={users.shape[1]} but creators have d={creators.shape[1]}; expected equal"
        )
    return users, creators
