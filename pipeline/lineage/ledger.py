"""The lineage ledger: ``<output_root>/ledger/lineage.jsonl``, append-only and hash-chained.

One JSON object per line, written canonically (keys sorted, UTF-8): ``seq`` (1, 2, ...), ``at``
(UTC time), ``event``, ``by`` (user and host of the command), ``facts`` (what happened) and
``prev`` (the previous entry's ``sha256``; the first entry's is 64 zeros). ``sha256`` is the
sha256 of the entry without it (:func:`entry_sha256`). Changing, removing or inserting an entry
breaks the chain at that entry; rewriting the whole chain changes the head, which every round
manifest and report already sent records (:func:`head`).

Appends hold an exclusive ``flock`` on the ledger file, check the chain they extend and write one
line with ``fsync`` (:func:`append`); nothing ever rewrites the file.
"""

from __future__ import annotations

import fcntl
import getpass
import json
import logging
import os
import socket
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipeline.datasets import OutputLayout
from pipeline.errors import DataError
from pipeline.io import sha256_of_json

log = logging.getLogger(__name__)

GENESIS = "0" * 64

# The events (the ``event`` field), in the words the audit prints.
MODEL_REGISTERED = "model registered"
GATES_DECIDED = "gates decided"
CHAMPION_MOVED = "champion moved"
CHALLENGER_MARKED = "challenger marked"
ROUND_SCORED = "round scored"
OUTCOMES_IMPORTED = "outcomes imported"
REPORT_WRITTEN = "report written"
SHADOW_SCORED = "shadow scored"
DATA_DESTROYED = "data destroyed"
OBJECTION_RECORDED = "objection recorded"
BUNDLE_EXPORTED = "bundle exported"
EVENTS = (
    MODEL_REGISTERED,
    GATES_DECIDED,
    CHAMPION_MOVED,
    CHALLENGER_MARKED,
    ROUND_SCORED,
    OUTCOMES_IMPORTED,
    REPORT_WRITTEN,
    SHADOW_SCORED,
    DATA_DESTROYED,
    OBJECTION_RECORDED,
    BUNDLE_EXPORTED,
)


@dataclass(frozen=True)
class Head:
    """The last entry of the ledger: its number and sha256 (0 and :data:`GENESIS` when empty)."""

    seq: int
    sha256: str

    def as_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "sha256": self.sha256}


EMPTY = Head(0, GENESIS)


@dataclass(frozen=True)
class Ledger:
    """The ledger as read: the entries that parse, in order, and what is wrong with the chain."""

    path: Path
    entries: tuple[dict[str, Any], ...]
    problems: tuple[str, ...]

    @property
    def head(self) -> Head:
        if not self.entries:
            return EMPTY
        last = self.entries[-1]
        return Head(int(last.get("seq", 0)), str(last.get("sha256", "")))


def ledger_file(root: Path) -> Path:
    return OutputLayout(root).ledger


def actor() -> str:
    """Who runs this command: ``user@host`` (the uid when the user has no name here)."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = f"uid {os.getuid()}"
    return f"{user}@{socket.gethostname()}"


def entry_sha256(entry: Mapping[str, Any]) -> str:
    """The sha256 an entry must carry: of the entry without its ``sha256`` field."""
    return sha256_of_json({k: v for k, v in entry.items() if k != "sha256"})


def entry_line(entry: Mapping[str, Any]) -> str:
    return json.dumps(entry, sort_keys=True, ensure_ascii=False) + "\n"


def split_lines(text: str) -> list[str]:
    """The ledger's lines with their line ends (only ``\\n`` ends a line: an entry's text may
    hold other line separators)."""
    parts = text.split("\n")
    lines = [part + "\n" for part in parts[:-1]]
    return [*lines, parts[-1]] if parts[-1] else lines


def verify(lines: Sequence[str]) -> tuple[list[dict[str, Any]], list[str]]:
    """The entries of the ledger's lines and every break in the chain (pure).

    Each entry must parse, be number ``n`` at line ``n``, name the previous entry's sha256 and
    carry its own; the last line must end the file (a line cut short is reported).
    """
    entries: list[dict[str, Any]] = []
    problems: list[str] = []
    prev = GENESIS
    for number, line in enumerate(lines, start=1):
        if not line.endswith("\n"):
            problems.append(f"entry {number} is cut short (no line end): written partly")
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.append(f"entry {number} is not JSON ({exc.msg})")
            prev = "?"
            continue
        if not isinstance(entry, dict):
            problems.append(f"entry {number} is not a JSON object")
            prev = "?"
            continue
        if entry.get("seq") != number:
            problems.append(f"entry {number} is numbered {entry.get('seq')!r}")
        if prev != "?" and entry.get("prev") != prev:
            problems.append(
                f"entry {number} ({entry.get('event')}) does not follow entry {number - 1}: "
                f"prev {str(entry.get('prev'))[:12]}, entry {number - 1} has {prev[:12]}"
            )
        recorded = str(entry.get("sha256", ""))
        if recorded != entry_sha256(entry):
            problems.append(
                f"entry {number} ({entry.get('event')}) was changed: its sha256 "
                f"{recorded[:12]} is not that of its content {entry_sha256(entry)[:12]}"
            )
        entries.append(entry)
        prev = recorded
    return entries, problems


def read(root: Path) -> Ledger:
    """The ledger under ``root`` (empty when there is none yet), verified."""
    path = ledger_file(root)
    if not path.is_file():
        return Ledger(path, (), ())
    text = path.read_text(encoding="utf-8", errors="replace")
    entries, problems = verify(split_lines(text))
    return Ledger(path, tuple(entries), tuple(problems))


def head(root: Path) -> Head:
    """The ledger's head now (:data:`EMPTY` before the first entry)."""
    return read(root).head


def append(
    root: Path, event: str, facts: Mapping[str, Any], *, by: str | None = None
) -> dict[str, Any]:
    """Add one entry to the ledger under ``root`` and return it.

    Refuses (``DataError`` naming the ledger and the break) to extend a chain that does not
    verify: a broken ledger is for an auditor to see, never to be papered over.
    """
    if event not in EVENTS:
        raise ValueError(f"unknown ledger event {event!r}")
    path = ledger_file(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+", encoding="utf-8") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            handle.seek(0)
            entries, problems = verify(split_lines(handle.read()))
            if problems:
                raise DataError(
                    f"{path}: the lineage ledger does not verify ({problems[0]}); nothing was "
                    "added: run `outreach audit` and restore the ledger from a trusted copy"
                )
            last = entries[-1] if entries else None
            entry: dict[str, Any] = {
                "seq": (int(last["seq"]) + 1) if last else 1,
                "at": datetime.now(UTC).isoformat(timespec="seconds"),
                "event": event,
                "by": by or actor(),
                "facts": dict(facts),
                "prev": str(last["sha256"]) if last else GENESIS,
            }
            entry["sha256"] = entry_sha256(entry)
            handle.write(entry_line(entry))
            handle.flush()
            os.fsync(handle.fileno())
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
    log.info("ledger %s: entry %d, %s", path, entry["seq"], event)
    return entry


def check_writable(root: Path) -> None:
    """Refuse, before any work, when the ledger under ``root`` does not verify."""
    ledger = read(root)
    if ledger.problems:
        raise DataError(
            f"{ledger.path}: the lineage ledger does not verify ({ledger.problems[0]}): run "
            "`outreach audit` and restore the ledger from a trusted copy"
        )


# --- questions the audit asks of the entries (pure) --------------------------------------


def entries_of(entries: Iterable[Mapping[str, Any]], event: str, **facts: Any) -> list[Mapping]:
    """The entries of ``event`` whose facts hold every ``facts`` item given."""
    return [
        e
        for e in entries
        if e.get("event") == event
        and all((e.get("facts") or {}).get(k) == v for k, v in facts.items())
    ]


def expected_aliases(entries: Iterable[Mapping[str, Any]], model: str) -> dict[str, str | None]:
    """Which version holds ``champion`` and ``challenger`` of ``model`` after the ledger's
    moves, in order (None: never given)."""
    aliases: dict[str, str | None] = {"champion": None, "challenger": None}
    for entry in entries:
        facts = entry.get("facts") or {}
        if facts.get("model") != model:
            continue
        if entry.get("event") == CHAMPION_MOVED:
            aliases["champion"] = str(facts.get("version"))
        elif entry.get("event") == CHALLENGER_MARKED:
            aliases["challenger"] = str(facts.get("version"))
    return aliases
