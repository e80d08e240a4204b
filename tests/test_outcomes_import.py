"""`outreach outcomes import`: returned lists checked, merged, and turned into the next labels.

Unit tests work on a light copy of the scored sample (its round folder and the staged
households); the round trip copies the whole scored sample, fills its lists from the hidden
truth as caseworkers would, imports them, and trains again with the new round's labels.
"""

from __future__ import annotations

import csv
import io
import shutil
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from _cli_helpers import get_cell as _get
from _cli_helpers import run_captured as _run
from _cli_helpers import set_cell as _set
from _ingest_leak import Identifiers, assert_no_identifiers, collect_identifiers, text_of
from conftest import ScoredSample, copy_outputs, write_config_file

from pipeline.catalogue import load_outcomes
from pipeline.config import Config
from pipeline.datasets import OutputLayout, TableLayout
from pipeline.datasets.outcomes import COLUMNS, read_round_outcomes, round_outcomes_file
from pipeline.datasets.staged import combine_outcomes
from pipeline.features.stage import build_round
from pipeline.months import parse_month
from pipeline.outcomes.checks import RowValidator
from pipeline.outcomes.importer import NOTHING_NEW, import_file
from pipeline.outcomes.normalise import GRACE_MONTHS
from pipeline.outcomes.returned import KEPT, read_returned_list
from pipeline.vocabulary import list_header, list_header_keys

ROUND = "2026-10"
NOTE = "김순자 할머니 010-9876-5432, 반지하 거주, 아들 연락 두절"  # what must never leave the file
LOCAL_KO = "지자체 자체 발굴"


# --- helpers ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Light:
    """A private output root with the scored round and the staged households only."""

    config: Config
    config_file: Path
    round_dir: Path
    scores: pd.DataFrame


def _light(scored: ScoredSample, tmp_path: Path) -> Light:
    out = tmp_path / "outputs"
    source = scored.config.paths.output_root
    shutil.copytree(scored.round_dir, out / "rounds" / scored.as_of)
    shutil.copytree(source / "staged" / "households", out / "staged" / "households")
    config = scored.config.with_overrides(paths={"output_root": str(out)})
    config_file = write_config_file(config, tmp_path / "config.yaml")
    scores = pd.read_parquet(out / "rounds" / scored.as_of / "scores.parquet")
    return Light(config, config_file, out / "rounds" / scored.as_of, scores)


def _read_list(path: Path) -> tuple[list[str], list[list[str]]]:
    rows = list(csv.reader(io.StringIO(path.read_text(encoding="utf-8-sig"))))
    return rows[0], rows[1:]


def _write_list(
    path: Path, head: list[str], rows: list[list[str]], bom: bool = True, encoding="utf-8"
) -> Path:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(head)
    writer.writerows(rows)
    data = buffer.getvalue().encode(encoding)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + data)
    return path


def _emd_lists(light: Light) -> list[Path]:
    return sorted((light.round_dir / "lists").glob("*/emd_*.csv"))


def _first_list(light: Light) -> tuple[Path, list[str], list[list[str]]]:
    path = next(p for p in _emd_lists(light) if len(_read_list(p)[1]) >= 12)
    head, rows = _read_list(path)
    return path, head, rows


def _unlisted(light: Light, emd: str, n: int = 1) -> list[str]:
    """Households of this 읍면동 that are not on the round's list."""
    scores = light.scores
    monitor = scores[(scores["emd_code"] == emd) & (scores["tier"] == "monitor")]
    return sorted(monitor["household_key"].astype(str))[:n]


def _listed_elsewhere(light: Light, emd: str) -> str:
    scores = light.scores
    other = scores[(scores["emd_code"] != emd) & scores["tier"].isin(["visit", "phone"])]
    return str(other["household_key"].iloc[0])


def _kept_headers(head: list[str]) -> list[str]:
    """The Korean headers the rejection file repeats: the columns the import reads."""
    keys = list_header_keys()
    return [h for h in head if keys[h] in KEPT]


def _filled(rows: list[list[str]], n: int, day: str = "2026-10-15") -> list[list[str]]:
    codes = ["public_support", "closed_no_need", "private_support", "unreachable"]
    return [
        _set(r, outcome_code=codes[i % 4], contact_date=day, note=NOTE) if i < n else r
        for i, r in enumerate(rows)
    ]


@pytest.fixture(scope="module")
def validator() -> RowValidator:
    return RowValidator()


# --- reading returned lists ---------------------------------------------------------------------


def test_korean_and_english_headers_and_bom_or_not_read_the_same(
    scored_sample, tmp_path, validator
):
    light = _light(scored_sample, tmp_path)
    _, head, rows = _first_list(light)
    assert head == list_header("ko")
    rows = _filled(rows, 6)
    ko = _write_list(tmp_path / "ko.csv", head, rows)
    en = _write_list(tmp_path / "en.csv", list_header("en"), rows, bom=False)
    ansi = _write_list(tmp_path / "cp949.csv", head, rows, bom=False, encoding="cp949")
    frames = [read_returned_list(p).rows for p in (ko, en, ansi)]
    pd.testing.assert_frame_equal(frames[0], frames[1])
    pd.testing.assert_frame_equal(frames[0], frames[2])
    assert set(list_header_keys()) >= set(list_header("ko")) | set(list_header("en"))

    first = import_file(light.config, ko, validator)
    assert first.counts["accepted"] == 6 and first.counts["new"] == 6
    again = import_file(light.config, en, validator)  # the same answers under English headers
    assert again.status == NOTHING_NEW and again.counts["unchanged"] == 6


def test_xlsx_filled_in_a_spreadsheet_is_read_with_date_cells(scored_sample, tmp_path, validator):
    from openpyxl import load_workbook

    light = _light(scored_sample, tmp_path)
    path, _, rows = _first_list(light)
    book = load_workbook(path.with_suffix(".xlsx"))
    sheet = book.worksheets[0]
    column = {cell.value: cell.column for cell in sheet[1]}
    keys = list_header_keys()
    col = {keys[name]: index for name, index in column.items()}
    sheet.cell(2, col["outcome_code"], "public_support")
    sheet.cell(2, col["contact_date"], datetime(2026, 10, 5))  # Excel turned it into a date
    sheet.cell(2, col["note"], NOTE)
    sheet.cell(3, col["outcome_code"], "방문 후 종결(지원 불필요)")  # the name, not the code
    sheet.cell(3, col["contact_date"], "2026-11-02")
    sheet.cell(3, col["note"], NOTE)
    returned = tmp_path / "returned.xlsx"
    book.save(returned)

    result = import_file(light.config, returned, validator)
    assert result.status == "imported" and result.counts["accepted"] == 2
    assert result.counts["not_filled_in"] == len(rows) - 2
    stored = read_round_outcomes(light.config, ROUND).set_index("household_key")
    first_key = _get(rows[0], "household_key")
    assert stored.loc[first_key, "contact_date"] == date(2026, 10, 5)
    assert stored.loc[first_key, "resolved_month"] == "2026-10"
    assert stored.loc[_get(rows[1], "household_key"), "outcome_code"] == "closed_no_need"
    assert list(stored.reset_index().columns) == list(COLUMNS)


def _xlsx_sheet(light: Light):
    """The first 읍면동 list of at least 12 rows as an openpyxl workbook, its sheet, the column
    numbers by key, and its CSV rows."""
    from openpyxl import load_workbook

    path, _, rows = _first_list(light)
    book = load_workbook(path.with_suffix(".xlsx"))
    sheet = book.worksheets[0]
    keys = list_header_keys()
    col = {keys[cell.value]: cell.column for cell in sheet[1]}
    return book, sheet, col, rows


def test_xlsx_filled_as_a_caseworker_does_korean_labels_excel_dates_and_a_reformatted_round(
    scored_sample, tmp_path, validator
):
    """The drop-down's Korean labels, codes typed by hand, and every unambiguous date form
    (date cells, serials, dotted, slashed, compact, Korean), with two 회차 cells that Excel
    turned into dates: all accepted, nothing rejected."""
    light = _light(scored_sample, tmp_path)
    book, sheet, col, rows = _xlsx_sheet(light)
    dates = [
        datetime(2026, 10, 5),  # a date cell
        46304,  # the serial of 2026-10-09: a date cell whose format was lost
        "2026.10.15",
        "2026. 11. 2.",
        "2026/11/03",
        "20261104",
        "2026년 11월 5일",
        "2026-12-31",
    ]
    expected = [
        date(2026, 10, 5),
        date(2026, 10, 9),
        date(2026, 10, 15),
        date(2026, 11, 2),
        date(2026, 11, 3),
        date(2026, 11, 4),
        date(2026, 11, 5),
        date(2026, 12, 31),
    ]
    outcomes = [o for o in load_outcomes(light.config.paths.outcomes).outcomes if o.resolved]
    for i, typed in enumerate(dates):
        outcome = outcomes[i % len(outcomes)]
        label = outcome.name_ko if i % 3 else outcome.code  # the drop-down, or a code typed
        sheet.cell(i + 2, col["outcome_code"], label)
        sheet.cell(i + 2, col["contact_date"], typed)
        sheet.cell(i + 2, col["note"], NOTE)
    sheet.cell(2, col["round"], datetime(2026, 10, 1))  # Excel turned "2026-10" into a date
    sheet.cell(3, col["round"], 46296)  # ... and lost its format: the serial of 2026-10-01
    sheet.cell(4, col["round"], "2026-10-01")
    returned = tmp_path / "returned.xlsx"
    book.save(returned)

    result = import_file(light.config, returned, validator)
    assert result.round == ROUND and result.report is None, result.rejections
    assert result.counts["accepted"] == len(dates) and result.counts["rejected"] == 0
    stored = read_round_outcomes(light.config, ROUND).set_index("household_key")
    for i, day in enumerate(expected):
        key = _get(rows[i], "household_key")
        assert stored.loc[key, "contact_date"] == day, (i, dates[i])
        assert stored.loc[key, "outcome_code"] == outcomes[i % len(outcomes)].code


def test_xlsx_rejections_come_back_as_a_korean_xlsx_with_the_sheets_headers_and_rows(
    scored_sample, tmp_path, validator
):
    from openpyxl import load_workbook

    light = _light(scored_sample, tmp_path)
    book, sheet, col, rows = _xlsx_sheet(light)
    filled = {
        2: ("공공 서비스 연계", "2026-10-15"),  # fine
        3: ("방문함", "2026-10-15"),  # not an outcome of the drop-down
        4: ("연락 불가", "26.10.15"),  # a two-digit year: ambiguous
        5: ("민간 서비스 연계", datetime(2027, 2, 1)),  # after the round and its grace month
        6: ("처리 중", None),  # fine: in progress needs no date
    }
    for row, (outcome, day) in filled.items():
        sheet.cell(row, col["outcome_code"], outcome)
        sheet.cell(row, col["contact_date"], day)
        sheet.cell(row, col["note"], NOTE)
    returned = tmp_path / "returned.xlsx"
    book.save(returned)

    result = import_file(light.config, returned, validator)
    assert result.counts["accepted"] == 2 and result.counts["rejected"] == 3
    assert result.report is not None and result.report.suffix == ".xlsx"
    report = load_workbook(result.report).worksheets[0]
    cells = [list(r) for r in report.iter_rows(values_only=True)]
    head = [c.value for c in sheet[1]]
    assert cells[0] == ["행 번호", *_kept_headers(head), "사유"]
    body = {line[0]: dict(zip(cells[0], line, strict=True)) for line in cells[1:]}
    assert sorted(body) == [3, 4, 5]  # the row numbers the caseworker sees in Excel
    assert body[3]["사유"].startswith("[결과 코드] 알 수 없는 결과입니다: 목록에서 고르세요")
    assert body[3]["결과 코드"] == "(표시 안 함)"  # free text is not repeated
    assert body[4]["사유"].startswith("[확인일] 확인일을 날짜로 읽을 수 없습니다")
    assert "두 자리 연도" in body[4]["사유"] and body[4]["확인일(YYYY-MM-DD)"] == "26.10.15"
    assert body[5]["사유"].startswith("[확인일] 회차 기간 밖의 확인일입니다")
    assert body[5]["결과 코드"] == "민간 서비스 연계"
    assert body[5]["가구 관리번호"] == _get(rows[3], "household_key")
    assert body[5]["회차"] == ROUND
    assert NOTE not in repr(cells) and "김순자" not in repr(cells)


# --- checks ------------------------------------------------------------------------------------


def test_bad_rows_are_rejected_by_row_field_and_reason_and_the_rest_imported(
    scored_sample, tmp_path, validator
):
    light = _light(scored_sample, tmp_path)
    _, head, rows = _first_list(light)
    emd = _get(rows[0], "emd_code")
    rows = _filled(rows, 12)
    rows[1] = _set(rows[1], outcome_code="visited")  # file row 3
    rows[2] = _set(rows[2], contact_date="2027-03-02")  # row 4: after the round and its grace
    rows[3] = _set(rows[3], contact_date="2026-09-30")  # row 5: before the round
    rows[4] = _set(rows[4], contact_date="2026-02-30")  # row 6: not a date
    rows[5] = _set(rows[5], contact_date="")  # row 7: missing for a resolved outcome
    rows[6] = _set(rows[6], household_key=_unlisted(light, emd)[0])  # row 8: not on the list
    rows[7] = _set(rows[7], household_key=_listed_elsewhere(light, emd))  # row 9: other 읍면동
    rows[8] = _set(rows[8], household_key="김순자 010-9876-5432")  # row 10: a note in the key
    rows[9] = _set(rows[9], outcome_code="in_progress", contact_date="")  # row 11: fine
    path = _write_list(tmp_path / "bad.csv", head, rows)

    result = import_file(light.config, path, validator)
    report = result.rejections
    got = {(r.row, r.field) for r in report.itertuples()}
    assert got == {
        (3, "outcome_code"),
        (4, "contact_date"),
        (5, "contact_date"),
        (6, "contact_date"),
        (7, "contact_date"),
        (8, "household_key"),
        (9, "household_key"),
        (10, "household_key"),
    }
    reason = dict(zip(report["row"], report["reason"], strict=True))
    assert reason[3].startswith("unknown outcome code")
    assert "outside the round" in reason[4] and "2026-10-01" in reason[4]
    assert "2026-12-31" in reason[4]  # the round's two months and GRACE_MONTHS after
    assert GRACE_MONTHS == 1
    assert reason[6].startswith("not a date")
    assert reason[7].startswith("contact date missing")
    assert "not on this round's list" in reason[8] and LOCAL_KO in reason[8]
    assert "another 읍면동" in reason[9]
    assert "not a household of the register" in reason[10]
    assert report.loc[report["row"] == 10, "household_key"].item() == "(not shown)"
    assert result.counts == {
        "rows": len(rows),
        "not_filled_in": len(rows) - 12,
        "repeated": 0,
        "rejected": 8,
        "accepted": 4,
        "added_by_caseworker": 0,
        "new": 4,
        "replaced": 0,
        "unchanged": 0,
    }
    on_disk = pd.read_csv(result.report, encoding="utf-8-sig", dtype=str)  # Korean, for the office
    assert list(on_disk.columns) == ["행 번호", *_kept_headers(head), "사유"]
    assert len(on_disk) == len(report)
    assert on_disk["행 번호"].astype(int).tolist() == report["row"].tolist()
    reason_ko = dict(zip(on_disk["행 번호"].astype(int), on_disk["사유"], strict=True))
    assert reason_ko[3].startswith("[결과 코드] 알 수 없는 결과입니다")
    assert "처리 중" in reason_ko[3]  # the drop-down's labels
    assert reason_ko[4] == (
        "[확인일] 회차 기간 밖의 확인일입니다: 2026-10 회차의 확인일은 "
        "2026-10-01부터 2026-12-31까지입니다"
    )
    assert reason_ko[6].startswith("[확인일] 확인일을 날짜로 읽을 수 없습니다")
    assert reason_ko[7].startswith("[확인일] 확인일이 비어 있습니다")
    assert reason_ko[8].startswith("[가구 관리번호] 이번 회차 이 읍면동 명단에 없는 가구")
    assert reason_ko[9].startswith("[가구 관리번호] 다른 읍면동의 가구입니다")
    assert reason_ko[10].startswith("[가구 관리번호] 등록된 가구가 아닙니다")
    row10 = on_disk[on_disk["행 번호"] == "10"].iloc[0]
    assert row10["가구 관리번호"] == "(표시 안 함)" and "김순자" not in on_disk.to_csv()
    assert on_disk.loc[on_disk["행 번호"] == "3", "결과 코드"].item() == "(표시 안 함)"  # free text
    stored = read_round_outcomes(light.config, ROUND)
    assert len(stored) == 4
    assert "in_progress" in set(stored["outcome_code"])
    assert stored.loc[stored["outcome_code"] == "in_progress", "resolved_month"].isna().all()


def test_a_household_added_by_the_caseworker_is_accepted_as_local_discretion(
    scored_sample, tmp_path, validator
):
    light = _light(scored_sample, tmp_path)
    _, head, rows = _first_list(light)
    emd = _get(rows[0], "emd_code")
    first, second = _unlisted(light, emd, 2)
    added = [
        _set(rows[0], household_key=first, list_rank="", selection=LOCAL_KO,
             outcome_code="public_support", contact_date="2026-10-20"),
        _set(rows[0], household_key=second, list_rank="", selection="Local discretion",
             outcome_code="closed_no_need", contact_date="2026. 11. 3."),
    ]  # fmt: skip
    path = _write_list(tmp_path / "added.csv", head, [*rows, *added])
    result = import_file(light.config, path, validator)
    assert result.counts["rejected"] == 0 and result.counts["added_by_caseworker"] == 2
    stored = read_round_outcomes(light.config, ROUND).set_index("household_key")
    assert stored.loc[[first, second], "added_by_caseworker"].all()
    assert (stored.loc[[first, second], "selection_reason"] == "local_discretion").all()
    assert stored.loc[[first, second], "selection_probability"].isna().all()  # nobody's record
    assert stored.loc[second, "contact_date"] == date(2026, 11, 3)


def test_listed_rows_keep_the_selection_of_the_round(scored_sample, tmp_path, validator):
    light = _light(scored_sample, tmp_path)
    _, head, rows = _first_list(light)
    rows = [_set(r, outcome_code="closed_no_need", contact_date="2026-10-09") for r in rows]
    result = import_file(light.config, _write_list(tmp_path / "all.csv", head, rows), validator)
    assert result.counts["accepted"] == len(rows)
    stored = read_round_outcomes(light.config, ROUND).set_index("household_key")
    scores = light.scores.set_index("household_key")
    for column in ("selection_reason", "selection_probability", "emd_code", "sigungu_code"):
        expected = scores.loc[stored.index, column]
        assert (stored[column].to_numpy() == expected.to_numpy()).all(), column
    assert not stored["added_by_caseworker"].any()


def test_blank_rows_are_skipped_and_counted_not_rejected(scored_sample, tmp_path, validator):
    light = _light(scored_sample, tmp_path)
    _, head, rows = _first_list(light)
    rows = _filled(rows, 3)
    rows[5] = _set(rows[5], note=NOTE)  # a note alone does not make an answer
    path = _write_list(tmp_path / "partly.csv", head, [*rows, [""] * len(head)])
    result = import_file(light.config, path, validator)
    assert result.counts["not_filled_in"] == len(rows) - 3
    assert result.counts["rejected"] == 0 and result.report is None
    assert result.counts["accepted"] == 3


def test_notes_are_dropped_on_reading_and_never_stored(scored_sample, tmp_path, validator):
    light = _light(scored_sample, tmp_path)
    _, head, rows = _first_list(light)
    rows = _filled(rows, 8)
    rows[0] = _set(rows[0], outcome_code="visited")  # a rejected row with a note, too
    path = _write_list(tmp_path / "notes.csv", head, rows)
    returned = read_returned_list(path)
    assert "note" not in returned.rows.columns
    assert not returned.rows.isin([NOTE]).any().any()
    result = import_file(light.config, path, validator)
    assert result.report is not None
    outcomes = OutputLayout(light.config.paths.output_root).outcomes
    files = [p for p in outcomes.rglob("*") if p.is_file()]
    assert {p.suffix for p in files} == {".parquet", ".csv", ".jsonl"}
    for file in files:
        text = text_of(file)
        assert "김순자" not in text and "010-9876-5432" not in text, file


# --- one Great Expectations run per round (through the command line) ---------------------------


def _stored(light: Light, round_label: str = ROUND) -> pd.DataFrame:
    return read_round_outcomes(light.config, round_label).set_index("household_key")


def test_the_lists_of_a_round_are_checked_in_one_validation(scored_sample, tmp_path, validations):
    light = _light(scored_sample, tmp_path)
    lists = [p for p in _emd_lists(light) if len(_read_list(p)[1]) >= 3][:4]
    files = []
    for i, path in enumerate(lists):
        head, rows = _read_list(path)
        files.append(_write_list(tmp_path / f"returned_{i}.csv", head, _filled(rows, 3)))
    code, out, _ = _run(light.config_file, "outcomes", "import", *map(str, files))
    assert code == 0
    assert out.count("3 new, 0 replaced") == 4
    assert validations == [12]  # one run over the filled rows of the four files
    assert len(_stored(light)) == 12


def test_the_ledger_is_verified_once_per_import_and_a_broken_one_stops_every_file(
    scored_sample, tmp_path, monkeypatch
):
    """Verifying the whole ledger costs time in proportion to its length: an import of many
    lists verifies it once, under the lock, not once per file (each entry is still added only
    to a chain that verifies). A ledger that does not verify stops every file, and nothing is
    stored."""
    from pipeline.lineage import events, ledger

    light = _light(scored_sample, tmp_path)
    root = light.config.paths.output_root
    events.challenger_marked(root, model="m", version="1", reason="a first entry")
    lists = [p for p in _emd_lists(light) if len(_read_list(p)[1]) >= 3][:3]
    files = []
    for i, path in enumerate(lists):
        head, rows = _read_list(path)
        files.append(_write_list(tmp_path / f"returned_{i}.csv", head, _filled(rows, 3)))
    checks: list[Path] = []
    real = ledger.check_writable

    def counted(where: Path) -> None:
        checks.append(Path(where))
        real(where)

    monkeypatch.setattr(ledger, "check_writable", counted)
    code, out, _ = _run(light.config_file, "outcomes", "import", *map(str, files[:2]))
    assert code == 0 and out.count("3 new, 0 replaced") == 2
    assert checks == [Path(root)]
    book = ledger.ledger_file(root)
    before = book.read_bytes()
    book.write_bytes(before.replace(b"a first entry", b"another text", 1))
    code, out, err = _run(light.config_file, "outcomes", "import", str(files[2]))
    assert code != 0
    assert "does not verify" in out + err
    assert len(_stored(light)) == 6  # the third file's answers were not stored


def test_a_household_twice_in_one_file_is_rejected_there_only(scored_sample, tmp_path, validations):
    light = _light(scored_sample, tmp_path)
    _, head, rows = _first_list(light)
    key = _get(rows[0], "household_key")
    twice = _filled(rows, 2)
    twice.append(_set(twice[0], outcome_code="unreachable", contact_date="2026-10-20"))
    once = [_set(rows[0], outcome_code="private_support", contact_date="2026-10-21")]
    first = _write_list(tmp_path / "twice.csv", head, twice)
    second = _write_list(tmp_path / "once.csv", head, once)
    code, out, _ = _run(light.config_file, "outcomes", "import", str(first), str(second))
    assert code == 0 and len(validations) == 1
    twice_lines, once_lines = out.split("once.csv")
    assert "1 accepted (0 added by the caseworker), 2 rejected" in twice_lines
    assert twice_lines.count("appears in more than one row with different answers") == 2
    assert "1 accepted" in once_lines and "0 rejected" in once_lines
    assert "1 new, 0 replaced" in once_lines
    assert _stored(light).loc[key, "outcome_code"] == "private_support"


def test_lists_of_two_rounds_in_one_import_are_checked_per_round(
    scored_sample, tmp_path, validations
):
    light = _light(scored_sample, tmp_path)
    later = "2026-12"  # the same lists, scored again as a later round (the scores are the list)
    shutil.copytree(light.round_dir, light.round_dir.parent / later)
    _, head, rows = _first_list(light)
    key = _get(rows[0], "household_key")
    this_round = _filled(rows, 3)
    this_round.append(_set(this_round[0], outcome_code="unreachable"))  # twice: rejected here
    next_round = [_set(r, round=later) for r in _filled(rows, 3, day="2027-01-05")]
    next_round[1] = _set(next_round[1], contact_date="2026-10-15")  # outside round 2026-12
    files = [
        _write_list(tmp_path / "this.csv", head, this_round),
        _write_list(tmp_path / "next.csv", head, next_round),
        _write_list(tmp_path / "unreadable.csv", head, [_set(rows[0], round="someday")]),
    ]
    code, out, err = _run(light.config_file, "outcomes", "import", *map(str, files))
    assert code == 1 and "unreadable.csv: row 2, column 회차" in err
    assert sorted(validations) == [3, 4]  # one run per round
    this_lines, next_lines = out.split("next.csv")
    assert "2 accepted (0 added by the caseworker), 2 rejected" in this_lines
    assert "2 accepted (0 added by the caseworker), 1 rejected" in next_lines
    assert "outside the round: contact dates of round 2026-12 lie from 2026-12-01" in next_lines
    assert "more than one row" not in next_lines  # the same households, in another round
    assert key not in _stored(light).index
    assert _stored(light, later).loc[key, "outcome_code"] == "public_support"


# --- idempotency and corrections (through the command line) ------------------------------------


def test_the_same_file_twice_changes_nothing(scored_sample, tmp_path):
    light = _light(scored_sample, tmp_path)
    _, head, rows = _first_list(light)
    path = _write_list(tmp_path / "list.csv", head, _filled(rows, 10))
    code, out, _ = _run(light.config_file, "outcomes", "import", str(path))
    assert code == 0 and "10 new" in out
    target = round_outcomes_file(light.config, ROUND)
    before = target.read_bytes()
    code, out, _ = _run(light.config_file, "outcomes", "import", str(path))
    assert code == 0
    assert "nothing new" in out
    assert target.read_bytes() == before
    log = (target.parent.parent / "imports.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(log) == 2 and '"status": "nothing new"' in log[1]


def test_a_corrected_file_replaces_the_earlier_answer_and_says_so(scored_sample, tmp_path):
    light = _light(scored_sample, tmp_path)
    _, head, rows = _first_list(light)
    rows = _filled(rows, 10)
    first = _write_list(tmp_path / "first.csv", head, rows)
    assert _run(light.config_file, "outcomes", "import", str(first))[0] == 0
    corrected = list(rows)
    corrected[2] = _set(corrected[2], outcome_code="public_support", contact_date="2026-11-20")
    second = _write_list(tmp_path / "second.csv", head, corrected)
    code, out, _ = _run(light.config_file, "outcomes", "import", str(second))
    assert code == 0
    assert "0 new, 1 replaced" in out and "9 unchanged" in out
    stored = read_round_outcomes(light.config, ROUND).set_index("household_key")
    key = _get(rows[2], "household_key")
    assert stored.loc[key, "outcome_code"] == "public_support"
    assert stored.loc[key, "resolved_month"] == "2026-11"
    sources = stored["source_file_sha256"].value_counts()
    assert sources.loc[read_returned_list(second).sha256] == 1
    assert sources.loc[read_returned_list(first).sha256] == 9


def test_exit_codes(scored_sample, tmp_path):
    light = _light(scored_sample, tmp_path)
    _, head, rows = _first_list(light)
    unfilled = _write_list(tmp_path / "unfilled.csv", head, rows)
    all_bad = _write_list(
        tmp_path / "bad.csv", head, [_set(r, outcome_code="x", contact_date="1") for r in rows]
    )
    other_round = _write_list(tmp_path / "old.csv", head, [_set(r, round="2026-06") for r in rows])
    good = _write_list(tmp_path / "good.csv", head, _filled(rows, 4))
    code, out, _ = _run(light.config_file, "outcomes", "import", str(unfilled))
    assert code == 1 and "nothing valid" in out
    code, out, _ = _run(light.config_file, "outcomes", "import", str(all_bad))
    assert code == 1 and "rejected rows" in out
    code, _, err = _run(light.config_file, "outcomes", "import", str(other_round))
    assert code == 1 and "round 2026-06 was not scored here" in err
    code, _, err = _run(light.config_file, "outcomes", "import", str(tmp_path / "missing.xlsx"))
    assert code == 1 and "file not found" in err
    # one good file among bad ones is imported; the exit code still says something failed
    code, out, _ = _run(light.config_file, "outcomes", "import", str(good), str(unfilled))
    assert code == 1 and "4 new" in out
    assert _run(light.config_file, "outcomes", "import", str(good))[0] == 0
    with pytest.raises(SystemExit) as info:
        _run(light.config_file, "outcomes")
    assert info.value.code == 2


# --- labels: staged and imported outcomes together ---------------------------------------------


def test_imported_outcomes_join_staged_ones_without_double_counting():
    columns = {
        "emd_code": "1111051000",
        "selection_reason": "central_rule",
        "selection_probability": 1.0,
        "outcome_code": "public_support",
    }
    staged = pd.DataFrame(
        {"household_key": ["A", "B"], "round_month": [100, 100],
         "resolved_month": pd.array([100, None], dtype="Int64"), **columns}
    )  # fmt: skip
    imported = pd.DataFrame(
        {"household_key": ["B", "C"], "round_month": [100, 102],
         "resolved_month": pd.array([101, 102], dtype="Int64"), **columns}
    )  # fmt: skip
    both = combine_outcomes(staged, [imported]).set_index("household_key")
    assert list(both.index) == ["A", "B", "C"]
    assert both.loc["B", "source"] == "staged" and pd.isna(both.loc["B", "resolved_month"])
    assert both.loc["C", "source"] == "imported"
    alone = combine_outcomes(staged, [])
    assert (alone["source"] == "staged").all() and len(alone) == 2


# --- the round trip ----------------------------------------------------------------------------


def _truth_before(config: Config, round_month: int) -> pd.Series:
    """in_need of every household at the latest month of the hidden truth before the round
    (the sample's truth ends with its window, the month before the scored round)."""
    layout = TableLayout(config.paths.truth_input)
    month = f"{(round_month - 1) // 12:04d}-{(round_month - 1) % 12 + 1:02d}"
    parts = [
        pd.read_parquet(
            layout.partition_file("household_month", code),
            columns=["household_key", "month", "in_need"],
            filters=[("month", "==", month)],
        )
        for code in layout.partitions("household_month")
    ]
    truth = pd.concat(parts, ignore_index=True)
    assert len(truth), "the hidden truth has no month before the round"
    return truth.set_index(truth["household_key"].astype(str))["in_need"].astype(bool)


@dataclass(frozen=True)
class Answer:
    outcome: str
    day: date | None


def _caseworker_answers(
    keys: list[str], need: pd.Series, rng: np.random.Generator
) -> dict[str, Answer | None]:
    """What caseworkers write back: some not filled in yet, some unreachable, some in
    progress, a few late answers in the grace month; the rest from the hidden need."""
    answers: dict[str, Answer | None] = {}
    for key in keys:
        u = rng.random()
        if u < 0.04:
            answers[key] = None  # not filled in yet
            continue
        late = rng.random() < 0.08
        start = date(2026, 12, 1) if late else date(2026, 10, 1)
        span = 31 if late else 61
        day = date.fromordinal(start.toordinal() + int(rng.integers(0, span)))
        if u < 0.14:
            answers[key] = Answer("unreachable", day)
        elif u < 0.17:
            answers[key] = Answer("in_progress", None)
        elif bool(need.get(key, False)):
            answers[key] = Answer(
                "public_support" if rng.random() < 0.55 else "private_support", day
            )
        else:
            answers[key] = Answer("closed_no_need", day)
    return answers


def _fill_lists(
    round_dir: Path,
    returned: Path,
    need: pd.Series,
    scores: pd.DataFrame,
    notes: list[str],
    seed: int,
) -> tuple[list[Path], dict[str, Answer], set[str]]:
    """Fill every 읍면동 list (XLSX for half of them, CSV for the others) and add one household
    per 시군구 as local discretion. Returns the files, the answers and the added households."""
    from openpyxl import load_workbook

    rng = np.random.default_rng(seed)
    files: list[Path] = []
    expected: dict[str, Answer] = {}
    added: set[str] = set()
    seen_sigungu: set[str] = set()
    keys = list_header_keys()
    for i, csv_path in enumerate(sorted((round_dir / "lists").glob("*/emd_*.csv"))):
        head, rows = _read_list(csv_path)
        if not rows:
            continue
        emd = _get(rows[0], "emd_code")
        sigungu = _get(rows[0], "sigungu_code")
        answers = _caseworker_answers([_get(r, "household_key") for r in rows], need, rng)
        extra: list[list[str]] = []
        if sigungu not in seen_sigungu:
            seen_sigungu.add(sigungu)
            pool = scores[(scores["emd_code"] == emd) & (scores["tier"] == "monitor")]
            key = str(pool["household_key"].iloc[int(rng.integers(0, len(pool)))])
            answer = Answer(
                "public_support" if bool(need.get(key, False)) else "closed_no_need",
                date(2026, 10, 28),
            )
            answers[key] = answer
            added.add(key)
            extra.append(_set(rows[0], household_key=key, list_rank="", selection=LOCAL_KO))
        values: list[dict[str, object]] = []
        for n, row in enumerate([*rows, *extra]):
            answer = answers[_get(row, "household_key")]
            if answer is None:
                values.append({})
                continue
            expected[_get(row, "household_key")] = answer
            text_day = "" if answer.day is None else answer.day.isoformat()
            values.append(
                {
                    "outcome_code": answer.outcome,
                    "contact_date": text_day,
                    "note": notes[n % len(notes)] if n % 3 == 0 else "",
                }
            )
        target = returned / csv_path.parent.name
        target.mkdir(parents=True, exist_ok=True)
        if i % 2 == 0:
            book = load_workbook(csv_path.with_suffix(".xlsx"))
            sheet = book.worksheets[0]
            col = {keys[c.value]: c.column for c in sheet[1]}
            for row in extra:
                sheet.append(row)
            for n, filled in enumerate(values, start=2):
                for key, value in filled.items():
                    if key == "contact_date" and value and n % 2 == 0:
                        value = datetime.fromisoformat(str(value))  # a date cell
                    sheet.cell(n, col[key], value or None)
            path = target / csv_path.with_suffix(".xlsx").name
            book.save(path)
        else:
            out_rows = [_set(r, **{k: str(v) for k, v in filled.items()})
                        for r, filled in zip([*rows, *extra], values, strict=True)]  # fmt: skip
            path = _write_list(target / csv_path.name, head, out_rows)
        files.append(path)
    return files, expected, added


def test_round_trip_generate_train_score_fill_import_train(
    scored_sample, tmp_path, sample_raw, outcome_catalogue
):
    from mlflow.tracking import MlflowClient

    from pipeline.datasets.features import FeatureRounds, round_status
    from pipeline.tracking import tracking_uri

    scored = copy_outputs(scored_sample, tmp_path)
    round_month = parse_month(scored.as_of)
    next_round = round_month + scored.config.window.round_interval_months
    # Two months later: the data window ends the month before the next round. The sample's data
    # (and its hidden truth) stop at 2026-09, so the training that uses the new labels runs as on
    # real data, without truth: its test round 2026-10 is measured by the imported labels.
    config = scored.config.with_overrides(
        window={"end": "2026-11"},
        paths={"truth_input": str(tmp_path / "no-truth")},
        # its own experiment (artifacts inside the copy); the new round is the one test round.
        # What is checked here is which rounds train uses, not what it compares: only the two
        # candidates (no other selective-label method, no other mitigation setting), the
        # smallest bootstraps.
        training={
            "experiment": "welfare-outreach-roundtrip",
            "backtest": {"test_rounds": 1, "bootstrap_samples": 50},
            "selective_labels": {"compare": ["negatives"]},
            "mitigation": {"compare": ["reweigh"], "strengths": [0.75]},
            "fairness": {"bootstrap_samples": 100, "proxy_sample": 200},
        },
    )
    config_file = write_config_file(config, tmp_path / "later.yaml")

    # Before the import the next round's labels know nothing of round 2026-10.
    build_round(config, next_round)
    source = FeatureRounds(config, outcome_catalogue)
    assert not (source.labels(next_round)["round_month"] == round_month).any()

    # Caseworkers fill the lists from what they find (the hidden truth) and send them back.
    identifiers = collect_identifiers(sample_raw)
    names = sorted(identifiers.names)[:5]
    phones = sorted(identifiers.phones)[:5]
    notes = [
        f"{n} 010 연락처 {p} 반지하, 이웃 {names[0]} 제보"
        for n, p in zip(names, phones, strict=True)
    ]
    scores = pd.read_parquet(scored.round_dir / "scores.parquet")
    need = _truth_before(scored.config, round_month)
    files, expected, added = _fill_lists(
        scored.round_dir, tmp_path / "returned", need, scores, notes, seed=20261126
    )
    assert {p.suffix for p in files} == {".csv", ".xlsx"} and len(added) >= 2
    code, out, err = _run(config_file, "outcomes", "import", *map(str, files))
    assert code == 0, err
    assert out.count("rejected") == len(files)  # each summary line says "0 rejected"
    assert "0 rejected" in out and "rejected rows" not in out
    stored = read_round_outcomes(config, scored.as_of)
    assert set(stored["household_key"]) == set(expected)
    assert set(stored.loc[stored["added_by_caseworker"], "household_key"]) == added

    # The feature folder built before the import is out of date; readers never rebuild it:
    # train declares the rounds it needs, and the stale one is built first, said on the terminal.
    stale = "imported outcomes changed since it was built"
    assert round_status(config, next_round) == stale
    # Train again as of the next round: round 2026-10 is a training and a test round now.
    code, train_out, train_err = _run(config_file, "train", "--as-of", "2026-12")
    assert code == 0, train_err
    assert f"==> outreach features --as-of 2026-12 (train needs it: {stale})" in train_out
    assert round_status(config, next_round) is None
    client = MlflowClient(tracking_uri(config))
    experiment = client.get_experiment_by_name("welfare-outreach-roundtrip")
    # the training run (a promoted version also logs a run of its own: "gates vN")
    (run,) = [
        r
        for r in client.search_runs([experiment.experiment_id])
        if r.info.run_name.startswith("train ")
    ]
    assert scored.as_of in run.data.params["train_rounds"].split(",")
    assert run.data.params["test_rounds"] == scored.as_of
    assert run.data.params["as_of"] == "2026-12"

    # The next round's labels include round 2026-10: train rebuilt the stale feature folder.
    labels = source.labels(next_round)
    new = labels[labels["round_month"] == round_month].set_index("household_key")
    assert set(new.index) == set(expected)
    assert (new["source"] == "imported").all()
    label_of = outcome_catalogue.label_of()
    listed = scores.set_index(scores["household_key"].astype(str))
    for key, answer in expected.items():
        row = new.loc[key]
        known = answer.day is not None and answer.day < date(2026, 12, 1)
        # In progress, or a late answer (grace month, known only from 2026-12 on): not resolved
        # by as_of, and nothing more is known of it then.
        if answer.outcome == "in_progress" or not known:
            assert pd.isna(row["label"]) and row["missing_reason"] == "not_resolved_by_as_of"
        elif label_of[answer.outcome] is None:
            assert pd.isna(row["label"]) and row["missing_reason"] == "unreachable"
        else:
            assert row["label"] == label_of[answer.outcome], key
        reason = "local_discretion" if key in added else listed.loc[key, "selection_reason"]
        assert row["selection_reason"] == reason
    assert {"model_score", "random_exploration", "local_discretion"} <= set(new["selection_reason"])
    labelled = int(new["label"].notna().sum())
    assert labelled > 200
    manifest = OutputLayout(config.paths.output_root).features("2026-12") / "manifest.json"
    assert f"round={scored.as_of}/outcomes.parquet" in manifest.read_text(encoding="utf-8")

    # Notes (real names and phones of the sample) never left the returned files.
    root = config.paths.output_root
    leak = Identifiers(frozenset(), frozenset(names), frozenset(phones), frozenset())
    searched = assert_no_identifiers(
        [root / "outcomes", OutputLayout(root).features("2026-12"), root / "mlflow"],
        leak,
        texts={"import": out + err, "train": train_out + train_err},
    )
    assert searched > 10
