"""Case state and carry-over (pipeline.cases), and carried households in the tier cut."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from pipeline.cases import CARRY_COLUMNS, CASE_COLUMNS, CarryPolicy, carried_cases, round_cases
from pipeline.months import parse_month
from pipeline.score.tiers import cut_emd, cut_round

ROUND = "2026-10"
POLICY = CarryPolicy(max_rounds=2, escalate_phone_after=1)


def listed_frame(rows: list[tuple[str, str, int]]) -> pd.DataFrame:
    """(key, tier, list rank) rows of one 읍면동's list."""
    return pd.DataFrame(
        {
            "household_key": [r[0] for r in rows],
            "sigungu_code": "4111000000",
            "emd_code": "4111031000",
            "tier": [r[1] for r in rows],
            "list_rank": [r[2] for r in rows],
            "selection_reason": "model_score",
        }
    )


def outcome_rows(rows: list[tuple[str, str | None, bool]], **extra) -> pd.DataFrame:
    """(key, outcome code, added by the caseworker) rows of an outcomes store."""
    frame = pd.DataFrame(
        {
            "household_key": [r[0] for r in rows],
            "sigungu_code": "4111000000",
            "emd_code": "4111031000",
            "round": ROUND,
            "outcome_code": [r[1] for r in rows],
            "contact_date": [dt.date(2026, 10, 15)] * len(rows),
            "added_by_caseworker": [r[2] for r in rows],
        }
    )
    for name, values in extra.items():
        frame[name] = values
    return frame


def calls_rows(rows: list[tuple[str, str]]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "household_key": [r[0] for r in rows],
            "call_result": [r[1] for r in rows],
            "call_date": [dt.date(2026, 10, 20)] * len(rows),
        }
    )


def cases_of(listed, outcomes, calls, catalogue, now="2026-10"):
    return round_cases(
        listed,
        outcomes,
        calls,
        catalogue,
        now_month=parse_month(now),
        due_month=parse_month("2026-11"),
    )


def test_every_listed_household_gets_a_status(outcome_catalogue):
    listed = listed_frame(
        [
            ("H1", "visit", 1),
            ("H2", "visit", 2),
            ("H3", "visit", 3),
            ("H4", "phone", 4),
            ("H5", "phone", 5),
            ("H6", "visit", 6),
            ("H7", "phone", 7),
        ]
    )
    outcomes = outcome_rows(
        [
            ("H1", "public_support", False),
            ("H2", "unreachable", False),
            ("H3", "declined", False),
            ("H6", None, False),
            ("H9", "private_support", True),
        ],
        override_code=[None, None, None, "skip_safety", "add_referral"],
    )
    calls = calls_rows([("H4", "needs_visit"), ("H5", "not_reached"), ("H1", "reached")])
    cases = cases_of(listed, outcomes, calls, outcome_catalogue).set_index("household_key")
    assert list(cases.reset_index().columns) == list(CASE_COLUMNS)
    assert cases["status"].to_dict() == {
        "H1": "linked",  # the visit outcome wins over the call
        "H2": "not_reached",
        "H3": "visited",
        "H4": "in_progress",
        "H5": "not_reached",
        "H6": "skipped",
        "H7": "not_returned",
        "H9": "linked",
    }
    assert cases.loc["H3", "ministry"] == "no_support"
    assert cases.loc["H3", "no_support_reason"] == "declined"
    assert pd.isna(cases.loc["H6", "ministry"]) and pd.isna(cases.loc["H7", "ministry"])
    assert bool(cases.loc["H9", "added"]) and pd.isna(cases.loc["H9", "list_rank"])
    assert cases.index[-1] == "H9"  # added households after the list
    assert cases["pending"].to_dict() == {
        "H1": False,
        "H2": True,
        "H3": False,
        "H4": True,
        "H5": True,
        "H6": False,
        "H7": True,
        "H9": False,
    }
    assert not cases["overdue"].any()  # judged in 2026-10: the round is not over


def test_overdue_once_the_round_interval_has_passed(outcome_catalogue):
    listed = listed_frame([("H1", "visit", 1), ("H2", "visit", 2), ("H3", "visit", 3)])
    outcomes = outcome_rows([("H1", "in_progress", False), ("H2", "closed_no_need", False)])
    during = cases_of(listed, outcomes, None, outcome_catalogue, now="2026-11")
    after = cases_of(listed, outcomes, None, outcome_catalogue, now="2026-12")
    assert not during["overdue"].any()
    assert after.set_index("household_key")["overdue"].to_dict() == {
        "H1": True,
        "H2": False,
        "H3": True,
    }


def test_no_answers_at_all(outcome_catalogue):
    cases = cases_of(listed_frame([("H1", "visit", 1)]), None, None, outcome_catalogue)
    assert cases["status"].tolist() == ["not_returned"]


def test_open_cases_are_carried_with_history_and_escalation(outcome_catalogue):
    listed = listed_frame(
        [
            ("H1", "visit", 1),  # unreachable on a visit: visit again
            ("H2", "visit", 2),  # in progress: carried
            ("H3", "visit", 3),  # resolved: not carried
            ("H4", "phone", 4),  # call: needs a visit
            ("H5", "phone", 5),  # call: not reached -> escalated to a visit (after 1)
            ("H6", "phone", 6),  # not returned: not carried
            ("H7", "phone", 7),  # call reached, nothing needed: not carried
            ("H8", "visit", 8),  # skipped by the caseworker: not carried
        ]
    )
    outcomes = outcome_rows(
        [
            ("H1", "unreachable", False),
            ("H2", "in_progress", False),
            ("H3", "closed_no_need", False),
            ("H8", None, False),
        ],
        override_code=[None, None, None, "skip_moved"],
    )
    calls = calls_rows([("H4", "needs_visit"), ("H5", "not_reached"), ("H7", "reached")])
    cases = cases_of(listed, outcomes, calls, outcome_catalogue)
    carried = carried_cases(cases, ROUND, outcome_catalogue, POLICY).set_index("household_key")
    # tried, then given up: a skip with 연락 불가 is skipped, and not carried
    given_up = outcome_rows([("H1", "unreachable", False)], override_code=["skip_moved"])
    case = cases_of(listed.iloc[:1], given_up, None, outcome_catalogue)
    assert case["status"].tolist() == ["skipped"]
    assert carried_cases(case, ROUND, outcome_catalogue, POLICY).empty
    assert list(carried.reset_index().columns) == list(CARRY_COLUMNS)
    assert carried["tier"].to_dict() == {
        "H1": "visit",
        "H2": "visit",
        "H4": "visit",
        "H5": "visit",
    }
    assert set(carried["carried_rounds"]) == {1}
    assert carried.loc["H1", "case_history"] == "2026-10 방문: 연락 불가"
    assert carried.loc["H5", "case_history"] == "2026-10 전화 확인: 미연결 → 방문 전환"
    assert carried.loc["H4", "case_history"] == "2026-10 전화 확인: 방문 필요"


def test_phone_stays_phone_until_the_configured_attempts(outcome_catalogue):
    listed = listed_frame([("H5", "phone", 1)])
    cases = cases_of(listed, None, calls_rows([("H5", "not_reached")]), outcome_catalogue)
    patient = CarryPolicy(max_rounds=3, escalate_phone_after=2)
    first = carried_cases(cases, ROUND, outcome_catalogue, patient)
    assert first[["tier", "phone_attempts"]].values.tolist() == [["phone", 1]]
    # the next round: listed again as carried, not reached again -> a visit
    again = listed_frame([("H5", "phone", 1)]).assign(
        carried_rounds=1, phone_attempts=1, case_history=first["case_history"]
    )
    cases = round_cases(
        again,
        None,
        calls_rows([("H5", "not_reached")]),
        outcome_catalogue,
        now_month=parse_month("2026-12"),
        due_month=parse_month("2027-01"),
    )
    second = carried_cases(cases, "2026-12", outcome_catalogue, patient)
    assert second[["tier", "phone_attempts", "carried_rounds"]].values.tolist() == [["visit", 0, 2]]
    assert second["case_history"].iloc[0] == (
        "2026-10 전화 확인: 미연결 / 2026-12 전화 확인: 미연결 → 방문 전환"
    )


def test_carrying_stops_after_max_rounds(outcome_catalogue):
    listed = listed_frame([("H1", "visit", 1)]).assign(
        carried_rounds=2, phone_attempts=0, case_history="2026-06 방문: 연락 불가"
    )
    cases = cases_of(listed, outcome_rows([("H1", "unreachable", False)]), None, outcome_catalogue)
    assert carried_cases(cases, ROUND, outcome_catalogue, POLICY).empty
    assert (
        carried_cases(cases.assign(carried_rounds=1), ROUND, outcome_catalogue, POLICY).shape[0]
        == 1
    )
    assert carried_cases(cases, ROUND, outcome_catalogue, CarryPolicy(0, 1)).empty


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_without_carried_households_the_cut_is_unchanged(seed):
    rng = np.random.default_rng(seed)
    n = 60
    scores, keys = rng.random(n), np.arange(n)
    signal = rng.random(n) < 0.5
    args = dict(phone_band=1.0, exploration_share=0.2, seed=7, as_of=300, emd_code="4111031000")
    plain = cut_emd(scores, keys, signal, 10, **args)
    none = cut_emd(scores, keys, signal, 10, **args, carried=np.full(n, None, dtype=object))
    pd.testing.assert_frame_equal(plain, none)


def test_carried_households_take_their_slots_first():
    n = 40
    scores = np.linspace(1.0, 0.0, n)  # key i has rank i + 1
    keys = np.arange(n)
    carried = np.full(n, None, dtype=object)
    carried[[30, 31]] = "visit"
    carried[35] = "phone"
    args = dict(phone_band=1.0, exploration_share=0.0, seed=7, as_of=300, emd_code="4111031000")
    cut = cut_emd(scores, keys, np.zeros(n, dtype=bool), 10, **args, carried=carried)
    visit = np.flatnonzero(cut["tier"] == "visit")
    phone = np.flatnonzero(cut["tier"] == "phone")
    assert visit.tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 30, 31]  # 8 by the model, 2 carried
    assert phone.tolist() == [8, 9, 10, 11, 12, 13, 14, 15, 16, 35]
    assert cut.loc[[30, 31, 35], "selection_reason"].tolist() == ["carried_over"] * 3
    assert (cut.loc[[30, 31, 35], "selection_probability"] == 1.0).all()
    assert cut["model_rank"].tolist() == list(range(1, n + 1))  # ranks stay the model's


def test_carried_cases_beyond_capacity_are_all_listed():
    n = 12
    carried = np.full(n, None, dtype=object)
    carried[[5, 6, 7, 8]] = "visit"
    args = dict(phone_band=0.0, exploration_share=0.0, seed=7, as_of=300, emd_code="1")
    cut = cut_emd(np.linspace(1, 0, n), np.arange(n), np.zeros(n, bool), 3, **args, carried=carried)
    assert np.flatnonzero(cut["tier"] == "visit").tolist() == [5, 6, 7, 8]


def test_cut_round_reads_the_carried_column():
    frame = pd.DataFrame(
        {
            "household_key": [f"H{i:02d}" for i in range(10)],
            "emd_code": "1",
            "score": np.linspace(1, 0, 10),
            "has_signal": False,
            "carried_tier": [None] * 9 + ["visit"],
        }
    )
    out = cut_round(
        frame,
        pd.Series({"1": 2}),
        phone_band=0.0,
        exploration_share=0.0,
        seed=1,
        as_of=300,
    )
    assert out.loc[out["tier"] == "visit", "household_key"].tolist() == ["H00", "H09"]
    assert out.loc[9, "selection_reason"] == "carried_over"


def test_reserved_exploration_keeps_its_slots_when_carried_cases_fill_the_tier():
    """``reserve_exploration``: the draw is a share of the capacity, not of what carried cases
    leave; the model fills what is left after both, and carried cases are never dropped."""
    n = 200
    scores = np.linspace(1.0, 0.0, n)  # key i has rank i + 1
    keys = np.arange(n)
    signal = np.ones(n, dtype=bool)
    carried = np.full(n, None, dtype=object)
    carried[150:168] = "visit"  # 18 carried visits of a capacity of 20
    args = dict(phone_band=0.0, exploration_share=0.2, seed=7, as_of=300, emd_code="1")
    left = cut_emd(scores, keys, signal, 20, **args, carried=carried)
    left_reasons = left.loc[left["tier"] == "visit", "selection_reason"].value_counts()
    assert left_reasons.to_dict() == {"carried_over": 18, "model_score": 2}  # 20% of 2 slots: 0
    reserved = cut_emd(scores, keys, signal, 20, **args, carried=carried, reserve_exploration=True)
    reasons = reserved.loc[reserved["tier"] == "visit", "selection_reason"].value_counts()
    assert reasons.to_dict() == {"carried_over": 18, "random_exploration": 4}  # 2 over capacity
    explored = reserved["selection_reason"] == "random_exploration"
    assert np.allclose(reserved.loc[explored, "selection_probability"], 4 / (n - 18))
    # with room left, the model fills it: 20 - 5 carried - 4 explored
    carried[155:168] = None
    reserved = cut_emd(scores, keys, signal, 20, **args, carried=carried, reserve_exploration=True)
    counts = reserved.loc[reserved["tier"] == "visit", "selection_reason"].value_counts()
    assert counts.to_dict() == {"model_score": 11, "carried_over": 5, "random_exploration": 4}
    # without carried cases, reserving changes nothing
    pd.testing.assert_frame_equal(
        cut_emd(scores, keys, signal, 20, **args),
        cut_emd(scores, keys, signal, 20, **args, reserve_exploration=True),
    )


def test_reserved_exploration_at_the_margin_counts_the_band_from_the_capacity():
    n = 200
    scores = np.linspace(1.0, 0.0, n)
    keys = np.arange(n)
    carried = np.full(n, None, dtype=object)
    carried[150:165] = "visit"  # 15 carried of 20
    args = dict(phone_band=0.0, exploration_share=0.2, seed=7, as_of=300, emd_code="1")
    cut = cut_emd(
        scores,
        keys,
        np.zeros(n, bool),
        20,
        **args,
        carried=carried,
        exploration_margin=1.0,
        reserve_exploration=True,
    )
    # 1 slot for the model (20 - 15 - 4), then a band of 20 ranks: keys 1..20
    explored = np.flatnonzero(cut["selection_reason"] == "random_exploration")
    assert len(explored) == 4 and (explored >= 1).all() and (explored <= 20).all()
    assert np.allclose(cut.loc[explored, "selection_probability"], 4 / 20)
