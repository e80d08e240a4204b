"""Carrying out a retention plan so that no dataset is ever left half destroyed.

1. Prepare: every rewritten file (old rows removed, a manifest's digests updated) is written
   next to its target as ``.<name>.retention-new``; nothing a reader sees has changed. A failure
   here removes the prepared files and stops.
2. Journal: the list of moves (prepared file -> target, folder or file -> gone) is written
   atomically to ``<output_root>/.retention-journal.json``, with the destruction record.
3. Commit: each move is one rename (a folder is renamed aside, then removed); each step can be
   done again. The ledger gets the record; then the journal is removed.

A run killed during 3 leaves the journal: the next ``outreach retention`` finishes those moves
and writes the record before it looks for anything new (:func:`resume`). The names used here
are not the lock's clean-up names (``.building.``, ``.old.``, ``.tmp``), so a stale-lock clean-up
never removes a prepared file the journal still needs.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from pipeline.io import parquet_options, read_json_file, sha256_file, write_json
from pipeline.retention.plan import Action, filtered_table

log = logging.getLogger(__name__)

JOURNAL = ".retention-journal.json"
NEW_SUFFIX = ".retention-new"
GONE_SUFFIX = ".retention-gone"


def journal_file(root: Path) -> Path:
    return root / JOURNAL


def new_file(path: Path) -> Path:
    return path.with_name(f".{path.name}{NEW_SUFFIX}")


def gone_path(path: Path) -> Path:
    return path.with_name(f".{path.name}{GONE_SUFFIX}")


def prepare(actions: list[Action], cut: int) -> None:
    """Write every rewritten file beside its target; fill in the digests after. Removes what it
    wrote and re-raises on any failure."""
    written: list[Path] = []
    try:
        after: dict[Path, str] = {}
        for action in actions:
            if action.kind != "rows":
                continue
            target = new_file(action.path)
            written.append(target)
            assert action.column is not None
            table = filtered_table(action.path, action.column, cut)
            pq.write_table(table, target, **parquet_options(table.schema))
            action.new_sha256 = sha256_file(target)
            after[action.path.resolve()] = action.new_sha256
        for action in actions:
            if action.kind != "manifest":
                continue
            target = new_file(action.path)
            written.append(target)
            manifest = read_json_file(action.path)
            digests = manifest.get("files_sha256", {})
            for name in digests:
                file = (action.path.parent / name).resolve()
                if file in after:
                    digests[name] = after[file]
            text = json.dumps(manifest, ensure_ascii=False, indent=2, sort_keys=True) + "\n"
            target.write_bytes(text.encode("utf-8"))
            action.new_sha256 = sha256_file(target)
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        raise


def moves(actions: list[Action]) -> list[dict[str, str]]:
    """The journal's steps, in order: rewritten files first, their manifests after, then what
    goes whole."""
    order = {"rows": 0, "manifest": 1, "file": 2, "folder": 2}
    steps = []
    for action in sorted(actions, key=lambda a: order[a.kind]):
        if action.kind in ("rows", "manifest"):
            steps.append(
                {"op": "replace", "from": str(new_file(action.path)), "to": str(action.path)}
            )
        else:
            steps.append({"op": "remove", "path": str(action.path)})
    return steps


def write_journal(root: Path, steps: list[dict[str, str]], record: dict[str, Any]) -> None:
    write_json({"steps": steps, "record": record}, journal_file(root))


def commit(steps: list[dict[str, str]]) -> None:
    """Do each step; a step already done is skipped (so a rerun finishes an interrupted one)."""
    for step in steps:
        if step["op"] == "replace":
            source, target = Path(step["from"]), Path(step["to"])
            if source.exists():
                os.replace(source, target)
        else:
            _remove(Path(step["path"]))


def _remove(path: Path) -> None:
    gone = gone_path(path)
    if path.exists():
        os.replace(path, gone)  # one rename: a reader sees all of it or none
    if gone.is_dir():
        shutil.rmtree(gone)
    else:
        gone.unlink(missing_ok=True)


def resume(root: Path, write_record: Callable[[dict[str, Any]], None]) -> dict[str, Any] | None:
    """Finish a run that was interrupted after its journal was written: its moves, then its
    ledger record. Returns that record, or None when there was nothing to finish."""
    path = journal_file(root)
    if not path.is_file():
        return None
    journal = read_json_file(path)
    log.warning("finishing the interrupted retention run of %s", journal["record"].get("at"))
    commit(journal["steps"])
    write_record(journal["record"])
    path.unlink()
    return journal["record"]


def sweep(folders: list[Path]) -> list[Path]:
    """Remove what a run killed before its journal was written left under ``folders``: prepared
    files (the kept rows, not yet in place) and half-removed folders. Call with no journal."""
    removed = []
    for folder in folders:
        if not folder.is_dir():
            continue
        for path in sorted(folder.rglob(f".*{NEW_SUFFIX}")) + sorted(
            folder.rglob(f".*{GONE_SUFFIX}")
        ):
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
            removed.append(path)
    if removed:
        log.warning("removed %d file(s) a killed retention run left", len(removed))
    return removed


def discard_prepared(actions: list[Action]) -> None:
    for action in actions:
        if action.kind in ("rows", "manifest"):
            new_file(action.path).unlink(missing_ok=True)
