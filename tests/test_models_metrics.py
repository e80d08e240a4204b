"""Metrics at capacity on tiny hand-made cases: cuts per 읍면동, ties at the cut, unlabelled."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from models.metrics import (
    calibration_metrics,
    count_list,
    cut_list,
    gap_closed,
    paired_bootstrap,
    ranking_metrics,
)


def test_cut_per_district_takes_each_capacity_and_breaks_ties_by_key():
    keys = ["h3", "h1", "h2", "h4", "h5"]
    emd = ["A", "A", "A", "B", "B"]
    scores = np.array([0.9, 0.5, 0.5, 0.1, 0.2])
    cut = cut_list(keys, emd, scores, pd.Series({"A": 2, "B": 1}))
    # A: h3 (0.9), then h1 before h2 (same score, key order); B: h5 (0.2)
    assert cut["listed"].tolist() == [True, True, False, False, True]
    assert cut["rank"].tolist() == [0, 1, 2, 1, 0]
    assert cut["tied"].tolist() == [False, True, True, False, True]


def test_national_cut_ignores_districts():
    cut = cut_list(["a", "b", "c"], ["X", "Y", "Y"], np.array([1.0, 3.0, 2.0]), 2)
    assert cut["listed"].tolist() == [False, True, True]


def test_min_score_keeps_households_without_signals_off_the_list():
    cut = cut_list(["a", "b", "c"], ["A"] * 3, np.array([2.0, 0.0, 0.0]), 3, min_score=1)
    assert cut["listed"].tolist() == [True, False, False]
    counts = count_list(cut, [1, 1, 1])
    assert counts.listed == 1
    assert counts.best_positives == counts.worst_positives == 1


def test_ties_straddling_the_cut_give_best_and_worst_case():
    # One slot; three households tie at the top: one positive, one negative, one unlabelled.
    keys = ["a", "b", "c"]
    cut = cut_list(keys, ["A"] * 3, np.array([1.0, 1.0, 1.0]), 1)
    labels = pd.array([0, pd.NA, 1], dtype="Int8")
    counts = count_list(cut, labels)
    assert cut["listed"].tolist() == [True, False, False]  # key order: "a" is listed
    assert (counts.positives, counts.negatives, counts.unlabelled) == (0, 1, 0)
    assert counts.precision == 0.0
    assert counts.best_positives == 1 and counts.best_negatives == 0
    assert counts.precision_best == 1.0
    assert counts.worst_negatives == 1 and counts.precision_worst == 0.0
    assert counts.recall == 0.0 and counts.recall_best == 1.0


def test_unlabelled_listed_households_are_not_negatives():
    cut = cut_list(["a", "b", "c", "d"], ["A"] * 4, np.array([4.0, 3.0, 2.0, 1.0]), 3)
    counts = count_list(cut, pd.array([1, pd.NA, 0, 1], dtype="Int8"))
    assert (counts.listed, counts.positives, counts.negatives, counts.unlabelled) == (3, 1, 1, 1)
    assert counts.precision == 0.5  # among the labelled listed
    assert counts.recall == 0.5  # one of two known positives
    assert counts.total_labelled == 3


def test_ties_across_districts_are_counted_per_district():
    keys = ["a", "b", "c", "d"]
    emd = ["A", "A", "B", "B"]
    cut = cut_list(keys, emd, np.array([1.0, 1.0, 5.0, 1.0]), pd.Series({"A": 1, "B": 1}))
    counts = count_list(cut, np.array([0, 1, 1, 0]))
    # A: a listed (tie with b); B: c listed above the cut.
    assert counts.positives == 1 and counts.best_positives == 2 and counts.worst_positives == 1


def test_nan_scores_are_refused():
    with pytest.raises(ValueError, match="NaN"):
        cut_list(["a"], ["A"], np.array([np.nan]), 1)


def test_calibration_metrics_on_perfect_and_wrong_probabilities():
    p = np.array([0.0, 0.0, 1.0, 1.0])
    figures, _ = calibration_metrics(p, pd.array([0, 0, 1, 1], dtype="Int8"))
    assert figures["ece"] == 0.0 and figures["brier"] == 0.0
    figures, _ = calibration_metrics(np.full(4, 0.9), pd.array([0, 0, 0, 0], dtype="Int8"))
    assert figures["ece"] == pytest.approx(0.9)
    figures, _ = calibration_metrics(np.array([0.5, 0.2]), pd.array([pd.NA, 0], dtype="Int8"))
    assert figures["labelled"] == 1


def test_ranking_metrics_need_both_classes():
    assert math.isnan(ranking_metrics(np.array([0.1, 0.2]), [1, 1])["roc_auc"])
    assert ranking_metrics(np.array([0.1, 0.9]), [0, 1])["roc_auc"] == 1.0


def test_gap_closed():
    assert gap_closed(0.6, 0.4, 0.8) == pytest.approx(0.5)
    assert math.isnan(gap_closed(0.6, 0.8, 0.8))


def test_paired_bootstrap_is_deterministic_and_brackets_the_point():
    rng = np.random.default_rng(1)
    rounds = []
    for _ in range(2):
        n = 200
        frame = pd.DataFrame(
            {
                "rule": rng.random(n) < 0.5,
                "model": rng.random(n) < 0.5,
                "oracle": rng.random(n) < 0.5,
                "in_need": rng.random(n) < 0.4,
            }
        )
        frame.attrs["total_need"] = int(frame["in_need"].sum()) + 50
        rounds.append(frame)
    args = dict(reference="rule", oracle="oracle", samples=200, seed=7)
    first = paired_bootstrap(rounds, ["rule", "model", "oracle"], **args)
    second = paired_bootstrap(rounds, ["rule", "model", "oracle"], **args)
    pd.testing.assert_frame_equal(first, second)
    row = first.set_index("model").loc["model"]
    assert row["truth_precision_low"] <= row["truth_precision"] <= row["truth_precision_high"]
    assert first.set_index("model").loc["rule", "lift_over_rule"] == 1.0
