"""``metrics.csv``: rows appended and made durable as they are produced, safe to resume.

Every :meth:`MetricsLog.append` writes whole lines, then flushes and ``os.fsync``s, so another process
reading the file sees them and a crash loses at most the rows being written. A run restarted from its
checkpoint at ``last_step`` calls :meth:`MetricsLog.open_for_resume`, which atomically rewrites the file
without the rows of steps after ``last_step`` (written after that checkpoint) and without a torn last line,
so the resumed run neither duplicates nor loses rows.

Cell text: floats use Python's shortest round-trip ``repr`` (``inf`` for infinity), ``None``/NaN are
empty cells, ints are plain. :func:`read_metrics` reads the file back (``inf`` -> inf, empty -> NaN).
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import pandas as pd

from rectest.errors import DataError
from rectest.files import atomic_write_text
from rectest.report.layout import METRICS_FILE
from rectest.report.values import STEP, normalize_value


def _cell(value: Any) -> str:
    value = normalize_value(value)
    if value is None:
        return ""
    if isinstance(value, float):
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    return str(value)


def _line(cells: Iterable[Any]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow([_cell(c) for c in cells])
    return buf.getvalue()


class MetricsLog:
    """An append-only CSV of metric rows with a fixed header.

    Args:
        path: the CSV file (its folder must exist). A fresh log replaces any file there with just the header.
        columns: the header; every appended row is written in this column order.

    Example:
        >>> with MetricsLog(run_dir / "metrics.csv", list(frame.columns)) as log:  # doctest: +SKIP
        ...     log.append_frame(frame_of_this_step)
    """

    def __init__(self, path: Path, columns: Sequence[str], *, _resume: bool = False) -> None:
        self.path = Path(path)
        self.columns = list(columns)
        if STEP not in self.columns:
            raise ValueError(f"metrics columns need {STEP!r}, got {self.columns}")
        if not _resume:
            atomic_write_text(self.path, _line(self.columns))
        self._file = open(self.path, "a", encoding="utf-8", newline="")  # closed by close()

    @classmethod
    def open_for_resume(cls, path: Path, last_step: int, columns: Sequence[str] | None = None) -> MetricsLog:
        """Reopen a log after a restart from the checkpoint taken at ``last_step``.

        Rows with ``step > last_step`` and a torn (unterminated) last line are dropped by an atomic
        rewrite; every other line is kept byte for byte.

        Args:
            path: the existing CSV.
            last_step: the step of the checkpoint the run resumes from.
            columns: when given, the header the caller expects.

        Raises:
            DataError: the file is missing, its header differs from ``columns``, or a row is malformed.
        """
        path = Path(path)
        if not path.is_file():
            raise DataError(
                f"{path}: cannot resume, the metrics file is missing (expected the run's {METRICS_FILE})"
            )
        text = path.read_text(encoding="utf-8")
        lines = text.splitlines(keepends=True)
        if lines and not lines[-1].endswith("\n"):
            lines = lines[:-1]  # a row torn by the crash; it was written after the checkpoint
        if not lines:
            raise DataError(f"{path}: cannot resume, the metrics file has no header line")
        header = next(csv.reader([lines[0]]))
        if columns is not None and list(columns) != header:
            raise DataError(f"{path}: header {header} differs from the expected columns {list(columns)}")
        if STEP not in header:
            raise DataError(f"{path}: header {header} has no {STEP!r} column")
        step_col = header.index(STEP)
        kept = [lines[0]]
        for lineno, line in enumerate(lines[1:], start=2):
            cells = next(csv.reader([line]))
            try:
                if len(cells) != len(header):
                    raise ValueError(f"{len(cells)} cells for {len(header)} columns")
                step = float(cells[step_col])
            except ValueError as err:
                raise DataError(f"{path}, line {lineno}: malformed metrics row ({err})") from err
            if step <= last_step:
                kept.append(line)
        if "".join(kept) != text:
            atomic_write_text(path, "".join(kept))
        return cls(path, header, _resume=True)

    def append(self, rows: Iterable[Mapping[str, Any]]) -> int:
        """Append rows (dicts keyed by column; missing keys are empty cells), flush and fsync.

        Returns:
            The number of rows written.
        """
        text = "".join(_line(row.get(c) for c in self.columns) for row in rows)
        if text:
            self._file.write(text)
            self._file.flush()
            os.fsync(self._file.fileno())
        return text.count("\n") if text else 0

    def append_frame(self, frame: pd.DataFrame) -> int:
        """Append every row of a long-format frame (extra columns are ignored), flush and fsync."""
        missing = [c for c in self.columns if c not in frame.columns]
        if missing:
            raise ValueError(f"frame lacks metrics columns {missing}")
        return self.append(frame[self.columns].to_dict("records"))

    def close(self) -> None:
        """Close the file (idempotent)."""
        if not self._file.closed:
            self._file.close()

    def __enter__(self) -> MetricsLog:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def read_metrics(path: Path, sweep_keys: Sequence[str] = ()) -> pd.DataFrame:
    """Read ``metrics.csv`` back into the long-format frame.

    Args:
        path: the CSV written by :class:`MetricsLog`.
        sweep_keys: swept columns to return as Python values (None for empty, inf, int when integral).

    Raises:
        DataError: the file is missing or not a CSV with a ``step`` column.
    """
    path = Path(path)
    try:
        frame = pd.read_csv(path)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise DataError(f"{path}: cannot read metrics ({err})") from err
    if STEP not in frame.columns:
        raise DataError(f"{path}: expected a {STEP!r} column, found {list(frame.columns)}")
    for key in sweep_keys:
        if key not in frame.columns:
            raise DataError(f"{path}: expected the swept column {key!r}, found {list(frame.columns)}")
        frame[key] = pd.Series([normalize_value(v) for v in frame[key]], dtype=object, index=frame.index)
    return frame
