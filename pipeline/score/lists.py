"""The outreach lists a 읍면동 (and its 시군구) receives: CSV (UTF-8 with BOM) and XLSX.

A list holds the visit and phone tiers of one 읍면동 (the 시군구 file: of all its 읍면동), and
identifies a household only by the administrative household key. The last columns are empty, for
the caseworker to fill in: the outcome code (a drop-down in the XLSX), the contact date and a note
(notes stay in the office: ``outreach outcomes import`` does not keep them).

``LIST_COLUMNS`` is the one table of list columns: key, Korean header, English header, width.
Readers of returned lists map either header back to the key.

Every text cell goes through :func:`pipeline.textsafe.spreadsheet_text`: text a spreadsheet would
run as a formula (a 읍면동 name or a household key starting with ``=``, ``+``, ``-``, ``@``) is
written with a leading apostrophe, in the CSV and in the XLSX alike; the XLSX writer also never
turns text into formulas, numbers or links.
"""

from __future__ import annotations

import csv
import io
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
    TIER_TEXT,
    VISIT,
    list_header,
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
            "risk_percent": [f"{100 * s:.1f}" for s in listed["score"].to_numpy()],
            "selection": listed["selection_reason"].map(names).to_numpy(),
        }
    )
    for i in range(1, 4):
        column = f"reason_{i}_text"
        values = listed[column] if i <= reasons and column in listed else None
        frame[f"reason_{i}"] = (
            values.fillna("").astype(str).to_numpy() if values is not None else ""
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


def write_xlsx(
    rows: Sequence[Sequence[object]],
    path: Path,
    language: str,
    outcomes: OutcomeCatalogue,
    round_month: datetime,
) -> None:
    """XLSX: header in bold, frozen, sensible widths, an outcome-code drop-down, a code sheet.

    ``rows``: :func:`list_rows` (or a slice of them). Written with XlsxWriter (about twice as
    fast as openpyxl here: lists are written for every 읍면동 of the country each round).
    Document times are the round month, so the same list gives the same workbook.
    """
    import xlsxwriter

    ko = language == "ko"
    keys = [c.key for c in LIST_COLUMNS]
    risk = keys.index("risk_percent")
    rank = keys.index("list_rank")
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
                "title": "복지 사각지대 발굴 대상" if ko else "Welfare outreach list",
                "author": "welfare-outreach",
                "created": round_month,
            }
        )
        head = book.add_format({"bold": True, "bg_color": "#DDE7F0", "text_wrap": True})
        fill_head = book.add_format({"bold": True, "bg_color": "#FFF6D5", "text_wrap": True})
        number = book.add_format({"num_format": "0.0"})
        sheet = book.add_worksheet("발굴 대상" if ko else "list")
        for j, column in enumerate(LIST_COLUMNS):
            style = fill_head if column.key in FILL_IN else head
            sheet.write_string(0, j, getattr(column, language), style)
            sheet.set_column(j, j, column.width)
        for i, row in enumerate(rows, start=1):
            for j, value in enumerate(row):
                if j == risk:  # numbers, so that Excel sorts and filters them
                    sheet.write_number(i, j, float(value), number)
                elif j == rank:
                    sheet.write_number(i, j, int(value))
                elif value is not None and value != "":
                    sheet.write_string(i, j, spreadsheet_text(value))
        last = max(1, len(rows))
        sheet.freeze_panes(1, 0)
        sheet.autofilter(0, 0, last, len(LIST_COLUMNS) - 1)
        column = keys.index("outcome_code")
        sheet.data_validation(
            1,
            column,
            last,
            column,
            {
                "validate": "list",
                "source": list(outcomes.codes),
                "error_title": "결과 코드" if ko else "outcome code",
                "error_message": "목록의 결과 코드를 고르세요"
                if ko
                else "pick a code from the list",
            },
        )
        legend = book.add_worksheet("결과 코드" if ko else "outcome codes")
        titles = ["코드", "의미"] if ko else ["code", "meaning"]
        for j, title in enumerate(titles):
            legend.write_string(0, j, title, head)
        for i, outcome in enumerate(outcomes.outcomes, start=1):
            legend.write_string(i, 0, spreadsheet_text(outcome.code))
            legend.write_string(i, 1, spreadsheet_text(outcome.name_ko if ko else outcome.name_en))
        explored = next(r for r in outcomes.selection_reasons if r.code == EXPLORATION)
        legend.write_string(
            len(outcomes.outcomes) + 2,
            0,
            spreadsheet_text(explored.name_ko if ko else explored.name_en),
        )
        legend.write_string(
            len(outcomes.outcomes) + 2,
            1,
            "모형 점수와 무관하게 무작위로 뽑힌 가구입니다(다음 모형이 배울 수 있도록)."
            if ko
            else "Drawn at random regardless of the score (so that the next model can learn).",
        )
        legend.set_column(0, 0, 20)
        legend.set_column(1, 1, 70)
    finally:
        book.close()
