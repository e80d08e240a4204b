"""Filling in a list as a caseworker does: dates and rounds as typed or as a spreadsheet rewrites
them, the Korean rejection file, and the pure layout helpers of the printed XLSX.

Pure functions only (no scored sample): fast. The import end to end is in
``test_outcomes_import.py``, the printed list in ``test_xlsx_print.py``.
"""

from __future__ import annotations

import csv
import io
from datetime import date, datetime
from pathlib import Path

import pandas as pd
import pytest

from pipeline.catalogue import load_outcomes
from pipeline.outcomes.checks import (
    REASON_HEADER,
    ROW_HEADER,
    WITHHELD_KO,
    rejection_csv,
    rejection_table,
    rejection_xlsx,
    row_checks,
)
from pipeline.outcomes.normalise import RoundFacts, parse_day, parse_round
from pipeline.outcomes.returned import ROW, cell_text
from pipeline.score.lists import (
    CONFIDENTIAL,
    list_scope,
    outcome_choices,
    page_footer,
    text_width,
    wrapped_lines,
)
from pipeline.vocabulary import FILL_IN, LIST_COLUMNS

CATALOGUE = load_outcomes(Path(__file__).resolve().parents[1] / "configs" / "outcomes.yaml")


# --- contact dates ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("typed", "day"),
    [
        ("2026-11-03", date(2026, 11, 3)),
        ("2026-11-3", date(2026, 11, 3)),
        ("2026.11.3", date(2026, 11, 3)),
        ("2026. 11. 3.", date(2026, 11, 3)),  # what Korean Excel shows for a date cell
        ("2026/11/03", date(2026, 11, 3)),
        ("20261103", date(2026, 11, 3)),
        ("2026년 11월 3일", date(2026, 11, 3)),
        ("2026-11-03 14:30:00", date(2026, 11, 3)),  # a date cell with a time
        ("2026-11-03T09:00", date(2026, 11, 3)),
        ("46329", date(2026, 11, 3)),  # an Excel serial: a date cell whose format was lost
        ("46329.75", date(2026, 11, 3)),
        (cell_text(datetime(2026, 11, 3)), date(2026, 11, 3)),
        (cell_text(datetime(2026, 11, 3, 16, 5)), date(2026, 11, 3)),
        (cell_text(46329.0), date(2026, 11, 3)),
    ],
)
def test_unambiguous_dates_are_read(typed, day):
    assert parse_day(typed) == day


@pytest.mark.parametrize(
    "typed",
    [
        "26.11.03",  # two-digit year: 2026-11-03? 2003-11-26?
        "26-11-03",
        "261103",
        "03/11/2026",  # day-month-year or month-day-year: ambiguous
        "11/3/2026",
        "2026-02-30",  # no such day
        "2026-13-01",
        "12345",  # a number, but no serial of the years 2000-2099
        "지난주",
        "",
        None,
    ],
)
def test_ambiguous_or_impossible_dates_are_not_read(typed):
    assert parse_day(typed) is None


# --- the round cell --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "typed",
    [
        "2026-10",
        "2026.10",
        "2026. 10.",
        "2026/10",
        "202610",
        "2026년 10월",
        "2026-10-01",  # Excel turned "2026-10" into the first of the month
        cell_text(datetime(2026, 10, 1)),  # ... as a date cell
        "46296",  # ... whose format was lost: the serial of 2026-10-01
        cell_text(46296),
        "Oct-26",  # ... as an English-locale Excel shows it (mmm-yy)
        "October 2026",
    ],
)
def test_a_round_cell_reformatted_by_a_spreadsheet_is_read(typed):
    assert parse_round(typed) == "2026-10"


@pytest.mark.parametrize("typed", ["2026-10-15", "46300", "26-Oct", "2026-13", "10", "다음 회차"])
def test_a_round_that_is_not_a_month_is_not_read(typed):
    assert parse_round(typed) is None


# --- checks and the Korean rejection file ----------------------------------------------------


def _facts() -> RoundFacts:
    empty = pd.DataFrame({"household_key": [], "emd_code": []}, dtype="string")
    return RoundFacts(
        round_label="2026-10",
        interval_months=2,
        listed=empty.assign(selection_reason=pd.Series(dtype="string")),
        register=empty,
        emd_sigungu={"4111031000": "4111000000"},
        outcome_codes=tuple(CATALOGUE.codes),
        resolved_codes=frozenset(o.code for o in CATALOGUE.outcomes if o.resolved),
        outcome_names={},
        added_marks=frozenset(),
        outcome_labels={o.code: o.name_ko for o in CATALOGUE.outcomes},
    )


def test_every_check_has_a_korean_reason():
    checks = row_checks(_facts())
    assert len({c.check.reason for c in checks}) == len(checks)
    assert len({c.reason_ko for c in checks}) == len(checks)
    for check in checks:
        assert any("가" <= ch <= "힣" for ch in check.reason_ko), check.reason_ko
    by_field = {c.check.reason: c.reason_ko for c in checks}
    outside = next(v for k, v in by_field.items() if k.startswith("outside the round"))
    assert "2026-10-01부터 2026-12-31까지" in outside
    unknown = next(v for k, v in by_field.items() if k.startswith("unknown outcome"))
    assert all(o.name_ko in unknown for o in CATALOGUE.outcomes)  # the drop-down's labels


def _rows() -> pd.DataFrame:
    data = {
        ROW: [3, 5, 6],
        "round": ["2026-10", "2026-10-01", "2026-10"],
        "sigungu_code": ["4111000000"] * 3,
        "emd_code": ["4111031000"] * 3,
        "list_rank": ["1", "3", None],
        "household_key": ["H0030000778", "김순자 010-9876-5432", "=HYPERLINK(1)"],
        "selection": ["AI 위험 점수 순위", "AI 위험 점수 순위", "우리 동네"],
        "outcome_code": ["방문함", "공공 서비스 연계", "public_support"],
        "contact_date": ["2026-10-15", "26.11.03", "900101-1234567"],
    }
    frame = pd.DataFrame({ROW: pd.array(data.pop(ROW), dtype="int64")})
    for key, values in data.items():
        frame[key] = pd.array(values, dtype="string")
    return frame


def _rejections() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "row": [3, 5, 5, 6],
            "field": ["outcome_code", "household_key", "contact_date", "contact_date"],
            "household_key": ["H0030000778", "(not shown)", "(not shown)", "(not shown)"],
            "reason": ["unknown outcome code", "not a household", "not a date", "not a date"],
            "reason_ko": ["알 수 없는 결과", "등록된 가구가 아닙니다", "날짜를", "날짜를"],
        }
    )


def test_the_rejection_table_has_the_sheets_korean_headers_row_numbers_and_one_reason_a_line():
    table = rejection_table(_rejections(), _rows(), CATALOGUE)
    kept = ["round", "sigungu_code", "emd_code", "list_rank", "household_key", "selection"]
    kept += ["outcome_code", "contact_date"]
    headers = [c.ko for c in LIST_COLUMNS if c.key in kept]
    assert list(table.columns) == [ROW_HEADER, *headers, REASON_HEADER]
    assert table[ROW_HEADER].tolist() == [3, 5, 5, 6]
    assert table[REASON_HEADER].tolist() == [
        "[결과 코드] 알 수 없는 결과",
        "[가구 관리번호] 등록된 가구가 아닙니다",
        "[확인일] 날짜를",
        "[확인일] 날짜를",
    ]
    first, second, third = (table.iloc[i] for i in (0, 1, 3))
    assert first["가구 관리번호"] == "H0030000778" and first["확인일(YYYY-MM-DD)"] == "2026-10-15"
    assert first["결과 코드"] == WITHHELD_KO  # free text typed as the outcome: not repeated
    assert second["가구 관리번호"] == WITHHELD_KO  # a name and a phone in the key column
    assert second["결과 코드"] == "공공 서비스 연계" and second["회차"] == "2026-10"
    assert second["확인일(YYYY-MM-DD)"] == "26.11.03"  # a short code: shown, to correct it
    assert third["가구 관리번호"] == WITHHELD_KO and third["확인일(YYYY-MM-DD)"] == WITHHELD_KO
    assert third["결과 코드"] == "공공 서비스 연계"  # a code: shown by its Korean label
    assert third["선정 사유"] == WITHHELD_KO and first["선정 사유"] == "AI 위험 점수 순위"
    assert third["순번"] == ""


def test_the_rejection_file_as_csv_and_xlsx_repeats_no_identifier_and_runs_no_formula():
    from openpyxl import load_workbook

    table = rejection_table(_rejections(), _rows(), CATALOGUE)
    data = rejection_csv(table)
    assert data.startswith(b"\xef\xbb\xbf")
    lines = list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))
    assert lines[0][0] == ROW_HEADER and lines[0][-1] == REASON_HEADER and len(lines) == 5
    book = load_workbook(io.BytesIO(rejection_xlsx(table)))
    cells = [list(r) for r in book.worksheets[0].iter_rows(values_only=True)]
    assert cells[0] == list(table.columns)
    assert [r[0] for r in cells[1:]] == [3, 5, 5, 6]
    text = data.decode("utf-8-sig") + repr(cells)
    for secret in ("김순자", "9876", "1234567", "HYPERLINK", "우리 동네", "방문함"):
        assert secret not in text
    assert rejection_xlsx(table) == rejection_xlsx(table)  # the same rejections, the same bytes


# --- the printed list's layout ---------------------------------------------------------------


def test_hangul_counts_double_and_wrapping_follows_the_width():
    assert text_width("ab12") == 4
    assert text_width("가나") > 3.5  # East Asian wide characters count double (about)
    reason = "건강보험료 체납 2개월 (국민건강보험공단, 2026-07 보고, 최근 12개월 4회)"
    assert wrapped_lines(reason, 200) == 1
    assert wrapped_lines(reason, 27) >= 3
    assert wrapped_lines("", 10) == 1
    assert wrapped_lines("가" * 40, 12) >= 7  # no space: broken anywhere


def test_the_footer_names_the_list_round_pages_and_confidentiality():
    rows = [("2026-10", "4111000000", "4111031000", "청내면", 1, "H1", "방문", 53.7)]
    scope = list_scope(rows, Path("emd_4111031000.xlsx"), "ko")
    assert scope == "청내면 (4111031000)"
    footer = page_footer(scope, "2026-10", "ko")
    assert "&P / &N" in footer and CONFIDENTIAL["ko"] in footer and "2026-10 회차" in footer
    assert "&8 청내면" in footer  # a space after the font size: a digit would extend it
    assert list_scope([], Path("sigungu_4111000000.xlsx"), "ko") == "시군구 4111000000"
    assert page_footer("A&B", "2026-10", "en").count("A&&B") == 1
    assert outcome_choices(CATALOGUE, "ko") == [o.name_ko for o in CATALOGUE.outcomes]


@pytest.mark.parametrize("language", ["ko", "en"])
def test_the_xlsx_is_set_up_to_print_and_fill(tmp_path, language):
    from openpyxl import load_workbook

    from pipeline.score.lists import write_xlsx
    from pipeline.vocabulary import list_header

    keys = [c.key for c in LIST_COLUMNS]
    long_reason = "최근 3개월 위기정보 4종 동시 발생: " + "; ".join(
        f"전기요금 체납 {n}개월 (한국전력공사, 2026-0{n} 보고)" for n in range(1, 5)
    )
    values = {
        "round": "2026-10",
        "sigungu_code": "4111000000",
        "emd_code": "4111031000",
        "emd_name": "청내면",
        "list_rank": 1,
        "household_key": "H0030000778",
        "risk_percent": 53.0,
        "reason_1": long_reason,
        "reason_2": "이전 발굴 1회",
    }
    rows = [tuple(values.get(k, "") if k != "list_rank" else i for k in keys) for i in (1, 2)]
    path = tmp_path / "emd_4111031000.xlsx"
    write_xlsx(rows, path, language, CATALOGUE, datetime(2026, 10, 1))

    sheet = load_workbook(path).worksheets[0]
    assert [c.value for c in sheet[1]] == list_header(language)
    assert sheet.page_setup.orientation == "landscape" and sheet.page_setup.paperSize == 9
    assert sheet.sheet_properties.pageSetUpPr.fitToPage
    assert sheet.page_setup.fitToWidth in (None, 1)  # 1 page wide (1 is the default, unwritten)
    assert sheet.page_setup.fitToHeight == 0  # as many pages long as needed
    assert sheet.print_title_rows == "$1:$1"  # the header row on every page
    assert sheet.print_options.gridLines
    footer = sheet.oddFooter
    assert CONFIDENTIAL[language] in footer.right.text and "&P" in footer.center.text
    assert "청내면 (4111031000)" in footer.left.text and "2026-10" in footer.left.text
    reason = keys.index("reason_1") + 1
    assert sheet.cell(2, reason).alignment.wrap_text
    assert sheet.row_dimensions[2].height >= 4 * 14  # the long reason's lines
    rules = sheet.data_validations.dataValidation
    choices = outcome_choices(CATALOGUE, language)
    outcome = [r for r in rules if all(c in (r.formula1 or "") for c in choices)]
    assert outcome and outcome[0].type == "list"
    first = sheet.cell(2, keys.index("outcome_code") + 1).coordinate
    assert str(outcome[0].sqref).startswith(first)
    # The audit reads the cells back: values as before, the fill-in columns empty.
    assert [c.value for c in sheet[2]][keys.index("household_key")] == "H0030000778"
    assert sheet.cell(2, keys.index("contact_date") + 1).value is None
    # Every row's fill-in cells, empty, are shaded (and the date cell dated) by their column's
    # format, as in the rows the office adds: no row format stands in its way.
    for key in FILL_IN:
        column = sheet.column_dimensions[sheet.cell(1, keys.index(key) + 1).column_letter]
        assert column.fill.fgColor.rgb == "FFFFFBEA", key
    date_column = sheet.cell(1, keys.index("contact_date") + 1).column_letter
    assert sheet.column_dimensions[date_column].number_format == "yyyy-mm-dd"
    assert not any(sheet.row_dimensions[i].customFormat for i in (2, 3))
