"""Fast parsers for MovieLens ratings and movies files (pyarrow's multi-threaded CSV reader).

Every parser turns any failure into a :class:`DataError` naming the file and the problem, so a user
never sees a pyarrow traceback. Ratings come back as a pyarrow table with the columns of
:data:`RATING_SCHEMA`, holding the original ids.
"""

from __future__ import annotations

import io
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv

from rectest.data.releases import FORMAT_CSV, FORMAT_DCOLON, FORMAT_TAB, MOVIES_CSV, MOVIES_PIPE
from rectest.errors import DataError

USER, ITEM, RATING, TIMESTAMP = "user", "item", "rating", "timestamp"
RATING_SCHEMA = pa.schema(
    [(USER, pa.int64()), (ITEM, pa.int64()), (RATING, pa.float32()), (TIMESTAMP, pa.int64())]
)
CSV_HEADER = ("userId", "movieId", "rating", "timestamp")

Source = Path | bytes


def _as_input(source: Source) -> object:
    return pa.BufferReader(source) if isinstance(source, bytes) else str(source)


def _types(names: tuple[str, ...], fillers: tuple[str, ...] = ()) -> dict[str, pa.DataType]:
    """Column types: the four rating columns in order, filler columns typed null (they must be empty)."""
    types = dict(zip([n for n in names if n not in fillers], RATING_SCHEMA.types, strict=True))
    return {n: types.get(n, pa.null()) for n in names}


def _first_line(source: Source) -> bytes:
    """The first line of a file, without its line ending (CRLF or LF)."""
    if isinstance(source, bytes):
        head = source[:4096]
    else:
        with open(source, "rb") as handle:
            head = handle.read(4096)
    return head.split(b"\n", 1)[0].rstrip(b"\r").replace(b'"', b"")  # a re-saved file may quote names


def _read(
    source: Source, name: str, delimiter: str, names: list[str], types: dict, skip_rows: int = 0
) -> pa.Table:
    """Read a delimited ratings file with fixed column names and types."""
    read = pcsv.ReadOptions(column_names=names, skip_rows=skip_rows, block_size=1 << 24)
    parse = pcsv.ParseOptions(delimiter=delimiter)
    convert = pcsv.ConvertOptions(column_types=types, null_values=[""], strings_can_be_null=False)
    try:
        return pcsv.read_csv(
            _as_input(source), read_options=read, parse_options=parse, convert_options=convert
        )
    except (pa.ArrowException, UnicodeDecodeError, ValueError, OSError) as err:
        msg = str(err).splitlines()[0] if str(err) else type(err).__name__
        if "Empty CSV file" in msg:
            raise DataError(f"{name}: the file is empty; expected ratings rows") from None
        raise DataError(f"{name}: cannot parse ratings ({msg})") from None


def _finish(table: pa.Table, name: str) -> pa.Table:
    """Check a parsed ratings table (no nulls, finite ratings, at least one row) and cast it."""
    if table.num_rows == 0:
        raise DataError(f"{name}: no ratings rows found")
    for col in (USER, ITEM, RATING, TIMESTAMP):
        nulls = table.column(col).null_count
        if nulls:
            raise DataError(f"{name}: {nulls} row(s) have an empty {col!r} field")
    rating = table.column(RATING)
    finite = pc.all(pc.is_finite(rating)).as_py()
    if not finite:
        raise DataError(f"{name}: a rating is NaN or infinite; expected finite numbers")
    return table.select([USER, ITEM, RATING, TIMESTAMP]).cast(RATING_SCHEMA)


def read_ratings(source: Source, fmt: str, name: str) -> pa.Table:
    """Parse a MovieLens ratings file.

    Args:
        source: a path, or the file's bytes (for example a zip member).
        fmt: ``FORMAT_TAB`` (ml-100k), ``FORMAT_DCOLON`` (ml-1m/10m) or ``FORMAT_CSV`` (ml-20m on).
        name: file name used in error messages.

    Returns:
        A table with columns user, item (int64 original ids), rating (float32), timestamp (int64), N rows.

    Raises:
        DataError: empty file, wrong column count, wrong header, non-numeric or missing value.
    """
    if fmt == FORMAT_TAB:
        names = [USER, ITEM, RATING, TIMESTAMP]
        table = _read(source, name, "\t", names, _types(tuple(names)))
    elif fmt == FORMAT_DCOLON:
        # '::' is read as ':' with an empty column between fields; the empty columns must stay empty.
        names = [USER, "_1", ITEM, "_2", RATING, "_3", TIMESTAMP]
        table = _read(source, name, ":", names, _types(tuple(names), ("_1", "_2", "_3")))
    elif fmt == FORMAT_CSV:
        header = _first_line(source)
        if not header:
            raise DataError(f"{name}: the file is empty or starts with a blank line; expected the header row")
        if header != ",".join(CSV_HEADER).encode():
            got = header.decode("utf-8", errors="replace")[:80]
            raise DataError(f"{name}: header is {got!r}; expected {','.join(CSV_HEADER)!r}")
        names = [USER, ITEM, RATING, TIMESTAMP]
        table = _read(source, name, ",", names, _types(tuple(names)), skip_rows=1)
    else:
        raise ValueError(f"unknown ratings format {fmt!r}")
    return _finish(table, name)


def _decode(raw: bytes, encoding: str, name: str) -> str:
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as err:
        raise DataError(f"{name}: not valid {encoding} text at byte {err.start}") from None


def read_titles(raw: bytes, fmt: str, encoding: str, name: str) -> dict[int, str]:
    """Parse a MovieLens movies file into ``{movie id: title}``.

    Args:
        raw: the file's bytes.
        fmt: ``MOVIES_PIPE`` (u.item), ``MOVIES_DCOLON`` (movies.dat) or ``MOVIES_CSV`` (movies.csv).
        encoding: the file's text encoding (Latin-1 for u.item and movies.dat).
        name: file name used in error messages.

    Raises:
        DataError: a line without an integer id and a title.
    """
    if fmt == MOVIES_CSV:
        import pandas as pd  # titles may be quoted and hold commas: use a real CSV parser

        try:
            frame = pd.read_csv(
                io.BytesIO(raw), encoding=encoding, dtype={"movieId": "int64", "title": "str"}
            )
            return dict(zip(frame["movieId"].tolist(), frame["title"].fillna("").tolist(), strict=True))
        except (ValueError, KeyError, pd.errors.ParserError) as err:
            raise DataError(f"{name}: cannot parse movies ({str(err).splitlines()[0]})") from None
    sep = "|" if fmt == MOVIES_PIPE else "::"
    titles: dict[int, str] = {}
    for number, line in enumerate(_decode(raw, encoding, name).splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split(sep, 2)
        if len(fields) < 2 or not fields[0].strip().isdigit():
            raise DataError(f"{name}: line {number} is not 'id{sep}title{sep}...': {line[:60]!r}")
        titles[int(fields[0])] = fields[1]
    return titles
