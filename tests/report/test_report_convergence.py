"""Time to polarization: the one-at-a-time design, the log-log fit and its bootstrap interval."""

from __future__ import annotations

import numpy as np
import pytest

from rectest.errors import DataError
from rectest.report.convergence import convergence_markdown, convergence_study, fit, main, replica_table


def test_the_fit_recovers_a_power_law_and_its_interval_covers_it():
    rng = np.random.default_rng(1)
    xs = np.repeat([0.025, 0.05, 0.1, 0.2, 0.4], 8)
    ts = 30.0 * xs**-0.6 * np.exp(rng.normal(0, 0.1, xs.size))  # T = 30 x^-0.6, 10% log-normal noise
    found = fit(xs, ts)
    assert found["low"] < -0.6 < found["high"] and abs(found["exponent"] + 0.6) < 0.05
    assert found["high"] - found["low"] < 0.2  # 40 replicas pin the exponent down
    exact = fit([1, 2, 4], [10, 20, 40])
    assert exact["exponent"] == pytest.approx(1.0) and exact["low"] == pytest.approx(1.0)


def _summary(var: str, values: list[float], firsts: list[int | None]) -> dict:
    base = {"eta_u": 0.1, "eta_c": 0.1, "beta": 1.0}
    rows = [{**base, var: v} for v in values]
    return {
        "values": rows,
        "polarized_at": firsts,
        "world": {"m": 100, "n": 50, "d": 10},
        "horizon": 500,
        "theorem": [{"theorem_applies": r["eta_u"] < r["eta_c"] / 2} for r in rows],
        "replicas": [{"replica": i, "seed": i % 2} for i in range(len(rows))],
    }


def test_one_variable_at_a_time_with_censored_replicas_counted_not_fitted():
    eta_c = _summary("eta_c", [0.05, 0.05, 0.1, 0.1, 0.4, 0.4], [400, 380, 200, 210, None, 50])
    beta = _summary("beta", [0.5, 0.5, 1.0, 1.0], [150, 160, 200, 210])  # its beta = 1 rows repeat eta_c's
    other_k = _summary("eta_c", [0.05, 0.05], [7, 7])
    for values in other_k["values"]:
        values["k"] = 5  # another policy: neither a duplicate nor at the reference point
    records = replica_table([eta_c, beta, other_k])
    assert len(records) == 10  # the reference setting (eta_c = 0.1, beta = 1) counted once per seed
    study = {s["variable"]: s for s in convergence_study(records)}
    assert set(study) == {"eta_c", "beta"}  # eta_u, m, n, d never vary
    rows = {r["value"]: r for r in study["eta_c"]["rows"]}
    assert (rows[0.4]["polarized"], rows[0.4]["replicas"]) == (1, 2)  # one seed never polarized
    assert rows[0.05]["mean"] == 390 and rows[0.4]["theorem"]  # 0.1 < 0.4 / 2: the theorem applies
    assert len(study["eta_c"]["points"]) == 5 and study["eta_c"]["fit"]["exponent"] < 0
    assert study["beta"]["fit"] is None  # two values: no slope worth a fit
    text = convergence_markdown(list(study.values()), "t")
    assert "| eta_c | 0.4 | 1/2 | 50 |" in text and "| beta | - | - | fewer than 3 values" in text


def test_summaries_from_an_older_version_or_none_at_all_are_one_clear_error(tmp_path, capsys):
    with pytest.raises(DataError, match="lacks values"):
        replica_table([{"groups": []}])
    assert main([str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no summary.json under") and len(err.strip().splitlines()) == 1
