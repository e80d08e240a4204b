"""Temporal backtests: train on earlier rounds whose labels were resolved by then, test on a round.

Training rows for a labelled (household, round r) use the features as of r (what was known when
that list was made) and only labels resolved before the test round. Test rows are every eligible
household at the test round, with features as of it. Never a random split.

Memory: the training pool reads only the rows it keeps (labelled visits and the chosen negatives,
:func:`build_pool`); a test round is evaluated partition by partition and only aggregates of its
households are kept (:mod:`models.evaluation`).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from models.candidates import (
    CalibratedClassifier,
    LightGBMFitter,
    make_lightgbm,
    make_logistic,
)
from models.evaluation import ORACLE, RULE, RoundHouseholds, TestRoundReader
from models.fairness import AUDIT_SOURCES, add_audit_counts, audit_attributes
from models.gates import CHAMPION_LIST
from models.metrics import calibration_metrics, calibration_noise, gap_closed, paired_bootstrap
from models.mitigation import (
    EQUAL_RECALL,
    NONE,
    REWEIGH,
    ListPolicy,
    cell_codes,
    reweigh_factors,
    setting_name,
)
from models.offpolicy import DR_MAX_WEIGHT, MODEL_TERM, as_metrics, backtest_estimates
from models.service_match import ServiceMatch, round_hit_rates
from pipeline.catalogue import ServiceCatalogue
from pipeline.config import SelectiveLabelsConfig, TrainingConfig
from pipeline.datasets.features import RoundSource
from pipeline.months import format_month
from pipeline.vocabulary import EMD, KEY

log = logging.getLogger(__name__)

__all__ = ["ORACLE", "RULE", "TestRoundReader"]  # re-exported for the stage and the tests

LABEL_COLUMNS = ("label", "resolved_month", "selection_probability", "selection_reason")
SERVICE_LABEL = "service_code"  # the service a linked visit recorded: the service match's label


@dataclass(frozen=True)
class RoundPool:
    """What one past round can contribute to training, as features as of that round."""

    round_month: int
    labelled: pd.DataFrame  # inputs + label, resolved_month, selection_probability, reason
    negatives: pd.DataFrame  # inputs of unlisted eligible households quiet after the round
    negatives_known_from: int  # month from which "quiet afterwards" is known


@dataclass(frozen=True)
class TrainTable:
    """Rows, labels and weights for one fit, with the rows held out for calibration."""

    X: pd.DataFrame
    y: np.ndarray
    weight: np.ndarray
    calibration_mask: np.ndarray
    round_month: np.ndarray
    n_labelled: int
    n_negatives: int
    attributes: pd.DataFrame | None = None  # the rows' audit groups (mitigation), when read

    @property
    def rounds(self) -> list[int]:
        return sorted(set(self.round_month.tolist()))


@dataclass
class BacktestResult:
    """Everything the backtests measured (pure data; the stage wrapper logs it)."""

    metrics: pd.DataFrame  # one row per (round, model)
    summary: pd.DataFrame  # mean and sd per model and metric
    bootstrap: pd.DataFrame | None
    reliability: dict[str, pd.DataFrame]
    curves: dict[str, pd.DataFrame]  # per model: precision at k (round, listed, precision, target)
    labelled: dict[str, pd.DataFrame]  # per model: score, observed, round of labelled households
    audit: pd.DataFrame | None = None  # fairness counts pooled over the rounds (with truth)
    train_rows: dict[str, int] = field(default_factory=dict)
    rounds: list[RoundHouseholds] = field(default_factory=list)
    variants: list[str] = field(default_factory=list)  # mitigation variants of the candidate
    # off-policy estimates per round and list, with intervals and (synthetic data) the truth
    offpolicy: pd.DataFrame | None = None
    # the service match's top-k hit rate per round and matcher (and "all" rounds), with truth
    service_match: pd.DataFrame | None = None


@dataclass(frozen=True)
class MatchSetup:
    """What the service match needs beside the pool: the service catalogue and the indicator
    groups (the rule mapping reads them)."""

    services: ServiceCatalogue
    groups: tuple[str, ...]


def service_match_for(
    pool: list[RoundPool],
    cutoff: int,
    inputs: list[str],
    setup: MatchSetup,
    config: TrainingConfig,
) -> ServiceMatch:
    """The service match fitted on the linked visits resolved before ``cutoff`` (the one code
    path of the backtests, cutoff = the test round, and the registered model's, cutoff = as-of)."""
    parts = []
    for p in pool:
        if p.round_month >= cutoff or SERVICE_LABEL not in p.labelled.columns:
            continue
        known = p.labelled["resolved_month"].astype("float64") < cutoff
        rows = p.labelled[known.to_numpy() & p.labelled[SERVICE_LABEL].notna().to_numpy()]
        if len(rows):
            parts.append(rows[[*inputs, SERVICE_LABEL]])
    linked = (
        pd.concat(parts, ignore_index=True)
        if parts
        else pd.DataFrame(columns=[*inputs, SERVICE_LABEL])
    )
    match = ServiceMatch(setup.services, list(setup.groups), config.service_match, config.seed)
    return match.fit(linked[inputs], linked[SERVICE_LABEL].astype("string"))


def _since_columns(columns: list[str]) -> list[str]:
    return [c for c in columns if c.startswith("group_") and "months_since" in c]


def _min_months_since(features: pd.DataFrame, cap: float) -> pd.Series:
    since = features[_since_columns(list(features.columns))].to_numpy(dtype=np.float64)
    since = np.where(np.isnan(since), cap, since)
    return pd.Series(since.min(axis=1), index=features[KEY].to_numpy())


# The selective-label methods that train on the drawn negatives (SelectiveLabelsConfig).
NEGATIVE_METHODS = ("negatives", "ipw_negatives")


def needs_negatives(config: TrainingConfig) -> bool:
    """Whether some model the backtests or the final fit train learns from drawn negatives:
    the pool then draws and reads them (:func:`build_pool`), else it leaves them out."""
    return any(spec.method in NEGATIVE_METHODS for spec in backtest_plan(config).specs)


def _negative_candidates(
    source: RoundSource,
    r: int,
    listed: pd.Index,
    listed_any: set,
    settings: SelectiveLabelsConfig,
    seed: int,
) -> tuple[int, pd.Index]:
    """Labelled rows of round ``r`` and the keys drawn as candidate negatives, in key order.

    Reads two columns of every household (key, benefit status): the draw is a permutation of
    the eligible unlisted households, so it needs them all, but not their features.
    """
    index = source.features(r, columns=[KEY, "hh__benefit_status"])
    keys = index[KEY]
    n_labelled = int(keys.isin(listed).sum())
    pool = keys[source.eligible(index) & ~keys.isin(listed_any).to_numpy()]
    wanted = math.ceil(settings.negatives_per_label * n_labelled * 6) + 10
    rng = np.random.default_rng([seed, r])
    take = rng.permutation(len(pool))[: min(wanted, len(pool))]
    return n_labelled, pd.Index(pool.iloc[np.sort(take)].to_numpy())


def audit_columns(inputs: list[str]) -> list[str]:
    """The feature columns, besides the model inputs, that the rows' audit groups need."""
    return [c for c in (EMD, *AUDIT_SOURCES) if c not in inputs]


def capped_labels(labels: pd.DataFrame, max_rows: int, seed: int) -> pd.DataFrame:
    """At most ``max_rows`` of ``labels`` (labelled visits, ``round_month`` each): every round
    keeps the same share of its rows (rounded down), a seeded random draw per round, in the
    rows' order. Pure."""
    share = max_rows / len(labels)
    months = labels["round_month"].to_numpy()
    keep = np.zeros(len(labels), dtype=bool)
    for month in np.unique(months):
        rows = np.flatnonzero(months == month)
        wanted = int(len(rows) * share)
        rng = np.random.default_rng([seed, int(month), 1])
        keep[np.sort(rows[rng.permutation(len(rows))[:wanted]])] = True
    return labels[keep]


def build_pool(
    source: RoundSource,
    rounds: list[int],
    final_as_of: int,
    inputs: list[str],
    settings: SelectiveLabelsConfig,
    seed: int,
    cap: float = 36.0,
    extra: list[str] | None = None,
    negatives: bool = True,
    max_rows: int | None = None,
) -> list[RoundPool]:
    """Per past round: labelled visits with features as of the round, and quiet negatives
    (none drawn or read when ``negatives`` is False: no method to be fitted learns from them,
    :func:`needs_negatives`; the labelled rows are the same either way). With more than
    ``max_rows`` labelled visits, :func:`capped_labels` keeps a seeded share of each round's.

    Labels are those known at ``final_as_of`` (each with its resolved month, so a backtest can
    keep only the labels resolved before its test round).

    Negatives of round r: among the eligible households not listed in r, a seeded random draw
    (``6 × negatives_per_label`` per labelled visit, plus 10) in key order; of those, the first
    ``negatives_per_label`` per labelled visit that stayed quiet (no crisis signal) for
    ``quiet_months`` after r, known from the features as of r + quiet_months when that month is
    a round or ``final_as_of``.

    Only the rows kept are read with all their inputs (labelled visits and chosen negatives):
    memory grows with the labelled rows, not with the households of a round. ``extra`` columns
    (the audit groups' sources: :func:`audit_columns`) are read beside the inputs.
    """
    all_labels = source.labels(final_as_of)
    labels = all_labels[all_labels["label"].notna()]
    visits = len(labels)
    if max_rows is not None and visits > max_rows:
        labels = capped_labels(labels, max_rows, seed)
    listed: dict[int, pd.DataFrame] = {}
    n_labelled: dict[int, int] = {}
    candidates: dict[int, pd.Index] = {}
    for r in rounds:
        listed[r] = labels[labels["round_month"] == r].set_index(KEY)
        if negatives:
            listed_any = set(all_labels.loc[all_labels["round_month"] == r, KEY])
            n_labelled[r], candidates[r] = _negative_candidates(
                source, r, listed[r].index, listed_any, settings, seed
            )
    known = set(rounds) | {final_as_of}  # months whose features say who stayed quiet
    by_month: dict[int, list[int]] = {}
    for r in rounds if negatives else []:
        if r + settings.quiet_months in known:
            by_month.setdefault(r + settings.quiet_months, []).append(r)
    chosen_negatives: dict[int, pd.Index] = {r: pd.Index([], dtype="string") for r in rounds}
    for month, of_rounds in sorted(by_month.items()):
        wanted_keys = pd.Index(np.concatenate([candidates[r].to_numpy() for r in of_rounds]))
        columns = _since_columns(source.feature_columns(month))
        since = _min_months_since(
            source.features(month, columns=columns, keys=wanted_keys.unique()), cap
        )
        for r in of_rounds:
            quiet = since.reindex(candidates[r]).to_numpy() > settings.quiet_months
            wanted = math.ceil(settings.negatives_per_label * n_labelled[r])
            chosen_negatives[r] = candidates[r][quiet][:wanted]
    log.info(
        "training pool: %d rounds, %d labelled visits%s%s",
        len(rounds),
        len(labels),
        f" of {visits} (at most {max_rows}: a seeded share of each round's)"
        if len(labels) < visits
        else "",
        "" if negatives else " (no negatives: no fitted method learns from them)",
    )
    result = []
    columns = [KEY, *inputs, *(extra or [])]
    for r in rounds:
        keys = listed[r].index.union(chosen_negatives[r])
        rows = source.features(r, columns=columns, keys=keys)[columns]
        frame = rows[rows[KEY].isin(listed[r].index).to_numpy()].reset_index(drop=True)
        label = (
            listed[r]
            .reindex(frame[KEY])
            .reindex(columns=[*LABEL_COLUMNS, SERVICE_LABEL])
            .reset_index(drop=True)
        )
        # .copy() consolidates the blocks: later concatenations and fits are much faster
        labelled = pd.concat([frame, label], axis=1).copy()
        chosen = rows[rows[KEY].isin(chosen_negatives[r]).to_numpy()].reset_index(drop=True).copy()
        result.append(RoundPool(r, labelled, chosen, r + settings.quiet_months))
    return result


def training_table(
    pool: list[RoundPool],
    cutoff: int,
    method: str,
    settings: SelectiveLabelsConfig,
    inputs: list[str],
    holdout_rounds: int,
) -> TrainTable:
    """Rows known before ``cutoff``; weights per the selective-label ``method``.

    The pool's frames are read, never copied whole (with copy-on-write a column selection and
    a mask that keeps every row are views): at national scale one copy of the labelled rows is
    about 1.5 GB, so only the model inputs are concatenated, once.
    """
    parts: list[pd.DataFrame] = []
    negs: list[pd.DataFrame] = []
    part_rounds: list[np.ndarray] = []
    neg_rounds: list[np.ndarray] = []
    for p in pool:
        if p.round_month >= cutoff:
            continue
        known = p.labelled["resolved_month"].astype("float64").to_numpy() < cutoff
        rows = p.labelled if known.all() else p.labelled[known]
        if len(rows):
            parts.append(rows)
            part_rounds.append(np.full(len(rows), p.round_month, dtype=np.int64))
        if method in NEGATIVE_METHODS and p.negatives_known_from <= cutoff and len(p.negatives):
            negs.append(p.negatives)
            neg_rounds.append(np.full(len(p.negatives), p.round_month, dtype=np.int64))
    if not parts:
        raise ValueError(f"no labels resolved before {format_month(cutoff)}")
    lab_rounds = np.concatenate(part_rounds)
    n_lab = len(lab_rounds)
    n_neg = sum(len(n) for n in negs)
    y_lab = np.concatenate([r["label"].astype("int64").to_numpy() for r in parts])
    if method in ("ipw", "ipw_negatives"):
        # An unknown probability (local discretion: nobody logs how an office chose) cannot
        # be inverted: such visits keep weight 1, as if chosen for sure.
        prob = pd.concat([r["selection_probability"] for r in parts], ignore_index=True)
        prob = prob.astype(float).clip(lower=1.0 / settings.weight_clip)
        w_lab = (1.0 / prob.fillna(1.0)).to_numpy()
        w_lab = w_lab / w_lab.mean()
    else:
        w_lab = np.ones(n_lab)
    label_rounds = np.unique(lab_rounds)  # sorted
    cal_lab = np.isin(lab_rounds, label_rounds[-holdout_rounds:])
    # One concatenation of the inputs: the pool's frames are consolidated, and so is the result.
    X = pd.concat([f[inputs] for f in (*parts, *negs)], ignore_index=True)
    attributes = None
    if set(audit_columns(inputs)) <= set(parts[0].columns):
        attributes = pd.concat([audit_attributes(f) for f in (*parts, *negs)], ignore_index=True)
    return TrainTable(
        X=X,
        y=np.concatenate([y_lab, np.zeros(n_neg, dtype=np.int64)]),
        weight=np.concatenate([w_lab, np.full(n_neg, settings.negative_weight)]),
        calibration_mask=np.concatenate([cal_lab, np.zeros(n_neg, dtype=bool)]),
        round_month=np.concatenate([lab_rounds, *neg_rounds]),
        n_labelled=n_lab,
        n_negatives=n_neg,
        attributes=attributes,
    )


def candidate_inputs(numeric: list[str], categorical: list[str]) -> list[str]:
    """The column order every candidate is fitted with, in the backtests and for the final model
    alike: LightGBM's column sampling (``colsample_bytree``) draws by position, so another order
    is another model."""
    return [*numeric, *categorical]


def candidate_table(
    pool: list[RoundPool],
    cutoff: int,
    method: str,
    config: TrainingConfig,
    numeric: list[str],
    categorical: list[str],
) -> TrainTable:
    """The training rows of a candidate fitted with what was known before ``cutoff``: the one
    code path of the backtest models (cutoff = the test round) and the registered model
    (cutoff = the as-of round)."""
    return training_table(
        pool,
        cutoff,
        method,
        config.selective_labels,
        candidate_inputs(numeric, categorical),
        config.calibration.holdout_rounds,
    )


def fit_candidate(
    name: str,
    table: TrainTable,
    config: TrainingConfig,
    numeric: list[str],
    categorical: list[str],
    fitter: LightGBMFitter | None = None,
) -> CalibratedClassifier:
    """Fit one learned candidate (``logistic`` or ``lightgbm``) with held-out calibration.

    ``fitter`` fits the LightGBM model elsewhere (on a Dask cluster): it gets the training rows
    (not the held-out ones) and returns a fitted ``LGBMClassifier``, which is then calibrated here
    exactly as a model fitted in this process.
    """
    if name == "logistic":
        base = make_logistic(config.logistic, numeric, categorical, config.seed)
    elif name == "lightgbm":
        base = make_lightgbm(config.lightgbm, config.seed)
    else:
        raise ValueError(f"unknown candidate {name!r}")
    prefit = False
    if fitter is not None and name == "lightgbm":
        held = np.asarray(table.calibration_mask, dtype=bool)
        base = fitter.fit(base, table.X[~held], table.y[~held], table.weight[~held])
        prefit = True
    model = CalibratedClassifier(base, method=config.calibration.method, prefit=prefit)
    return model.fit(
        table.X, table.y, sample_weight=table.weight, calibration_mask=table.calibration_mask
    )


@dataclass(frozen=True)
class CandidateSpec:
    """One fitted model of the backtest: a learned candidate, its selective-label method and the
    strength of reweighing in its fit (0: none)."""

    name: str  # as reported, e.g. lightgbm or lightgbm-plain
    kind: str  # logistic or lightgbm
    method: str
    reweigh: float = 0.0


@dataclass(frozen=True)
class BacktestPlan:
    """What the backtests fit and list: fitted models, the lists made from their probabilities
    by a list policy, and the mitigation variants of the registered candidate (each audited)."""

    specs: list[CandidateSpec]
    selections: dict[str, tuple[str, ListPolicy]]
    variants: list[str]


def deployed_policy(config: TrainingConfig) -> ListPolicy:
    """The list policy of the registered model (reweighing lives in the fit: no policy)."""
    m = config.mitigation
    method = m.method if m.method == EQUAL_RECALL else NONE
    return ListPolicy(method, tuple(m.attributes), m.strength)


def reweigh_strength(config: TrainingConfig) -> float:
    """The reweighing strength of the registered model's fit (0 unless ``reweigh``)."""
    m = config.mitigation
    return m.strength if m.method == REWEIGH else 0.0


def backtest_plan(config: TrainingConfig) -> BacktestPlan:
    """The registered candidate with the configured mitigation, and what ``config.compare``
    asks for beside it: the other learned candidate (``candidates``), the compared
    selective-label methods (``selective_labels``), and the registered candidate at every
    compared mitigation method and strength (``mitigation``)."""
    m = config.mitigation
    compare = set(config.compare)
    chosen = config.selective_labels.method
    main = config.candidate
    weight = reweigh_strength(config)
    specs = [CandidateSpec(main, main, chosen, weight)]
    other = "logistic" if main == "lightgbm" else "lightgbm"
    if "candidates" in compare:
        specs.append(CandidateSpec(other, other, chosen, weight))
    if "selective_labels" in compare:
        for method in config.selective_labels.compare:
            if method != chosen:
                specs.append(CandidateSpec(f"{main}-{method}", main, method, weight))
    policy = deployed_policy(config)
    selections: dict[str, tuple[str, ListPolicy]] = {}
    if policy.method == EQUAL_RECALL:
        selections = {spec.name: (spec.name, policy) for spec in specs}
    variants: list[str] = []
    if "mitigation" not in compare:
        return BacktestPlan(specs, selections, variants)
    unmitigated = main  # the registered candidate's fit without reweighing
    if m.method != NONE and (
        NONE in m.compare or (m.method == REWEIGH and EQUAL_RECALL in m.compare)
    ):
        name = f"{main}-unmitigated"
        if m.method == REWEIGH:
            specs.append(CandidateSpec(name, main, chosen, 0.0))
            unmitigated = name
        else:
            selections[name] = (main, ListPolicy(NONE, policy.attributes, 0.0))
        if NONE in m.compare:
            variants.append(name)
    for method in (EQUAL_RECALL, REWEIGH):
        if method not in m.compare:
            continue
        for strength in m.strengths:
            if m.method == method and strength == m.strength:
                continue
            name = f"{main}-{setting_name(method, strength)}"
            if method == EQUAL_RECALL:
                selections[name] = (unmitigated, ListPolicy(method, policy.attributes, strength))
            else:
                specs.append(CandidateSpec(name, main, chosen, strength))
            variants.append(name)
    return BacktestPlan(specs, selections, variants)


def candidate_specs(config: TrainingConfig) -> list[CandidateSpec]:
    """The models the backtests fit (:func:`backtest_plan`)."""
    return backtest_plan(config).specs


def reweighed(table: TrainTable, strength: float, attributes: tuple[str, ...]) -> TrainTable:
    """``table`` with its fitted rows' weights multiplied by the Kamiran-Calders factors of the
    ``attributes`` cells to the power ``strength`` (unchanged at 0)."""
    if strength == 0:
        return table
    if table.attributes is None:
        raise ValueError("reweighing needs the training rows' audit groups (build_pool extra)")
    cells = cell_codes(table.attributes, attributes)
    factors = reweigh_factors(cells, table.y, ~table.calibration_mask)
    return dataclasses.replace(table, weight=table.weight * factors**strength)


def backtest_models(
    pool: list[RoundPool],
    test_round: int,
    config: TrainingConfig,
    numeric: list[str],
    categorical: list[str],
    fitter: LightGBMFitter | None = None,
) -> tuple[dict[str, CalibratedClassifier], dict[str, int]]:
    """Every candidate of the backtest of ``test_round``, fitted on what was known before it.

    Returns the models by name and the number of training rows of each.
    """
    label = format_month(test_round)
    tables: dict[str, TrainTable] = {}
    models: dict[str, CalibratedClassifier] = {}
    rows: dict[str, int] = {}
    for spec in candidate_specs(config):
        if spec.method not in tables:
            tables[spec.method] = candidate_table(
                pool, test_round, spec.method, config, numeric, categorical
            )
        table = reweighed(tables[spec.method], spec.reweigh, tuple(config.mitigation.attributes))
        if len(table.rounds) < config.backtest.min_train_rounds:
            raise ValueError(
                f"test round {label}: only {len(table.rounds)} training rounds "
                f"(min_train_rounds {config.backtest.min_train_rounds})"
            )
        started = time.perf_counter()
        models[spec.name] = fit_candidate(spec.kind, table, config, numeric, categorical, fitter)
        log.info(
            "backtest %s: %s on %d rows (%d labelled) in %.1f s",
            label,
            spec.name,
            len(table.y),
            table.n_labelled,
            time.perf_counter() - started,
        )
        rows[spec.name] = len(table.y)
    return models, rows


def run_backtests(
    pool: list[RoundPool],
    tests: list[TestRoundReader],
    capacity: pd.Series,
    config: TrainingConfig,
    numeric: list[str],
    categorical: list[str],
    fitter: LightGBMFitter | None = None,
    match: MatchSetup | None = None,
    champion: CalibratedClassifier | None = None,
) -> BacktestResult:
    """Fit every candidate per test round, evaluate the round by partition; bootstrap the truth.

    The precision-at-k curves of every round use the list sizes of the first round's. With
    ``match``, each round also fits the service match on the visits known before it and, with
    the truth, measures its top-k hit rate and the rule mapping's on the candidate's list.
    ``champion``: the current champion's model, listed in every test round as
    :data:`CHAMPION_LIST` beside the fitted candidates (the caller passes it only when it learned
    from none of the test rounds), so that the champion gate compares both on the same rounds.
    """
    rows: list[dict] = []
    reliability: dict[str, list[pd.DataFrame]] = {}
    curves: dict[str, list[pd.DataFrame]] = {}
    labelled: dict[str, list[pd.DataFrame]] = {}
    boot_rounds: list[pd.DataFrame] = []
    audits: list[pd.DataFrame] = []
    train_rows: dict[str, int] = {}
    households: list[RoundHouseholds] = []
    offpolicy_rounds: list[tuple[str, pd.DataFrame]] = []
    match_hits: list[tuple[str, pd.DataFrame]] = []
    ks = None
    plan = backtest_plan(config)
    selections = dict(plan.selections)
    champion_policy = getattr(champion, "list_policy_", None)
    if champion_policy is not None and champion_policy.method == EQUAL_RECALL:
        selections[CHAMPION_LIST] = (CHAMPION_LIST, champion_policy)  # listed as it is deployed
    for reader in tests:
        label = format_month(reader.round_month)
        models, fitted_rows = backtest_models(
            pool, reader.round_month, config, numeric, categorical, fitter
        )
        if champion is not None:
            models[CHAMPION_LIST] = champion
        train_rows.update({f"{label}/{name}": n for name, n in fitted_rows.items()})
        matcher = None
        if match is not None:
            inputs = candidate_inputs(numeric, categorical)
            matcher = service_match_for(pool, reader.round_month, inputs, match, config)
        evaluation = reader.evaluate(
            models,
            capacity,
            config.candidate,
            config.calibration.bins,
            ks,
            selections=selections,
            audited=tuple(plan.variants),
            service_match=matcher,
        )
        ks = evaluation.ks
        if evaluation.service_match is not None:
            match_hits.append((label, evaluation.service_match))
        rows.extend(evaluation.metrics)
        for name, table in evaluation.reliability.items():
            reliability.setdefault(name, []).append(table)
        for name, curve in evaluation.curves.items():
            curves.setdefault(name, []).append(curve)
        for name, frame in evaluation.labelled.items():
            labelled.setdefault(name, []).append(frame)
        if evaluation.bootstrap is not None:
            boot_rounds.append(evaluation.bootstrap)
            audits.append(evaluation.audit)
        households.append(evaluation.households)
        if evaluation.offpolicy is not None:
            offpolicy_rounds.append((label, evaluation.offpolicy))
    metrics = pd.DataFrame(rows)
    offpolicy = None
    lists = offpolicy_lists(config)
    if lists and champion is not None:
        lists[CHAMPION_LIST] = MODEL_TERM + config.candidate  # on the same terms as the others
    if offpolicy_rounds and lists:
        offpolicy = backtest_estimates(
            offpolicy_rounds,
            lists,
            samples=config.backtest.bootstrap_samples,
            seed=config.backtest.seed,
            max_weight=DR_MAX_WEIGHT,
        )
        metrics = metrics.merge(as_metrics(offpolicy), on=["round", "model"], how="left")
    pooled = {k: pd.concat(v, ignore_index=True) for k, v in labelled.items()}
    summary = add_pooled_calibration(
        summarise(metrics),
        {name: pooled[name] for name in reliability},
        config.calibration.bins,
        config.backtest.seed,
    )
    bootstrap = None
    if boot_rounds:
        names = [n for n in metrics["model"].unique()]
        bootstrap = paired_bootstrap(
            boot_rounds,
            names,
            reference=RULE,
            oracle=ORACLE,
            samples=config.backtest.bootstrap_samples,
            seed=config.backtest.seed,
            candidate=config.candidate,
        )
    return BacktestResult(
        metrics=metrics,
        summary=summary,
        bootstrap=bootstrap,
        reliability={k: pd.concat(v, ignore_index=True) for k, v in reliability.items()},
        curves={k: pd.concat(v, ignore_index=True) for k, v in curves.items()},
        labelled=pooled,
        audit=add_audit_counts(audits) if audits else None,
        train_rows=train_rows,
        rounds=households,
        variants=list(plan.variants),
        offpolicy=offpolicy,
        service_match=_match_rates(match_hits, config),
    )


def _match_rates(
    hits: list[tuple[str, pd.DataFrame]], config: TrainingConfig
) -> pd.DataFrame | None:
    """Hit rates per round and over every round together ("all"), per matcher."""
    if not hits:
        return None
    samples, seed = config.backtest.bootstrap_samples, config.backtest.seed
    frames = [round_hit_rates(frame, label, samples, seed) for label, frame in hits]
    pooled = pd.concat([frame for _, frame in hits], ignore_index=True)
    frames.append(round_hit_rates(pooled, "all", samples, seed))
    return pd.concat(frames, ignore_index=True)


def offpolicy_lists(config: TrainingConfig) -> dict[str, str]:
    """The lists the off-policy estimates judge (the rule, the learned candidates and the
    compared selective-label methods that :func:`backtest_plan` fits), each with its DR model
    term: the registered candidate's calibrated probabilities for every list, one outcome model
    for all, so that the lists are compared on the same terms (docs/offpolicy.md, "The model
    term"). In issue 20's world it errs less than the logistic candidate's, which was the term
    before: on the living loop's rounds, where the logging policy (the champion and its
    exploration) chooses by the features alone, mean absolute error 0.023 against 0.082; on the
    history, whose visits caseworkers also chose by what the features do not show, 0.094 against
    0.134 (it overrates the candidate's own list there more: +0.10 against +0.05).
    Empty unless ``config.compare`` asks for ``offpolicy``."""
    if "offpolicy" not in config.compare:
        return {}
    weight = reweigh_strength(config)  # the mitigation variants are fitted at other strengths
    names = [spec.name for spec in backtest_plan(config).specs if spec.reweigh == weight]
    return {name: MODEL_TERM + config.candidate for name in [RULE, *names]}


def add_pooled_calibration(
    summary: pd.DataFrame, labelled: dict[str, pd.DataFrame], bins: int, seed: int
) -> pd.DataFrame:
    """``ece_pooled``: the ECE of each probability model over the labelled households of every
    test round together, and ``ece_noise95``: what a perfectly calibrated model shows on as many
    households by chance (:func:`models.metrics.calibration_noise`).

    A round holds a few thousand visits at most: one round's ECE is mostly noise (about 0.03 at
    1,500 visits, 0.1 at 150), so the gate reads the pooled figure.
    """
    out = summary.copy()
    out["ece_pooled"] = np.nan
    out["ece_noise95"] = np.nan
    for name, frame in labelled.items():
        known = frame["observed"].notna().to_numpy()
        scores = frame["score"].to_numpy(dtype=np.float64)[known]
        figures, _ = calibration_metrics(scores, frame["observed"][known], bins)
        at = out["model"] == name
        out.loc[at, "ece_pooled"] = figures["ece"]
        out.loc[at, "ece_noise95"] = calibration_noise(scores, bins, seed=seed)
    return out


def summarise(metrics: pd.DataFrame) -> pd.DataFrame:
    """Mean and standard deviation over rounds of every metric, per model; gap closed added."""
    numeric = metrics.drop(columns=["round"]).groupby("model", sort=False)
    mean = numeric.mean().add_suffix("_mean")
    sd = numeric.std(ddof=1).add_suffix("_sd")
    out = pd.concat([mean, sd], axis=1)
    if {RULE, ORACLE} <= set(out.index) and "truth_emd_precision_mean" in out.columns:
        rule_p = out.loc[RULE, "truth_emd_precision_mean"]
        oracle_p = out.loc[ORACLE, "truth_emd_precision_mean"]
        out["truth_gap_closed"] = [
            gap_closed(p, rule_p, oracle_p) for p in out["truth_emd_precision_mean"]
        ]
        out["truth_lift_over_rule"] = out["truth_emd_precision_mean"] / rule_p
    if RULE in out.index and "observed_emd_precision_mean" in out.columns:
        out["observed_lift_over_rule"] = (
            out["observed_emd_precision_mean"] / out.loc[RULE, "observed_emd_precision_mean"]
        )
    return out.reset_index()
