"""Temporal backtests: train on earlier rounds whose labels were resolved by then, test on a round.

Training rows for a labelled (household, round r) use the features as of r (what was known when
that list was made) and only labels resolved before the test round. Test rows are every eligible
household at the test round, with features as of it. Never a random split.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from models.candidates import CalibratedClassifier, RuleBaseline, make_lightgbm, make_logistic
from models.data import EMD, KEY, RoundSource, eligible_mask, truth_for_round
from models.metrics import (
    calibration_metrics,
    count_list,
    counts_to_metrics,
    cut_list,
    gap_closed,
    ranking_metrics,
)
from pipeline.config import SelectiveLabelsConfig, TrainingConfig
from pipeline.months import format_month

log = logging.getLogger(__name__)

RULE = "rule"
ORACLE = "oracle"
LABEL_COLUMNS = ("label", "resolved_month", "selection_probability", "selection_reason")


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

    @property
    def rounds(self) -> list[int]:
        return sorted(set(self.round_month.tolist()))


@dataclass
class TestRound:
    """One test round: eligible households' features, observed labels and (synthetic) truth."""

    round_month: int
    features: pd.DataFrame
    observed: pd.Series  # Int8 label of the test round's own visits (NA: no label)
    truth: pd.DataFrame | None  # in_need, hardship (aligned on features' rows)


@dataclass
class BacktestResult:
    """Everything the backtests measured (pure data; the stage wrapper logs it)."""

    metrics: pd.DataFrame  # one row per (round, model)
    summary: pd.DataFrame  # mean and sd per model and metric
    bootstrap: pd.DataFrame | None
    reliability: dict[str, pd.DataFrame]
    curves: dict[str, pd.DataFrame]  # per model: score, observed label, in_need (no keys)
    lists: list[pd.DataFrame] = field(default_factory=list)  # per round: audit rows at the cut
    train_rows: dict[str, int] = field(default_factory=dict)


def _min_months_since(features: pd.DataFrame, cap: float) -> pd.Series:
    columns = [c for c in features.columns if c.startswith("group_") and "months_since" in c]
    since = features[columns].to_numpy(dtype=np.float64)
    since = np.where(np.isnan(since), cap, since)
    return pd.Series(since.min(axis=1), index=features[KEY].to_numpy())


def build_pool(
    source: RoundSource,
    rounds: list[int],
    final_as_of: int,
    inputs: list[str],
    settings: SelectiveLabelsConfig,
    seed: int,
    cap: float = 36.0,
) -> list[RoundPool]:
    """Per past round: labelled visits with features as of the round, and quiet negatives.

    Labels are those known at ``final_as_of`` (each with its resolved month, so a backtest can
    keep only the labels resolved before its test round).
    """
    all_labels = source.labels(final_as_of)
    labels = all_labels[all_labels["label"].notna()]
    since_by_month: dict[int, pd.Series] = {}
    labelled: dict[int, pd.DataFrame] = {}
    candidates: dict[int, pd.DataFrame] = {}
    for r in rounds:
        features = source.features(r)
        since_by_month[r] = _min_months_since(features, cap)
        listed = labels[labels["round_month"] == r].set_index(KEY)
        frame = features[features[KEY].isin(listed.index)].reset_index(drop=True)
        extra = listed.reindex(frame[KEY])[list(LABEL_COLUMNS)].reset_index(drop=True)
        # .copy() consolidates the blocks: later concatenations and fits are much faster
        labelled[r] = pd.concat([frame[[KEY, *inputs]], extra], axis=1).copy()
        listed_any = set(all_labels.loc[all_labels["round_month"] == r, KEY])
        pool = features[eligible_mask(features) & ~features[KEY].isin(listed_any).to_numpy()]
        wanted = math.ceil(settings.negatives_per_label * len(labelled[r]) * 6) + 10
        rng = np.random.default_rng([seed, r])
        take = rng.permutation(len(pool))[: min(wanted, len(pool))]
        candidates[r] = pool.iloc[np.sort(take)][[KEY, *inputs]].reset_index(drop=True).copy()
    later = [m for m in (final_as_of,) if m not in since_by_month]
    for m in later:
        since_by_month[m] = _min_months_since(source.features(m), cap)
    log.info("training pool: %d rounds, %d labelled visits", len(rounds), len(labels))
    result = []
    for r in rounds:
        known_from = r + settings.quiet_months
        since = since_by_month.get(known_from)
        negatives = candidates[r].iloc[0:0]
        if since is not None:
            quiet = since.reindex(candidates[r][KEY]).to_numpy() > settings.quiet_months
            wanted = math.ceil(settings.negatives_per_label * len(labelled[r]))
            negatives = candidates[r][quiet].head(wanted).reset_index(drop=True)
        result.append(RoundPool(r, labelled[r], negatives, known_from))
    return result


def training_table(
    pool: list[RoundPool],
    cutoff: int,
    method: str,
    settings: SelectiveLabelsConfig,
    inputs: list[str],
    holdout_rounds: int,
) -> TrainTable:
    """Rows known before ``cutoff``; weights per the selective-label ``method``."""
    parts, negs = [], []
    for p in pool:
        if p.round_month >= cutoff:
            continue
        known = p.labelled["resolved_month"].astype("float64") < cutoff
        rows = p.labelled[known.to_numpy()]
        if len(rows):
            parts.append(rows.assign(_round=p.round_month))
        if method in ("negatives", "ipw_negatives") and p.negatives_known_from <= cutoff:
            negs.append(p.negatives.assign(_round=p.round_month))
    if not parts:
        raise ValueError(f"no labels resolved before {format_month(cutoff)}")
    lab = pd.concat(parts, ignore_index=True)
    y_lab = lab["label"].astype("int64").to_numpy()
    if method in ("ipw", "ipw_negatives"):
        prob = lab["selection_probability"].astype(float).clip(lower=1.0 / settings.weight_clip)
        w_lab = (1.0 / prob).to_numpy()
        w_lab = w_lab / w_lab.mean()
    else:
        w_lab = np.ones(len(lab))
    label_rounds = sorted(lab["_round"].unique().tolist())
    held = set(label_rounds[-holdout_rounds:])
    cal_lab = lab["_round"].isin(held).to_numpy()
    neg = pd.concat(negs, ignore_index=True) if negs else lab.iloc[0:0]
    X = pd.concat([lab[inputs], neg[inputs]], ignore_index=True).copy()
    return TrainTable(
        X=X,
        y=np.concatenate([y_lab, np.zeros(len(neg), dtype=np.int64)]),
        weight=np.concatenate([w_lab, np.full(len(neg), settings.negative_weight)]),
        calibration_mask=np.concatenate([cal_lab, np.zeros(len(neg), dtype=bool)]),
        round_month=np.concatenate(
            [lab["_round"].to_numpy(dtype=np.int64), neg["_round"].to_numpy(dtype=np.int64)]
        ),
        n_labelled=len(lab),
        n_negatives=len(neg),
    )


def fit_candidate(
    name: str,
    table: TrainTable,
    config: TrainingConfig,
    numeric: list[str],
    categorical: list[str],
) -> CalibratedClassifier:
    """Fit one learned candidate (``logistic`` or ``lightgbm``) with held-out calibration."""
    if name == "logistic":
        base = make_logistic(config.logistic, numeric, categorical, config.seed)
    elif name == "lightgbm":
        base = make_lightgbm(config.lightgbm, config.seed)
    else:
        raise ValueError(f"unknown candidate {name!r}")
    model = CalibratedClassifier(base, method=config.calibration.method)
    return model.fit(
        table.X, table.y, sample_weight=table.weight, calibration_mask=table.calibration_mask
    )


def load_test_round(
    source: RoundSource, round_month: int, final_as_of: int, truth: pd.DataFrame | None
) -> TestRound:
    """Eligible households at the round, with the round's observed labels and the truth."""
    features = source.features(round_month)
    features = features[eligible_mask(features)].reset_index(drop=True)
    labels = source.labels(final_as_of)
    own = labels[(labels["round_month"] == round_month) & labels["label"].notna()]
    observed = own.set_index(KEY)["label"].reindex(features[KEY]).astype("Int8")
    observed = observed.reset_index(drop=True)
    aligned = None
    if truth is not None:
        per = truth_for_round(truth, round_month).reindex(features[KEY])
        aligned = pd.DataFrame(
            {
                "in_need": per["in_need"].fillna(False).astype(bool).to_numpy(),
                "hardship": per["hardship"].to_numpy(dtype=np.float64),
            }
        )
    return TestRound(round_month, features, observed, aligned)


def evaluate_scores(
    test: TestRound,
    scores: np.ndarray,
    capacity: pd.Series,
    probabilities: np.ndarray | None = None,
    min_score: float | None = None,
    bins: int = 10,
) -> tuple[dict[str, float], pd.DataFrame, pd.DataFrame | None]:
    """Metrics of one model on one test round; also the per-읍면동 cut and reliability table."""
    keys = test.features[KEY].to_numpy()
    emd = test.features[EMD].to_numpy()
    k_total = int(capacity.reindex(pd.unique(emd)).fillna(0).sum())
    by_emd = cut_list(keys, emd, scores, capacity, min_score)
    overall = cut_list(keys, emd, scores, k_total, min_score)
    metrics: dict[str, float] = {"k": float(k_total)}
    metrics.update(counts_to_metrics("observed_emd_", count_list(by_emd, test.observed)))
    metrics.update(counts_to_metrics("observed_k_", count_list(overall, test.observed)))
    metrics.update(ranking_metrics(scores, test.observed))
    reliability = None
    if probabilities is not None:
        calib, reliability = calibration_metrics(probabilities, test.observed, bins)
        metrics.update(calib)
    if test.truth is not None:
        need = test.truth["in_need"].to_numpy(dtype=np.int64)
        metrics.update(counts_to_metrics("truth_emd_", count_list(by_emd, need), truth=True))
        metrics.update(counts_to_metrics("truth_k_", count_list(overall, need), truth=True))
        metrics["truth_roc_auc"] = ranking_metrics(scores, need)["roc_auc"]
    return metrics, by_emd, reliability


@dataclass(frozen=True)
class CandidateSpec:
    """One model of the backtest: a learned candidate and its selective-label method."""

    name: str  # as reported, e.g. lightgbm or lightgbm-plain
    kind: str  # logistic or lightgbm
    method: str


def candidate_specs(config: TrainingConfig) -> list[CandidateSpec]:
    """The registered candidate with each compared method, and the other one with the chosen."""
    chosen = config.selective_labels.method
    specs = [CandidateSpec(config.candidate, config.candidate, chosen)]
    other = "logistic" if config.candidate == "lightgbm" else "lightgbm"
    specs.append(CandidateSpec(other, other, chosen))
    for method in config.selective_labels.compare:
        if method != chosen:
            specs.append(CandidateSpec(f"{config.candidate}-{method}", config.candidate, method))
    return specs


def run_backtests(
    pool: list[RoundPool],
    tests: list[TestRound],
    capacity: pd.Series,
    config: TrainingConfig,
    numeric: list[str],
    categorical: list[str],
) -> BacktestResult:
    """Fit every candidate per test round, evaluate, and bootstrap the truth figures."""
    inputs = numeric + categorical
    rows: list[dict] = []
    reliability: dict[str, list[pd.DataFrame]] = {}
    curves: dict[str, list[pd.DataFrame]] = {}
    boot_rounds: list[pd.DataFrame] = []
    lists: list[pd.DataFrame] = []
    train_rows: dict[str, int] = {}
    specs = candidate_specs(config)
    rule = RuleBaseline()
    for test in tests:
        t = test.round_month
        label = format_month(t)
        listed: dict[str, np.ndarray] = {}
        probs: dict[str, np.ndarray] = {}
        X_test = test.features[inputs]
        rule.fit(test.features)
        scored: dict[str, tuple[np.ndarray, np.ndarray | None, float | None]] = {
            RULE: (rule.score_households(test.features), None, rule.min_score)
        }
        tables: dict[str, TrainTable] = {}
        for spec in specs:
            if spec.method not in tables:
                tables[spec.method] = training_table(
                    pool,
                    t,
                    spec.method,
                    config.selective_labels,
                    inputs,
                    config.calibration.holdout_rounds,
                )
            table = tables[spec.method]
            if len(table.rounds) < config.backtest.min_train_rounds:
                raise ValueError(
                    f"test round {label}: only {len(table.rounds)} training rounds "
                    f"(min_train_rounds {config.backtest.min_train_rounds})"
                )
            started = time.perf_counter()
            model = fit_candidate(spec.kind, table, config, numeric, categorical)
            p = model.predict_proba(X_test)[:, 1]
            log.info(
                "backtest %s: %s on %d rows (%d labelled) in %.1f s",
                label,
                spec.name,
                len(table.y),
                table.n_labelled,
                time.perf_counter() - started,
            )
            scored[spec.name] = (p, p, None)
            train_rows[f"{label}/{spec.name}"] = len(table.y)
        if test.truth is not None:
            hardship = test.truth["hardship"].fillna(-1e9).to_numpy()
            scored[ORACLE] = (hardship, None, None)
        for name, (scores, prob, min_score) in scored.items():
            metrics, by_emd, rel = evaluate_scores(
                test, scores, capacity, prob, min_score, config.calibration.bins
            )
            rows.append({"round": label, "model": name, **metrics})
            listed[name] = by_emd["listed"].to_numpy(bool)
            if prob is not None:
                probs[name] = prob
            if rel is not None:
                reliability.setdefault(name, []).append(rel.assign(round=label))
            curve = pd.DataFrame(
                {"score": scores, "observed": test.observed.to_numpy(), "round": label}
            )
            if test.truth is not None:
                curve["in_need"] = test.truth["in_need"].to_numpy()
            curves.setdefault(name, []).append(curve)
        if test.truth is not None:
            union = np.zeros(len(test.features), dtype=bool)
            for flags in listed.values():
                union |= flags
            frame = pd.DataFrame({m: f[union] for m, f in listed.items()})
            frame["in_need"] = test.truth["in_need"].to_numpy()[union]
            frame.attrs["total_need"] = int(test.truth["in_need"].sum())
            boot_rounds.append(frame)
        lists.append(_audit_rows(test, listed, probs, config.candidate))
    metrics = pd.DataFrame(rows)
    summary = summarise(metrics)
    bootstrap = None
    if boot_rounds:
        from models.metrics import paired_bootstrap

        models = [n for n in metrics["model"].unique()]
        bootstrap = paired_bootstrap(
            boot_rounds,
            models,
            reference=RULE,
            oracle=ORACLE,
            samples=config.backtest.bootstrap_samples,
            seed=config.backtest.seed,
        )
    return BacktestResult(
        metrics=metrics,
        summary=summary,
        bootstrap=bootstrap,
        reliability={k: pd.concat(v, ignore_index=True) for k, v in reliability.items()},
        curves={k: pd.concat(v, ignore_index=True) for k, v in curves.items()},
        lists=lists,
        train_rows=train_rows,
    )


def _audit_rows(
    test: TestRound, listed: dict[str, np.ndarray], probs: dict[str, np.ndarray], main: str
) -> pd.DataFrame:
    """Rows for the fairness audit: attributes, listed by the main model and the rule, truth."""
    from models.fairness import audit_attributes

    frame = audit_attributes(test.features)
    frame["round"] = format_month(test.round_month)
    frame["listed_model"] = listed[main]
    frame["listed_rule"] = listed[RULE]
    frame["probability"] = probs.get(main, np.full(len(frame), np.nan))
    frame["observed"] = test.observed.to_numpy()
    if test.truth is not None:
        frame["in_need"] = test.truth["in_need"].to_numpy()
    return frame


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
