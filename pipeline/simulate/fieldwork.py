"""Simulated field work: the households a round lists are visited (and called), and their
answers come back the way a caseworker and the call service send them.

- :func:`hidden_state`: each household's hidden state when the list was made (the synthetic
  world's truth and the raw household record): in need, hardship, hard to reach, low income.
- :func:`draw_visits` (pure): reachability, outcome and resolved month of each listed household,
  drawn with the visit outcome model of the generator (:mod:`pipeline.visits`). The draws are
  common random numbers: a household's uniforms depend only on (seed, round, household key), so
  the same household visited in the same round under two policies gets the same outcome.
- :func:`write_returned_lists`: the round's real lists (``rounds/YYYY-MM/lists/``, written by
  ``outreach score``) with the outcome and contact date filled in for each visited household,
  as the field work stands at a month ``through``, for ``outreach outcomes import``.
- :func:`write_call_results`: the round's call files (``rounds/YYYY-MM/callcentre/``) with
  ``call_result`` and ``call_date`` filled in, for ``outreach outcomes import-calls``.
- :func:`contacts_for_advance`: resolved answers of the outcomes store as the contacts
  ``outreach generate --advance --contacts`` tells the world of.

Common random numbers: six uniforms per household from BLAKE2b (48-byte digest) of
``"fieldwork|<seed>|<round YYYY-MM>|<household key>"``, read as six little-endian 64-bit
integers whose top 53 bits give a uniform in [0, 1). Five feed :class:`pipeline.visits.VisitDraws`
(reachability, support, public or private support twice, the lag), the sixth the contact day
(1 to 28). A hash per household costs a few microseconds (200,000 households: well under a
second) and, unlike one random stream over the list, does not depend on who else is listed or
in which order.
"""

from __future__ import annotations

import csv
import hashlib
import io
import logging
from collections.abc import Sequence
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from pipeline.catalogue import Service, load_outcomes, load_services
from pipeline.config import Config
from pipeline.datasets import TableLayout
from pipeline.datasets.rounds import CALL_COLUMNS, CALLCENTRE, LISTS, round_dir
from pipeline.datasets.truth import NEED_TYPE, NO_NEED, TRUTH_TABLE, truth_for_round
from pipeline.errors import DataError
from pipeline.io import write_bytes
from pipeline.months import calendar_month, format_month, year_of
from pipeline.textsafe import from_spreadsheet_cell, spreadsheet_text
from pipeline.visits import (
    IN_PROGRESS,
    NOT_RESOLVED,
    OUTCOME_CODES,
    UNREACHABLE,
    HouseholdFacts,
    VisitDraws,
    hard_to_reach,
    linked_services,
    low_income,
    visit_outcomes,
)
from pipeline.vocabulary import (
    INCOME_BANDS,
    KEY,
    NEED_TYPES,
    TIER_TEXT,
    VISIT,
    list_header,
    list_header_keys,
)

log = logging.getLogger(__name__)

HIDDEN_COLUMNS = (KEY, "in_need", "hardship", "hard_to_reach", "low_income")
FACT_COLUMNS = ("income_index", "head_age", "minors", "disability")  # eligibility for services
VISIT_COLUMNS = (
    KEY,
    "outcome_code",
    "contact_month",
    "contact_day",
    "resolved_month",
    "reached",
    "in_need_at_visit",
    "service_code",
)
CONTACT_COLUMNS = (KEY, "contact_month", "outcome_code")
# The months after a round's interval in which a contact date is still accepted (the import's
# grace month: pipeline/outcomes/normalise.py GRACE_MONTHS; a test keeps the two equal). An
# answer resolved later is sent with the last day it accepts.
ANSWER_GRACE_MONTHS = 1
CONTACT_DAYS = 28  # the contact day is drawn from 1..28: a day of every month
_STREAM = "fieldwork"
_UNIFORMS = 6
_SERVICE_STREAM = "fieldwork-service"  # the linked service's two uniforms
ADULT_AGE = 18  # a member younger is a child (a service for households with minors)
# Call results (configs/outcomes.yaml call_results) of the simulated call service.
CALL_NOT_REACHED = "not_reached"
CALL_NEEDS_VISIT = "needs_visit"
CALL_REACHED = "reached"


# --- the hidden state ---------------------------------------------------------------------------


def hidden_state(config: Config, month: int) -> pd.DataFrame:
    """Each household of the synthetic world (``paths.truth_input`` and ``paths.raw_input``) at
    ``month`` (the last month of the data window: the state when the list was made).

    Columns: household_key (string), in_need (bool: the hidden truth at ``month``), hardship
    (float), hard_to_reach and low_income (bool, from the raw ``households`` table:
    :func:`pipeline.visits.hard_to_reach`, :func:`pipeline.visits.low_income`), emd_code.
    DataError when the truth lacks the month. A household of the register the truth lacks is
    not in need.
    """
    truth_layout = TableLayout(config.paths.truth_input)
    raw_layout = TableLayout(config.paths.raw_input)
    codes = truth_layout.partitions(TRUTH_TABLE)
    if not codes:
        raise DataError(f"{truth_layout.table_dir(TRUTH_TABLE)}: no hidden truth (synthetic only)")
    label = format_month(month)
    kinds = NEED_TYPE in pq.read_schema(truth_layout.partition_file(TRUTH_TABLE, codes[0])).names
    truth_parts = [
        pd.read_parquet(
            truth_layout.partition_file(TRUTH_TABLE, code),
            columns=[KEY, "hardship", "in_need", *([NEED_TYPE] if kinds else [])],
            filters=[("month", "==", label)],
        )
        for code in codes
    ]
    truth = pd.concat(truth_parts, ignore_index=True)
    if truth.empty:
        raise DataError(
            f"{truth_layout.table_dir(TRUTH_TABLE)}: no hidden truth for {label} (the world "
            "ends earlier: advance it with `outreach generate --advance`)"
        )
    household_parts = [
        pd.read_parquet(
            raw_layout.partition_file("households", code),
            columns=[KEY, "emd_code", "size", "tenure", "income_band"],
        )
        for code in raw_layout.partitions("households")
    ]
    if not household_parts:
        raise DataError(f"{raw_layout.table_dir('households')}: no raw households table")
    households = pd.concat(household_parts, ignore_index=True)
    households[KEY] = households[KEY].astype("string")
    truth[KEY] = truth[KEY].astype("string")
    state = truth.drop_duplicates(KEY).set_index(KEY).reindex(households[KEY])
    tenure = households["tenure"].astype("string").fillna("").to_numpy(dtype=object)
    income = households["income_band"].astype("string").fillna("").to_numpy(dtype=object)
    frame = pd.DataFrame(
        {
            KEY: households[KEY].to_numpy(),
            "in_need": state["in_need"].fillna(False).astype(bool).to_numpy(),
            "hardship": state["hardship"].astype("float64").to_numpy(),
            "hard_to_reach": hard_to_reach(tenure, households["size"].to_numpy()),
            "low_income": low_income(income),
            "emd_code": households["emd_code"].astype("string").to_numpy(),
        }
    )
    if kinds:
        frame[NEED_TYPE] = state[NEED_TYPE].astype("string").fillna(NO_NEED).to_numpy()
    facts = _household_facts(raw_layout, households, month)
    for column in FACT_COLUMNS:
        frame[column] = facts[column].to_numpy()
    frame[KEY] = frame[KEY].astype("string")
    return frame.sort_values(KEY, kind="stable").reset_index(drop=True)


def _household_facts(raw: TableLayout, households: pd.DataFrame, month: int) -> pd.DataFrame:
    """What a service's eligibility looks at (:class:`pipeline.visits.HouseholdFacts`), per
    household of ``households`` (in its order), from the raw members at ``month``."""
    members = pd.concat(
        [
            pd.read_parquet(
                raw.partition_file("household_members", code),
                columns=[KEY, "relation", "birth_year", "disability"],
            )
            for code in raw.partitions("household_members")
        ],
        ignore_index=True,
    )
    members[KEY] = members[KEY].astype("string")
    age = year_of(month) - members["birth_year"].astype("int64")
    per = members.assign(
        head_age=age.where(members["relation"].astype("string") == "head"),
        minor=(age < ADULT_AGE).astype("int64"),
        disabled=members["disability"].fillna(False).astype(bool),
    ).groupby(KEY)
    facts = pd.DataFrame(
        {
            "head_age": per["head_age"].max(),
            "minors": per["minor"].sum(),
            "disability": per["disabled"].any(),
        }
    ).reindex(households[KEY])
    bands = {b: i for i, b in enumerate(INCOME_BANDS)}
    income = households["income_band"].astype("string").map(bands)
    return pd.DataFrame(
        {
            "income_index": income.fillna(-1).to_numpy(dtype=np.int64),
            "head_age": facts["head_age"].fillna(0).to_numpy(dtype=np.int64),
            "minors": facts["minors"].fillna(0).to_numpy(dtype=np.int64),
            "disability": facts["disability"].fillna(False).to_numpy(dtype=bool),
        }
    )


def with_round_need(
    hidden: pd.DataFrame, untreated: pd.DataFrame, round_month: int
) -> pd.DataFrame:
    """``hidden`` with in_need replaced by the round's need before its own visits: in need at
    ``round_month`` or the month after in ``untreated`` (household_key, month as int, in_need:
    ``outreach generate --advance --untreated-need``), the label of the generator's history.
    A household ``untreated`` lacks is not in need. Pure."""
    need = truth_for_round(untreated, round_month)["in_need"]
    out = hidden.copy()
    out["in_need"] = (
        need.reindex(pd.Index(out[KEY].astype("string"))).fillna(False).to_numpy(dtype=bool)
    )
    return out


def offered_services(config: Config) -> tuple[Service, ...]:
    """The services a visit can link (configs/services.yaml)."""
    return load_services(Path(config.paths.services)).services


# --- the draws (pure) ---------------------------------------------------------------------------


def household_uniforms(
    keys: Sequence[str],
    seed: int,
    round_month: int,
    stream: str = _STREAM,
    count: int = _UNIFORMS,
) -> np.ndarray:
    """Uniforms in [0, 1) of shape (len(keys), count), one row per key, each row a function of
    (stream, seed, round, key) only (see the module docstring)."""
    prefix = f"{stream}|{int(seed)}|{format_month(round_month)}|".encode()
    digests = b"".join(
        hashlib.blake2b(prefix + str(key).encode("utf-8"), digest_size=8 * count).digest()
        for key in keys
    )
    words = np.frombuffer(digests, dtype="<u8").reshape(len(keys), count)
    return (words >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


def draw_visits(
    listed: pd.DataFrame,
    hidden: pd.DataFrame,
    round_month: int,
    seed: int,
    services: Sequence[Service] = (),
) -> pd.DataFrame:
    """How the visit of each listed household ends; pure.

    ``listed``: at least household_key (one row per household is kept); ``hidden``:
    :func:`hidden_state`. Returns one row per listed household, in the order of ``listed``:
    household_key, outcome_code (a code of :data:`pipeline.visits.OUTCOME_CODES`),
    contact_month (the round month: the visit or its attempt), contact_day (1..28),
    resolved_month (month index; -1 while in progress), reached (not unreachable),
    in_need_at_visit (the hidden state's in_need). A household ``hidden`` lacks is taken as not
    in need, neither hard to reach nor of low income (logged). The draws depend only on (seed,
    round_month, household key): common random numbers across policies. With ``services`` and a
    hidden state that knows the kinds of need, a linked visit records the service it linked
    (``service_code``: :func:`pipeline.visits.linked_services`, from a stream of its own, so the
    other draws stay as they are); NA otherwise.
    """
    keys = listed[KEY].astype("string").drop_duplicates().reset_index(drop=True)
    state = hidden.assign(**{KEY: hidden[KEY].astype("string")}).drop_duplicates(KEY)
    state = state.set_index(KEY).reindex(keys)
    unknown = int(state["in_need"].isna().sum())
    if unknown:
        log.warning("field work: %d listed household(s) not in the hidden state", unknown)
    need = state["in_need"].fillna(False).astype(bool).to_numpy()
    hard = state["hard_to_reach"].fillna(False).astype(bool).to_numpy()
    low = state["low_income"].fillna(False).astype(bool).to_numpy()
    uniforms = household_uniforms(keys.tolist(), seed, round_month)
    draws = VisitDraws.from_uniforms(uniforms[:, :5])
    outcome, resolved = visit_outcomes(need, hard, low, round_month, draws)
    codes = np.array(OUTCOME_CODES, dtype=object)
    service = np.full(len(keys), None, dtype=object)
    if services and NEED_TYPE in state.columns:
        kind = {n: i for i, n in enumerate(NEED_TYPES)}
        need_type = state[NEED_TYPE].astype("string").map(kind).fillna(0).to_numpy(np.int64)
        facts = HouseholdFacts(
            income=state["income_index"].fillna(-1).to_numpy(dtype=np.int64),
            head_age=state["head_age"].fillna(0).to_numpy(dtype=np.int64),
            disability=state["disability"].fillna(False).to_numpy(dtype=bool),
            minors=state["minors"].fillna(0).to_numpy(dtype=np.int64),
        )
        extra = household_uniforms(keys.tolist(), seed, round_month, _SERVICE_STREAM, 2)
        index = linked_services(outcome, need_type, facts, services, extra[:, 0], extra[:, 1])
        codes_of = np.array([s.code for s in services], dtype=object)
        service = np.where(index >= 0, codes_of[np.maximum(index, 0)], None)
    return pd.DataFrame(
        {
            KEY: keys.to_numpy(),
            "outcome_code": pd.array(codes[outcome], dtype="string"),
            "contact_month": np.full(len(keys), round_month, dtype=np.int64),
            "contact_day": (1 + np.floor(uniforms[:, 5] * CONTACT_DAYS)).astype(np.int64),
            "resolved_month": np.asarray(resolved, dtype=np.int64),
            "reached": outcome != UNREACHABLE,
            "in_need_at_visit": need,
            "service_code": pd.array(service, dtype="string"),
        },
        columns=list(VISIT_COLUMNS),
    )


def last_answer_month(round_month: int, interval_months: int) -> int:
    """The last month a contact date of the round may lie in (the import's rule: the round
    interval, then the grace month)."""
    return round_month + interval_months - 1 + ANSWER_GRACE_MONTHS


def answers_at(
    visits: pd.DataFrame, round_month: int, *, through: int, interval_months: int
) -> pd.DataFrame:
    """What a caseworker has to report at the end of month ``through``; pure.

    One row per visited household whose visit happened by ``through``: household_key,
    outcome_code, contact_date (a ``datetime.date``, or None). An outcome resolved after
    ``through`` (or still in progress) is reported ``in_progress`` with no date; a resolved one
    with the contact day in its resolved month, or the last day the import accepts when it
    resolved later than that (:func:`last_answer_month`).
    """
    done = visits.loc[visits["contact_month"].astype("int64") <= through]
    resolved = done["resolved_month"].astype("int64").to_numpy()
    final = (resolved != NOT_RESOLVED) & (resolved <= through)
    final &= (done["outcome_code"].astype(str) != OUTCOME_CODES[IN_PROGRESS]).to_numpy()
    last = last_answer_month(round_month, interval_months)
    days = []
    for is_final, month, day in zip(
        final, resolved, done["contact_day"].astype("int64").to_numpy(), strict=True
    ):
        if not is_final:
            days.append(None)
        elif month > last:  # late: the last day the import takes
            after = date(year_of(last + 1), calendar_month(last + 1), 1)
            days.append(date.fromordinal(after.toordinal() - 1))
        else:
            days.append(date(year_of(month), calendar_month(month), int(day)))
    return pd.DataFrame(
        {
            KEY: done[KEY].astype("string").to_numpy(),
            "outcome_code": np.where(
                final, done["outcome_code"].astype(str).to_numpy(), OUTCOME_CODES[IN_PROGRESS]
            ),
            "contact_date": days,
            "service_code": (
                done["service_code"].astype("string").where(final).to_numpy()
                if "service_code" in done.columns
                else pd.array([pd.NA] * len(done), dtype="string")
            ),
        }
    )


# --- the returned lists -------------------------------------------------------------------------


def _read_csv(path: Path) -> list[list[str]]:
    text = path.read_bytes().decode("utf-8-sig")
    return [list(row) for row in csv.reader(io.StringIO(text, newline=""))]


def _csv_bytes(rows: list[list[str]]) -> bytes:
    """UTF-8 with a BOM, CRLF: what ``outreach score`` writes and a spreadsheet saves."""
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerows(rows)
    return b"\xef\xbb\xbf" + buffer.getvalue().encode("utf-8")


def _cell(row: list[str], index: int) -> str:
    return from_spreadsheet_cell(row[index].strip()) if index < len(row) else ""


def round_list_files(config: Config, round_month: int) -> list[Path]:
    """The 읍면동 lists (CSV) ``outreach score`` wrote for the round, sorted."""
    folder = round_dir(config, round_month) / LISTS
    if not folder.is_dir():
        raise DataError(f"{folder}: no lists (was round {format_month(round_month)} scored?)")
    return sorted(folder.glob("*/emd_*.csv"))


def write_returned_lists(
    config: Config,
    round_month: int,
    visits: pd.DataFrame,
    out_dir: Path,
    *,
    through: int,
    tiers: Sequence[str] = (VISIT,),
    names: bool = True,
) -> list[Path]:
    """The round's 읍면동 lists filled in as the field work stands at the end of ``through``,
    written to ``out_dir/<시군구>/emd_<읍면동>.csv`` (atomically); returns the written files.

    Rows of the ``tiers`` (the visit tier: carried-over cases on it included; the phone tier is
    the call service's) whose household is in ``visits`` (:func:`draw_visits`) get the outcome
    (its name in the list's language as the drop-down offers it, or the code with
    ``names=False``) and the contact date (``YYYY-MM-DD``) of :func:`answers_at`; other rows
    stay empty, as does the override column. A list with no answer is not written.
    """
    out_dir = Path(out_dir)
    catalogue = load_outcomes(config.paths.outcomes) if names else None
    offered = offered_services(config) if names else ()
    answers = answers_at(
        visits,
        round_month,
        through=through,
        interval_months=config.window.round_interval_months,
    )
    answers = answers.drop_duplicates(KEY, keep="last").set_index(KEY)
    keys = list_header_keys()
    written: list[Path] = []
    answered = 0
    for path in round_list_files(config, round_month):
        rows = _read_csv(path)
        if not rows:
            continue
        header = rows[0]
        language = "en" if header == list_header("en") else "ko"
        position = {keys[h]: i for i, h in enumerate(header) if h in keys}
        if any(c not in position for c in (KEY, "tier", "outcome_code", "contact_date")):
            raise DataError(f"{path}: not a list written by `outreach score` (header)")
        wanted = {TIER_TEXT[lang][t] for lang in TIER_TEXT for t in tiers} | set(tiers)
        label = {
            o.code: (o.name_ko if language == "ko" else o.name_en)
            for o in (catalogue.outcomes if catalogue is not None else ())
        }
        service_label = {v.code: (v.name_ko if language == "ko" else v.name_en) for v in offered}
        filled = 0
        for row in rows[1:]:
            if _cell(row, position["tier"]) not in wanted:
                continue
            key = _cell(row, position[KEY])
            if key not in answers.index:
                continue
            answer = answers.loc[key]
            width = max(position["outcome_code"], position["contact_date"]) + 1
            row.extend([""] * (width - len(row)))
            code = str(answer["outcome_code"])
            row[position["outcome_code"]] = spreadsheet_text(label.get(code, code))
            day = answer["contact_date"]
            row[position["contact_date"]] = day.isoformat() if day is not None else ""
            linked = answer.get("service_code")
            if "linked_service" in position and isinstance(linked, str):
                row.extend([""] * (position["linked_service"] + 1 - len(row)))
                name = service_label.get(linked, linked)
                row[position["linked_service"]] = spreadsheet_text(name)
            filled += 1
        if filled:
            target = out_dir / path.parent.name / path.name
            write_bytes(_csv_bytes(rows), target)
            written.append(target)
            answered += filled
    log.info(
        "field work: %d answer(s) of round %s as at %s in %d list(s) under %s",
        answered,
        format_month(round_month),
        format_month(through),
        len(written),
        out_dir,
    )
    return written


# --- the call service ---------------------------------------------------------------------------


def call_results(visits: pd.DataFrame, *, through: int) -> pd.DataFrame:
    """What the call service reports for each household called by ``through``; pure.

    From the draws of :func:`draw_visits` (the call of a household uses its draws: the same
    household called or visited in the same round is reached or not alike): not_reached when
    the draw is unreachable, needs_visit when the household is in need, else reached. The call
    date is the contact day in the round month. Columns: household_key, call_result,
    call_date (``datetime.date``).
    """
    done = visits.loc[visits["contact_month"].astype("int64") <= through]
    reached = done["reached"].astype(bool).to_numpy()
    need = done["in_need_at_visit"].astype(bool).to_numpy()
    result = np.where(~reached, CALL_NOT_REACHED, np.where(need, CALL_NEEDS_VISIT, CALL_REACHED))
    days = [
        date(year_of(m), calendar_month(m), int(d))
        for m, d in zip(
            done["contact_month"].astype("int64"), done["contact_day"].astype("int64"), strict=True
        )
    ]
    return pd.DataFrame(
        {KEY: done[KEY].astype("string").to_numpy(), "call_result": result, "call_date": days}
    )


def write_call_results(
    config: Config,
    round_month: int,
    visits: pd.DataFrame,
    out_dir: Path,
    *,
    through: int,
    hidden: pd.DataFrame | None = None,
    seed: int | None = None,
) -> list[Path]:
    """The round's call files (``rounds/YYYY-MM/callcentre/calls_<시군구>.csv``) with
    ``call_result`` and ``call_date`` filled in (:func:`call_results`), written to
    ``out_dir/calls_<시군구>.csv`` for ``outreach outcomes import-calls``; returns the files.

    Households of the call files that ``visits`` lacks (the lead draws the visit tier only) are
    drawn here with :func:`draw_visits`, from ``hidden`` (default: :func:`hidden_state` at the
    month before the round) and ``seed`` (default: ``simulate.seed`` of the config). A file with
    no result is not written.
    """
    out_dir = Path(out_dir)
    folder = round_dir(config, round_month) / CALLCENTRE
    files = sorted(folder.glob("calls_*.csv")) if folder.is_dir() else []
    tables = [(path, _read_csv(path)) for path in files]
    tables = [(path, rows) for path, rows in tables if rows]
    sent: list[str] = []
    for path, rows in tables:
        if rows[0][: len(CALL_COLUMNS)] != list(CALL_COLUMNS):
            raise DataError(f"{path}: not a call file written by `outreach score` (header)")
        index = CALL_COLUMNS.index(KEY)
        sent.extend(_cell(row, index) for row in rows[1:] if len(row) > index)
    known = set(visits[KEY].astype(str)) if len(visits) else set()
    missing = [k for k in dict.fromkeys(sent) if k and k not in known]
    if missing:
        if hidden is None:
            hidden = hidden_state(config, round_month - 1)
        if seed is None:
            seed = config.simulate.seed
        drawn = draw_visits(
            pd.DataFrame({KEY: missing}), hidden, round_month, seed, offered_services(config)
        )
        visits = pd.concat([visits[list(VISIT_COLUMNS)], drawn], ignore_index=True)
    results = call_results(visits, through=through).drop_duplicates(KEY).set_index(KEY)
    where = {c: CALL_COLUMNS.index(c) for c in (KEY, "call_result", "call_date")}
    written: list[Path] = []
    called = 0
    for path, rows in tables:
        filled = 0
        for row in rows[1:]:
            key = _cell(row, where[KEY])
            if key not in results.index:
                continue
            row.extend([""] * (len(CALL_COLUMNS) - len(row)))
            row[where["call_result"]] = str(results.at[key, "call_result"])
            row[where["call_date"]] = results.at[key, "call_date"].isoformat()
            filled += 1
        if filled:
            target = out_dir / path.name
            write_bytes(_csv_bytes(rows), target)
            written.append(target)
            called += filled
    log.info(
        "field work: %d call result(s) of round %s in %d file(s) under %s",
        called,
        format_month(round_month),
        len(written),
        out_dir,
    )
    return written


# --- contacts for the world ---------------------------------------------------------------------


def contacts_for_advance(outcomes_frame: pd.DataFrame) -> pd.DataFrame:
    """The contacts ``outreach generate --advance --contacts`` tells the world of: household_key,
    contact_month (``YYYY-MM``, the month of the contact date), outcome_code; pure.

    ``outcomes_frame``: rows of the outcomes store (one round or several). Only resolved
    answers with a contact date count (not in progress, a resolved month when the frame has
    that column); repeated rows are kept once.
    """
    frame = outcomes_frame
    if frame.empty:
        return pd.DataFrame({c: pd.Series(dtype="string") for c in CONTACT_COLUMNS})
    code = frame["outcome_code"].astype("string")
    stamp = pd.to_datetime(frame["contact_date"], errors="coerce")
    keep = code.notna() & (code != OUTCOME_CODES[IN_PROGRESS]) & stamp.notna()
    if "resolved_month" in frame:
        keep &= frame["resolved_month"].notna()
    keep = keep.fillna(False).to_numpy(dtype=bool)
    stamp = stamp[keep]
    months = (stamp.dt.year * 12 + stamp.dt.month - 1).astype("int64")
    out = pd.DataFrame(
        {
            KEY: frame.loc[keep, KEY].astype("string").to_numpy(),
            "contact_month": [format_month(m) for m in months],
            "outcome_code": code[keep].to_numpy(),
        }
    ).astype("string")
    return out.drop_duplicates().reset_index(drop=True)
