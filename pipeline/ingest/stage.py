"""The ``ingest`` stage: validated raw tables -> staged tables without direct identifiers.

Ingest runs only on raw files that a passing validation checked: the last passing run
(``outputs/validation/passed.json``) must list exactly the raw Parquet files present now, with
the same sha256 (each file is hashed again from the very bytes ingest parses), and must have
been made with the same checks (contract digest: validation settings, window, catalogues). Rows
that validation set aside are left out. The staged tables are built in a folder beside
``outputs/staged/`` and swapped in whole when every partition succeeded, with a manifest
(``_manifest.json``) of what went in and what came out.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.catalogue import IndicatorCatalogue, OutcomeCatalogue, load_services
from pipeline.config import Config
from pipeline.datasets import (
    PARTITIONED_RAW_TABLES,
    SMALL_RAW_TABLES,
    OutputLayout,
    TableLayout,
)
from pipeline.datasets.staged import (
    EVENT_MONTHS_KEY,
    EVENTS_TABLE,
    STAGED_MANIFEST,
    events_month_digests,
)
from pipeline.engine import map_partitions
from pipeline.errors import DataError
from pipeline.ingest import transform
from pipeline.ingest.keys import SCHEME, Pseudonymizer, PseudonymKey
from pipeline.ingest.objections import Registry, ledger_objections, load_registry, stage_registry
from pipeline.ingest.schema import DROPPED_COLUMNS, MONTH_NOTE
from pipeline.io import PARQUET_OPTIONS, sha256_tree, staging_dir, write_json

log = logging.getLogger(__name__)

MANIFEST = STAGED_MANIFEST
# Pseudonyms are long and distinct: let Parquet keep them dictionary-encoded. zstd level 1
# writes staged tables about a third faster than level 3, and no larger.
WRITE_OPTIONS: dict[str, Any] = {
    **{k: v for k, v in PARQUET_OPTIONS.items() if k not in ("write_statistics", "use_dictionary")},
    "compression_level": 1,
    "dictionary_pagesize_limit": 64 << 20,
}


@dataclass(frozen=True)
class ValidatedInput:
    """The passing validation ingest relies on."""

    run_id: str
    run_dir: Path
    files_sha256: dict[str, str]
    rejected: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)

    def rejected_rows(self, table: str, sigungu: str) -> np.ndarray | None:
        return self.rejected.get((table, sigungu))


def raw_parquet_files(raw_dir: Path) -> list[str]:
    """Every Parquet file under the raw folder, relative and sorted."""
    return sorted(p.relative_to(raw_dir).as_posix() for p in raw_dir.rglob("*.parquet"))


def passing_validation(config: Config, raw_dir: Path) -> ValidatedInput:
    """The last passing validation, if it covers exactly the raw files present now."""
    from pipeline.datasets.validation import (
        PASSED,
        PASSED_POINTER,
        REJECTED_ROWS,
        VALIDATION_JSON,
        contract_digest,
        read_pointer,
    )

    layout = OutputLayout(config.paths.output_root)
    hint = "run `outreach validate` first"
    pointer = read_pointer(layout, PASSED_POINTER)
    if pointer is None:
        raise DataError(f"ingest: no passing validation under {layout.validation}; {hint}")
    run_dir = layout.validation / str(pointer.get("path", ""))
    try:
        record = json.loads((run_dir / VALIDATION_JSON).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        raise DataError(f"ingest: the passing validation {run_dir} is unreadable; {hint}") from None
    if record.get("status") != PASSED:
        raise DataError(f"ingest: validation run {record.get('run_id')} did not pass; {hint}")
    if not raw_dir.is_dir():
        raise DataError(f"ingest: raw input folder {raw_dir} not found")
    recorded: dict[str, str] = record.get("files_sha256") or {}
    present = raw_parquet_files(raw_dir)
    added = sorted(set(present) - set(recorded))
    missing = sorted(set(recorded) - set(present))
    if added or missing:
        what = ", ".join([f"new {p}" for p in added[:3]] + [f"missing {p}" for p in missing[:3]])
        raise DataError(
            f"ingest: the raw files differ from those validation run {record['run_id']} "
            f"checked ({what}); {hint}"
        )
    if record.get("contract_digest") != contract_digest(config):
        raise DataError(
            f"ingest: validation run {record['run_id']} used other checks (settings, window or "
            f"catalogues changed since); {hint}"
        )
    rejected_path = run_dir / REJECTED_ROWS
    rejected: dict[tuple[str, str], np.ndarray] = {}
    if rejected_path.is_file():
        frame = pd.read_parquet(rejected_path, columns=["table", "sigungu", "row"])
        for (table, code), group in frame.groupby(["table", "sigungu"], sort=True):
            rejected[(str(table), str(code))] = np.unique(group["row"].to_numpy(dtype=np.int64))
    return ValidatedInput(str(record["run_id"]), run_dir, recorded, rejected)


def categories(
    config: Config,
    catalogue: IndicatorCatalogue,
    outcomes: OutcomeCatalogue,
    emd_codes: list[str],
) -> transform.Categories:
    """Categories of the coded columns, from the configuration and catalogues."""
    sets = config.validation.value_sets
    agencies = list(dict.fromkeys(ind.agency_ko for ind in catalogue.indicators))
    return transform.Categories(
        {
            "emd_code": tuple(emd_codes),
            "tenure": sets.tenure,
            "income_band": sets.income_band,
            "benefit_status": sets.benefit_status,
            "relation": sets.relation,
            "sex": sets.sex,
            "indicator_code": tuple(catalogue.codes),
            "source_agency": tuple(agencies),
            "selection_reason": tuple(outcomes.reason_codes),
            "outcome_code": tuple(outcomes.codes),
            "service_code": tuple(load_services(Path(config.paths.services)).codes),
        }
    )


# What ingest reads of each raw table: never the names, phones or addresses it drops anyway.
# Coded columns are read straight from Parquet's dictionary pages.
READ: dict[str, tuple[list[str] | None, list[str]]] = {
    "regions": (None, ["level", "emd_type"]),
    "district_capacity": (None, []),
    "households": (
        ["household_key", "emd_code", "size", "tenure", "income_band", "benefit_status"],
        ["emd_code", "tenure", "income_band", "benefit_status"],
    ),
    "household_members": (
        ["resident_id", "household_key", "relation", "birth_year", "sex", "disability"],
        ["relation", "sex"],
    ),
    "crisis_events": (
        None,
        ["indicator_code", "source_agency", "event_month", "reported_month"],
    ),
    "outreach_outcomes": (
        None,
        [
            "emd_code",
            "round_month",
            "selection_reason",
            "outcome_code",
            "resolved_month",
            "service_code",
        ],
    ),
}


def read_verified(raw_dir: Path, relpath: str, expected: str, table: str) -> pa.Table:
    """Read a raw file, checking that its bytes are those validation checked."""
    data = (raw_dir / relpath).read_bytes()
    if hashlib.sha256(data).hexdigest() != expected:
        raise DataError(
            f"ingest: {relpath} changed since it was validated; run `outreach validate` again"
        )
    columns, dictionary = READ[table]
    reader = pq.ParquetFile(pa.BufferReader(pa.py_buffer(data)), read_dictionary=dictionary)
    return reader.read(columns=columns)


# Column statistics of keys and pseudonyms cost half the write time and help no reader.
NO_STATISTICS = frozenset({"household_key", "person_id", "region_code", "name"})
# Unique per row where they are plain strings: a dictionary would only cost time and space.
NO_DICTIONARY = frozenset({"person_id"})


def write_table(table: pa.Table, path: Path) -> None:
    """Write a staged table (the whole staged folder is swapped in atomically)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    statistics = [c for c in table.column_names if c not in NO_STATISTICS]
    dictionary = [
        f.name for f in table.schema if not (f.name in NO_DICTIONARY and pa.types.is_string(f.type))
    ]
    pq.write_table(
        table.replace_schema_metadata(None),
        path,
        **WRITE_OPTIONS,
        write_statistics=statistics,
        use_dictionary=dictionary,
    )


@dataclass(frozen=True)
class IngestTask:
    """One partition to ingest (picklable: the key travels to the worker, never to disk)."""

    code: str
    raw_dir: Path
    out_dir: Path
    files_sha256: tuple[tuple[str, str], ...]
    rejected: tuple[tuple[str, np.ndarray], ...]
    key: bytes = field(repr=False)
    categories: transform.Categories


@dataclass(frozen=True)
class PartitionIngest:
    """What staging one partition gives back: row counts per table (raw, excluded, staged)
    and the digests of its crisis signals by reported month."""

    counts: dict[str, dict[str, int]]
    event_months: dict[str, str]


def ingest_partition(task: IngestTask) -> PartitionIngest:
    """Stage one 시군구 partition (:class:`PartitionIngest`)."""
    raw = TableLayout(task.raw_dir)
    out = TableLayout(task.out_dir)
    sha = dict(task.files_sha256)
    rejected = dict(task.rejected)
    tables: dict[str, pa.Table] = {}
    counts: dict[str, dict[str, int]] = {}
    for table in PARTITIONED_RAW_TABLES:
        relpath = raw.partition_file(table, task.code).relative_to(task.raw_dir).as_posix()
        data = read_verified(task.raw_dir, relpath, sha[relpath], table)
        drop = rejected.get(table)
        tables[table] = transform.drop_rows(data, drop)
        counts[table] = {
            "raw": data.num_rows,
            "excluded": 0 if drop is None else len(drop),
        }
    pseudonymizer = Pseudonymizer(task.key)
    households = transform.stage_households(tables["households"], task.categories)
    members = transform.stage_members(
        tables["household_members"], tables["households"], pseudonymizer, task.categories
    )
    staged = {
        "households": households,
        "household_members": members.table,
        "crisis_events": transform.stage_events(tables["crisis_events"], members, task.categories),
        "outreach_outcomes": transform.stage_outcomes(tables["outreach_outcomes"], task.categories),
    }
    for table, data in staged.items():
        write_table(data, out.partition_file(table, task.code))
        counts[table]["staged"] = data.num_rows
    return PartitionIngest(counts, events_month_digests(staged[EVENTS_TABLE]))


@dataclass(frozen=True)
class IngestResult:
    staged_dir: Path
    manifest: dict[str, Any]


def ingest(
    config: Config,
    catalogue: IndicatorCatalogue,
    outcomes: OutcomeCatalogue,
    raw_dir: Path,
    key: PseudonymKey,
) -> IngestResult:
    """Stage the validated raw tables under ``<output_root>/staged``."""
    validated = passing_validation(config, raw_dir)
    layout = OutputLayout(config.paths.output_root)
    raw = TableLayout(raw_dir)
    partitions = raw.partitions("households")
    log.info(
        "ingest: %d partitions validated by run %s; pseudonym key: %s (fingerprint %s)",
        len(partitions), validated.run_id, key.source, key.fingerprint,
    )  # fmt: skip
    if key.demo:
        log.warning(
            "ingest: using the PUBLIC demo pseudonym key: pseudonyms protect nothing; "
            "for synthetic data only"
        )
    registry = _objections_registry(config)  # checked before anything is written
    record_objections = _objections_changed(config.paths.output_root, registry)
    started = datetime.now(UTC)
    with staging_dir(layout.staged) as folder:
        small: dict[str, pa.Table] = {}
        for table in SMALL_RAW_TABLES:
            relpath = raw.small_table_file(table).relative_to(raw_dir).as_posix()
            small[table] = read_verified(raw_dir, relpath, validated.files_sha256[relpath], table)
        regions = transform.stage_regions(small["regions"])
        capacity = transform.stage_capacity(small["district_capacity"])
        out = TableLayout(folder)
        write_table(regions, out.small_table_file("regions"))
        write_table(capacity, out.small_table_file("district_capacity"))
        emd_codes = sorted(r["region_code"] for r in regions.to_pylist() if r["level"] == "emd")
        cats = categories(config, catalogue, outcomes, emd_codes)
        tasks = [
            IngestTask(
                code=code,
                raw_dir=raw_dir,
                out_dir=folder,
                files_sha256=tuple(sorted(validated.files_sha256.items())),
                rejected=tuple(
                    (t, rows)
                    for t in PARTITIONED_RAW_TABLES
                    if (rows := validated.rejected_rows(t, code)) is not None
                ),
                key=key.secret,
                categories=cats,
            )
            for code in partitions
        ]
        # Largest partitions first, so that no worker is left with a big one at the end.
        size = {t.code: raw.partition_file("crisis_events", t.code).stat().st_size for t in tasks}
        tasks.sort(key=lambda t: (-size[t.code], t.code))
        parts = map_partitions(
            ingest_partition,
            tasks,
            runtime=config.runtime,
            description="ingest",
        )
        rows: dict[str, dict[str, int]] = {
            "regions": {
                "raw": small["regions"].num_rows,
                "excluded": 0,
                "staged": regions.num_rows,
            },
            "district_capacity": {
                "raw": small["district_capacity"].num_rows,
                "excluded": 0,
                "staged": capacity.num_rows,
            },
        }
        for part in parts:
            for table, figures in part.counts.items():
                total = rows.setdefault(table, {"raw": 0, "excluded": 0, "staged": 0})
                for name, value in figures.items():
                    total[name] += value
        manifest = {
            "stage": "ingest",
            "started": started.isoformat(timespec="seconds"),
            "raw_dir": str(raw_dir),
            "validation_run_id": validated.run_id,
            "inputs_sha256": dict(sorted(validated.files_sha256.items())),
            "partitions": partitions,
            "rows": rows,
            "dropped_columns": {k: list(v) for k, v in DROPPED_COLUMNS.items()},
            "pseudonym": {
                "column": "person_id",
                "scheme": SCHEME,
                "key_source": key.source,
                "key_fingerprint": key.fingerprint,
                "demo_key": key.demo,
            },
            "months": MONTH_NOTE,
        }
        if registry is not None:
            manifest["objections"] = stage_registry(registry, folder)
        manifest[EVENT_MONTHS_KEY] = {
            task.code: part.event_months
            for task, part in sorted(zip(tasks, parts, strict=True), key=lambda pair: pair[0].code)
        }
        manifest["files_sha256"] = sha256_tree(folder)
        write_json(manifest, folder / MANIFEST)
    log.info("ingest: wrote %s", layout.staged)
    if record_objections:
        _record_objections(config, registry, manifest, key)
    return IngestResult(layout.staged, manifest)


def _objections_registry(config: Config) -> Registry | None:
    """The configured objections registry, its rows checked (None: no registry)."""
    path = config.objections.registry
    return None if path is None else load_registry(Path(path))


def _objections_changed(root: Path, registry: Registry | None) -> bool:
    """Whether the registry differs from the last one the ledger recorded (then the ledger
    must take an entry: refused before any work when it does not verify)."""
    from pipeline.lineage import ledger
    from pipeline.lineage.events import recorded_objections_sha256

    recorded, last = recorded_objections_sha256(root)
    current = registry.sha256 if registry is not None else None
    changed = last != current if recorded else current is not None
    if changed:
        ledger.check_writable(root)
    return changed


def _record_objections(
    config: Config, registry: Registry | None, manifest: dict[str, Any], key: PseudonymKey
) -> None:
    """The ledger entry of a changed registry, once the staged tables holding it are in place."""
    from pipeline.datasets.objections import KINDS
    from pipeline.lineage.events import objections_recorded

    staged = OutputLayout(config.paths.output_root).staged
    block = manifest.get("objections") or {}
    objections_recorded(
        config.paths.output_root,
        registry=None if registry is None else str(registry.path),
        registry_sha256=None if registry is None else registry.sha256,
        counts=block.get("counts") or dict.fromkeys(KINDS, 0),
        key_fingerprint=key.fingerprint,
        objections=ledger_objections(staged, key.secret),
    )
