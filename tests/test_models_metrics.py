"""Metrics at capacity on tiny hand-made cases: cuts per 읍면동, ties at the cut, unlabelled."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from models import metrics as metrics_module
from models.metrics import (
    add_counts,
    calibration_metrics,
    count_list,
    curve_points,
    cut_list,
    gap_closed,
    paired_bootstrap,
    ranked_cut,
    ranking_metrics,
    roc_auc_ranks,
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


def test_paired_bootstrap_tells_a_real_difference_from_a_tie():
    """minus_candidate: each model's precision minus the candidate's on the same draws."""
    rng = np.random.default_rng(2)
    n = 3000
    need = rng.random(n) < 0.4
    frame = pd.DataFrame(
        {
            "rule": rng.random(n) < 0.3,
            "good": np.where(need, rng.random(n) < 0.6, rng.random(n) < 0.2),
            "same": np.where(need, rng.random(n) < 0.6, rng.random(n) < 0.2),
            "better": np.where(need, rng.random(n) < 0.7, rng.random(n) < 0.1),
            "oracle": need,
            "in_need": need,
        }
    )
    frame.attrs["total_need"] = int(need.sum())
    names = ["rule", "good", "same", "better", "oracle"]
    table = paired_bootstrap(
        [frame], names, reference="rule", oracle="oracle", samples=400, seed=1, candidate="good"
    ).set_index("model")
    assert table.loc["good", ["minus_candidate_low", "minus_candidate_high"]].tolist() == [0, 0]
    assert table.loc["same", "minus_candidate_low"] < 0 < table.loc["same", "minus_candidate_high"]
    assert table.loc["better", "minus_candidate_low"] > 0
    assert table.loc["rule", "minus_candidate_high"] < 0


def _ties_and_gaps(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Scores with many ties, observed labels with gaps (-1), truth."""
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, 12, size=n).astype(float) / 4  # many ties
    observed = rng.choice(np.array([-1, 0, 1], dtype=np.int8), size=n, p=[0.8, 0.1, 0.1])
    need = rng.random(n) < 0.2
    return scores, observed, need


@pytest.mark.parametrize("min_score", [None, 1.0])
@pytest.mark.parametrize("k", [1, 37, 150, 900])
def test_ranked_cut_equals_cutting_every_row(k, min_score):
    scores, observed, need = _ties_and_gaps(1000, k)
    keys = np.array([f"h{i:05d}" for i in range(1000)], dtype=object)  # in key order
    whole = cut_list(keys, None, scores, k, min_score)
    labels = pd.array(np.where(observed < 0, 0, observed), dtype="Int8")
    labels[observed < 0] = pd.NA
    ks = curve_points(k)
    seen, truth, curve = ranked_cut(scores, observed, need, k, min_score, ks)
    assert seen == count_list(whole, labels)
    assert truth == count_list(whole, need.astype(np.int64))
    order = np.argsort(-scores, kind="stable")  # ties by position: the key order
    hits = np.cumsum(need[order])
    at = np.minimum(ks, 1000) - 1
    np.testing.assert_array_equal(curve, hits[at] / np.maximum(at + 1, 1))
    # without truth: precision among labelled households
    _, none, observed_curve = ranked_cut(scores, observed, None, k, min_score, ks)
    y = observed[order].astype(float)
    y[observed[order] < 0] = np.nan
    expected = np.nancumsum(y)[at] / np.maximum(np.cumsum(~np.isnan(y))[at], 1)
    assert none is None
    np.testing.assert_array_equal(observed_curve, expected)


def test_cut_list_breaks_ties_by_numeric_keys_by_value():
    cut = cut_list(np.array([10, 9, 100]), None, np.array([1.0, 1.0, 1.0]), 1)
    assert cut["listed"].tolist() == [False, True, False]  # 9 < 10 < 100, not as text


def test_rank_auc_equals_sklearn_with_ties():
    from sklearn.metrics import roc_auc_score

    for seed in range(5):
        scores, _, need = _ties_and_gaps(5000, seed)
        assert abs(roc_auc_ranks(scores, need) - roc_auc_score(need, scores)) < 1e-12
        smooth = np.random.default_rng(seed).random(5000) + need * 0.1
        assert abs(roc_auc_ranks(smooth, need) - roc_auc_score(need, smooth)) < 1e-12
    assert math.isnan(roc_auc_ranks(np.array([0.1, 0.2]), np.array([True, True])))


def test_counts_of_parts_add_up_to_the_counts_of_the_whole():
    scores, observed, need = _ties_and_gaps(600, 3)
    emd = np.repeat(["A", "B", "C"], 200)
    keys = np.array([f"h{i:04d}" for i in range(600)], dtype=object)
    capacity = pd.Series({"A": 20, "B": 35, "C": 5})
    labels = pd.array(np.where(observed < 0, 0, observed), dtype="Int8")
    labels[observed < 0] = pd.NA
    for y in (need.astype(np.int64), labels):
        whole = count_list(cut_list(keys, emd, scores, capacity), y)
        parts = [
            count_list(cut_list(keys[s], emd[s], scores[s], capacity), y[s])
            for s in (slice(0, 200), slice(200, 600))
        ]
        assert add_counts(parts) == whole
        assert whole.best_positives > whole.worst_positives  # ties straddle the cuts


def test_bootstrap_in_blocks_equals_one_draw(monkeypatch):
    rng = np.random.default_rng(2)
    rounds = []
    for n in (300, 250):
        frame = pd.DataFrame(
            {m: rng.random(n) < 0.4 for m in ("rule", "model", "oracle")}
            | {"in_need": rng.random(n) < 0.3}
        )
        frame.attrs["total_need"] = int(frame["in_need"].sum()) + 20
        rounds.append(frame)
    args = dict(reference="rule", oracle="oracle", samples=101, seed=5)
    one = paired_bootstrap(rounds, ["rule", "model", "oracle"], **args)
    monkeypatch.setattr(metrics_module, "BOOTSTRAP_CELLS", 7 * 300)  # blocks of 7 and 8 draws
    blocks = paired_bootstrap(rounds, ["rule", "model", "oracle"], **args)
    pd.testing.assert_frame_equal(one, blocks, check_exact=True)
