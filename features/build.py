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


@dataclass(frozen=True)
class PreparedPartition:
    """What :func:`build_features` derives from a partition's households, members and events
    whatever the round: positions of each event and member among the sorted keys, typed
    household columns. Prepared once (:func:`prepare_partition`), it serves every as-of date,
    so building many rounds of one partition reads and indexes its tables once."""

    households: pd.DataFrame  # sorted by household_key
    keys: pd.Index
    emd: np.ndarray  # 읍면동 code of each household, as str
    emd_index: np.ndarray  # position of each household's 읍면동 in ``emd_codes`` (-1: missing)
    emd_codes: np.ndarray  # the partition's 읍면동 codes
    fixed: dict[str, np.ndarray | pd.Categorical]  # household columns that no as-of changes
    event_household: np.ndarray  # position of each event's household (-1: unknown key)
    event_indicator: np.ndarray  # position of each event's indicator (-1: not in the catalogue)
    event_reported: np.ndarray  # month index
    event_value: np.ndarray  # float64
    members: pd.DataFrame  # h, birth_year, disabled, head, spouse, female (known households)


def prepare_partition(inputs: FeatureInputs, catalogue: IndicatorCatalogue) -> PreparedPartition:
    """Index one partition's households, members and events for :func:`build_features`."""
    households = inputs.households.sort_values("household_key", kind="stable")
    keys = pd.Index(households["household_key"].astype("string"))
    emd = households["emd_code"].astype("string")
    emd_index, emd_codes = pd.factorize(emd.to_numpy())
    ev = inputs.events
    members = inputs.members
    relation = members["relation"].astype("string")
    member_frame = pd.DataFrame(
        {
            "h": keys.get_indexer(members["household_key"].to_numpy()),
            "birth_year": members["birth_year"].to_numpy(dtype=np.int64),
            "disabled": members["disability"].to_numpy(dtype=bool),
            "head": (relation == "head").to_numpy(dtype=bool),
            "spouse": (relation == "spouse").to_numpy(dtype=bool),
            "female": (members["sex"].astype("string") == "F").to_numpy(dtype=bool),
        }
    )
    return PreparedPartition(
        households=households,
        keys=keys,
        emd=emd.to_numpy(),
        emd_index=emd_index,
        emd_codes=np.asarray(emd_codes),
        fixed={
            "size": households["size"].to_numpy(dtype=np.int64).astype(np.int8),
            "tenure": pd.Categorical(
                households["tenure"].astype("string").to_numpy(), categories=TENURES
            ),
            "income_band": pd.Categorical(
                households["income_band"].astype("string").to_numpy(), categories=INCOME_BANDS
            ).codes.astype(np.int8),
            "benefit_status": pd.Categorical(
                households["benefit_status"].astype("string").to_numpy(),
                categories=BENEFIT_STATUSES,
            ),
            "urban": emd.isin(inputs.urban_emds).to_numpy().astype(np.int8),
        },
        event_household=positions(keys, ev["household_key"]),
        event_indicator=positions(pd.Index(catalogue.codes), ev["indicator_code"]),
        event_reported=ev["reported_month"].to_numpy(dtype=np.int64),
        event_value=ev["value"].to_numpy(dtype=np.float64),
        members=member_frame[member_frame["h"].to_numpy() >= 0].reset_index(drop=True),
    )


def _window_counts(h: np.ndarray, k: np.ndarray, ago: np.ndarray, w: int, n: int, kk: int):
    """Events per (indicator, household) in the last ``w`` months: an (indicators × households)
    matrix, so that each indicator's column of the table is one contiguous row."""
    mask = ago <= w
    return np.bincount(k[mask] * n + h[mask], minlength=kk * n).reshape(kk, n)


def build_features(
    inputs: FeatureInputs,
    as_of: int,
    spec: FeatureSpec,
    catalogue: IndicatorCatalogue,
    outcome_catalogue: OutcomeCatalogue,
    prepared: PreparedPartition | None = None,
) -> pd.DataFrame:
    """Feature table of one partition at ``as_of``: one row per household, sorted by key.

    Columns: household_key, emd_code, then every column of ``feature_columns(spec, catalogue)``.
    ``prepared``: :func:`prepare_partition` of the same ``inputs`` (households, members and
    events; the outcomes are always read from ``inputs``), to build many rounds without
    indexing the tables again; prepared here when not given.
    """
    prepared = prepared or prepare_partition(inputs, catalogue)
    keys = prepared.keys
    n = len(keys)
    codes = catalogue.codes
    kk = len(codes)
    cap = spec.months_since_cap
    out: dict[str, np.ndarray | pd.Categorical] = {}

    # Signals known at as_of, inside the longest lookback.
    lookback = max(spec.lookback_months, cap)
    reported = prepared.event_reported
    keep = (reported < as_of) & (reported >= as_of - lookback)
    h = prepared.event_household[keep]
    k = prepared.event_indicator[keep]
    ago = as_of - reported[keep]  # 1 = the month before as_of
    value = prepared.event_value[keep]
    valid = (h >= 0) & (k >= 0)
    h, k, ago, value = h[valid], k[valid], ago[valid], value[valid]
    flat = k * n + h  # indicator-major: (indicators × households) matrices below

    available = np.array(
        [
            ind.available_from_index is None or ind.available_from_index < as_of
            for ind in catalogue.indicators
        ]
    )
    missing_source = ~available

    def as_float(matrix: np.ndarray) -> np.ndarray:
        result = matrix.astype(np.float32)
        result[missing_source] = np.nan
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
        sums[w] = np.bincount(flat[mask], weights=value[mask], minlength=kk * n).reshape(kk, n)
    maxes = {}
    for w in agg.max_windows:
        mask = ago <= w
        m = np.zeros(kk * n)
        np.maximum.at(m, flat[mask], value[mask])
        maxes[w] = m.reshape(kk, n)
    since = np.full(kk * n, cap, dtype=np.float64)
    np.minimum.at(since, flat, ago.astype(np.float64))
    since = since.reshape(kk, n)

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
            out[f"{code}__{suffix}"] = matrix[j]

    group_names = list(catalogue.groups)
    group_of = np.array([group_names.index(ind.group) for ind in catalogue.indicators])
    for g, group in enumerate(group_names):
        members_mask = group_of == g
        any_available = bool((members_mask & available).any())
        for w in spec.group.count_windows:
            column = counts[w][members_mask].sum(axis=0).astype(np.float32)
            out[f"group_{group}__count_{w}m"] = (
                column if any_available else np.full(n, np.nan, np.float32)
            )
        if spec.group.months_since_last:
            column = since[members_mask].min(axis=0).astype(np.float32)
            out[f"group_{group}__months_since_last"] = (
                column if any_available else np.full(n, np.nan, np.float32)
            )
    for w in spec.distinct_types_windows:
        out[f"distinct_types__{w}m"] = (counts[w] > 0).sum(axis=0).astype(np.float32)

    members = _members_at(prepared, as_of)
    out.update(_household_columns(prepared, members, spec))
    out.update(_history_columns(inputs, keys, as_of, spec, outcome_catalogue))
    out.update(_context_columns(inputs, prepared, counts.get(3), as_of, spec, outcome_catalogue))
    out.update(_audit_columns(members, n, spec))

    frame = pd.DataFrame(out, index=pd.RangeIndex(n))
    names = [c.name for c in feature_columns(spec, catalogue)]
    frame = frame[names]
    frame.insert(0, "emd_code", prepared.emd)
    frame.insert(0, "household_key", keys.to_numpy())
    return frame


def _members_at(prepared: PreparedPartition, as_of: int) -> pd.DataFrame:
    """The members of known households with their age in the year of ``as_of``."""
    m = prepared.members
    age = year_of(as_of) - m["birth_year"].to_numpy()
    return m.assign(age=age, minor=age < 18, elderly=age >= 65)


def _household_columns(
    prepared: PreparedPartition, m: pd.DataFrame, spec: FeatureSpec
) -> dict[str, np.ndarray | pd.Categorical]:
    n = len(prepared.keys)
    minors = np.bincount(m["h"], weights=m["minor"], minlength=n)
    elderly = np.bincount(m["h"], weights=m["elderly"], minlength=n)
    disabled = np.bincount(m["h"], weights=m["disabled"], minlength=n)
    spouses = np.bincount(m["h"], weights=m["spouse"], minlength=n)
    size = prepared.fixed["size"]
    head_age = np.full(n, -1)
    heads = m[m["head"]]
    head_age[heads["h"].to_numpy()] = heads["age"].to_numpy()
    columns: dict[str, np.ndarray | pd.Categorical] = {
        **prepared.fixed,
        "minors": minors.astype(np.int8),
        "elderly_members": elderly.astype(np.int8),
        "disabled_members": disabled.astype(np.int8),
        "single_elderly": ((size == 1) & (head_age >= 65)).astype(np.int8),
        "single_parent": ((spouses == 0) & (minors > 0)).astype(np.int8),
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


def _smoothed_rate(
    emd_index: np.ndarray, y: np.ndarray, n_emd: int, smoothing: float, prior: float
) -> np.ndarray:
    """Per 읍면동, (sum of y + smoothing · prior) / (count + smoothing); NaN where it holds no
    row. ``emd_index``: each row's 읍면동 position (rows with -1 are left out)."""
    counted = emd_index >= 0
    sums = np.bincount(emd_index[counted], weights=y[counted], minlength=n_emd)
    count = np.bincount(emd_index[counted], minlength=n_emd).astype(np.float64)
    rate = (sums + smoothing * prior) / (count + smoothing)
    return np.where(count > 0, rate, np.nan)


def _mean(y: np.ndarray) -> float:
    return float(y.sum() / len(y)) if len(y) else 0.0


def _per_household(rate: np.ndarray, emd_index: np.ndarray, missing: float) -> np.ndarray:
    """The 읍면동 rate of each household; ``missing`` for a household whose 읍면동 has no rate
    or is missing."""
    values = np.where(emd_index >= 0, rate[np.maximum(emd_index, 0)], np.nan)
    return np.where(np.isnan(values), missing, values)


def _context_columns(
    inputs: FeatureInputs,
    prepared: PreparedPartition,
    counts_3m: np.ndarray | None,  # (indicators × households)
    as_of: int,
    spec: FeatureSpec,
    outcome_catalogue: OutcomeCatalogue,
) -> dict[str, np.ndarray]:
    emd_index, n_emd = prepared.emd_index, len(prepared.emd_codes)
    columns: dict[str, np.ndarray] = {}
    ctx = spec.context
    if "emd_signal_rate_3m" in ctx.features:
        any_signal = (counts_3m.sum(axis=0) > 0).astype(np.float64)
        prior = _mean(any_signal)  # over every household, its 읍면동 known or not
        rate = _smoothed_rate(emd_index, any_signal, n_emd, ctx.smoothing_households, prior)
        columns["emd_signal_rate_3m"] = _per_household(rate, emd_index, np.nan).astype(np.float32)
    if "emd_past_need_rate" in ctx.features:
        # Visits resolved before as_of, of households of this partition whose 읍면동 is known.
        oc = inputs.outcomes
        resolved = pd.to_numeric(oc["resolved_month"], errors="coerce")
        label = oc["outcome_code"].astype("string").map(outcome_catalogue.label_of())
        known = (oc["round_month"] < as_of) & (resolved < as_of) & label.notna()
        known = known.fillna(False).to_numpy(dtype=bool)  # an unresolved visit (NA) is not known
        household = prepared.keys.get_indexer(oc["household_key"].to_numpy()[known])
        visit_emd = np.where(household >= 0, emd_index[np.maximum(household, 0)], -1)
        y = label.to_numpy()[known].astype(np.float64)[visit_emd >= 0]
        visit_emd = visit_emd[visit_emd >= 0]
        prior = _mean(y)
        rate = _smoothed_rate(visit_emd, y, n_emd, ctx.smoothing_visits, prior)
        columns["emd_past_need_rate"] = _per_household(
            rate, emd_index, prior if len(y) else np.nan
        ).astype(np.float32)
    return {f"context__{name}": columns[name] for name in ctx.features}


def _audit_columns(m: pd.DataFrame, n: int, spec: FeatureSpec) -> dict[str, pd.Categorical]:
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
