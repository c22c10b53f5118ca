"""history_frame: the long format (one row per logged step and replica) and the value helpers."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from rectest.report.frames import history_frame
from rectest.report.values import MEASURES, json_safe, normalize_value, setting_label


def test_one_row_per_step_and_replica_with_the_tensor_values(known):
    frame = known.frame
    n_rep = len(known.params)
    assert len(frame) == len(known.steps) * n_rep
    assert list(frame.columns) == ["step", "replica", "seed", "k", *MEASURES]
    for _, row in frame.iterrows():
        t, r = int(row["step"]), int(row["replica"])
        assert row["seed"] == known.seeds[r]
        assert row["k"] == known.params[r]["k"] or (row["k"] is None and known.params[r]["k"] is None)
        for m in MEASURES:
            assert row[m] == known.value(m, t, r)
    # ordered by step, then replica (the order rows are produced in)
    assert frame["step"].tolist() == sorted(frame["step"].tolist())
    assert frame["replica"].tolist()[:n_rep] == list(range(n_rep))


def test_none_and_inf_survive_in_the_swept_columns():
    history = {"step": torch.tensor([0, 1]), "CD": torch.zeros(2, 3)}
    params = [
        {"policy.k": None, "policy.beta": math.inf},
        {"policy.k": 5, "policy.beta": 1.0},
        {"policy.k": 5},
    ]
    frame = history_frame(history, params, [7, 7, 8])
    assert frame["policy.k"].tolist()[:3] == [None, 5, 5]
    beta = frame["policy.beta"].tolist()[:3]
    assert beta[0] == math.inf and beta[1] == 1 and beta[2] is None


def test_shape_mismatch_is_refused():
    with pytest.raises(ValueError, match="shape"):
        history_frame({"step": torch.arange(3), "CD": torch.zeros(2, 2)}, [{}, {}], [0, 1])
    with pytest.raises(ValueError, match="seeds"):
        history_frame({"step": torch.arange(3), "CD": torch.zeros(3, 2)}, [{}, {}], [0])


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (None, None),
        (float("nan"), None),
        ("", None),
        (np.float32(2.0), 2),
        (torch.tensor(0.5), 0.5),
        ("inf", math.inf),
        (np.int64(3), 3),
        (3.0, 3),
        (True, True),
    ],
)
def test_normalize_value(raw, expected):
    assert normalize_value(raw) == expected or (expected is None and normalize_value(raw) is None)


def test_json_safe_output_is_strict_json():
    data = {"a": [math.inf, -math.inf, math.nan, 1.5, None], "b": {"c": np.float64(2.5)}}
    text = json.dumps(json_safe(data), allow_nan=False)
    assert json.loads(text) == {"a": ["inf", "-inf", None, 1.5, None], "b": {"c": 2.5}}


def test_setting_label():
    assert setting_label({"k": 1}) == "k=1"
    assert setting_label({"policy.k": None, "policy.beta": math.inf}) == "policy.k=none, policy.beta=inf"
    assert setting_label({}) == "all"


def test_extra_series_join_when_shaped_like_the_measures():
    history = {
        "step": torch.tensor([0, 10]),
        "CD": torch.ones(2, 3),
        "rmse": torch.full((2, 3), 0.5),  # (L, R): another per-replica series
        "final_state": torch.zeros(3, 4),  # not (L, R): not a column
    }
    frame = history_frame(history, [{}] * 3, [0, 1, 2])
    assert list(frame.columns) == ["step", "replica", "seed", "CD", "rmse"]
    assert frame["rmse"].tolist() == [0.5] * 6


def test_format_number_has_no_negative_zero():
    from rectest.report.values import format_mean_stderr, format_number

    assert format_number(-1e-9) == "0.000" and format_number(-0.0015) == "-0.002"
    assert format_mean_stderr({"mean": -2e-12, "stderr": 0.0}) == "0.000 ± 0.000"
    assert format_mean_stderr({"mean": 0.5, "stderr": None}) == "0.500"
    assert format_number(float("inf")) == "inf" and format_number(None) == "-"
