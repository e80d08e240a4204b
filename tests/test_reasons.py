"""Reasons a caseworker can check and a score staff can read (issue 17, items 1 and 2).

Unit tests on small hand-made frames; the end-to-end tests read the session's scored sample
(``scored_sample``) and the staged crisis events it was scored from.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.audit.checks_files import list_row_problems, shown_in_lists
from pipeline.months import format_month, parse_month
from pipeline.report.pages import household_rows
from pipeline.score.lists import list_frame
from pipeline.score.reasons import AREA_UNITS, explain, latest_signals, reason_units
from pipeline.vocabulary import (
    HOUSEHOLD_SOURCE,
    LIST_COLUMNS,
    RISK_BAND_LEGEND,
    RISK_BANDS,
    risk_band,
    risk_band_text,
    risk_percent,
)

pytestmark = pytest.mark.filterwarnings(
    "ignore::UserWarning", "ignore::FutureWarning", "ignore::DeprecationWarning"
)

AS_OF = parse_month("2026-10")
FEATURES = [
    "health_ins_arrears__count_3m",
    "power_cut__count_1m",
    "public_rent_arrears__count_3m",
    "group_arrears__count_3m",
    "distinct_types__3m",
    "hh__income_band",
    "hh__urban",
    "history__times_listed",
    "context__emd_signal_rate_3m",
]
# Words of the area-level facts that were shown as household reasons before.
AREA_WORDS = ("읍면동 위기정보 보고 가구 비율", "동 지역 거주", "읍·면 지역 거주", "관련 위험")


def _events(rows: list[tuple[str, str, str, float]]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "household_key": [r[0] for r in rows],
            "indicator_code": [r[1] for r in rows],
            "reported_month": [parse_month(r[2]) for r in rows],
            "value": [r[3] for r in rows],
        }
    )


def _explain(contrib, rows, events, catalogue, outcome_catalogue, **kw):
    units = reason_units(FEATURES, catalogue)
    signals = latest_signals(events, AS_OF, 12)
    return explain(
        np.asarray(contrib, dtype=float),
        rows,
        signals,
        units,
        catalogue,
        outcome_catalogue,
        k=3,
        window=12,
        language=kw.get("language", "ko"),
        as_of=AS_OF,
        household_month=parse_month("2026-09"),
    )


@pytest.fixture()
def one_household():
    rows = pd.DataFrame(
        {
            "household_key": ["H1"],
            "distinct_types__3m": [3],
            "hh__income_band": [0],
            "hh__urban": [1],
            "history__times_listed": [2],
            "history__months_since_listed": [4],
            "history__last_outcome": ["public_support"],
            "context__emd_signal_rate_3m": [0.782],
        }
    )
    events = _events(
        [
            ("H1", "health_ins_arrears", "2026-07", 5),
            ("H1", "health_ins_arrears", "2026-09", 6),
            ("H1", "power_cut", "2026-08", 1),
            ("H1", "public_rent_arrears", "2026-07", 3),
            ("H1", "public_rent_arrears", "2026-11", 4),  # reported after the round: unknown
        ]
    )
    return rows, events


def test_several_signals_at_once_names_each_signal_with_value_agency_and_month(
    one_household, catalogue, outcome_catalogue
):
    rows, events = one_household
    # multi first, then health arrears (already named by it), then the income band.
    contrib = [[0.5, 0.0, 0.0, 0.0, 0.9, 0.3, 0.0, 0.0, 0.0]]
    out = _explain(contrib, rows, events, catalogue, outcome_catalogue)
    by = catalogue.by_code()
    text = out.loc[0, "reason_1_text"]
    assert out.loc[0, "reason_1"] == "multi"
    assert text.startswith("최근 3개월 위기정보 3종 동시 발생: ")
    # the most recent first, each with its value, agency and reported month
    assert text.split(": ", 1)[1].split("; ") == [
        f"{by['health_ins_arrears'].name_ko} 6개월 ({by['health_ins_arrears'].agency_ko}, "
        "2026-09 보고)",
        f"{by['power_cut'].name_ko} 발생 ({by['power_cut'].agency_ko}, 2026-08 보고)",
        f"{by['public_rent_arrears'].name_ko} 3개월 ({by['public_rent_arrears'].agency_ko}, "
        "2026-07 보고)",
    ]
    # the health arrears it lists is not repeated as a reason of its own
    assert "ind:health_ins_arrears" not in set(out.loc[0, ["reason_2", "reason_3"]])
    assert out.loc[0, "reason_2"] == "hh:income_band"


def test_income_band_names_its_source_and_month_and_history_its_last_round(
    one_household, catalogue, outcome_catalogue
):
    rows, events = one_household
    contrib = [[0.0, 0.0, 0.0, 0.0, 0.0, 0.6, 0.0, 0.4, 0.0]]
    out = _explain(contrib, rows, events, catalogue, outcome_catalogue)
    source = HOUSEHOLD_SOURCE["ko"]
    assert out.loc[0, "reason_1_text"] == (
        f"소득 구간: 기준중위소득 30% 미만 ({source}, 2026-09 기준)"
    )
    assert out.loc[0, "reason_2"] == "history"
    assert "2026-06 회차" in out.loc[0, "reason_2_text"]  # 4 months before the round
    en = _explain(contrib, rows, events, catalogue, outcome_catalogue, language="en")
    assert en.loc[0, "reason_1_text"].endswith(f"({HOUSEHOLD_SOURCE['en']}, as of 2026-09)")


def test_area_facts_and_groups_are_never_a_households_reason(
    one_household, catalogue, outcome_catalogue
):
    rows, events = one_household
    # The area (context, 동) and the arrears group raise the score most: still no reason.
    contrib = [[0.0, 0.1, 0.0, 5.0, 0.0, 0.0, 3.0, 0.0, 4.0]]
    rows = rows.assign(distinct_types__3m=[0])
    events = events[events["indicator_code"] == "power_cut"]
    out = _explain(contrib, rows, events, catalogue, outcome_catalogue)
    units = set(out.loc[0, ["reason_1", "reason_2", "reason_3"]].dropna())
    assert units == {"ind:power_cut"}
    texts = " ".join(out.loc[0, ["reason_1_text"]])
    assert not any(word in texts for word in AREA_WORDS)
    assert set(AREA_UNITS) == {"context", "hh:urban"}


# --- the score: whole percent and its band, defined once --------------------------------------


@pytest.mark.parametrize(
    ("score", "percent", "band"),
    [
        (0.0, 0, 1),
        (0.0949, 9, 1),
        (0.095, 10, 2),
        (0.5234, 52, 6),
        (0.5951, 60, 7),
        (0.6962, 70, 8),
        (0.899, 90, 10),
        (0.996, 100, 10),
        (1.0, 100, 10),
    ],
)
def test_risk_is_a_whole_percent_and_its_band_the_tens_of_it(score, percent, band):
    assert risk_percent(score) == percent
    assert risk_band(score) == band
    assert risk_band_text(score, "ko").startswith(f"{band} · ")


def test_the_band_table_in_the_docs_is_the_one_the_code_defines(repo_root):
    """docs/scoring.md lists every band with its range and phrase: each row is what
    ``risk_band_text`` gives at both ends of the range."""
    text = (repo_root / "docs" / "scoring.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| (\d+) \| (\d+)–(\d+)% \| (.+?) \|", text, flags=re.M)
    assert [int(r[0]) for r in rows] == list(range(1, RISK_BANDS + 1))
    for band, low, high, phrase in rows:
        for percent in (int(low), int(high)):
            assert risk_band(percent / 100) == int(band)
            assert risk_band_text(percent / 100, "ko") == f"{band} · {phrase}"
    assert "50~59%는 6" in RISK_BAND_LEGEND["ko"]


def test_lists_audit_and_pages_show_the_same_whole_percent_and_band(outcome_catalogue):
    scores = pd.DataFrame(
        {
            "household_key": ["H1", "H2"],
            "sigungu_code": ["1111000000"] * 2,
            "emd_code": ["1111051000"] * 2,
            "score": [0.69624, 0.5951],
            "model_rank": [1, 2],
            "tier": ["visit", "phone"],
            "list_rank": [1, 2],
            "selection_reason": ["model_score", "random_exploration"],
            "selection_probability": [1.0, 0.1234],
            "reason_1_text": ["a", "b"],
        }
    )
    frame = list_frame(scores, "2026-10", {}, outcome_catalogue, "ko")
    assert frame["risk_percent"].tolist() == ["70", "60"]
    assert frame["risk_band"].tolist() == ["8 · 10가구 중 약 7가구", "7 · 10가구 중 약 6가구"]
    assert [c.key for c in LIST_COLUMNS].index("risk_band") == [c.key for c in LIST_COLUMNS].index(
        "risk_percent"
    ) + 1
    shown = shown_in_lists(scores, "2026-10")
    assert shown["risk_percent"].tolist() == ["70", "60"]
    assert shown["risk_band"].tolist() == ["8", "7"]
    rows = household_rows(scores, {}, 1)
    assert [r.score_text for r in rows] == ["70", "60"]
    assert [r.band_text for r in rows] == frame["risk_band"].tolist()
    assert [r.probability_text for r in rows] == ["100%", "12%"]  # not "100.0%"


# --- the audit's comparison of list rows ----------------------------------------------------


def _rows_of(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.astype(str)


def test_the_audit_accepts_the_list_as_written_and_refuses_an_edited_risk_or_band(
    outcome_catalogue,
):
    scores = pd.DataFrame(
        {
            "household_key": ["H1"],
            "sigungu_code": ["1111000000"],
            "emd_code": ["1111051000"],
            "score": [0.69624],
            "model_rank": [1],
            "tier": ["visit"],
            "list_rank": [1],
            "selection_reason": ["model_score"],
            "selection_probability": [1.0],
            "reason_1_text": ["a"],
        }
    )
    names = {r.code: {r.name_ko, r.name_en, r.code} for r in outcome_catalogue.selection_reasons}
    written = _rows_of(list_frame(scores, "2026-10", {}, outcome_catalogue, "ko"))
    path = "lists/1111000000/emd_1111051000.csv"

    def problems(**change: str) -> list[str]:
        return list_row_problems({path: written.assign(**change)}, scores, "2026-10", names)

    assert problems() == []
    assert problems(risk_percent="70.0") == []  # as the audit reads an XLSX number cell
    assert problems(risk_percent="69.6") == []  # a list written before: one decimal
    assert any("risk_percent" in p for p in problems(risk_percent="71"))
    assert any("risk_percent" in p for p in problems(risk_percent="69.5"))
    assert any("risk_band" in p for p in problems(risk_band="9 · 10가구 중 9가구 이상"))


# --- the scored sample ------------------------------------------------------------------------


def _list_rows(round_dir: Path) -> pd.DataFrame:
    frames = []
    for path in sorted(round_dir.glob("lists/*/emd_*.csv")):
        rows = list(csv.reader(path.read_bytes().decode("utf-8-sig").splitlines()))
        frames.append(pd.DataFrame(rows[1:], columns=[c.key for c in LIST_COLUMNS]))
    return pd.concat(frames, ignore_index=True)


@pytest.fixture(scope="module")
def sample(scored_sample):
    return read_sample(scored_sample)


def read_sample(scored_sample):
    """The scored sample's listed rows, their staged crisis events and distinct-type counts."""
    config = scored_sample.config
    scores = pd.read_parquet(scored_sample.round_dir / "scores.parquet")
    listed = scores[scores["tier"] != "monitor"].reset_index(drop=True)
    staged = config.paths.output_root / "staged" / "crisis_events"
    events = pd.read_parquet(
        staged, columns=["household_key", "indicator_code", "reported_month", "value"]
    )
    events = events[events["household_key"].astype(str).isin(set(listed["household_key"]))]
    features = pd.concat(
        pd.read_parquet(p, columns=["household_key", "distinct_types__3m", "distinct_types__12m"])
        for p in sorted(
            (config.paths.output_root / "features" / f"as_of={scored_sample.as_of}").glob(
                "features/*/*.parquet"
            )
        )
    )
    return scored_sample, listed, events, features


def test_every_sample_reason_names_the_households_own_signal_agency_and_month(sample, catalogue):
    scored, listed, events, _ = sample
    as_of = parse_month(scored.as_of)
    by_name = {i.name_ko: i for i in catalogue.indicators}
    known = events[events["reported_month"].astype(int) < as_of]
    reported = {
        (str(k), str(c), format_month(int(m)))
        for k, c, m in zip(
            known["household_key"], known["indicator_code"], known["reported_month"], strict=True
        )
    }
    evidence = re.compile(r"^(.*) \((.+?), (\d{4}-\d{2}) 보고(?:, 최근 \d+개월 \d+회)?\)$")
    checked = 0
    for row in listed.itertuples(index=False):
        for i in (1, 2, 3):
            unit, text = getattr(row, f"reason_{i}"), getattr(row, f"reason_{i}_text")
            if pd.isna(unit):
                continue
            if not (unit.startswith("ind:") or unit == "multi"):
                continue
            parts = text.split(": ", 1)[1].split("; ") if unit == "multi" else [text]
            for part in parts:
                name_value, agency, month = evidence.match(part).groups()
                name = max((n for n in by_name if name_value.startswith(n)), key=len)
                assert by_name[name].agency_ko == agency, part
                assert (row.household_key, by_name[name].code, month) in reported, part
                if unit.startswith("ind:"):
                    assert unit == f"ind:{by_name[name].code}", part
                checked += 1
    assert checked > len(listed)


def test_several_signals_reasons_list_as_many_signals_as_the_model_counted(sample):
    _, listed, _, features = sample
    merged = listed.merge(features, on="household_key")
    seen = 0
    for row in merged.itertuples(index=False):
        for i in (1, 2, 3):
            if getattr(row, f"reason_{i}") != "multi":
                continue
            text = getattr(row, f"reason_{i}_text")
            n = int(re.search(r"위기정보 (\d+)종", text).group(1))
            counted = row.distinct_types__3m if "최근 3개월" in text else row.distinct_types__12m
            assert n == len(text.split(": ", 1)[1].split("; ")) == counted, text
            seen += 1
    assert seen > 0


def test_sample_lists_have_at_most_three_reasons_no_area_fact_and_whole_percents(sample):
    scored, listed, _, _ = sample
    units = pd.concat([listed[f"reason_{i}"] for i in (1, 2, 3)]).dropna()
    assert not units.isin(AREA_UNITS).any()
    assert not units.str.startswith("grp:").any()
    assert "reason_4" not in listed.columns
    rows = _list_rows(scored.round_dir)
    assert len(rows) == len(listed)
    reasons = rows[["reason_1", "reason_2", "reason_3"]].to_numpy().ravel()
    assert not any(word in str(t) for t in reasons for word in AREA_WORDS)
    assert rows["risk_percent"].str.fullmatch(r"\d{1,3}").all()
    by_key = listed.set_index("household_key")["score"]
    assert (
        rows["risk_band"] == [risk_band_text(by_key[k], "ko") for k in rows["household_key"]]
    ).all()
    # household facts carry their source and month
    household = [t for t in reasons if str(t).startswith("소득 구간")]
    assert household and all(HOUSEHOLD_SOURCE["ko"] in t and "기준)" in t for t in household)
    # no direct identifier: no resident-number-like or phone-like text in any list cell
    cells = " ".join(rows.to_numpy().ravel().astype(str))
    assert not re.search(r"\d{6}-[1-4]\d{6}|01\d-\d{3,4}-\d{4}", cells)


def test_a_district_page_explains_the_band_and_shows_area_facts_apart(outcome_catalogue):
    from pipeline.report.render import EmdPage, environment, render_emd_page

    scores = pd.DataFrame(
        {
            "household_key": ["H1"],
            "emd_code": ["1111051000"],
            "score": [0.52],
            "model_rank": [1],
            "tier": ["visit"],
            "list_rank": [1],
            "selection_reason": ["model_score"],
            "selection_probability": [1.0],
            "reason_1_text": ["건강보험료 체납 6개월 (국민건강보험공단, 2026-09 보고)"],
        }
    )
    page = EmdPage("1111051000", "1111000000", 10, 1, 0)
    common = {"round": "2026-10", "model_text": "m", "manifest_sha256": "0", "threshold": 5}
    common["risk_legend"] = RISK_BAND_LEGEND["ko"]
    names = {"1111051000": "북울동", "1111000000": "동림구"}
    text = render_emd_page(
        environment().get_template("emd.html"), common, page, scores, names, {}, 3
    )
    assert RISK_BAND_LEGEND["ko"].replace("'", "&#39;") in text
    assert "6 · 10가구 중 약 5가구" in text and ">52<" in text
    area = text[text.index('id="area-context"') :]
    assert "동(도시)" in area  # the area, apart from the households' reasons
