"""The caseworker's loop, end to end on the sample (issue: "The caseworker's loop").

One walk, shared by the tests of this module: the scored round 2026-10 is reported (the 읍면동
page before any answer), one 읍면동's XLSX list is filled in as a caseworker does (Korean labels
from the drop-downs, blank rows, a note with a name and a phone number, a skip override, an
added household, dates as Excel writes them), imported twice (the second import changes
nothing), the phone tier's call results come back from the call service, the round is reported
again (the 읍면동 page after the import, the follow-up page with the ministry's table and the
override rates), and the next round (2026-12, the data window moved on to 2026-11) is scored:
its list carries the open cases, escalated where the config says.

Browser screenshots of the pages go to ``$OUTREACH_SCREENSHOTS`` when it is set
(``docs/img/outcomes_*.png``: ``OUTREACH_SCREENSHOTS=docs/img make test``), else to a temporary
folder.
"""

from __future__ import annotations

import csv
import io
import os
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest
from _browser import launched_chromium, screenshot
from _cli_helpers import run_captured
from conftest import copy_outputs, write_config_file

from pipeline.catalogue import load_outcomes
from pipeline.config import Config
from pipeline.datasets import OutputLayout
from pipeline.datasets.outcomes import read_round_calls, read_round_outcomes, round_outcomes_file
from pipeline.io import sha256_file
from pipeline.vocabulary import list_header_keys

ROUND, NEXT = "2026-10", "2026-12"
NOTE = "박영수 어르신 010-2345-6789 2층 뒷집, 아들과 연락 끊김"  # must never leave the file
SCREENSHOTS_ENV = "OUTREACH_SCREENSHOTS"
CATALOGUE = load_outcomes(Path(__file__).resolve().parents[1] / "configs" / "outcomes.yaml")
OUTCOME_KO = {o.code: o.name_ko for o in CATALOGUE.outcomes}
OVERRIDE_KO = {r.code: r.name_ko for r in CATALOGUE.override_reasons}
STATUS_KO = {s.code: s.name_ko for s in CATALOGUE.case_statuses}


@dataclass
class Loop:
    """What the walk did and where it left its files."""

    config: Config
    config_file: Path
    next_config_file: Path
    sigungu: str
    emd: str
    plan: dict[str, str]  # household key -> what the caseworker answered (see _fill)
    added_key: str
    first_import: tuple[int, str, str]
    second_import: tuple[int, str, str]
    outcomes_sha_after_first: str
    outcomes_sha_after_second: str
    report_before: Path  # the round's report folder copied before the import
    report_after: Path
    next_round: Path
    calls: dict[str, str]  # household key -> call result code
    calls_import: tuple[int, str, str]
    calls_reimport: tuple[int, str, str]


def _emd_with_most_rows(round_dir: Path) -> tuple[str, str, Path]:
    scores = pd.read_parquet(round_dir / "scores.parquet")
    listed = scores[scores["tier"].isin(["visit", "phone"])]
    sizes = listed.groupby(["sigungu_code", "emd_code"]).size()
    (sigungu, emd) = sizes.idxmax()
    path = round_dir / "lists" / str(sigungu) / f"emd_{emd}.xlsx"
    return str(sigungu), str(emd), path


def _fill(path: Path, scores: pd.DataFrame, emd: str) -> tuple[dict[str, str], str, Path]:
    """Fill the 읍면동's XLSX list as a caseworker does; returns the plan per household, the
    added household's key and the filled file."""
    from openpyxl import load_workbook

    book = load_workbook(path)
    sheet = book.worksheets[0]
    keys = list_header_keys()
    col = {keys[cell.value]: cell.column for cell in sheet[1]}
    rows = list(range(2, sheet.max_row + 1))
    tier = {r: sheet.cell(r, col["tier"]).value for r in rows}
    visits = [r for r in rows if tier[r] == "방문"]
    phones = [r for r in rows if tier[r] == "전화 확인"]
    assert len(visits) >= 6 and len(phones) >= 3, "the sample's largest 읍면동 list is too small"

    def key(r: int) -> str:
        return str(sheet.cell(r, col["household_key"]).value)

    def answer(r: int, outcome: str | None, when: object = None, override: str | None = None):
        if outcome is not None:
            sheet.cell(r, col["outcome_code"]).value = OUTCOME_KO[outcome]
        if when is not None:
            sheet.cell(r, col["contact_date"]).value = when
        if override is not None:
            sheet.cell(r, col["override"]).value = OVERRIDE_KO[override]

    plan = {}
    answer(visits[0], "public_support", datetime(2026, 10, 14))  # a date cell
    plan[key(visits[0])] = "public_support"
    answer(visits[1], "unreachable", 46310)  # 2026-10-15 as a serial (the format was lost)
    plan[key(visits[1])] = "unreachable"
    answer(visits[2], "in_progress")  # no date needed
    plan[key(visits[2])] = "in_progress"
    answer(visits[3], None, None, "skip_safety")  # not visited, and why
    plan[key(visits[3])] = "skip_safety"
    answer(visits[4], "closed_no_need", "2026. 10. 20.")  # as Korean Excel shows a date
    sheet.cell(visits[4], col["note"]).value = NOTE
    plan[key(visits[4])] = "closed_no_need"
    answer(visits[5], "declined", "2026-10-21")
    plan[key(visits[5])] = "declined"
    answer(phones[0], "unreachable", "2026-10-16")  # phoned by the office, not reached
    plan[key(phones[0])] = "phone_unreachable"
    # a household of this 읍면동 the list missed, added at the bottom (codes typed as text)
    monitored = scores[(scores["emd_code"] == emd) & (scores["tier"] == "monitor")]
    added = str(monitored.sort_values("household_key")["household_key"].iloc[0])
    first = sheet.cell(2, col["round"]).value
    new = sheet.max_row + 1
    for name, value in (
        ("round", first),
        ("sigungu_code", sheet.cell(2, col["sigungu_code"]).value),
        ("emd_code", sheet.cell(2, col["emd_code"]).value),
        ("household_key", added),
    ):
        sheet.cell(new, col[name]).value = value
    answer(new, "private_support", "2026-10-22", "add_referral")
    filled = path.with_name(f"returned_{path.name}")
    book.save(filled)
    return plan, added, filled


def _fill_calls(round_dir: Path, sigungu: str, phones: list[str]) -> tuple[dict[str, str], Path]:
    """The call service's answers for three of the 읍면동's phone households (Korean names for
    two, a code for one), the other rows left empty: the results and the returned file."""
    path = round_dir / "callcentre" / f"calls_{sigungu}.csv"
    text = path.read_text(encoding="utf-8-sig")
    reader = csv.DictReader(io.StringIO(text))
    rows, head = list(reader), reader.fieldnames
    results = dict(zip(phones, ("needs_visit", "not_reached", "reached"), strict=False))
    names = {c.code: c.name_ko for c in CATALOGUE.call_results}
    for row in rows:
        result = results.get(row["household_key"])
        if result is not None:
            row["call_result"] = names[result] if result != "reached" else result
            row["call_date"] = "2026-10-12"
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=head, lineterminator="\r\n")
    writer.writeheader()
    writer.writerows(rows)
    returned = path.with_name(f"returned_{path.name}")
    returned.write_bytes(b"\xef\xbb\xbf" + out.getvalue().encode("utf-8"))
    assert len(results) == 3
    return results, returned


def _config_with_window_end(config: Config, folder: Path, end: str) -> Path:
    window = config.window.model_dump(mode="json")
    window["end"] = end
    return write_config_file(config.with_overrides(window=window), folder / "config_next.yaml")


@pytest.fixture(scope="module")
def loop(scored_sample, tmp_path_factory) -> Loop:
    import shutil

    work = tmp_path_factory.mktemp("loop")
    copied = copy_outputs(scored_sample, work)
    config, config_file = copied.config, copied.config_file
    round_dir = copied.round_dir
    sigungu, emd, xlsx = _emd_with_most_rows(round_dir)

    code, _, err = run_captured(config_file, "report", "--as-of", ROUND)
    assert code == 0, err
    report_before = work / "report_before"
    shutil.copytree(round_dir / "report", report_before)

    scores = pd.read_parquet(round_dir / "scores.parquet")
    plan, added, filled = _fill(xlsx, scores, emd)
    first = run_captured(config_file, "outcomes", "import", str(filled))
    sha_first = sha256_file(round_outcomes_file(config, ROUND))
    second = run_captured(config_file, "outcomes", "import", str(filled))
    sha_second = sha256_file(round_outcomes_file(config, ROUND))
    listed = scores[(scores["emd_code"] == emd) & (scores["tier"] == "phone")]
    phoned = {k for k, a in plan.items() if a == "phone_unreachable"}
    phones = [k for k in listed.sort_values("list_rank")["household_key"] if k not in phoned]
    calls, calls_file = _fill_calls(round_dir, sigungu, phones[:3])
    calls_import = run_captured(config_file, "outcomes", "import-calls", str(calls_file))
    calls_reimport = run_captured(config_file, "outcomes", "import-calls", str(calls_file))

    code, _, err = run_captured(config_file, "report", "--as-of", ROUND)
    assert code == 0, err

    next_file = _config_with_window_end(config, work, "2026-11")
    code, _out, err = run_captured(next_file, "score", "--as-of", NEXT)
    assert code == 0, err
    code, _, err = run_captured(next_file, "report", "--as-of", NEXT)
    assert code == 0, err
    return Loop(
        config=config,
        config_file=config_file,
        next_config_file=next_file,
        sigungu=sigungu,
        emd=emd,
        plan=plan,
        added_key=added,
        first_import=first,
        second_import=second,
        outcomes_sha_after_first=sha_first,
        outcomes_sha_after_second=sha_second,
        report_before=report_before,
        report_after=round_dir / "report",
        next_round=OutputLayout(config.paths.output_root).round(NEXT),
        calls=calls,
        calls_import=calls_import,
        calls_reimport=calls_reimport,
    )


def test_the_filled_list_is_imported_and_a_second_import_changes_nothing(loop):
    code, out, err = loop.first_import
    assert code == 0, err
    assert "0 rejected" in out, out
    stored = read_round_outcomes(loop.config, ROUND).set_index("household_key")
    for key, answer in loop.plan.items():
        if answer == "skip_safety":
            assert stored.loc[key, "override_code"] == "skip_safety"
            assert pd.isna(stored.loc[key, "outcome_code"])
        elif answer == "phone_unreachable":
            assert stored.loc[key, "outcome_code"] == "unreachable"
        else:
            assert stored.loc[key, "outcome_code"] == answer, key
    assert stored.loc[loop.added_key, "added_by_caseworker"]
    assert stored.loc[loop.added_key, "override_code"] == "add_referral"
    assert str(stored.loc[next(iter(loop.plan)), "contact_date"]) == "2026-10-14"
    code, out, err = loop.second_import
    assert code == 0, err
    assert "nothing new" in out, out
    assert loop.outcomes_sha_after_first == loop.outcomes_sha_after_second


def test_the_call_results_come_back_through_the_same_path(loop):
    code, out, err = loop.calls_import
    assert code == 0, err + out
    stored = read_round_calls(loop.config, ROUND).set_index("household_key")
    assert stored["call_result"].to_dict() == loop.calls
    code, out, err = loop.calls_reimport
    assert code == 0, err + out
    assert "nothing new" in out, out


def _page_text(path: Path) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", path.read_text(encoding="utf-8")))


def test_the_emd_page_shows_each_case_after_the_import(loop):
    before = _page_text(loop.report_before / "emd" / f"{loop.emd}.html")
    assert "아직 반환된 결과가 없습니다" in before
    after_html = (loop.report_after / "emd" / f"{loop.emd}.html").read_text(encoding="utf-8")
    table = after_html[after_html.index('id="households"') :]
    rows = {}
    for row in table.split("<tr")[2:]:  # the header row first
        key = re.search(r'<td class="key"><code>([^<]+)</code>', row)
        status = re.search(r'<td class="status">([^<]+)', row)
        rows[key.group(1)] = status.group(1)
    expected = {
        "public_support": "linked",
        "unreachable": "not_reached",
        "in_progress": "in_progress",
        "skip_safety": "skipped",
        "closed_no_need": "visited",
        "declined": "visited",
        "phone_unreachable": "not_reached",
    }
    for key, answer in loop.plan.items():
        assert rows[key].strip() == STATUS_KO[expected[answer]], key
    call_status = {"needs_visit": "in_progress", "not_reached": "not_reached", "reached": "visited"}
    for key, result in loop.calls.items():
        assert rows[key].strip() == STATUS_KO[call_status[result]], key
    unanswered = [k for k in rows if k not in loop.plan and k not in loop.calls]
    assert unanswered and all(rows[k].strip() == STATUS_KO["not_returned"] for k in unanswered)
    after = _page_text(loop.report_after / "emd" / f"{loop.emd}.html")
    assert "담당자가 추가한 가구" in after and loop.added_key in after
    # not returned; in progress, two not reached (visits); a call needing a visit, one not reached
    pending = len(unanswered) + 3 + 2
    assert re.search(rf"미결 {pending} ?가구", after), after[:2000]


def test_the_followup_page_and_csv_give_the_ministrys_table_and_the_overrides(loop):
    page = (loop.report_after / "followup.html").read_text(encoding="utf-8")
    assert page.index('id="ministry"') < page.index('id="overrides"') < page.index('id="precision"')
    text = (loop.report_after / "ministry_table.csv").read_text(encoding="utf-8-sig")
    rows = list(csv.DictReader(io.StringIO(text)))
    head = list(rows[0])
    wanted = ("발굴 가구(목록+추가)", "접촉 가구", "공공 지원 연계", "민간 지원 연계", "미지원")
    assert set(wanted) <= set(head)
    assert any(h.startswith("미지원: ") for h in head)  # no support, by reason
    emd = [r for r in rows if r.get("읍면동 코드") == loop.emd]
    assert len(emd) == 1
    # small counts of the 읍면동 are withheld, not shown as "<5"
    assert "<5" not in text and "x" in emd[0].values()
    listed = int(emd[0]["목록 가구"])  # published: the overview shows it too
    scores = pd.read_parquet(loop.report_after.parent / "scores.parquet")
    mine = scores[(scores["emd_code"] == loop.emd) & scores["tier"].isin(["visit", "phone"])]
    assert listed == len(mine)
    overrides = _page_text(loop.report_after / "followup.html")
    assert OVERRIDE_KO["skip_safety"] in overrides and OVERRIDE_KO["add_referral"] in overrides


def test_nothing_about_a_household_leaves_its_own_emd_files(loop):
    folder = loop.report_after
    own = set(loop.plan) | {loop.added_key}
    for page in (folder / "emd").glob("*.html"):
        if page.stem == loop.emd:
            continue
        text = page.read_text(encoding="utf-8")
        assert not any(key in text for key in own), page
    for page in ("index.html", "followup.html"):
        text = (folder / page).read_text(encoding="utf-8")
        assert not any(key in text for key in own), page
    root = Path(loop.config.paths.output_root)
    for path in root.rglob("*"):
        if path.is_file() and path.suffix in {".parquet", ".json", ".jsonl", ".csv", ".html"}:
            data = path.read_bytes()
            for secret in ("박영수", "010-2345-6789"):
                assert secret.encode("utf-8") not in data, path


def test_the_next_round_carries_the_open_cases_and_escalates_the_phone_one(loop):
    scores = pd.read_parquet(loop.next_round / "scores.parquet").set_index("household_key")
    carried = scores[scores["selection_reason"] == "carried_over"]
    open_cases = {k for k, a in loop.plan.items() if a in ("unreachable", "in_progress")}
    open_cases |= {k for k, r in loop.calls.items() if r == "needs_visit"}
    escalated = {k for k, a in loop.plan.items() if a == "phone_unreachable"}
    (not_reached,) = [k for k, r in loop.calls.items() if r == "not_reached"]
    (reached,) = [k for k, r in loop.calls.items() if r == "reached"]
    assert open_cases | escalated <= set(carried.index)
    resolved = {k for k, a in loop.plan.items() if a not in ("unreachable", "in_progress")}
    assert not (resolved - escalated) & set(carried.index)
    for key in open_cases | escalated:
        assert carried.loc[key, "tier"] == "visit", key
        assert carried.loc[key, "carried_rounds"] == 1
    (phone_key,) = escalated
    assert carried.loc[phone_key, "case_history"] == (
        f"{ROUND} 전화 확인: {OUTCOME_KO['unreachable']} → 방문 전환"
    )
    # the call service did not reach one: a visit now (escalate_phone_after 1); one was reached
    assert carried.loc[not_reached, "tier"] == "visit"
    assert carried.loc[not_reached, "case_history"].endswith("미연결 → 방문 전환")
    assert reached not in carried.index
    manifest = (loop.next_round / "manifest.json").read_text(encoding="utf-8")
    assert f'"from_round": "{ROUND}"' in manifest
    # the list the office receives shows them, with their history
    text = (loop.next_round / "lists" / loop.sigungu / f"emd_{loop.emd}.csv").read_text(
        encoding="utf-8-sig"
    )
    rows = list(csv.DictReader(io.StringIO(text)))
    by_key = {r["가구 관리번호"]: r for r in rows}
    for key in open_cases | escalated:
        assert by_key[key]["선정 사유"] == "지난 회차 이월"
        assert by_key[key]["지난 회차 이력"].startswith(ROUND)
    page = _page_text(loop.next_round / "report" / "emd" / f"{loop.emd}.html")
    assert "→ 방문 전환" in page


@pytest.fixture(scope="module")
def browser():
    yield from launched_chromium()


def test_pages_in_headless_chromium_before_and_after_the_import(loop, browser, tmp_path):
    shots = Path(os.environ.get(SCREENSHOTS_ENV) or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    requests: list[str] = []

    def open_page(path: Path):
        page = browser.new_page(viewport={"width": 1400, "height": 900}, locale="ko-KR")
        page.on("request", lambda request: requests.append(request.url))
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(path.as_uri())
        page.wait_for_load_state("load")
        return page, errors

    def shot(page, name: str) -> None:
        from PIL import Image

        path = shots / name
        screenshot(page, path)  # the window: what a person sees first
        with Image.open(path) as image:
            small = image.convert("RGB").quantize(256)
        small.save(path, optimize=True)

    page, errors = open_page(loop.report_before / "emd" / f"{loop.emd}.html")
    shot(page, "outcomes_emd_before.png")
    assert "아직 반환된 결과가 없습니다" in page.inner_text("#cases-summary")
    assert not errors, errors
    page.close()

    page, errors = open_page(loop.report_after / "emd" / f"{loop.emd}.html")
    shot(page, "outcomes_emd_after.png")
    total = page.locator("#households tbody tr").count()
    page.select_option("#status-filter", "pending")
    pending = page.locator("#households tbody tr:not([hidden])").count()
    assert 0 < pending < total
    page.select_option("#status-filter", "skipped")
    assert page.locator("#households tbody tr:not([hidden])").count() == 1
    page.select_option("#status-filter", "")
    assert page.locator("#households tbody tr:not([hidden])").count() == total
    assert not errors, errors
    page.close()

    page, errors = open_page(loop.report_after / "followup.html")
    shot(page, "outcomes_followup.png")
    assert not errors, errors
    page.close()
    assert all(url.startswith("file://") for url in requests), requests
