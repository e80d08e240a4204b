"""The outreach lists a 읍면동 (and its 시군구) receives: CSV (UTF-8 with BOM) and XLSX.

A list holds the visit and phone tiers of one 읍면동 (the 시군구 file: of all its 읍면동), and
identifies a household only by the administrative household key. The last columns are empty, for
the caseworker to fill in: the outcome code (a drop-down in the XLSX), the contact date and a note
(notes stay in the office: ``outreach outcomes import`` does not keep them).

``LIST_COLUMNS`` is the one table of list columns: key, Korean header, English header, width.
Readers of returned lists map either header back to the key.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pandas as pd

from pipeline.catalogue import OutcomeCatalogue
from pipeline.score.tiers import EXPLORATION, PHONE, VISIT


@dataclass(frozen=True)
class ListColumn:
    key: str
    ko: str
    en: str
    width: int


LIST_COLUMNS: tuple[ListColumn, ...] = (
    ListColumn("round", "회차", "round", 9),
    ListColumn("sigungu_code", "시군구 코드", "sigungu code", 13),
    ListColumn("emd_code", "읍면동 코드", "emd code", 13),
    ListColumn("emd_name", "읍면동", "emd name", 16),
    ListColumn("list_rank", "순번", "position", 6),
    ListColumn("household_key", "가구 관리번호", "household key", 16),
    ListColumn("tier", "구분", "tier", 10),
    ListColumn("risk_percent", "위험도(%)", "risk (%)", 10),
    ListColumn("selection", "선정 사유", "selected by", 20),
    ListColumn("reason_1", "사유 1", "reason 1", 48),
    ListColumn("reason_2", "사유 2", "reason 2", 48),
    ListColumn("reason_3", "사유 3", "reason 3", 48),
    ListColumn("outcome_code", "결과 코드", "outcome code", 18),
    ListColumn("contact_date", "확인일(YYYY-MM-DD)", "contact date (YYYY-MM-DD)", 20),
    ListColumn("note", "메모(제출 시 제외)", "note (not imported)", 30),
)
FILL_IN = ("outcome_code", "contact_date", "note")
TIER_TEXT = {
    "ko": {VISIT: "방문", PHONE: "전화 확인"},
    "en": {VISIT: "visit", PHONE: "phone check"},
}


def header(language: str) -> list[str]:
    return [getattr(c, language) for c in LIST_COLUMNS]


def header_keys() -> dict[str, str]:
    """Korean and English headers (and the keys themselves) mapped to column keys."""
    out = {}
    for column in LIST_COLUMNS:
        out[column.ko] = column.key
        out[column.en] = column.key
        out[column.key] = column.key
    return out


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


def write_csv(frame: pd.DataFrame, path: Path, language: str) -> None:
    """CSV in UTF-8 with a BOM (Excel then reads Korean text), CRLF line ends, every field text."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(header(language))
    for row in frame.itertuples(index=False):
        writer.writerow(["" if v is None else str(v) for v in row])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\xef\xbb\xbf" + buffer.getvalue().encode("utf-8"))


def write_xlsx(
    frame: pd.DataFrame,
    path: Path,
    language: str,
    outcomes: OutcomeCatalogue,
    round_month: datetime,
) -> None:
    """XLSX: header in bold, frozen, sensible widths, an outcome-code drop-down, a code sheet.

    Document times are set to the round month so that the same list gives the same workbook.
    """
    from openpyxl import Workbook
    from openpyxl.styles import Alignment, Font, PatternFill
    from openpyxl.utils import get_column_letter
    from openpyxl.worksheet.datavalidation import DataValidation

    ko = language == "ko"
    book = Workbook()
    sheet = book.active
    sheet.title = "발굴 대상" if ko else "list"
    sheet.append(header(language))
    bold = Font(bold=True)
    fill = PatternFill("solid", start_color="FFDDE7F0")
    fill_in = PatternFill("solid", start_color="FFFFF6D5")
    for cell in sheet[1]:
        cell.font = bold
        cell.fill = fill
        cell.alignment = Alignment(vertical="center", wrap_text=True)
    risk = [c.key for c in LIST_COLUMNS].index("risk_percent")
    for row in frame.itertuples(index=False):
        values = ["" if v is None else v for v in row]
        values[risk] = float(values[risk])  # a number, so that Excel sorts and filters it
        sheet.append(values)
    for index, column in enumerate(LIST_COLUMNS, start=1):
        letter = get_column_letter(index)
        sheet.column_dimensions[letter].width = column.width
        if column.key in FILL_IN:
            sheet[f"{letter}1"].fill = fill_in
    sheet.freeze_panes = "A2"
    sheet.auto_filter.ref = sheet.dimensions
    last = max(2, len(frame) + 1)
    outcome_col = get_column_letter([c.key for c in LIST_COLUMNS].index("outcome_code") + 1)
    codes = ",".join(outcomes.codes)
    check = DataValidation(
        type="list",
        formula1=f'"{codes}"',
        allow_blank=True,
        showErrorMessage=True,
        errorTitle="결과 코드" if ko else "outcome code",
        error=("목록의 결과 코드를 고르세요" if ko else "pick a code from the list"),
    )
    check.add(f"{outcome_col}2:{outcome_col}{last}")
    sheet.add_data_validation(check)
    legend = book.create_sheet("결과 코드" if ko else "outcome codes")
    legend.append(["코드", "의미", "선정 사유"] if ko else ["code", "meaning", "selected by"])
    for cell in legend[1]:
        cell.font = bold
    for outcome in outcomes.outcomes:
        legend.append([outcome.code, outcome.name_ko if ko else outcome.name_en])
    explored = next(r for r in outcomes.selection_reasons if r.code == EXPLORATION)
    legend.append([])
    legend.append(
        [
            "",
            "무작위 탐색 표본: 모형 점수와 무관하게 뽑힌 가구(다음 모형의 학습을 위해)"
            if ko
            else "Random exploration: drawn regardless of score (so the next model can learn)",
            explored.name_ko if ko else explored.name_en,
        ]
    )
    legend.column_dimensions["A"].width = 18
    legend.column_dimensions["B"].width = 60
    legend.column_dimensions["C"].width = 20
    book.properties.creator = "welfare-outreach"
    book.properties.lastModifiedBy = "welfare-outreach"
    book.properties.created = round_month
    book.properties.modified = round_month
    path.parent.mkdir(parents=True, exist_ok=True)
    book.save(path)
