"""``outreach outcomes import-calls``: the call service's results in, checked, merged into the
calls store (``outcomes/round=YYYY-MM/calls.parquet``).

The call service (the ministry's automated first-contact calls, AI 초기상담) gets the round's
phone tier as one CSV per 시군구 (``rounds/YYYY-MM/callcentre/calls_<시군구>.csv``, written by
``outreach score``; interface in docs/callcentre.md) and sends the same file back with
``call_result`` (a code of ``call_results`` in configs/outcomes.yaml, or its Korean or English
name) and ``call_date`` filled in. Every row goes through the path of returned lists:

- read as text (UTF-8 with or without a BOM, or CP949; a formula-neutralising apostrophe taken
  off: :func:`pipeline.outcomes.returned.cell_text`); only the interface's columns are read, any
  other column the service adds is dropped while reading;
- the round read and refused as a returned list's is (:func:`normalise.file_round`); a round not
  scored here, or an interface version this code does not know, refuses the file;
- dates read by :func:`normalise.parse_day` (the same unambiguous forms as contact dates) and
  checked against the round's window (:class:`normalise.RoundFacts`: the round interval and the
  grace month);
- the household must be in the phone tier the round sent for that 시군구 (its call file), with
  that file's call id and 읍면동;
- checked with Great Expectations (:class:`checks.RowValidator`; the files of a round in one
  run, as returned lists are: :func:`importer.import_in_phases`), rejections written back in
  Korean (:func:`checks.rejection_bytes`, ``outcomes/rejected/<sha256>.csv``), one JSON line in
  ``outcomes/imports.jsonl``, the merge written atomically under the output root's lock, and an
  ``outcomes imported`` ledger entry of kind ``calls`` when the store changed.

What each result does next round (``next_tier``) is decided by the scoring's carry-over from the
stored results; this module only checks and stores them.
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline.catalogue import OutcomeCatalogue
from pipeline.config import Config
from pipeline.datasets import OutputLayout
from pipeline.datasets.outcomes import (
    merge_calls,
    outcomes_root,
    read_round_calls,
    rejection_file,
    round_calls_file,
    write_round_calls,
)
from pipeline.datasets.rounds import CALL_INTERFACE_VERSION, SCORES, call_export_file
from pipeline.errors import DataError
from pipeline.expectations import QUARANTINE, Check
from pipeline.io import sha256_file, write_bytes
from pipeline.lineage import events
from pipeline.locks import SHORT_WAIT_S, hold
from pipeline.outcomes.checks import (
    FILE,
    REASON_HEADER,
    ROW_HEADER,
    WITHHELD_KO,
    RowCheck,
    RowValidator,
    rejection_bytes,
)
from pipeline.outcomes.importer import (
    IMPORTED,
    NOTHING_NEW,
    NOTHING_VALID,
    ImportResult,
    Stored,
    append_log,
    check_by_round,
    import_in_phases,
    rejection_lines,
)
from pipeline.outcomes.normalise import (
    RoundFacts,
    day_number,
    file_round,
    fold,
    parse_day,
    parse_round,
)
from pipeline.outcomes.returned import ROW, cell_text, decode_text
from pipeline.textsafe import WITHHELD, shown_or_withheld, spreadsheet_text

log = logging.getLogger(__name__)

SUITE = "call_results"
KIND = "calls"  # the import log's and the ledger's name for this kind of file
SUPPORTED_VERSIONS = (CALL_INTERFACE_VERSION,)
# Columns read from a results file (the others of CALL_COLUMNS are ours, sent for reference).
READ = (
    "interface_version",
    "round",
    "sigungu_code",
    "emd_code",
    "household_key",
    "call_id",
    "call_result",
    "call_date",
)
REQUIRED = ("interface_version", "round", "sigungu_code", "household_key", "call_id")
RESULT_COLUMNS = ("call_result", "call_date")
# The Korean headers of the rejection file (the interface's column name after each).
KOREAN = {
    "round": "회차",
    "sigungu_code": "시군구 코드",
    "emd_code": "읍면동 코드",
    "household_key": "가구 관리번호",
    "call_id": "통화 ID",
    "call_result": "통화 결과",
    "call_date": "통화일",
}


# --- reading ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ResultsFile:
    """The read columns of a results file (text, NA for empty cells) and its digest."""

    path: Path
    sha256: str
    rows: pd.DataFrame  # ROW, then READ


def _csv_frame(data: bytes, path: Path, read: Sequence[str], required: Sequence[str]):
    """Rows of a CSV in the call interface (header = column names), the ``read`` columns only,
    as text, with the file's row number (the header is row 1); fully empty rows dropped."""
    rows = list(csv.reader(io.StringIO(decode_text(data, path), newline="")))
    if not rows:
        raise DataError(f"{path}: empty file")
    positions: dict[str, int] = {}
    for index, name in enumerate(rows[0]):
        key = (cell_text(name) or "").lower()
        if key in read:
            if key in positions:
                raise DataError(f"{path}: column {key} appears twice in the header")
            positions[key] = index
    missing = [k for k in required if k not in positions]
    if missing:
        raise DataError(
            f"{path}: the header lacks column(s) {', '.join(missing)}: is this a call results "
            f"file of interface version {CALL_INTERFACE_VERSION} (docs/callcentre.md)?"
        )
    data_: dict[str, list[Any]] = {ROW: [], **{k: [] for k in read}}
    for number, values in enumerate(rows[1:], start=2):
        kept = {
            k: cell_text(values[positions[k]])
            if k in positions and positions[k] < len(values)
            else None
            for k in read
        }
        if all(v is None for v in kept.values()):
            continue
        data_[ROW].append(number)
        for k in read:
            data_[k].append(kept[k])
    frame = pd.DataFrame({ROW: pd.array(data_[ROW], dtype="int64")})
    for k in read:
        frame[k] = pd.array(data_[k], dtype="string")
    return frame


def read_results(path: Path) -> ResultsFile:
    """Read a call results file (CSV); DataError when it cannot be read."""
    import hashlib

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    if path.suffix.lower() != ".csv":
        raise DataError(f"{path}: expected a .csv file of the call interface (docs/callcentre.md)")
    data = path.read_bytes()
    rows = _csv_frame(data, path, READ, REQUIRED)
    versions = set(rows["interface_version"].dropna())
    unknown = sorted(v for v in versions if v not in SUPPORTED_VERSIONS)
    if unknown or not versions:
        shown = ", ".join(shown_or_withheld(v) for v in unknown) or "none"
        raise DataError(
            f"{path}: interface_version {shown}: this import reads version "
            f"{', '.join(SUPPORTED_VERSIONS)} (docs/callcentre.md)"
        )
    return ResultsFile(path, hashlib.sha256(data).hexdigest(), rows)


def sent_calls(config: Config, round_label: str, sigungu_codes: set[str]) -> pd.DataFrame:
    """The phone tier the round sent for these 시군구 (their call files): sigungu_code,
    household_key, emd_code, call_id. DataError when the round was not scored here."""
    folder = OutputLayout(config.paths.output_root).round(round_label)
    if not (folder / SCORES).is_file():
        raise DataError(
            f"round {round_label} was not scored here ({folder / SCORES} not found): import call "
            "results into the output root whose `outreach score` wrote the call files"
        )
    parts = []
    for code in sorted(sigungu_codes):
        path = call_export_file(folder, code)
        if path.is_file():
            wanted = ("sigungu_code", "household_key", "emd_code", "call_id")
            parts.append(_csv_frame(path.read_bytes(), path, wanted, wanted).drop(columns=ROW))
    if not parts:
        return pd.DataFrame(
            {
                c: pd.Series(dtype="string")
                for c in ("sigungu_code", "household_key", "emd_code", "call_id")
            }
        )
    return pd.concat(parts, ignore_index=True)


# --- the checked frame and its checks (pure) ----------------------------------------------------


@dataclass(frozen=True)
class CallFacts:
    """What a results file is checked against: the round's window (as for contact dates), the
    call files the round sent and the catalogue's call results."""

    window: RoundFacts
    sent: pd.DataFrame  # sigungu_code, household_key, emd_code, call_id
    result_codes: tuple[str, ...]
    result_names: dict[str, str]  # folded code / Korean / English name -> code
    result_labels: dict[str, str]  # code -> Korean name

    @property
    def round_label(self) -> str:
        return self.window.round_label


def call_facts(
    round_label: str, interval_months: int, sent: pd.DataFrame, catalogue: OutcomeCatalogue
) -> CallFacts:
    empty = pd.DataFrame({"household_key": pd.Series(dtype="string")})
    window = RoundFacts(
        round_label=round_label,
        interval_months=interval_months,
        listed=empty,
        register=empty,
        emd_sigungu={},
        outcome_codes=(),
        resolved_codes=frozenset(),
        outcome_names={},
        added_marks=frozenset(),
    )
    return CallFacts(
        window=window,
        sent=sent,
        result_codes=tuple(c.code for c in catalogue.call_results),
        result_names={
            fold(t): c.code for c in catalogue.call_results for t in (c.code, c.name_ko, c.name_en)
        },
        result_labels={c.code: c.name_ko for c in catalogue.call_results},
    )


@dataclass(frozen=True)
class CheckedCalls:
    checked: pd.DataFrame
    blank_rows: int
    repeated_rows: int


def _strip(values: pd.Series) -> pd.Series:
    text = values.astype("string").str.strip()
    return text.mask(text == "")


def checked_calls(rows: pd.DataFrame, facts: CallFacts) -> CheckedCalls:
    """The frame the checks run on; pure. Columns: row, household_key, sigungu_code, emd_code,
    call_id, call_result (a code: a Korean or English name becomes its code), call_date (as
    written), call_day (``YYYYMMDD``, NA when empty or not a date), and from the call file the
    round sent for the row's 시군구: sent_call_id, sent_emd (NA when the household is not in
    it). Rows without a result and a date are left out (not called yet) and counted; a row
    repeated with the same result is kept once and counted."""
    frame = pd.DataFrame({ROW: rows[ROW].astype("int64").to_numpy()})
    for column in ("household_key", "sigungu_code", "emd_code", "call_id", *RESULT_COLUMNS):
        frame[column] = _strip(rows[column]).to_numpy()
    frame["call_result"] = pd.array(
        [facts.result_names.get(fold(c), fold(c)) if isinstance(c, str) else None
         for c in frame["call_result"]],
        dtype="string",
    )  # fmt: skip
    blank = frame["call_result"].isna() & frame["call_date"].isna()
    frame = frame[~blank.to_numpy()].reset_index(drop=True)
    frame["call_day"] = pd.array(
        [day_number(parse_day(t)) for t in frame["call_date"]], dtype="Int64"
    )
    sent = facts.sent.drop_duplicates(["sigungu_code", "household_key"])
    sent = sent.set_index(["sigungu_code", "household_key"])
    where = pd.MultiIndex.from_arrays(
        [frame["sigungu_code"].fillna(""), frame["household_key"].fillna("")]
    )
    frame["sent_call_id"] = sent["call_id"].reindex(where).astype("string").to_numpy()
    frame["sent_emd"] = sent["emd_code"].reindex(where).astype("string").to_numpy()
    for column in ("sent_call_id", "sent_emd"):
        frame[column] = frame[column].astype("string")
    answer = ["household_key", "sigungu_code", "call_result", "call_day"]
    repeated = frame["household_key"].notna() & frame.duplicated(answer, keep="first")
    frame = frame[~repeated.to_numpy()].reset_index(drop=True)
    return CheckedCalls(frame, int(blank.sum()), int(repeated.sum()))


def _c(field: str, expectation: str, reason: str, reason_ko: str, **kwargs: Any) -> RowCheck:
    return RowCheck(Check(SUITE, expectation, kwargs, QUARANTINE, reason), field, reason_ko)


def call_checks(facts: CallFacts) -> list[RowCheck]:
    """The checks of a results file; each with its reason in English and Korean."""
    from great_expectations.expectations.row_conditions import Column

    first, last = facts.window.first_day, facts.window.last_day
    labels = [facts.result_labels.get(c, c) for c in facts.result_codes]
    sigungu = sorted(set(facts.sent["sigungu_code"].dropna().astype(str)))
    return [
        _c(
            "household_key",
            "ExpectColumnValuesToNotBeNull",
            "household key missing",
            "가구 관리번호가 비어 있습니다",
            column="household_key",
        ),
        _c(
            "sigungu_code",
            "ExpectColumnValuesToNotBeNull",
            "시군구 code missing",
            "시군구 코드가 비어 있습니다",
            column="sigungu_code",
        ),
        _c(
            "sigungu_code",
            "ExpectColumnValuesToBeInSet",
            "not a 시군구 whose phone tier was sent in this round",
            "이번 회차에 전화 확인 명단이 나간 시군구의 코드가 아닙니다",
            column="sigungu_code",
            value_set=sigungu,
        ),
        _c(
            "household_key",
            "ExpectColumnValuesToNotBeNull",
            "not in this round's phone tier of this 시군구 (only households of the call file "
            "may be answered)",
            "이번 회차 이 시군구의 전화 확인 명단에 없는 가구입니다: 보낸 파일의 가구만 "
            "결과를 받습니다",
            column="sent_call_id",
            row_condition=Column("household_key").is_not_null()
            & Column("sigungu_code").is_in(sigungu),
        ),
        _c(
            "call_id",
            "ExpectColumnValuesToNotBeNull",
            "call id missing",
            "통화 ID가 비어 있습니다",
            column="call_id",
        ),
        _c(
            "call_id",
            "ExpectColumnPairValuesToBeEqual",
            "the call id is not the one sent for this household",
            "이 가구에 보낸 통화 ID가 아닙니다: 보낸 파일의 통화 ID를 그대로 적어 주세요",
            column_A="call_id",
            column_B="sent_call_id",
            ignore_row_if="either_value_is_missing",
        ),
        _c(
            "emd_code",
            "ExpectColumnPairValuesToBeEqual",
            "the 읍면동 code is not the household's (leave it as sent)",
            "이 가구의 읍면동 코드가 아닙니다: 보낸 값 그대로 두세요",
            column_A="emd_code",
            column_B="sent_emd",
            ignore_row_if="either_value_is_missing",
        ),
        _c(
            "household_key",
            "ExpectCompoundColumnsToBeUnique",
            "the household appears in more than one row with different results",
            "같은 가구가 여러 행에 서로 다른 결과로 적혀 있습니다: 한 행만 남겨 주세요",
            # Within one file: the rows of a round's files are checked together.
            column_list=[FILE, "household_key"],
            ignore_row_if="any_value_is_missing",
        ),
        _c(
            "call_result",
            "ExpectColumnValuesToNotBeNull",
            "call result missing (a call date was given)",
            "통화 결과가 비어 있습니다(통화일은 적혀 있음)",
            column="call_result",
        ),
        _c(
            "call_result",
            "ExpectColumnValuesToBeInSet",
            f"unknown call result: use one of {', '.join(facts.result_codes)}",
            f"알 수 없는 통화 결과입니다: {', '.join(facts.result_codes)} 또는 "
            f"{', '.join(labels)} 중 하나로 적어 주세요",
            column="call_result",
            value_set=list(facts.result_codes),
        ),
        _c(
            "call_date",
            "ExpectColumnValuesToNotBeNull",
            "not a date: write the call date as YYYY-MM-DD",
            f"통화일을 날짜로 읽을 수 없습니다: {first.isoformat()}처럼 연도(네 자리)-월-일로 "
            "적어 주세요(두 자리 연도나 일/월/연도 순서는 모호해서 받지 않습니다)",
            column="call_day",
            row_condition=Column("call_date").is_not_null(),
        ),
        _c(
            "call_date",
            "ExpectColumnValuesToNotBeNull",
            "call date missing: required for every result (the last attempt for not_reached)",
            "통화일이 비어 있습니다: 모든 결과에 통화일(미연결은 마지막 시도일)이 필요합니다",
            column="call_day",
            row_condition=Column("call_date").is_null(),
        ),
        _c(
            "call_date",
            "ExpectColumnValuesToBeBetween",
            f"outside the round: call dates of round {facts.round_label} lie from "
            f"{first.isoformat()} to {last.isoformat()}",
            f"회차 기간 밖의 통화일입니다: {facts.round_label} 회차의 통화일은 "
            f"{first.isoformat()}부터 {last.isoformat()}까지입니다",
            column="call_day",
            min_value=day_number(first),
            max_value=day_number(last),
        ),
    ]


def accepted_calls(checked: pd.DataFrame, facts: CallFacts, source_sha256: str) -> pd.DataFrame:
    """Stored rows (``CALL_STORE_COLUMNS``) of checked rows that passed; pure."""
    return pd.DataFrame(
        {
            "household_key": checked["household_key"].astype("string").to_numpy(),
            "sigungu_code": checked["sigungu_code"].astype("string").to_numpy(),
            "emd_code": checked["sent_emd"].astype("string").to_numpy(),
            "round": facts.round_label,
            "call_result": checked["call_result"].astype("string").to_numpy(),
            "call_date": [parse_day(t) for t in checked["call_date"]],
            "source_file_sha256": source_sha256,
        }
    )


def rejection_table(rejections: pd.DataFrame, rows: pd.DataFrame, facts: CallFacts) -> pd.DataFrame:
    """The rejection file's rows, in Korean; pure. 행 번호, the read columns under Korean
    headers (the interface's name after each), 사유 ``[column] reason``, one failure per line.
    A cell is repeated only as :func:`pipeline.textsafe.shown_or_withheld` allows, a result only
    when it is one of the catalogue's (by its Korean name); else ``(표시 안 함)``."""
    keys = [k for k in KOREAN if k in rows.columns]
    headers = [f"{KOREAN[k]}({k})" for k in keys]

    def shown(key: str, value: object) -> str:
        if value is None or pd.isna(value) or str(value).strip() == "":
            return ""
        if key == "round":
            return parse_round(str(value)) or WITHHELD_KO
        if key == "call_result":
            code = facts.result_names.get(fold(str(value)))
            return facts.result_labels[code] if code is not None else WITHHELD_KO
        text = shown_or_withheld(value)
        return WITHHELD_KO if text == WITHHELD else text

    by_row = rows.set_index(ROW)
    lines = []
    for line in rejections.itertuples(index=False):
        row = int(line.row)
        values = by_row.loc[row] if row in by_row.index else None
        cells = [shown(k, None if values is None else values[k]) for k in keys]
        reason = f"[{KOREAN.get(str(line.field), str(line.field))}] {line.reason_ko}"
        lines.append([row, *[spreadsheet_text(c) for c in cells], spreadsheet_text(reason)])
    return pd.DataFrame(lines, columns=[ROW_HEADER, *headers, REASON_HEADER])


# --- the import ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReadCalls:
    """A call results file read and normalised: what its checks and its merge start from."""

    results: ResultsFile
    round_label: str
    facts: CallFacts
    normalised: CheckedCalls

    @property
    def checked(self) -> pd.DataFrame:
        return self.normalised.checked


def read_calls(config: Config, path: Path, catalogue: OutcomeCatalogue) -> ReadCalls:
    """Read and normalise one call results file; DataError when the file as a whole cannot be
    imported."""
    results = read_results(path)
    round_label = file_round(path, results.rows)
    sigungu = set(results.rows["sigungu_code"].dropna().str.strip())
    sent = sent_calls(config, round_label, sigungu)
    facts = call_facts(round_label, config.window.round_interval_months, sent, catalogue)
    return ReadCalls(results, round_label, facts, checked_calls(results.rows, facts))


def round_call_checks(files: list[ReadCalls]) -> list[RowCheck]:
    """The checks of a round's results files, with the calls sent for all their 시군구: a row
    is compared with the calls of its own 시군구 only, so no file's rejections change; pure."""
    sent = pd.concat([f.facts.sent for f in files], ignore_index=True)
    return call_checks(replace(files[0].facts, sent=sent))


def import_calls_files(
    config: Config, paths: Sequence[Path], validator: RowValidator, catalogue: OutcomeCatalogue
) -> list[ImportResult | DataError]:
    """Import call results files, each on its own (its merge, rejection file, log line and
    ledger entry, in the order given) but the rows of all files of a round checked in one
    Great Expectations run; per file its result or the DataError that stopped it."""
    stored = Stored(config, read_round_calls, write_round_calls)  # read under the lock
    return import_in_phases(
        config,
        "outreach outcomes import-calls",
        paths,
        read=lambda path: read_calls(config, path, catalogue),
        check=lambda files: check_by_round(files, validator, round_call_checks),
        apply=lambda item, rejections: apply_calls(config, item, rejections, stored),
    )


def apply_calls(
    config: Config, item: ReadCalls, rejections: pd.DataFrame, stored: Stored
) -> ImportResult:
    """Merge one checked file's accepted results into its round's calls and write its rejection
    file, import log line and ledger entry; under the output root's lock, the ledger verified
    (:func:`importer.import_in_phases`)."""
    results, round_label, facts = item.results, item.round_label, item.facts
    normalised = item.normalised
    checked = normalised.checked
    rejected_rows = set(rejections["row"].astype(int))
    accepted = checked[~checked[ROW].isin(rejected_rows)].reset_index(drop=True)
    incoming = accepted_calls(accepted, facts, results.sha256)
    root = config.paths.output_root
    with hold(root, "outreach outcomes import-calls", wait_s=SHORT_WAIT_S):
        merge = merge_calls(stored.rows(round_label), incoming)
        target = round_calls_file(config, round_label)
        if len(accepted) == 0:
            status = NOTHING_VALID
        elif merge.changed:
            stored.write(round_label, merge.rows)
            status = IMPORTED
        else:
            status = NOTHING_NEW
        report = None
        if len(rejections):
            report = rejection_file(config, results.sha256, "csv")
            table = rejection_table(rejections, results.rows, facts)
            write_bytes(rejection_bytes(table, "csv"), report)
        valid = status != NOTHING_VALID
        counts = {
            "rows": len(results.rows),
            "not_filled_in": normalised.blank_rows,
            "repeated": normalised.repeated_rows,
            "rejected": len(rejected_rows),
            "accepted": len(accepted),
            "new": merge.new if valid else 0,
            "replaced": merge.replaced if valid else 0,
            "unchanged": merge.unchanged if valid else 0,
        }
        for code in facts.result_codes:
            counts[f"result_{code}"] = int((incoming["call_result"] == code).sum())
        relative = outcomes_root(config)
        append_log(
            config,
            {
                "imported_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "kind": KIND,
                "file": results.path.name,
                "file_sha256": results.sha256,
                "format": "csv",
                "round": round_label,
                "status": status,
                "counts": counts,
                "rejected_report": None
                if report is None
                else report.relative_to(relative).as_posix(),
                "calls_file": target.relative_to(relative).as_posix(),
                "calls_file_sha256": sha256_file(target) if target.is_file() else None,
            },
        )
        if status == IMPORTED:
            events.calls_imported(
                root,
                file=results.path.name,
                file_sha256=results.sha256,
                round_label=round_label,
                counts=counts,
                calls_file_sha256=sha256_file(target),
            )
    log.info("imported call results %s: %s %s", results.path.name, status, counts)
    return ImportResult(
        file=results.path,
        sha256=results.sha256,
        round=round_label,
        status=status,
        counts=counts,
        rejections=rejections,
        report=report,
        outcomes_file=target,
    )


def summary_lines(result: ImportResult, shown_rejections: int = 10) -> list[str]:
    """What the command prints for one file (English; the rejection file is Korean)."""
    c = result.counts
    by_result = ", ".join(
        f"{c[k]} {k.removeprefix('result_')}" for k in c if k.startswith("result_") and c[k]
    )
    lines = [
        f"{result.file.name} (call results, round {result.round}, sha256 {result.sha256[:12]}): "
        f"{c['rows']} rows, {c['not_filled_in']} not called yet (skipped), "
        f"{c['accepted']} accepted{f' ({by_result})' if by_result else ''}, "
        f"{c['rejected']} rejected"
    ]
    if result.status == NOTHING_VALID:
        lines.append("  nothing valid in this file: nothing imported")
    elif result.status == NOTHING_NEW:
        lines.append("  nothing new: every accepted result was imported before")
    else:
        lines.append(
            f"  {c['new']} new, {c['replaced']} replaced, {c['unchanged']} unchanged -> "
            f"{result.outcomes_file}"
        )
    if c["repeated"]:
        lines.append(f"  {c['repeated']} repeated row(s) with the same result counted once")
    lines += rejection_lines(result, "the call service", shown_rejections)
    return lines
