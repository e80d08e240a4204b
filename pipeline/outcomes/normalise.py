"""Pure normalisation of a returned list's rows into the frame the import checks run on.

Nothing here reads files: the round's list, the household register and the catalogue come in as
a :class:`RoundFacts`. The output (:func:`checked_rows`) holds one row per filled-in file row
with the columns the expectations of :mod:`pipeline.outcomes.checks` look at:

- ``row`` (file row number), ``household_key``, ``sigungu_code``, ``emd_code``, ``outcome_code``
  (lower case; the Korean or English name of an outcome becomes its code), ``contact_date`` (as
  written), ``contact_day`` (``YYYYMMDD`` integer, NA when empty or not a date);
- ``household_emd`` (the 읍면동 of the household in the register, NA when unknown),
  ``emd_sigungu`` (the 시군구 of the row's 읍면동), ``listing``: ``listed`` (on the round's
  list of this 읍면동), ``added`` (marked as added by the caseworker), ``not_listed``, or NA
  when the household is unknown or of another 읍면동 (reported by another check);
- ``added_mark`` (the selection column says local discretion);
- ``override_code`` (the override column as a code of ``override_reasons``: its Korean name,
  English name or code is understood; text that is none of them stays, folded, and is rejected)
  and ``override_action`` (``skip``, ``add``, ``unknown`` for such text, ``none`` when empty);
- ``service_code`` (the linked service column as a code of configs/services.yaml, understood
  as the override is) and ``service_outcome`` (the outcome a link to that service records).

One rule marks a row as a household the caseworker added: it is not on the round's list of its
읍면동 and either its selection says local discretion or its override is an ``add`` reason
(``listing`` = ``added``). A household on the list stays listed whatever the row says (an ``add``
override on it is rejected by the checks).

Rows not filled in yet (no outcome code, no contact date, no override) are left out and
counted; identical repeats of a row (same household, same answer) are kept once and counted.
A message about a cell names its row and column; it shows the cell's value only when
:func:`pipeline.textsafe.shown_value` allows it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.errors import DataError
from pipeline.months import first_day, format_month, month_index, parse_month
from pipeline.outcomes.returned import ROW
from pipeline.textsafe import shown_value
from pipeline.vocabulary import LOCAL_DISCRETION

# Months after the round's interval in which a contact date is still accepted (late answers).
GRACE_MONTHS = 1

# Dates a caseworker types or a spreadsheet turns them into, read only when unambiguous: the year
# comes first and has four digits. A time after the date (a date cell read back) is ignored.
_TIME = r"(?:[ T]\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?"
_DATE_FORMS = (
    re.compile(r"^(\d{4})\s*[-./]\s*(\d{1,2})\s*[-./]\s*(\d{1,2})\s*\.?" + _TIME + r"$"),
    re.compile(r"^(\d{4})(\d{2})(\d{2})$"),  # 20261103
    re.compile(r"^(\d{4})\s*년\s*(\d{1,2})\s*월\s*(\d{1,2})\s*일?$"),  # 2026년 11월 3일
)
_ROUND_FORMS = (
    re.compile(r"^(\d{4})\s*[-./]\s*(\d{1,2})\s*\.?$"),  # 2026-10, 2026.10, 2026. 10.
    re.compile(r"^(\d{4})(\d{2})$"),  # 202610
    re.compile(r"^(\d{4})\s*년\s*(\d{1,2})\s*월?$"),  # 2026년 10월
)
_MONTH_NAMES = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
# Excel's display of a month typed as "2026-10" in an English locale: "Oct-26" (mmm-yy).
_MONTH_NAME_YEAR = re.compile(r"^([A-Za-z]{3})[a-z]*[-\s.']*(\d{2}|\d{4})$")
# Excel date serials (days since 1899-12-30) of the years 2000 to 2099, as a cell whose date
# format was lost shows them: 36526 is 2000-01-01, 73050 is 2099-12-31.
_SERIAL = re.compile(r"^(\d{5})(?:\.\d+)?$")
SERIAL_RANGE = (36526, 73050)
_EXCEL_EPOCH = date(1899, 12, 30)


@dataclass(frozen=True)
class RoundFacts:
    """What the checks of one round compare a returned list with.

    listed: household_key, emd_code, selection_reason, selection_probability of the households on
    the round's lists (tiers visit and phone). register: household_key, emd_code of every
    household of the 시군구 concerned. emd_sigungu: 읍면동 code -> 시군구 code.
    """

    round_label: str
    interval_months: int
    listed: pd.DataFrame
    register: pd.DataFrame
    emd_sigungu: dict[str, str]
    outcome_codes: tuple[str, ...]
    resolved_codes: frozenset[str]
    outcome_names: dict[str, str]  # folded Korean / English name of an outcome -> its code
    added_marks: frozenset[str]  # selection texts meaning "added by the caseworker" (folded)
    # outcome code -> the name the list's drop-down offers (Korean), for Korean rejection reasons
    outcome_labels: dict[str, str] = field(default_factory=dict)
    # Overrides (the 담당자 판단 column): folded Korean / English name or code -> reason code;
    # reason code -> its action (skip or add) and its Korean name (for rejection reasons).
    override_names: dict[str, str] = field(default_factory=dict)
    override_actions: dict[str, str] = field(default_factory=dict)
    override_labels: dict[str, str] = field(default_factory=dict)
    # Outcomes that say the household was contacted (a skip override contradicts them).
    contacted_codes: frozenset[str] = frozenset()
    # Services (the 연계 서비스 column): folded Korean / English name or code -> service code;
    # service code -> the outcome a link to it records, and its Korean name.
    service_names: dict[str, str] = field(default_factory=dict)
    service_outcomes: dict[str, str] = field(default_factory=dict)
    service_labels: dict[str, str] = field(default_factory=dict)
    # register_emd(register), when the import built it once for every file of the same 시군구
    register_by_key: pd.Series | None = None

    @property
    def round_index(self) -> int:
        return parse_month(self.round_label)

    @property
    def first_day(self) -> date:
        return first_day(self.round_index).date()

    @property
    def last_day(self) -> date:
        """The last day a contact date may carry: the round interval, then the grace month."""
        after = self.round_index + self.interval_months + GRACE_MONTHS
        return date.fromordinal(first_day(after).date().toordinal() - 1)


def fold(text: str) -> str:
    """Case- and space-insensitive form of a label."""
    return re.sub(r"\s+", " ", text).strip().casefold()


def excel_serial_day(text: str) -> date | None:
    """The day of an Excel date serial (``46329`` -> 2026-11-03), for the years 2000 to 2099."""
    match = _SERIAL.match(text)
    if not match or not SERIAL_RANGE[0] <= int(match.group(1)) <= SERIAL_RANGE[1]:
        return None
    return date.fromordinal(_EXCEL_EPOCH.toordinal() + int(match.group(1)))


def parse_day(text: str | None) -> date | None:
    """A contact date when it is unambiguous, else None; pure. Accepted (docs/outcomes.md):

    ``2026-11-03``, ``2026.11.3``, ``2026/11/03``, ``2026. 11. 3.`` (what spreadsheets write),
    ``20261103``, ``2026년 11월 3일``, a date cell (read as ``2026-11-03``, a time after it is
    ignored) and an Excel date serial (``46329``: a date cell whose format was lost). Two-digit
    years (``26.11.03``) and day-month-year or month-day-year orders (``03/11/2026``) are
    ambiguous and not read.
    """
    if text is None or pd.isna(text):
        return None
    text = str(text).strip()
    serial = excel_serial_day(text)
    if serial is not None:
        return serial
    for form in _DATE_FORMS:
        match = form.match(text)
        if match:
            try:
                return date(int(match.group(1)), int(match.group(2)), int(match.group(3)))
            except ValueError:
                return None
    return None


def parse_round(text: str | None) -> str | None:
    """A round as ``YYYY-MM`` when it is unambiguous, else None; pure. Besides ``2026-10``
    (``2026.10``, ``2026/10``, ``202610``, ``2026년 10월``): what a spreadsheet turns a typed
    ``2026-10`` into, the first day of the month as a date cell, text (``2026-10-01``) or
    an Excel serial (``46296``), or ``Oct-26`` (its display in an English locale)."""
    if text is None or pd.isna(text):
        return None
    text = str(text).strip()
    year = month = None
    for form in _ROUND_FORMS:
        match = form.match(text)
        if match:
            year, month = int(match.group(1)), int(match.group(2))
            break
    else:
        named = _MONTH_NAME_YEAR.match(text)
        if named and named.group(1).lower() in _MONTH_NAMES:
            year = int(named.group(2)) + (2000 if len(named.group(2)) == 2 else 0)
            month = _MONTH_NAMES.index(named.group(1).lower()) + 1
        else:
            day = parse_day(text)
            if day is not None and day.day == 1:  # the first of the month: a date cell
                year, month = day.year, day.month
    if year is None or month is None or not 1 <= month <= 12:
        return None
    return format_month(month_index(year, month))


def day_number(day: date | None) -> int | None:
    return None if day is None else day.year * 10000 + day.month * 100 + day.day


def file_round(path: Path, rows: pd.DataFrame) -> str:
    """The one round the file at ``path`` (a returned list or call results) answers for;
    DataError naming the file when there is none or several."""
    try:
        return _one_round(rows)
    except ValueError as exc:
        raise DataError(f"{path}: {exc}") from None


def _one_round(rows: pd.DataFrame) -> str:
    given = rows["round"].dropna()
    parsed = {parse_round(v) for v in given}
    if None in parsed:
        index, bad = next((i, v) for i, v in given.items() if parse_round(v) is None)
        shown = shown_value(bad)  # a name or a phone number typed here is never echoed
        what = f"{shown!r}" if shown is not None else "a value (not shown)"
        raise ValueError(
            f"row {int(rows.at[index, ROW])}, column 회차 / round holds {what}: expected YYYY-MM"
        )
    if not parsed:
        raise ValueError("no row names its round (column 회차 / round)")
    if len(parsed) > 1:
        raise ValueError(f"the file mixes rounds {', '.join(sorted(parsed))}: send one per round")
    return parsed.pop()


@dataclass(frozen=True)
class Normalised:
    """The checked frame and what was set aside before the checks."""

    checked: pd.DataFrame
    blank_rows: int
    repeated_rows: int


def register_emd(register: pd.DataFrame) -> pd.Series:
    """The 읍면동 of every household of a register (its first row), indexed by household key;
    pure."""
    first = register.drop_duplicates("household_key").set_index("household_key")
    return first["emd_code"].astype("string")


def _strip(values: pd.Series) -> pd.Series:
    text = values.astype("string").str.strip()
    return text.mask(text == "")


def checked_rows(rows: pd.DataFrame, facts: RoundFacts) -> Normalised:
    """The frame the import expectations run on (see the module docstring); pure."""
    frame = pd.DataFrame({ROW: rows[ROW].astype("int64").to_numpy()})
    for column in ("household_key", "sigungu_code", "emd_code", "outcome_code", "contact_date"):
        values = rows[column] if column in rows else pd.Series(pd.NA, index=rows.index)
        frame[column] = _strip(values).to_numpy()
    # Codes as the drop-down gives them; a Korean or English name typed instead is understood.
    code = frame["outcome_code"]
    frame["outcome_code"] = pd.array(
        [facts.outcome_names.get(fold(c), fold(c)) if isinstance(c, str) else None for c in code],
        dtype="string",
    )
    selection = rows["selection"] if "selection" in rows else pd.Series(pd.NA, index=rows.index)
    selection = _strip(selection).to_numpy()
    frame["added_mark"] = [isinstance(s, str) and fold(s) in facts.added_marks for s in selection]
    override = rows["override"] if "override" in rows else pd.Series(pd.NA, index=rows.index)
    override = [
        facts.override_names.get(fold(o), fold(o)) if isinstance(o, str) else None
        for o in _strip(override).to_numpy()
    ]
    frame["override_code"] = pd.array(override, dtype="string")
    linked = rows.get("linked_service", pd.Series(pd.NA, index=rows.index))
    service = [
        facts.service_names.get(fold(v), fold(v)) if isinstance(v, str) else None
        for v in _strip(linked).to_numpy()
    ]
    frame["service_code"] = pd.array(service, dtype="string")
    # the outcome a link to the service records (NA for no service or an unknown one)
    frame["service_outcome"] = pd.array(
        [facts.service_outcomes.get(v) if v is not None else None for v in service],
        dtype="string",
    )
    frame["override_action"] = pd.array(
        ["none" if o is None else facts.override_actions.get(o, "unknown") for o in override],
        dtype="string",
    )

    blank = (
        frame["outcome_code"].isna() & frame["contact_date"].isna() & frame["override_code"].isna()
    )
    frame = frame[~blank.to_numpy()].reset_index(drop=True)

    # A list of one 읍면동: a row added without its 읍면동 code belongs to that 읍면동.
    emds = frame["emd_code"].dropna().unique()
    if len(emds) == 1:
        frame["emd_code"] = frame["emd_code"].fillna(emds[0])

    days = [parse_day(t) for t in frame["contact_date"]]
    frame["contact_day"] = pd.array([day_number(d) for d in days], dtype="Int64")

    by_key = facts.register_by_key
    if by_key is None:
        by_key = register_emd(facts.register)
    frame["household_emd"] = by_key.reindex(frame["household_key"]).to_numpy()
    frame["household_emd"] = frame["household_emd"].astype("string")
    frame["emd_sigungu"] = pd.array(
        [facts.emd_sigungu.get(e) if isinstance(e, str) else None for e in frame["emd_code"]],
        dtype="string",
    )
    listed = facts.listed.drop_duplicates("household_key").set_index("household_key")
    listed_emd = listed["emd_code"].astype("string").reindex(frame["household_key"]).to_numpy()
    own = (frame["household_emd"] == frame["emd_code"]).fillna(False).to_numpy(dtype=bool)
    on_list = (pd.array(listed_emd, dtype="string") == frame["emd_code"].array).fillna(False)
    on_list = np.asarray(on_list, dtype=bool)
    # One rule for an added household: off the list, and marked by its selection or an add.
    marked = frame["added_mark"].to_numpy(dtype=bool) | (
        frame["override_action"] == "add"
    ).to_numpy(dtype=bool)
    listing = np.where(on_list, "listed", np.where(marked, "added", "not_listed"))
    frame["listing"] = pd.array(np.where(own, listing, None), dtype="string")

    # The same answer twice (an emd file and its 시군구 file, a pasted row): keep it once.
    answer = [
        "household_key",
        "emd_code",
        "outcome_code",
        "contact_day",
        "listing",
        "override_code",
        "service_code",
    ]
    repeated = frame["household_key"].notna() & frame.duplicated(answer, keep="first")
    frame = frame[~repeated.to_numpy()].reset_index(drop=True)
    return Normalised(frame, int(blank.sum()), int(repeated.sum()))


def accepted_outcomes(checked: pd.DataFrame, facts: RoundFacts, source_sha256: str) -> pd.DataFrame:
    """Stored rows (``pipeline.datasets.outcomes.COLUMNS``) of checked rows that passed; pure."""
    listed = facts.listed.drop_duplicates("household_key").set_index("household_key")
    keys = checked["household_key"].astype("string")
    added = (checked["listing"] == "added").fillna(False).to_numpy(dtype=bool)
    known = checked["override_code"].isin(list(facts.override_actions)).fillna(False)
    override = checked["override_code"].astype("string").where(known.to_numpy(dtype=bool))
    reason = listed["selection_reason"].astype("string").reindex(keys).to_numpy()
    probability = listed["selection_probability"].astype("float64").reindex(keys).to_numpy()
    days = [parse_day(t) for t in checked["contact_date"]]
    resolved = checked["outcome_code"].isin(facts.resolved_codes).fillna(False).to_numpy(bool)
    resolved_month = [
        format_month(month_index(d.year, d.month)) if d is not None and r else None
        for d, r in zip(days, resolved, strict=True)
    ]
    return pd.DataFrame(
        {
            "household_key": keys.to_numpy(),
            "sigungu_code": checked["emd_sigungu"].astype("string").to_numpy(),
            "emd_code": checked["emd_code"].astype("string").to_numpy(),
            "round": facts.round_label,
            "outcome_code": checked["outcome_code"].astype("string").to_numpy(),
            "contact_date": days,
            "added_by_caseworker": added,
            "selection_reason": np.where(added, LOCAL_DISCRETION, reason),
            # How a caseworker chose a household is nobody's record: its selection probability
            # is unknown (empty; configs/outcomes.yaml, local_discretion), so neither inverse-
            # probability weights nor off-policy estimates pretend to know it.
            "selection_probability": np.where(added, np.nan, probability),
            "source_file_sha256": source_sha256,
            "resolved_month": resolved_month,
            "override_code": override.to_numpy(),
            # the service the visit linked: a label of the service match (NA: none recorded)
            "service_code": checked["service_code"]
            .astype("string")
            .where(checked["service_code"].isin(list(facts.service_outcomes)).fillna(False))
            .to_numpy(),
        }
    )
