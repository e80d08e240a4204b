"""``outreach describe``: figures about the raw tables and, for synthetic data, the hidden truth.

The figures documented in docs/synthetic_data.md come from here, and the generator's tests check
them against their documented ranges. The truth is read only when it is there (synthetic data).

No national table is ever held whole: each 시군구 partition is read, reduced to counts (a
``Tally``) and dropped; tallies add up exactly across partitions, and every figure is computed
from the combined counts at the end. Memory is bounded by one partition.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.catalogue import IndicatorCatalogue
from pipeline.config import Config
from pipeline.datasets import TableLayout
from pipeline.errors import DataError
from pipeline.months import format_month, parse_month_series
from pipeline.vocabulary import BENEFIT_STATUSES, INCOME_BANDS, TENURES

log = logging.getLogger(__name__)

# Category codes as numbers in their vocabulary order (income and tenure: rising risk).
INCOME_ORDER = {band: i for i, band in enumerate(INCOME_BANDS)}
TENURE_RISK_ORDER = {tenure: i for i, tenure in enumerate(TENURES)}
BENEFIT_ORDER = {status: i for i, status in enumerate(BENEFIT_STATUSES)}

SHARE_ATTRIBUTES = ("tenure", "income_band", "benefit_status")
SUPPORTED = ("public_support", "private_support")
RESOLVED = (*SUPPORTED, "closed_no_need")

ROW_COUNTS = ("households", "members", "crisis_events", "outreach_outcomes")
# Index names of the tallies' counts.
AUDIT_VALUE_LEVELS = ["round", "column", "value", "in_need"]
AUDIT_CLASS_LEVELS = ["round", "in_need"]
PAST_LIST_LEVELS = ["outcome_code", "selection_reason", "truly_in_need"]


@dataclass(frozen=True)
class PartitionFrames:
    """The tables of one 시군구 partition, with events linked to households."""

    households: pd.DataFrame
    events: pd.DataFrame  # with household_key, event/reported month indexes
    outcomes: pd.DataFrame
    truth: pd.DataFrame | None
    members: int  # rows of household_members


def month_indexes(values: pd.Series) -> pd.Series:
    """``parse_month_series``, parsing each distinct month once (a table has few of them)."""
    codes, distinct = pd.factorize(values)
    parsed = parse_month_series(pd.Series(distinct)).array
    return pd.Series(parsed.take(codes, allow_fill=True), index=values.index)


def read_partition(raw: TableLayout, truth: TableLayout | None, code: str) -> PartitionFrames:
    """Read one partition's tables (the truth only if a truth layout is given)."""
    households = pd.read_parquet(raw.partition_file("households", code))
    members = pd.read_parquet(
        raw.partition_file("household_members", code), columns=["resident_id", "household_key"]
    )
    events = pd.read_parquet(raw.partition_file("crisis_events", code))
    events = events.merge(members, on="resident_id", how="left", validate="many_to_one")
    events["event_m"] = month_indexes(events["event_month"])
    events["reported_m"] = month_indexes(events["reported_month"])
    outcomes = pd.read_parquet(raw.partition_file("outreach_outcomes", code))
    truth_frame = None
    if truth is not None:
        truth_frame = pd.read_parquet(truth.partition_file("household_month", code))
        truth_frame["m"] = month_indexes(truth_frame["month"])
    return PartitionFrames(households, events, outcomes, truth_frame, len(members))


def recent_indicator_counts(
    events: pd.DataFrame, households: pd.Index, round_month: int, months: int
) -> pd.DataFrame:
    """Signals per household and indicator reported in the ``months`` before ``round_month``."""
    window = events[
        (events["reported_m"] >= round_month - months) & (events["reported_m"] < round_month)
    ]
    counts = window.groupby(["household_key", "indicator_code"], observed=True).size()
    return counts.unstack(fill_value=0).reindex(households, fill_value=0)


def rule_list(
    households: pd.DataFrame, distinct: pd.Series, capacity: pd.Series, ineligible: Sequence[str]
) -> pd.Index:
    """The rule's list: per 읍면동, eligible households (benefit status not in ``ineligible``,
    the config's eligibility rule) with the most distinct crisis types.

    Ties are broken by the household key so that the list is deterministic.
    """
    frame = households[["household_key", "emd_code", "benefit_status"]].copy()
    frame["score"] = distinct.reindex(frame["household_key"]).to_numpy()
    eligible = ~frame["benefit_status"].astype("string").isin(list(ineligible)).to_numpy(bool)
    frame = frame[eligible & (frame["score"] >= 1).to_numpy(bool)]
    frame = frame.sort_values(["emd_code", "score", "household_key"], ascending=[True, False, True])
    frame["rank"] = frame.groupby("emd_code").cumcount()
    frame["capacity"] = frame["emd_code"].map(capacity).fillna(0)
    return pd.Index(frame.loc[frame["rank"] < frame["capacity"], "household_key"])


# --- exact figures from counts ----------------------------------------------------------------


def auc_from_counts(
    values: Iterable[float], positives: Iterable[int], negatives: Iterable[int]
) -> float:
    """ROC AUC of a score from how many positives and negatives take each of its values.

    This is the Mann-Whitney statistic: the chance that a random positive scores above a random
    negative, ties counting one half. It is the area under the ROC curve, so it equals
    ``sklearn.metrics.roc_auc_score`` on the rows themselves (up to float rounding: here the sum is
    exact in integers and divided once), but needs only one count per distinct value, and counts
    add up across partitions. ``values`` may repeat (their counts are added) and must not be NaN.
    Returns NaN when a class is empty, as roc_auc_score does (with a warning; older versions raise).
    """
    score = np.asarray(values, dtype="float64") + 0.0  # -0.0 and 0.0 are one value
    if np.isnan(score).any():
        raise ValueError("auc_from_counts: values must not be NaN")
    distinct, where = np.unique(score, return_inverse=True)
    pos = np.zeros(len(distinct), dtype="int64")
    neg = np.zeros(len(distinct), dtype="int64")
    np.add.at(pos, where, np.asarray(positives, dtype="int64"))
    np.add.at(neg, where, np.asarray(negatives, dtype="int64"))
    n_pos, n_neg = int(pos.sum()), int(neg.sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    below = np.cumsum(neg) - neg  # negatives scoring strictly lower than each value
    # Twice (wins + ties / 2), in Python integers so that nothing overflows or rounds.
    twice_wins = sum(
        int(p) * (2 * int(b) + int(n)) for p, b, n in zip(pos, below, neg, strict=True)
    )
    return twice_wins / (2 * n_pos * n_neg)


def add_counts(total: pd.Series, part: pd.Series) -> pd.Series:
    """Two tallies of counts added key by key (a key missing from one counts 0 there).

    Keys keep the order in which they first appeared; NaN keys are kept.
    """
    if part.empty:
        return total
    if total.empty:
        return part
    both = pd.concat([total, part])
    levels = list(range(both.index.nlevels))
    return both.groupby(level=levels, sort=False, dropna=False).sum()


def audit_columns(
    households: pd.DataFrame, counts: pd.DataFrame, distinct: pd.Series
) -> pd.DataFrame:
    """The single-signal audit columns of a round, one row per household of ``counts.index``.

    Each column is oriented so that higher means more at risk: signal counts per indicator, the
    number of distinct crisis types, and the household attributes as ordinal numbers.
    """
    frame = counts.add_suffix("__count_3m")
    frame["distinct_types_3m"] = distinct
    attributes = households.set_index("household_key").reindex(counts.index)
    frame["size"] = -attributes["size"].astype(float)
    frame["income_band"] = -attributes["income_band"].map(INCOME_ORDER).astype(float)
    frame["tenure"] = attributes["tenure"].map(TENURE_RISK_ORDER).astype(float)
    frame["benefit_status"] = attributes["benefit_status"].map(BENEFIT_ORDER).astype(float)
    return frame


def audit_value_counts(frame: pd.DataFrame, in_need: np.ndarray) -> pd.Series:
    """Households per (column, value, in_need) of an audit frame; NaN counts as value 0.

    Every audit column is discrete (counts, ordinal bands), so this stays small whatever the
    number of households.
    """
    columns, values, needs, households = [], [], [], []
    for column in frame.columns:
        score = frame[column].fillna(0).to_numpy(dtype="float64") + 0.0  # no -0.0
        for flag in (False, True):
            distinct, n = np.unique(score[in_need == flag], return_counts=True)
            columns.append(np.full(len(distinct), column, dtype=object))
            values.append(distinct)
            needs.append(np.full(len(distinct), flag))
            households.append(n.astype("int64"))
    index = pd.MultiIndex.from_arrays(
        [np.concatenate(a) for a in (columns, values, needs)], names=AUDIT_VALUE_LEVELS[1:]
    )
    return pd.Series(np.concatenate(households), index=index, dtype="int64")


def with_absent_as_zero(values: pd.Series, classes: pd.Series) -> pd.Series:
    """Audit value counts where households of partitions that lacked a column count at value 0.

    A partition without a given indicator in a round's window has no column for it; the old
    whole-frame computation concatenated the partitions and filled the gaps with 0. ``classes``
    holds the households per (round, in_need).
    """
    counted = values.groupby(level=["round", "column", "in_need"]).sum()
    absent = {}
    for (round_month, in_need), households in classes.items():
        for column in values.index.unique("column"):
            missing = int(households) - int(counted.get((round_month, column, in_need), 0))
            if missing:
                absent[(round_month, column, 0.0, in_need)] = missing
    if not absent:
        return values
    extra = pd.Series(absent, dtype="int64").rename_axis(AUDIT_VALUE_LEVELS)
    return add_counts(values, extra)


def single_signal_aucs(values: pd.Series, classes: pd.Series) -> dict[str, float]:
    """Each audit column's ROC AUC against need, per audit round, then averaged over the rounds.

    ``values`` counts households per (round, column, value, in_need), ``classes`` per (round,
    in_need). A column with a single value over all rounds is left out; a round where a class is
    empty is skipped (NaN if every round is). Columns keep the order they first appeared in.
    """
    values = with_absent_as_zero(values, classes)
    table = values.unstack("in_need", fill_value=0).reindex(columns=[False, True], fill_value=0)
    aucs: dict[str, float] = {}
    for column in values.index.unique("column"):
        counts = table.xs(column, level="column")  # (round, value) -> [negatives, positives]
        if counts.index.unique("value").size < 2:
            continue
        per_round = [
            auc_from_counts(rows.index.get_level_values("value"), rows[True], rows[False])
            for _, rows in counts.groupby(level="round")
        ]
        per_round = [auc for auc in per_round if not np.isnan(auc)]
        aucs[column] = round(float(np.mean(per_round)), 4) if per_round else float("nan")
    return aucs


def _share(rows: pd.Series, selected: pd.Series, among: pd.Series | None = None) -> float:
    """Share of the counted ``rows`` that are ``selected`` (among ``among``); NaN if none."""
    if among is not None:
        rows, selected = rows[among], selected[among]
    total = rows.sum()
    return float(rows[selected].sum() / total) if total else float("nan")


def past_list_counts(outcomes: pd.DataFrame, truth: pd.DataFrame) -> pd.Series:
    """Past outreach rows per (outcome_code, selection_reason, truly_in_need).

    Truly in need: in need in the round month or the month after it, per the hidden truth.
    """
    listed = outcomes.assign(m=month_indexes(outcomes["round_month"]))
    now = truth[["household_key", "m", "in_need"]]
    following = now.assign(m=now["m"] - 1)
    merged = listed.merge(now, on=["household_key", "m"], how="left").merge(
        following, on=["household_key", "m"], how="left", suffixes=("", "_next")
    )
    truly = merged["in_need"].eq(True) | merged["in_need_next"].eq(True)
    return merged.assign(truly_in_need=truly).groupby(PAST_LIST_LEVELS, dropna=False).size()


def past_list_figures(counts: pd.Series) -> dict:
    """How much true need past lists found, from ``past_list_counts`` added over partitions."""
    frame = counts.rename("rows").reset_index()
    truly = frame["truly_in_need"].astype(bool)
    by_reason = (
        frame.assign(in_need=frame["rows"].where(truly, 0))
        .groupby("selection_reason")[["in_need", "rows"]]
        .sum()
    )
    resolved = frame["outcome_code"].isin(RESOLVED)
    supported = frame["outcome_code"].isin(SUPPORTED)
    return {
        "truly_in_need_share": round(_share(frame["rows"], truly), 4),
        "truly_in_need_by_reason": (by_reason["in_need"] / by_reason["rows"]).round(4).to_dict(),
        "support_given_when_in_need": round(
            _share(frame["rows"], supported, among=resolved & truly), 4
        ),
        "support_given_when_not_in_need": round(
            _share(frame["rows"], supported, among=resolved & ~truly), 4
        ),
    }


# --- per-partition tallies ----------------------------------------------------------------------


@dataclass(frozen=True)
class RoundPlan:
    """Which past rounds describe looks at."""

    rounds: list[int]  # month indexes of the past outreach rounds
    audit_rounds: list[int]  # the rounds of the single-signal AUC audit
    rule_window_months: int
    ineligible: tuple[str, ...]  # the eligibility rule (scoring.ineligible_benefit_status)


def plan_rounds(config: Config) -> RoundPlan:
    rounds = config.window.round_months()
    audit = rounds[2::3] if len(rounds) > 3 else rounds
    return RoundPlan(
        list(rounds),
        list(audit),
        config.generator.selection.rule_window_months,
        tuple(config.scoring.ineligible_benefit_status),
    )


@dataclass(frozen=True)
class TruthTally:
    """Counts from the hidden truth; they add up across partitions (see ``combine``)."""

    need_by_month: pd.Series  # month -> household-months in need
    households_by_month: pd.Series  # month -> household-months
    need_share_by_sigungu: dict[str, float]
    rule_listed: pd.Series  # round -> households on the rule's list
    rule_in_need: pd.Series  # round -> of which truly in need
    audit_values: pd.Series  # (round, column, value, in_need) -> households
    audit_classes: pd.Series  # (round, in_need) -> households
    past_lists: pd.Series  # (outcome_code, selection_reason, truly_in_need) -> rows
    need_types: pd.Series  # need_type -> household-months in need


@dataclass(frozen=True)
class Tally:
    """Counts from the raw tables (and the truth, if read); they add up across partitions."""

    rows: pd.Series  # table -> rows
    indicators: pd.Series  # indicator_code -> signals
    first_reported: pd.Series  # indicator_code -> first reported month index
    lags: pd.Series  # reporting lag in months -> signals
    sizes: pd.Series  # household size -> households
    attributes: pd.Series  # (attribute, value) -> households
    outcomes: pd.Series  # outcome_code -> past outreach rows
    reasons: pd.Series  # selection_reason -> past outreach rows
    probability_recorded: pd.Series  # selection_reason -> rows with a selection probability
    signal_households: int  # households with at least one crisis signal in the window
    services: pd.Series  # service_code -> past outreach rows that linked it
    truth: TruthTally | None


def need_around(need_wide: pd.DataFrame, round_month: int) -> pd.Series:
    """In need in the round month or the month after it, per household."""
    following = need_wide[round_month + 1] if (round_month + 1) in need_wide.columns else False
    return need_wide[round_month] | following


def tally_truth(
    part: PartitionFrames, code: str, capacity: pd.Series, plan: RoundPlan
) -> TruthTally:
    """The truth's counts for one partition: need, the rule's precision, the AUC audit."""
    hh, ev, tr = part.households, part.events, part.truth
    keys = pd.Index(hh["household_key"])
    need_wide = tr.pivot(index="household_key", columns="m", values="in_need")
    listed: dict[int, int] = {}
    listed_in_need: dict[int, int] = {}
    values: dict[int, pd.Series] = {}
    classes: dict[int, pd.Series] = {}
    for r in plan.rounds:
        need = need_around(need_wide, r).reindex(keys)
        counts = recent_indicator_counts(ev, keys, r, plan.rule_window_months)
        distinct = (counts > 0).sum(axis=1)
        on_list = rule_list(hh, distinct, capacity, plan.ineligible)
        listed[r] = len(on_list)
        listed_in_need[r] = int(need.reindex(on_list).sum())
        if r in plan.audit_rounds:
            in_need = need.eq(True).to_numpy()  # a household without truth counts as not in need
            values[r] = audit_value_counts(audit_columns(hh, counts, distinct), in_need)
            classes[r] = pd.Series(in_need).value_counts()
    return TruthTally(
        need_by_month=tr.groupby("month")["in_need"].sum(),
        households_by_month=tr.groupby("month").size(),
        need_share_by_sigungu={code: round(float(tr["in_need"].mean()), 4)},
        rule_listed=pd.Series(listed, dtype="int64"),
        rule_in_need=pd.Series(listed_in_need, dtype="int64"),
        audit_values=_concat_counts(values, AUDIT_VALUE_LEVELS),
        audit_classes=_concat_counts(classes, AUDIT_CLASS_LEVELS),
        past_lists=past_list_counts(part.outcomes, tr),
        need_types=tr.loc[tr["in_need"].to_numpy(dtype=bool), "need_type"]
        .astype("string")
        .value_counts(sort=False),
    )


def _concat_counts(per_round: dict[int, pd.Series], levels: list[str]) -> pd.Series:
    if not per_round:
        return pd.Series(dtype="int64")
    return pd.concat(per_round, names=levels[:1]).rename_axis(levels)


def tally_partition(
    part: PartitionFrames, code: str, capacity: pd.Series, plan: RoundPlan
) -> Tally:
    """One partition reduced to counts."""
    hh, ev = part.households, part.events
    rows = dict(zip(ROW_COUNTS, (len(hh), part.members, len(ev), len(part.outcomes)), strict=True))
    attributes = pd.concat(
        {a: hh[a].value_counts(sort=False) for a in SHARE_ATTRIBUTES}, names=["attribute"]
    )
    return Tally(
        rows=pd.Series(rows, dtype="int64"),
        indicators=ev["indicator_code"].value_counts(sort=False),
        first_reported=ev.groupby("indicator_code", observed=True)["reported_m"].min(),
        lags=(ev["reported_m"] - ev["event_m"]).value_counts(sort=False),
        sizes=hh["size"].value_counts(sort=False),
        attributes=attributes,
        outcomes=part.outcomes["outcome_code"].value_counts(sort=False),
        reasons=part.outcomes["selection_reason"].value_counts(sort=False),
        probability_recorded=part.outcomes.groupby("selection_reason", observed=True)[
            "selection_probability"
        ].count(),
        signal_households=int(ev["household_key"].nunique()),
        services=part.outcomes["service_code"].value_counts(sort=False)
        if "service_code" in part.outcomes
        else pd.Series(dtype="int64"),
        truth=None if part.truth is None else tally_truth(part, code, capacity, plan),
    )


def combine_truth(a: TruthTally | None, b: TruthTally | None) -> TruthTally | None:
    if a is None or b is None:
        return a if b is None else b
    return TruthTally(
        need_by_month=add_counts(a.need_by_month, b.need_by_month),
        households_by_month=add_counts(a.households_by_month, b.households_by_month),
        need_share_by_sigungu={**a.need_share_by_sigungu, **b.need_share_by_sigungu},
        rule_listed=add_counts(a.rule_listed, b.rule_listed),
        rule_in_need=add_counts(a.rule_in_need, b.rule_in_need),
        audit_values=add_counts(a.audit_values, b.audit_values),
        audit_classes=add_counts(a.audit_classes, b.audit_classes),
        past_lists=add_counts(a.past_lists, b.past_lists),
        need_types=add_counts(a.need_types, b.need_types),
    )


def combine(a: Tally, b: Tally) -> Tally:
    """Two partitions' tallies as one, exactly."""
    return Tally(
        rows=add_counts(a.rows, b.rows),
        indicators=add_counts(a.indicators, b.indicators),
        first_reported=pd.concat([a.first_reported, b.first_reported]).groupby(level=0).min(),
        lags=add_counts(a.lags, b.lags),
        sizes=add_counts(a.sizes, b.sizes),
        attributes=add_counts(a.attributes, b.attributes),
        outcomes=add_counts(a.outcomes, b.outcomes),
        reasons=add_counts(a.reasons, b.reasons),
        probability_recorded=add_counts(a.probability_recorded, b.probability_recorded),
        signal_households=a.signal_households + b.signal_households,
        services=add_counts(a.services, b.services),
        truth=combine_truth(a.truth, b.truth),
    )


# --- the figures ------------------------------------------------------------------------------


def _normalised(counts: pd.Series) -> dict:
    """Shares rounded to 4 places, largest first (as ``value_counts(normalize=True)``)."""
    counts = counts.sort_index().sort_values(ascending=False, kind="stable")
    return (counts / counts.sum()).round(4).to_dict()


def household_figures(tally: Tally) -> dict:
    sizes = tally.sizes  # household size -> households; the sum of sizes is exact in float64
    households = int(sizes.sum())
    size_sum = float((sizes.index.to_numpy(dtype="float64") * sizes.to_numpy()).sum())
    return {
        "mean_size": size_sum / households if households else float("nan"),
        **{
            f"{attribute}_share": _normalised(tally.attributes.xs(attribute, level="attribute"))
            for attribute in SHARE_ATTRIBUTES
        },
    }


def truth_figures(truth: TruthTally) -> dict:
    need_share = (truth.need_by_month / truth.households_by_month).sort_index()
    calendar = pd.Series(need_share.values, index=[int(m[5:7]) for m in need_share.index])
    aucs = single_signal_aucs(truth.audit_values, truth.audit_classes)
    single = {k: v for k, v in aucs.items() if k != "distinct_types_3m"}
    best = max(single, key=single.get) if single else None
    listed = truth.rule_listed.sort_index()
    in_need = truth.rule_in_need.reindex(listed.index, fill_value=0)
    precision = {
        format_month(r): round(int(h) / int(n), 4)
        for r, n, h in zip(listed.index, listed, in_need, strict=True)
        if n
    }
    return {
        "in_need_share": float(truth.need_by_month.sum() / truth.households_by_month.sum()),
        "in_need_share_by_month": need_share.round(4).to_dict(),
        "in_need_share_by_calendar_month": calendar.groupby(level=0).mean().round(4).to_dict(),
        "in_need_share_by_sigungu": dict(truth.need_share_by_sigungu),
        "rule_precision_at_capacity": {
            "overall": round(int(in_need.sum()) / max(int(listed.sum()), 1), 4),
            "min_round": min(precision.values()),
            "max_round": max(precision.values()),
            "per_round": precision,
        },
        "auc_against_truth": {
            "distinct_types_3m": aucs.get("distinct_types_3m"),
            "best_single_column": best,
            "best_single_column_auc": single.get(best),
            "per_column": dict(sorted(aucs.items(), key=lambda kv: -kv[1])),
        },
        "past_lists": past_list_figures(truth.past_lists),
        "need_type_share": _normalised(truth.need_types),
    }


def summarise(
    tally: Tally,
    config: Config,
    catalogue: IndicatorCatalogue,
    regions: pd.DataFrame,
    plan: RoundPlan,
) -> dict:
    """All figures from the tally of every partition, as a JSON-ready mapping."""
    window_months = config.window.months
    rows = {k: int(tally.rows.get(k, 0)) for k in ROW_COUNTS}
    total_events = rows["crisis_events"]
    per_indicator = pd.Series(0, index=catalogue.codes, dtype="int64").add(
        tally.indicators, fill_value=0
    )
    summary: dict = {
        "window": {"start": config.window.start, "end": config.window.end, "months": window_months},
        "rows": rows,
        "regions": {
            "sido": int((regions["level"] == "sido").sum()),
            "sigungu": int((regions["level"] == "sigungu").sum()),
            "emd": int((regions["level"] == "emd").sum()),
            "urban_emd_share": float(
                regions.loc[regions["level"] == "emd", "urban"].astype(bool).mean()
            ),
        },
        "households": household_figures(tally),
        "signals": {
            "per_household_month": total_events / max(rows["households"] * window_months, 1),
            "households_with_any_share": round(
                tally.signal_households / max(rows["households"], 1), 4
            ),
            "per_household_with_any": round(total_events / max(tally.signal_households, 1), 2),
            "per_indicator": {
                k: int(v) for k, v in per_indicator.sort_values(ascending=False).items()
            },
            "first_reported_month": {
                k: format_month(int(v)) for k, v in sorted(tally.first_reported.items())
            },
            "lag_share": {
                int(k): round(float(v) / max(total_events, 1), 4)
                for k, v in tally.lags.sort_index().items()
            },
        },
        "past_rounds": {
            "rounds": len(plan.rounds),
            "listed_share_of_households_per_round": rows["outreach_outcomes"]
            / max(len(plan.rounds), 1)
            / max(rows["households"], 1),
            "outcome_share": (tally.outcomes / tally.outcomes.sum()).round(4).to_dict(),
            "selection_reason_share": (tally.reasons / tally.reasons.sum()).round(4).to_dict(),
            "probability_recorded_share": (
                tally.probability_recorded.reindex(tally.reasons.index, fill_value=0)
                / tally.reasons
            )
            .round(4)
            .to_dict(),
            "linked_service_share": _normalised(tally.services) if tally.services.sum() else {},
        },
    }
    if tally.truth is not None and not tally.truth.audit_classes.empty:
        summary["truth"] = truth_figures(tally.truth)
    return summary


def describe(
    config: Config, catalogue: IndicatorCatalogue, raw_dir: Path, truth_dir: Path | None
) -> dict:
    """All figures, as a JSON-ready mapping, reading one partition at a time."""
    raw = TableLayout(raw_dir)
    truth = TableLayout(truth_dir) if truth_dir is not None and truth_dir.is_dir() else None
    codes = raw.partitions("households")
    if not codes:
        raise DataError(
            f"{raw_dir}: no households partitions found (expected households/sigungu=CODE/)"
        )
    capacity = pd.read_parquet(raw.small_table_file("district_capacity")).set_index("emd_code")[
        "capacity_per_round"
    ]
    regions = pd.read_parquet(raw.small_table_file("regions"))
    plan = plan_rounds(config)
    total: Tally | None = None
    for code in codes:
        log.debug("describe: partition sigungu=%s", code)
        tally = tally_partition(read_partition(raw, truth, code), code, capacity, plan)
        total = tally if total is None else combine(total, tally)
    return summarise(total, config, catalogue, regions, plan)
