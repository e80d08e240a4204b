"""Point-in-time features for one 시군구 partition: a pure, vectorised function.

Only facts reported before ``as_of`` are used: a signal by its reported month, a past listing by
its round month, a visit outcome by its resolved month. A source that did not exist yet at
``as_of`` gives missing values, never zeros.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.spec import FeatureSpec, feature_columns
from pipeline.catalogue import IndicatorCatalogue, OutcomeCatalogue
from pipeline.months import year_of
from pipeline.vocabulary import (
    AGE_BAND_EDGES,
    AGE_BANDS,
    BENEFIT_STATUSES,
    INCOME_BANDS,
    NO_OUTCOME,
    TENURES,
)


@dataclass(frozen=True)
class FeatureInputs:
    """One partition's staged tables, in the shape the builder needs.

    households: household_key, emd_code, size, tenure, income_band, benefit_status
    members: household_key, birth_year, sex, relation, disability
    events: household_key, indicator_code, reported_month (month index), value
    outcomes: household_key, round_month, resolved_month (month indexes, resolved may be NA),
              outcome_code
    urban_emds: the 읍면동 codes that are urban (동)
    """

    households: pd.DataFrame
    members: pd.DataFrame
    events: pd.DataFrame
    outcomes: pd.DataFrame
    urban_emds: frozenset[str]


def age_band(age: np.ndarray) -> np.ndarray:
    """Index into AGE_BANDS for ages in years."""
    return np.searchsorted(np.array(AGE_BAND_EDGES), age, side="right")


def positions(index: pd.Index, values: pd.Series) -> np.ndarray:
    """Position of each value in ``index`` (-1 when absent); fast for categoricals."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        per_category = index.get_indexer(values.cat.categories.astype("string"))
        codes = values.cat.codes.to_numpy()
        return np.where(codes >= 0, per_category[codes], -1)
    return index.get_indexer(values.astype("string").to_numpy())


def _window_counts(h: np.ndarray, k: np.ndarray, ago: np.ndarray, w: int, n: int, kk: int):
    mask = ago <= w
    return np.bincount(h[mask] * kk + k[mask], minlength=n * kk).reshape(n, kk)


def build_features(
    inputs: FeatureInputs,
    as_of: int,
    spec: FeatureSpec,
    catalogue: IndicatorCatalogue,
    outcome_catalogue: OutcomeCatalogue,
) -> pd.DataFrame:
    """Feature table of one partition at ``as_of``: one row per household, sorted by key.

    Columns: household_key, emd_code, then every column of ``feature_columns(spec, catalogue)``.
    """
    households = inputs.households.sort_values("household_key", kind="stable")
    keys = pd.Index(households["household_key"].astype("string"))
    n = len(keys)
    codes = catalogue.codes
    kk = len(codes)
    cap = spec.months_since_cap
    out: dict[str, np.ndarray | pd.Categorical] = {}

    # Signals known at as_of, inside the longest lookback.
    lookback = max(spec.lookback_months, cap)
    ev = inputs.events
    reported = ev["reported_month"].to_numpy(dtype=np.int64)
    keep = (reported < as_of) & (reported >= as_of - lookback)
    h = positions(keys, ev["household_key"])[keep]
    k = positions(pd.Index(codes), ev["indicator_code"])[keep]
    ago = as_of - reported[keep]  # 1 = the month before as_of
    value = ev["value"].to_numpy(dtype=np.float64)[keep]
    valid = (h >= 0) & (k >= 0)
    h, k, ago, value = h[valid], k[valid], ago[valid], value[valid]
    flat = h * kk + k

    available = np.array(
        [
            ind.available_from_index is None or ind.available_from_index < as_of
            for ind in catalogue.indicators
        ]
    )
    missing_source = ~available

    def as_float(matrix: np.ndarray) -> np.ndarray:
        result = matrix.astype(np.float32)
        result[:, missing_source] = np.nan
        return result

    agg = spec.indicator
    counts: dict[int, np.ndarray] = {}
    count_windows = set(agg.count_windows) | set(spec.group.count_windows)
    count_windows |= set(spec.distinct_types_windows)
    if agg.trend is not None:
        count_windows |= {agg.trend.recent, agg.trend.recent + agg.trend.previous}
    for w in sorted(count_windows):
        counts[w] = _window_counts(h, k, ago, w, n, kk)
    sums = {}
    for w in agg.sum_windows:
        mask = ago <= w
        sums[w] = np.bincount(flat[mask], weights=value[mask], minlength=n * kk).reshape(n, kk)
    maxes = {}
    for w in agg.max_windows:
        mask = ago <= w
        m = np.zeros(n * kk)
        np.maximum.at(m, flat[mask], value[mask])
        maxes[w] = m.reshape(n, kk)
    since = np.full(n * kk, cap, dtype=np.float64)
    np.minimum.at(since, flat, ago.astype(np.float64))
    since = since.reshape(n, kk)

    per_indicator: dict[str, np.ndarray] = {}
    for w in agg.count_windows:
        per_indicator[f"count_{w}m"] = as_float(counts[w])
    for w in agg.sum_windows:
        per_indicator[f"sum_{w}m"] = as_float(sums[w])
    for w in agg.max_windows:
        per_indicator[f"max_{w}m"] = as_float(maxes[w])
    if agg.months_since_last:
        per_indicator["months_since_last"] = as_float(since)
    if agg.trend is not None:
        recent = counts[agg.trend.recent]
        previous = counts[agg.trend.recent + agg.trend.previous] - recent
        per_indicator[f"trend_{agg.trend.recent}m"] = as_float(recent - previous)
    for j, code in enumerate(codes):
        for suffix, matrix in per_indicator.items():
            out[f"{code}__{suffix}"] = matrix[:, j]

    group_names = list(catalogue.groups)
    group_of = np.array([group_names.index(ind.group) for ind in catalogue.indicators])
    for g, group in enumerate(group_names):
        members_mask = group_of == g
        any_available = bool((members_mask & available).any())
        for w in spec.group.count_windows:
            column = counts[w][:, members_mask].sum(axis=1).astype(np.float32)
            out[f"group_{group}__count_{w}m"] = (
                column if any_available else np.full(n, np.nan, np.float32)
            )
        if spec.group.months_since_last:
            column = since[:, members_mask].min(axis=1).astype(np.float32)
            out[f"group_{group}__months_since_last"] = (
                column if any_available else np.full(n, np.nan, np.float32)
            )
    for w in spec.distinct_types_windows:
        out[f"distinct_types__{w}m"] = (counts[w] > 0).sum(axis=1).astype(np.float32)

    out.update(_household_columns(inputs, households, keys, as_of, spec))
    out.update(_history_columns(inputs, keys, as_of, spec, outcome_catalogue))
    out.update(_context_columns(inputs, households, counts.get(3), as_of, spec, outcome_catalogue))
    out.update(_audit_columns(inputs, keys, as_of, spec))

    frame = pd.DataFrame(out, index=pd.RangeIndex(n))
    names = [c.name for c in feature_columns(spec, catalogue)]
    frame = frame[names]
    frame.insert(0, "emd_code", households["emd_code"].astype("string").to_numpy())
    frame.insert(0, "household_key", keys.to_numpy())
    return frame


def _members_by_household(inputs: FeatureInputs, keys: pd.Index, as_of: int) -> pd.DataFrame:
    members = inputs.members
    position = keys.get_indexer(members["household_key"].to_numpy())
    age = year_of(as_of) - members["birth_year"].to_numpy(dtype=np.int64)
    return pd.DataFrame(
        {
            "h": position,
            "age": age,
            "minor": age < 18,
            "elderly": age >= 65,
            "disabled": members["disability"].to_numpy(dtype=bool),
            "head": (members["relation"].astype("string") == "head").to_numpy(dtype=bool),
            "spouse": (members["relation"].astype("string") == "spouse").to_numpy(dtype=bool),
            "female": (members["sex"].astype("string") == "F").to_numpy(dtype=bool),
        }
    )[lambda d: d["h"] >= 0]


def _household_columns(
    inputs: FeatureInputs, households: pd.DataFrame, keys: pd.Index, as_of: int, spec: FeatureSpec
) -> dict[str, np.ndarray | pd.Categorical]:
    n = len(keys)
    m = _members_by_household(inputs, keys, as_of)
    minors = np.bincount(m["h"], weights=m["minor"], minlength=n)
    elderly = np.bincount(m["h"], weights=m["elderly"], minlength=n)
    disabled = np.bincount(m["h"], weights=m["disabled"], minlength=n)
    spouses = np.bincount(m["h"], weights=m["spouse"], minlength=n)
    size = households["size"].to_numpy(dtype=np.int64)
    head_age = np.full(n, -1)
    heads = m[m["head"]]
    head_age[heads["h"].to_numpy()] = heads["age"].to_numpy()
    columns: dict[str, np.ndarray | pd.Categorical] = {
        "size": size.astype(np.int8),
        "tenure": pd.Categorical(
            households["tenure"].astype("string").to_numpy(), categories=TENURES
        ),
        "income_band": pd.Categorical(
            households["income_band"].astype("string").to_numpy(), categories=INCOME_BANDS
        ).codes.astype(np.int8),
        "benefit_status": pd.Categorical(
            households["benefit_status"].astype("string").to_numpy(), categories=BENEFIT_STATUSES
        ),
        "minors": minors.astype(np.int8),
        "elderly_members": elderly.astype(np.int8),
        "disabled_members": disabled.astype(np.int8),
        "single_elderly": ((size == 1) & (head_age >= 65)).astype(np.int8),
        "single_parent": ((spouses == 0) & (minors > 0)).astype(np.int8),
        "urban": households["emd_code"]
        .astype("string")
        .isin(inputs.urban_emds)
        .to_numpy()
        .astype(np.int8),
    }
    return {f"hh__{name}": columns[name] for name in spec.household}


def _history_columns(
    inputs: FeatureInputs,
    keys: pd.Index,
    as_of: int,
    spec: FeatureSpec,
    outcome_catalogue: OutcomeCatalogue,
) -> dict[str, np.ndarray | pd.Categorical]:
    n = len(keys)
    oc = inputs.outcomes
    position = keys.get_indexer(oc["household_key"].to_numpy())
    round_month = oc["round_month"].to_numpy(dtype=np.int64)
    listed = (round_month < as_of) & (position >= 0)
    times = np.bincount(position[listed], minlength=n)
    since = np.full(n, spec.months_since_cap, dtype=np.float64)
    np.minimum.at(since, position[listed], (as_of - round_month[listed]).astype(np.float64))
    resolved = pd.to_numeric(oc["resolved_month"], errors="coerce").to_numpy(dtype=np.float64)
    known = listed & ~np.isnan(resolved) & (resolved < as_of)
    categories = [NO_OUTCOME, *outcome_catalogue.codes]
    last = np.zeros(n, dtype=np.int64)
    if known.any():
        known_frame = pd.DataFrame(
            {
                "h": position[known],
                "round": round_month[known],
                "resolved": resolved[known],
                "code": pd.Index(categories).get_indexer(
                    oc["outcome_code"].astype("string").to_numpy()[known]
                ),
            }
        ).sort_values(["h", "round", "resolved"], kind="stable")
        latest = known_frame.drop_duplicates("h", keep="last")
        last[latest["h"].to_numpy()] = latest["code"].to_numpy()
    columns = {
        "times_listed": np.minimum(times, 127).astype(np.int8),
        "months_since_listed": since.astype(np.float32),
        "last_outcome": pd.Categorical.from_codes(last, categories=categories),
    }
    return {f"history__{name}": columns[name] for name in spec.history}


def _context_columns(
    inputs: FeatureInputs,
    households: pd.DataFrame,
    counts_3m: np.ndarray | None,
    as_of: int,
    spec: FeatureSpec,
    outcome_catalogue: OutcomeCatalogue,
) -> dict[str, np.ndarray]:
    emd = households["emd_code"].astype("string").to_numpy()
    columns: dict[str, np.ndarray] = {}
    ctx = spec.context
    if "emd_signal_rate_3m" in ctx.features:
        any_signal = (counts_3m.sum(axis=1) > 0).astype(np.float64)
        frame = pd.DataFrame({"emd": emd, "y": any_signal})
        prior = frame["y"].mean() if len(frame) else 0.0
        grouped = frame.groupby("emd")["y"].agg(["sum", "count"])
        smoothed = (grouped["sum"] + ctx.smoothing_households * prior) / (
            grouped["count"] + ctx.smoothing_households
        )
        columns["emd_signal_rate_3m"] = pd.Series(emd).map(smoothed).to_numpy(dtype=np.float32)
    if "emd_past_need_rate" in ctx.features:
        oc = inputs.outcomes
        resolved = pd.to_numeric(oc["resolved_month"], errors="coerce")
        label = oc["outcome_code"].astype("string").map(outcome_catalogue.label_of())
        known = (oc["round_month"] < as_of) & (resolved < as_of) & label.notna()
        emd_of = pd.Series(
            households["emd_code"].astype("string").to_numpy(),
            index=households["household_key"].astype("string").to_numpy(),
        )
        visits = pd.DataFrame(
            {
                "emd": emd_of.reindex(oc.loc[known, "household_key"].astype("string")).to_numpy(),
                "y": label[known].astype(float).to_numpy(),
            }
        ).dropna()
        prior = visits["y"].mean() if len(visits) else 0.0
        grouped = visits.groupby("emd")["y"].agg(["sum", "count"])
        smoothed = (grouped["sum"] + ctx.smoothing_visits * prior) / (
            grouped["count"] + ctx.smoothing_visits
        )
        rate = pd.Series(emd).map(smoothed).fillna(prior if len(visits) else np.nan)
        columns["emd_past_need_rate"] = rate.to_numpy(dtype=np.float32)
    return {f"context__{name}": columns[name] for name in ctx.features}


def _audit_columns(
    inputs: FeatureInputs, keys: pd.Index, as_of: int, spec: FeatureSpec
) -> dict[str, pd.Categorical]:
    n = len(keys)
    m = _members_by_household(inputs, keys, as_of)
    heads = m[m["head"]]
    sex = np.zeros(n, dtype=np.int64)
    band = np.zeros(n, dtype=np.int64)
    sex[heads["h"].to_numpy()] = np.where(heads["female"].to_numpy(), 1, 0)
    band[heads["h"].to_numpy()] = age_band(heads["age"].to_numpy())
    columns = {
        "head_sex": pd.Categorical.from_codes(sex, categories=["M", "F"]),
        "head_age_band": pd.Categorical.from_codes(band, categories=list(AGE_BANDS)),
    }
    return {f"audit__{name}": columns[name] for name in spec.audit_only}
