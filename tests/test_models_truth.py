"""The hidden truth is used for evaluation only where it exists (bug: a test round after the
truth's last month was evaluated as if nobody were in need)."""

from __future__ import annotations

from pipeline.datasets.truth import truth_covers
from pipeline.months import parse_month


def test_truth_covers_the_window_and_nothing_after(config_factory, tmp_path):
    config = config_factory(tmp_path / "outputs")
    assert truth_covers(config, [parse_month("2026-08"), parse_month("2024-04")])
    assert truth_covers(config, [parse_month(config.window.end)])
    assert not truth_covers(config, [parse_month("2026-08"), parse_month("2026-10")])


def test_no_truth_folder_covers_nothing(config_factory, tmp_path):
    config = config_factory(tmp_path / "outputs", paths={"truth_input": str(tmp_path / "none")})
    assert not truth_covers(config, [parse_month("2026-08")])
