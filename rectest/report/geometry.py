"""The geometry sections of summary.json, table.md and the console: the starting state next to an i.i.d.
uniform world of the same shape, and the poles of the final state next to the bi-polarization closed forms.

Layout added to ``summary.json``::

    "geometry": {
      "transform": "none", "creators": "most_rated", "m": 943, "n": 1682, "d": 16,
      "start": {"CD": ..., "TP": ..., "mean_user_norm": ..., "mean_creator_norm": ...,
                "mean_cosine": ..., "negative_scores": ..., "effective_rank_users": ...,
                "effective_rank_creators": ...},
      "iid": {the same keys: closed forms for i.i.d. uniform unit vectors},
      "model_top10_kept": 0.83,        # only with a transform: share of each user's top-10 kept
      "t0": [{"params": {"k": 1}, "label": "k=1",
              "measured": {"CD", "TP", "RR", "RD"}, "iid": {"CD", "TP", "RR", "RD"}}, ...]
    }
    "replicas": [{..., "poles": {"axis": [...], "users_plus": ..., "creators_plus": ..., "radius": ...,
                                 "predicted": {"CD", "TP", "RR", "RD"} or null}}, ...]
    "groups": [{..., "poles": {"users_plus": {"mean", "stderr"}, "creators_plus": ..., "radius": ...,
                               "predicted": {"CD": {"mean", "stderr"}, ...} or null}}, ...]

``t0.measured`` are the measures the run logged at step 0 (under the run's policy); ``t0.iid`` the same
measures at step 0 of an i.i.d. uniform world of the same ``m`` (at most 4,096 users), ``n`` and ``d``,
under the same policy (one draw, seed 0). ``predicted`` is null for policies without a closed form
(the diversity-aware objective, MMR).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rectest.report.summary import mean_stderr
from rectest.report.values import PAPER_MEASURES, format_number, setting_key

GEOMETRY = "geometry"
POLES = "poles"
START_ROWS: tuple[tuple[str, str], ...] = (
    ("CD", "creator diversity CD"),
    ("TP", "tendency to polarization TP"),
    ("mean_user_norm", "norm of the mean user"),
    ("mean_creator_norm", "norm of the mean creator"),
    ("mean_cosine", "cosine(mean user, mean creator)"),
    ("negative_scores", "fraction of negative scores"),
    ("effective_rank_users", "effective rank, users"),
    ("effective_rank_creators", "effective rank, creators"),
)
POLE_KEYS = ("creators_plus", "users_plus", "radius")


def attach_poles(summary: dict[str, Any], per_replica: Sequence[Mapping[str, Any]]) -> None:
    """Add each replica's ``poles`` record and each group's means to ``summary`` (in place).

    Args:
        summary: the dict of :func:`rectest.report.summary.summarize`.
        per_replica: one record per replica index (``axis``, ``users_plus``, ``creators_plus``,
            ``radius``, ``predicted``).
    """
    for rep in summary["replicas"]:
        rep[POLES] = dict(per_replica[rep["replica"]])
    for group in summary["groups"]:
        key = setting_key(list(group["params"].values()))
        reps = [
            r[POLES]
            for r in summary["replicas"]
            if setting_key([r["params"][k] for k in group["params"]]) == key
        ]
        predicted = None
        if all(r["predicted"] is not None for r in reps):
            predicted = {m: mean_stderr([r["predicted"][m] for r in reps]) for m in PAPER_MEASURES}
        group[POLES] = {k: mean_stderr([r[k] for r in reps]) for k in POLE_KEYS}
        group[POLES]["predicted"] = predicted


def _num(value: Any, digits: int = 3) -> str:
    return "-" if value is None else format_number(value, digits)


def geometry_lines(geometry: Mapping[str, Any]) -> list[str]:
    """Markdown lines: the starting state next to i.i.d. uniform vectors, and the t = 0 policy measures."""
    g = geometry
    lines = [
        f"## Geometry of the starting state (m = {g['m']}, n = {g['n']}, d = {g['d']}, "
        f"transform `{g['transform'] or 'none'}`, creators `{g['creators']}`)",
        "",
        "| measure | this run | i.i.d. uniform |",
        "|---|---:|---:|",
    ]
    lines += [f"| {label} | {_num(g['start'][key])} | {_num(g['iid'][key])} |" for key, label in START_ROWS]
    if g.get("model_top10_kept") is not None:
        lines += [
            "",
            f"The transform keeps {_num(g['model_top10_kept'])} of each user's top-10 creators "
            "under the model's own vectors (mean over users).",
        ]
    if g.get("t0"):
        lines += [
            "",
            "At t = 0 under the run's policy (i.i.d.: a uniform world of the same shape, same policy):",
            "",
            "| setting | CD | TP | RR | RD | i.i.d. CD | i.i.d. TP | i.i.d. RR | i.i.d. RD |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for row in g["t0"]:
            cells = [_num(row["measured"].get(m)) for m in ("CD", "TP", "RR", "RD")]
            cells += [_num(row["iid"].get(m)) for m in ("CD", "TP", "RR", "RD")]
            lines.append(f"| {row['label']} | " + " | ".join(cells) + " |")
    return lines


def poles_lines(summary: Mapping[str, Any]) -> list[str]:
    """Markdown lines: per setting, the pole fractions and the closed-form measures beside the measured."""
    groups = [g for g in summary["groups"] if POLES in g]
    if not groups:
        return []
    lines = [
        "## Poles of the final state",
        "",
        "| setting | creators on + | users on + | radius | CD (closed form / measured) | "
        "RR (closed form / measured) | RD (closed form / measured) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for g in groups:
        p, pred = g[POLES], g[POLES]["predicted"]
        cells = [_num(p[k]["mean"]) for k in POLE_KEYS]
        for m in ("CD", "RR", "RD"):
            closed = "-" if pred is None else _num(pred[m]["mean"])
            cells.append(f"{closed} / {_num(g['final'][m]['mean'])}")
        lines.append(f"| {g['label']} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Axis: the principal axis of users and creators, signed so most users are on +. Radius: the "
        "largest distance of any vector to the nearer pole (r-polarized when <= r). Closed form: the "
        "measures of the exact bi-polarized state with these fractions (meaningful when the radius is small).",
    ]
    return lines


def geometry_console(geometry: Mapping[str, Any]) -> str:
    """A short plain-text block for the console at the start of a run."""
    g, width = geometry, max(len(label) for _, label in START_ROWS)
    rows = [f"{'starting state':<{width}}  {'this run':>9}  {'i.i.d.':>9}"]
    rows += [
        f"{label:<{width}}  {_num(g['start'][key]):>9}  {_num(g['iid'][key]):>9}" for key, label in START_ROWS
    ]
    if g.get("model_top10_kept") is not None:
        rows.append(f"{'top-10 kept by transform':<{width}}  {_num(g['model_top10_kept']):>9}")
    return "\n".join(rows)
