"""``outreach audit --household KEY ROUND``: one household of a round, and the chain behind it.

Owns what is shown of one household: its row of ``scores.parquet`` (only the columns in
:data:`SHOWN`: the household key is the administrative key a list carries, never a direct
identifier; ``scores.parquet`` holds none), its row in each list file of its 읍면동 and 시군구 (the
caseworker's note left out), its score re-computed with the registered model, and its reasons.
The chain is the round's audit (:func:`pipeline.audit.stage.audit_facts`) on the same facts, so
that the model is loaded once. Unknown keys are a usage error (exit code 2).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from pipeline.audit.facts import Facts
from pipeline.audit.findings import FAILED, OK, Finding
from pipeline.audit.readers import read_list
from pipeline.audit.rescore import rescore
from pipeline.audit.stage import AuditReport, audit_facts
from pipeline.datasets.rounds import LIST_SUFFIXES, LISTS, SCORES
from pipeline.errors import UsageError
from pipeline.vocabulary import EMD, KEY, KEY_FORM

HOUSEHOLD = "household"
# The columns of scores.parquet shown (an allow-list: nothing else is ever printed).
SHOWN = (
    KEY,
    "sigungu_code",
    EMD,
    "score",
    "model_rank",
    "tier",
    "selection_reason",
    "selection_probability",
    "list_rank",
    *(f"reason_{i}{part}" for i in (1, 2, 3) for part in ("", "_text", "_weight")),
)
# Columns of a list row shown (the caseworker's free-text note is left out).
LIST_SHOWN = (
    "list_rank",
    "tier",
    "risk_percent",
    "selection",
    "reason_1",
    "reason_2",
    "reason_3",
    "outcome_code",
    "contact_date",
)


@dataclass(frozen=True)
class HouseholdReport:
    """One household of the round: its scored row, its list rows, its score re-computed (None:
    not re-computed, ``error`` says why) and the round's audit."""

    key: str
    row: dict[str, Any]
    list_rows: dict[str, dict[str, str]] = field(default_factory=dict)
    recomputed: float | None = None
    error: str | None = None
    tolerance: float = 0.0
    model_label: str = ""
    audit: AuditReport | None = None

    @property
    def difference(self) -> float | None:
        if self.recomputed is None:
            return None
        return abs(self.recomputed - float(self.row["score"]))

    @property
    def finding(self) -> Finding:
        """The household's own line: its stored score against the re-computed one."""
        stored = float(self.row["score"])
        if self.recomputed is None:
            return Finding(HOUSEHOLD, FAILED, f"{self.key}: not re-scored: {self.error}")
        diff = self.difference or 0.0
        text = (
            f"{self.key}: stored {stored:.12f}, re-scored {self.recomputed:.12f} with "
            f"{self.model_label}: difference {diff:.3g} (tolerance {self.tolerance:g})"
        )
        return Finding(HOUSEHOLD, OK if diff <= self.tolerance else FAILED, text)

    @property
    def passed(self) -> bool:
        return self.finding.passed and (self.audit is None or self.audit.passed)

    def reasons(self) -> list[str]:
        out = []
        for i in (1, 2, 3):
            text = self.row.get(f"reason_{i}_text")
            if text is None or (isinstance(text, float) and math.isnan(text)) or text == "":
                continue
            weight = self.row.get(f"reason_{i}_weight")
            shown = f"{weight:.3f}" if isinstance(weight, float) and not math.isnan(weight) else ""
            out.append(f"{i}. {text} ({self.row.get(f'reason_{i}')}, weight {shown})")
        return out

    def as_dict(self) -> dict[str, Any]:
        finding = self.finding
        return {
            "key": self.key,
            "row": {k: _plain(v) for k, v in self.row.items()},
            "lists": self.list_rows,
            "stored": float(self.row["score"]),
            "recomputed": self.recomputed,
            "difference": self.difference,
            "tolerance": self.tolerance,
            "status": finding.status,
            "message": finding.message,
            "reasons": self.reasons(),
        }


def _plain(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    return value.item() if hasattr(value, "item") else value


def scored_row(facts: Facts, key: str) -> dict[str, Any]:
    """The household's row of ``scores.parquet`` (the :data:`SHOWN` columns); a usage error
    when the key is malformed or not scored in the round."""
    import pyarrow.parquet as pq

    path = facts.round_dir / SCORES
    if not re.fullmatch(KEY_FORM, key):
        raise UsageError(f"audit: {key!r} is not a household key (letters, digits, - and _)")
    if not path.is_file():
        raise UsageError(f"audit: {path} not found: the round has no scores")
    present = set(pq.read_schema(path).names)
    frame = pd.read_parquet(
        path, columns=[c for c in SHOWN if c in present], filters=[(KEY, "==", key)]
    )
    if frame.empty:
        raise UsageError(
            f"audit: household {key} is not in {facts.round_dir.name}/{SCORES}: not scored in "
            "this round (ineligible, or not a key of this round)"
        )
    return frame.iloc[0].to_dict()


def list_rows(facts: Facts, row: dict[str, Any]) -> dict[str, dict[str, str]]:
    """The household's row in each list file of its 읍면동 and 시군구 (shown columns only)."""
    sigungu, emd = str(row["sigungu_code"]), str(row[EMD])
    found = {}
    for stem in (f"emd_{emd}", f"sigungu_{sigungu}"):
        for suffix in LIST_SUFFIXES:
            relative = f"{LISTS}/{sigungu}/{stem}{suffix}"
            path = facts.round_dir / relative
            if not path.is_file():
                continue
            try:
                rows = read_list(path)
            except Exception as exc:  # the list rows link names the damaged file
                found[relative] = {"error": f"not readable ({exc})"}
                continue
            if KEY not in rows.columns:
                continue
            mine = rows[rows[KEY].astype(str) == str(row[KEY])]
            if len(mine):
                first = mine.iloc[0]
                found[relative] = {c: str(first[c]) for c in LIST_SHOWN if c in mine.columns}
    return found


def audit_household(facts: Facts, key: str) -> HouseholdReport:
    """The household's facts, its score re-computed, and the round's chain (on the same
    facts)."""
    row = scored_row(facts, key)
    report = audit_facts(facts)
    recomputed, error = None, None
    model = facts.model.model if not facts.without_manifest and not facts.store_missing else None
    if model is None:
        error = "the registered model could not be loaded (see the model version line)"
    else:
        one = pd.DataFrame([{KEY: key, "sigungu_code": row["sigungu_code"], "score": row["score"]}])
        compared, errors = rescore(facts.config, model, facts.features_dir, one)
        value = compared["recomputed"].iloc[0]
        if pd.isna(value):
            error = "; ".join(errors) or "its features are not in the round's feature folder"
        else:
            recomputed = float(value)
    return HouseholdReport(
        key=key,
        row=row,
        list_rows=list_rows(facts, row),
        recomputed=recomputed,
        error=error,
        tolerance=facts.config.scoring.audit_tolerance,
        model_label=facts.model_label if not facts.without_manifest else "?",
        audit=report,
    )


def describe_row(row: dict[str, Any]) -> str:
    """The scored row in one line."""
    rank = row.get("list_rank")
    listed = "" if rank is None or pd.isna(rank) else f", list rank {int(rank)}"
    return (
        f"{SCORES}: 시군구 {row['sigungu_code']}, 읍면동 {row[EMD]}, tier {row['tier']}{listed}, "
        f"model rank {_plain(row.get('model_rank'))}, score {float(row['score']):.12f}, selection "
        f"{row.get('selection_reason')} (probability {_plain(row.get('selection_probability'))})"
    )


def describe_list(relative: str, cells: dict[str, str]) -> str:
    shown = ", ".join(f"{k} {v!r}" for k, v in cells.items() if v != "")
    return f"{relative}: {shown}"
