"""Refused households' rows left out of rebuilt feature rounds, recorded as a destruction.

When a changed objections registry makes the features stage rebuild a round, the new folder is
the old one without the rows of households that refuse automated profiling (the 읍면동 rates
still count them, so no other household's value moves). Training runs and rounds recorded the
old files' sha256; a ``data destroyed`` ledger record with each rewritten file's sha256 before
and after lets the audit follow the change (``pipeline.audit.destroyed``) instead of reporting
it as tampering. A rebuild that changed anything else is not recorded: the audit still names it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.datasets.features import MANIFEST
from pipeline.io import sha256_file, sha256_tree
from pipeline.vocabulary import KEY

RULE = (
    "objection: households that refuse automated profiling (개인정보 보호법 제37조의2) are left "
    "out of every feature round built after the refusal (objections.registry)"
)


def refusal_rewrites(
    old_dir: Path, new_dir: Path, refused: Iterable[str], root: Path
) -> list[dict[str, Any]] | None:
    """The files of ``new_dir`` that are those of ``old_dir`` without the refused households'
    rows (path relative to ``root``, sha256 before and after, rows left out), the manifest
    included; None when there was no old folder or anything else changed."""
    if not (old_dir / MANIFEST).is_file():
        return None
    old_files = {k: v for k, v in sha256_tree(old_dir).items() if k != MANIFEST}
    new_files = {k: v for k, v in sha256_tree(new_dir).items() if k != MANIFEST}
    if set(old_files) != set(new_files):
        return None
    keys = pa.array(sorted(set(refused)), type=pa.string())
    label = old_dir.relative_to(root).as_posix()
    rewrites = []
    for name in sorted(old_files):
        if old_files[name] == new_files[name]:
            continue
        if not name.endswith(".parquet"):
            return None
        old = pq.read_table(old_dir / name)
        kept = old.filter(pc.invert(pc.is_in(old[KEY].cast(pa.string()), value_set=keys)))
        new = pq.read_table(new_dir / name)
        if kept.num_rows == old.num_rows or not kept.equals(new):
            return None
        rewrites.append(
            {
                "path": f"{label}/{name}",
                "action": "rewrite",
                "sha256": old_files[name],
                "sha256_after": new_files[name],
                "rows": old.num_rows - kept.num_rows,
            }
        )
    rewrites.append(
        {
            "path": f"{label}/{MANIFEST}",
            "action": "rewrite",
            "sha256": sha256_file(old_dir / MANIFEST),
            "sha256_after": sha256_file(new_dir / MANIFEST),
            "rows": 0,
        }
    )
    return rewrites


def refusal_record(
    rewrites: Mapping[str, list[dict[str, Any]]], registry_sha256: str | None
) -> dict[str, Any]:
    """The ``data destroyed`` ledger facts of one features run: per rebuilt round (label ->
    its rewrites), every rewritten file; the rule and the registry it applied."""
    datasets = [item for label in sorted(rewrites) for item in rewrites[label]]
    return {
        "run": uuid.uuid4().hex,
        "destroyed_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "reason": "objection",
        "rule": RULE,
        "registry_sha256": registry_sha256,
        "rows": sum(item["rows"] for item in datasets),
        "files": sum(1 for item in datasets if not item["path"].endswith(MANIFEST)),
        "rounds": [],
        "feature_rounds": sorted(rewrites),
        "datasets": datasets,
    }
