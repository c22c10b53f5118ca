"""Hypothesis fuzzing: any bytes into the parsers give a valid table or DataError, never another exception."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rectest.data import load_interactions
from rectest.data.parsers import RATING_SCHEMA, read_ratings, read_titles
from rectest.data.releases import (
    FORMAT_CSV,
    FORMAT_DCOLON,
    FORMAT_TAB,
    MOVIES_CSV,
    MOVIES_DCOLON,
    MOVIES_PIPE,
)
from rectest.errors import DataError

FAST = settings(
    max_examples=150, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)

# Text built from the characters that matter to these formats, so examples reach deep into the parsers.
ALPHABET = st.sampled_from(list('0123456789:,\t\r\n.-e na|"x\xe9'))
NEAR_VALID = st.lists(
    st.tuples(
        st.integers(-5, 10**12),
        st.integers(0, 99),
        st.sampled_from(["4", "3.5", "nan", "", "inf", "x"]),
        st.integers(-1, 2**40),
    ),
    max_size=8,
)


def _check_table(table) -> None:
    assert table.schema.equals(RATING_SCHEMA)
    assert table.num_rows > 0
    assert all(table.column(c).null_count == 0 for c in table.column_names)
    assert np.isfinite(table.column("rating").to_numpy()).all()


def _parse(raw: bytes, fmt: str) -> None:
    try:
        table = read_ratings(raw, fmt, "fuzz.txt")
    except DataError as err:
        assert "fuzz.txt" in str(err)
        return
    _check_table(table)


@FAST
@given(raw=st.binary(max_size=200), fmt=st.sampled_from([FORMAT_TAB, FORMAT_DCOLON, FORMAT_CSV]))
def test_random_bytes(raw: bytes, fmt: str) -> None:
    _parse(raw, fmt)


@FAST
@given(text=st.text(ALPHABET, max_size=200), fmt=st.sampled_from([FORMAT_TAB, FORMAT_DCOLON, FORMAT_CSV]))
def test_format_alphabet_text(text: str, fmt: str) -> None:
    _parse(text.encode("latin-1"), fmt)


@FAST
@given(rows=NEAR_VALID, fmt=st.sampled_from([FORMAT_TAB, FORMAT_DCOLON, FORMAT_CSV]))
def test_near_valid_rows(rows: list, fmt: str) -> None:
    sep = {FORMAT_TAB: "\t", FORMAT_DCOLON: "::", FORMAT_CSV: ","}[fmt]
    head = "userId,movieId,rating,timestamp\n" if fmt == FORMAT_CSV else ""
    text = head + "".join(sep.join(map(str, r)) + "\n" for r in rows)
    _parse(text.encode(), fmt)
    if rows and all(r[2] in ("4", "3.5") and r[0] >= 0 for r in rows):  # all valid -> must parse
        table = read_ratings(text.encode(), fmt, "fuzz.txt")
        assert table.column("user").to_pylist() == [r[0] for r in rows]


@FAST
@given(raw=st.binary(max_size=200), fmt=st.sampled_from([MOVIES_PIPE, MOVIES_DCOLON, MOVIES_CSV]))
def test_movies_random_bytes(raw: bytes, fmt: str) -> None:
    try:
        titles = read_titles(raw, fmt, "latin-1" if fmt != MOVIES_CSV else "utf-8", "movies.txt")
    except DataError as err:
        assert "movies.txt" in str(err)
        return
    assert all(isinstance(k, int) and isinstance(v, str) for k, v in titles.items())


@settings(max_examples=60, derandomize=True, deadline=None)
@given(text=st.text(ALPHABET, max_size=150), sep=st.sampled_from([",", "\t", "::"]))
def test_generic_loader(text: str, sep: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "log.csv"
        path.write_bytes(("user,item,rating\n".replace(",", sep) + text).encode("latin-1"))
        try:
            log = load_interactions(path, sep=sep)
        except DataError as err:
            assert "log.csv" in str(err)
            return
        assert len(log) > 0 and np.isfinite(log.rating).all()
        assert log.user.max() < log.num_users and log.item.max() < log.num_items
