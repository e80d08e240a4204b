"""Display rows of the report pages: Korean names, number formats and the small-count rule.

The overview and the follow-up page show aggregates only: a household count under the threshold
(``report.small_count``, 5) is shown as "<5", and a share or rate computed from such a count is
not shown ("–"), since it would give the count back. The 읍면동 pages list households by design,
so nothing is masked there. Pure functions: frames in, lists of dicts of strings out.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from pipeline.catalogue import IndicatorCatalogue, OutcomeCatalogue
from pipeline.report.aggregates import PARTS, FollowUp
from pipeline.vocabulary import (
    EXPLORATION,
    MONITOR,
    NOT_RETURNED,
    PHONE,
    SERVICES_TEXT,
    TENURE_TEXT,
    VISIT,
    risk_band,
    risk_band_text,
    risk_percent,
)

DASH = "–"
TIER_KO = {VISIT: "방문", PHONE: "전화 확인", MONITOR: "관찰"}
TIER_PART_KO = {
    "visit_model": "방문 (AI 위험 점수 순위)",
    "visit_exploration": "방문 (무작위 탐색 표본)",
    "phone": "전화 확인",
    "monitor": "관찰 (목록 제외)",
    "list": "목록 전체 (방문 + 전화 확인)",
}
ATTRIBUTE_KO = {
    "head_sex": "가구주 성별",
    "head_age_band": "가구주 연령대",
    "disability": "장애인 가구원",
    "single_person": "1인 가구",
    "tenure": "주거 형태",
    "urban": "지역 유형",
}
GROUP_KO: dict[str, dict[str, str]] = {
    "head_sex": {"M": "남성", "F": "여성"},
    "head_age_band": {
        "under_35": "35세 미만",
        "35_49": "35~49세",
        "50_64": "50~64세",
        "65_74": "65~74세",
        "75_plus": "75세 이상",
    },
    "disability": {"yes": "있음", "no": "없음"},
    "single_person": {"yes": "1인 가구", "no": "2인 이상 가구"},
    "tenure": dict(TENURE_TEXT["ko"]),
    "urban": {"urban": "동 (도시)", "rural": "읍·면 (농어촌)"},
}
HOUSEHOLD_UNIT_KO = {
    "income_band": "소득 구간",
    "tenure": "주거 형태",
    "benefit_status": "수급 상태",
    "size": "가구원 수",
    "minors": "18세 미만 가구원",
    "elderly_members": "65세 이상 가구원",
    "disabled_members": "장애인 가구원",
    "single_elderly": "1인 노인 가구",
    "single_parent": "한부모 가구",
    "urban": "거주 지역 유형",
}


# --- numbers ---------------------------------------------------------------------------------


def is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA


def number(value: Any) -> str:
    """A whole number with thousands separators."""
    return DASH if is_missing(value) else f"{int(value):,}"


def count(value: Any, threshold: int) -> str:
    """A household count, "<threshold" when below it."""
    if is_missing(value):
        return DASH
    return f"<{threshold}" if int(value) < threshold else f"{int(value):,}"


def small(value: Any, threshold: int) -> bool:
    return not is_missing(value) and int(value) < threshold


def percent(value: Any, digits: int = 1) -> str:
    """A share as a percentage ("12.3%")."""
    if is_missing(value) or not math.isfinite(float(value)):
        return DASH
    return f"{100 * float(value):,.{digits}f}%"


def masked_percent(value: Any, *counts: Any, threshold: int, digits: int = 1) -> str:
    """A share computed from ``counts``, not shown when any of them is below the threshold."""
    if any(small(c, threshold) for c in counts):
        return DASH
    return percent(value, digits)


def signed(value: Any) -> str:
    if is_missing(value):
        return DASH
    v = int(value)
    return f"+{v:,}" if v > 0 else f"{v:,}"


def decimal(value: Any, digits: int = 2) -> str:
    if is_missing(value) or not math.isfinite(float(value)):
        return DASH
    return f"{float(value):,.{digits}f}"


# --- names -----------------------------------------------------------------------------------


def unit_name(unit: str, catalogue: IndicatorCatalogue) -> str:
    """The Korean name of a reason unit (``ind:health_ins_arrears`` → "건강보험료 체납")."""
    if unit.startswith("ind:"):
        indicator = catalogue.by_code().get(unit.removeprefix("ind:"))
        return f"{indicator.name_ko} ({indicator.agency_ko})" if indicator else unit
    if unit.startswith("grp:"):
        group = catalogue.groups.get(unit.removeprefix("grp:"))
        return f"{group.name_ko} 관련 위험" if group else unit
    if unit.startswith("hh:"):
        return f"가구 특성: {HOUSEHOLD_UNIT_KO.get(unit.removeprefix('hh:'), unit)}"
    return {
        "multi": "여러 위기정보 동시 발생",
        "history": "이전 발굴 이력",
        "context": "읍면동 위기정보 보고 수준",
    }.get(unit, unit)


def selection_names(outcomes: OutcomeCatalogue) -> dict[str, str]:
    return {r.code: r.name_ko for r in outcomes.selection_reasons}


def outcome_names(outcomes: OutcomeCatalogue) -> dict[str, str]:
    return {o.code: o.name_ko for o in outcomes.outcomes}


def area_type(emd_name: str) -> str:
    """동 (urban) or 읍·면 (rural) by the Korean naming of a 읍면동; "" when the name says not."""
    if emd_name.endswith("동"):
        return "동(도시)"
    if emd_name.endswith(("읍", "면")):
        return f"{emd_name[-1]}(농어촌)"
    return ""


def region_name(names: Mapping[str, str], code: str) -> str:
    return names.get(str(code), "")


# --- overview rows ---------------------------------------------------------------------------


def district_rows(
    districts: pd.DataFrame, names: Mapping[str, str], threshold: int
) -> list[dict[str, str]]:
    rows = []
    for r in districts.itertuples(index=False):
        rows.append(
            {
                "sigungu_code": str(r.sigungu_code),
                "sigungu_name": region_name(names, r.sigungu_code),
                "emd_code": str(r.emd_code),
                "emd_name": region_name(names, r.emd_code),
                "capacity": number(r.capacity),
                "scored": count(r.scored, threshold),
                "visit": count(r.visit, threshold),
                "explored": count(r.explored, threshold),
                "phone": count(r.phone, threshold),
                "listed": count(r.listed, threshold),
                "fill": masked_percent(
                    r.visit / r.capacity if r.capacity else float("nan"),
                    r.visit,
                    threshold=threshold,
                    digits=0,
                ),
                "short": bool(r.capacity and r.visit < r.capacity),
            }
        )
    return rows


def sigungu_rows(
    sigungu: pd.DataFrame, names: Mapping[str, str], threshold: int
) -> list[dict[str, str]]:
    rows = []
    for r in sigungu.itertuples(index=False):
        rows.append(
            {
                "sigungu_code": str(r.sigungu_code),
                "sigungu_name": region_name(names, r.sigungu_code),
                "emd": number(r.emd),
                "capacity": number(r.capacity),
                "scored": count(r.scored, threshold),
                "visit": count(r.visit, threshold),
                "explored": count(r.explored, threshold),
                "phone": count(r.phone, threshold),
                "listed": count(r.listed, threshold),
            }
        )
    return rows


def tier_rows(tiers: pd.DataFrame, threshold: int) -> list[dict[str, str]]:
    total = int(tiers["households"].sum())
    return [
        {
            "tier": TIER_PART_KO[str(r.tier)],
            "households": count(r.households, threshold),
            "share": masked_percent(
                r.households / total if total else float("nan"),
                r.households,
                threshold=threshold,
            ),
        }
        for r in tiers.itertuples(index=False)
    ]


def reason_rows(
    reasons: pd.DataFrame, catalogue: IndicatorCatalogue, listed: int, threshold: int
) -> list[dict[str, str]]:
    return [
        {
            "unit": str(r.unit),
            "name": unit_name(str(r.unit), catalogue),
            "first": count(r.first, threshold),
            "any": count(r.any, threshold),
            "share": masked_percent(
                r.any / listed if listed else float("nan"), r.any, threshold=threshold
            ),
        }
        for r in reasons.itertuples(index=False)
    ]


def service_rows(
    services: pd.DataFrame,
    names: Mapping[str, str],
    regions: Mapping[str, str],
    listed: int,
    threshold: int,
) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """The suggested services of the round's listed households: one row per service (first
    suggestion, any of the three, share of the listed), most suggested first; and one row per
    읍면동 with its services by first suggestion, most first (counts under ``threshold``
    masked)."""
    totals = services.groupby("service_code", sort=True)[["first", "any"]].sum()
    totals = totals.sort_values(["first", "any"], ascending=False, kind="stable")
    overall = [
        {
            "name": names.get(str(code), str(code)),
            "first": count(r["first"], threshold),
            "any": count(r["any"], threshold),
            "share": masked_percent(
                r["any"] / listed if listed else float("nan"), r["any"], threshold=threshold
            ),
        }
        for code, r in totals.iterrows()
    ]
    per_emd = []
    for (sigungu, emd), part in services.groupby(["sigungu_code", "emd_code"], sort=True):
        part = part[part["first"] > 0].sort_values(
            ["first", "service_code"], ascending=[False, True], kind="stable"
        )
        per_emd.append(
            {
                "sigungu_name": region_name(regions, sigungu),
                "emd_name": region_name(regions, emd),
                "emd_code": str(emd),
                "services": " · ".join(
                    f"{names.get(str(r.service_code), str(r.service_code))} "
                    f"{count(r.first, threshold)}"
                    for r in part.itertuples(index=False)
                ),
            }
        )
    return overall, per_emd


def change_rows(
    change: pd.DataFrame, names: Mapping[str, str], threshold: int
) -> list[dict[str, str]]:
    rows = []
    for r in change.itertuples(index=False):
        masked = small(r.listed_previous, threshold) or small(r.listed_current, threshold)
        total = str(r.sigungu_code) == "total"
        rows.append(
            {
                "sigungu_code": "" if total else str(r.sigungu_code),
                "sigungu_name": "합계" if total else region_name(names, r.sigungu_code),
                "visit_previous": count(r.visit_previous, threshold),
                "visit_current": count(r.visit_current, threshold),
                "listed_previous": count(r.listed_previous, threshold),
                "listed_current": count(r.listed_current, threshold),
                "listed_change": DASH if masked else signed(r.listed_change),
                "total": total,
            }
        )
    return rows


def psi_rows(psi: pd.DataFrame, descriptions: Mapping[str, str]) -> list[dict[str, Any]]:
    return [
        {
            "rank": int(r.rank),
            "feature": str(r.feature),
            "description": descriptions.get(str(r.feature), ""),
            "psi": decimal(r.psi, 3),
            "shifted": bool(r.shifted),
            "mean_previous": decimal(r.mean_previous, 3),
            "mean_current": decimal(r.mean_current, 3),
            "merged": bool(getattr(r, "merged", False)),
        }
        for r in psi.itertuples(index=False)
    ]


def fairness_rows(
    fairness: pd.DataFrame, bounds: tuple[float, float], threshold: int
) -> list[dict[str, Any]]:
    """Rows grouped by attribute (in a fixed group order), each with its Korean name."""
    order = {a: list(groups) for a, groups in GROUP_KO.items()}
    rows = []
    for attribute, part in fairness.groupby("attribute", sort=False):
        known = order.get(str(attribute), [])
        rank = {g: i for i, g in enumerate(known)}
        part = part.assign(_order=part["group"].map(rank).fillna(len(known))).sort_values(
            ["_order", "group"], kind="stable"
        )
        for i, r in enumerate(part.itertuples(index=False)):
            masked = small(r.eligible, threshold) or small(r.listed, threshold)
            ratio = DASH if masked else decimal(r.ratio, 2)
            outside = (
                not masked
                and not is_missing(r.ratio)
                and math.isfinite(r.ratio)
                and not bounds[0] <= r.ratio <= bounds[1]
            )
            rows.append(
                {
                    "attribute": ATTRIBUTE_KO.get(str(attribute), str(attribute)),
                    "first": i == 0,
                    "span": len(part),
                    "group": GROUP_KO.get(str(attribute), {}).get(
                        str(r.group), "미상" if r.group == "unknown" else str(r.group)
                    ),
                    "eligible": count(r.eligible, threshold),
                    "listed": count(r.listed, threshold),
                    "eligible_share": masked_percent(
                        r.eligible_share, r.eligible, threshold=threshold
                    ),
                    "listed_share": masked_percent(r.listed_share, r.listed, threshold=threshold),
                    "ratio": ratio,
                    "outside": outside,
                }
            )
    return rows


# --- 읍면동 page rows (households: nothing masked) ----------------------------------------------


@dataclass(frozen=True, slots=True)
class HouseholdRow:
    """One row of a 읍면동 page (attributes, not a dict: the template reads them fast)."""

    list_rank: int
    household_key: str
    tier: str
    tier_name: str
    score: float
    score_text: str
    band: int
    band_text: str
    model_rank: int
    model_rank_text: str
    selection: str
    explored: bool
    probability: float
    probability_text: str
    reasons: list[str]
    status: str = NOT_RETURNED
    status_name: str = ""
    status_detail: str = ""
    pending: bool = False
    overdue: bool = False
    history: str = ""
    services: str = ""  # the suggested services with their reasons (empty: none suggested)


@dataclass(frozen=True)
class CaseView:
    """The case state of one 읍면동's list, as its page shows it."""

    by_key: dict[str, dict[str, Any]]  # household key -> status, status_name, detail, overdue
    counts: list[dict[str, Any]]  # one per case status: code, name, households
    pending: int
    overdue: int
    added: list[dict[str, str]]  # households the office added: key, status_name, detail
    answered: bool  # whether any answer (visit or call) came back for the round
    not_returned_name: str = ""  # the status name of a household with no answer


def case_view(cases: pd.DataFrame | None, catalogue: OutcomeCatalogue) -> CaseView:
    """The page's view of one 읍면동's cases (``pipeline.cases.round_cases`` rows, its own)."""
    unanswered = catalogue.status_name(NOT_RETURNED)
    if cases is None or cases.empty:
        return CaseView({}, [], 0, 0, [], False, unanswered)
    outcome_names = {o.code: o.name_ko for o in catalogue.outcomes}
    call_names = {c.code: c.name_ko for c in catalogue.call_results}
    override_names = {r.code: r.name_ko for r in catalogue.override_reasons}
    by_key: dict[str, dict[str, Any]] = {}
    added = []
    for case in cases.itertuples(index=False):
        detail = []
        if not is_missing(case.outcome_code):
            text = outcome_names.get(str(case.outcome_code), str(case.outcome_code))
            if not is_missing(case.contact_date):
                text += f" ({pd.Timestamp(case.contact_date):%Y-%m-%d})"
            detail.append(text)
        if not is_missing(case.call_result):
            result = str(case.call_result)
            detail.append("상담 전화: " + call_names.get(result, result))
        if not is_missing(case.override_code):
            detail.append(override_names.get(str(case.override_code), str(case.override_code)))
        view = {
            "status": str(case.status),
            "status_name": catalogue.status_name(str(case.status)),
            "detail": " · ".join(detail),
            "pending": bool(case.pending),
            "overdue": bool(case.overdue),
        }
        by_key[str(case.household_key)] = view
        if bool(case.added):
            added.append({"household_key": str(case.household_key), **view})
    present = cases["status"].value_counts()
    counts = [
        {"code": s.code, "name": s.name_ko, "households": int(present.get(s.code, 0))}
        for s in catalogue.case_statuses
    ]
    answered = bool((cases["status"] != NOT_RETURNED).any())
    pending, overdue = int(cases["pending"].sum()), int(cases["overdue"].sum())
    return CaseView(by_key, counts, pending, overdue, added, answered, unanswered)


def household_rows(
    scores: pd.DataFrame,
    selection: Mapping[str, str],
    reasons: int,
    cases: CaseView | None = None,
) -> list[HouseholdRow]:
    """The listed households of one 읍면동, in list order, with their case state."""
    ordered = scores.sort_values("list_rank", kind="stable")
    blank = [None] * len(ordered)

    def column(name: str) -> list[Any]:
        return ordered[name].tolist() if name in ordered.columns else blank

    texts = [column(f"reason_{i}_text") for i in range(1, reasons + 1)]
    history = column("case_history")
    services = column(SERVICES_TEXT)
    rows = []
    for i, (rank, key, tier, score, model_rank, chosen, probability) in enumerate(
        zip(
            column("list_rank"),
            column("household_key"),
            column("tier"),
            column("score"),
            column("model_rank"),
            column("selection_reason"),
            column("selection_probability"),
            strict=True,
        )
    ):
        score, probability = float(score), float(probability)
        rows.append(
            HouseholdRow(
                list_rank=int(rank),
                household_key=str(key),
                tier=str(tier),
                tier_name=TIER_KO.get(str(tier), str(tier)),
                score=score,
                score_text=str(risk_percent(score)),
                band=risk_band(score),
                band_text=risk_band_text(score, "ko"),
                model_rank=int(model_rank),
                model_rank_text=f"{int(model_rank):,}",
                selection=selection.get(str(chosen), str(chosen)),
                explored=str(chosen) == EXPLORATION,
                probability=probability,
                probability_text=percent(probability, 0),
                reasons=["" if is_missing(t[i]) else str(t[i]) for t in texts],
                services="" if is_missing(services[i]) else str(services[i]),
                **_case_fields(cases, str(key), history[i]),
            )
        )
    return rows


def _case_fields(cases: CaseView | None, key: str, history: Any) -> dict[str, Any]:
    fields = {"history": "" if is_missing(history) else str(history)}
    if cases is None:
        return fields
    view = cases.by_key.get(key)
    if view is None:
        return {
            **fields,
            "status": NOT_RETURNED,
            "status_name": cases.not_returned_name,
            "pending": True,
        }
    return {
        **fields,
        "status": view["status"],
        "status_name": view["status_name"],
        "status_detail": view["detail"],
        "pending": view["pending"],
        "overdue": view["overdue"],
    }


# --- follow-up rows --------------------------------------------------------------------------


def followup_summary_rows(follow: FollowUp, threshold: int) -> list[dict[str, Any]]:
    rows = []
    for r in follow.summary.itertuples(index=False):
        rows.append(
            {
                "part": TIER_PART_KO[str(r.part)],
                "is_list": str(r.part) == "list",
                "listed": count(r.listed, threshold),
                "returned": count(r.returned, threshold),
                "labelled": count(r.labelled, threshold),
                "positives": count(r.positives, threshold),
                "precision": masked_percent(
                    r.precision, r.labelled, r.positives, threshold=threshold
                ),
                "mean_score": masked_percent(r.mean_score, r.labelled, threshold=threshold),
            }
        )
    return rows


def followup_outcome_rows(
    follow: FollowUp, names: Mapping[str, str], labels: Mapping[str, int | None], threshold: int
) -> list[dict[str, str]]:
    label_text = {1: "지원 필요", 0: "지원 불필요", None: "판정 없음"}
    order = [*names, "none"]
    frame = follow.outcomes.copy()
    frame["_order"] = frame["outcome_code"].map(
        lambda c: order.index(c) if c in order else len(order)
    )
    rows = []
    for r in frame.sort_values(["_order", "outcome_code"], kind="stable").to_dict("records"):
        code = str(r["outcome_code"])
        rows.append(
            {
                "code": "" if code == "none" else code,
                "name": "아직 결과 없음" if code == "none" else names.get(code, "알 수 없는 코드"),
                "label": "" if code == "none" else label_text.get(labels.get(code), "판정 없음"),
                **{part: count(r.get(part, 0), threshold) for part in PARTS},
            }
        )
    return rows


def followup_sigungu_rows(
    follow: FollowUp, names: Mapping[str, str], threshold: int
) -> list[dict[str, str]]:
    rows = []
    for r in follow.sigungu.itertuples(index=False):
        gap = r.precision - r.mean_score if r.labelled else float("nan")
        masked = small(r.labelled, threshold) or small(r.positives, threshold)
        rows.append(
            {
                "sigungu_code": str(r.sigungu_code),
                "sigungu_name": region_name(names, r.sigungu_code),
                "listed": count(r.listed, threshold),
                "returned": count(r.returned, threshold),
                "labelled": count(r.labelled, threshold),
                "positives": count(r.positives, threshold),
                "precision": DASH if masked else percent(r.precision),
                "mean_score": masked_percent(r.mean_score, r.labelled, threshold=threshold),
                "gap": DASH if masked or is_missing(gap) else f"{100 * gap:+.1f}%p",
            }
        )
    return rows


def calibration_rows(follow: FollowUp, threshold: int) -> list[dict[str, Any]]:
    rows = []
    for r in follow.calibration.itertuples(index=False):
        masked = small(r.n, threshold) or small(r.positives, threshold)
        rows.append(
            {
                "bin": int(r.bin),
                "range": f"{100 * r.low:.1f}~{100 * r.high:.1f}%",
                "n": count(r.n, threshold),
                "mean_score": percent(r.mean_score),
                "realised": DASH if masked else percent(r.realised),
                "realised_value": None if masked else float(r.realised),
            }
        )
    return rows
