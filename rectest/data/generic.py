"""Load an interaction log from any CSV or parquet file with configurable column names."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from rectest.data.indexing import contiguous
from rectest.data.interactions import Interactions, deduplicate
from rectest.errors import DataError

PARQUET_SUFFIXES = (".parquet", ".pq")


def _read_table(path: Path, sep: str) -> pd.DataFrame:
    try:
        if path.suffix.lower() in PARQUET_SUFFIXES:
            return pq.read_table(path).to_pandas()
        if len(sep) == 1:
            table = pcsv.read_csv(path, parse_options=pcsv.ParseOptions(delimiter=sep))
            binary = [f.name for f in table.schema if pa.types.is_binary(f.type)]
            if binary:  # pyarrow keeps text that is not UTF-8 as bytes
                raise DataError(f"{path}: column {binary[0]!r} is not valid UTF-8 text")
            return table.to_pandas()
        return pd.read_csv(path, sep=re.escape(sep), engine="python")  # multi-character separator
    except (pa.ArrowException, ValueError, UnicodeDecodeError, pd.errors.ParserError, OSError) as err:
        msg = str(err).splitlines()[0] if str(err) else type(err).__name__
        if "Empty CSV" in msg or "No columns" in msg:
            raise DataError(f"{path}: {_empty_or_binary(path)}; expected a header row and ratings") from None
        raise DataError(f"{path}: cannot parse ({msg})") from None


def _empty_or_binary(path: Path) -> str:
    """Why a CSV has no rows: truly empty, or binary (NUL bytes) that the parser reads as nothing."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            head = fh.read(4096)
    except OSError:
        return "the file is empty"
    if size == 0 or not head.strip():
        return "the file is empty"
    if b"\0" in head:
        return f"the file is binary ({size:,} bytes starting with NUL bytes), not CSV text"
    return "the file has no rows"


def _numeric(frame: pd.DataFrame, col: str, path: Path) -> np.ndarray:
    values = pd.to_numeric(frame[col], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    bad = ~np.isfinite(values)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"{path}: column {col!r} row {row + 1} is {frame[col].iloc[row]!r}; expected a finite number"
        )
    return values


def _timestamps(frame: pd.DataFrame, col: str, path: Path) -> np.ndarray:
    series = frame[col]
    if pd.api.types.is_numeric_dtype(series):
        return _numeric(frame, col, path).astype(np.int64)
    try:
        times = pd.to_datetime(series, utc=True, format="ISO8601")
    except (ValueError, TypeError) as err:
        reason = str(err).splitlines()[0]
        raise DataError(f"{path}: column {col!r} is neither Unix seconds nor ISO dates ({reason})") from None
    if times.isna().any():
        raise DataError(f"{path}: column {col!r} has empty timestamps")
    return (times - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)


def _ids(frame: pd.DataFrame, col: str, path: Path) -> tuple[np.ndarray, np.ndarray]:
    series = frame[col]
    if series.isna().any():
        row = int(np.flatnonzero(series.isna().to_numpy())[0])
        raise DataError(f"{path}: column {col!r} row {row + 1} is empty; expected an id")
    values = series.to_numpy()
    if values.dtype.kind not in "iu":
        values = series.astype(str).to_numpy()
    return contiguous(values)


def load_interactions(
    path: str | Path,
    user_col: str = "user",
    item_col: str = "item",
    rating_col: str = "rating",
    timestamp_col: str | None = None,
    sep: str = ",",
) -> Interactions:
    """Read a CSV (with a header row) or parquet file of ratings.

    Args:
        path: ``.csv``/``.tsv``/any text file, or ``.parquet``.
        user_col, item_col, rating_col: column names; ids may be integers or strings.
        timestamp_col: column of Unix seconds or dates, or None.
        sep: field separator for text files (may be several characters, e.g. ``::``).

    Returns:
        Interactions with ids mapped to contiguous indices (ids sorted ascending).

    Raises:
        DataError: missing file or column, empty file, non-numeric rating, empty id.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found; expected a CSV or parquet file of interactions")
    frame = _read_table(path, sep)
    wanted = [c for c in (user_col, item_col, rating_col, timestamp_col) if c is not None]
    missing = [c for c in wanted if c not in frame.columns]
    if missing:
        have = ", ".join(map(str, frame.columns))
        raise DataError(f"{path}: missing column(s) {', '.join(missing)}; the file has: {have} (sep={sep!r})")
    if len(frame) == 0:
        raise DataError(f"{path}: no rows; expected ratings")
    user, user_ids = _ids(frame, user_col, path)
    item, item_ids = _ids(frame, item_col, path)
    rating = _numeric(frame, rating_col, path).astype(np.float32)
    timestamp = (
        None if timestamp_col is None else np.asarray(_timestamps(frame, timestamp_col, path), dtype=np.int64)
    )
    return deduplicate(Interactions(user, item, rating, timestamp, user_ids, item_ids, None, str(path)))
