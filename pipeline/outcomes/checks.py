"""The expectations a returned list's rows must meet, evaluated by Great Expectations.

Checks are :class:`pipeline.validate.checks.Check` objects (the same form the raw-table suites
use) over the frame of :func:`pipeline.outcomes.normalise.checked_rows`, and run in an
ephemeral context built by :func:`pipeline.expectations.new_context`. The checks depend on the
round only, so the rows of every file of a round are validated in one run
(:meth:`RowValidator.rejections_of_files`: one frame, a :data:`FILE` column naming each row's
file, a :data:`BATCH_ROW` id mapping back to the file and its row); the one check that
compares rows with each other (a household twice with different answers) groups them by file.
Every failing row comes back by its batch row (COMPLETE results,
``unexpected_index_column_names``): a round's returned lists are at most a few thousand rows.
Each check names the list column a caseworker would correct (``field``) and why the row was
rejected (``reason``).

What a rejection line says about the row's household key is decided by
:func:`pipeline.textsafe.shown_or_withheld`: a short plain code is shown, anything else (a
resident number, a phone number, a name, a formula, free text) is withheld as ``(not shown)``;
the row number and the column always name the cell. Every text of a line is a
:func:`pipeline.textsafe.spreadsheet_text`, so the rejection file runs no formula when opened.

Every check has its reason in English (the terminal, the import log) and in Korean
(``reason_ko``). The rejection file that goes back to the office (:func:`rejection_table`,
written as XLSX or CSV by :func:`rejection_bytes`) is Korean: 행 번호, the list's own Korean
headers of the columns the import reads, and 사유, one failure per line.
"""

from __future__ import annotations

import csv
import io
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from pipeline.catalogue import OutcomeCatalogue
from pipeline.expectations import QUARANTINE, Check
from pipeline.outcomes.normalise import RoundFacts, fold, parse_round
from pipeline.outcomes.returned import ROW
from pipeline.textsafe import WITHHELD, shown_or_withheld, spreadsheet_text
from pipeline.vocabulary import LIST_COLUMNS

log = logging.getLogger(__name__)

SUITE = "returned_outcomes"
DATA_SOURCE = "returned_lists"
BATCH_DEFINITION = "whole_list"
REPORT_COLUMNS = ("row", "field", "household_key", "reason")
LINE_COLUMNS = (*REPORT_COLUMNS, "reason_ko")  # a rejection line: the report's, and Korean
# One validation checks the rows of every file of a round: FILE names a row's file (its position
# in the import), BATCH_ROW is a row's id in the batch (it maps back to the file and its row).
FILE = "file"
BATCH_ROW = "batch_row"


@dataclass(frozen=True)
class RowCheck:
    """A check, the list column it is about, and its reason in Korean (for the office)."""

    check: Check
    field: str
    reason_ko: str


def _c(field: str, expectation: str, reason: str, reason_ko: str, **kwargs: Any) -> RowCheck:
    return RowCheck(Check(SUITE, expectation, kwargs, QUARANTINE, reason), field, reason_ko)


def row_checks(facts: RoundFacts) -> list[RowCheck]:
    """The checks of one round's returned lists; each with its reason in English and Korean."""
    from great_expectations.expectations.row_conditions import Column

    first, last = facts.first_day, facts.last_day
    resolved = sorted(facts.resolved_codes)
    codes = list(facts.outcome_codes)
    labels = [facts.outcome_labels.get(c, c) for c in codes]
    unresolved = [facts.outcome_labels.get(c, c) for c in codes if c not in facts.resolved_codes]
    mark = "지자체 자체 발굴 (local discretion)"
    overrides = sorted(facts.override_actions)
    override_labels = [facts.override_labels.get(c, c) for c in overrides]
    contacted = sorted(facts.contacted_codes)
    services = sorted(facts.service_outcomes)
    service_labels = [facts.service_labels.get(c, c) for c in services]
    return [
        _c(
            "household_key",
            "ExpectColumnValuesToNotBeNull",
            "household key missing",
            "가구 관리번호가 비어 있습니다",
            column="household_key",
        ),
        _c(
            "household_key",
            "ExpectColumnValuesToNotBeNull",
            "not a household of the register (check the household key)",
            "등록된 가구가 아닙니다: 가구 관리번호를 확인해 주세요",
            column="household_emd",
            row_condition=Column("household_key").is_not_null(),
        ),
        _c(
            "household_key",
            "ExpectColumnPairValuesToBeEqual",
            "the household belongs to another 읍면동: an office answers only for its own "
            "households",
            "다른 읍면동의 가구입니다: 각 읍면동은 자기 가구의 결과만 보냅니다",
            column_A="emd_code",
            column_B="household_emd",
            ignore_row_if="either_value_is_missing",
        ),
        _c(
            "household_key",
            "ExpectColumnValuesToBeInSet",
            f"not on this round's list for this 읍면동; a household you added yourself needs "
            f"{mark} in the selection column or an add reason in the override column",
            "이번 회차 이 읍면동 명단에 없는 가구입니다: 직접 추가한 가구라면 선정 사유에 "
            "'지자체 자체 발굴'이라고 적거나 담당자 판단에서 추가 사유를 골라 주세요",
            column="listing",
            value_set=["listed", "added"],
        ),
        _c(
            "household_key",
            "ExpectCompoundColumnsToBeUnique",
            "the household appears in more than one row with different answers",
            "같은 가구가 여러 행에 서로 다른 결과로 적혀 있습니다: 한 행만 남겨 주세요",
            # Within one file: the rows of a round's files are checked together.
            column_list=[FILE, "household_key"],
            ignore_row_if="any_value_is_missing",
        ),
        _c(
            "emd_code",
            "ExpectColumnValuesToNotBeNull",
            "읍면동 code missing",
            "읍면동 코드가 비어 있습니다",
            column="emd_code",
        ),
        _c(
            "emd_code",
            "ExpectColumnValuesToBeInSet",
            "not a 읍면동 with a list in this round",
            "이번 회차에 명단이 나간 읍면동의 코드가 아닙니다",
            column="emd_code",
            value_set=sorted(facts.emd_sigungu),
        ),
        _c(
            "sigungu_code",
            "ExpectColumnPairValuesToBeEqual",
            "the 시군구 code does not match the 읍면동",
            "시군구 코드가 읍면동 코드와 맞지 않습니다: 고치거나 비워 두세요",
            column_A="sigungu_code",
            column_B="emd_sigungu",
            ignore_row_if="either_value_is_missing",
        ),
        _c(
            "outcome_code",
            "ExpectColumnValuesToNotBeNull",
            "outcome code missing (a contact date was given)",
            "결과가 비어 있습니다(확인일은 적혀 있음): 목록에서 결과를 골라 주세요",
            column="outcome_code",
            row_condition=Column("contact_date").is_not_null()
            & Column("override_action").is_not_in(["skip"]),
        ),
        _c(
            "outcome_code",
            "ExpectColumnValuesToNotBeNull",
            "outcome code missing: only a skipped household may have none (an added one needs "
            "its outcome, in_progress while the visit is open)",
            "결과가 비어 있습니다: 제외한 가구만 결과 없이 보낼 수 있습니다(추가한 가구는 결과를 "
            "고르고, 아직 끝나지 않았으면 '처리 중'을 고르세요)",
            column="outcome_code",
            row_condition=Column("contact_date").is_null()
            & Column("override_action").is_in(["add"]),
        ),
        _c(
            "outcome_code",
            "ExpectColumnValuesToBeInSet",
            f"unknown outcome code: use one of {', '.join(codes)}",
            f"알 수 없는 결과입니다: 목록에서 고르세요({', '.join(labels)})",
            column="outcome_code",
            value_set=codes,
        ),
        _c(
            "override",
            "ExpectColumnValuesToBeInSet",
            f"unknown override: use one of {', '.join(overrides)}",
            f"알 수 없는 담당자 판단입니다: 목록에서 고르세요({', '.join(override_labels)})",
            column="override_code",
            value_set=overrides,
        ),
        _c(
            "override",
            "ExpectColumnValuesToBeInSet",
            "a skip is for a household on this round's list, not one you added",
            "제외는 이번 회차 명단에 있는 가구에만 고를 수 있습니다(직접 추가한 가구는 제외할 수 "
            "없습니다)",
            column="listing",
            value_set=["listed", "not_listed"],
            row_condition=Column("override_action").is_in(["skip"]),
        ),
        _c(
            "override",
            "ExpectColumnValuesToBeInSet",
            "the household is on this round's list: an add reason is for a household the list "
            "missed",
            "이번 회차 명단에 있는 가구입니다: 추가 사유는 명단에 없던 가구에만 고릅니다",
            column="listing",
            value_set=["added"],
            row_condition=Column("override_action").is_in(["add"]),
        ),
        _c(
            "override",
            "ExpectColumnValuesToNotBeInSet",
            "a skipped household was not contacted: an outcome of a contact contradicts the skip "
            "(keep one of them)",
            "제외한 가구인데 결과는 방문·접촉했다고 적혀 있습니다: 둘 중 하나만 남겨 주세요"
            "(방문했다면 제외를 지우고, 방문하지 않았다면 결과를 지우세요)",
            column="outcome_code",
            value_set=contacted,
            row_condition=Column("override_action").is_in(["skip"]),
        ),
        _c(
            "linked_service",
            "ExpectColumnValuesToBeInSet",
            f"unknown linked service: use one of {', '.join(services)}",
            f"알 수 없는 연계 서비스입니다: 목록에서 고르세요({', '.join(service_labels)})",
            column="service_code",
            value_set=services,
        ),
        _c(
            "linked_service",
            "ExpectColumnPairValuesToBeEqual",
            "the linked service does not fit the outcome: a public service goes with "
            "public_support, a private one with private_support",
            "연계 서비스와 결과가 맞지 않습니다: 공공 서비스는 '공공 서비스 연계', 민간 자원은 "
            "'민간 서비스 연계' 결과와 함께 적어 주세요",
            column_A="outcome_code",
            column_B="service_outcome",
            ignore_row_if="either_value_is_missing",
        ),
        _c(
            "linked_service",
            "ExpectColumnValuesToBeNull",
            "a linked service needs a linked outcome (public_support or private_support)",
            "연계 서비스는 연계 결과(공공 서비스 연계, 민간 서비스 연계)와 함께 적습니다",
            column="service_code",
            row_condition=Column("outcome_code").is_null(),
        ),
        _c(
            "contact_date",
            "ExpectColumnValuesToNotBeNull",
            "not a date: write the contact date as YYYY-MM-DD",
            f"확인일을 날짜로 읽을 수 없습니다: {first.isoformat()}처럼 연도(네 자리)-월-일로 "
            "적어 주세요(두 자리 연도나 일/월/연도 순서는 모호해서 받지 않습니다)",
            column="contact_day",
            row_condition=Column("contact_date").is_not_null(),
        ),
        _c(
            "contact_date",
            "ExpectColumnValuesToNotBeNull",
            "contact date missing: required for every outcome but in_progress",
            f"확인일이 비어 있습니다: {', '.join(unresolved)} 외의 결과에는 확인일이 필요합니다",
            column="contact_day",
            row_condition=Column("contact_date").is_null() & Column("outcome_code").is_in(resolved),
        ),
        _c(
            "contact_date",
            "ExpectColumnValuesToBeBetween",
            f"outside the round: contact dates of round {facts.round_label} lie from "
            f"{first.isoformat()} to {last.isoformat()}",
            f"회차 기간 밖의 확인일입니다: {facts.round_label} 회차의 확인일은 "
            f"{first.isoformat()}부터 {last.isoformat()}까지입니다",
            column="contact_day",
            min_value=first.year * 10000 + first.month * 100 + first.day,
            max_value=last.year * 10000 + last.month * 100 + last.day,
        ),
    ]


class RowValidator:
    """An ephemeral Great Expectations context that validates returned lists' rows."""

    def __init__(self) -> None:
        from pipeline.expectations import new_context

        self.context = new_context()
        source = self.context.data_sources.add_pandas(DATA_SOURCE)
        asset = source.add_dataframe_asset(SUITE)
        self.batch_definition = asset.add_batch_definition_whole_dataframe(BATCH_DEFINITION)

    def rejections(self, checked: pd.DataFrame, checks: list[RowCheck]) -> pd.DataFrame:
        """One line per (row, failed check): row, field, household_key, reason (English) and
        reason_ko (Korean); sorted by row, then in the order of the checks."""
        return self.rejections_of_files([checked], checks)[0]

    def rejections_of_files(
        self, frames: list[pd.DataFrame], checks: list[RowCheck]
    ) -> list[pd.DataFrame]:
        """:meth:`rejections` of each of several files' checked frames, with ONE Great
        Expectations run over all their rows (:func:`batch_frame`): the checks must be the
        same for every file (one round), and a check that compares rows with each other must
        group them by :data:`FILE`."""
        from pipeline.expectations import build_suite, failing_rows

        batch = batch_frame(frames)
        found: list[tuple[int, str]] = []
        if not batch.empty:
            suite = build_suite(SUITE, [c.check for c in checks])
            found = failing_rows(self.batch_definition, suite, batch, BATCH_ROW, "import check")
        return file_rejections(batch, found, checks, len(frames))


def batch_frame(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """The rows of several files' checked frames as one frame, with :data:`FILE` (the file's
    position in ``frames``) and :data:`BATCH_ROW` (0, 1, ...: a row's id in the batch); pure."""
    parts = [frame.assign(**{FILE: i}) for i, frame in enumerate(frames) if not frame.empty]
    if not parts:
        return pd.DataFrame({FILE: pd.Series(dtype="int64"), BATCH_ROW: pd.Series(dtype="int64")})
    batch = pd.concat(parts, ignore_index=True)
    batch[FILE] = batch[FILE].astype("int64")
    batch[BATCH_ROW] = np.arange(len(batch), dtype="int64")
    return batch


def file_rejections(
    batch: pd.DataFrame, found: list[tuple[int, str]], checks: list[RowCheck], files: int
) -> list[pd.DataFrame]:
    """Each file's rejection lines from the (batch row, reason) pairs a run over ``batch``
    found; pure. Per file: one line per (row, failed check), sorted by row, then in the order
    of the checks; a key only as :func:`pipeline.textsafe.shown_or_withheld` allows."""
    by_reason = {c.check.reason: c for c in checks}  # reasons are distinct; meta has them
    order = {c.check.reason: i for i, c in enumerate(checks)}
    file_of = batch[FILE].to_numpy() if len(batch) else np.array([], dtype="int64")
    row_of = batch[ROW].to_numpy() if len(batch) else np.array([], dtype="int64")
    key_of = batch["household_key"].to_numpy() if len(batch) else np.array([], dtype=object)
    lines: list[list[dict]] = [[] for _ in range(files)]
    for at, reason in found:
        check = by_reason[reason]
        lines[int(file_of[at])].append(
            {
                "row": int(row_of[at]),
                "field": spreadsheet_text(check.field),
                "household_key": shown_or_withheld(key_of[at]),
                "reason": spreadsheet_text(check.check.reason),
                "reason_ko": spreadsheet_text(check.reason_ko),
            }
        )
    reports = []
    for file_lines in lines:
        if not file_lines:
            reports.append(pd.DataFrame({c: pd.Series(dtype="object") for c in LINE_COLUMNS}))
            continue
        report = pd.DataFrame(file_lines, columns=list(LINE_COLUMNS))
        report["_order"] = report["reason"].map(order)
        report = report.sort_values(["row", "_order"], kind="stable").drop(columns="_order")
        reports.append(report.drop_duplicates().reset_index(drop=True))
    return reports


# --- the rejection file an office gets back ------------------------------------------------------

ROW_HEADER = "행 번호"  # the row number as the spreadsheet shows it (the header is row 1)
REASON_HEADER = "사유"
WITHHELD_KO = "(표시 안 함)"  # a value that is there but not repeated (see shown_or_withheld)


def _field_name(key: str) -> str:
    """A list column's Korean header without its hint: ``확인일(YYYY-MM-DD)`` -> ``확인일``."""
    column = next(c for c in LIST_COLUMNS if c.key == key)
    return column.ko.split("(")[0].strip()


def rejection_table(
    rejections: pd.DataFrame, rows: pd.DataFrame, catalogue: OutcomeCatalogue
) -> pd.DataFrame:
    """The rejection file's rows, in Korean; pure.

    One line per rejection (a row with two problems has two lines): 행 번호, then the list's
    Korean headers of the columns the returned file had (the note is never read), then 사유:
    ``[column] reason``. A cell is repeated only as :func:`pipeline.textsafe.shown_value`
    allows (a household key that is a plain code, a date, a code), an outcome or selection
    only when it is one of the catalogue's; anything else is written ``(표시 안 함)``.
    ``rejections``: :meth:`RowValidator.rejections`; ``rows``: the returned list's rows.
    """
    keys = [c.key for c in LIST_COLUMNS if c.key in rows.columns and c.key != ROW]
    headers = [next(c.ko for c in LIST_COLUMNS if c.key == k) for k in keys]
    outcome_of = {fold(t): o for o in catalogue.outcomes for t in (o.code, o.name_ko, o.name_en)}
    selection_of = {
        fold(t): r for r in catalogue.selection_reasons for t in (r.code, r.name_ko, r.name_en)
    }
    override_of = {
        fold(t): r for r in catalogue.override_reasons for t in (r.code, r.name_ko, r.name_en)
    }

    def shown(key: str, value: object) -> str:
        if value is None or pd.isna(value) or str(value).strip() == "":
            return ""
        if key == "round":
            return parse_round(str(value)) or WITHHELD_KO
        if key == "outcome_code":
            outcome = outcome_of.get(fold(str(value)))
            return outcome.name_ko if outcome is not None else _shown_ko(value)
        if key == "selection":
            reason = selection_of.get(fold(str(value)))
            return reason.name_ko if reason is not None else WITHHELD_KO
        if key == "override":
            override = override_of.get(fold(str(value)))
            return override.name_ko if override is not None else WITHHELD_KO
        return _shown_ko(value)

    by_row = rows.set_index(ROW)
    lines = []
    for line in rejections.itertuples(index=False):
        row = int(line.row)
        values = by_row.loc[row] if row in by_row.index else None
        if isinstance(values, pd.DataFrame):  # a row number twice: cannot happen; be safe
            values = values.iloc[0]
        cells = [shown(k, None if values is None else values[k]) for k in keys]
        field_name = _field_name(str(line.field)) if str(line.field) in keys else str(line.field)
        reason = f"[{field_name}] {line.reason_ko}"
        lines.append([row, *[spreadsheet_text(c) for c in cells], spreadsheet_text(reason)])
    return pd.DataFrame(lines, columns=[ROW_HEADER, *headers, REASON_HEADER])


def _shown_ko(value: object) -> str:
    text = shown_or_withheld(value)
    return WITHHELD_KO if text == WITHHELD else text


def rejection_csv(table: pd.DataFrame) -> bytes:
    """The rejection file as CSV: UTF-8 with a BOM (Excel then reads the Korean), CRLF."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(list(table.columns))
    for values in table.itertuples(index=False):
        writer.writerow(["" if pd.isna(v) else str(v) for v in values])
    return b"\xef\xbb\xbf" + buffer.getvalue().encode("utf-8")


def rejection_xlsx(table: pd.DataFrame) -> bytes:
    """The rejection file as XLSX: one sheet, header in bold and frozen, reasons wrapped; text
    cells stay text (no formulas, numbers or links); the same table gives the same bytes."""
    from datetime import datetime

    import xlsxwriter

    buffer = io.BytesIO()
    options = {
        "in_memory": True,
        "strings_to_formulas": False,
        "strings_to_numbers": False,
        "strings_to_urls": False,
    }
    book = xlsxwriter.Workbook(buffer, options)
    try:
        book.set_properties({"title": "반려된 행", "created": datetime(2000, 1, 1)})
        head = book.add_format({"bold": True, "bg_color": "#F8E0E0", "text_wrap": True})
        wrap = book.add_format({"text_wrap": True, "valign": "top"})
        top = book.add_format({"valign": "top"})
        sheet = book.add_worksheet("반려")
        for j, name in enumerate(table.columns):
            sheet.write_string(0, j, str(name), head)
            sheet.set_column(
                j, j, 60 if name == REASON_HEADER else 16, wrap if name == REASON_HEADER else top
            )
        for i, values in enumerate(table.itertuples(index=False), start=1):
            for j, value in enumerate(values):
                if j == 0:
                    sheet.write_number(i, j, int(value))
                elif value is not None and str(value) != "":
                    sheet.write_string(i, j, str(value))
        sheet.freeze_panes(1, 0)
        sheet.set_landscape()
        sheet.set_paper(9)
        sheet.fit_to_pages(1, 0)
        sheet.repeat_rows(0)
    finally:
        book.close()
    return buffer.getvalue()


def rejection_bytes(table: pd.DataFrame, kind: str) -> bytes:
    """The rejection file in the returned list's own format (``xlsx`` or ``csv``)."""
    return rejection_xlsx(table) if kind == "xlsx" else rejection_csv(table)
