"""Pure checks of what the round was made from: the ``training data``, ``scoring features``,
``validation``, ``code version`` and ``re-score`` links.

Facts in, findings out: feature folders as found on disk (:class:`FolderFacts`), the validation
records (:class:`ValidationFacts`), whether recorded commits exist, and stored against
re-computed scores, all gathered by :mod:`pipeline.audit.facts` and
:mod:`pipeline.audit.rescore`. Nothing here reads a file, talks to MLflow or runs git. The checks
of the round's own files are in :mod:`pipeline.audit.checks_files`, those of the MLflow records in
:mod:`pipeline.audit.checks_mlflow`; each check returns a list of findings, so that the chain
goes on after a failure and an auditor sees every broken link at once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pipeline.audit.findings import (
    CODE,
    FEATURE_FOLDERS_ARTIFACT,
    OK,
    SCORING_FEATURES,
    TRAINING_DATA,
    UNVERIFIABLE,
    VALIDATION,
    VALIDATION_ARTIFACT,
    Finding,
    compare_files,
    dig,
    result,
    short,
)
from pipeline.datasets.features import MANIFEST as FEATURES_MANIFEST

# --- data digests ----------------------------------------------------------------------------


@dataclass(frozen=True)
class FolderFacts:
    """A feature folder as found on disk: ``manifest_sha256`` None when it or its manifest is
    missing; ``files_sha256`` the files now there (manifest.json excepted)."""

    shown_as: str
    manifest_sha256: str | None
    files_sha256: Mapping[str, str] = field(default_factory=dict)
    staged_manifest_sha256: str | None = None  # the staged tables it was built from
    staged_view_sha256: str | None = None  # what it read of them (its as-of's view)


def check_training_data(
    digest_tag: str | None,
    recorded: Mapping[str, Mapping[str, Any]] | None,
    folders: Mapping[str, FolderFacts],
    digest_of: Callable[[Any], str],
) -> list[Finding]:
    """The feature folders the training run recorded still exist with the same content.

    ``recorded`` is the run's ``lineage/feature_folders.json`` (month -> manifest_sha256 and
    files_sha256); ``digest_of`` is how the training stage digests ``{month: manifest_sha256}``.
    """
    if recorded is None:
        return [
            result(TRAINING_DATA, [f"the training run holds no {FEATURE_FOLDERS_ARTIFACT}"], "")
        ]
    problems: list[str] = []
    recomputed = digest_of({m: v.get("manifest_sha256") for m, v in recorded.items()})
    if recomputed != digest_tag:
        problems.append(
            f"{FEATURE_FOLDERS_ARTIFACT} digests to {short(recomputed)}, the training run's "
            f"features digest is {short(digest_tag)}"
        )
    for month in sorted(recorded):
        facts = folders.get(month)
        if facts is None or facts.manifest_sha256 is None:
            where = facts.shown_as if facts else f"as_of={month}"
            problems.append(f"{where}: feature folder of the training data is missing")
            continue
        want = recorded[month].get("manifest_sha256")
        if facts.manifest_sha256 != want:
            problems.append(
                f"{facts.shown_as}/{FEATURES_MANIFEST}: sha256 {short(facts.manifest_sha256)} "
                f"differs from the training run's {short(want)}"
            )
        problems += compare_files(
            recorded[month].get("files_sha256") or {}, facts.files_sha256, facts.shown_as
        )
    months = sorted(recorded)
    span = f"{months[0]} … {months[-1]}" if months else "none"
    return [
        result(
            TRAINING_DATA,
            problems,
            f"{len(months)} feature folders ({span}) match the training run's record; digest "
            f"{short(recomputed)}",
        )
    ]


def check_scoring_features(manifest: Mapping[str, Any], folder: FolderFacts) -> list[Finding]:
    """The round's feature folder holds the files the round was scored from."""
    if folder.manifest_sha256 is None:
        return [result(SCORING_FEATURES, [f"{folder.shown_as}: feature folder missing"], "")]
    problems = []
    want = dig(manifest, "features.manifest_sha256")
    if folder.manifest_sha256 != want:
        problems.append(
            f"{folder.shown_as}/{FEATURES_MANIFEST}: sha256 {short(folder.manifest_sha256)} "
            f"differs from the round manifest's {short(want)}"
        )
    staged = dig(manifest, "staged.manifest_sha256")
    view = dig(manifest, "staged.view_sha256")
    if view and folder.staged_view_sha256:  # a folder kept over an ingest of later months
        if folder.staged_view_sha256 != view:
            problems.append(
                f"{folder.shown_as} read staged rows {short(folder.staged_view_sha256)}, the "
                f"round records staged rows {short(view)} for its as-of: scored from stale features"
            )
    elif staged and folder.staged_manifest_sha256 and folder.staged_manifest_sha256 != staged:
        problems.append(
            f"{folder.shown_as} was built from staged tables {short(folder.staged_manifest_sha256)}"
            f", the round records staged tables {short(staged)}: scored from stale features"
        )
    recorded = dig(manifest, "features.files_sha256") or {}
    if not recorded:
        problems.append("the round manifest records no features.files_sha256")
    problems += compare_files(recorded, folder.files_sha256, folder.shown_as)
    return [
        result(
            SCORING_FEATURES,
            problems,
            f"{folder.shown_as}: manifest sha256 {short(want)} and {len(recorded)} files match "
            "the round manifest",
        )
    ]


# --- validation ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ValidationFacts:
    """The validation record the round manifest names, and the one the training run kept."""

    record_path: str | None
    record_sha256: str | None  # None: the file is missing
    record: Mapping[str, Any] | None
    training_record: Mapping[str, Any] | None
    training_raw_sha256: Mapping[str, str] | None


def _raw_against_record(raw: Mapping[str, str], record: Mapping[str, Any], what: str) -> list[str]:
    checked = record.get("files_sha256") or {}
    problems = []
    for name in sorted(n for n in raw if n.endswith(".parquet")):
        if name not in checked:
            problems.append(f"{what}: raw file {name} was not checked by validation")
        elif checked[name] != raw[name]:
            problems.append(
                f"{what}: raw file {name} has sha256 {short(raw[name])}, validation checked "
                f"{short(checked[name])}"
            )
    return problems


def check_validation(manifest: Mapping[str, Any], facts: ValidationFacts) -> list[Finding]:
    """The round's raw inputs passed validation, by a record that is still there unchanged; the
    training run kept a passing record of the raw files it read."""
    v = manifest.get("validation") or {}
    problems: list[str] = []
    if v.get("status") != "passed":
        problems.append(f"the round manifest's validation status is {v.get('status')!r}")
    if not v.get("record"):
        problems.append("the round manifest names no validation record")
    elif facts.record_sha256 is None:
        problems.append(f"{facts.record_path}: validation record missing")
    else:
        if facts.record_sha256 != v.get("record_sha256"):
            problems.append(
                f"{facts.record_path}: sha256 {short(facts.record_sha256)} differs from the "
                f"manifest's {short(v.get('record_sha256'))}"
            )
        record = facts.record or {}
        if record.get("status") != "passed":
            problems.append(f"{facts.record_path}: status {record.get('status')!r}")
        problems += _raw_against_record(manifest.get("raw_inputs_sha256") or {}, record, "round")
    if facts.training_record is None:
        problems.append(f"the training run holds no {VALIDATION_ARTIFACT} artifact")
    else:
        if facts.training_record.get("status") != "passed":
            problems.append(
                f"the training run's validation record has status "
                f"{facts.training_record.get('status')!r}"
            )
        if facts.training_raw_sha256 is not None:
            problems += _raw_against_record(
                facts.training_raw_sha256, facts.training_record, "training run"
            )
    return [
        result(
            VALIDATION,
            problems,
            f"validation run {v.get('run_id')} passed; record sha256 "
            f"{short(v.get('record_sha256'))}; the raw files scored and trained on are the ones "
            "validated",
        )
    ]


# --- code and re-score -----------------------------------------------------------------------


def check_code(
    commits: Mapping[str, tuple[str | None, str | None]], exists: Mapping[str, bool | None]
) -> list[Finding]:
    """The recorded commits exist in the repository (``exists[commit]`` None: git unavailable).

    ``commits`` maps who recorded it (``scoring``, ``training``) to (commit, dirty flag).
    """
    problems = []
    unverifiable = []
    notes = []
    for who, (commit, dirty) in commits.items():
        if not commit or commit == "unknown":
            unverifiable.append(f"{who} recorded no commit")
            continue
        found = exists.get(commit)
        if found is None:
            unverifiable.append(f"{who} commit {commit[:12]}: git unavailable here")
        elif not found:
            problems.append(f"{who} commit {commit[:12]} does not exist in this repository")
        else:
            notes.append(
                f"{who} {commit[:12]}"
                + (" (working tree had uncommitted changes)" if dirty == "true" else "")
            )
    if problems:
        return [result(CODE, problems, "")]
    if unverifiable:
        return [Finding(CODE, UNVERIFIABLE, "; ".join(unverifiable + notes))]
    return [Finding(CODE, OK, "commits exist: " + "; ".join(notes))]
