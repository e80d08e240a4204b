"""The scorer's own model input: identical scores and contributions to the model's DataFrame path.

Scoring builds LightGBM's input matrix itself, chunk by chunk, from only the columns the trees
split on (pipeline.score.contrib.FrameScorer). These tests hold it to the model's own
``predict_proba`` and to ``pred_contrib`` on the whole frame, bit for bit.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.candidates import CalibratedClassifier, make_logistic
from pipeline.catalogue import load_outcomes
from pipeline.config import LogisticConfig
from pipeline.datasets import OutputLayout, TableLayout
from pipeline.score.contrib import FrameScorer, contributions, used_inputs
from pipeline.score.reasons import attribute_columns
from pipeline.tracking import connect
from pipeline.tracking.models import fetch_model, unpickle_model
from pipeline.tracking.registry import resolve_model
from pipeline.vocabulary import coerce_feature_types


@pytest.fixture(scope="module")
def champion_and_features(scored_sample):
    """The scored sample's champion (through MLflow) and its round's features, all columns."""
    config = scored_sample.config
    ref = resolve_model(connect(config), config.training.model_name, None)
    model = unpickle_model(fetch_model(ref))
    layout = TableLayout(OutputLayout(config.paths.output_root).features(scored_sample.as_of))
    outcomes = load_outcomes(config.paths.outcomes)
    frames = [
        pd.read_parquet(layout.partition_file("features", code))
        for code in layout.partitions("features")
    ]
    features = coerce_feature_types(pd.concat(frames, ignore_index=True), outcomes)
    return model, features, outcomes


def test_the_champion_is_lightgbm_and_ignores_some_inputs(champion_and_features):
    model, _, _ = champion_and_features
    used = used_inputs(model)
    assert FrameScorer(model, pd.DataFrame()).booster is not None
    assert 0 < len(used) < len(model.feature_names_in_)


@pytest.mark.parametrize("chunk_rows", [FrameScorer.CHUNK_ROWS, 997])
def test_scores_and_contributions_equal_the_models_own_bit_for_bit(
    champion_and_features, monkeypatch, chunk_rows
):
    model, features, _ = champion_and_features
    monkeypatch.setattr(FrameScorer, "CHUNK_ROWS", chunk_rows)
    expected = model.predict_proba(features)[:, 1]
    positions = np.arange(0, len(features), 37)
    expected_contrib = contributions(model, features.iloc[positions])
    scorer = FrameScorer(model, features)
    assert np.array_equal(scorer.scores(), expected)
    assert np.array_equal(scorer.contributions(positions), expected_contrib)


def test_reading_only_the_used_columns_changes_nothing(champion_and_features):
    model, features, _ = champion_and_features
    kept = [c for c in features.columns if c in {*used_inputs(model), "household_key"}]
    lean = features[kept]
    assert len(lean.columns) < len(features.columns)
    positions = np.arange(0, len(features), 11)
    full, partial = FrameScorer(model, features), FrameScorer(model, lean)
    assert np.array_equal(partial.scores(), full.scores())
    got = partial.contributions(positions)
    assert np.array_equal(got, full.contributions(positions))
    unused = [i for i, c in enumerate(model.feature_names_in_) if c not in kept]
    assert not got[:, unused].any()  # TreeSHAP gives an input no tree reads exactly 0


# pandas 4 will refuse a categorical built from unknown values: its warning is an error here.
@pytest.mark.filterwarnings("error::pandas.errors.Pandas4Warning")
def test_missing_and_unknown_categories_are_coded_as_lightgbm_codes_them(champion_and_features):
    model, features, _ = champion_and_features
    column = next(c for c in model.categories_ if c in used_inputs(model))
    rows = features.iloc[:300].copy()
    text = rows[column].astype("string")
    text.iloc[::3] = pd.NA
    text.iloc[1::3] = "a level never seen in training"
    rows[column] = text  # plain text: both paths must map it to the training levels
    assert np.array_equal(FrameScorer(model, rows).scores(), model.predict_proba(rows)[:, 1])


def test_a_logistic_model_is_scored_through_its_own_pipeline(champion_and_features):
    champion, features, _ = champion_and_features
    inputs = list(champion.feature_names_in_)
    categorical = [c for c in inputs if c in champion.categories_]
    numeric = [c for c in inputs if c not in categorical]
    X = features[inputs]
    champion_scores = champion.predict_proba(features)[:, 1]
    y = champion_scores > np.median(champion_scores)  # any labels will do: this is about scoring
    held = np.arange(len(X)) % 5 == 0
    logistic = CalibratedClassifier(
        make_logistic(LogisticConfig(max_iter=200), numeric, categorical, 0)
    ).fit(X, y.astype(int), calibration_mask=held)
    scorer = FrameScorer(logistic, features)
    assert scorer.booster is None
    assert used_inputs(logistic) == inputs
    assert np.array_equal(scorer.scores(), logistic.predict_proba(features)[:, 1])
    positions = np.arange(0, len(features), 101)
    assert np.array_equal(
        scorer.contributions(positions), contributions(logistic, features.iloc[positions])
    )


def test_reasons_may_show_only_attribute_columns():
    columns = ["household_key", "hh__size", "history__visits", "ind__X__6m", "context__rural"]
    assert attribute_columns(columns) == ["hh__size", "history__visits", "context__rural"]
