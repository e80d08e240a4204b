"""The high-impact AI file of a registered version (``models.ai_file``) in the MLflow store.

``train`` writes it once the run has finished, before the run is sealed
(:func:`write_ai_file`): the run's record is built exactly as the seal builds it
(:func:`pipeline.tracking.seal.run_record`), the file is generated from it and from the run's
artifacts it names (:data:`SOURCES`), logged as the run's artifact ``ai_file/ai_file.md`` and
linked from the version by the tags ``ai_file`` and ``ai_file_sha256``. The seal then covers the
file (its sha256 among the run's artifacts) and the link (among the version's tags).

The audit generates it again from the *sealed* record (:func:`generate`): the generator reads
nothing that logging the file changed (see ``models.ai_file``), so the two must be equal byte
for byte.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from models.ai_file import AiFileInputs, render_ai_file
from pipeline.tracking import names
from pipeline.tracking.seal import run_record

log = logging.getLogger(__name__)

# The run's artifacts the file is generated from, by role.
SOURCES: dict[str, str] = {
    "config": names.RESOLVED_CONFIG,
    "data_sources": names.DATA_SOURCES,
    "fairness": names.FAIRNESS,
    "proxy": names.PROXY_CHECK,
    "overrides": names.OVERRIDES,
}
VERSION_TAG = "ai_file"  # the version's link: runs:/<run>/ai_file/ai_file.md
VERSION_SHA_TAG = "ai_file_sha256"


def source_problems(record: Mapping[str, Any], read: Mapping[str, bytes | None]) -> list[str]:
    """Each source artifact whose bytes are not those the record's sha256 names (or that the
    record names but could not be read): one line each. Pure."""
    digests = record.get("artifacts") or {}
    problems = []
    for role, path in SOURCES.items():
        recorded, data = digests.get(path), read.get(role)
        if recorded is None and data is None:
            continue  # the run kept none (no truth: no fairness tables)
        if data is None:
            problems.append(f"artifact {path}: not readable (recorded sha256 {recorded[:12]})")
        elif recorded is None:
            problems.append(f"artifact {path}: not in the record")
        elif hashlib.sha256(data).hexdigest() != recorded:
            problems.append(f"artifact {path}: sha256 differs from the record's {recorded[:12]}")
    return problems


def generate(record: Mapping[str, Any], read: Mapping[str, bytes | None]) -> str:
    """The AI file from a training run's record and its source artifacts' bytes (by role)."""
    inputs = AiFileInputs(record=record, **{role: read.get(role) for role in SOURCES})
    return render_ai_file(inputs, SOURCES)


def read_sources(read_artifact: Callable[[str], bytes | None]) -> dict[str, bytes | None]:
    """The source artifacts' bytes by role, read with ``read_artifact(path)``."""
    return {role: read_artifact(path) for role, path in SOURCES.items()}


def version_tags(run_id: str, sha256: str) -> dict[str, str]:
    """The version's link to its AI file: where it is and its sha256."""
    return {VERSION_TAG: f"runs:/{run_id}/{names.AI_FILE}", VERSION_SHA_TAG: sha256}


def write_ai_file(client: Any, run_id: str, model: tuple[str, str]) -> str:
    """Generate the finished run's AI file from its record, log it, link it from the version
    ``model`` = (name, version); return its sha256. Called before the run is sealed."""

    record = run_record(client, run_id, model)
    with tempfile.TemporaryDirectory(prefix="outreach-ai-file-") as tmp:

        def read(path: str) -> bytes | None:
            if path not in (record.get("artifacts") or {}):
                return None
            return Path(client.download_artifacts(run_id, path, tmp)).read_bytes()

        sources = read_sources(read)
    problems = source_problems(record, sources)
    if problems:  # the store changed between two reads of one process: never expected
        raise RuntimeError(f"AI file of run {run_id}: {problems[0]}")
    text = generate(record, sources)
    sha = hashlib.sha256(text.encode("utf-8")).hexdigest()
    client.log_text(run_id, text, names.AI_FILE)
    for key, value in version_tags(run_id, sha).items():
        client.set_model_version_tag(model[0], model[1], key, value)
    log.info("AI file of %s version %s: %s", model[0], model[1], sha[:12])
    return sha


__all__ = [
    "SOURCES",
    "VERSION_SHA_TAG",
    "VERSION_TAG",
    "generate",
    "read_sources",
    "source_problems",
    "version_tags",
    "write_ai_file",
]
