"""The XLSX lists print: LibreOffice headless turns them into PDF, and the PDF is read back.

A 20-household list of the scored sample, and the largest 시군구 list the score stage wrote, are
converted with ``libreoffice --headless --convert-to pdf``; the PDF's words and their positions
(``pdftotext -bbox``, poppler-utils) show

- the page count: landscape A4, one page wide, a 20-household list on at most 2 pages of rows
  (plus the page of the outcome legend, the second sheet);
- the header row at the top of every page of rows (``repeat_rows``);
- no cell cut: every reason of every row appears whole in its column (LibreOffice clips a
  wrapped cell at its row's height, and text clipped away is not in the PDF's text: a list
  written with rows too low fails this check, see the last test);
- the footer: the 읍면동, the round, page X of Y and the confidentiality line.

Skipped only when LibreOffice or pdftotext is not installed (``.ci/run`` installs both:
``libreoffice-calc`` and ``poppler-utils``).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import pytest

from pipeline.catalogue import load_outcomes
from pipeline.months import first_day, parse_month
from pipeline.score import lists
from pipeline.score.lists import CONFIDENTIAL, write_xlsx
from pipeline.vocabulary import LIST_COLUMNS, list_header

LIBREOFFICE = shutil.which("libreoffice") or shutil.which("soffice")
PDFTOTEXT = shutil.which("pdftotext")
pytestmark = [
    pytest.mark.skipif(
        LIBREOFFICE is None,
        reason="LibreOffice is not installed (apt-get install libreoffice-calc; .ci/run does)",
    ),
    pytest.mark.skipif(
        PDFTOTEXT is None,
        reason="pdftotext is not installed (apt-get install poppler-utils; .ci/run does)",
    ),
]

REASONS = ("reason_1", "reason_2", "reason_3")
HOUSEHOLDS = 20
MAX_PAGES_OF_20 = 2  # pages of rows for 20 households (the legend sheet prints after them)
ROWS_PER_PAGE = 8  # at least, on average, with the sample's longest reasons (measured: 10)


@dataclass(frozen=True)
class Word:
    text: str
    x0: float
    y0: float
    x1: float
    y1: float


def to_pdf(xlsx: Path, out_dir: Path) -> Path:
    """``libreoffice --headless --convert-to pdf``, with a private profile (runs in parallel)."""
    profile = out_dir / "lo_profile"
    subprocess.run(
        [
            str(LIBREOFFICE),
            f"-env:UserInstallation={profile.resolve().as_uri()}",
            "--headless",
            "--convert-to",
            "pdf",
            "--outdir",
            str(out_dir),
            str(xlsx),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    pdf = out_dir / f"{xlsx.stem}.pdf"
    assert pdf.is_file(), f"LibreOffice wrote no {pdf.name}"
    return pdf


def pdf_pages(pdf: Path) -> list[list[Word]]:
    """Every page's words with their boxes (``pdftotext -bbox``)."""
    html = subprocess.run(
        [str(PDFTOTEXT), "-bbox", str(pdf), "-"], check=True, capture_output=True, timeout=120
    ).stdout.decode("utf-8")
    html = re.sub(r"<!DOCTYPE[^>]*>", "", html).replace('xmlns="http://www.w3.org/1999/xhtml"', "")
    root = ET.fromstring(html)
    pages = []
    for page in root.iter("page"):
        pages.append(
            [
                Word(
                    w.text or "",
                    float(w.get("xMin")),
                    float(w.get("yMin")),
                    float(w.get("xMax")),
                    float(w.get("yMax")),
                )
                for w in page.iter("word")
            ]
        )
    return pages


def squeeze(text: str) -> str:
    return re.sub(r"\s+", "", text)


def header_words(page: list[Word], header: list[str]) -> dict[str, Word] | None:
    """The first word of each header cell on the page's header row (the topmost row holding
    "사유 1", "사유 2" ...), or None when the page has no header row."""
    found: dict[str, Word] = {}
    for name in header:
        first, *rest = name.split(" ")
        for i, word in enumerate(page):
            if word.text != first:
                continue
            following = page[i + 1 : i + 1 + len(rest)]
            matches = [w.text for w in following] == rest
            if matches and (name not in found or word.y0 < found[name].y0):
                found[name] = word
    return found if found else None


def column_text(page: list[Word], left: float, right: float, below: float) -> str:
    """The words of a column (``left <= x < right``) under the header, line by line, squeezed."""
    words = [w for w in page if left - 1 <= w.x0 < right - 1 and w.y0 > below]
    words.sort(key=lambda w: (w.y0, w.x0))
    lines: list[list[Word]] = []
    for word in words:
        if lines and abs(word.y0 - lines[-1][0].y0) < 2.0:
            lines[-1].append(word)
        else:
            lines.append([word])
    return "".join(
        squeeze("".join(w.text for w in sorted(line, key=lambda w: w.x0))) for line in lines
    )


@dataclass(frozen=True)
class Printed:
    pages: list[list[Word]]
    row_pages: int  # pages of the list sheet (the legend sheet's page follows)
    columns: dict[str, str]  # reason key -> the column's text on every page, in order
    headed: list[bool]  # per page of rows: the header row is at its top


def read_printed(pdf: Path, language: str) -> Printed:
    """The printed list: its pages of rows (those before the legend sheet's page), whether
    each starts with the header row, and the text of each reason column."""
    pages = pdf_pages(pdf)
    header, keys = list_header(language), _keys()
    names = {k: header[keys.index(k)] for k in REASONS}
    after = {k: header[keys.index(k) + 1] for k in REASONS}
    legend_title = squeeze("결과(목록에서 선택)" if language == "ko" else "outcome (pick from")
    legend = [i for i, p in enumerate(pages) if legend_title in squeeze("".join(w.text for w in p))]
    assert legend, "the legend sheet was not printed"
    columns = {k: "" for k in REASONS}
    headed = []
    for page in pages[: legend[0]]:
        found = header_words(page, [*names.values(), *after.values()]) or {}
        if not all(n in found for n in names.values()):
            headed.append(False)
            continue
        top = min(found[n].y0 for n in names.values())
        bottom = max(found[n].y1 for n in names.values())
        spans = {
            k: (found[names[k]].x0, found[after[k]].x0 if after[k] in found else float("inf"))
            for k in REASONS
        }
        # The header row is the first row of the page: nothing of the columns above it.
        headed.append(
            not any(
                left - 1 <= w.x0 < right - 1 and w.y0 < top - 1
                for w in page
                for left, right in spans.values()
            )
        )
        for key, (left, right) in spans.items():
            columns[key] += column_text(page, left, right, bottom)
    return Printed(pages, legend[0], columns, headed)


def _keys() -> list[str]:
    return [c.key for c in LIST_COLUMNS]


def sheet_rows(xlsx: Path) -> list[tuple[object, ...]]:
    """The list's rows as the score stage wrote them (values, "" for empty cells)."""
    from openpyxl import load_workbook

    book = load_workbook(xlsx, read_only=True, data_only=True)
    try:
        rows = list(book.worksheets[0].iter_rows(min_row=2, values_only=True))
    finally:
        book.close()
    return [tuple("" if v is None else v for v in r) for r in rows]


def cut_reasons(rows: list[tuple[object, ...]], printed: Printed) -> list[str]:
    """The reasons that do not appear whole in their printed column."""
    keys = _keys()
    cut = []
    for row in rows:
        for key in REASONS:
            text = squeeze(str(row[keys.index(key)]))
            if text and text not in printed.columns[key]:
                cut.append(f"{key}: {row[keys.index(key)]}")
    return cut


@pytest.fixture(scope="module")
def sample_lists(scored_sample):
    """The scored sample's lists folder, its language and catalogue, and a list of exactly 20
    households (the first 20 of the largest 시군구 list, as the score stage wrote them)."""
    config = scored_sample.config
    files = sorted((scored_sample.round_dir / "lists").glob("*/sigungu_*.xlsx"))
    biggest = max(files, key=lambda p: len(sheet_rows(p)))
    return biggest, config.scoring.language, load_outcomes(config.paths.outcomes)


def test_a_20_household_list_prints_landscape_on_two_pages_with_every_reason_whole(
    scored_sample, sample_lists, tmp_path
):
    biggest, language, catalogue = sample_lists
    rows = sheet_rows(biggest)
    keys = _keys()
    emd = keys.index("emd_code")
    by_emd: dict[object, list] = {}
    for row in rows:
        by_emd.setdefault(row[emd], []).append(row)
    largest = max(by_emd.values(), key=len)
    twenty = (largest if len(largest) >= HOUSEHOLDS else rows)[:HOUSEHOLDS]
    assert len(twenty) == HOUSEHOLDS
    xlsx = tmp_path / f"emd_{twenty[0][emd]}.xlsx"
    round_month = first_day(parse_month(scored_sample.as_of))
    write_xlsx(twenty, xlsx, language, catalogue, round_month)

    pdf = to_pdf(xlsx, tmp_path)
    printed = read_printed(pdf, language)
    width, height = _page_size(pdf)
    assert width > height, "not landscape"
    assert abs(width - 841.9) < 2 and abs(height - 595.3) < 2, "not A4"
    assert 1 <= printed.row_pages <= MAX_PAGES_OF_20, f"{printed.row_pages} pages of rows"
    assert all(printed.headed), f"header row missing on pages {printed.headed}"
    assert cut_reasons(twenty, printed) == []
    text = squeeze(" ".join(w.text for w in printed.pages[0]))
    assert squeeze(CONFIDENTIAL[language]) in text
    assert squeeze(f"1 / {len(printed.pages)} 쪽" if language == "ko" else "page 1 of") in text
    assert str(twenty[0][emd]) in text and scored_sample.as_of in text  # 읍면동 and round
    for key in [k for k in ("household_key",) if k in keys]:  # every household printed
        page_text = squeeze(" ".join(w.text for p in printed.pages for w in p))
        assert all(str(r[keys.index(key)]) in page_text for r in twenty)


def test_the_largest_list_of_the_sample_prints_every_page_with_its_header_and_no_cell_cut(
    sample_lists, tmp_path
):
    biggest, language, _ = sample_lists
    rows = sheet_rows(biggest)
    pdf = to_pdf(shutil.copy(biggest, tmp_path / biggest.name), tmp_path)
    printed = read_printed(pdf, language)
    most = -(-len(rows) // ROWS_PER_PAGE)
    assert printed.row_pages <= most, f"{len(rows)} rows on {printed.row_pages} pages"
    assert len(printed.headed) == printed.row_pages and all(printed.headed), printed.headed
    assert cut_reasons(rows, printed) == []


def test_the_check_finds_a_cut_cell_rows_too_low(sample_lists, tmp_path, monkeypatch):
    """The no-cut check has teeth: with rows a third as high, LibreOffice clips the reasons."""
    biggest, language, catalogue = sample_lists
    rows = sheet_rows(biggest)[:HOUSEHOLDS]
    monkeypatch.setattr(lists, "LINE_POINTS", lists.LINE_POINTS / 3)
    xlsx = tmp_path / "low.xlsx"
    write_xlsx(rows, xlsx, language, catalogue, first_day(parse_month(str(rows[0][0]))))
    printed = read_printed(to_pdf(xlsx, tmp_path), language)
    assert cut_reasons(rows, printed), "rows too low, yet every reason read whole"


def _page_size(pdf: Path) -> tuple[float, float]:
    html = subprocess.run(
        [str(PDFTOTEXT), "-bbox", "-l", "1", str(pdf), "-"], check=True, capture_output=True
    ).stdout.decode("utf-8")
    match = re.search(r'<page width="([\d.]+)" height="([\d.]+)"', html)
    assert match, "no page in the PDF"
    return float(match.group(1)), float(match.group(2))
