"""Training on a Dask cluster, and the lean reads that keep training's memory off the households.

Dask: one ``LocalCluster`` (2 worker processes, 1 thread each, loopback only) serves the module.
``outreach --engine dask --scheduler ADDRESS train`` runs on a copy of the session's scored sample,
whose MLflow store already holds the same small training run made with the local engine
(``scored_sample``, conftest ``SMALL_TRAINING``). The Dask run trains every LightGBM model of the
backtests and the final one with ``lightgbm.dask``; its backtest metrics must lie within a stated
tolerance of the local run's.

Lean reads: the training pool read household by household (the rows it keeps) equals the pool
built from whole feature tables, a round's test scores computed partition by partition equal the
scores of the whole round while only aggregates come back, and the MLflow dataset records
(digests) are those MLflow computes on the whole frames.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from conftest import copy_outputs, write_config_file

from features.spec import load_feature_spec, model_input_names
from models import backtest
from models.backtest import (
    LABEL_COLUMNS,
    SERVICE_LABEL,
    build_pool,
    fit_candidate,
    training_table,
)
from models.candidates import CalibratedClassifier
from models.dataset_summary import DatasetSummary
from pipeline.catalogue import load_indicators, load_outcomes
from pipeline.cli import main
from pipeline.config import Config, RuntimeConfig
from pipeline.datasets.features import FeatureRounds
from pipeline.datasets.staged import load_capacity
from pipeline.datasets.truth import truth_files
from pipeline.months import parse_month
from pipeline.tracking import tracking_uri
from pipeline.tracking.datasets import mlflow_digest
from pipeline.train.fit import plan_rounds
from pipeline.vocabulary import KEY, category_levels

pytestmark = pytest.mark.filterwarnings(
    "ignore::UserWarning", "ignore::FutureWarning", "ignore::DeprecationWarning"
)

# Dask against local training: absolute difference of the backtest means over the 3 test rounds.
# A Dask fit is like a fit with another seed (histogram bins found per worker, bagging per worker).
# Measured on the sample with SMALL_TRAINING: local fits with 6 seeds gave truth precision at
# capacity per 읍면동 from 0.656 to 0.696 (this config's seed: 0.696), 4 Dask fits 0.658 to 0.667.
# One household is 0.0055 of a round's 182 slots: 0.06 is 11 households a round, a fifth of the
# model's lead over the rule (0.31). The truth ROC AUC ranks all 19,000 eligible households: local
# and Dask differed by 0.002 (tolerance 0.01); the observed ROC AUC (about 150 visits a round) by
# 0.012 at most (tolerance 0.03). In issue 20's world most households send no signal and are
# ranked by their facts alone: local fits with 4 seeds spread 0.002 in truth ROC AUC (0.8546 to
# 0.8564), Dask differed from local by 0.003 and 0.012 in two runs (2026-12-05): tolerance 0.02.
PRECISION_TOLERANCE = 0.06
TRUTH_AUC_TOLERANCE = 0.02
AUC_TOLERANCE = 0.03


@dataclass(frozen=True)
class Runs:
    config: Config
    client: mlflow.MlflowClient
    local: mlflow.entities.Run
    dask: mlflow.entities.Run
    seconds: float


def _train_runs(client: mlflow.MlflowClient, experiment: str) -> list[mlflow.entities.Run]:
    found = client.get_experiment_by_name(experiment)
    assert found is not None, experiment
    return client.search_runs(
        [found.experiment_id], filter_string="tags.`outreach.stage` = 'train'"
    )


@pytest.fixture(scope="module")
def runs(scored_sample, scheduler, tmp_path_factory) -> Runs:
    """The scored sample's local training run and the same training on the Dask cluster."""
    copy = copy_outputs(scored_sample, tmp_path_factory.mktemp("dask-train"))
    # its own experiment, so that its artifacts are written inside the copy
    config = copy.config.with_overrides(training={"experiment": "welfare-outreach-dask"})
    config_file = write_config_file(config, copy.config_file.with_name("dask.yaml"))
    options = ["--no-progress", "--engine", "dask", "--scheduler", scheduler]
    started = time.monotonic()
    assert main([*options, "--config", str(config_file), "train"]) == 0
    seconds = time.monotonic() - started
    client = mlflow.MlflowClient(tracking_uri(config), registry_uri=tracking_uri(config))
    (local,) = _train_runs(client, scored_sample.config.training.experiment)
    (dask,) = _train_runs(client, "welfare-outreach-dask")
    return Runs(config, client, local, dask, seconds)


def test_the_run_records_the_engine_it_trained_on(runs):
    assert runs.local.data.params["training.engine"] == "local"
    assert runs.local.data.tags["outreach.engine"] == "local"
    params = runs.dask.data.params
    assert params["training.engine"] == "dask"
    assert runs.dask.data.tags["outreach.engine"] == "dask"
    assert params["training.dask_workers"] == "2"
    # everything else is the same configuration
    same = {k: v for k, v in params.items() if k.startswith("training.lightgbm.")}
    assert same == {k: runs.local.data.params[k] for k in same} and len(same) > 5


def test_dask_backtest_metrics_are_within_tolerance_of_local_training(runs):
    local, dask = runs.local.data.metrics, runs.dask.data.metrics
    for method in ("lightgbm", "lightgbm-negatives"):
        precision = f"{method}.truth_emd_precision_mean"
        assert abs(dask[precision] - local[precision]) <= PRECISION_TOLERANCE, method
        auc = f"{method}.truth_roc_auc_mean"
        assert abs(dask[auc] - local[auc]) <= TRUTH_AUC_TOLERANCE, method
        auc = f"{method}.roc_auc_mean"
        assert abs(dask[auc] - local[auc]) <= AUC_TOLERANCE, method
    assert dask["lightgbm.truth_emd_precision_mean"] > dask["rule.truth_emd_precision_mean"]
    # one implementation of everything else: the rule, the oracle and logistic regression
    # (not fitted on Dask) measure exactly the same; their off-policy intervals are not theirs
    # alone (households on any list are resampled, LightGBM's lists too: docs/offpolicy.md)
    others = [
        k
        for k in local
        if k.startswith(("rule.", "oracle.", "logistic.")) and ".offpolicy_" not in k
    ]
    assert len(others) > 30
    assert {k: dask[k] for k in others} == {k: local[k] for k in others}
    print(
        f"\nDask training {runs.seconds:.1f} s; truth precision at capacity "
        f"local {local['lightgbm.truth_emd_precision_mean']:.4f} "
        f"dask {dask['lightgbm.truth_emd_precision_mean']:.4f}; truth ROC AUC "
        f"local {local['lightgbm.truth_roc_auc_mean']:.4f} "
        f"dask {dask['lightgbm.truth_roc_auc_mean']:.4f}; observed ROC AUC "
        f"local {local['lightgbm.roc_auc_mean']:.4f} dask {dask['lightgbm.roc_auc_mean']:.4f}"
    )


def test_the_dask_model_is_registered_loads_and_scores_like_a_local_one(runs):
    name = runs.config.training.model_name
    version = runs.dask.data.tags["outreach.model_version"]
    model = mlflow.sklearn.load_model(f"models:/{name}/{version}")
    local = mlflow.sklearn.load_model(
        f"models:/{name}/{runs.local.data.tags['outreach.model_version']}"
    )
    from lightgbm import LGBMClassifier

    assert isinstance(model, CalibratedClassifier) and model.prefit
    assert type(model.estimator_) is LGBMClassifier  # what scoring expects
    source = FeatureRounds(runs.config, load_outcomes(runs.config.paths.outcomes))
    features = source.features(parse_month("2026-10")).head(2000)
    p = model.predict_proba(features)[:, 1]
    assert p.shape == (2000,) and np.all((p >= 0) & (p <= 1))
    contributions = model.estimator_.booster_.predict(model.prepare(features), pred_contrib=True)
    assert contributions.shape == (2000, len(model.feature_names_in_) + 1)
    # the same ranking, near enough: rank correlation with the local model's probabilities
    # among the households with a crisis signal in the last 12 months, where lists are drawn
    # (the quiet ones, most households of the sample, differ only by their facts: near-ties)
    q = local.predict_proba(features)[:, 1]
    signalled = (features["distinct_types__12m"] > 0).to_numpy()
    assert signalled.sum() > 200
    correlation = pd.Series(p[signalled]).corr(pd.Series(q[signalled]), method="spearman")
    assert correlation > 0.9, correlation


# --- lean reads -------------------------------------------------------------------------------


@dataclass
class Recording:
    """A FeatureRounds that notes the shape of every feature read."""

    source: FeatureRounds
    reads: list[tuple[int, int, int]]  # (as_of, rows, columns)

    def features(self, as_of, columns=None, keys=None):
        frame = self.source.features(as_of, columns=columns, keys=keys)
        self.reads.append((as_of, len(frame), frame.shape[1]))
        return frame

    def __getattr__(self, name):
        return getattr(self.source, name)


def _full_read_pool(source, rounds, final_as_of, inputs, settings, seed, cap):
    """The training pool built from whole feature tables (as training did before lean reads)."""

    def min_since(features):
        columns = [c for c in features.columns if c.startswith("group_") and "months_since" in c]
        since = features[columns].to_numpy(dtype=np.float64)
        since = np.where(np.isnan(since), cap, since)
        return pd.Series(since.min(axis=1), index=features[KEY].to_numpy())

    all_labels = source.labels(final_as_of)
    labels = all_labels[all_labels["label"].notna()]
    since_by_month, labelled, candidates = {}, {}, {}
    for r in rounds:
        features = source.features(r)
        since_by_month[r] = min_since(features)
        listed = labels[labels["round_month"] == r].set_index(KEY)
        frame = features[features[KEY].isin(listed.index)].reset_index(drop=True)
        extra = (
            listed.reindex(frame[KEY])
            .reindex(columns=[*LABEL_COLUMNS, SERVICE_LABEL])
            .reset_index(drop=True)
        )
        labelled[r] = pd.concat([frame[[KEY, *inputs]], extra], axis=1)
        listed_any = set(all_labels.loc[all_labels["round_month"] == r, KEY])
        pool = features[source.eligible(features) & ~features[KEY].isin(listed_any).to_numpy()]
        wanted = math.ceil(settings.negatives_per_label * len(labelled[r]) * 6) + 10
        rng = np.random.default_rng([seed, r])
        take = rng.permutation(len(pool))[: min(wanted, len(pool))]
        candidates[r] = pool.iloc[np.sort(take)][[KEY, *inputs]].reset_index(drop=True)
    if final_as_of not in since_by_month:
        since_by_month[final_as_of] = min_since(source.features(final_as_of))
    negatives = {}
    for r in rounds:
        since = since_by_month.get(r + settings.quiet_months)
        negatives[r] = candidates[r].iloc[0:0]
        if since is not None:
            quiet = since.reindex(candidates[r][KEY]).to_numpy() > settings.quiet_months
            wanted = math.ceil(settings.negatives_per_label * len(labelled[r]))
            negatives[r] = candidates[r][quiet].head(wanted).reset_index(drop=True)
    return labelled, negatives


@dataclass(frozen=True)
class Setting:
    config: Config
    source: FeatureRounds
    rounds: list[int]
    test_rounds: list[int]
    as_of: int
    inputs: list[str]
    numeric: list[str]
    categorical: list[str]
    levels: dict[str, list[str]]
    cap: float


@pytest.fixture(scope="module")
def setting(scored_sample) -> Setting:
    """The scored sample's feature folders (every round is built there), read only."""
    config = scored_sample.config
    outcomes = load_outcomes(config.paths.outcomes)
    spec = load_feature_spec(config.paths.features)
    inputs = model_input_names(spec, load_indicators(config.paths.indicators))
    levels = category_levels(outcomes)
    as_of = parse_month(scored_sample.as_of)
    rounds, test_rounds = plan_rounds(config, as_of)
    return Setting(
        config,
        FeatureRounds(config, outcomes),
        rounds,
        test_rounds,
        as_of,
        inputs,
        [c for c in inputs if c not in levels],
        [c for c in inputs if c in levels],
        levels,
        float(spec.months_since_cap),
    )


def test_a_pool_without_negatives_reads_none_and_keeps_the_same_labelled_rows(setting):
    """When no fitted method learns from drawn negatives (the default ``plain`` without the
    selective-label comparison), the pool neither draws nor reads them: only the labelled rows'
    read per round (at 23 M households the negatives doubled the pool's memory)."""
    from models.backtest import needs_negatives

    tc = setting.config.training
    args = (setting.rounds, setting.as_of, setting.inputs, tc.selective_labels, tc.seed)
    with_negatives = build_pool(setting.source, *args, cap=setting.cap)
    recording = Recording(setting.source, [])
    without = build_pool(recording, *args, cap=setting.cap, negatives=False)
    for a, b in zip(with_negatives, without, strict=True):
        pd.testing.assert_frame_equal(a.labelled, b.labelled)
        assert len(b.negatives) == 0 and list(b.negatives.columns) == list(a.negatives.columns)
    assert [rows for _, rows, _ in recording.reads] == [len(p.labelled) for p in without]
    plain = tc.model_copy(update={"compare": ()})
    assert plain.selective_labels.method == "plain" and not needs_negatives(plain)
    assert needs_negatives(tc.model_copy(update={"compare": ("selective_labels",)}))
    chosen = plain.selective_labels.model_copy(update={"method": "negatives"})
    assert needs_negatives(plain.model_copy(update={"selective_labels": chosen}))


def test_a_capped_pool_keeps_a_seeded_share_of_every_rounds_visits(setting):
    """Above ``training.pool_max_rows`` labelled visits, each round keeps the same share of its
    own, drawn at random with the training seed: the same draw every time, rows of the full
    pool, no round left out; below it the pool is untouched."""
    from models.backtest import capped_labels

    tc = setting.config.training
    args = (setting.rounds, setting.as_of, setting.inputs, tc.selective_labels, tc.seed)
    full = build_pool(setting.source, *args, cap=setting.cap, negatives=False)
    visits = sum(len(p.labelled) for p in full)
    assert tc.pool_max_rows > visits  # the sample's pool is never capped
    same = build_pool(setting.source, *args, cap=setting.cap, negatives=False, max_rows=visits)
    for a, b in zip(full, same, strict=True):
        pd.testing.assert_frame_equal(a.labelled, b.labelled)
    half = build_pool(setting.source, *args, cap=setting.cap, negatives=False, max_rows=visits // 2)
    kept = sum(len(p.labelled) for p in half)
    assert visits // 2 - len(full) <= kept <= visits // 2
    for a, b in zip(full, half, strict=True):
        assert abs(len(b.labelled) - len(a.labelled) / 2) <= 1
        assert set(b.labelled[KEY]) <= set(a.labelled[KEY])
    labels = setting.source.labels(setting.as_of)
    labels = labels[labels["label"].notna()]
    once, again = capped_labels(labels, 1000, 7), capped_labels(labels, 1000, 7)
    pd.testing.assert_frame_equal(once, again)
    assert not capped_labels(labels, 1000, 8).index.equals(once.index)
    assert set(once["round_month"]) == set(labels["round_month"])


def test_the_lean_training_pool_equals_the_pool_read_from_whole_tables(setting):
    tc = setting.config.training
    args = (setting.rounds, setting.as_of, setting.inputs, tc.selective_labels, tc.seed)
    recording = Recording(setting.source, [])
    pool = build_pool(recording, *args, cap=setting.cap)
    labelled, negatives = _full_read_pool(setting.source, *args, cap=setting.cap)
    assert [p.round_month for p in pool] == setting.rounds
    for p in pool:
        pd.testing.assert_frame_equal(p.labelled, labelled[p.round_month])
        pd.testing.assert_frame_equal(p.negatives, negatives[p.round_month])
    assert sum(len(p.negatives) for p in pool) > 1000  # the negatives method has rows to use
    # so the training tables (rows, values, weights, held-out rows) are the same too
    method = tc.selective_labels.method
    full = [
        type(p)(
            p.round_month, labelled[p.round_month], negatives[p.round_month], p.negatives_known_from
        )
        for p in pool
    ]
    for cutoff in (setting.test_rounds[0], setting.as_of):
        lean_table = training_table(pool, cutoff, method, tc.selective_labels, setting.inputs, 1)
        full_table = training_table(full, cutoff, method, tc.selective_labels, setting.inputs, 1)
        pd.testing.assert_frame_equal(lean_table.X, full_table.X)
        np.testing.assert_array_equal(lean_table.y, full_table.y)
        np.testing.assert_array_equal(lean_table.weight, full_table.weight)
        np.testing.assert_array_equal(lean_table.calibration_mask, full_table.calibration_mask)
    # no read held a round's households with their inputs: reads of all inputs are of kept rows
    households = len(setting.source.features(setting.as_of, columns=[KEY]))
    kept = max(len(p.labelled) + len(p.negatives) for p in pool)
    wide = [rows for _, rows, columns in recording.reads if columns > len(setting.inputs)]
    # narrow: the key and a few columns (the groups' months since the last signal: 10 groups)
    narrow = [(rows, columns) for _, rows, columns in recording.reads if columns <= 20]
    assert len(wide) == len(setting.rounds) and max(wide) <= kept < households / 20
    assert len(wide) + len(narrow) == len(recording.reads)
    # the key and benefit status of every household (the seeded draw of negatives), and the
    # quiet-window columns of the drawn candidates (6 per labelled visit)
    assert max(rows for rows, columns in narrow if columns == 2) == households
    assert max(rows for rows, columns in narrow if columns > 2) < households / 3


def test_a_test_round_evaluated_by_partition_keeps_aggregates_only(setting):
    """Scores equal scoring the whole round; what comes back is aggregates and labelled visits.

    (Every metric equals the whole-frame evaluation's: tests/test_models_backtest.py.)
    """
    tc = setting.config.training.model_copy(
        update={
            "lightgbm": setting.config.training.lightgbm.model_copy(update={"n_estimators": 20})
        }
    )
    args = (setting.rounds, setting.as_of, setting.inputs, tc.selective_labels, tc.seed)
    pool = build_pool(setting.source, *args, cap=setting.cap)
    round_month = setting.test_rounds[-1]
    table = training_table(pool, round_month, "negatives", tc.selective_labels, setting.inputs, 1)
    model = fit_candidate("lightgbm", table, tc, setting.numeric, setting.categorical)
    reader = backtest.TestRoundReader(  # imported by module: pytest collects Test* names
        setting.source,
        round_month,
        setting.as_of,
        setting.inputs,
        setting.levels,
        truth_files=tuple(truth_files(setting.config)),
        runtime=RuntimeConfig(progress=False),
    )
    result = reader.evaluate({"lightgbm": model}, load_capacity(setting.config), "lightgbm")
    whole = setting.source.features(round_month)
    whole = whole[setting.source.eligible(whole)].reset_index(drop=True)
    households = len(whole)
    assert result.households.ordered and result.households.total == households
    # the labelled visits' scores are those of the whole round scored at once
    labels = setting.source.labels(setting.as_of)
    own = labels[(labels["round_month"] == round_month) & labels["label"].notna()]
    visited = whole[KEY].isin(own[KEY]).to_numpy()
    np.testing.assert_array_equal(
        result.labelled["lightgbm"]["score"], model.predict_proba(whole[visited])[:, 1]
    )
    # what is kept: aggregates, the labelled visits, the households on some list (no keys)
    assert len(result.labelled["lightgbm"]) < households / 20
    assert len(result.bootstrap) < households / 20 and KEY not in result.bootstrap.columns
    assert len(result.audit) < 100 and all(len(c) == len(result.ks) for c in result.curves.values())
    # the MLflow record of the round's inputs is the one MLflow computes on the whole frame
    from mlflow.data.digest_utils import compute_pandas_digest

    from pipeline.train.fit import round_input_rows

    summary, proxy_rows = round_input_rows(
        setting.source, result.households, setting.inputs, 300, tc.seed
    )
    X = whole[setting.inputs]
    assert summary.rows == len(X) and mlflow_digest(summary) == compute_pandas_digest(X)
    pd.testing.assert_series_equal(summary.missing, X.isna().any(), check_names=False)
    assert len(proxy_rows) == 300 and proxy_rows[KEY].is_monotonic_increasing
    from models.fairness import proxy_sample

    expected = whole[KEY].iloc[proxy_sample(households, 300, tc.seed)].to_numpy()
    np.testing.assert_array_equal(proxy_rows[KEY].to_numpy(), expected)


def test_the_training_frame_record_equals_mlflows(setting):
    from mlflow.data.digest_utils import compute_pandas_digest

    frame = setting.source.features(setting.rounds[0]).head(3000)
    frame.loc[frame.index[:5], "hh__tenure"] = None  # a missing category is not all text
    summary = DatasetSummary.of(frame)
    assert mlflow_digest(summary) == compute_pandas_digest(frame)
    assert not summary.text["hh__tenure"] and summary.text["emd_code"]


def test_summaries_refuse_too_few_first_rows():
    frame = pd.DataFrame({"a": np.arange(20_000.0)})
    with pytest.raises(ValueError, match="first rows"):
        DatasetSummary.from_parts(frame.head(100), len(frame), [])


def test_the_local_engine_is_used_without_a_scheduler(tmp_path: Path):
    from pipeline.train.distributed import lightgbm_fitter

    with lightgbm_fitter(RuntimeConfig(engine="local")) as fitter:
        assert fitter is None
