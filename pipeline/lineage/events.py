"""What each command writes to the ledger: one function per event, the facts named once here
(the audit reads them back by these names)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from pipeline.lineage import ledger


def model_registered(
    root: Path, *, model: str, version: str, run_id: str, as_of: str, seal_sha256: str
) -> dict[str, Any]:
    """A training run registered ``model`` ``version``; its sealed record's sha256."""
    return ledger.append(
        root,
        ledger.MODEL_REGISTERED,
        {
            "model": model,
            "version": version,
            "run_id": run_id,
            "as_of": as_of,
            "seal_sha256": seal_sha256,
        },
    )


def gates_decided(
    root: Path,
    *,
    model: str,
    version: str,
    gates: Iterable[Mapping[str, Any]],
    promoted: bool,
    decision: str,
) -> dict[str, Any]:
    """The gates' verdicts on a version (each gate: name, passed, value, threshold, waiver)."""
    return ledger.append(
        root,
        ledger.GATES_DECIDED,
        {
            "model": model,
            "version": version,
            "gates": [dict(g) for g in gates],
            "promoted": promoted,
            "decision": decision,
        },
    )


def champion_moved(
    root: Path,
    *,
    model: str,
    version: str,
    previous: str | None,
    action: str,
    reason: str,
) -> dict[str, Any]:
    """The champion alias moved (by the gates, ``promote`` or ``rollback``), and why."""
    return ledger.append(
        root,
        ledger.CHAMPION_MOVED,
        {
            "model": model,
            "version": version,
            "previous": previous,
            "action": action,
            "reason": reason,
        },
    )


def alias_moved(root: Path, model: str, move: Any) -> dict[str, Any]:
    """:func:`champion_moved` from a move of the registry (``tracking.registry.AliasMove``:
    action, version, previous, reason)."""
    return champion_moved(
        root,
        model=model,
        version=move.version,
        previous=move.previous,
        action=move.action,
        reason=move.reason,
    )


def challenger_marked(root: Path, *, model: str, version: str, reason: str) -> dict[str, Any]:
    return ledger.append(
        root, ledger.CHALLENGER_MARKED, {"model": model, "version": version, "reason": reason}
    )


def round_scored(
    root: Path,
    *,
    round_label: str,
    manifest_sha256: str,
    scoring_run_id: str,
    scoring_seal_sha256: str,
    model: str,
    version: str,
    training_seal_sha256: str | None,
) -> dict[str, Any]:
    """A round was placed: its manifest's sha256 and both runs' seals."""
    return ledger.append(
        root,
        ledger.ROUND_SCORED,
        {
            "round": round_label,
            "manifest_sha256": manifest_sha256,
            "scoring_run_id": scoring_run_id,
            "scoring_seal_sha256": scoring_seal_sha256,
            "model": model,
            "version": version,
            "training_seal_sha256": training_seal_sha256,
        },
    )


def shadow_scored(
    root: Path,
    *,
    round_label: str,
    model: str,
    version: str,
    champion_version: str,
    manifest_sha256: str,
    summary_sha256: str,
    scores_sha256: str,
    run_id: str,
    seal_sha256: str,
) -> dict[str, Any]:
    """A challenger ``version`` was scored beside the round's model (``champion_version``) on a
    scored round without touching it (``outreach score --shadow``): the round manifest it was
    compared with, the shadow record's files and the sealed shadow run."""
    return ledger.append(
        root,
        ledger.SHADOW_SCORED,
        {
            "round": round_label,
            "model": model,
            "version": version,
            "champion_version": champion_version,
            "manifest_sha256": manifest_sha256,
            "summary_sha256": summary_sha256,
            "scores_sha256": scores_sha256,
            "shadow_run_id": run_id,
            "shadow_seal_sha256": seal_sha256,
        },
    )


def outcomes_imported(
    root: Path,
    *,
    file: str,
    file_sha256: str,
    round_label: str,
    counts: Mapping[str, int],
    outcomes_file_sha256: str | None,
) -> dict[str, Any]:
    """A returned list changed the outcomes store: the file, the round, the counts and the
    sha256 of the round's outcomes file after the import."""
    return ledger.append(
        root,
        ledger.OUTCOMES_IMPORTED,
        {
            "file": file,
            "file_sha256": file_sha256,
            "round": round_label,
            "counts": {k: int(v) for k, v in counts.items()},
            "outcomes_file_sha256": outcomes_file_sha256,
        },
    )


def calls_imported(
    root: Path,
    *,
    file: str,
    file_sha256: str,
    round_label: str,
    counts: Mapping[str, int],
    calls_file_sha256: str | None,
) -> dict[str, Any]:
    """A call service's results file changed the calls store (an ``outcomes imported`` entry
    of kind ``calls``): the file, the round, the counts and the sha256 of the round's
    ``calls.parquet`` after the import."""
    return ledger.append(
        root,
        ledger.OUTCOMES_IMPORTED,
        {
            "kind": "calls",
            "file": file,
            "file_sha256": file_sha256,
            "round": round_label,
            "counts": {k: int(v) for k, v in counts.items()},
            "calls_file_sha256": calls_file_sha256,
        },
    )


def report_written(
    root: Path, *, round_label: str, report_sha256: str, manifest_sha256: str
) -> dict[str, Any]:
    """A round's report was written: the sha256 of its ``report.json`` (which records every
    page's sha256) and of the round manifest it was made from."""
    return ledger.append(
        root,
        ledger.REPORT_WRITTEN,
        {
            "round": round_label,
            "report_sha256": report_sha256,
            "manifest_sha256": manifest_sha256,
        },
    )


# --- retention (pipeline/retention): data destroyed -------------------------------------------


def data_destroyed(root: Path, record: Mapping[str, Any]) -> dict[str, Any]:
    """A retention run destroyed household-level data older than the retention period: its id,
    the reference month, the cut (months before it were destroyed), the rule and period, the
    counts of rows and files, and each dataset's files with their sha256 before (and after, for a
    rewritten file) so that an auditor can tie them to earlier records. Written once per run
    (a finished interrupted run is not recorded twice)."""
    existing = ledger.entries_of(ledger.read(root).entries, ledger.DATA_DESTROYED)
    for entry in existing:
        if entry["facts"].get("run") == record.get("run"):
            return dict(entry)
    return ledger.append(root, ledger.DATA_DESTROYED, dict(record))


def destructions(entries: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The destruction records of a ledger's entries, oldest first."""
    return ledger.entries_of(entries, ledger.DATA_DESTROYED)


# --- objections (ingest): objection recorded --------------------------------------------------


def objections_recorded(
    root: Path,
    *,
    registry: str | None,
    registry_sha256: str | None,
    counts: Mapping[str, int],
    key_fingerprint: str,
    objections: Iterable[Mapping[str, str]],
) -> dict[str, Any]:
    """Ingest staged a changed objections registry (or none, after one): the file, its sha256,
    the counts by kind, the fingerprint of the pseudonym key and each objection as ``ref`` (an
    HMAC of the household key under that key, never the key), ``date`` and ``kind``."""
    return ledger.append(
        root,
        ledger.OBJECTION_RECORDED,
        {
            "registry": registry,
            "registry_sha256": registry_sha256,
            "counts": {k: int(v) for k, v in counts.items()},
            "key_fingerprint": key_fingerprint,
            "objections": [dict(o) for o in objections],
        },
    )


def recorded_objections_sha256(root: Path) -> tuple[bool, str | None]:
    """Whether the ledger has recorded an objections registry, and the sha256 of the last one
    (None: the registry was removed)."""
    recorded = ledger.entries_of(ledger.read(root).entries, ledger.OBJECTION_RECORDED)
    if not recorded:
        return False, None
    return True, (recorded[-1].get("facts") or {}).get("registry_sha256")


# --- export (pipeline/export): bundle exported ------------------------------------------------


def bundle_exported(
    root: Path,
    *,
    round_label: str,
    emd_code: str,
    sigungu_code: str,
    bundle: str,
    bundle_sha256: str,
    files: Mapping[str, str],
    manifest_sha256: str,
    key_fingerprint: str,
    round_manifest_sha256: str,
) -> dict[str, Any]:
    """One office's bundle left the pipeline (``outreach export``): the office, the bundle's
    name and sha256, each plaintext file in it (name -> sha256) and its manifest's sha256, the
    fingerprint of the key it was encrypted with (never the key) and the round manifest. Who
    exported it is the entry's ``by``."""
    return ledger.append(
        root,
        ledger.BUNDLE_EXPORTED,
        {
            "round": round_label,
            "emd_code": emd_code,
            "sigungu_code": sigungu_code,
            "bundle": bundle,
            "bundle_sha256": bundle_sha256,
            "files": [{"name": n, "sha256": files[n]} for n in sorted(files)],
            "manifest_sha256": manifest_sha256,
            "key_fingerprint": key_fingerprint,
            "round_manifest_sha256": round_manifest_sha256,
        },
    )
