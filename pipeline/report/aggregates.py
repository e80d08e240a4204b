"""Every figure of the review report, as pure functions over frames.

Nothing here reads files, formats text for people or applies the small-count rule: the functions
return plain numbers (DataFrames, dataclasses) and ``pipeline.report.pages`` turns them into
display rows. Inputs are never modified.

Inputs are the round's datasets: ``scores.parquet`` (every eligible household of the round, with
tier, selection and reasons), the round's feature folder (for the fairness snapshot and the
population stability of the leading features), the capacity table, and, for the follow-up page,
the imported visit outcomes (``pipeline.outcomes.store``). The hidden truth is never an input.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from pipeline.score.tiers import EXPLORATION, MONITOR, PHONE, VISIT

LISTED_TIERS = (VISIT, PHONE)
KEY = "household_key"


def listed_rows(scores: pd.DataFrame) -> pd.DataFrame:
    """The households on the round's lists (visit and phone tiers)."""
    return scores[scores["tier"].astype("string").isin(LISTED_TIERS).to_numpy()]


# --- districts and tiers ---------------------------------------------------------------------


def district_table(scores: pd.DataFrame, capacity: pd.DataFrame) -> pd.DataFrame:
    """One row per 읍면동 (in the capacity table or scored): capacity against the round's tiers.

    ``capacity``: emd_code, sigungu_code, capacity_per_round. Returns sigungu_code, emd_code,
    capacity, scored, visit, explored, phone, monitor, listed; sorted by 시군구 then 읍면동.
    """
    tier = scores["tier"].astype("string")
    flags = pd.DataFrame(
        {
            "sigungu_code": scores["sigungu_code"].astype("string").to_numpy(),
            "emd_code": scores["emd_code"].astype("string").to_numpy(),
            "scored": 1,
            "visit": (tier == VISIT).to_numpy().astype(int),
            "explored": (scores["selection_reason"].astype("string") == EXPLORATION)
            .to_numpy()
            .astype(int),
            "phone": (tier == PHONE).to_numpy().astype(int),
            "monitor": (tier == MONITOR).to_numpy().astype(int),
        }
    )
    counts = flags.groupby(["sigungu_code", "emd_code"], sort=True).sum().reset_index()
    cap = pd.DataFrame(
        {
            "sigungu_code": capacity["sigungu_code"].astype("string").to_numpy(),
            "emd_code": capacity["emd_code"].astype("string").to_numpy(),
            "capacity": capacity["capacity_per_round"].astype("int64").to_numpy(),
        }
    )
    out = cap.merge(counts, on=["sigungu_code", "emd_code"], how="outer")
    numbers = ["capacity", "scored", "visit", "explored", "phone", "monitor"]
    out[numbers] = out[numbers].fillna(0).astype("int64")
    out["listed"] = out["visit"] + out["phone"]
    out = out.sort_values(["sigungu_code", "emd_code"], kind="stable").reset_index(drop=True)
    return out[["sigungu_code", "emd_code", "capacity", *numbers[1:], "listed"]]


def sigungu_table(districts: pd.DataFrame) -> pd.DataFrame:
    """The district table summed per 시군구 (with the number of its 읍면동)."""
    numbers = ["capacity", "scored", "visit", "explored", "phone", "monitor", "listed"]
    grouped = districts.groupby("sigungu_code", sort=True)
    out = grouped[numbers].sum()
    out.insert(0, "emd", grouped.size())
    return out.reset_index()


def tier_table(scores: pd.DataFrame) -> pd.DataFrame:
    """Households per tier, the visit tier split by how it was chosen."""
    tier = scores["tier"].astype("string")
    explored = scores["selection_reason"].astype("string") == EXPLORATION
    rows = [
        ("visit_model", int(((tier == VISIT) & ~explored).sum())),
        ("visit_exploration", int(((tier == VISIT) & explored).sum())),
        ("phone", int((tier == PHONE).sum())),
        ("monitor", int((tier == MONITOR).sum())),
    ]
    return pd.DataFrame(rows, columns=["tier", "households"])


# --- distributions ---------------------------------------------------------------------------


def score_histogram(scores: pd.DataFrame, bins: int) -> pd.DataFrame:
    """Equal-width score bins over the round's range (edges rounded to 0.01).

    Returns low, high, eligible (all scored households) and listed per bin; the last bin is
    closed on the right.
    """
    values = scores["score"].to_numpy(dtype=np.float64)
    if len(values) == 0:
        return pd.DataFrame(columns=["low", "high", "eligible", "listed"])
    low = math.floor(float(values.min()) * 100) / 100
    high = math.ceil(float(values.max()) * 100) / 100
    if high <= low:
        high = low + 0.01
    edges = np.linspace(low, high, bins + 1)
    listed = scores["tier"].astype("string").isin(LISTED_TIERS).to_numpy()
    eligible_counts, _ = np.histogram(values, bins=edges)
    listed_counts, _ = np.histogram(values[listed], bins=edges)
    return pd.DataFrame(
        {
            "low": edges[:-1],
            "high": edges[1:],
            "eligible": eligible_counts.astype("int64"),
            "listed": listed_counts.astype("int64"),
        }
    )


def reason_columns(scores: pd.DataFrame) -> list[str]:
    """``reason_1``, ``reason_2``, ... present in the scores (the units, not the texts)."""
    out = []
    i = 1
    while f"reason_{i}" in scores.columns:
        out.append(f"reason_{i}")
        i += 1
    return out


def reason_table(scores: pd.DataFrame) -> pd.DataFrame:
    """How often each reason unit is named for listed households.

    Returns unit, first (households whose first reason it is), any (households with it among
    their reasons); sorted by ``any`` then ``first`` (descending), then unit.
    """
    listed = listed_rows(scores)
    columns = reason_columns(listed)
    if not columns or listed.empty:
        return pd.DataFrame({"unit": [], "first": [], "any": []}).astype(
            {"unit": "string", "first": "int64", "any": "int64"}
        )
    first = listed[columns[0]].dropna().astype(str).value_counts()
    stacked = pd.concat(
        [listed[[KEY, c]].rename(columns={c: "unit"}) for c in columns], ignore_index=True
    ).dropna()
    stacked = stacked.assign(unit=stacked["unit"].astype(str)).drop_duplicates()
    anywhere = stacked["unit"].value_counts()
    out = pd.DataFrame({"any": anywhere}).join(pd.DataFrame({"first": first}), how="left")
    out["first"] = out["first"].fillna(0).astype("int64")
    out["any"] = out["any"].astype("int64")
    out = out.rename_axis("unit").reset_index()
    out = out.sort_values(
        ["any", "first", "unit"], ascending=[False, False, True], kind="stable"
    ).reset_index(drop=True)
    return out[["unit", "first", "any"]]


# --- change since the previous round ---------------------------------------------------------


def listed_change(current: pd.DataFrame, previous: pd.DataFrame) -> pd.DataFrame:
    """Listed and visit households per 시군구 in the previous and this round, and the change.

    Returns sigungu_code, visit_previous, visit_current, listed_previous, listed_current,
    listed_change; a last row with sigungu_code ``"total"``.
    """

    def per_sigungu(scores: pd.DataFrame) -> pd.DataFrame:
        tier = scores["tier"].astype("string")
        frame = pd.DataFrame(
            {
                "sigungu_code": scores["sigungu_code"].astype("string").to_numpy(),
                "visit": (tier == VISIT).to_numpy().astype(int),
                "listed": tier.isin(LISTED_TIERS).to_numpy().astype(int),
            }
        )
        return frame.groupby("sigungu_code", sort=True).sum()

    cur = per_sigungu(current).add_suffix("_current")
    prev = per_sigungu(previous).add_suffix("_previous")
    out = prev.join(cur, how="outer").fillna(0).astype("int64")
    out = out.sort_index()
    out.loc["total"] = out.sum()
    out["listed_change"] = out["listed_current"] - out["listed_previous"]
    out = out.rename_axis("sigungu_code").reset_index()
    return out[
        [
            "sigungu_code",
            "visit_previous",
            "visit_current",
            "listed_previous",
            "listed_current",
            "listed_change",
        ]
    ]


def _psi_bins(expected: pd.Series, actual: pd.Series, bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Counts of both samples in the same bins (the last bin: missing values)."""
    numeric = pd.api.types.is_numeric_dtype(expected) and pd.api.types.is_numeric_dtype(actual)
    if numeric and expected.nunique(dropna=True) > bins:
        e = expected.to_numpy(dtype=np.float64, na_value=np.nan)
        a = actual.to_numpy(dtype=np.float64, na_value=np.nan)
        probs = np.linspace(0.0, 1.0, bins + 1)[1:-1]
        edges = np.unique(np.nanquantile(e, probs))

        # (-inf, q1], (q1, q2], ..., (qk, inf), then missing.
        def codes(x: np.ndarray) -> np.ndarray:
            c = np.searchsorted(edges, x, side="left")
            return np.where(np.isnan(x), len(edges) + 1, c)

        size = len(edges) + 2
        return (
            np.bincount(codes(e), minlength=size),
            np.bincount(codes(a), minlength=size),
        )
    # Categories (or few distinct values): one bin per value seen in either sample.
    e_text = expected.astype("string").fillna("<NA>")
    a_text = actual.astype("string").fillna("<NA>")
    categories = sorted(set(e_text.unique()) | set(a_text.unique()))
    return (
        e_text.value_counts().reindex(categories, fill_value=0).to_numpy(),
        a_text.value_counts().reindex(categories, fill_value=0).to_numpy(),
    )


def psi(expected: pd.Series, actual: pd.Series, bins: int = 10, floor: float = 1e-4) -> float:
    """Population stability index of ``actual`` against ``expected``.

    Numeric values with more than ``bins`` distinct values are cut at ``expected``'s quantiles
    (ties merged); other values get one bin per value. Missing values have their own bin. Bin
    shares are floored at ``floor`` so that an empty bin gives a large but finite term.
    PSI = sum((a - e) * ln(a / e)).
    """
    e_counts, a_counts = _psi_bins(pd.Series(expected), pd.Series(actual), bins)
    if e_counts.sum() == 0 or a_counts.sum() == 0:
        return float("nan")
    e = np.maximum(e_counts / e_counts.sum(), floor)
    a = np.maximum(a_counts / a_counts.sum(), floor)
    return float(np.sum((a - e) * np.log(a / e)))


def psi_table(
    current: pd.DataFrame,
    previous: pd.DataFrame,
    columns: Sequence[str],
    *,
    bins: int,
    threshold: float,
) -> pd.DataFrame:
    """PSI of each column, this round against the previous; ``shifted`` when above threshold."""
    rows = []
    for rank, column in enumerate(columns, start=1):
        value = psi(previous[column], current[column], bins)
        rows.append(
            {
                "rank": rank,
                "feature": column,
                "psi": value,
                "shifted": bool(np.isfinite(value) and value > threshold),
                "mean_previous": _mean(previous[column]),
                "mean_current": _mean(current[column]),
            }
        )
    return pd.DataFrame(
        rows, columns=["rank", "feature", "psi", "shifted", "mean_previous", "mean_current"]
    )


def _mean(values: pd.Series) -> float:
    if not pd.api.types.is_numeric_dtype(values):
        return float("nan")
    return float(pd.to_numeric(values, errors="coerce").mean())


# --- leading features ------------------------------------------------------------------------


def feature_of(name: str, available: Sequence[str]) -> str | None:
    """The feature column an importance entry belongs to.

    LightGBM names the columns themselves; the logistic pipeline names them
    ``<transformer>__<column>`` (and one-hot levels ``<transformer>__<column>_<level>``).
    """
    columns = set(available)
    if name in columns:
        return name
    _, _, rest = name.partition("__")
    if rest in columns:
        return rest
    candidates = [c for c in columns if rest.startswith(f"{c}_")]
    return max(candidates, key=len) if candidates else None


def leading_from_importance(importance: pd.Series, available: Sequence[str], n: int) -> list[str]:
    """The ``n`` most important feature columns (importance indexed by the model's names)."""
    out: list[str] = []
    ordered = importance.sort_values(ascending=False, kind="stable")
    for name in ordered.index:
        column = feature_of(str(name), available)
        if column is not None and column not in out:
            out.append(column)
        if len(out) == n:
            break
    return out


def unit_column(unit: str) -> str:
    """One representative feature column of a reason unit."""
    if unit.startswith("ind:"):
        return f"{unit.removeprefix('ind:')}__count_12m"
    if unit.startswith("grp:"):
        return f"group_{unit.removeprefix('grp:')}__count_12m"
    if unit.startswith("hh:"):
        return f"hh__{unit.removeprefix('hh:')}"
    return {
        "multi": "distinct_types__3m",
        "history": "history__times_listed",
        "context": "context__emd_signal_rate_3m",
    }.get(unit, unit)


def leading_from_reasons(scores: pd.DataFrame, available: Sequence[str], n: int) -> list[str]:
    """Fallback: the feature columns of the reason units named most often for listed households."""
    columns = set(available)
    out: list[str] = []
    for unit in reason_table(scores)["unit"]:
        column = unit_column(str(unit))
        if column in columns and column not in out:
            out.append(column)
        if len(out) == n:
            break
    return out


# --- fairness snapshot -----------------------------------------------------------------------

FAIRNESS_COLUMNS = (
    "audit__head_sex",
    "audit__head_age_band",
    "hh__disabled_members",
    "hh__size",
    "hh__tenure",
    "hh__urban",
)
ATTRIBUTES = ("head_sex", "head_age_band", "disability", "single_person", "tenure", "urban")


def audit_groups(features: pd.DataFrame) -> pd.DataFrame:
    """The snapshot's groups of each household (same definitions as the training audit)."""
    yes_no = np.array(["no", "yes"])
    disabled = pd.to_numeric(features["hh__disabled_members"], errors="coerce").fillna(0)
    size = pd.to_numeric(features["hh__size"], errors="coerce").fillna(0)
    urban = pd.to_numeric(features["hh__urban"], errors="coerce").fillna(0)
    return pd.DataFrame(
        {
            KEY: features[KEY].astype("string").to_numpy(),
            "head_sex": features["audit__head_sex"].astype("string").fillna("unknown").to_numpy(),
            "head_age_band": features["audit__head_age_band"]
            .astype("string")
            .fillna("unknown")
            .to_numpy(),
            "disability": yes_no[(disabled.to_numpy() > 0).astype(int)],
            "single_person": yes_no[(size.to_numpy() == 1).astype(int)],
            "tenure": features["hh__tenure"].astype("string").fillna("unknown").to_numpy(),
            "urban": np.where(urban.to_numpy() == 1, "urban", "rural"),
        }
    )


def fairness_table(scores: pd.DataFrame, features: pd.DataFrame) -> pd.DataFrame:
    """Share of the listed households per group against the group's share of the eligible.

    ``features`` needs household_key and ``FAIRNESS_COLUMNS``; only scored (eligible) households
    count. Returns attribute, group, eligible, listed, eligible_share, listed_share, ratio
    (listed share / eligible share: above 1, the group is listed more often than its size).
    """
    groups = audit_groups(features)
    frame = pd.DataFrame(
        {
            KEY: scores[KEY].astype("string").to_numpy(),
            "listed": scores["tier"].astype("string").isin(LISTED_TIERS).to_numpy().astype(int),
        }
    ).merge(groups, on=KEY, how="left")
    total_eligible = len(frame)
    total_listed = int(frame["listed"].sum())
    rows = []
    for attribute in ATTRIBUTES:
        values = frame[attribute].astype("string").fillna("unknown")
        stats = (
            frame.assign(group=values).groupby("group", sort=True)["listed"].agg(["size", "sum"])
        )
        for group, row in stats.iterrows():
            eligible, listed = int(row["size"]), int(row["sum"])
            e_share = eligible / total_eligible if total_eligible else float("nan")
            l_share = listed / total_listed if total_listed else float("nan")
            rows.append(
                {
                    "attribute": attribute,
                    "group": str(group),
                    "eligible": eligible,
                    "listed": listed,
                    "eligible_share": e_share,
                    "listed_share": l_share,
                    "ratio": l_share / e_share if e_share else float("nan"),
                }
            )
    return pd.DataFrame(
        rows,
        columns=[
            "attribute",
            "group",
            "eligible",
            "listed",
            "eligible_share",
            "listed_share",
            "ratio",
        ],
    )


# --- follow-up: realised precision and calibration -------------------------------------------


@dataclass(frozen=True)
class FollowUp:
    """The realised results of a round's list, from imported visit outcomes."""

    summary: pd.DataFrame  # one row per list part: listed, returned, labelled, positives, ...
    outcomes: pd.DataFrame  # outcome_code × part: households
    sigungu: pd.DataFrame  # per 시군구, whole list: labelled, positives, precision, mean score
    calibration: pd.DataFrame  # score bins: n, positives, low, high, mean_score, realised
    added: dict[str, float]  # households added by caseworkers: returned, labelled, positives
    unmatched: int  # outcome rows whose household is not among the round's scored households
    ece: float  # expected calibration error over the bins (weighted |mean score - realised|)


PARTS = ("visit_model", "visit_exploration", "phone", "list")


def _part_of(frame: pd.DataFrame) -> pd.Series:
    tier = frame["tier"].astype("string")
    explored = frame["selection_reason"].astype("string") == EXPLORATION
    part = np.where(tier == PHONE, "phone", np.where(explored, "visit_exploration", "visit_model"))
    return pd.Series(part, index=frame.index)


def _precision_row(rows: pd.DataFrame) -> dict[str, float]:
    labelled = rows["label"].notna()
    positives = int((rows["label"] == 1).sum())
    n = int(labelled.sum())
    return {
        "listed": len(rows),
        "returned": int(rows["outcome_code"].notna().sum()),
        "labelled": n,
        "positives": positives,
        "precision": positives / n if n else float("nan"),
        "mean_score": float(rows.loc[labelled, "score"].mean()) if n else float("nan"),
    }


def followup_tables(
    scores: pd.DataFrame,
    outcomes: pd.DataFrame,
    label_of: Mapping[str, int | None],
    *,
    bins: int,
) -> FollowUp:
    """Realised precision (share of labelled outcomes that found need) and calibration.

    ``outcomes`` follows ``pipeline.outcomes.store`` (household_key, outcome_code,
    added_by_caseworker, ...); ``label_of`` maps outcome codes to 1 (need), 0 (no need) or None
    (no label: unreachable, in progress; unknown codes too). The list is the visit and phone
    tiers; households added by caseworkers are counted apart.
    """
    out = outcomes.copy()
    out[KEY] = out[KEY].astype("string")
    added_flag = (
        out["added_by_caseworker"].fillna(False).astype(bool)
        if "added_by_caseworker" in out
        else pd.Series(False, index=out.index)
    )
    code = out["outcome_code"].astype("string")
    out["label"] = code.map(lambda c: label_of.get(str(c)) if pd.notna(c) else None).astype(
        "Float64"
    )
    listed = listed_rows(scores).copy()
    listed[KEY] = listed[KEY].astype("string")
    on_list = out[~added_flag.to_numpy()][[KEY, "outcome_code", "label"]]
    on_list = on_list.drop_duplicates(KEY, keep="last")
    merged = listed.merge(on_list, on=KEY, how="left")
    merged["part"] = _part_of(merged)
    known = set(scores[KEY].astype("string"))
    listed_keys = set(listed[KEY])
    unmatched = int((~out[KEY].isin(known)).sum())
    # Answers for households that were not on the list, flagged or not, are counted with the
    # caseworkers' additions: the list did not choose them.
    extra = out[(added_flag | ~out[KEY].isin(listed_keys)).to_numpy()]

    summary_rows = []
    for part in PARTS:
        rows = merged if part == "list" else merged[merged["part"] == part]
        summary_rows.append({"part": part, **_precision_row(rows)})
    summary = pd.DataFrame(summary_rows)

    codes = merged["outcome_code"].astype("string").fillna("none")
    outcome_counts = (
        pd.crosstab(codes, merged["part"]).reindex(columns=list(PARTS[:-1]), fill_value=0)
        if len(merged)
        else pd.DataFrame(columns=list(PARTS[:-1]))
    )
    outcome_counts["list"] = outcome_counts.sum(axis=1)
    outcome_counts = outcome_counts.rename_axis("outcome_code").reset_index()

    sigungu_rows = []
    for sigungu, rows in merged.groupby(merged["sigungu_code"].astype("string"), sort=True):
        sigungu_rows.append({"sigungu_code": str(sigungu), **_precision_row(rows)})
    sigungu = pd.DataFrame(
        sigungu_rows,
        columns=[
            "sigungu_code",
            "listed",
            "returned",
            "labelled",
            "positives",
            "precision",
            "mean_score",
        ],
    )

    calibration = calibration_table(merged[merged["label"].notna()], bins)
    weights = calibration["n"] / calibration["n"].sum() if len(calibration) else pd.Series([])
    ece = (
        float((weights * (calibration["mean_score"] - calibration["realised"]).abs()).sum())
        if len(calibration)
        else float("nan")
    )
    extra_labelled = extra["label"].notna()
    added = {
        "returned": len(extra),
        "labelled": int(extra_labelled.sum()),
        "positives": int((extra["label"] == 1).sum()),
    }
    return FollowUp(summary, outcome_counts, sigungu, calibration, added, unmatched, ece)


def calibration_table(labelled: pd.DataFrame, bins: int) -> pd.DataFrame:
    """Equal-count score bins of labelled households: mean predicted score against the realised
    rate. ``labelled`` needs score and label (0/1)."""
    columns = ["bin", "n", "positives", "low", "high", "mean_score", "realised"]
    if labelled.empty:
        return pd.DataFrame(columns=columns)
    score = labelled["score"].astype("float64")
    label = labelled["label"].astype("float64")
    k = max(1, min(bins, len(labelled)))
    order = np.argsort(score.to_numpy(), kind="stable")
    # Equal-count bins over the ordered scores (sizes differ by at most one).
    bin_of = np.empty(len(order), dtype=np.int64)
    bin_of[order] = np.arange(len(order)) * k // len(order)
    frame = pd.DataFrame({"bin": bin_of, "score": score.to_numpy(), "label": label.to_numpy()})
    grouped = frame.groupby("bin", sort=True)
    out = pd.DataFrame(
        {
            "n": grouped.size(),
            "positives": grouped["label"].sum().astype("int64"),
            "low": grouped["score"].min(),
            "high": grouped["score"].max(),
            "mean_score": grouped["score"].mean(),
            "realised": grouped["label"].mean(),
        }
    ).reset_index()
    out["bin"] = out["bin"] + 1
    return out[columns]
