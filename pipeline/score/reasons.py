"""Why a household was flagged: per-row model contributions grouped into reasons, with evidence.

The model's contributions (LightGBM ``pred_contrib``: TreeSHAP values on the log-odds scale, or
coefficient × standardised value for the logistic model) are summed per *reason unit*:

- ``ind:<code>``: every column of one crisis indicator (``<code>__count_3m``, ...). The columns of
  its indicator group (``group_<g>__...``) are added to the indicator of that group the household
  was reported for most recently, so that a reason names a signal, not a category;
- ``grp:<g>``: group columns of a household with no signal in that group;
- ``multi``: the number of distinct crisis types;
- ``hh:<attribute>``: one household attribute (income band, tenure, ...);
- ``history``: the household's earlier outreach; ``context``: its 읍면동's smoothed rates.

The reasons of a row are its units with the largest positive sums (those that raised the score),
at most ``k``, and only units that name a fact of the household a caseworker can check:

- an indicator reason needs a signal reported before the round and names it: the signal, its
  value, the reported month, the source agency;
- the ``multi`` reason lists the signals it counts, each with its value, agency and month (an
  indicator it lists is not repeated as a later reason of the row);
- a household attribute names its source and the month of the household record;
- area facts (``AREA_UNITS``: the 읍면동's rates, 동 or 읍·면) are context of the 읍면동, shown
  apart on its page, never a household's reason; a group unit names no fact and is never one.

Pure functions; the caller reads the events and formats nothing else.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from pipeline.catalogue import IndicatorCatalogue, OutcomeCatalogue
from pipeline.months import format_month
from pipeline.vocabulary import BENEFIT_TEXT, HOUSEHOLD_SOURCE, INCOME_TEXT, TENURE_TEXT

# Units that describe the household's area, not the household: context, never a reason.
AREA_UNITS = ("context", "hh:urban")
# The window (months) of the distinct-types count a "several signals at once" reason lists.
MULTI_WINDOW = 3
MULTI_FALLBACK_WINDOW = 12


@dataclass(frozen=True)
class ReasonUnits:
    """Which feature column belongs to which reason unit (a sparse F × U membership)."""

    features: tuple[str, ...]
    units: tuple[str, ...]
    column_unit: np.ndarray  # unit index of every feature column, -1: not a reason

    def sums(self, contributions: np.ndarray) -> np.ndarray:
        """(rows × units) sums of the contributions of each unit's columns.

        Summed with ``np.add.reduceat`` rather than a matrix product: a BLAS product's rounding
        depends on its thread count, which differs between a process pool and Dask workers.
        """
        out = np.zeros((contributions.shape[0], len(self.units)), dtype=np.float64)
        known = np.flatnonzero(self.column_unit >= 0)
        if contributions.shape[0] == 0 or len(known) == 0:
            return out
        order = known[np.argsort(self.column_unit[known], kind="stable")]
        units = self.column_unit[order]
        starts = np.flatnonzero(np.r_[True, units[1:] != units[:-1]])
        out[:, units[starts]] = np.add.reduceat(contributions[:, order], starts, axis=1)
        return out


def unit_of(column: str, indicator_codes: set[str]) -> str | None:
    """The reason unit of a model input column (None for a column that is not explained)."""
    head, _, _ = column.partition("__")
    if head in indicator_codes:
        return f"ind:{head}"
    if head.startswith("group_"):
        return f"grp:{head.removeprefix('group_')}"
    if head == "distinct_types":
        return "multi"
    if head == "hh":
        return f"hh:{column.partition('__')[2]}"
    if head in ("history", "context"):
        return head
    return None


def reason_units(features: list[str], catalogue: IndicatorCatalogue) -> ReasonUnits:
    """Reason units of the model's input columns, in a fixed order."""
    codes = set(catalogue.codes)
    units: list[str] = [f"ind:{c}" for c in catalogue.codes]
    units += [f"grp:{g}" for g in catalogue.groups]
    extra = []
    for column in features:
        unit = unit_of(column, codes)
        if unit is not None and unit not in units and unit not in extra:
            extra.append(unit)
    units += extra
    index = {u: i for i, u in enumerate(units)}
    column_unit = np.array(
        [index.get(unit_of(c, codes) or "", -1) for c in features], dtype=np.int64
    )
    return ReasonUnits(tuple(features), tuple(units), column_unit)


def latest_signals(events: pd.DataFrame, as_of: int, window: int) -> pd.DataFrame:
    """Per (household, indicator): the last report before ``as_of`` and the count in ``window``.

    ``events``: household_key, indicator_code, reported_month (month index), value. Returns
    household_key, indicator_code, last_month, last_value, count_window.
    """
    known = events[events["reported_month"] < as_of]
    if known.empty:
        return pd.DataFrame(
            {
                "household_key": pd.Series(dtype="string"),
                "indicator_code": pd.Series(dtype="string"),
                "last_month": pd.Series(dtype="int64"),
                "last_value": pd.Series(dtype="float64"),
                "count_window": pd.Series(dtype="int64"),
            }
        )
    known = known.assign(
        household_key=known["household_key"].astype("string"),
        indicator_code=known["indicator_code"].astype("string"),
        value=known["value"].astype("float64"),
        recent=(known["reported_month"] >= as_of - window).astype("int64"),
    )
    ordered = known.sort_values(
        ["household_key", "indicator_code", "reported_month", "value"], kind="stable"
    )
    grouped = ordered.groupby(["household_key", "indicator_code"], sort=True, observed=True)
    last = grouped.tail(1).set_index(["household_key", "indicator_code"])
    counts = grouped["recent"].sum()
    return pd.DataFrame(
        {
            "last_month": last["reported_month"].astype("int64"),
            "last_value": last["value"],
            "count_window": counts.reindex(last.index).astype("int64"),
        }
    ).reset_index()


def fold_groups(
    unit_sums: np.ndarray,
    units: ReasonUnits,
    catalogue: IndicatorCatalogue,
    last_month: np.ndarray,
) -> np.ndarray:
    """Move each group unit's sum onto that group's most recently reported indicator of the row.

    ``last_month`` is (rows × indicators in catalogue order): the last reported month, -1 if
    none. Rows with no signal in a group keep the group unit. Returns a new array.
    """
    out = unit_sums.copy()
    index = {u: i for i, u in enumerate(units.units)}
    codes = catalogue.codes
    rows = np.arange(len(out))
    for group in catalogue.groups:
        g = index.get(f"grp:{group}")
        members = [i for i, c in enumerate(codes) if catalogue.indicators[i].group == group]
        if g is None or not members:
            continue
        months = last_month[:, members]
        has = months.max(axis=1) >= 0
        # Most recent; on equal months the first in catalogue order (argmax keeps the first).
        lead = np.array(members)[np.argmax(months, axis=1)]
        target = np.array([index[f"ind:{codes[i]}"] for i in range(len(codes))])[lead]
        out[rows[has], target[has]] += out[rows[has], g]
        out[rows[has], g] = 0.0
    return out


def top_units(unit_sums: np.ndarray, allowed: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices and values of the ``k`` largest positive allowed units per row (-1 when fewer).

    Equal sums are ordered by unit index (catalogue order), so the choice is deterministic.
    """
    masked = np.where(allowed & (unit_sums > 0), unit_sums, -np.inf)
    order = np.argsort(-masked, axis=1, kind="stable")[:, :k]
    values = np.take_along_axis(masked, order, axis=1)
    chosen = np.where(np.isfinite(values), order, -1)
    return chosen, np.where(np.isfinite(values), values, np.nan)


def _number(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.1f}"


def signal_text(
    code: str,
    value: float,
    month: int,
    count: int,
    window: int,
    catalogue: IndicatorCatalogue,
    language: str,
) -> str:
    """One indicator's evidence, e.g. "건강보험료 체납 6개월 (국민건강보험공단, 2025-10 보고)";
    ``count > 1`` adds how often it was reported in the last ``window`` months."""
    ind = catalogue.by_code()[code]
    unit = catalogue.units[ind.unit]
    month_text = format_month(int(month))
    if language == "ko":
        if ind.unit == "flag":
            what = f"{ind.name_ko} 발생"
        elif ind.unit == "krw":
            what = f"{ind.name_ko} {_number(value)}원"
        else:
            what = f"{ind.name_ko} {_number(value)}{unit.name_ko}"
        again = f", 최근 {window}개월 {count}회" if count > 1 else ""
        return f"{what} ({ind.agency_ko}, {month_text} 보고{again})"
    if ind.unit == "flag":
        what = ind.name_en
    elif ind.unit == "krw":
        what = f"{ind.name_en}: KRW {_number(value)}"
    else:
        what = f"{ind.name_en}: {_number(value)} {unit.name_en}"
    again = f", {count} times in {window} months" if count > 1 else ""
    return f"{what} ({ind.agency_en}, reported {month_text}{again})"


_ATTRIBUTE_PREFIXES = ("distinct_types", "hh", "history", "context")


def attribute_columns(columns: Iterable[str]) -> list[str]:
    """The feature columns whose values a reason's evidence may show."""
    return [c for c in columns if str(c).partition("__")[0] in _ATTRIBUTE_PREFIXES]


def multi_signals(last_month: np.ndarray, as_of: int, window: int) -> list[int]:
    """Catalogue positions of the indicators last reported in the ``window`` months before
    ``as_of`` (one row's ``last_month``, -1: never), the most recent first, then by catalogue
    position: the signals a distinct-types count of that window counts."""
    recent = np.flatnonzero((last_month >= as_of - window) & (last_month >= 0))
    order = np.lexsort((recent, -last_month[recent]))
    return [int(i) for i in recent[order]]


def multi_text(listed: list[str], window: int, language: str) -> str:
    """A "several signals at once" reason listing its signals, e.g.
    "최근 3개월 위기정보 2종: 단전 발생 (한국전력공사, 2026-09 보고); ..."."""
    n = len(listed)
    joined = "; ".join(listed)
    if language == "ko":
        what = f"최근 {window}개월 위기정보 {n}종" + (" 동시 발생" if n > 1 else "")
        return f"{what}: {joined}"
    kinds = f"{n} crisis types" if n > 1 else "1 crisis type"
    return f"{kinds} in {window} months: {joined}"


def attribute_text(
    unit: str,
    row: dict,
    catalogue: IndicatorCatalogue,
    outcomes: OutcomeCatalogue,
    language: str,
    *,
    as_of: int | None = None,
    household_month: int | None = None,
) -> str | None:
    """Text of a household attribute or history unit from the household's feature values (None:
    nothing to show, or not a fact of the household: area facts, groups, ``multi``)."""
    ko = language == "ko"
    if unit in AREA_UNITS or unit.startswith("grp:") or unit == "multi":
        return None
    if unit == "history":
        times = int(row.get("history__times_listed", 0) or 0)
        last = str(row.get("history__last_outcome", "none"))
        names = {o.code: (o.name_ko if ko else o.name_en) for o in outcomes.outcomes}
        if times <= 0:
            return "이전 발굴 이력 없음" if ko else "never listed before"
        outcome = names.get(last)
        since = row.get("history__months_since_listed")
        month = None
        if as_of is not None and since is not None and not pd.isna(since):
            month = format_month(as_of - int(since))
        if ko:
            text = f"이전 발굴 {times}회" + (f" (최근 {month} 회차)" if month else "")
            return text + (f", 직전 결과: {outcome}" if outcome else "")
        text = f"listed {times} times before" + (f" (last in {month})" if month else "")
        return text + (f", last outcome: {outcome}" if outcome else "")
    if unit.startswith("hh:"):
        text = _household_text(unit.removeprefix("hh:"), row, language)
        if text is None or household_month is None:
            return text
        source = HOUSEHOLD_SOURCE[language]
        month = format_month(household_month)
        return f"{text} ({source}, {month} 기준)" if ko else f"{text} ({source}, as of {month})"
    return None


def _household_text(name: str, row: dict, language: str) -> str | None:
    ko = language == "ko"
    value = row.get(f"hh__{name}")
    if value is None or pd.isna(value):
        return None
    if name == "tenure":
        text = TENURE_TEXT[language].get(str(value), str(value))
        return f"주거 형태: {text}" if ko else f"tenure: {text}"
    if name == "income_band":
        band = int(value)
        text = INCOME_TEXT[language][band] if 0 <= band < 5 else str(band)
        return f"소득 구간: 기준중위소득 {text}" if ko else f"income: {text} of median income"
    if name == "benefit_status":
        text = BENEFIT_TEXT[language].get(str(value), str(value))
        return f"수급 상태: {text}" if ko else f"benefit status: {text}"
    count = int(value)
    texts = {
        "size": ("가구원 {n}명", "{n} household members"),
        "minors": ("18세 미만 가구원 {n}명", "{n} members under 18"),
        "elderly_members": ("65세 이상 가구원 {n}명", "{n} members aged 65+"),
        "disabled_members": ("장애인 가구원 {n}명", "{n} members with a disability"),
    }
    flags = {
        "single_elderly": ("1인 노인 가구", "one-person household aged 65+"),
        "single_parent": ("한부모 가구", "single parent with minors"),
    }
    if name in texts:
        template = texts[name][0 if ko else 1]
        return template.format(n=count)
    if name in flags:
        return flags[name][0 if ko else 1] if count else None
    return None


def explain(
    contributions: np.ndarray,
    rows: pd.DataFrame,
    signals: pd.DataFrame,
    units: ReasonUnits,
    catalogue: IndicatorCatalogue,
    outcomes: OutcomeCatalogue,
    *,
    k: int,
    window: int,
    language: str,
    as_of: int | None = None,
    household_month: int | None = None,
) -> pd.DataFrame:
    """Top-``k`` reasons per row: ``reason_i`` (unit), ``reason_i_text``, ``reason_i_weight``.

    ``contributions`` is (rows × features) in ``units.features`` order, without the bias column;
    ``rows`` holds the same rows' features (household_key first); ``signals`` is the output of
    :func:`latest_signals` for these households. ``as_of`` (the round) dates the signals a
    ``multi`` reason lists and the last listing of a ``history`` reason; ``household_month`` is
    the month of the household record that attribute reasons name. Without ``as_of`` the
    ``multi`` unit is no reason (its signals cannot be named).
    """
    n = len(rows)
    sums = units.sums(np.asarray(contributions, dtype=np.float64))
    codes = catalogue.codes
    keys = rows["household_key"].astype("string").to_numpy()
    key_pos = {k_: i for i, k_ in enumerate(keys)}
    code_pos = {c: j for j, c in enumerate(codes)}
    last_month = np.full((n, len(codes)), -1, dtype=np.int64)
    last_value = np.zeros((n, len(codes)), dtype=np.float64)
    count = np.zeros((n, len(codes)), dtype=np.int64)
    if len(signals):
        r = signals["household_key"].map(key_pos)
        c = signals["indicator_code"].astype("string").map(code_pos)
        ok = r.notna().to_numpy() & c.notna().to_numpy()
        ri = r[ok].astype("int64").to_numpy()
        ci = c[ok].astype("int64").to_numpy()
        last_month[ri, ci] = signals["last_month"].to_numpy()[ok]
        last_value[ri, ci] = signals["last_value"].to_numpy()[ok]
        count[ri, ci] = signals["count_window"].to_numpy()[ok]
    sums = fold_groups(sums, units, catalogue, last_month)
    allowed = np.ones_like(sums, dtype=bool)
    allowed[:, : len(codes)] = last_month >= 0  # an indicator reason needs a reported signal
    for j, unit in enumerate(units.units):
        if unit in AREA_UNITS or unit.startswith("grp:") or (unit == "multi" and as_of is None):
            allowed[:, j] = False  # area context, or no fact of the household to name
    # Every unit is a candidate: one with nothing to show, or whose signal a "several signals"
    # reason already named, gives way to the next.
    chosen, weights = top_units(sums, allowed, sums.shape[1])
    out: dict[str, list] = {}
    for i in range(k):
        out[f"reason_{i + 1}"] = []
        out[f"reason_{i + 1}_text"] = []
        out[f"reason_{i + 1}_weight"] = []
    shown = attribute_columns(rows.columns)
    records = rows[shown].to_dict(orient="records") if n else []

    def evidence(row_index: int, u: int, again: bool = True) -> str:
        return signal_text(
            codes[u],
            last_value[row_index, u],
            last_month[row_index, u],
            int(count[row_index, u]) if again else 1,
            window,
            catalogue,
            language,
        )

    for row_index in range(n):
        picked: list[tuple[str, str, float]] = []
        named: set[int] = set()  # indicators a reason of this row already names
        for u, weight in zip(chosen[row_index], weights[row_index], strict=True):
            if u < 0 or len(picked) == k:
                break
            unit = units.units[int(u)]
            text = None
            if u < len(codes):
                if int(u) not in named:
                    text = evidence(row_index, int(u))
                    named.add(int(u))
            elif unit == "multi" and as_of is not None:
                listed, within = _multi_listed(last_month[row_index], as_of)
                if listed:
                    signals_text = [evidence(row_index, j, again=False) for j in listed]
                    text = multi_text(signals_text, within, language)
                    named |= set(listed)
            else:
                text = attribute_text(
                    unit,
                    records[row_index],
                    catalogue,
                    outcomes,
                    language,
                    as_of=as_of,
                    household_month=household_month,
                )
            if text:
                picked.append((unit, text, float(weight)))
        picked += [(None, None, np.nan)] * (k - len(picked))
        for i, (unit, text, weight) in enumerate(picked):
            out[f"reason_{i + 1}"].append(unit)
            out[f"reason_{i + 1}_text"].append(text)
            out[f"reason_{i + 1}_weight"].append(weight)
    frame = pd.DataFrame(out, index=rows.index)
    for i in range(k):
        frame[f"reason_{i + 1}"] = frame[f"reason_{i + 1}"].astype("string")
        frame[f"reason_{i + 1}_text"] = frame[f"reason_{i + 1}_text"].astype("string")
        frame[f"reason_{i + 1}_weight"] = frame[f"reason_{i + 1}_weight"].astype("float64")
    return frame


def _multi_listed(last_month: np.ndarray, as_of: int) -> tuple[list[int], int]:
    """The signals a ``multi`` reason of one row lists, and their window: those of the last
    ``MULTI_WINDOW`` months, else (none there) those of the last ``MULTI_FALLBACK_WINDOW``."""
    for window in (MULTI_WINDOW, MULTI_FALLBACK_WINDOW):
        listed = multi_signals(last_month, as_of, window)
        if listed:
            return listed, window
    return [], MULTI_WINDOW
