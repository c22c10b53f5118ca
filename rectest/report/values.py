"""Names of the measures and the one way every report writes a swept value or a number.

Swept parameter values may be ``None`` (a switched-off truncation such as ``k: null``), ``float('inf')``
(``beta: inf``), ints or floats. After a trip through a pandas column or a CSV file ``None`` comes back as
NaN and ``1`` as ``1.0``; :func:`normalize_value` maps both back so that grouping, labels, JSON and the
paper lookup all agree on one spelling.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

STEP = "step"
SEED = "seed"
REPLICA = "replica"
FAMILY = "family"  # the swept parameter that names a replica's grid when sim.grids has several

CD = "CD"
RD = "RD"
RR = "RR"
TP = "TP"
UD = "UD"
CLUSTERS = "clusters"
POLARIZED = "polarized"

PAPER_MEASURES: tuple[str, ...] = (CD, RD, RR, TP)
"""The paper's four measures (spec section 5), in the paper's column order."""

MEASURES: tuple[str, ...] = (CD, RD, RR, TP, UD, CLUSTERS, POLARIZED)
"""Every per-step measure the engine reports: the paper's four, then ours (spec section 5)."""
EXITS = "exits"
"""With churn (``sim.churn``): the creators replaced so far, per replica (an extra metrics.csv column)."""

INF_TEXT = "inf"


def normalize_value(value: Any) -> Any:
    """The canonical Python form of one swept value or measure.

    Args:
        value: a Python or numpy scalar, a 0-d tensor, ``None``, or the strings ``"inf"``/``"-inf"``.

    Returns:
        ``None`` for None/NaN/empty text, ``int`` for integral finite numbers, ``float`` otherwise
        (including +-inf); other strings and bools are returned unchanged.
    """
    if value is None or isinstance(value, bool):
        return value
    if hasattr(value, "item") and not isinstance(value, str):
        value = value.item()  # numpy scalar or 0-d tensor
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("", "none", "null", "nan"):
            return None
        if text in (INF_TEXT, "+inf", "infinity"):
            return math.inf
        if text in ("-inf", "-infinity"):
            return -math.inf
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if math.isfinite(value) and value.is_integer():
            return int(value)
        return value
    return value


def json_safe(value: Any) -> Any:
    """A JSON-serialisable copy of ``value``: inf -> ``"inf"``, -inf -> ``"-inf"``, NaN -> ``None``.

    Recurses into mappings (keys become ``str``) and sequences (which become lists).
    """
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, str):
        return [json_safe(v) for v in value]
    value = normalize_value(value)
    if isinstance(value, float) and math.isinf(value):
        return INF_TEXT if value > 0 else "-" + INF_TEXT
    return value


def format_value(value: Any) -> str:
    """Short text of a swept value: ``1``, ``0.5``, ``inf``, ``none``."""
    value = normalize_value(value)
    if value is None:
        return "none"
    if isinstance(value, float):
        if math.isinf(value):
            return INF_TEXT if value > 0 else "-" + INF_TEXT
        return f"{value:g}"
    return str(value)


def setting_label(params: Mapping[str, Any], sep: str = ", ") -> str:
    """``"k=1"`` or ``"policy.k=1, policy.beta=inf"``: the label of one swept setting."""
    if not params:
        return "all"
    return sep.join(f"{key}={format_value(value)}" for key, value in params.items())


def setting_key(values: Sequence[Any]) -> tuple[Any, ...]:
    """A hashable grouping key for one setting's values (NaN and None collapse to None)."""
    return tuple(normalize_value(v) for v in values)


def format_number(value: Any, digits: int = 3) -> str:
    """``1.398`` with ``digits`` decimals; ``-`` when missing; ``inf`` when infinite."""
    value = normalize_value(value)
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    if math.isinf(value):
        return INF_TEXT if value > 0 else "-" + INF_TEXT
    text = f"{value:.{digits}f}"
    return text[1:] if text.startswith("-") and float(text) == 0 else text  # no "-0.000"


def format_mean_stderr(stat: Mapping[str, Any] | None, digits: int = 3) -> str:
    """``"1.398 ± 0.002"`` from ``{"mean": .., "stderr": ..}``; just the mean when stderr is null."""
    if not stat:
        return "-"
    mean = format_number(stat.get("mean"), digits)
    if stat.get("stderr") is None or mean == "-":
        return mean
    return f"{mean} ± {format_number(stat['stderr'], digits)}"


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    """The lines of a Markdown table: ``| a | b |``, the ``|---|---|`` rule, then one line per row."""
    line = lambda cells: "| " + " | ".join(cells) + " |"  # noqa: E731
    return [line(header), "|" + "---|" * len(header), *(line(r) for r in rows)]
