"""The outreach lists a 읍면동 (and its 시군구) receives: CSV (UTF-8 with BOM) and XLSX.

A list holds the visit and phone tiers of one 읍면동 (the 시군구 file: of all its 읍면동), and
identifies a household only by the administrative household key. The last columns are empty, for
the caseworker to fill in: the outcome (in the XLSX a drop-down of the outcomes' Korean names),
the contact date, the override (담당자 판단: a drop-down of the override reasons, skip or add) and a
note (notes stay in the office: ``outreach outcomes import`` does not keep
them). The XLSX prints on landscape A4, one page wide (:func:`write_xlsx`).

``LIST_COLUMNS`` is the one table of list columns: key, Korean header, English header, width.
Readers of returned lists map either header back to the key.

Every text cell goes through :func:`pipeline.textsafe.spreadsheet_text`: text a spreadsheet would
run as a formula (a 읍면동 name or a household key starting with ``=``, ``+``, ``-``, ``@``) is
written with a leading apostrophe, in the CSV and in the XLSX alike; the XLSX writer also never
turns text into formulas, numbers or links.
"""

from __future__ import annotations

import csv
import functools
import io
import unicodedata
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import pandas as pd

from pipeline.catalogue import OutcomeCatalogue
from pipeline.textsafe import spreadsheet_text
from pipeline.vocabulary import (
    EXPLORATION,
    FILL_IN,
    LIST_COLUMNS,
    PHONE,
    RISK_BAND_LEGEND,
    SERVICES_TEXT,
    TIER_TEXT,
    VISIT,
    list_header,
    risk_band_text,
    risk_percent,
)


def list_frame(
    scores: pd.DataFrame,
    round_label: str,
    emd_names: dict[str, str],
    outcomes: OutcomeCatalogue,
    language: str,
    reasons: int = 3,
) -> pd.DataFrame:
    """Display rows (column keys of ``LIST_COLUMNS``) of listed households, in list order."""
    listed = scores[scores["tier"].isin([VISIT, PHONE])]
    listed = listed.sort_values(["emd_code", "list_rank"], kind="stable")
    names = {
        r.code: (r.name_ko if language == "ko" else r.name_en) for r in outcomes.selection_reasons
    }
    emd = listed["emd_code"].astype("string")
    frame = pd.DataFrame(
        {
            "round": round_label,
            "sigungu_code": listed["sigungu_code"].astype("string").to_numpy(),
            "emd_code": emd.to_numpy(),
            "emd_name": emd.map(lambda c: emd_names.get(c, "")).to_numpy(),
            "list_rank": listed["list_rank"].astype("int64").to_numpy(),
            "household_key": listed["household_key"].astype("string").to_numpy(),
            "tier": listed["tier"].map(TIER_TEXT[language]).to_numpy(),
            "risk_percent": [str(risk_percent(s)) for s in listed["score"].to_numpy()],
            "risk_band": [risk_band_text(s, language) for s in listed["score"].to_numpy()],
            "selection": listed["selection_reason"].map(names).to_numpy(),
            "case_history": (
                listed["case_history"].fillna("").astype(str).to_numpy()
                if "case_history" in listed
                else ""
            ),
        }
    )
    for i in range(1, 4):
        column = f"reason_{i}_text"
        values = listed[column] if i <= reasons and column in listed else None
        frame[f"reason_{i}"] = (
            values.fillna("").astype(str).to_numpy() if values is not None else ""
        )
    frame["services"] = (
        listed[SERVICES_TEXT].fillna("").astype(str).to_numpy() if SERVICES_TEXT in listed else ""
    )
    for key in FILL_IN:
        frame[key] = ""
    return frame[[c.key for c in LIST_COLUMNS]].reset_index(drop=True)


def list_rows(frame: pd.DataFrame) -> list[tuple[object, ...]]:
    """The rows of a :func:`list_frame` as plain Python values, in ``LIST_COLUMNS`` order.

    Converted once per partition and sliced per 읍면동: iterating pandas' Arrow-backed text
    columns value by value is several times slower.
    """
    return list(zip(*(frame[c.key].tolist() for c in LIST_COLUMNS), strict=True))


def write_csv(rows: Sequence[Sequence[object]], path: Path, language: str) -> None:
    """CSV in UTF-8 with a BOM (Excel then reads Korean text), CRLF line ends, every field text.

    ``rows``: :func:`list_rows` (or a slice of them)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(list_header(language))
    for row in rows:
        writer.writerow([spreadsheet_text(v) for v in row])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\xef\xbb\xbf" + buffer.getvalue().encode("utf-8"))


# --- the XLSX list: layout for the screen and for print ----------------------------------------

# Columns whose text wraps inside its column, with their width in character units (the row
# grows to show them whole); the other columns fit their widest value, at most MAX_WIDTH.
WRAP_WIDTHS = {"risk_band": 12, "selection": 14, "case_history": 14, "override": 14, "note": 16}
MAX_WIDTH = 30
# Reasons wrap too, each reason column as wide as lets three in four of its reasons fit in
# REASON_LINES lines, between REASON_WIDTHS: a long "several signals" reason gets a wide column,
# short ones narrow columns, so that rows are not made high by one narrow column.
REASONS = ("reason_1", "reason_2", "reason_3")
LONG_TEXT = (*REASONS, "services")  # sized as reasons are (REASON_WIDTHS, REASON_LINES)
SERVICE_SHEET = {"ko": "연계 서비스", "en": "services"}  # the linked service drop-down's choices
# Columns formatted as text, so that what a caseworker types there stays as typed.
TEXT_CODES = ("round", "sigungu_code", "emd_code", "household_key")
REASON_LINES = 4
REASON_WIDTHS = (20.0, 48.0)
# The outcome column wraps its longest drop-down choice on two lines; rows are at least that high.
CHOICE_LINES = 2
# The first printed column: the ones before it (round, 시군구 and 읍면동 codes) are the same on
# every row and printed in the page header and footer instead.
PRINTED_FROM = "emd_name"
LINE_POINTS = 14.0  # the height of one line of 10-point text with Hangul, in points
ROW_PADDING_POINTS = 3.0
FONT_SIZE = 10
# A wide character in column units at FONT_SIZE: about 1.6 in LibreOffice (Nanum fonts), up to
# about 1.9 in Excel (Malgun Gothic): measured on the wider side, so that no text is cut.
HANGUL_WIDTH = 1.85
CONFIDENTIAL = {
    "ko": "개인정보 포함 · 업무 목적 외 사용 금지",
    "en": "Contains personal data · official use only",
}
TITLE = {"ko": "복지 사각지대 발굴 대상", "en": "Welfare outreach list"}


@functools.lru_cache(maxsize=8192)
def char_width(character: str) -> float:
    """Display width of one character in spreadsheet column units: East Asian wide and
    full-width characters (Hangul, CJK) count double, capitals a little more than one."""
    if unicodedata.east_asian_width(character) in ("W", "F"):
        return HANGUL_WIDTH
    return 1.15 if character.isupper() else 1.0


@functools.lru_cache(maxsize=65536)
def text_width(text: str) -> float:
    """Display width of ``text`` on one line (see :func:`char_width`)."""
    return sum(char_width(c) for c in text)


@functools.lru_cache(maxsize=65536)
def wrapped_lines(text: str, width: float) -> int:
    """Lines ``text`` takes in a column ``width`` units wide, wrapping at spaces (a word wider
    than the column is broken anywhere), as a spreadsheet wraps it; at least 1. Cached:
    reasons repeat across households, and lists are written for every 읍면동 of the country."""
    usable = max(1.0, width - 1.5)  # the cell's inner padding
    if "\n" not in text and text_width(text) <= usable:
        return 1
    lines, used = 1, 0.0
    for part in str(text).split("\n"):
        if used:
            lines, used = lines + 1, 0.0
        for word in part.split(" "):
            size = text_width(word)
            gap = char_width(" ") if used else 0.0
            if used + gap + size <= usable:
                used += gap + size
                continue
            if used:
                lines, used = lines + 1, 0.0
            while size > usable:  # a word wider than the column: broken anywhere
                lines, size = lines + 1, size - usable
            used = size
    return lines


def column_widths(
    header: Sequence[str],
    rows: Sequence[Sequence[object]],
    choices: dict[str, Sequence[str]] | None = None,
) -> list[float]:
    """Width of every list column: wrapped columns their fixed width, reason columns by their
    reasons (see REASON_LINES), a drop-down column its longest choice on CHOICE_LINES lines
    (``choices``: what a column's drop-down offers); the others their widest value. The header
    wraps at spaces, so it asks for its widest word; padding on top; at most MAX_WIDTH."""
    choices = choices or {}
    widths = []
    for j, column in enumerate(LIST_COLUMNS):
        head = max(text_width(w) for w in str(header[j]).split(" "))
        if column.key in WRAP_WIDTHS and column.key not in choices:
            widths.append(float(max(WRAP_WIDTHS[column.key], head + 2)))
            continue
        if column.key in LONG_TEXT:
            sizes = sorted(text_width(spreadsheet_text(r[j])) for r in rows)
            upper = sizes[(3 * (len(sizes) - 1)) // 4] if sizes else 0.0
            low, high = REASON_WIDTHS
            widths.append(float(min(high, max(low, head + 2, upper / REASON_LINES + 2))))
            continue
        if column.key in choices:
            longest = max(text_width(c) for c in choices[column.key])
            width = float(max(head, longest / CHOICE_LINES + 1) + 2)
            # wider until every choice wraps on CHOICE_LINES lines (words do not split evenly)
            while any(wrapped_lines(c, width) > CHOICE_LINES for c in choices[column.key]):
                width += 0.5
            widths.append(width)
            continue
        values = [spreadsheet_text(r[j]) for r in rows] + list(choices.get(column.key, ()))
        widest = max((text_width(v) for v in values), default=0.0)
        widths.append(float(min(MAX_WIDTH, max(head, widest) + 1.5)))
    return widths


def row_height(texts: Sequence[str], widths: Sequence[float], wrapped: Sequence[int]) -> float:
    """Height in points that shows every wrapped cell of a row whole (and a drop-down choice,
    CHOICE_LINES lines); ``texts``: the row's cells as written (:func:`spreadsheet_text`)."""
    lines = max((wrapped_lines(texts[j], widths[j]) for j in wrapped if texts[j]), default=1)
    lines = max(lines, CHOICE_LINES)
    return lines * LINE_POINTS + ROW_PADDING_POINTS


def list_scope(rows: Sequence[Sequence[object]], path: Path, language: str) -> str:
    """What a list covers, for its printed header and footer: ``읍면동 이름 (코드)``, or the
    시군구 code for a 시군구 file; the file name's code for an empty list."""
    keys = [c.key for c in LIST_COLUMNS]
    emds = {(r[keys.index("emd_code")], r[keys.index("emd_name")]) for r in rows}
    sigungu = {r[keys.index("sigungu_code")] for r in rows}
    if len(emds) == 1:
        code, name = emds.pop()
        return f"{name} ({code})" if name else str(code)
    kind, _, code = path.stem.partition("_")
    if len(sigungu) == 1:
        code = str(sigungu.pop())
    if kind == "sigungu" or len(emds) > 1:
        return f"시군구 {code}" if language == "ko" else f"sigungu {code}"
    return f"읍면동 {code}" if language == "ko" else f"emd {code}"


def _header_footer_text(text: str) -> str:
    """Text for an XLSX page header or footer: ``&`` is a control character there."""
    return text.replace("&", "&&")


def page_footer(scope: str, round_label: str, language: str) -> str:
    """The printed footer: the list's 읍면동 and round, page X of Y, the confidentiality line."""
    scope = _header_footer_text(scope)
    if language == "ko":
        left, centre = f"{scope} · {round_label} 회차", "&P / &N 쪽"
    else:
        left, centre = f"{scope} · round {round_label}", "page &P of &N"
    size = "&8 "  # a font size, then a space: a digit right after it would extend the size
    return f"&L{size}{left}&C{size}{centre}&R{size}{CONFIDENTIAL[language]}"


def page_header(scope: str, round_label: str, language: str) -> str:
    """The printed header: the list's title, 읍면동 and round."""
    title = f"{TITLE[language]} · {_header_footer_text(scope)}"
    return f"&L&9 &B{title}&R&9 {round_label}"


def outcome_choices(outcomes: OutcomeCatalogue, language: str) -> list[str]:
    """What the outcome drop-down offers: the outcomes' names in the list's language (the
    import reads a name, Korean or English, or the code itself)."""
    return [o.name_ko if language == "ko" else o.name_en for o in outcomes.outcomes]


def override_choices(outcomes: OutcomeCatalogue, language: str) -> list[str]:
    """What the override drop-down (담당자 판단) offers: the override reasons' names in the
    list's language (the import reads a name, Korean or English, or the code itself)."""
    return [r.name_ko if language == "ko" else r.name_en for r in outcomes.override_reasons]


# Rows below the list that keep the drop-downs, for households the office adds.
ADDED_ROWS = 50


def write_xlsx(
    rows: Sequence[Sequence[object]],
    path: Path,
    language: str,
    outcomes: OutcomeCatalogue,
    round_month: datetime,
    services: Sequence[str] = (),
) -> None:
    """XLSX that prints and fills: see docs/outcomes.md ("Printing a list").

    Header in bold, frozen, filtered; columns as wide as their values, measured with Hangul
    counted double (:func:`text_width`); reasons, the selection and the note wrap, and each row
    is as high as its longest wrapped cell (:func:`row_height`). Printed landscape on A4, fit to
    the page width, the header row on every page, gridlines, a page header and a footer with the
    읍면동, the round, page X of Y and the confidentiality line. The outcome column is a
    drop-down of the outcomes' names (Korean in a Korean list), the linked service a drop-down of
    ``services`` (the services' names); the contact date column shows dates as YYYY-MM-DD. A
    second sheet explains the choices.

    ``rows``: :func:`list_rows` (or a slice of them). Written with XlsxWriter (about twice as
    fast as openpyxl here: lists are written for every 읍면동 of the country each round).
    Document times are the round month, so the same list gives the same workbook.
    """
    import xlsxwriter

    ko = language == "ko"
    keys = [c.key for c in LIST_COLUMNS]
    risk = keys.index("risk_percent")
    rank = keys.index("list_rank")
    outcome_column = keys.index("outcome_code")
    override_column = keys.index("override")
    date_column = keys.index("contact_date")
    linked_column = keys.index("linked_service")
    wrapped = [j for j, key in enumerate(keys) if key in WRAP_WIDTHS or key in LONG_TEXT] + [
        outcome_column
    ]
    header = list_header(language)
    choices = outcome_choices(outcomes, language)
    overrides = override_choices(outcomes, language)
    dropdowns = {"outcome_code": choices, "override": overrides}
    if services:
        dropdowns["linked_service"] = list(services)
    widths = column_widths(header, rows, dropdowns)
    round_label = f"{round_month.year:04d}-{round_month.month:02d}"
    scope = list_scope(rows, path, language)
    path.parent.mkdir(parents=True, exist_ok=True)
    options = {
        "in_memory": True,
        "strings_to_formulas": False,
        "strings_to_numbers": False,
        "strings_to_urls": False,
    }
    book = xlsxwriter.Workbook(str(path), options)
    try:
        book.set_properties(
            {
                "title": TITLE[language],
                "author": "welfare-outreach",
                "created": round_month,
            }
        )
        base = {"font_size": FONT_SIZE, "valign": "top"}
        head = book.add_format(
            {**base, "bold": True, "bg_color": "#DDE7F0", "text_wrap": True, "valign": "vcenter"}
        )
        fill_head = book.add_format(
            {**base, "bold": True, "bg_color": "#FFF6D5", "text_wrap": True, "valign": "vcenter"}
        )
        plain = book.add_format(base)
        wrap = book.add_format({**base, "text_wrap": True})
        number = book.add_format({**base, "num_format": "0"})
        integer = book.add_format({**base, "num_format": "0"})
        day = book.add_format({**base, "num_format": "yyyy-mm-dd", "bg_color": "#FFFBEA"})
        fill = book.add_format({**base, "bg_color": "#FFFBEA"})
        fill_wrap = book.add_format({**base, "bg_color": "#FFFBEA", "text_wrap": True})
        style = [wrap if j in wrapped else plain for j in range(len(LIST_COLUMNS))]
        for key in FILL_IN:
            j = keys.index(key)
            style[j] = fill_wrap if j in wrapped else fill
        style[date_column] = day
        # Codes stay text when typed in a new row (a household the office adds): Excel would
        # turn 2026-10 into a date and a long code into a number.
        text = book.add_format({**base, "num_format": "@"})
        for key in TEXT_CODES:
            style[keys.index(key)] = text

        sheet = book.add_worksheet("발굴 대상" if ko else "list")
        head_lines = max(wrapped_lines(h, w) for h, w in zip(header, widths, strict=True))
        sheet.set_row(0, head_lines * LINE_POINTS + ROW_PADDING_POINTS)
        for j, column in enumerate(LIST_COLUMNS):
            sheet.write_string(0, j, header[j], fill_head if column.key in FILL_IN else head)
            sheet.set_column(j, j, widths[j], style[j])
        # Empty cells are not written: their column's format shades them and dates what is
        # typed in, as in the rows the office adds below the list.
        for i, row in enumerate(rows, start=1):
            texts = [spreadsheet_text(value) for value in row]
            sheet.set_row(i, row_height(texts, widths, wrapped))
            for j, text in enumerate(texts):
                if j == risk:  # numbers, so that Excel sorts and filters them
                    sheet.write_number(i, j, float(row[j]), number)
                elif j == rank:
                    sheet.write_number(i, j, int(row[j]), integer)
                elif text:
                    sheet.write_string(i, j, text, style[j])
        last = max(1, len(rows))
        sheet.freeze_panes(1, 0)
        sheet.autofilter(0, 0, last, len(LIST_COLUMNS) - 1)
        sheet.data_validation(
            1,
            outcome_column,
            last + ADDED_ROWS,
            outcome_column,
            {
                "validate": "list",
                "source": choices,
                "input_title": "결과" if ko else "outcome",
                "input_message": "목록에서 고르세요" if ko else "pick one from the list",
                "error_title": "결과 코드" if ko else "outcome code",
                "error_message": "목록의 결과를 고르세요" if ko else "pick one from the list",
            },
        )
        sheet.data_validation(
            1,
            override_column,
            last + ADDED_ROWS,
            override_column,
            {
                "validate": "list",
                "source": overrides,
                "input_title": "담당자 판단" if ko else "override",
                "input_message": "방문하지 않을 가구는 제외 사유를, 직접 추가한 가구는 추가 사유를 "
                "고르세요"
                if ko
                else "skip: why not to contact a listed household; add: a household you added",
                "error_title": "담당자 판단" if ko else "override",
                "error_message": "목록의 사유를 고르세요" if ko else "pick one from the list",
            },
        )
        if services:
            sheet.data_validation(
                1,
                linked_column,
                last + ADDED_ROWS,
                linked_column,
                {
                    "validate": "list",
                    # a range, not a list: the names are longer than Excel's 255 characters of
                    # a list source, and some hold commas
                    "source": f"='{SERVICE_SHEET[language]}'!$A$2:$A${len(services) + 1}",
                    "input_title": "연계 서비스" if ko else "linked service",
                    "input_message": "지원으로 연계한 서비스를 고르세요"
                    if ko
                    else "the service the household was linked to",
                    "error_title": "연계 서비스" if ko else "linked service",
                    "error_message": "목록의 서비스를 고르세요" if ko else "pick one from the list",
                },
            )
        # Print: landscape A4, one page wide, the header row on every page.
        sheet.set_landscape()
        sheet.set_paper(9)  # A4
        sheet.fit_to_pages(1, 0)
        sheet.repeat_rows(0)
        sheet.hide_gridlines(0)  # gridlines on screen and on paper
        sheet.set_margins(left=0.25, right=0.25, top=0.55, bottom=0.55)
        sheet.set_header(page_header(scope, round_label, language), {"margin": 0.25})
        sheet.set_footer(page_footer(scope, round_label, language), {"margin": 0.25})
        # The round and the codes of the 시군구 and 읍면동 are the same on every row: the page
        # header and footer print them once, and the printed columns start at the 읍면동 name.
        sheet.print_area(0, keys.index(PRINTED_FROM), last, len(LIST_COLUMNS) - 1)

        legend = book.add_worksheet("결과 코드" if ko else "outcome codes")
        titles = ["결과(목록에서 선택)", "코드"] if ko else ["outcome (pick from the list)", "code"]
        for j, title in enumerate(titles):
            legend.write_string(0, j, title, head)
        for i, outcome in enumerate(outcomes.outcomes, start=1):
            legend.write_string(i, 0, spreadsheet_text(outcome.name_ko if ko else outcome.name_en))
            legend.write_string(i, 1, spreadsheet_text(outcome.code))
        explored = next(r for r in outcomes.selection_reasons if r.code == EXPLORATION)
        example = f"{round_label}-15"
        notes = [
            (
                explored.name_ko if ko else explored.name_en,
                "모형 점수와 무관하게 무작위로 뽑힌 가구입니다(다음 모형이 배울 수 있도록)."
                if ko
                else "Drawn at random regardless of the score (so that the next model can learn).",
            ),
            (
                "확인일" if ko else "contact date",
                f"{example}처럼 연-월-일로 적습니다({example.replace('-', '.')}, "
                f"{example.replace('-', '/')}, {example.replace('-', '')}도 됩니다)."
                if ko
                else f"Year-month-day, e.g. {example} ({example.replace('-', '.')}, "
                f"{example.replace('-', '/')}, {example.replace('-', '')} work too).",
            ),
            ("위험도 · 위험 구간" if ko else "risk · risk band", RISK_BAND_LEGEND[language]),
        ]
        legend_widths = (24.0, 90.0)
        legend.set_column(0, 0, legend_widths[0], wrap)
        legend.set_column(1, 1, legend_widths[1], wrap)
        # The override reasons of the 담당자 판단 drop-down, below the outcomes.
        first = len(outcomes.outcomes) + 2
        titles = (
            ["담당자 판단(목록에서 선택)", "코드 · 뜻"]
            if ko
            else ["override (pick from the list)", "code · meaning"]
        )
        for j, title in enumerate(titles):
            legend.write_string(first, j, title, head)
        action_text = {
            "skip": "명단의 가구를 방문·연락하지 않음(결과는 비워 둡니다)"
            if ko
            else "a listed household not contacted (leave the outcome empty)",
            "add": "명단에 없던 가구를 새 행에 추가(결과와 확인일도 적습니다)"
            if ko
            else "a household the list missed, on a new row (with its outcome and date)",
        }
        for i, reason in enumerate(outcomes.override_reasons, start=first + 1):
            label = reason.name_ko if ko else reason.name_en
            text = f"{reason.code} · {action_text[reason.action]}"
            lines = max(
                wrapped_lines(label, legend_widths[0]), wrapped_lines(text, legend_widths[1])
            )
            legend.set_row(i, lines * LINE_POINTS + ROW_PADDING_POINTS)
            legend.write_string(i, 0, spreadsheet_text(label), wrap)
            legend.write_string(i, 1, spreadsheet_text(text), wrap)
        below = first + len(outcomes.override_reasons) + 2
        for i, (label, text) in enumerate(notes, start=below):
            lines = max(
                wrapped_lines(label, legend_widths[0]), wrapped_lines(text, legend_widths[1])
            )
            legend.set_row(i, lines * LINE_POINTS + ROW_PADDING_POINTS)
            legend.write_string(i, 0, spreadsheet_text(label), wrap)
            legend.write_string(i, 1, spreadsheet_text(text), wrap)
        legend.set_landscape()
        legend.set_paper(9)
        legend.fit_to_pages(1, 0)
        if services:  # the linked service drop-down's choices
            offered = book.add_worksheet(SERVICE_SHEET[language])
            offered.write_string(0, 0, "연계 서비스(목록에서 선택)" if ko else "service", head)
            offered.set_column(0, 0, max(text_width(n) for n in services) + 2, plain)
            for i, name in enumerate(services, start=1):
                offered.write_string(i, 0, spreadsheet_text(name))
    finally:
        book.close()
