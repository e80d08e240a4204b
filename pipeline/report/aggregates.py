"""Every figure of the review report, as pure functions over frames.

Nothing here reads files, formats text for people or applies the small-count rule: the functions
return plain numbers (DataFrames, dataclasses) and ``pipeline.report.pages`` turns them into
display rows. Inputs are never modified.

Inputs are the round's datasets: ``scores.parquet`` (every eligible household of the round, with
tier, selection and reasons), the round's feature folder (for the fairness snapshot and the
population stability of the leading features), the capacity table, and, for the follow-up page,
the imported visit outcomes (``pipeline.datasets.outcomes``). The hidden truth is never an input.

**Counts, then tables.** A national round (23 million households) is not held in memory, so every
figure over households is made in two steps: :func:`round_counts` counts the rows of one 시군구
partition into small tables that add up (:class:`RoundCounts`: households per 읍면동 and tier,
score histogram on fixed edges, reason frequencies, fairness groups, value counts of the leading
features), :func:`combine_counts` adds the partitions' counts, and the ``*_from_counts`` functions
turn the sums into the tables the pages show. Counting the whole round at once gives the same
tables: the frame functions (:func:`district_table`, :func:`fairness_table`, :func:`psi`, ...) are
exactly that, for tests and small data.

**PSI without the rows** (the primitives live in ``models.stability``, shared with the score
stage's monitoring between rounds). A leading feature is kept as the count of each of its distinct
values (:class:`ValueCounts`), from which the previous round's deciles (NumPy's linear
``nanquantile``), the bin counts, hence the PSI, are exactly those of the rows; the mean too, but
for the last float32 digit (pandas adds float32 values in float32, the counts in float64). Should a
feature have more distinct values than ``PARTITION_DISTINCT`` in one partition or
``ROUND_DISTINCT`` in a round (the model's features are counts, months, bands, amounts and rates:
about 2,000 distinct values at most in a 5-million-household round), neighbouring values are merged
into equal-count groups (:func:`compact`): a decile edge may then move by up to about 1/5,000 of
the households (0.02 %), and the page marks the feature.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from models.stability import (  # re-exported: shared with the score stage's monitoring
    MISSING_TEXT as MISSING_TEXT,
)
from models.stability import (
    ValueCounts as ValueCounts,
)
from models.stability import (
    combine_value_counts as combine_value_counts,
)
from models.stability import (
    compact as compact,
)
from models.stability import (
    psi as psi,
)
from models.stability import (
    psi_bins as psi_bins,
)
from models.stability import (
    psi_from_counts as psi_from_counts,
)
from models.stability import (
    quantiles as quantiles,
)
from models.stability import (
    value_counts as value_counts,
)
from pipeline.vocabulary import EXPLORATION, KEY, MONITOR, PHONE, SERVICE_COLUMNS, VISIT

LISTED_TIERS = (VISIT, PHONE)
PARTITION_DISTINCT = 5_000
ROUND_DISTINCT = 100_000


def listed_rows(scores: pd.DataFrame) -> pd.DataFrame:
    """The households on the round's lists (visit and phone tiers)."""
    return scores[scores["tier"].astype("string").isin(LISTED_TIERS).to_numpy()]


def add_counts(frames: Iterable[pd.DataFrame], keys: Sequence[str]) -> pd.DataFrame:
    """Count tables (key columns, then counts) added up by key; sorted by the keys."""
    frames = list(frames)
    both = pd.concat(frames, ignore_index=True)
    counts = [c for c in both.columns if c not in keys]
    if both.empty:
        return both.astype({c: "int64" for c in counts})
    return both.groupby(list(keys), sort=True)[counts].sum().reset_index()


# --- districts and tiers ---------------------------------------------------------------------

DISTRICT_COUNTS = ["scored", "visit", "explored", "phone", "monitor"]


def district_counts(scores: pd.DataFrame) -> pd.DataFrame:
    """Households per 읍면동 of the scored rows, by tier.

    Returns sigungu_code, emd_code, scored, visit, explored, phone, monitor (sorted).
    """
    tier = scores["tier"].astype("string")
    flags = pd.DataFrame(
        {
            "sigungu_code": scores["sigungu_code"].astype("string").array,
            "emd_code": scores["emd_code"].astype("string").array,
            "scored": np.ones(len(scores), dtype="int64"),
            "visit": (tier == VISIT).to_numpy(dtype=bool).astype("int64"),
            "explored": (scores["selection_reason"].astype("string") == EXPLORATION)
            .to_numpy(dtype=bool)
            .astype("int64"),
            "phone": (tier == PHONE).to_numpy(dtype=bool).astype("int64"),
            "monitor": (tier == MONITOR).to_numpy(dtype=bool).astype("int64"),
        }
    )
    return add_counts([flags], ["sigungu_code", "emd_code"])


def district_table_from_counts(counts: pd.DataFrame, capacity: pd.DataFrame) -> pd.DataFrame:
    """One row per 읍면동 (in the capacity table or counted): capacity against the round's tiers.

    ``counts``: :func:`district_counts` (of the whole round, or added over partitions);
    ``capacity``: emd_code, sigungu_code, capacity_per_round. Returns sigungu_code, emd_code,
    capacity, scored, visit, explored, phone, monitor, listed; sorted by 시군구 then 읍면동.
    """
    cap = pd.DataFrame(
        {
            "sigungu_code": capacity["sigungu_code"].astype("string").to_numpy(),
            "emd_code": capacity["emd_code"].astype("string").to_numpy(),
            "capacity": capacity["capacity_per_round"].astype("int64").to_numpy(),
        }
    )
    counts = counts.astype({"sigungu_code": "string", "emd_code": "string"})
    out = cap.merge(counts, on=["sigungu_code", "emd_code"], how="outer")
    numbers = ["capacity", *DISTRICT_COUNTS]
    out[numbers] = out[numbers].fillna(0).astype("int64")
    out["listed"] = out["visit"] + out["phone"]
    out = out.sort_values(["sigungu_code", "emd_code"], kind="stable").reset_index(drop=True)
    return out[["sigungu_code", "emd_code", *numbers, "listed"]]


def district_table(scores: pd.DataFrame, capacity: pd.DataFrame) -> pd.DataFrame:
    """:func:`district_table_from_counts` of the given scored rows."""
    return district_table_from_counts(district_counts(scores), capacity)


def sigungu_table(districts: pd.DataFrame) -> pd.DataFrame:
    """The district table summed per 시군구 (with the number of its 읍면동)."""
    numbers = ["capacity", "scored", "visit", "explored", "phone", "monitor", "listed"]
    grouped = districts.groupby("sigungu_code", sort=True)
    out = grouped[numbers].sum()
    out.insert(0, "emd", grouped.size())
    return out.reset_index()


TIER_PARTS = ("visit_model", "visit_exploration", "phone", "monitor")


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


def add_tiers(tables: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """:func:`tier_table` of several partitions added up (same rows, same order)."""
    households = sum(
        (t["households"].to_numpy(dtype="int64") for t in tables), np.zeros(4, "int64")
    )
    return pd.DataFrame({"tier": list(TIER_PARTS), "households": households.astype("int64")})


# --- suggested services ----------------------------------------------------------------------

SERVICE_KEYS = ["sigungu_code", "emd_code", "service_code"]


def service_counts(scores: pd.DataFrame) -> pd.DataFrame:
    """Listed households per 읍면동 and suggested service: ``first`` (the first suggestion) and
    ``any`` (one of the suggestions), so that a 시군구 can plan its capacity by service.

    Returns sigungu_code, emd_code, service_code, first, any (sorted); empty when the round's
    model suggested none."""
    listed = listed_rows(scores)
    present = [c for c in SERVICE_COLUMNS if c in listed.columns]
    parts = []
    for place, column in enumerate(present):
        code = listed[column].astype("string")
        known = code.notna().to_numpy()
        parts.append(
            pd.DataFrame(
                {
                    "sigungu_code": listed["sigungu_code"].astype("string").to_numpy()[known],
                    "emd_code": listed["emd_code"].astype("string").to_numpy()[known],
                    "service_code": code.to_numpy()[known],
                    "first": np.full(int(known.sum()), int(place == 0), dtype="int64"),
                    "any": np.ones(int(known.sum()), dtype="int64"),
                }
            )
        )
    if not parts:
        empty = {c: pd.Series(dtype="string") for c in SERVICE_KEYS}
        return pd.DataFrame({**empty, "first": pd.Series(dtype="int64"),
                             "any": pd.Series(dtype="int64")})  # fmt: skip
    return add_counts(parts, SERVICE_KEYS)


# --- distributions ---------------------------------------------------------------------------

HISTOGRAM_COLUMNS = ["low", "high", "eligible", "listed"]


def score_edges(lowest: float, highest: float, bins: int) -> np.ndarray:
    """Equal-width bin edges over the round's score range, rounded out to 0.01."""
    low = math.floor(float(lowest) * 100) / 100
    high = math.ceil(float(highest) * 100) / 100
    if high <= low:
        high = low + 0.01
    return np.linspace(low, high, bins + 1)


def histogram_counts(scores: pd.DataFrame, edges: np.ndarray) -> pd.DataFrame:
    """Scored and listed households per score bin (fixed ``edges``; the last bin is closed).

    Returns low, high, eligible, listed; adding the tables of partitions gives the round's.
    """
    values = scores["score"].to_numpy(dtype=np.float64)
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


def add_histograms(tables: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """:func:`histogram_counts` of several partitions (same edges) added up."""
    out = tables[0].copy()
    for column in ("eligible", "listed"):
        out[column] = sum(t[column].to_numpy(dtype="int64") for t in tables)
    return out


def score_histogram(scores: pd.DataFrame, bins: int) -> pd.DataFrame:
    """Equal-width score bins over the round's range (edges rounded to 0.01).

    Returns low, high, eligible (all scored households) and listed per bin; the last bin is
    closed on the right.
    """
    values = scores["score"].to_numpy(dtype=np.float64)
    if len(values) == 0:
        return pd.DataFrame(columns=HISTOGRAM_COLUMNS)
    return histogram_counts(scores, score_edges(values.min(), values.max(), bins))


def reason_columns(columns: Iterable[str] | pd.DataFrame) -> list[str]:
    """``reason_1``, ``reason_2``, ... among the columns (the units, not the texts)."""
    names = set(columns)
    out = []
    i = 1
    while f"reason_{i}" in names:
        out.append(f"reason_{i}")
        i += 1
    return out


def _empty_reasons() -> pd.DataFrame:
    return pd.DataFrame({"unit": [], "first": [], "any": []}).astype(
        {"unit": "string", "first": "int64", "any": "int64"}
    )


def reason_counts(scores: pd.DataFrame) -> pd.DataFrame:
    """How often each reason unit is named for the listed households among the rows.

    Returns unit, first (households whose first reason it is), any (households with it among
    their reasons); unsorted. Adding the tables of partitions gives the round's.
    """
    columns = reason_columns(scores)
    if not columns:
        return _empty_reasons()
    listed = listed_rows(scores[[KEY, "tier", *columns]])
    if listed.empty:
        return _empty_reasons()
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
    return out[["unit", "first", "any"]].astype({"unit": "string"})


def reason_table_from_counts(counts: pd.DataFrame) -> pd.DataFrame:
    """:func:`reason_counts` sorted by ``any`` then ``first`` (descending), then unit."""
    if counts.empty:
        return _empty_reasons()
    out = counts.astype({"unit": "string", "first": "int64", "any": "int64"})
    out = out.sort_values(
        ["any", "first", "unit"], ascending=[False, False, True], kind="stable"
    ).reset_index(drop=True)
    return out[["unit", "first", "any"]]


def reason_table(scores: pd.DataFrame) -> pd.DataFrame:
    """How often each reason unit is named for listed households.

    Returns unit, first (households whose first reason it is), any (households with it among
    their reasons); sorted by ``any`` then ``first`` (descending), then unit.
    """
    return reason_table_from_counts(reason_counts(scores))


# --- change since the previous round ---------------------------------------------------------


def listed_change_from_counts(current: pd.DataFrame, previous: pd.DataFrame) -> pd.DataFrame:
    """Listed and visit households per 시군구 in the previous and this round, and the change.

    ``current``, ``previous``: :func:`district_counts` of the two rounds. Returns sigungu_code,
    visit_previous, visit_current, listed_previous, listed_current, listed_change; a last row
    with sigungu_code ``"total"``.
    """

    def per_sigungu(counts: pd.DataFrame) -> pd.DataFrame:
        frame = pd.DataFrame(
            {
                "sigungu_code": counts["sigungu_code"].astype("string").to_numpy(),
                "visit": counts["visit"].to_numpy(dtype="int64"),
                "listed": (counts["visit"] + counts["phone"]).to_numpy(dtype="int64"),
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


def listed_change(current: pd.DataFrame, previous: pd.DataFrame) -> pd.DataFrame:
    """:func:`listed_change_from_counts` of two rounds' scored rows."""
    return listed_change_from_counts(district_counts(current), district_counts(previous))


# --- population stability (PSI): the primitives are models.stability's -----------------------


def psi_table_from_counts(
    current: Mapping[str, ValueCounts],
    previous: Mapping[str, ValueCounts],
    columns: Sequence[str],
    *,
    bins: int,
    threshold: float,
) -> pd.DataFrame:
    """PSI of each column, this round against the previous; ``shifted`` when above threshold.

    ``merged``: the column had so many distinct values that neighbouring ones were merged
    (:func:`compact`), so its PSI is close to, not exactly, the one of the rows.
    """
    rows = []
    for rank, column in enumerate(columns, start=1):
        value = psi_from_counts(previous[column], current[column], bins)
        rows.append(
            {
                "rank": rank,
                "feature": column,
                "psi": value,
                "shifted": bool(np.isfinite(value) and value > threshold),
                "mean_previous": previous[column].mean,
                "mean_current": current[column].mean,
                "merged": previous[column].merged or current[column].merged,
            }
        )
    return pd.DataFrame(
        rows,
        columns=["rank", "feature", "psi", "shifted", "mean_previous", "mean_current", "merged"],
    )


def psi_table(
    current: pd.DataFrame,
    previous: pd.DataFrame,
    columns: Sequence[str],
    *,
    bins: int,
    threshold: float,
) -> pd.DataFrame:
    """PSI of each column, this round against the previous; ``shifted`` when above threshold."""
    return psi_table_from_counts(
        {c: value_counts(current[c]) for c in columns},
        {c: value_counts(previous[c]) for c in columns},
        columns,
        bins=bins,
        threshold=threshold,
    )


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
    return leading_from_reason_table(reason_table(scores), available, n)


def leading_from_reason_table(reasons: pd.DataFrame, available: Sequence[str], n: int) -> list[str]:
    """:func:`leading_from_reasons` from the round's :func:`reason_table`."""
    columns = set(available)
    out: list[str] = []
    for unit in reasons["unit"]:
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
FAIRNESS_TABLE = [
    "attribute",
    "group",
    "eligible",
    "listed",
    "eligible_share",
    "listed_share",
    "ratio",
]


def _arrow_keys(values: pd.Series) -> pa.Array:
    return pa.array(values.astype("string").array, type=pa.string())


def feature_positions(scores: pd.DataFrame, features: pd.DataFrame | None) -> np.ndarray:
    """For each scored row, the position of its household's row in ``features`` (-1: none).

    A household has one feature row (the first one counts, should there be more).
    """
    if features is None or features.empty or scores.empty:
        return np.full(len(scores), -1, dtype=np.int64)
    found = pc.index_in(_arrow_keys(scores[KEY]), value_set=_arrow_keys(features[KEY]))
    return found.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)


def _labels(values: pd.Series) -> tuple[np.ndarray, list[str]]:
    text = values.astype("string").fillna("unknown")
    codes, uniques = pd.factorize(text)
    return codes.astype(np.int64), [str(u) for u in uniques]


def _flag(values: pd.Series, test: Any, names: tuple[str, str]) -> tuple[np.ndarray, list[str]]:
    number = pd.to_numeric(values, errors="coerce").fillna(0).to_numpy()
    return test(number).astype(np.int64), list(names)


def audit_codes(features: pd.DataFrame) -> dict[str, tuple[np.ndarray, list[str]]]:
    """The snapshot's group of each feature row, per attribute, as (codes, group names); same
    definitions as the training audit."""
    return {
        "head_sex": _labels(features["audit__head_sex"]),
        "head_age_band": _labels(features["audit__head_age_band"]),
        "disability": _flag(features["hh__disabled_members"], lambda v: v > 0, ("no", "yes")),
        "single_person": _flag(features["hh__size"], lambda v: v == 1, ("no", "yes")),
        "tenure": _labels(features["hh__tenure"]),
        "urban": _flag(features["hh__urban"], lambda v: v == 1, ("rural", "urban")),
    }


def fairness_counts(
    scores: pd.DataFrame, features: pd.DataFrame | None, positions: np.ndarray | None = None
) -> pd.DataFrame:
    """Scored (eligible) and listed households per group of each audit attribute.

    ``features`` needs household_key and ``FAIRNESS_COLUMNS``; a scored household without a
    feature row (or ``features`` None) is in group ``unknown``. ``positions``: the scored rows'
    :func:`feature_positions`, when already known. Returns attribute, group, eligible, listed
    (groups with households only); adding the tables of partitions gives the round's.
    """
    if features is None:
        features = pd.DataFrame({c: pd.Series(dtype="object") for c in [KEY, *FAIRNESS_COLUMNS]})
    if positions is None:
        positions = feature_positions(scores, features)
    listed = scores["tier"].astype("string").isin(LISTED_TIERS).to_numpy(dtype=bool)
    found = positions >= 0
    parts = []
    for attribute, (codes, names) in audit_codes(features).items():
        names = list(names)
        if "unknown" not in names:
            names.append("unknown")
        group = np.full(len(scores), names.index("unknown"), dtype=np.int64)
        group[found] = codes[positions[found]]
        eligible = np.bincount(group, minlength=len(names))
        chosen = np.bincount(group[listed], minlength=len(names))
        order = [i for i in sorted(range(len(names)), key=names.__getitem__) if eligible[i]]
        parts.append(
            pd.DataFrame(
                {
                    "attribute": [attribute] * len(order),
                    "group": [names[i] for i in order],
                    "eligible": eligible[order].astype("int64"),
                    "listed": chosen[order].astype("int64"),
                }
            )
        )
    return pd.concat(parts, ignore_index=True)


def fairness_table_from_counts(counts: pd.DataFrame) -> pd.DataFrame:
    """Share of the listed households per group against the group's share of the eligible.

    ``counts``: :func:`fairness_counts` (of the round, or added over partitions). Returns
    attribute, group, eligible, listed, eligible_share, listed_share, ratio (listed share /
    eligible share: above 1, the group is listed more often than its size); attributes in the
    order of ``ATTRIBUTES``, groups sorted.
    """
    first = counts[counts["attribute"] == ATTRIBUTES[0]]
    total_eligible = int(first["eligible"].sum())
    total_listed = int(first["listed"].sum())
    rows = []
    for attribute in ATTRIBUTES:
        part = counts[counts["attribute"] == attribute].sort_values("group", kind="stable")
        for group, eligible, listed in zip(
            part["group"], part["eligible"], part["listed"], strict=True
        ):
            eligible, listed = int(eligible), int(listed)
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
    return pd.DataFrame(rows, columns=FAIRNESS_TABLE)


def fairness_table(scores: pd.DataFrame, features: pd.DataFrame) -> pd.DataFrame:
    """:func:`fairness_table_from_counts` of the given scored rows and their feature rows.

    Only scored (eligible) households count; ``features`` needs household_key and
    ``FAIRNESS_COLUMNS``.
    """
    return fairness_table_from_counts(fairness_counts(scores, features))


# --- counts of a partition, added over the round ---------------------------------------------


@dataclass(frozen=True)
class RoundCounts:
    """Every count the overview needs, of some scored households of a round (one partition or
    the whole round); :func:`combine_counts` adds those of several partitions."""

    scored: int
    listed: int
    districts: pd.DataFrame  # district_counts
    tiers: pd.DataFrame  # tier_table
    reasons: pd.DataFrame  # reason_counts (unsorted)
    histogram: pd.DataFrame | None = None  # histogram_counts (None: not asked for)
    fairness: pd.DataFrame | None = None  # fairness_counts (None: not asked for)
    values: dict[str, ValueCounts] = field(default_factory=dict)  # eligible rows' features
    services: pd.DataFrame | None = None  # service_counts (None: counted before services)


def eligible_rows(
    features: pd.DataFrame, scores: pd.DataFrame, positions: np.ndarray | None = None
) -> pd.DataFrame:
    """The feature rows of the scored (eligible) households (``positions``: the scored rows'
    :func:`feature_positions`, when already known)."""
    if positions is None:
        positions = feature_positions(scores, features)
    member = np.zeros(len(features), dtype=bool)
    member[positions[positions >= 0]] = True
    return features[member]


def round_counts(
    scores: pd.DataFrame,
    features: pd.DataFrame | None = None,
    *,
    leading: Sequence[str] = (),
    edges: np.ndarray | None = None,
    fairness: bool = False,
    cap: int | None = None,
) -> RoundCounts:
    """Count the scored rows (and their feature rows, when given).

    ``edges``: the score histogram's bin edges (fixed for the round: :func:`score_edges`);
    ``fairness``: count the audit groups; ``leading``: the feature columns whose values are
    counted (of the scored households only), ``cap``: see :func:`value_counts`.
    """
    positions = feature_positions(scores, features)
    values = {}
    if features is not None and leading:
        eligible = eligible_rows(features, scores, positions)
        values = {c: value_counts(eligible[c], cap) for c in leading}
    return RoundCounts(
        scored=len(scores),
        listed=len(listed_rows(scores)),
        districts=district_counts(scores),
        tiers=tier_table(scores),
        reasons=reason_counts(scores),
        histogram=None if edges is None else histogram_counts(scores, edges),
        fairness=fairness_counts(scores, features, positions) if fairness else None,
        values=values,
        services=service_counts(scores),
    )


def empty_scores() -> pd.DataFrame:
    """Scored rows of no household (the columns the counts need)."""
    columns = (KEY, "sigungu_code", "emd_code", "tier", "selection_reason")
    return pd.DataFrame({c: pd.Series(dtype="string") for c in columns})


def combine_counts(parts: Sequence[RoundCounts], cap: int | None = None) -> RoundCounts:
    """The counts of several partitions of one round added up (``cap``: see
    :func:`combine_value_counts`); no partition at all: the counts of no household."""
    if not parts:
        return round_counts(empty_scores())
    histograms = [p.histogram for p in parts if p.histogram is not None]
    fairness = [p.fairness for p in parts if p.fairness is not None]
    columns = list(dict.fromkeys(c for p in parts for c in p.values))
    return RoundCounts(
        scored=sum(p.scored for p in parts),
        listed=sum(p.listed for p in parts),
        districts=add_counts([p.districts for p in parts], ["sigungu_code", "emd_code"]),
        tiers=add_tiers([p.tiers for p in parts]),
        reasons=add_counts([p.reasons for p in parts], ["unit"]),
        histogram=add_histograms(histograms) if histograms else None,
        fairness=add_counts(fairness, ["attribute", "group"]) if fairness else None,
        values={
            c: combine_value_counts([p.values[c] for p in parts if c in p.values], cap)
            for c in columns
        },
        services=add_counts(
            [p.services for p in parts if p.services is not None]
            or [service_counts(empty_scores())],
            SERVICE_KEYS,
        ),
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
    scored: Iterable[str] | None = None,
) -> FollowUp:
    """Realised precision (share of labelled outcomes that found need) and calibration.

    ``outcomes`` follows ``pipeline.datasets.outcomes`` (household_key, outcome_code,
    added_by_caseworker, ...); ``label_of`` maps outcome codes to 1 (need), 0 (no need) or None
    (no label: unreachable, in progress; unknown codes too). The list is the visit and phone
    tiers; households added by caseworkers are counted apart. ``scores`` needs the listed rows
    of the round at least; ``scored``: the keys of the outcomes' households that were scored in
    the round (default: the keys of ``scores``), for the count of unmatched answers.
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
    known = pd.Index(
        scores[KEY].astype("string").unique() if scored is None else list(scored), dtype="string"
    )
    listed_keys = pd.Index(listed[KEY].unique(), dtype="string")
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
