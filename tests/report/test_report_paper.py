"""The authors' numbers (spec section 7) and their agreement with the closed forms of spec section 6."""

from __future__ import annotations

import math

import pytest

from rectest.errors import ConfigError
from rectest.report.paper import PAPER_ROWS, paper_reference

PAPER = ("CD", "RD", "RR", "TP")


def values(ref: dict) -> list[float]:
    return [ref[m] for m in PAPER]


def test_synthetic_top1_and_its_aliases():
    expected = [1.40, 0.00, 1.00, 0.27]
    assert values(paper_reference("synthetic", "k", 1)) == expected
    assert values(paper_reference("synthetic", "policy.k", 1)) == expected
    assert values(paper_reference("synthetic", "beta", math.inf)) == expected
    assert values(paper_reference("synthetic", "policy.beta", "inf")) == expected
    assert paper_reference("synthetic", "k", 1)["approximate"] == []


def test_plain_softmax_is_top_n_and_no_truncation():
    for key, value in (("k", 50), ("k", None), ("beta", 1), ("beta", 1.0)):
        ref = paper_reference("synthetic", key, value)
        assert values(ref) == [1.00, 0.42, 0.76, 1.00], (key, value)
        assert ref[key] == value


def test_movielens_rows():
    assert values(paper_reference("movielens", "k", 100)) == [1.35, 0.00, 1.00, 0.27]
    assert values(paper_reference("ml-20m", "k", 2000)) == [1.00, 0.42, 0.76, 1.00]
    assert values(paper_reference("movielens", "k", 1))[3] == 0.20
    top500 = paper_reference("movielens", "k", 500)
    assert top500["approximate"] == ["CD", "TP"] and top500["text"]["CD"] == "~1.14"


def test_approximate_rows_and_ranges():
    ref = paper_reference("synthetic", "tau", 1 / math.sqrt(2))
    assert ref["approximate"] == list(PAPER)
    assert ref["text"]["CD"] == "~1.37-1.39" and ref["CD"] == pytest.approx(1.38)
    assert ref["TP"] == pytest.approx((0.28 + 0.33) / 2)


def test_unreported_values_and_unknown_settings():
    assert paper_reference("synthetic", "k", 7) is None
    assert paper_reference("synthetic", "eta_u", 0.1) is None
    assert paper_reference("movielens", "k", 50) is None  # k=50 is no truncation only on synthetic (n=50)
    with pytest.raises(ConfigError, match="synthetic"):
        paper_reference("imagenet", "k", 1)


def test_plain_softmax_row_matches_balanced_bipolarization_closed_form():
    # spec section 6: balanced bi-polarization under softmax(beta): RR = tanh(beta), RD = sech^2(beta)
    ref = paper_reference("synthetic", "beta", 1)
    assert ref["RR"] == pytest.approx(math.tanh(1.0), abs=0.005)
    assert ref["RD"] == pytest.approx(1 / math.cosh(1.0) ** 2, abs=0.005)
    assert ref["TP"] == 1.0


def test_top1_tp_stays_at_the_initial_value_of_uniform_vectors():
    # top-1 freezes the creators near their i.i.d. uniform start: TP(0) = 1/n + (1 - 1/n) E|<v, w>|
    n, d = 50, 10
    mean_abs_cos = math.gamma(d / 2) / (math.sqrt(math.pi) * math.gamma((d + 1) / 2))
    assert paper_reference("synthetic", "k", 1)["TP"] == pytest.approx(
        1 / n + (1 - 1 / n) * mean_abs_cos, abs=0.005
    )


def test_every_row_is_in_range():
    for row in PAPER_ROWS:
        assert 0.0 <= row.value("CD") <= 2.0 and 0.0 <= row.value("RD") <= 1.0
        assert -1.0 <= row.value("RR") <= 1.0 and 0.0 <= row.value("TP") <= 1.0
