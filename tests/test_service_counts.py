"""The report's counts of suggested services: per 읍면동 and service, the listed households whose
first suggestion it is and those with it among the three; small counts masked; none without
suggestions."""

from __future__ import annotations

import pandas as pd

from pipeline.report import aggregates as agg
from pipeline.report import pages


def _scores() -> pd.DataFrame:
    rows = []
    for i in range(12):
        rows.append(
            {
                "household_key": f"k{i:02d}",
                "sigungu_code": "1111000000",
                "emd_code": "1111051000" if i < 8 else "1111052000",
                "tier": "visit" if i < 11 else "monitor",
                "selection_reason": "model_rank",
                "service_1": "food_bank" if i % 2 else "debt_adjustment",
                "service_2": "emergency_welfare",
                "service_3": pd.NA if i < 4 else ("care_services" if i % 2 else "food_bank"),
            }
        )
    return pd.DataFrame(rows).astype({c: "string" for c in rows[0]})


def test_listed_households_are_counted_by_first_and_any_suggestion():
    counts = agg.service_counts(_scores())
    first = counts.set_index(["emd_code", "service_code"])
    # 읍면동 1111051000: households 0..7, first suggestions alternate
    assert first.loc[("1111051000", "debt_adjustment"), "first"] == 4
    assert first.loc[("1111051000", "food_bank"), "first"] == 4
    # food bank: first for 4 (odd), third for the even ones from household 4 on (4, 6)
    assert first.loc[("1111051000", "food_bank"), "any"] == 6
    assert first.loc[("1111051000", "emergency_welfare"), "any"] == 8
    # household 11 is monitored, not listed: 읍면동 1111052000 counts 8, 9, 10
    assert first.loc[("1111052000", "emergency_welfare"), "any"] == 3
    split = agg.combine_counts(
        [agg.round_counts(part) for _, part in _scores().groupby("emd_code")]
    ).services
    pd.testing.assert_frame_equal(split, counts)


def test_the_rows_mask_small_counts_and_name_the_services():
    names = {"food_bank": "푸드뱅크", "debt_adjustment": "채무조정", "emergency_welfare": "긴급"}
    overall, per_emd = pages.service_rows(
        agg.service_counts(_scores()), names, {"1111052000": "나동"}, listed=11, threshold=5
    )
    by_name = {r["name"]: r for r in overall}
    assert by_name["긴급"]["any"] == "11" and by_name["긴급"]["first"] == "<5"
    assert by_name["푸드뱅크"]["first"] == "5" and by_name["푸드뱅크"]["share"] != "–"
    assert per_emd[1]["emd_name"] == "나동"
    assert per_emd[1]["services"] == "채무조정 <5 · 푸드뱅크 <5"


def test_a_round_without_suggestions_counts_none():
    scores = _scores().drop(columns=["service_1", "service_2", "service_3"])
    assert agg.service_counts(scores).empty
    assert pages.service_rows(agg.service_counts(scores), {}, {}, 11, 5) == ([], [])
