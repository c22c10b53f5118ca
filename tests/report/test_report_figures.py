"""Figures: valid non-trivial PNGs; one line per swept value per panel, at the mean across seeds."""

from __future__ import annotations

import numpy as np
import pytest

from rectest.report.figures import measures_figure, plot_measure, plot_measures

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PAPER = ("CD", "RD", "RR", "TP")


def test_four_panels_with_one_line_per_setting(known):
    fig = measures_figure(known.frame, ["k"], "top-k")
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in axes] == [
        "Creator diversity (CD)",
        "Recommendation diversity (RD)",
        "Recommendation relevance (RR)",
        "Tendency to polarization (TP)",
    ]
    for ax in axes:
        assert len(ax.get_lines()) == 3  # k = 1, none, 10
        assert len(ax.collections) == 3  # one band each
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["k=1", "k=none", "k=10"]


def test_lines_are_the_mean_across_seeds_and_bands_the_stderr(known):
    fig = measures_figure(known.frame, ["k"], "top-k")
    ax = fig.axes[0]  # CD
    line = ax.get_lines()[0]  # k=1: replicas 0 and 1
    a = np.array([known.value("CD", t, 0) for t in known.steps])
    b = np.array([known.value("CD", t, 1) for t in known.steps])
    np.testing.assert_allclose(line.get_xdata(), known.steps)
    np.testing.assert_allclose(line.get_ydata(), (a + b) / 2)
    band = ax.collections[0].get_paths()[0].vertices[:, 1]
    np.testing.assert_allclose(
        [band.min(), band.max()], [((a + b) / 2 - abs(a - b) / 2).min(), max(a.max(), b.max())]
    )


def test_minmax_band_spans_the_seeds(known):
    ax = measures_figure(known.frame, ["k"], "t", band="minmax").axes[1]  # RD
    band = ax.collections[1].get_paths()[0].vertices[:, 1]  # k=none: replicas 2 and 3
    values = [known.value("RD", t, r) for t in known.steps for r in (2, 3)]
    assert band.min() == pytest.approx(min(values)) and band.max() == pytest.approx(max(values))


def test_png_files_are_valid_and_non_trivial(known, tmp_path):
    path = plot_measures(known.frame, ["k"], tmp_path / "figures" / "measures.png", "top-k")
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE and len(data) > 20_000
    single = plot_measure(known.frame, ["k"], "clusters", tmp_path / "figures" / "clusters.png", "clusters")
    assert single.read_bytes()[:8] == PNG_SIGNATURE and single.stat().st_size > 5_000


def test_single_measure_figure_and_bad_band(known):
    fig = measures_figure(known.frame, ["k"], "UD", measures=["UD"])
    assert len(fig.axes) == 1 and len(fig.axes[0].get_lines()) == 3
    with pytest.raises(ValueError, match="band"):
        measures_figure(known.frame, ["k"], "t", band="sd")
    with pytest.raises(ValueError, match="lacks"):
        measures_figure(known.frame.drop(columns=["TP"]), ["k"], "t")
