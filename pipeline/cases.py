"""Case state: what became of each listed household of a round, and which cases go on.

Pure functions over frames (the readers are in :mod:`pipeline.datasets.cases`). The words are
those of ``configs/outcomes.yaml``: every visit outcome and call result names a case status
(``case_statuses``) and a column of the ministry's table (``ministry_categories``).

One row per household of a round's list (visit and phone tiers) and per household a caseworker
added. Its status, in this order of precedence:

1. a skip override: ``skipped`` (the caseworker chose not to go on; the import takes a skip
   only with no outcome, or with one of a contact that did not happen);
2. the visit outcome the 읍면동 returned (a visit is later and surer than a call);
3. the result of the automated first-contact call (phone tier);
4. nothing came back: ``not_returned``.

A case is *pending* while nothing final is known (not returned, in progress, not reached) and
*overdue* when it is not returned or still in progress after its round's interval has ended
(``due_month``, judged at ``now_month``: the end of the data window, never the wall clock).

Carry-over (:func:`carried_cases`): an open case of the previous round (an outcome with
``carry: true``, i.e. unreachable or in progress; or a call result whose ``next_tier`` is a
visit or another call) is placed on the next round's list with selection reason
``carried_over`` and its history, until it is resolved or carried ``max_rounds`` times. A
household not reached by phone ``escalate_phone_after`` times in a row is carried to the visit
tier; one the call service says needs a visit goes to the visit tier at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from pipeline.vocabulary import (
    LOCAL_DISCRETION,
    NOT_RETURNED,
    PHONE,
    SKIPPED,
    TIER_TEXT,
    VISIT,
)

if TYPE_CHECKING:
    from pipeline.catalogue import OutcomeCatalogue

PENDING = ("not_returned", "in_progress", "not_reached")
OVERDUE = ("not_returned", "in_progress")
CASE_COLUMNS = (
    "household_key",
    "sigungu_code",
    "emd_code",
    "tier",
    "list_rank",
    "selection_reason",
    "added",
    "outcome_code",
    "contact_date",
    "call_result",
    "call_date",
    "override_code",
    "status",
    "ministry",
    "no_support_reason",
    "pending",
    "overdue",
    "carried_rounds",
    "phone_attempts",
    "case_history",
)
# What carry-over writes into the next round's scores, per carried household.
CARRY_COLUMNS = (
    "household_key",
    "sigungu_code",
    "emd_code",
    "tier",
    "carried_rounds",
    "phone_attempts",
    "case_history",
)
HISTORY_ENTRIES = 3  # the case history on a list keeps the latest entries


@dataclass(frozen=True)
class CarryPolicy:
    """How open cases go on (``scoring.carry_over`` of the config)."""

    max_rounds: int
    escalate_phone_after: int


def _text(values: pd.Series) -> pd.Series:
    return values.astype("string")


def _column(frame: pd.DataFrame | None, name: str, index: pd.Index) -> pd.Series:
    if frame is None or name not in frame.columns:
        return pd.Series(pd.NA, index=index, dtype="object")
    return frame[name].reindex(index)


def round_cases(
    listed: pd.DataFrame,
    outcomes: pd.DataFrame | None,
    calls: pd.DataFrame | None,
    catalogue: OutcomeCatalogue,
    *,
    now_month: int,
    due_month: int,
) -> pd.DataFrame:
    """The case of every listed and added household of one round (columns ``CASE_COLUMNS``),
    sorted by 읍면동, list rank (added households last) and key.

    ``listed``: the round's scores of the visit and phone tiers (household_key, sigungu_code,
    emd_code, tier, list_rank, selection_reason; carried_rounds, phone_attempts and
    case_history when the round has them). ``outcomes``: the round's imported visit outcomes
    (``pipeline.datasets.outcomes``), ``calls``: its call results, or None.
    """
    base = pd.DataFrame(
        {
            "household_key": _text(listed["household_key"]).to_numpy(),
            "sigungu_code": _text(listed["sigungu_code"]).to_numpy(),
            "emd_code": _text(listed["emd_code"]).to_numpy(),
            "tier": _text(listed["tier"]).to_numpy(),
            "list_rank": pd.array(listed["list_rank"], dtype="Int64"),
            "selection_reason": _text(listed["selection_reason"]).to_numpy(),
            "added": False,
        }
    )
    for name, default in (("carried_rounds", 0), ("phone_attempts", 0)):
        values = listed[name] if name in listed.columns else pd.Series(default, index=listed.index)
        base[name] = pd.array(values.fillna(default), dtype="int64")
    history = listed["case_history"] if "case_history" in listed.columns else None
    base["case_history"] = (
        pd.Series("", index=base.index, dtype="string")
        if history is None
        else _text(history).fillna("").to_numpy()
    )
    if outcomes is not None and len(outcomes):
        answers = outcomes.assign(household_key=_text(outcomes["household_key"]))
        added = answers[
            answers["added_by_caseworker"].astype(bool)
            & ~answers["household_key"].isin(base["household_key"])
        ]
        if len(added):
            extra = pd.DataFrame(
                {
                    "household_key": added["household_key"].to_numpy(),
                    "sigungu_code": _text(added["sigungu_code"]).to_numpy(),
                    "emd_code": _text(added["emd_code"]).to_numpy(),
                    "tier": pd.array([pd.NA] * len(added), dtype="string"),
                    "list_rank": pd.array([pd.NA] * len(added), dtype="Int64"),
                    "selection_reason": LOCAL_DISCRETION,
                    "added": True,
                    "carried_rounds": 0,
                    "phone_attempts": 0,
                    "case_history": "",
                }
            )
            base = pd.concat([base, extra], ignore_index=True)
        answers = answers.drop_duplicates("household_key", keep="last").set_index("household_key")
    else:
        answers = None
    keyed = pd.Index(base["household_key"])
    base["outcome_code"] = _text(_column(answers, "outcome_code", keyed)).to_numpy()
    base["contact_date"] = _column(answers, "contact_date", keyed).to_numpy()
    base["override_code"] = _text(_column(answers, "override_code", keyed)).to_numpy()
    if calls is not None and len(calls):
        results = calls.assign(household_key=_text(calls["household_key"]))
        results = results.drop_duplicates("household_key", keep="last").set_index("household_key")
    else:
        results = None
    base["call_result"] = _text(_column(results, "call_result", keyed)).to_numpy()
    base["call_date"] = _column(results, "call_date", keyed).to_numpy()

    status, ministry, reason = _classify(base, catalogue)
    base["status"] = pd.array(status, dtype="string")
    base["ministry"] = pd.array(ministry, dtype="string")
    base["no_support_reason"] = pd.array(reason, dtype="string")
    base["pending"] = base["status"].isin(PENDING).to_numpy(dtype=bool)
    base["overdue"] = (base["status"].isin(OVERDUE) & (now_month > due_month)).to_numpy(dtype=bool)
    order = np.lexsort(
        (
            base["household_key"].to_numpy(dtype=str),
            base["list_rank"].fillna(np.iinfo(np.int64).max).to_numpy(dtype=np.int64),
            base["emd_code"].to_numpy(dtype=str),
        )
    )
    return base.iloc[order][list(CASE_COLUMNS)].reset_index(drop=True)


def _classify(
    base: pd.DataFrame, catalogue: OutcomeCatalogue
) -> tuple[list[str], list[str | None], list[str | None]]:
    outcomes = {o.code: o for o in catalogue.outcomes}
    results = {c.code: c for c in catalogue.call_results}
    skips = {r.code for r in catalogue.override_reasons if r.action == "skip"}
    status: list[str] = []
    ministry: list[str | None] = []
    reason: list[str | None] = []
    columns = zip(
        base["outcome_code"].tolist(),
        base["override_code"].tolist(),
        base["call_result"].tolist(),
        strict=True,
    )
    for outcome, override, call in columns:
        entry = None
        if not pd.isna(override) and override in skips:
            # the caseworker chose not to go on (the import accepts a skip only with no outcome
            # or one of a contact that did not happen: unreachable, in progress)
            status.append(SKIPPED)
            ministry.append(None)
            reason.append(None)
            continue
        if not pd.isna(outcome) and outcome in outcomes:
            entry = outcomes[outcome]
        elif not pd.isna(call) and call in results:
            entry = results[call]
        if entry is None:
            status.append(NOT_RETURNED)
            ministry.append(None)
            reason.append(None)
        else:
            status.append(entry.status)
            ministry.append(entry.ministry)
            reason.append(entry.no_support_reason)
    return status, ministry, reason


def carried_cases(
    cases: pd.DataFrame,
    round_label: str,
    catalogue: OutcomeCatalogue,
    policy: CarryPolicy,
    language: str = "ko",
) -> pd.DataFrame:
    """The open cases of round ``round_label`` (its :func:`round_cases`) that go on to the next
    round (columns ``CARRY_COLUMNS``: the tier there, how often carried, unsuccessful phone
    attempts in a row, the history a caseworker reads), sorted by key."""
    if policy.max_rounds <= 0 or cases.empty:
        return pd.DataFrame({c: pd.Series(dtype="object") for c in CARRY_COLUMNS})
    outcomes = {o.code: o for o in catalogue.outcomes}
    results = {c.code: c for c in catalogue.call_results}
    tier_text = TIER_TEXT[language]
    rows = []
    for case in cases.itertuples(index=False):
        if case.carried_rounds >= policy.max_rounds or case.status == SKIPPED:
            continue
        outcome = None if pd.isna(case.outcome_code) else outcomes.get(case.outcome_code)
        call = None if pd.isna(case.call_result) else results.get(case.call_result)
        tier = case.tier if isinstance(case.tier, str) else VISIT  # an added household: a visit
        if outcome is not None:
            if not outcome.carry:
                continue
            answer = outcome.name_ko if language == "ko" else outcome.name_en
            not_reached = outcome.status == "not_reached"
            next_tier = tier
        elif call is not None and case.status != SKIPPED:
            if call.next_tier == "none":
                continue
            answer = call.name_ko if language == "ko" else call.name_en
            not_reached = call.status == "not_reached"
            next_tier = VISIT if call.next_tier == "visit" else PHONE
        else:
            continue
        attempts = case.phone_attempts + 1 if (tier == PHONE and not_reached) else 0
        escalated = next_tier == PHONE and attempts >= policy.escalate_phone_after
        if escalated:
            next_tier = VISIT
        entry = f"{round_label} {tier_text.get(tier, tier)}: {answer}"
        if escalated:
            entry += " → 방문 전환" if language == "ko" else " → now a visit"
        earlier = [e for e in str(case.case_history or "").split(" / ") if e]
        history = " / ".join([*earlier, entry][-HISTORY_ENTRIES:])
        rows.append(
            {
                "household_key": case.household_key,
                "sigungu_code": case.sigungu_code,
                "emd_code": case.emd_code,
                "tier": next_tier,
                "carried_rounds": int(case.carried_rounds) + 1,
                "phone_attempts": attempts if next_tier == PHONE else 0,
                "case_history": history,
            }
        )
    frame = pd.DataFrame(rows, columns=list(CARRY_COLUMNS))
    return frame.sort_values("household_key", kind="stable").reset_index(drop=True)
