"""``outreach describe``: figures about the raw tables and, for synthetic data, the hidden truth.

The figures documented in docs/synthetic_data.md come from here, and the generator's tests check
them against their documented ranges. The truth is read only when it is there (synthetic data).
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from pipeline.catalogue import IndicatorCatalogue, load_indicators
from pipeline.config import Config
from pipeline.datasets import TableLayout
from pipeline.errors import EXIT_OK, DataError
from pipeline.io import write_json
from pipeline.months import format_month, parse_month_series

log = logging.getLogger(__name__)

INCOME_ORDER = {"under_30": 0, "30_50": 1, "50_75": 2, "75_100": 3, "over_100": 4}
TENURE_RISK_ORDER = {"own": 0, "jeonse": 1, "monthly_rent": 2, "public_rental": 3, "other": 4}
BENEFIT_ORDER = {"none": 0, "near_poor": 1, "basic_livelihood": 2}


@dataclass(frozen=True)
class PartitionFrames:
    """The tables of one 시군구 partition, with events linked to households."""

    households: pd.DataFrame
    events: pd.DataFrame  # with household_key, event/reported month indexes
    outcomes: pd.DataFrame
    truth: pd.DataFrame | None


def read_partition(raw: TableLayout, truth: TableLayout | None, code: str) -> PartitionFrames:
    """Read one partition's tables (the truth only if a truth layout is given)."""
    households = pd.read_parquet(raw.partition_file("households", code))
    members = pd.read_parquet(
        raw.partition_file("household_members", code), columns=["resident_id", "household_key"]
    )
    events = pd.read_parquet(raw.partition_file("crisis_events", code))
    events = events.merge(members, on="resident_id", how="left", validate="many_to_one")
    events["event_m"] = parse_month_series(events["event_month"])
    events["reported_m"] = parse_month_series(events["reported_month"])
    outcomes = pd.read_parquet(raw.partition_file("outreach_outcomes", code))
    truth_frame = None
    if truth is not None:
        truth_frame = pd.read_parquet(truth.partition_file("household_month", code))
        truth_frame["m"] = parse_month_series(truth_frame["month"])
    return PartitionFrames(households, events, outcomes, truth_frame)


def recent_indicator_counts(
    events: pd.DataFrame, households: pd.Index, round_month: int, months: int
) -> pd.DataFrame:
    """Signals per household and indicator reported in the ``months`` before ``round_month``."""
    window = events[
        (events["reported_m"] >= round_month - months) & (events["reported_m"] < round_month)
    ]
    counts = window.groupby(["household_key", "indicator_code"], observed=True).size()
    return counts.unstack(fill_value=0).reindex(households, fill_value=0)


def rule_list(households: pd.DataFrame, distinct: pd.Series, capacity: pd.Series) -> pd.Index:
    """The rule's list: per 읍면동, eligible households with the most distinct crisis types.

    Ties are broken by the household key so that the list is deterministic.
    """
    frame = households[["household_key", "emd_code", "benefit_status"]].copy()
    frame["score"] = distinct.reindex(frame["household_key"]).to_numpy()
    frame = frame[(frame["benefit_status"] != "basic_livelihood") & (frame["score"] >= 1)]
    frame = frame.sort_values(["emd_code", "score", "household_key"], ascending=[True, False, True])
    frame["rank"] = frame.groupby("emd_code").cumcount()
    frame["capacity"] = frame["emd_code"].map(capacity).fillna(0)
    return pd.Index(frame.loc[frame["rank"] < frame["capacity"], "household_key"])


def describe(
    config: Config, catalogue: IndicatorCatalogue, raw_dir: Path, truth_dir: Path | None
) -> dict:
    """All figures, as a JSON-ready mapping."""
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
    rounds = config.window.round_months()
    audit_rounds = rounds[2::3] if len(rounds) > 3 else rounds
    window_months = config.window.months

    rows = {"households": 0, "members": 0, "crisis_events": 0, "outreach_outcomes": 0}
    per_indicator = pd.Series(0, index=catalogue.codes, dtype="int64")
    first_reported: dict[str, int] = {}
    lags = pd.Series(dtype="int64")
    attributes = []
    outcome_counts = pd.Series(dtype="int64")
    reason_counts = pd.Series(dtype="int64")
    need_by_month = pd.Series(dtype="float64")
    need_by_sigungu: dict[str, float] = {}
    need_count_by_month = pd.Series(dtype="float64")
    rule_hits = {r: [0, 0] for r in rounds}
    auc_parts: list[pd.DataFrame] = []
    outcome_need = pd.DataFrame()

    for code in codes:
        part = read_partition(raw, truth, code)
        hh, ev = part.households, part.events
        rows["households"] += len(hh)
        rows["members"] += int(ev["household_key"].nunique()) * 0 + len(
            pd.read_parquet(raw.partition_file("household_members", code), columns=["resident_id"])
        )
        rows["crisis_events"] += len(ev)
        rows["outreach_outcomes"] += len(part.outcomes)
        per_indicator = per_indicator.add(ev["indicator_code"].value_counts(), fill_value=0)
        for ind, month in ev.groupby("indicator_code", observed=True)["reported_m"].min().items():
            first_reported[ind] = min(first_reported.get(ind, 10**9), int(month))
        lags = lags.add((ev["reported_m"] - ev["event_m"]).value_counts(), fill_value=0)
        attributes.append(hh[["size", "tenure", "income_band", "benefit_status"]])
        outcome_counts = outcome_counts.add(
            part.outcomes["outcome_code"].value_counts(), fill_value=0
        )
        reason_counts = reason_counts.add(
            part.outcomes["selection_reason"].value_counts(), fill_value=0
        )
        if part.truth is None:
            continue
        tr = part.truth
        need_by_sigungu[code] = round(float(tr["in_need"].mean()), 4)
        need_by_month = need_by_month.add(tr.groupby("month")["in_need"].sum(), fill_value=0)
        need_count_by_month = need_count_by_month.add(tr.groupby("month").size(), fill_value=0)
        need_wide = tr.pivot(index="household_key", columns="m", values="in_need")
        keys = pd.Index(hh["household_key"])
        for r in rounds:
            following = need_wide[r + 1] if (r + 1) in need_wide.columns else False
            need = (need_wide[r] | following).reindex(keys)
            counts = recent_indicator_counts(
                ev, keys, r, config.generator.selection.rule_window_months
            )
            distinct = (counts > 0).sum(axis=1)
            listed = rule_list(hh, distinct, capacity)
            rule_hits[r][0] += len(listed)
            rule_hits[r][1] += int(need.reindex(listed).sum())
            if r in audit_rounds:
                frame = counts.add_suffix("__count_3m")
                frame["distinct_types_3m"] = distinct
                frame["size"] = -hh.set_index("household_key")["size"].reindex(keys).astype(float)
                h = hh.set_index("household_key").reindex(keys)
                frame["income_band"] = -h["income_band"].map(INCOME_ORDER).astype(float)
                frame["tenure"] = h["tenure"].map(TENURE_RISK_ORDER).astype(float)
                frame["benefit_status"] = h["benefit_status"].map(BENEFIT_ORDER).astype(float)
                frame["in_need"] = need.to_numpy()
                frame["round"] = r
                auc_parts.append(frame.reset_index(drop=True))
        oc = part.outcomes.copy()
        oc["m"] = parse_month_series(oc["round_month"])
        following = tr[["household_key", "m", "in_need"]].assign(m=lambda d: d["m"] - 1)
        now = tr[["household_key", "m", "in_need"]]
        merged = oc.merge(now, on=["household_key", "m"], how="left").merge(
            following, on=["household_key", "m"], how="left", suffixes=("", "_next")
        )
        merged["truly_in_need"] = merged["in_need"].fillna(False) | merged["in_need_next"].fillna(
            False
        )
        outcome_need = pd.concat(
            [outcome_need, merged[["outcome_code", "selection_reason", "truly_in_need"]]]
        )

    attrs = pd.concat(attributes)
    total_events = int(rows["crisis_events"])
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
        "households": {
            "mean_size": float(attrs["size"].mean()),
            "tenure_share": attrs["tenure"].value_counts(normalize=True).round(4).to_dict(),
            "income_band_share": attrs["income_band"]
            .value_counts(normalize=True)
            .round(4)
            .to_dict(),
            "benefit_status_share": attrs["benefit_status"]
            .value_counts(normalize=True)
            .round(4)
            .to_dict(),
        },
        "signals": {
            "per_household_month": total_events / max(rows["households"] * window_months, 1),
            "per_indicator": {
                k: int(v) for k, v in per_indicator.sort_values(ascending=False).items()
            },
            "first_reported_month": {k: format_month(v) for k, v in sorted(first_reported.items())},
            "lag_share": {
                int(k): round(float(v) / max(total_events, 1), 4)
                for k, v in lags.sort_index().items()
            },
        },
        "past_rounds": {
            "rounds": len(rounds),
            "listed_share_of_households_per_round": rows["outreach_outcomes"]
            / max(len(rounds), 1)
            / max(rows["households"], 1),
            "outcome_share": (outcome_counts / outcome_counts.sum()).round(4).to_dict(),
            "selection_reason_share": (reason_counts / reason_counts.sum()).round(4).to_dict(),
        },
    }
    if auc_parts:
        need_share = (need_by_month / need_count_by_month).sort_index()
        calendar = pd.Series(need_share.values, index=[int(m[5:7]) for m in need_share.index])
        auc_frame = pd.concat(auc_parts, ignore_index=True).fillna(0)
        aucs = {}
        for column in auc_frame.columns.drop(["in_need", "round"]):
            if auc_frame[column].nunique() > 1:
                per_round = [
                    roc_auc_score(g["in_need"], g[column])
                    for _, g in auc_frame.groupby("round")
                    if g["in_need"].nunique() == 2
                ]
                aucs[column] = round(float(np.mean(per_round)), 4)
        single = {k: v for k, v in aucs.items() if k != "distinct_types_3m"}
        precision = {format_month(r): round(h / n, 4) for r, (n, h) in rule_hits.items() if n}
        listed_total = sum(n for n, _ in rule_hits.values())
        found_total = sum(h for _, h in rule_hits.values())
        resolved = outcome_need[
            outcome_need["outcome_code"].isin(
                ["public_support", "private_support", "closed_no_need"]
            )
        ]
        supported = resolved["outcome_code"].isin(["public_support", "private_support"])
        summary["truth"] = {
            "in_need_share": float(need_by_month.sum() / need_count_by_month.sum()),
            "in_need_share_by_month": need_share.round(4).to_dict(),
            "in_need_share_by_calendar_month": calendar.groupby(level=0).mean().round(4).to_dict(),
            "in_need_share_by_sigungu": need_by_sigungu,
            "rule_precision_at_capacity": {
                "overall": round(found_total / max(listed_total, 1), 4),
                "min_round": min(precision.values()),
                "max_round": max(precision.values()),
                "per_round": precision,
            },
            "auc_against_truth": {
                "distinct_types_3m": aucs.get("distinct_types_3m"),
                "best_single_column": max(single, key=single.get),
                "best_single_column_auc": single[max(single, key=single.get)],
                "per_column": dict(sorted(aucs.items(), key=lambda kv: -kv[1])),
            },
            "past_lists": {
                "truly_in_need_share": round(float(outcome_need["truly_in_need"].mean()), 4),
                "truly_in_need_by_reason": outcome_need.groupby("selection_reason")["truly_in_need"]
                .mean()
                .round(4)
                .to_dict(),
                "support_given_when_in_need": round(
                    float(supported[resolved["truly_in_need"]].mean()), 4
                ),
                "support_given_when_not_in_need": round(
                    float(supported[~resolved["truly_in_need"]].mean()), 4
                ),
            },
        }
    return summary


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--raw-dir", type=Path, help="raw tables (default: paths.raw_input)")
    parser.add_argument("--truth-dir", type=Path, help="hidden truth (default: paths.truth_input)")


def run(config: Config, args: argparse.Namespace) -> int:
    raw_dir = getattr(args, "raw_dir", None) or config.paths.raw_input
    truth_dir = getattr(args, "truth_dir", None) or config.paths.truth_input
    catalogue = load_indicators(config.paths.indicators)
    summary = describe(config, catalogue, raw_dir, truth_dir)
    out = config.paths.output_root / "describe" / "summary.json"
    write_json(summary, out)
    rows = summary["rows"]
    print(
        f"raw tables in {raw_dir}: {rows['households']:,} households, "
        f"{rows['members']:,} members, {rows['crisis_events']:,} crisis signals, "
        f"{rows['outreach_outcomes']:,} past outreach rows"
    )
    print(f"  signals per household-month: {summary['signals']['per_household_month']:.3f}")
    if "truth" in summary:
        t = summary["truth"]
        rule = t["rule_precision_at_capacity"]
        auc = t["auc_against_truth"]
        print(f"  truly in need (household-months): {t['in_need_share']:.2%}")
        print(
            "  rule (distinct crisis types, 3 months) at capacity: "
            f"{rule['overall']:.1%} truly in need "
            f"(rounds {rule['min_round']:.1%}..{rule['max_round']:.1%})"
        )
        print(
            f"  AUC against truth: distinct types {auc['distinct_types_3m']:.3f}, "
            f"best single column {auc['best_single_column']} {auc['best_single_column_auc']:.3f}"
        )
    print(f"summary written to {out}")
    log.debug("describe summary: %s", json.dumps(summary, ensure_ascii=False)[:500])
    return EXIT_OK
