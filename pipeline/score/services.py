"""The services suggested for listed households, as the list and the report show them.

The registered model carries the service match fitted with it (``service_match_``,
:class:`models.service_match.ServiceMatch`); scoring asks it for the top services of each listed
household and writes them with a short reason each: the rule mapping's reason is the group of
crisis signals that points to the kind of need the service covers, the learned match's estimated
chance of that need.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from models.service_match import MODEL, ServiceMatch, Suggestions
from pipeline.catalogue import IndicatorCatalogue
from pipeline.vocabulary import NEED_TYPE_TEXT, NEED_TYPES, SERVICE_COLUMNS, SERVICES_TEXT


def service_match(model: object) -> ServiceMatch | None:
    """The service match the registered model carries (None for a model trained without it)."""
    match = getattr(model, "service_match_", None)
    return match if isinstance(match, ServiceMatch) else None


def _reason(
    suggestions: Suggestions,
    row: int,
    place: int,
    groups: list[str],
    catalogue: IndicatorCatalogue,
    language: str,
) -> str:
    """Why a service was suggested: the kind of need it covers and what points to it (the
    learned match's estimated chance, or the rule mapping's signal group)."""
    need = int(suggestions.reason_need[row, place])
    if need < 0:
        return "자격 해당" if language == "ko" else "eligible"
    name = NEED_TYPE_TEXT[language][NEED_TYPES[need]]
    if suggestions.source[row, place] == MODEL:
        share = round(100 * float(suggestions.probability[row, place]))
        return f"{name} 필요 {share}%" if language == "ko" else f"{name} need {share}%"
    group = int(suggestions.reason_group[row, place])
    if group >= 0:
        entry = catalogue.groups[groups[group]]
        signal = entry.name_ko if language == "ko" else entry.name_en
        return f"{name}: {signal} 신호" if language == "ko" else f"{name}: {signal} signals"
    return name


def suggestion_columns(
    match: ServiceMatch,
    rows: pd.DataFrame,
    catalogue: IndicatorCatalogue,
    language: str,
) -> pd.DataFrame:
    """Per row of ``rows`` (features of listed households): the suggested service codes
    (:data:`SERVICE_COLUMNS`) and the list's text, e.g. ``1 긴급복지지원 (공과금 신호) · 2 …``."""
    suggestions = match.suggest(rows)
    services = match.catalogue.services
    out = pd.DataFrame(index=rows.index)
    for place, column in enumerate(SERVICE_COLUMNS):
        if place < suggestions.services.shape[1]:
            index = suggestions.services[:, place]
            codes = np.array([services[i].code if i >= 0 else None for i in index], dtype=object)
        else:
            codes = np.full(len(rows), None, dtype=object)
        out[column] = pd.array(codes, dtype="string")
    texts = []
    for row in range(len(rows)):
        parts = []
        for place, index in enumerate(suggestions.services[row]):
            if index < 0:
                continue
            service = services[index]
            name = service.name_ko if language == "ko" else service.name_en
            reason = _reason(suggestions, row, place, match.groups, catalogue, language)
            parts.append(f"{place + 1} {name} ({reason})")
        texts.append(" · ".join(parts))
    out[SERVICES_TEXT] = pd.array(texts, dtype="string")
    return out
