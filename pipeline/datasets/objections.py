"""The objections dataset: households that refuse automated profiling (PIPA §37-2, ``refuse``)
or ask for an explanation of the automated decision (``explain``). See docs/objections.md.

The input is a UTF-8 CSV named by ``objections.registry`` (columns ``household_key``, ``date``
as ``YYYY-MM-DD``, ``kind``; ``None``: no registry). ``outreach ingest`` checks it and writes it
as the staged table ``staged/objections.parquet``, swapped in with the other staged tables; the
staged manifest's ``objections`` block records the registry's sha256 and the counts by kind.
The features stage leaves every refused household out of each feature round it builds (so no
stage after it sees them), and the round's manifest records what it left out under the same
``objections`` key. This module names the files and reads them; it builds nothing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline.config import Config
from pipeline.datasets import OutputLayout, TableLayout
from pipeline.datasets.staged import STAGED_MANIFEST
from pipeline.errors import DataError
from pipeline.io import sha256_file
from pipeline.vocabulary import KEY

REFUSE = "refuse"  # refuses automated profiling: left out of scoring and training
EXPLAIN = "explain"  # asks for an explanation of the automated decision: recorded, counted
KINDS = (REFUSE, EXPLAIN)
DATE = "date"
KIND = "kind"
COLUMNS = (KEY, DATE, KIND)
OBJECTIONS_TABLE = "objections"
# The block of the staged manifest (registry, counts) and of a feature round's manifest (what
# the round left out) that describes the objections applied.
MANIFEST_KEY = "objections"

# Why the staged objections are not those of the configured registry (:func:`registry_status`).
REGISTRY_CHANGED = "the objections registry changed since `outreach ingest` staged it"
REGISTRY_REMOVED = "objections.registry is not set but the staged tables hold a registry"


def staged_objections_file(staged_dir: Path) -> Path:
    """``staged/objections.parquet``: the checked registry (written by ``outreach ingest``)."""
    return TableLayout(staged_dir).small_table_file(OBJECTIONS_TABLE)


def _staged_dir(config: Config, staged_dir: Path | None) -> Path:
    return staged_dir or OutputLayout(config.paths.output_root).staged


def registry_sha256(config: Config) -> str | None:
    """The sha256 of the configured registry file now (None: no registry configured)."""
    path = config.objections.registry
    if path is None:
        return None
    if not Path(path).is_file():
        raise DataError(f"{path}: objections registry not found (objections.registry)")
    return sha256_file(Path(path))


def staged_record(staged_dir: Path) -> dict[str, Any] | None:
    """The staged manifest's ``objections`` block (None: no registry was staged)."""
    manifest = staged_dir / STAGED_MANIFEST
    if not manifest.is_file():
        return None
    try:
        data = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        raise DataError(f"{manifest}: unreadable staged manifest: run `outreach ingest`") from None
    block = data.get(MANIFEST_KEY)
    return dict(block) if isinstance(block, dict) else None


def registry_status(config: Config, staged_dir: Path | None = None) -> str | None:
    """Why the staged objections are not those of the configured registry, or None when they
    are (or when there is neither): the registry file changed, or was unset, since ingest."""
    folder = _staged_dir(config, staged_dir)
    if not (folder / STAGED_MANIFEST).is_file():
        return None  # nothing staged yet: the staged tables' own check says so
    record = staged_record(folder)
    if config.objections.registry is None:
        return REGISTRY_REMOVED if record is not None else None
    path = Path(config.objections.registry)
    current = sha256_file(path) if path.is_file() else None
    if record is None or record.get("registry_sha256") != current:
        return REGISTRY_CHANGED
    return None


def ensure_current(config: Config, staged_dir: Path | None = None) -> None:
    """Refuse (DataError naming the registry and ``outreach ingest``) to apply staged
    objections that are not those of the configured registry."""
    why = registry_status(config, staged_dir)
    if why is not None:
        where = config.objections.registry or _staged_dir(config, staged_dir) / STAGED_MANIFEST
        raise DataError(f"{where}: {why}: run `outreach ingest`")


def empty_objections() -> pd.DataFrame:
    """The registry's typed columns without rows."""
    return pd.DataFrame(
        {
            KEY: pd.Series(dtype="string"),
            DATE: pd.Series(dtype="datetime64[ns]"),
            KIND: pd.Series(dtype="string"),
        }
    )


def read_staged_objections(staged_dir: Path) -> pd.DataFrame:
    """The staged objections (household_key, date, kind), sorted by key and kind; no rows when
    no registry was staged."""
    path = staged_objections_file(staged_dir)
    if not path.is_file():
        return empty_objections()
    frame = pd.read_parquet(path)
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise DataError(f"{path}: staged objections lack column(s) {', '.join(missing)}")
    frame = frame[list(COLUMNS)].astype({KEY: "string", KIND: "string"})
    return frame.assign(**{DATE: pd.to_datetime(frame[DATE]).astype("datetime64[ns]")})


def read_objections(config: Config, staged_dir: Path | None = None) -> pd.DataFrame:
    """The objections in force: the staged registry (household_key, date, kind), checked to be
    the configured one (:func:`ensure_current`). ``kind == "explain"`` rows are the households
    that asked for an explanation (read by ``outreach explain``)."""
    folder = _staged_dir(config, staged_dir)
    ensure_current(config, folder)
    return read_staged_objections(folder)


def refused_keys(objections: pd.DataFrame) -> frozenset[str]:
    """The household keys that refuse automated profiling; pure."""
    return frozenset(str(k) for k in objections.loc[objections[KIND] == REFUSE, KEY])


def counts_by_kind(objections: pd.DataFrame) -> dict[str, int]:
    """Objections per kind (every kind named, zero included); pure."""
    counts = objections[KIND].value_counts()
    return {kind: int(counts.get(kind, 0)) for kind in KINDS}


def round_record(feature_manifest: dict[str, Any]) -> dict[str, Any] | None:
    """The ``objections`` block of a feature round's manifest (None: built without a registry)."""
    block = feature_manifest.get(MANIFEST_KEY)
    return dict(block) if isinstance(block, dict) else None
