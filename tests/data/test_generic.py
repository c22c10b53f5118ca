"""Generic CSV / parquet interactions loader."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rectest.data import load_interactions
from rectest.errors import DataError


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


def test_a_binary_file_is_not_called_empty(tmp_path):
    path = tmp_path / "zeros.csv"
    path.write_bytes(b"\0" * 100_000)
    with pytest.raises(DataError, match="binary .*NUL bytes"):
        load_interactions(path)
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    with pytest.raises(DataError, match="the file is empty"):
        load_interactions(empty)


def test_duplicate_pairs_keep_the_latest_rating_and_never_leak_into_the_test_split(tmp_path, caplog):
    from rectest.data.splits import make_split

    rng = np.random.default_rng(0)
    users, items = rng.integers(0, 40, 400), rng.integers(0, 60, 400)
    frame = pd.DataFrame(
        {"user": users, "item": items, "rating": rng.integers(1, 6, 400), "ts": np.arange(400)}
    )
    doubled = pd.concat(
        [frame, frame.assign(rating=9, ts=frame["ts"] + 1000)]
    )  # every row again, rated later
    path = tmp_path / "twice.csv"
    doubled.sample(frac=1, random_state=0).to_csv(path, index=False)  # shuffled file order
    with caplog.at_level("WARNING"):
        log = load_interactions(path, timestamp_col="ts")
    pairs = set(zip(users.tolist(), items.tolist(), strict=True))
    assert len(log) == len(pairs)
    assert (log.rating == 9).all()  # the later rating of every pair
    assert f"dropped {800 - len(pairs)} duplicate" in caplog.text
    split = make_split(log, "random", 0.1, 0.1, None, 0)
    train = set(zip(split.train.user.tolist(), split.train.item.tolist(), strict=True))
    test = set(zip(split.test.user.tolist(), split.test.item.tolist(), strict=True))
    assert not train & test
