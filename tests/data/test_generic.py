"""Generic CSV / parquet interactions loader."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rectest.data import load_interactions


def _frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "uid": ["bob", "ann", "bob", "cy", "ann"],
            "movie": [30, 10, 20, 10, 30],
            "stars": [4.5, 3.0, 1.0, 5.0, 2.5],
            "when": [100, 200, 300, 400, 500],
        }
    )


def _check(log, frame: pd.DataFrame) -> None:
    assert log.user_ids.tolist() == ["ann", "bob", "cy"]  # sorted ascending
    assert log.item_ids.tolist() == [10, 20, 30]
    got = sorted(zip(log.user_ids[log.user], log.item_ids[log.item], log.rating.tolist(), strict=True))
    want = sorted(zip(frame.uid, frame.movie, frame.stars, strict=True))
    assert got == want
    assert log.rating.dtype == np.float32 and log.user.dtype == np.int64


@pytest.mark.parametrize("sep", [",", "\t", ";", "::"])
def test_csv_with_custom_columns_and_separator(tmp_path: Path, sep: str) -> None:
    frame = _frame()
    path = tmp_path / "log.txt"
    lines = [sep.join(frame.columns)] + [sep.join(map(str, row)) for row in frame.itertuples(index=False)]
    path.write_text("\n".join(lines) + "\n")
    log = load_interactions(path, "uid", "movie", "stars", "when", sep=sep)
    _check(log, frame)
    assert sorted(log.timestamp.tolist()) == [100, 200, 300, 400, 500]


def test_parquet(tmp_path: Path) -> None:
    frame = _frame()
    path = tmp_path / "log.parquet"
    frame.to_parquet(path)
    log = load_interactions(path, "uid", "movie", "stars")
    _check(log, frame)
    assert log.timestamp is None


def test_date_timestamps_become_unix_seconds(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    path.write_text("user,item,rating,t\n1,2,3,1970-01-02T00:00:00Z\n2,2,4,2001-09-09 01:46:40\n")
    log = load_interactions(path, timestamp_col="t")
    assert log.timestamp.tolist() == [86400, 1_000_000_000]
