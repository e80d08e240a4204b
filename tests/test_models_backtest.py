"""Backtest data: point in time, selective-label weights, and the rule baseline's list."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from _features_fixtures import sample_inputs

from features.build import build_features
from features.spec import load_feature_spec
from models.backtest import RoundPool, candidate_specs, training_table
from models.candidates import CalibratedClassifier, RuleBaseline, make_lightgbm
from models.data import coerce_feature_types, eligible_mask
from models.metrics import cut_list
from pipeline.config import LightGBMConfig, SelectiveLabelsConfig, TrainingConfig
from pipeline.datasets import TableLayout
from pipeline.describe import read_partition, recent_indicator_counts, rule_list
from pipeline.months import parse_month

INPUTS = ["x"]


def _pool() -> list[RoundPool]:
    pool = []
    for i, r in enumerate((100, 102, 104, 106)):
        labelled = pd.DataFrame(
            {
                "household_key": [f"h{r}a", f"h{r}b", f"h{r}c"],
                "x": [1.0 + i, 2.0, 3.0],
                "label": pd.array([1, 0, 1], dtype="Int8"),
                "resolved_month": pd.array([r, r + 1, r + 3], dtype="Int32"),
                "selection_probability": [1.0, 0.5, 0.02],
                "selection_reason": ["central_rule", "central_rule", "random_exploration"],
            }
        )
        negatives = pd.DataFrame({"household_key": [f"n{r}"], "x": [0.0]})
        pool.append(RoundPool(r, labelled, negatives, r + 4))
    return pool


def test_training_uses_only_labels_resolved_before_the_test_round():
    settings = SelectiveLabelsConfig()
    table = training_table(_pool(), 105, "plain", settings, INPUTS, holdout_rounds=1)
    # resolved months: round 100 -> 100, 101, 103; 102 -> 102, 103, 105; 104 -> 104, 105, 107
    assert sorted(table.round_month.tolist()) == [100, 100, 100, 102, 102, 104]
    assert table.n_negatives == 0
    assert np.all(table.weight == 1.0)
    assert table.calibration_mask.tolist() == [False] * 5 + [True]  # the latest round held out


def test_negatives_only_once_the_quiet_window_is_known():
    settings = SelectiveLabelsConfig()
    table = training_table(_pool(), 105, "negatives", settings, INPUTS, holdout_rounds=1)
    assert table.n_negatives == 1  # round 100 (known from 104); round 102 known only from 106
    assert table.y[-1] == 0 and not table.calibration_mask[-1]


def test_ipw_weights_follow_selection_probability_with_a_clip():
    settings = SelectiveLabelsConfig(weight_clip=10.0)
    table = training_table(_pool(), 104, "ipw", settings, INPUTS, holdout_rounds=1)
    w = table.weight[:3]  # round 100: p = 1, 0.5, 0.02 (clipped to 0.1)
    assert w[1] / w[0] == pytest.approx(2.0)
    assert w[2] / w[0] == pytest.approx(10.0)
    assert table.weight[: table.n_labelled].mean() == pytest.approx(1.0)


def test_no_labels_before_the_cutoff_is_an_error():
    with pytest.raises(ValueError, match="no labels"):
        training_table(_pool(), 100, "plain", SelectiveLabelsConfig(), INPUTS, 1)


def test_candidate_specs_compare_methods_for_the_registered_model():
    config = TrainingConfig()
    names = [s.name for s in candidate_specs(config)]
    assert names[:2] == ["lightgbm", "logistic"]
    chosen = config.selective_labels.method
    others = {f"lightgbm-{m}" for m in config.selective_labels.compare if m != chosen}
    assert others and set(names[2:]) == others


def test_calibrated_classifier_follows_sklearn_conventions():
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"a": rng.normal(size=400), "b": rng.normal(size=400)})
    y = (X["a"] + rng.normal(scale=0.5, size=400) > 0).astype(int).to_numpy()
    held = np.arange(400) >= 300
    config = LightGBMConfig(n_estimators=20, n_jobs=1)
    model = CalibratedClassifier(make_lightgbm(config, 1))
    assert model.fit(X, y, calibration_mask=held) is model
    p = model.predict_proba(X)[:, 1]
    assert ((p >= 0) & (p <= 1)).all() and p[X["a"] > 1].mean() > p[X["a"] < -1].mean()
    again = CalibratedClassifier(make_lightgbm(config, 1)).fit(X, y, calibration_mask=held)
    np.testing.assert_array_equal(p, again.predict_proba(X)[:, 1])  # deterministic
    with pytest.raises(ValueError, match="calibration_mask"):
        CalibratedClassifier(make_lightgbm(config, 1)).fit(X, y)


@pytest.mark.parametrize("partition", [0, 3])
def test_rule_baseline_lists_what_the_documented_rule_lists(
    sample_raw, sample_truth, repo_root, catalogue, outcome_catalogue, partition
):
    """Same list as describe's rule (distinct crisis types in 3 months, per 읍면동, key ties)."""
    round_month = parse_month("2026-04")
    spec = load_feature_spec(repo_root / "configs" / "features.yaml")
    inputs = sample_inputs(sample_raw, 10**9, partition)
    features = coerce_feature_types(
        build_features(inputs, round_month, spec, catalogue, outcome_catalogue), outcome_catalogue
    )
    features = features[eligible_mask(features)].reset_index(drop=True)
    capacity = pd.read_parquet(sample_raw / "district_capacity.parquet").set_index("emd_code")[
        "capacity_per_round"
    ]
    rule = RuleBaseline().fit(features)
    cut = cut_list(
        features["household_key"],
        features["emd_code"],
        rule.score_households(features),
        capacity,
        min_score=rule.min_score,
    )
    ours = set(features.loc[cut["listed"].to_numpy(), "household_key"])
    raw = TableLayout(sample_raw)
    code = raw.partitions("households")[partition]
    part = read_partition(raw, None, code)
    keys = pd.Index(part.households["household_key"])
    distinct = (recent_indicator_counts(part.events, keys, round_month, 3) > 0).sum(axis=1)
    theirs = set(rule_list(part.households, distinct, capacity))
    assert ours == theirs and len(ours) > 20
