"""The text of one household's explanation, in plain Korean (pure: no file access).

Built from what the round recorded (:class:`pipeline.explain.facts.RoundHousehold`): the tier,
the score's band (``pipeline.vocabulary``), the selection reason's name (the outcome catalogue),
the reasons exactly as the score stage wrote them, the source agency of each kind of crisis
information the model read about the household (the indicator catalogue), and the source and
legal basis of each kind of data (the data-source catalogue, ``configs/data_sources.yaml``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from pipeline.catalogue import IndicatorCatalogue, OutcomeCatalogue
from pipeline.explain.facts import RoundHousehold
from pipeline.vocabulary import (
    CARRIED_OVER,
    EXPLORATION,
    LISTED_TIERS,
    PHONE,
    TIER_TEXT,
    VISIT,
    risk_band_text,
    risk_percent,
)

# The raw tables the household facts and the earlier rounds' records come from (their entries
# of the data-source catalogue name them, their agencies and legal basis).
HOUSEHOLD_TABLE = "households"
HISTORY_TABLE = "outreach_outcomes"
NOT_LISTED = "이번 회차 연락 대상 아님"
OUTCOME_TEXT = {
    VISIT: (
        "이번 회차의 방문 대상 목록에 올랐습니다. 담당 공무원이 찾아뵙고 안부를 여쭈며, "
        "받으실 수 있는 도움을 안내해 드리려 합니다."
    ),
    PHONE: (
        "이번 회차의 전화 확인 대상 목록에 올랐습니다. 먼저 전화로 안부를 여쭈고, "
        "받으실 수 있는 도움을 안내해 드리려 합니다."
    ),
}
NOT_LISTED_TEXT = (
    "이번 회차에는 연락 대상 목록에 오르지 않았습니다. 이 결과로 달라지는 것은 없습니다. "
    "도움이 필요하시면 언제든지 직접 상담하고 신청하실 수 있습니다."
)
# Why a listed household was chosen, beyond the reasons, when the model's rank was not why.
SELECTION_NOTE = {
    EXPLORATION: (
        "이 가구는 AI 점수 순위가 아니라, 모형이 놓치는 가구가 없는지 점검하려고 "
        "일정 비율을 무작위로 뽑는 방식으로 선정되었습니다."
    ),
    CARRIED_OVER: "지난 회차에 시작된 연락이 끝나지 않아 이번 회차로 이어졌습니다.",
}


@dataclass(frozen=True)
class AgencyData:
    """One source agency and the kinds of crisis information it reported about the household."""

    agency: str
    kinds: tuple[str, ...]


def agencies_of(codes: tuple[str, ...], catalogue: IndicatorCatalogue) -> list[AgencyData]:
    """The source agencies of the indicators ``codes``, in catalogue order, each with its
    indicators' Korean names."""
    wanted = set(codes)
    out: dict[str, list[str]] = {}
    for indicator in catalogue.indicators:
        if indicator.code in wanted:
            out.setdefault(indicator.agency_ko, []).append(indicator.name_ko)
    return [AgencyData(agency, tuple(kinds)) for agency, kinds in out.items()]


def source_of(sources: list[dict[str, Any]], table: str) -> dict[str, Any] | None:
    """The entry of the resolved data-source catalogue (``DataSourceCatalogue.resolved``) whose
    data comes from the raw table ``table`` (the first one; None when none does)."""
    return next((s for s in sources if table in s["tables"] and s["group"] is None), None)


def _source_text(source: dict[str, Any] | None) -> str:
    if source is None:
        return ""
    agencies = ", ".join(a["ko"] for a in source["agencies"])
    return f"{source['name_ko']} · {agencies} · 근거: {source['legal_basis_ko']}"


def crisis_bases(
    codes: tuple[str, ...], catalogue: IndicatorCatalogue, sources: list[dict[str, Any]]
) -> list[str]:
    """The legal bases of the indicator groups of ``codes`` (each once, in source order)."""
    groups = {i.group for i in catalogue.indicators if i.code in set(codes)}
    bases = [s["legal_basis_ko"] for s in sources if s["group"] in groups]
    return list(dict.fromkeys(bases))


def explanation_context(
    household: RoundHousehold,
    catalogue: IndicatorCatalogue,
    outcomes: OutcomeCatalogue,
    sources: list[dict[str, Any]],
) -> dict[str, object]:
    """Everything the explanation template shows about ``household``; ``sources`` is the
    resolved data-source catalogue."""
    row = household.row
    tier = str(row["tier"])
    listed = tier in LISTED_TIERS
    score = float(row["score"])
    selection = str(row.get("selection_reason") or "")
    names = {r.code: r.name_ko for r in outcomes.selection_reasons}
    rank = row.get("list_rank")
    office = f"{household.emd_name} 행정복지센터"
    return {
        "key": household.key,
        "round": household.round,
        "office": office,
        "emd_name": household.emd_name,
        "sigungu_name": household.sigungu_name,
        "listed": listed,
        "tier_text": TIER_TEXT["ko"][tier] if listed else NOT_LISTED,
        "outcome_text": OUTCOME_TEXT[tier] if listed else NOT_LISTED_TEXT,
        "risk_percent": risk_percent(score),
        "risk_band": risk_band_text(score, "ko"),
        "selection": names.get(selection, selection) if listed else None,
        "selection_note": SELECTION_NOTE.get(selection) if listed else None,
        "list_rank": int(rank) if listed and rank is not None and not pd.isna(rank) else None,
        "reasons": list(household.reasons) if listed else [],
        "services": household.services if listed else "",
        "agencies": agencies_of(household.used.indicators, catalogue),
        "crisis_bases": crisis_bases(household.used.indicators, catalogue, sources),
        "household_facts": list(household.used.household),
        "household_source": _source_text(source_of(sources, HOUSEHOLD_TABLE)),
        "history_source": _source_text(source_of(sources, HISTORY_TABLE)),
        "history": household.used.history,
        "area": household.used.area,
        "model": household.model,
        "manifest_sha256": household.manifest_sha256,
    }
