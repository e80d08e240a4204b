"""The registered model is the model the backtests measured (issue: "A fair, measured champion").

The backtests fitted their candidates with the columns in numeric-then-categorical order, the
final model in the feature spec's order: with ``colsample_bytree`` below 1, LightGBM samples
columns by position, so the registered model was another model than the one the gates, the
fairness audit and the model card describe. Both now go through one code path
(:func:`models.backtest.candidate_table` and :func:`models.backtest.fit_candidate`).
"""

from __future__ import annotations

import numpy as np

from models.backtest import backtest_models, fit_candidate, training_table
from pipeline.catalogues import load_catalogues
from pipeline.datasets.features import FeatureRounds
from pipeline.months import default_as_of
from pipeline.tracking import connect
from pipeline.tracking.models import fetch_model, unpickle_model
from pipeline.tracking.registry import resolve_model
from pipeline.train.fit import input_columns, plan_rounds, training_pool


def test_registered_model_scores_as_the_backtest_model_fitted_on_the_same_rows(scored_sample):
    config = scored_sample.config
    tc = config.training
    assert tc.lightgbm.colsample_bytree < 1.0, "the column order matters only when sampling"
    catalogues = load_catalogues(config)
    as_of = default_as_of(config.window)
    source = FeatureRounds(config, catalogues.outcomes)
    columns = input_columns(catalogues)
    numeric, categorical = columns.numeric, columns.categorical
    rounds, _ = plan_rounds(config, as_of)
    pool = training_pool(config, source, rounds, as_of, columns, catalogues)
    # The backtest's candidate for a test round at the as-of month: trained on the same rows.
    models, _ = backtest_models(pool, as_of, tc, numeric, categorical)
    backtest_model = models[tc.candidate]

    ref = resolve_model(connect(config), tc.model_name, None)
    registered = unpickle_model(fetch_model(ref))
    assert list(registered.feature_names_in_) == list(backtest_model.feature_names_in_)

    features = source.features(as_of)
    features = features[source.eligible(features)].reset_index(drop=True)
    ours = registered.predict_proba(features)[:, 1]
    theirs = backtest_model.predict_proba(features)[:, 1]
    assert len(ours) > 10_000
    np.testing.assert_array_equal(ours, theirs)

    # Not vacuous: the same rows in the feature spec's order (how the final model was fitted
    # before) give another model.
    spec_order = training_table(
        pool,
        as_of,
        tc.selective_labels.method,
        tc.selective_labels,
        columns.inputs,
        tc.calibration.holdout_rounds,
    )
    other = fit_candidate(tc.candidate, spec_order, tc, numeric, categorical)
    assert np.abs(other.predict_proba(features)[:, 1] - ours).max() > 1e-3


def test_comparisons_do_not_change_the_registered_candidate(scored_sample):
    """``training.compare`` adds fits beside the registered candidate; its backtest figures, its
    fairness audit and the final model stay the same (only bootstrap intervals, which resample
    the households on any compared list, may move)."""
    import pandas as pd

    from pipeline.config import COMPARISONS
    from pipeline.train.fit import fit_all

    alone = scored_sample.config.with_overrides(training={"compare": []})
    compared = alone.with_overrides(training={"compare": list(COMPARISONS)})
    source = FeatureRounds(alone, load_catalogues(alone).outcomes)
    as_of = default_as_of(alone.window)
    runs = {name: fit_all(c, source, as_of) for name, c in (("alone", alone), ("all", compared))}
    assert runs["alone"].compared == ()
    assert runs["all"].compared == COMPARISONS
    names = {name: set(run.backtest.metrics["model"]) for name, run in runs.items()}
    main = alone.training.candidate
    assert names["alone"] == {main, "rule", "oracle"}
    assert {"logistic", f"{main}-negatives"} <= names["all"] and runs["all"].tradeoff is not None
    assert runs["alone"].backtest.offpolicy is None and runs["all"].backtest.offpolicy is not None

    def own(run, frame):
        rows = frame[frame["model"].isin([main, "rule"])].reset_index(drop=True)
        return rows[[c for c in rows.columns if "offpolicy" not in c]]

    pd.testing.assert_frame_equal(
        own(runs["alone"], runs["alone"].backtest.metrics),
        own(runs["all"], runs["all"].backtest.metrics),
    )
    pd.testing.assert_frame_equal(runs["alone"].fairness, runs["all"].fairness)
    frame = runs["alone"].train_frame
    model_all = runs["all"].model
    np.testing.assert_array_equal(
        runs["alone"].model.predict_proba(frame.drop(columns=["label", "weight"]))[:, 1],
        model_all.predict_proba(frame.drop(columns=["label", "weight"]))[:, 1],
    )


def test_the_champion_is_scored_on_the_same_test_rounds_as_the_candidate(scored_sample):
    """The champion gate compared a new version's backtest figure with the one the champion's
    run logged on *its* test rounds (in a loop whose findable need falls, an easier figure: one
    retraining in 18 was promoted). A champion passed to the backtests is listed in every test
    round beside the candidate: a champion trained as of the first test round is the model that
    round's backtest fits, so there both lists have the same figures; later rounds differ."""
    from models.gates import CHAMPION_LIST
    from pipeline.months import format_month
    from pipeline.train.fit import fit_all

    config = scored_sample.config.with_overrides(training={"compare": []})
    tc = config.training
    catalogues = load_catalogues(config)
    source = FeatureRounds(config, catalogues.outcomes)
    columns = input_columns(catalogues)
    as_of = default_as_of(config.window)
    rounds, test_rounds = plan_rounds(config, as_of)
    pool = training_pool(config, source, rounds, as_of, columns, catalogues)
    models, _ = backtest_models(pool, test_rounds[0], tc, columns.numeric, columns.categorical)
    champion = models[tc.candidate]  # as a champion trained as of the first test round is

    trained = fit_all(config, source, as_of, catalogues=catalogues, champion=champion)
    metrics = trained.backtest.metrics.set_index(["round", "model"])
    figures = [c for c in metrics.columns if c.startswith(("truth_", "observed_", "ece"))]
    assert "truth_emd_precision" in figures
    first, *later = [format_month(r) for r in test_rounds]
    ours = metrics.loc[(first, CHAMPION_LIST), figures]
    theirs = metrics.loc[(first, tc.candidate), figures]
    assert ours.to_dict() == theirs.to_dict()
    assert any(
        metrics.loc[(r, CHAMPION_LIST), "truth_emd_precision"]
        != metrics.loc[(r, tc.candidate), "truth_emd_precision"]
        for r in later
    )
    summary = trained.backtest.summary.set_index("model")
    champion_rounds = metrics.xs(CHAMPION_LIST, level="model")["truth_emd_precision"]
    assert len(champion_rounds) == len(test_rounds)
    assert summary.loc[CHAMPION_LIST, "truth_emd_precision_mean"] == champion_rounds.mean()
    # the candidate's own figures are those the sample's training logged without a champion
    client = connect(config)
    logged = client.get_run(resolve_model(client, tc.model_name, None).run_id).data.metrics
    for figure in ("truth_emd_precision_mean", "truth_emd_need_found_mean", "ece_pooled"):
        assert summary.loc[tc.candidate, figure] == logged[f"{tc.candidate}.{figure}"], figure
