"""The link ``ai file``: the high-impact AI file of the round's model version (docs/audit.md).

The file (``ai_file/ai_file.md`` of the training run, ``pipeline.tracking.ai_file``) must be in
the training run's sealed record, have the sealed sha256 now, be what the version's tags
``ai_file`` and ``ai_file_sha256`` link, and equal what the sealed record generates again
(``models.ai_file``, from the sealed record and the source artifacts it digests); the report's
copy (``report/ai_file.md``), when there is one, must be the sealed file. A file changed by one
byte, removed, or no longer what its record says fails, with the reason named.

:func:`gather` reads (MLflow through ``pipeline.tracking``); :func:`check_ai_file` is pure.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from typing import Any

from pipeline.audit.facts import Facts
from pipeline.audit.findings import AI_FILE, Finding, result, short
from pipeline.datasets.rounds import REPORT, REPORT_AI_FILE
from pipeline.tracking.ai_file import (
    VERSION_SHA_TAG,
    VERSION_TAG,
    generate,
    read_sources,
    source_problems,
    version_tags,
)
from pipeline.tracking.names import AI_FILE as AI_FILE_ARTIFACT
from pipeline.tracking.runs import RunFacts, artifact_bytes, first_line

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AiFileFacts:
    """The sealed record's view of the file and the file as the store holds it now."""

    label: str  # "welfare-outreach v3"
    run_id: str
    sealed_sha256: str | None  # the file's sha256 in the sealed record (None: not sealed)
    record_error: str | None = None  # why the sealed record could not be read
    stored: bytes | None = None  # the file now (None: not there)
    version_tags: dict[str, str] | None = field(default_factory=dict)  # None: no version now
    source_problems: tuple[str, ...] = ()  # source artifacts not as the record digests them
    regenerated: str | None = None  # generated again from the sealed record
    generate_error: str | None = None
    report_copy: bytes | None = None  # the report's copy (None: no report, or none linked)


def _first_difference(a: str, b: str) -> str:
    for number, (x, y) in enumerate(zip(a.splitlines(), b.splitlines(), strict=False), 1):
        if x != y:
            return f"line {number}: {x[:60]!r} where the record gives {y[:60]!r}"
    return f"length {len(a)} where the record gives {len(b)} characters"


def check_ai_file(facts: AiFileFacts) -> list[Finding]:
    """The finding of the link: every problem named, else what was verified."""
    where = f"{AI_FILE_ARTIFACT} of {facts.label} (training run {facts.run_id[:12]})"
    if facts.record_error is not None:
        return [result(AI_FILE, [f"{where}: the sealed record: {facts.record_error}"], "")]
    if facts.sealed_sha256 is None:
        return [
            result(
                AI_FILE,
                [f"{where}: not in the training run's sealed record (no AI file was sealed)"],
                "",
            )
        ]
    problems: list[str] = []
    if facts.stored is None:
        problems.append(f"{where}: missing (sealed sha256 {short(facts.sealed_sha256)})")
    else:
        now = hashlib.sha256(facts.stored).hexdigest()
        if now != facts.sealed_sha256:
            problems.append(
                f"{where}: sha256 {short(now)} differs from the sealed "
                f"{short(facts.sealed_sha256)}: changed after training"
            )
    expected = version_tags(facts.run_id, facts.sealed_sha256)
    for key in (VERSION_TAG, VERSION_SHA_TAG) if facts.version_tags is not None else ():
        # without a version the link `model version` says it is gone
        if facts.version_tags.get(key) != expected[key]:
            problems.append(
                f"the version's tag {key} is {facts.version_tags.get(key)!r}, the sealed record "
                f"gives {expected[key]!r}"
            )
    problems += [f"{where}: source {p}" for p in facts.source_problems]
    if facts.generate_error is not None:
        problems.append(f"{where}: cannot be generated again ({facts.generate_error})")
    elif facts.stored is not None and facts.regenerated is not None:
        text = facts.stored.decode("utf-8", errors="replace")
        if text != facts.regenerated:
            problems.append(
                f"{where}: does not match what the sealed record generates "
                f"({_first_difference(text, facts.regenerated)})"
            )
    copied = ""
    if facts.report_copy is not None:
        copy_sha = hashlib.sha256(facts.report_copy).hexdigest()
        copied = "; the report's copy is the sealed file"
        if copy_sha != facts.sealed_sha256:
            problems.append(
                f"{REPORT}/{REPORT_AI_FILE}: sha256 {short(copy_sha)} is not the sealed AI file "
                f"{short(facts.sealed_sha256)}"
            )
    return [
        result(
            AI_FILE,
            problems,
            f"{where}: sha256 {short(facts.sealed_sha256)} as sealed and linked from the "
            f"version; generated again from the sealed record: identical{copied}",
        )
    ]


def gather(
    label: str,
    run: RunFacts | None,
    run_id: str,
    sealed: tuple[dict[str, Any] | None, str | None],
    tags_now: dict[str, str] | None,
    report_copy: bytes | None = None,
) -> AiFileFacts:
    """Read the file and its sources from the training run, and generate it again from the
    sealed record ``sealed`` (record, or None and why not)."""
    record, error = sealed
    if record is None:
        return AiFileFacts(label, run_id, None, record_error=error or "not readable")
    sealed_sha = (record.get("artifacts") or {}).get(AI_FILE_ARTIFACT)
    if sealed_sha is None:
        return AiFileFacts(label, run_id, None)
    stored = artifact_bytes(run, AI_FILE_ARTIFACT) if run is not None else None
    sources = read_sources(lambda path: artifact_bytes(run, path) if run is not None else None)
    regenerated, generate_error = None, None
    try:
        regenerated = generate(record, sources)
    except Exception as exc:  # a source unreadable or not what the generator reads: named
        log.debug("AI file of run %s", run_id, exc_info=True)
        generate_error = first_line(exc)
    return AiFileFacts(
        label,
        run_id,
        sealed_sha,
        stored=stored,
        version_tags=None if tags_now is None else dict(tags_now),
        source_problems=tuple(source_problems(record, sources)),
        regenerated=regenerated,
        generate_error=generate_error,
        report_copy=report_copy,
    )


def ai_file_link(f: Facts) -> list[Finding]:
    """The chain's link, on the audit's facts."""
    version = f.version[0]
    copy = f.round_dir / REPORT / REPORT_AI_FILE
    facts = gather(
        f.model_label,
        f.training_run[0],
        f.training_seal.run_id,
        f.training_seal.sealed_record,
        dict(version.tags) if version is not None else None,
        copy.read_bytes() if copy.is_file() else None,
    )
    return check_ai_file(facts)
