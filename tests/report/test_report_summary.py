"""summary.json: final and time-averaged values per replica; mean and stderr across seeds per setting."""

from __future__ import annotations

import json
import math
import random

import pandas as pd
import pytest
import torch

from rectest.errors import DataError
from rectest.report.frames import history_frame
from rectest.report.summary import mean_stderr, read_summary, summarize, write_summary
from rectest.report.values import MEASURES

PAPER = ("CD", "RD", "RR", "TP")


def test_replica_final_and_time_average(known):
    summary = summarize(known.frame, ["k"])
    last = known.steps[-1]
    assert [r["replica"] for r in summary["replicas"]] == list(range(len(known.params)))
    for rep in summary["replicas"]:
        r = rep["replica"]
        assert rep["seed"] == known.seeds[r]
        assert rep["final_step"] == last
        for m in MEASURES:
            assert rep["final"][m] == pytest.approx(known.value(m, last, r), abs=1e-12)
            avg = sum(known.value(m, t, r) for t in known.steps) / len(known.steps)
            assert rep["time_avg"][m] == pytest.approx(avg, abs=1e-12)


def test_first_polarized_step_per_replica(known):
    summary = summarize(known.frame, ["k"])
    assert [r["first_polarized_step"] for r in summary["replicas"]] == [5, 15, None, 10, None]


def test_two_seeds_give_midpoint_and_half_distance(known):
    summary = summarize(known.frame, ["k"])
    assert [g["params"] for g in summary["groups"]] == [{"k": 1}, {"k": None}, {"k": 10}]
    assert [g["n_seeds"] for g in summary["groups"]] == [2, 2, 1]
    last = known.steps[-1]
    for group, (r1, r2) in zip(summary["groups"][:2], [(0, 1), (2, 3)], strict=True):
        for m in PAPER:
            a, b = known.value(m, last, r1), known.value(m, last, r2)
            assert group["final"][m]["mean"] == pytest.approx((a + b) / 2, abs=1e-12)
            assert group["final"][m]["stderr"] == pytest.approx(abs(a - b) / 2, abs=1e-12)


def test_one_seed_has_no_stderr(known):
    single = summarize(known.frame, ["k"])["groups"][2]
    assert single["final"]["CD"]["stderr"] is None
    assert single["final"]["CD"]["mean"] == pytest.approx(known.value("CD", known.steps[-1], 4))


def test_polarization_per_setting(known):
    groups = summarize(known.frame, ["k"])["groups"]
    # k=1: both polarized, at 5 and 15 -> mean 10, stderr 5; k=none: one of two (at 10); k=10: never
    assert groups[0]["polarized"] == {
        "n_polarized": 2,
        "fraction": 1.0,
        "first_step": {"mean": 10, "stderr": 5},
    }
    assert groups[1]["polarized"]["n_polarized"] == 1
    assert groups[1]["polarized"]["first_step"] == {"mean": 10, "stderr": None}
    assert groups[2]["polarized"]["first_step"] == {"mean": None, "stderr": None}


def test_stderr_matches_pandas_on_random_groups():
    rng = random.Random(3)
    xs = [rng.gauss(0, 1) for _ in range(7)]
    stat = mean_stderr(xs)
    series = pd.Series(xs)
    assert stat["mean"] == pytest.approx(series.mean(), abs=1e-12)
    assert stat["stderr"] == pytest.approx(series.std(ddof=1) / math.sqrt(len(xs)), abs=1e-12)
    assert mean_stderr([float("nan"), 2.0, None]) == {"mean": 2.0, "stderr": None}


def test_inf_and_nan_are_json_safe(tmp_path):
    history = {"step": torch.tensor([0, 1])}
    for m in PAPER:
        history[m] = torch.tensor([[0.5, 0.25], [0.5, float("nan")]])  # (L=2, R=2)
    frame = history_frame(history, [{"beta": math.inf}, {"beta": 1.0}], [0, 0])
    summary = summarize(frame, ["beta"])
    path = write_summary(summary, tmp_path / "summary.json")
    strict = json.loads(path.read_text(), parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))
    assert strict == read_summary(path) == json.loads(json.dumps(summary))
    assert strict["groups"][0]["params"] == {"beta": "inf"}
    assert strict["replicas"][1]["final"]["CD"] is None  # NaN -> null
    assert strict["replicas"][1]["time_avg"]["CD"] == 0.25  # the mean skips the NaN
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]


def test_several_sweep_keys_group_by_the_combination():
    history = {"step": torch.tensor([0])}
    for m in PAPER:
        history[m] = torch.tensor([[1.0, 2.0, 3.0, 5.0]])
    params = [{"policy.k": 1, "policy.beta": 1.0}, {"policy.k": 1, "policy.beta": 1.0}] + [
        {"policy.k": 1, "policy.beta": math.inf},
        {"policy.k": None, "policy.beta": 1.0},
    ]
    summary = summarize(history_frame(history, params, [0, 1, 0, 0]), ["policy.k", "policy.beta"])
    assert [g["label"] for g in summary["groups"]] == [
        "policy.k=1, policy.beta=1",
        "policy.k=1, policy.beta=inf",
        "policy.k=none, policy.beta=1",
    ]
    assert [g["final"]["RR"]["mean"] for g in summary["groups"]] == [1.5, 3.0, 5.0]


def test_missing_measure_or_empty_frame_is_a_data_error(known):
    with pytest.raises(DataError, match="TP"):
        summarize(known.frame.drop(columns=["TP"]), ["k"])
    with pytest.raises(DataError, match="no rows"):
        summarize(known.frame.iloc[:0], ["k"])
