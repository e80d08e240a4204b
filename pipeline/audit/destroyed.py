"""Findings explained by a recorded destruction (``outreach retention``, docs/retention.md; and
refused households' rows left out of rebuilt feature rounds, ``pipeline.features.refusals``).

A retention run rewrites or removes files that rounds, training runs and manifests recorded by
sha256, and writes a ``data destroyed`` ledger record naming each file's sha256 before (and
after, for a rewritten file). A problem of a link is explained when the recorded digest leads,
through the records in ledger order, to what is there now: the file's current sha256, or
nothing when the chain ends in a removal. A link whose every problem is so explained is
``destroyed`` (it passes), with the date and the rule of the record; any other problem still
fails it. Pure: entries in, findings out.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pipeline.audit.findings import DESTROYED, FAILED, SKIPPED, Finding, result
from pipeline.io import short_digest as short
from pipeline.lineage.events import destructions

_DIFFERS = re.compile(
    r"^(?P<path>.+?): sha256 (?P<now>[0-9a-f]{12}) differs from the .*?(?P<was>[0-9a-f]{12})\b"
)
_MISSING_DIGEST = re.compile(r"^(?P<path>.+?): missing \(recorded sha256 (?P<was>[0-9a-f]{12})\)")
_MISSING_PATH = re.compile(r"^(?P<path>[^\s:]+): .*\bmissing\b")
_GONE = None


@dataclass
class Destroyed:
    """What the ledger's destruction records say: per path, digest -> digest after (None:
    removed), the paths removed, and the records themselves (oldest first)."""

    chain: dict[str, dict[str, str | None]] = field(default_factory=dict)
    removed: set[str] = field(default_factory=set)
    rounds: dict[str, Mapping[str, Any]] = field(default_factory=dict)  # round -> last record
    records: list[Mapping[str, Any]] = field(default_factory=list)

    def add(self, path: str, before: object, after: object) -> None:
        self.chain.setdefault(path, {})[short(before)] = short(after) if after else _GONE

    def final(self, path: str, digest: str) -> tuple[bool, str | None]:
        """(whether the file at ``path`` with ``digest`` was destroyed or rewritten, the short
        digest it became or None when it was removed)."""
        for recorded, steps in self.chain.items():
            if not same_path(path, recorded) or digest not in steps:
                continue
            seen = set()
            current: str | None = digest
            while current is not None and current in steps and current not in seen:
                seen.add(current)
                current = steps[current]
            return True, current
        return False, digest

    def path_removed(self, path: str) -> bool:
        return any(same_path(path, removed) for removed in self.removed)


def same_path(shown: str, recorded: str) -> bool:
    """Whether a path as a check shows it and as a record names it are the same file (one may
    be relative to the output root, the other absolute)."""
    shown, recorded = shown.rstrip("/"), recorded.rstrip("/")
    return shown == recorded or shown.endswith("/" + recorded) or recorded.endswith("/" + shown)


def destroyed_from(entries: Iterable[Mapping[str, Any]]) -> Destroyed:
    """The destruction records of the ledger's entries, as :class:`Destroyed`."""
    found = Destroyed()
    for entry in destructions(entries):
        facts = entry.get("facts") or {}
        found.records.append(facts)
        for label in facts.get("rounds", []):
            found.rounds[str(label)] = facts
        for item in facts.get("datasets", []):
            path = str(item.get("path"))
            if item.get("action") == "folder":
                found.removed.add(path)
                for name, digest in (item.get("files") or {}).items():
                    found.add(f"{path}/{name}", digest, None)
                    found.removed.add(f"{path}/{name}")
            elif item.get("action") == "file":
                found.add(path, item.get("sha256"), None)
                found.removed.add(path)
            elif item.get("sha256") and item.get("sha256_after"):
                found.add(path, item["sha256"], item["sha256_after"])
    return found


def explains(problem: str, destroyed: Destroyed) -> bool:
    """Whether a recorded destruction accounts for one problem line of a link."""
    if match := _DIFFERS.match(problem):
        known, now = destroyed.final(match["path"], match["was"])
        return known and now == match["now"]
    if match := _MISSING_DIGEST.match(problem):
        known, now = destroyed.final(match["path"], match["was"])
        return known and now is None
    if match := _MISSING_PATH.match(problem):
        return destroyed.path_removed(match["path"])
    return False


def _names_destroyed(message: str, destroyed: Destroyed, round_label: str) -> bool:
    """Whether a skipped link's reason names a file removed from the audited round."""
    prefix = f"rounds/{round_label}/"
    names = {p.rsplit("/", 1)[-1] for p in destroyed.removed if p.startswith(prefix)}
    return any(name in message for name in names)


def _when(records: Sequence[Mapping[str, Any]]) -> str:
    last = records[-1]
    day = str(last.get("destroyed_at", "?"))[:10]
    if "cut" not in last:  # not retention: refused households left out (pipeline.features)
        return f"rewritten on {day} without refused households' rows: {last.get('rule', '?')}"
    return (
        f"destroyed on {day} under the retention rule, "
        f"months before {last.get('cut', '?')}: {last.get('rule', '?')}"
    )


def mark_destroyed(
    findings: Sequence[Finding], entries: Iterable[Mapping[str, Any]], round_label: str | None
) -> list[Finding]:
    """The findings with every failure that recorded destructions explain marked ``destroyed``;
    unchanged when the ledger records none."""
    destroyed = destroyed_from(entries)
    if not destroyed.records:
        return list(findings)
    round_record = destroyed.rounds.get(str(round_label))
    out = []
    for finding in findings:
        if finding.status == FAILED:
            problems = list(finding.details) or [finding.message]
            left = [p for p in problems if not explains(p, destroyed)]
            if not left:
                message = (
                    f"{len(problems)} recorded file(s) {_when(destroyed.records)}; "
                    "the rest verifies"
                )
                out.append(Finding(finding.link, DESTROYED, message, (message, *problems)))
                continue
            if len(left) < len(problems):
                kept = result(finding.link, left, "")
                note = f"{len(problems) - len(left)} other(s) destroyed under retention"
                out.append(Finding(kept.link, FAILED, f"{kept.message}; {note}", kept.details))
                continue
        elif (
            finding.status == SKIPPED
            and round_record is not None
            and _names_destroyed(finding.message, destroyed, str(round_label))
        ):
            message = (
                f"{finding.message}: the round's household-level files were {_when([round_record])}"
            )
            out.append(Finding(finding.link, DESTROYED, message))
            continue
        out.append(finding)
    return out
