"""The linked service a caseworker records in a returned list: its Korean or English name or code
is understood and stored as the service's code (a label of the service match); an unknown one,
one that does not fit the outcome and one without an outcome are rejected by real Great
Expectations checks, with a Korean reason."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from conftest import REPO_ROOT

from pipeline.catalogue import load_outcomes, load_services
from pipeline.outcomes.checks import RowValidator, row_checks
from pipeline.outcomes.importer import list_facts
from pipeline.outcomes.normalise import accepted_outcomes, checked_rows
from pipeline.outcomes.returned import ROW

OUTCOMES = load_outcomes(REPO_ROOT / "configs" / "outcomes.yaml")
SERVICES = load_services(Path(REPO_ROOT / "configs" / "services.yaml"))
KEYS = [f"H{i:010d}" for i in range(6)]


def _facts():
    scores = pd.DataFrame(
        {
            "household_key": KEYS,
            "emd_code": ["4111031000"] * 6,
            "sigungu_code": ["4111000000"] * 6,
            "tier": ["visit"] * 6,
            "selection_reason": ["model_rank"] * 6,
            "selection_probability": [1.0] * 6,
        }
    ).astype({"selection_probability": "float64"})
    facts = list_facts(scores, "2026-10", 2, OUTCOMES, SERVICES)
    register = scores[["household_key", "emd_code"]].astype("string")
    return type(facts)(**{**facts.__dict__, "register": register})


def _rows() -> pd.DataFrame:
    data = {
        "household_key": KEYS,
        "emd_code": ["4111031000"] * 6,
        "outcome_code": [
            "민간 서비스 연계",
            "public_support",
            "public_support",
            "private_support",
            "closed_no_need",
            None,
        ],
        "linked_service": [
            "푸드뱅크·푸드마켓",  # Korean name
            "debt_adjustment",  # code
            "a cash gift",  # unknown
            "Livelihood benefit",  # English name, but a public service with private support
            None,
            "food_bank",  # a service with no outcome
        ],
        "contact_date": ["2026-10-15"] * 5 + [None],
        "override": [None, None, None, None, None, "skip_already_known"],
    }
    frame = pd.DataFrame({ROW: pd.array(range(2, 8), dtype="int64")})
    for key, values in data.items():
        frame[key] = pd.array(values, dtype="string")
    return frame


def test_a_linked_service_is_read_by_name_or_code_and_stored_as_its_code():
    facts = _facts()
    checked = checked_rows(_rows(), facts).checked
    assert list(checked["service_code"].fillna("")) == [
        "food_bank",
        "debt_adjustment",
        "a cash gift",
        "livelihood_benefit",
        "",
        "food_bank",
    ]
    stored = accepted_outcomes(checked.iloc[:2], facts, "0" * 64)
    assert list(stored["service_code"]) == ["food_bank", "debt_adjustment"]


def test_a_service_that_is_unknown_or_does_not_fit_the_outcome_is_rejected():
    facts = _facts()
    checked = checked_rows(_rows(), facts).checked
    rejected = RowValidator().rejections(checked, row_checks(facts))
    service = rejected[rejected["field"] == "linked_service"]
    assert sorted(service["row"].tolist()) == [4, 5, 7]
    reasons = dict(zip(service["row"], service["reason"], strict=True))
    assert reasons[4].startswith("unknown linked service")
    assert reasons[5].startswith("the linked service does not fit the outcome")
    assert reasons[7].startswith("a linked service needs a linked outcome")
    assert service["reason_ko"].str.contains("서비스").all()
    assert not (rejected["row"].isin([2, 3])).any()  # name and code of a fitting service pass
