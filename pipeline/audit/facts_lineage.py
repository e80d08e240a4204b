"""The facts of the seals and the ledger, for :class:`pipeline.audit.facts.Facts`: each run's
sealed record as kept, the same record built from the store now, and the places that record
the seal's sha256 (read only; nothing is written)."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from typing import Any

from pipeline.lineage import ledger
from pipeline.tracking.runs import first_line
from pipeline.tracking.seal import read_seal, run_record

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SealFacts:
    """A run's sealed record (bytes as kept, or why not), the record now (or why not) and the
    seal sha256 each other place records (place -> sha256, None where it records none)."""

    run_id: str
    sealed: bytes | None
    sealed_error: str | None
    now: dict[str, Any] | None
    now_error: str | None
    recorded: dict[str, str | None] = field(default_factory=dict)

    @property
    def sealed_sha256(self) -> str | None:
        return hashlib.sha256(self.sealed).hexdigest() if self.sealed is not None else None

    @property
    def sealed_record(self) -> tuple[dict[str, Any] | None, str | None]:
        if self.sealed is None:
            return None, self.sealed_error
        try:
            data = json.loads(self.sealed.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            return None, f"the sealed record is not JSON ({first_line(exc)})"
        return (data, None) if isinstance(data, dict) else (None, "not a JSON object")


def seal_facts(
    client: Any,
    run_id: str,
    model: tuple[str, str] | None,
    recorded: dict[str, str | None],
) -> SealFacts:
    """Read the run's seal and build its record from the store now."""
    sealed, sealed_error = read_seal(client, run_id)
    try:
        now, now_error = run_record(client, run_id, model), None
    except Exception as exc:  # a run or version gone: the link says what could not be read
        log.debug("record of run %s", run_id, exc_info=True)
        now, now_error = None, first_line(exc)
    return SealFacts(run_id, sealed, sealed_error, now, now_error, recorded)


def round_entries(entries: tuple[dict[str, Any], ...], round_label: str) -> list[dict]:
    """The ledger's ``round scored`` entries of a round."""
    return [dict(e) for e in ledger.entries_of(entries, ledger.ROUND_SCORED, round=round_label)]


def registered_entries(entries: tuple[dict[str, Any], ...], model: str, version: str) -> list:
    return [
        dict(e)
        for e in ledger.entries_of(entries, ledger.MODEL_REGISTERED, model=model, version=version)
    ]
