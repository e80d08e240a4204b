"""The vocabulary room: every code list, column name and label the stages share, defined once.

Category levels of households and people, the eligibility rule, tiers and selection reasons,
the columns of an outreach list with their Korean and English headers, and the key columns of
the datasets. Where the configuration or a YAML catalogue holds a vocabulary (the eligibility
rule in ``scoring.ineligible_benefit_status``, outcome codes in ``configs/outcomes.yaml``), the
functions here derive from it; nothing else writes these lists again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from pipeline.catalogue import OutcomeCatalogue

# Keys of the datasets.
KEY = "household_key"
EMD = "emd_code"
ID_COLUMNS = (KEY, EMD)
# What a household key typed by a person may look like (letters, digits, - and _): anything else
# is refused before it is looked up or becomes part of a file name.
KEY_FORM = r"^[A-Za-z0-9_-]{1,64}$"
AUDIT_PREFIX = "audit__"  # feature columns kept for the fairness audit, never model inputs
RULE_COLUMN = "distinct_types__3m"  # the rule baseline's count of crisis kinds in 3 months

# Category levels of the raw tables' coded columns, in their natural order.
TENURES: tuple[str, ...] = ("own", "jeonse", "monthly_rent", "public_rental", "other")
INCOME_BANDS: tuple[str, ...] = ("under_30", "30_50", "50_75", "75_100", "over_100")
BENEFIT_STATUSES: tuple[str, ...] = ("none", "near_poor", "basic_livelihood")
RELATIONS: tuple[str, ...] = ("head", "spouse", "child", "parent", "other")
SEXES: tuple[str, ...] = ("M", "F")
AGE_BANDS: tuple[str, ...] = ("under_35", "35_49", "50_64", "65_74", "75_plus")
AGE_BAND_EDGES: tuple[int, ...] = (35, 50, 65, 75)  # lower bounds of AGE_BANDS[1:]
NO_OUTCOME = "none"  # a household never visited before

# The kinds of need of the hidden world (truth ``need_type``) that services serve
# (configs/services.yaml), and the hidden drivers a crisis signal can follow (the catalogue's
# ``synthetic.driver``; docs/synthetic_data.md).
NEED_TYPES: tuple[str, ...] = (
    "income",
    "housing",
    "health",
    "care",
    "employment",
    "debt",
    "isolation",
)
NEED_TYPE_TEXT: dict[str, dict[str, str]] = {
    "ko": {
        "income": "소득",
        "housing": "주거",
        "health": "건강·의료",
        "care": "돌봄",
        "employment": "고용",
        "debt": "채무",
        "isolation": "고립",
    },
    "en": {n: n for n in NEED_TYPES},
}
DRIVERS: tuple[str, ...] = (
    "strain",
    "job",
    "health",
    "disaster",
    "benefit",
    "housing",
    "isolation",
    "debt",
    "care",
    "medical",
)

# A scored frame's list order when the model's list policy (fairness mitigation) sets it.
LIST_ORDER = "list_order"

# The groups of the fairness audit (models/fairness.py derives them from the feature table), and
# the ones mitigation may even out (training.mitigation.attributes).
AUDIT_ATTRIBUTES = (
    "sido",
    "sigungu",
    "urban",
    "head_sex",
    "head_age_band",
    "disability",
    "single_person",
    "tenure",
)

TENURE_TEXT = {
    "ko": {
        "own": "자가",
        "jeonse": "전세",
        "monthly_rent": "월세",
        "public_rental": "공공임대",
        "other": "기타",
    },
    "en": {
        "own": "owner-occupied",
        "jeonse": "jeonse (lump-sum deposit)",
        "monthly_rent": "monthly rent",
        "public_rental": "public rental",
        "other": "other",
    },
}
INCOME_TEXT = {
    "ko": ["30% 미만", "30~50%", "50~75%", "75~100%", "100% 초과"],
    "en": ["under 30%", "30-50%", "50-75%", "75-100%", "over 100%"],
}
BENEFIT_TEXT = {
    "ko": {"none": "수급 없음", "near_poor": "차상위", "basic_livelihood": "기초생활수급"},
    "en": {"none": "no benefit", "near_poor": "near-poor", "basic_livelihood": "basic livelihood"},
}
# Where a household attribute a reason names comes from: the staged household record (size,
# tenure, income band, benefit status, members), as of the end of the data window.
HOUSEHOLD_SOURCE = {
    "ko": "사회보장정보시스템 가구 자료",
    "en": "social security information system household record",
}

# Tiers of a scored round and why a listed household was chosen.
VISIT = "visit"
PHONE = "phone"
MONITOR = "monitor"
TIERS = (VISIT, PHONE, MONITOR)
LISTED_TIERS = (VISIT, PHONE)
MODEL_SCORE = "model_score"
EXPLORATION = "random_exploration"
LOCAL_DISCRETION = "local_discretion"  # a household a caseworker added to a returned list
CARRIED_OVER = "carried_over"  # an open case of an earlier round, carried into this one

# Case statuses and ministry categories the code itself relies on (their names and the other
# codes are in configs/outcomes.yaml): a listed household with no answer yet, one a caseworker
# skipped (an override), and the ministry's column whose outcomes name a no-support reason.
NOT_RETURNED = "not_returned"
SKIPPED = "skipped"
CASE_STATUSES_REQUIRED = (NOT_RETURNED, SKIPPED)
NO_SUPPORT = "no_support"
TIER_TEXT = {
    "ko": {VISIT: "방문", PHONE: "전화 확인"},
    "en": {VISIT: "visit", PHONE: "phone check"},
}

# The score as staff read it (docs/scoring.md, "The score on a list"), defined here once: the
# calibrated probability that a visit finds need, to the whole percent, and its band 1-10 (one
# band per 10 percentage points of that whole percent: 0-9% is band 1, 50-59% band 6, 90-100%
# band 10) with a phrase saying what it means for ten such households visited.
RISK_BANDS = 10


def risk_percent(score: float) -> int:
    """A calibrated probability as a whole percent (0.523 -> 52): lists and pages show no more."""
    return int(np.clip(np.floor(100 * float(score) + 0.5), 0, 100))


def risk_band(score: float) -> int:
    """The band 1-10 of a score: ``risk_percent // 10 + 1``, 100% in band 10."""
    return min(RISK_BANDS, risk_percent(score) // 10 + 1)


def risk_band_text(score: float, language: str) -> str:
    """The band with its phrase, e.g. "6 · 10가구 중 약 5가구" (band 6: 50-59%)."""
    band = risk_band(score)
    if language == "ko":
        if band == 1:
            return "1 · 10가구 중 1가구 미만"
        if band == RISK_BANDS:
            return f"{band} · 10가구 중 9가구 이상"
        return f"{band} · 10가구 중 약 {band - 1}가구"
    if band == 1:
        return "1 · fewer than 1 in 10"
    if band == RISK_BANDS:
        return f"{band} · 9 or more in 10"
    return f"{band} · about {band - 1} in 10"


RISK_BAND_LEGEND = {
    "ko": (
        "위험도: 모형이 추정한 '방문하면 지원이 필요한 것으로 확인될 확률'(보정된 확률, 정수 %). "
        "위험 구간 1~10: 위험도를 10%p씩 나눈 구간(0~9%는 1, 50~59%는 6, 90~100%는 10)과, "
        "이런 가구 10곳을 방문하면 몇 곳에서 지원 필요가 확인될지의 예상. "
        "판단은 담당자가 합니다."
    ),
    "en": (
        "Risk: the model's calibrated probability that a visit finds need, to the whole percent. "
        "Risk band 1-10: the risk in steps of 10 points (0-9% is 1, 50-59% is 6, 90-100% is 10), "
        "with how many of ten such households visited are expected to need support. "
        "The caseworker decides."
    ),
}


@dataclass(frozen=True)
class ListColumn:
    """One column of an outreach list: key, Korean header, English header, width in the XLSX."""

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
    ListColumn("risk_band", "위험 구간", "risk band", 22),
    ListColumn("selection", "선정 사유", "selected by", 20),
    ListColumn("case_history", "지난 회차 이력", "earlier rounds", 24),
    ListColumn("reason_1", "사유 1", "reason 1", 48),
    ListColumn("reason_2", "사유 2", "reason 2", 48),
    ListColumn("reason_3", "사유 3", "reason 3", 48),
    ListColumn("services", "추천 서비스", "suggested services", 44),
    ListColumn("outcome_code", "결과 코드", "outcome code", 18),
    ListColumn("linked_service", "연계 서비스", "linked service", 20),
    ListColumn("contact_date", "확인일(YYYY-MM-DD)", "contact date (YYYY-MM-DD)", 20),
    ListColumn("override", "담당자 판단(제외·추가)", "override (skip/add)", 22),
    ListColumn("note", "메모(제출 시 제외)", "note (not imported)", 30),
)
# The scores' columns of the services suggested for a listed household (pipeline.score.services):
# codes best first, and the list's text with a reason each.
SERVICE_COLUMNS: tuple[str, ...] = ("service_1", "service_2", "service_3")
SERVICES_TEXT = "services_text"
# The columns a caseworker fills in.
FILL_IN = ("outcome_code", "linked_service", "contact_date", "override", "note")


def list_header(language: str) -> list[str]:
    """The list's header row in ``language`` (``ko`` or ``en``)."""
    return [getattr(c, language) for c in LIST_COLUMNS]


def list_header_keys() -> dict[str, str]:
    """Korean and English headers (and the keys themselves) mapped to column keys."""
    out = {}
    for column in LIST_COLUMNS:
        out[column.ko] = column.key
        out[column.en] = column.key
        out[column.key] = column.key
    return out


def category_levels(outcome_catalogue: OutcomeCatalogue) -> dict[str, list[str]]:
    """Fixed category levels of the categorical feature columns (same codes in train and score)."""
    return {
        "hh__tenure": list(TENURES),
        "hh__benefit_status": list(BENEFIT_STATUSES),
        "history__last_outcome": [NO_OUTCOME, *outcome_catalogue.codes],
        "audit__head_sex": list(SEXES),
        "audit__head_age_band": list(AGE_BANDS),
    }


def as_levels(values: pd.Series, levels: list[str]) -> pd.Categorical:
    """``values`` as a categorical of ``levels``: text outside them becomes missing (pandas 4
    refuses to build a categorical from unknown values)."""
    text = values.astype("string")
    return pd.Categorical(text.where(text.isin(levels)), categories=levels)


def coerce_with_levels(frame: pd.DataFrame, levels: dict[str, list[str]]) -> pd.DataFrame:
    """Categoricals back to their fixed levels (Parquet stores them as strings); keys as strings.

    Returns a new frame (the input is not changed); untouched columns are shared, not copied.
    """
    changes: dict[str, object] = {}
    for column, values in levels.items():
        if column in frame.columns:
            changes[column] = as_levels(frame[column], values)
    for column in ID_COLUMNS:
        if column in frame.columns:
            changes[column] = frame[column].astype("string")
    return frame.assign(**changes)


def coerce_feature_types(frame: pd.DataFrame, outcome_catalogue: OutcomeCatalogue) -> pd.DataFrame:
    """:func:`coerce_with_levels` with the levels of :func:`category_levels`."""
    return coerce_with_levels(frame, category_levels(outcome_catalogue))


def eligible_mask(features: pd.DataFrame, ineligible: Sequence[str]) -> np.ndarray:
    """Households a list may contain: benefit status not among ``ineligible`` (the config's
    ``scoring.ineligible_benefit_status``: those already receiving basic livelihood support)."""
    status = features["hh__benefit_status"].astype("string")
    return (~status.isin(list(ineligible)).fillna(False)).to_numpy(dtype=bool)
