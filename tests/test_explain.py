"""``outreach explain KEY --round YYYY-MM``: one household's explanation, HTML and an A4 PDF.

On a copy of the scored sample (``scored_sample``): the listed household with the most reasons
(the longest page the round can produce), a household scored but not listed, a household the
round does not know. The PDF is printed by Debian's Chromium and read back with ``pdfinfo``.
"""

from __future__ import annotations

import html
import re
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from _cli_helpers import run_captured
from conftest import copy_outputs

from pipeline.catalogues import load_catalogues
from pipeline.datasets.rounds import EXPLANATIONS, SCORES, explanation_paths
from pipeline.explain.facts import used_data
from pipeline.explain.pdf import CHROMIUM
from pipeline.months import parse_month
from pipeline.textsafe import from_spreadsheet_cell
from pipeline.vocabulary import KEY, PHONE, TIER_TEXT, VISIT, risk_band_text

REASONS = [f"reason_{i}_text" for i in (1, 2, 3)]
KEY_PATTERN = re.compile(r"H\d{10}")


@pytest.fixture(scope="module")
def sample(scored_sample, tmp_path_factory):
    """A private copy of the scored sample (explain writes into the round folder)."""
    return copy_outputs(scored_sample, tmp_path_factory.mktemp("explain"))


@pytest.fixture(scope="module")
def scores(sample) -> pd.DataFrame:
    return pd.read_parquet(sample.round_dir / SCORES)


@pytest.fixture(scope="module")
def longest(scores) -> pd.Series:
    """The listed household with the most reasons, the longest reason text among them."""
    listed = scores[scores["tier"].isin([VISIT, PHONE])]
    texts = listed[REASONS].fillna("")
    count = (texts != "").sum(axis=1)
    length = texts.apply(lambda r: sum(len(t) for t in r), axis=1)
    order = pd.DataFrame({"count": count, "length": length}).sort_values(
        ["count", "length"], ascending=False, kind="stable"
    )
    return listed.loc[order.index[0]]


@pytest.fixture(scope="module")
def explained(sample, longest):
    """``outreach explain`` of the longest listed household, with its PDF (where Chromium is)."""
    no_pdf = () if CHROMIUM.is_file() else ("--no-pdf",)
    code, out, err = run_captured(
        sample.config_file, "explain", longest[KEY], "--round", sample.as_of, *no_pdf
    )
    assert code == 0, err
    html_path, pdf_path = explanation_paths(sample.round_dir, longest[KEY])
    return out, html_path, pdf_path


def _text(page: str) -> str:
    """The page's text as a reader sees it (tags removed, entities decoded)."""
    return html.unescape(re.sub(r"<[^>]+>", "", page))


def _agencies(page: str) -> set[str]:
    block = re.search(r'<ul class="agencies">(.*?)</ul>', page, re.S)
    return set(re.findall(r"<strong>(.*?)</strong>", block.group(1))) if block else set()


def _signal_agencies(config, sigungu: str, key: str, as_of: int) -> set[str]:
    """The source agencies of the household's signals the round's features can see (reported
    before the round, within the feature spec's history), from the staged events."""
    cap = load_catalogues(config).features.months_since_cap
    path = (
        Path(config.paths.output_root)
        / "staged"
        / "crisis_events"
        / f"sigungu={sigungu}"
        / "part-0.parquet"
    )
    events = pd.read_parquet(path, columns=["household_key", "reported_month", "source_agency"])
    mine = events[events["household_key"].astype(str) == key]
    seen = mine[(mine["reported_month"] < as_of) & (as_of - mine["reported_month"] < cap)]
    return set(seen["source_agency"].astype(str))


def test_listed_household_gets_its_own_reasons_band_and_agencies(sample, longest, explained):
    out, html_path, pdf_path = explained
    key = str(longest[KEY])
    assert str(html_path) in out
    if CHROMIUM.is_file():  # the HTML prints as its PDF did
        assert str(pdf_path) in out
        density = re.search(r"A4, one page, (\w+)\)", out)[1]
        assert f'data-density="{density}"' in html_path.read_text(encoding="utf-8")
    assert html_path.parent.name == EXPLANATIONS and html_path.parent.parent == sample.round_dir
    page = html_path.read_text(encoding="utf-8")
    text = _text(page)
    # its reasons, exactly as the round recorded them: in scores.parquet and on its list
    reasons = [str(longest[c]) for c in REASONS if pd.notna(longest[c])]
    assert len(reasons) == 3
    listed = pd.read_csv(
        sample.round_dir
        / "lists"
        / str(longest["sigungu_code"])
        / f"emd_{longest['emd_code']}.csv",
        dtype=str,
        encoding="utf-8-sig",
    )
    row = listed[listed["가구 관리번호"].map(from_spreadsheet_cell) == key].iloc[0]
    assert [from_spreadsheet_cell(row[f"사유 {i}"]) for i in (1, 2, 3)] == reasons
    items = re.findall(
        r"<li>(.*?)</li>", re.search(r'<ol class="reasons">(.*?)</ol>', page, re.S)[1]
    )
    assert [html.unescape(i) for i in items] == reasons
    # the tier and the band (pipeline.vocabulary)
    assert TIER_TEXT["ko"][str(longest["tier"])] in text
    assert f"위험 구간 {risk_band_text(float(longest['score']), 'ko')}" in text
    # the agencies of the signals the round's features saw, and no other
    as_of = parse_month(sample.as_of)
    expected = _signal_agencies(sample.config, str(longest["sigungu_code"]), key, as_of)
    assert expected and _agencies(page) == expected
    # the household facts' register, the human decision, the way to object
    assert "주민등록" in text and "행정안전부" in text
    assert (
        "담당 공무원이 직접 확인하고 판단" in text
        and "자동으로 결정되거나 거절되는 일은 없" in text
    )
    assert "행정복지센터에 말씀해 주세요" in text and "다음 분석부터" in text
    # no other household, no identifier, nothing to fetch
    assert set(KEY_PATTERN.findall(text)) == {key}
    assert not re.search(r"\d{6}\s*-\s*[1-4]\d{6}", text)
    assert not re.search(r"https?://|//[a-z]|url\(|<link|<script| src=", page)


def test_scored_but_not_listed_household_is_told_so(sample, scores):
    monitor = scores[scores["tier"] == "monitor"].iloc[0]
    key = str(monitor[KEY])
    code, out, err = run_captured(
        sample.config_file, "explain", key, "--round", sample.as_of, "--no-pdf"
    )
    assert code == 0, err
    assert "scored, not listed" in out
    html_path, pdf_path = explanation_paths(sample.round_dir, key)
    assert not pdf_path.exists()
    page = html_path.read_text(encoding="utf-8")
    text = _text(page)
    assert "목록에 오르지 않았습니다" in text and "선정 사유가 없습니다" in text
    assert '<ol class="reasons">' not in page
    assert f"위험 구간 {risk_band_text(float(monitor['score']), 'ko')}" in text
    for tier_text in TIER_TEXT["ko"].values():
        assert f"<strong>{tier_text}</strong>" not in page
    as_of = parse_month(sample.as_of)
    assert _agencies(page) == _signal_agencies(
        sample.config, str(monitor["sigungu_code"]), key, as_of
    )
    assert set(KEY_PATTERN.findall(text)) == {key}


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("H9999999999", "household H9999999999 was not scored in round"),
        ("../../manifest", "is not a household key"),
    ],
)
def test_unknown_household_is_refused_and_nothing_written(sample, key, expected):
    folder = sample.round_dir / EXPLANATIONS
    before = sorted(folder.rglob("*")) if folder.exists() else []
    code, out, err = run_captured(sample.config_file, "explain", key, "--round", sample.as_of)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0]
    if "not scored" in expected:
        assert sample.as_of in lines[0]
    after = sorted(folder.rglob("*")) if folder.exists() else []
    assert after == before and out == ""


def test_a_round_not_scored_here_is_refused(sample, scores):
    code, out, err = run_captured(
        sample.config_file, "explain", str(scores.iloc[0][KEY]), "--round", "2026-08"
    )
    assert code == 2 and out == ""
    assert "round 2026-08 is not scored here" in err and len(err.strip().splitlines()) == 1
    assert not (Path(sample.config.paths.output_root) / "rounds" / "2026-08").exists()


def test_without_chromium_the_html_is_written_and_the_command_fails(sample, scores, tmp_path):
    key = str(scores[scores["tier"] == VISIT].iloc[-1][KEY])
    code, _, err = run_captured(
        sample.config_file, "explain", key, "--browser", str(tmp_path / "no-chromium")
    )
    assert code == 2
    assert "the PDF needs Chromium" in err and "--no-pdf" in err
    html_path, pdf_path = explanation_paths(sample.round_dir, key)
    assert html_path.is_file() and str(html_path) in err
    assert not pdf_path.exists()


def test_a_changed_or_destroyed_scores_file_is_refused(scored_sample, scores, tmp_path):
    sample = copy_outputs(scored_sample, tmp_path)
    path = sample.round_dir / SCORES
    changed = scores.copy()
    changed.loc[changed.index[0], "score"] = 0.999
    changed.to_parquet(path, index=False)
    code, _, err = run_captured(sample.config_file, "explain", str(scores.iloc[0][KEY]))
    assert code == 1
    assert "changed since the round was scored" in err and str(path) in err
    assert not (sample.round_dir / EXPLANATIONS).exists()
    path.unlink()  # as retention leaves a round past its period: the manifest, no scores
    code, _, err = run_captured(sample.config_file, "explain", str(scores.iloc[0][KEY]))
    assert code == 1 and "is no longer here" in err
    assert not (sample.round_dir / EXPLANATIONS).exists()


def test_the_audit_leaves_explanations_out_of_the_round_files(sample, explained):
    from pipeline.audit.readers import round_files

    assert explained[1].is_file()
    assert not any(name.startswith(f"{EXPLANATIONS}/") for name in round_files(sample.round_dir))


def test_used_data_counts_only_what_the_household_has():
    dictionary = pd.DataFrame(
        [
            ("power_cut__count_12m", "indicator", "count", "power_cut", "단전: 건수"),
            ("power_cut__months_since_last", "indicator", "months_since_last", "power_cut", ""),
            ("gas_cut__count_12m", "indicator", "count", "gas_cut", ""),
            ("gas_cut__months_since_last", "indicator", "months_since_last", "gas_cut", ""),
            ("gas_cut__trend_3m", "indicator", "trend", "gas_cut", ""),
            ("water_cut__months_since_last", "indicator", "months_since_last", "water_cut", ""),
            (
                "hh__income_band",
                "household",
                "attribute",
                "",
                "소득 구간(기준중위소득 대비, 0=30%)",
            ),
            ("hh__size", "household", "attribute", "", "가구원 수"),
            ("history__times_listed", "history", "history", "", "이전 선정 횟수"),
            ("context__emd_past_need_rate", "context", "context", "", "읍면동 비율"),
            ("audit__head_sex", "household", "attribute", "", "가구주 성별"),
        ],
        columns=["name", "kind", "aggregation", "source_indicators", "description_ko"],
    )
    row = {
        "power_cut__count_12m": 0.0,
        "power_cut__months_since_last": 36.0,  # the cap: never reported
        "gas_cut__count_12m": 0.0,
        "gas_cut__months_since_last": 36.0,
        "gas_cut__trend_3m": -1.0,  # a difference of counts names no report
        "water_cut__months_since_last": 20.0,  # reported 20 months ago
        "hh__income_band": 1,
        "hh__size": None,
        "history__times_listed": 0,
        "context__emd_past_need_rate": 0.4,
        "audit__head_sex": "F",
    }
    inputs = set(dictionary["name"]) - {"context__emd_past_need_rate"}
    used = used_data(row, dictionary, inputs | {"audit__head_sex"}, months_cap=36)
    assert used.indicators == ("water_cut",)
    assert used.household == ("소득 구간",)  # present values only; never an audit column
    assert not used.history and not used.area  # never listed; context not a model input


@pytest.mark.skipif(not CHROMIUM.is_file(), reason=f"{CHROMIUM} not installed")
@pytest.mark.skipif(
    shutil.which("pdfinfo") is None or shutil.which("pdftotext") is None,
    reason="pdfinfo, pdftotext (poppler-utils) missing",
)
def test_the_longest_explanation_prints_on_exactly_one_a4_page(explained, longest):
    _, _, pdf_path = explained
    info = subprocess.run(
        ["pdfinfo", str(pdf_path)], capture_output=True, text=True, check=True
    ).stdout
    fields = dict(line.split(":", 1) for line in info.splitlines() if ":" in line)
    assert int(fields["Pages"]) == 1
    width, height = (float(v) for v in re.findall(r"[\d.]+", fields["Page size"])[:2])
    assert abs(width - 595.28) < 1.5 and abs(height - 841.89) < 1.5  # A4 in points
    text = subprocess.run(
        ["pdftotext", "-layout", str(pdf_path), "-"], capture_output=True, text=True, check=True
    ).stdout
    assert set(KEY_PATTERN.findall(text)) == {str(longest[KEY])}  # its text, its key only
