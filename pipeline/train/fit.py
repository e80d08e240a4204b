"""The pure part of ``outreach train``: backtests, the final model and the fairness audit.

Reads the feature rounds through a :class:`~pipeline.datasets.features.RoundSource`; writes no
file and logs nothing (the stage wrapper does, through :mod:`pipeline.tracking`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.spec import model_input_names
from models.backtest import (
    BacktestResult,
    MatchSetup,
    RoundPool,
    TestRoundReader,
    audit_columns,
    backtest_plan,
    build_pool,
    candidate_inputs,
    candidate_table,
    deployed_policy,
    fit_candidate,
    needs_negatives,
    reweigh_strength,
    reweighed,
    run_backtests,
    service_match_for,
)
from models.candidates import CalibratedClassifier, LightGBMFitter
from models.dataset_summary import DIGEST_ROWS, DatasetSummary
from models.evaluation import RoundHouseholds, household_keys
from models.fairness import fairness_from_counts, proxy_check_rows, proxy_sample
from models.gates import gate_metric
from models.mitigation import EQUAL_RECALL, setting_name, tradeoff_row
from pipeline.catalogues import Catalogues, load_catalogues
from pipeline.config import Config
from pipeline.datasets.features import CachedSource, RoundSource
from pipeline.datasets.raw import retention_cut
from pipeline.datasets.staged import load_capacity
from pipeline.datasets.truth import truth_available, truth_covers, truth_files
from pipeline.errors import DataError
from pipeline.months import format_month
from pipeline.train.distributed import engine_of
from pipeline.vocabulary import KEY, category_levels

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Trained:
    """Results of the pure part of training (before anything is logged)."""

    as_of: int
    rounds: list[int]
    test_rounds: list[int]
    inputs: list[str]
    backtest: BacktestResult
    model: CalibratedClassifier
    final_rows: int
    final_labelled: int
    final_negatives: int
    final_rounds: list[int]
    fairness: pd.DataFrame | None
    fairness_rule: pd.DataFrame | None
    proxy: pd.DataFrame | None
    tradeoff: pd.DataFrame | None  # the registered candidate under each mitigation setting
    variant_fairness: dict[str, pd.DataFrame]  # the fairness table of each other setting
    example: pd.DataFrame
    train_frame: pd.DataFrame
    test_summaries: dict[int, DatasetSummary]  # each test round's model inputs, for MLflow
    engine: str = "local"  # where LightGBM was fitted: local or dask
    compared: tuple[str, ...] = ()  # what the backtests measured beside it (training.compare)


def plan_rounds(config: Config, as_of: int) -> tuple[list[int], list[int]]:
    """Past rounds before ``as_of`` and the last K of them as test rounds."""
    cut = retention_cut(config)  # rounds older than the retention period are not rebuilt
    rounds = [r for r in config.window.round_months() if cut <= r < as_of]
    bt = config.training.backtest
    need = bt.min_train_rounds + config.training.calibration.holdout_rounds + bt.test_rounds
    if len(rounds) < need:
        raise DataError(
            f"train as of {format_month(as_of)}: {len(rounds)} past rounds within the retention "
            f"period (from {format_month(cut)}), need at least {need} "
            "(backtest.min_train_rounds + calibration.holdout_rounds + backtest.test_rounds)"
        )
    return rounds, rounds[-bt.test_rounds :]


def _example_row(X: pd.DataFrame) -> pd.DataFrame:
    """A made-up input row (medians and most frequent levels), not any household's data."""
    row = {}
    for column in X.columns:
        values = X[column]
        if isinstance(values.dtype, pd.CategoricalDtype):
            mode = values.mode(dropna=True)
            row[column] = pd.Categorical(
                [mode.iloc[0] if len(mode) else values.cat.categories[0]],
                categories=values.cat.categories,
            )
        else:
            median = values.median()
            row[column] = np.array([0.0 if pd.isna(median) else median], dtype=values.dtype)
    return pd.DataFrame(row)


def round_input_rows(
    source: RoundSource, test: RoundHouseholds, inputs: list[str], proxy: int, seed: int
) -> tuple[DatasetSummary, pd.DataFrame]:
    """The round's MLflow dataset summary and the proxy check's rows, by one lean read.

    Both need the model inputs of a few households only: the first rows in key order (the
    digest) and a seeded sample (the proxy check), so only those rows are read again.
    """
    rows = test.total
    head_at = np.arange(min(DIGEST_ROWS, rows))
    sample_at = proxy_sample(rows, proxy, seed)
    wanted_at = np.union1d(head_at, sample_at)
    keys = pd.Series(household_keys(test, wanted_at), index=wanted_at, dtype="string")
    head, sample = keys.loc[head_at], keys.loc[sample_at]
    found = source.features(test.round_month, keys=pd.Index(keys.unique()))
    found = found[source.eligible(found)].set_index(KEY, drop=False)
    summary = DatasetSummary.from_parts(
        found.loc[head, inputs].reset_index(drop=True), rows, test.input_flags
    )
    return summary, found.loc[sample].reset_index(drop=True)


@dataclass(frozen=True)
class InputColumns:
    """The model inputs of the feature spec, and the same split into numeric and categorical
    (the order every candidate is fitted with: :func:`models.backtest.candidate_inputs`)."""

    inputs: list[str]
    numeric: list[str]
    categorical: list[str]


def input_columns(catalogues: Catalogues) -> InputColumns:
    inputs = model_input_names(catalogues.features, catalogues.indicators)
    levels = category_levels(catalogues.outcomes)
    return InputColumns(
        inputs,
        numeric=[c for c in inputs if c not in levels],
        categorical=[c for c in inputs if c in levels],
    )


def training_pool(
    config: Config,
    source: RoundSource,
    rounds: list[int],
    as_of: int,
    columns: InputColumns,
    catalogues: Catalogues,
) -> list[RoundPool]:
    """The labelled rows and candidate negatives of the past ``rounds`` known at ``as_of``."""
    tc = config.training
    return build_pool(
        source,
        rounds,
        as_of,
        columns.inputs,
        tc.selective_labels,
        tc.seed,
        cap=float(catalogues.features.months_since_cap),
        extra=audit_columns(columns.inputs),
        negatives=needs_negatives(tc),
        max_rows=tc.pool_max_rows,
    )


def mitigation_tradeoff(
    config: Config, result: BacktestResult, fairness: pd.DataFrame
) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    """One row per mitigation setting of the registered candidate (the registered setting first):
    truth precision and need found at capacity, fairness flags and the largest disparities; and
    the fairness table of every other setting, by list name."""
    tc = config.training
    m = tc.mitigation
    registered = setting_name(m.method, m.strength)
    attributes = tuple(m.attributes)
    rows = [tradeoff_row(tc.candidate, registered, result.summary, fairness, attributes, True)]
    tables = {}
    for name in backtest_plan(tc).variants:
        tables[name] = fairness_from_counts(
            result.audit, tc.fairness, f"listed_{name}", seed=tc.backtest.seed
        )
        setting = name.removeprefix(f"{tc.candidate}-")
        rows.append(tradeoff_row(name, setting, result.summary, tables[name], attributes))
    return pd.DataFrame(rows), tables


def compared(config: Config, has_truth: bool) -> tuple[str, ...]:
    """What the backtests measure beside the registered candidate: ``training.compare``, and
    the off-policy estimates whenever the gates read them (:func:`models.gates.gate_metric`)."""
    tc = config.training
    wanted = list(tc.compare)
    reads_dr = gate_metric(tc.gates.metric, has_truth) == "offpolicy_dr_precision_emd"
    if reads_dr and "offpolicy" not in wanted:
        wanted.append("offpolicy")
    return tuple(wanted)


def fit_all(
    config: Config,
    source: RoundSource,
    as_of: int,
    fitter: LightGBMFitter | None = None,
    catalogues: Catalogues | None = None,
    champion: CalibratedClassifier | None = None,
) -> Trained:
    """Backtests, the final model and the fairness audit: no tracking, no files.

    ``fitter`` fits the LightGBM candidates elsewhere (``pipeline.train.distributed``, on Dask),
    in the backtests and for the final model alike, so that the backtest metrics describe how the
    registered model was trained. Test rounds are scored on ``config.runtime``'s engine.
    ``champion``: the current champion's model, scored on the same test rounds
    (:func:`models.backtest.run_backtests`).
    """
    catalogues = catalogues or load_catalogues(config)
    columns = input_columns(catalogues)
    inputs, numeric, categorical = columns.inputs, columns.numeric, columns.categorical
    levels = category_levels(catalogues.outcomes)
    rounds, test_rounds = plan_rounds(config, as_of)
    source = CachedSource(source)
    log.info(
        "train as of %s: %d past rounds, test rounds %s",
        format_month(as_of),
        len(rounds),
        ", ".join(format_month(r) for r in test_rounds),
    )
    tc = config.training
    pool = training_pool(config, source, rounds, as_of, columns, catalogues)
    has_truth = truth_available(config)
    if has_truth and not truth_covers(config, test_rounds):
        # Scoring every household as "not in need" would make truth metrics (and gates) wrong.
        log.warning(
            "the hidden truth does not cover the test rounds %s: evaluating on observed labels",
            ", ".join(format_month(r) for r in test_rounds),
        )
        has_truth = False
    truth = tuple(truth_files(config)) if has_truth else None
    config = config.with_overrides(training={"compare": list(compared(config, has_truth))})
    tc = config.training
    readers = [
        TestRoundReader(
            source,
            r,
            as_of,
            inputs,
            levels,
            truth_files=truth,
            runtime=config.runtime,
            offpolicy="offpolicy" in tc.compare,
        )
        for r in test_rounds
    ]
    capacity = load_capacity(config)
    setup = MatchSetup(catalogues.services, tuple(catalogues.indicators.groups))
    result = run_backtests(
        pool, readers, capacity, tc, numeric, categorical, fitter, setup, champion=champion
    )
    # The registered model is fitted exactly as the backtest models were (same rows up to the
    # cutoff, same column order, same code path): the model the gates judged.
    table = candidate_table(pool, as_of, tc.selective_labels.method, tc, numeric, categorical)
    table = reweighed(table, reweigh_strength(config.training), tuple(tc.mitigation.attributes))
    model = fit_candidate(tc.candidate, table, tc, numeric, categorical, fitter)
    # The service match travels with the registered model (fitted as the backtests' were).
    model.service_match_ = service_match_for(
        pool, as_of, candidate_inputs(numeric, categorical), setup, tc
    )
    log.info("service match on %d linked visits", model.service_match_.n_labels_)
    policy = deployed_policy(config.training)
    if policy.method == EQUAL_RECALL:
        model.list_policy_ = policy  # scoring lists households as the backtests measured
    log.info("final %s model on %d rows (mitigation: %s)", tc.candidate, len(table.y), policy)
    fairness = fairness_rule = tradeoff = None
    variant_fairness: dict[str, pd.DataFrame] = {}
    if result.audit is not None:
        seed = tc.backtest.seed
        fairness = fairness_from_counts(result.audit, tc.fairness, "listed_model", seed=seed)
        fairness_rule = fairness_from_counts(result.audit, tc.fairness, "listed_rule", seed=seed)
        if "mitigation" in tc.compare:
            tradeoff, variant_fairness = mitigation_tradeoff(config, result, fairness)
    summaries: dict[int, DatasetSummary] = {}
    proxy = None
    for test in result.rounds:
        last = test is result.rounds[-1]  # the proxy check uses the latest test round
        sample = tc.fairness.proxy_sample if last else 0
        summaries[test.round_month], proxy_rows = round_input_rows(
            source, test, inputs, sample, tc.seed
        )
        if last:
            proxy = proxy_check_rows(proxy_rows, inputs, tc.seed)
    train_frame = table.X.assign(label=table.y, weight=table.weight)
    return Trained(
        as_of=as_of,
        rounds=rounds,
        test_rounds=test_rounds,
        inputs=inputs,
        backtest=result,
        model=model,
        final_rows=len(table.y),
        final_labelled=table.n_labelled,
        final_negatives=table.n_negatives,
        final_rounds=table.rounds,
        fairness=fairness,
        fairness_rule=fairness_rule,
        proxy=proxy,
        tradeoff=tradeoff,
        variant_fairness=variant_fairness,
        example=_example_row(table.X),
        train_frame=train_frame,
        test_summaries=summaries,
        engine=engine_of(fitter),
        compared=tc.compare,
    )
