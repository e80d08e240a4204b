"""The ``validate`` stage: check every raw table, merge the partitions' results into one verdict.

Order: the file inventory, the two small reference tables (regions, district capacity), then the
시군구 partitions in parallel batches (:func:`pipeline.validate.partition.validate_batch`), then
the national checks combined from the partitions' results: every file has rows, keys are unique
across partitions (bucket by bucket on compact hashes, :mod:`pipeline.validate.national_keys`),
and the volume of signals per source and month stays within its bounds. What the batches return
is compact (key hashes as numpy arrays, rows set aside with categorical text, volume counts
summed per batch): the driver holds about 12 bytes per key, not a frame row per key.
Nothing is written here; :mod:`pipeline.validate.report` keeps the results.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.catalogue import IndicatorCatalogue, OutcomeCatalogue
from pipeline.config import Config, ConfigError, ValidationConfig
from pipeline.datasets import PARTITION_KEY, PARTITIONED_RAW_TABLES, SMALL_RAW_TABLES, TableLayout
from pipeline.datasets.raw import retention_cut
from pipeline.datasets.validation import FAILED, PASSED, contract_digest
from pipeline.engine import map_partitions, warm_up
from pipeline.validate import frames
from pipeline.validate.checks import (
    QUARANTINE,
    Check,
    example_columns,
    schema_suite_name,
    suite_inputs,
)
from pipeline.validate.contract import (
    CONTRACTS,
    FILE_ROWS_SUITE,
    NON_EMPTY_TABLES,
    PARTITIONS_SUITE,
    UNIQUE_ACROSS_SUITE,
    VOLUME_SUITE,
)
from pipeline.validate.engine import GxEngine, engine_for
from pipeline.validate.national_keys import check_keys_across
from pipeline.validate.partition import (
    BatchOutcome,
    BatchTask,
    LoadedFile,
    check_frame,
    concat_rejected,
    empty_rejected,
    load_file,
    read_columns,
    schema_results,
    validate_batch,
)
from pipeline.validate.verdict import CheckResult, file_failure, read_results, stops
from pipeline.validate.volume import combine_counts, source_first_months, volume_bounds

log = logging.getLogger(__name__)


@dataclass
class ValidationRun:
    """Everything one validation run found, before it is written."""

    started: datetime
    raw_dir: Path
    contract_digest: str
    partitions: list[str] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)
    results: list[CheckResult] = field(default_factory=list)
    gx_results: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    # Text columns may be categorical (compact); plain_rejected gives the file's string types.
    rejected: pd.DataFrame = field(default_factory=empty_rejected)
    volume: pd.DataFrame | None = None
    suites: dict[str, list[Check]] = field(default_factory=dict)
    finished: datetime | None = None

    @property
    def failures(self) -> list[CheckResult]:
        return stops(self.results)

    @property
    def quarantined(self) -> list[CheckResult]:
        return [r for r in self.results if not r.success and r.on_failure == QUARANTINE]

    @property
    def status(self) -> str:
        return FAILED if self.failures else PASSED

    @property
    def run_id(self) -> str:
        """Start time and a digest of the raw files: ``20261126T091957Z-caff5600``."""
        files = json.dumps(self.files, sort_keys=True).encode("utf-8")
        return f"{self.started:%Y%m%dT%H%M%SZ}-{hashlib.sha256(files).hexdigest()[:8]}"


def expected_files(raw: TableLayout, partitions: list[str]) -> list[Path]:
    """Every Parquet file the raw input must hold."""
    paths = [raw.small_table_file(t) for t in SMALL_RAW_TABLES]
    paths += [raw.partition_file(t, c) for t in PARTITIONED_RAW_TABLES for c in partitions]
    return paths


def take_inventory(raw_dir: Path) -> tuple[list[str], list[CheckResult]]:
    """The 시군구 partitions found (over all partitioned tables) and any stray Parquet files."""
    raw = TableLayout(raw_dir)
    partitions = sorted({c for t in PARTITIONED_RAW_TABLES for c in raw.partitions(t)})
    problems: list[CheckResult] = []
    if not partitions:
        problems.append(
            file_failure("households", None, f"households/{PARTITION_KEY}=*", "no partitions found")
        )
    expected = {p.resolve() for p in expected_files(raw, partitions)}
    for path in sorted(raw_dir.rglob("*.parquet")):
        if path.resolve() not in expected:
            table = path.relative_to(raw_dir).parts[0].removesuffix(".parquet")
            problems.append(
                file_failure(
                    table,
                    None,
                    path.relative_to(raw_dir).as_posix(),
                    "unexpected file in the raw input "
                    "(expected <table>/sigungu=<code>/part-0.parquet)",
                )
            )
    return partitions, problems


def region_sets(regions: pd.DataFrame) -> dict[str, tuple[str, ...]]:
    """Region codes by level, as found in the regions table."""
    codes = regions["region_code"].dropna().astype("str")
    level = regions["level"].astype("str")
    out = {"all": tuple(sorted(codes.unique()))}
    for name in ("sido", "sigungu", "emd"):
        out[name] = tuple(sorted(codes[level == name].unique()))
    return out


def emd_by_sigungu(regions: pd.DataFrame) -> dict[str, tuple[str, ...]]:
    """The 읍면동 codes of each 시군구."""
    emd = regions[regions["level"].astype("str") == "emd"].dropna(subset=["region_code"])
    return {
        str(code): tuple(sorted(group["region_code"].astype("str")))
        for code, group in emd.groupby(emd["sigungu_code"].astype("str"), sort=True)
    }


def _national_frame_results(
    engine: GxEngine, suite: str, frame: pd.DataFrame, example_keys: int
) -> tuple[list[CheckResult], dict[str, Any]]:
    gx_result = engine.run(suite, frame)
    results = read_results(
        gx_result,
        engine.suites[suite],
        table=suite,
        partition=None,
        example_columns=example_columns(suite),
        example_keys=example_keys,
        frame=frame,
    )
    return results, gx_result


def plan_batches(
    raw_dir: Path, partitions: list[str], workers: int, batch_rows: int
) -> list[tuple[str, ...]]:
    """Group partitions into batches of about ``batch_rows`` raw rows.

    A partition's size is its rows in every partitioned raw table (a worker holds them all
    while it checks the batch). The number of batches is a multiple of the workers (when
    there are enough partitions); partitions are placed largest first into the lightest
    batch, and each batch lists its partitions in code order.
    """
    raw = TableLayout(raw_dir)
    sizes = {
        code: sum(_rows_in(raw, table, code) for table in PARTITIONED_RAW_TABLES)
        for code in partitions
    }
    total = sum(sizes.values())
    needed = -(-total // batch_rows)
    # A multiple of the workers, so that every worker gets as many batches as the others.
    count = max(1, min(len(partitions), workers * -(-needed // workers)))
    loads = [0] * count
    batches: list[list[str]] = [[] for _ in range(count)]
    for code in sorted(partitions, key=lambda c: (-sizes[c], c)):
        lightest = loads.index(min(loads))
        batches[lightest].append(code)
        loads[lightest] += max(sizes[code], 1)
    return [tuple(sorted(b)) for b in batches if b]


def _rows_in(raw: TableLayout, table: str, code: str) -> int:
    """Rows in one partition file from its footer; 0 when it is missing or unreadable."""
    try:
        return pq.read_metadata(raw.partition_file(table, code)).num_rows
    except (OSError, pa.ArrowException, ValueError):
        return 0  # the worker reports why the file cannot be read


def _check_config(config: Config, catalogue: IndicatorCatalogue) -> None:
    volume = config.validation.volume
    for key, by_source in (
        ("high_factor_by_source", volume.high_factor_by_source),
        ("low_factor_by_source", volume.low_factor_by_source),
    ):
        unknown = sorted(set(by_source) - set(catalogue.codes))
        if unknown:
            raise ConfigError(
                f"{config.source}: validation.volume.{key}: unknown indicator "
                f"code(s) {', '.join(unknown)}"
            )


def _region_codes(loaded: LoadedFile | None) -> dict[str, tuple[str, ...]]:
    """Region codes by level from the regions file, or none when it cannot be read."""
    if loaded is None:
        return {}
    needed = ["region_code", "level", "sigungu_code"]
    if not set(needed) <= set(loaded.schema.names):
        return {}
    data = read_columns(loaded, "regions", None, needed)
    return {} if isinstance(data, CheckResult) else region_sets(data.to_pandas())


def _reference_tables(
    run: ValidationRun, engine: GxEngine, loaded: dict[str, LoadedFile], cfg: ValidationConfig
) -> dict[str, pd.DataFrame]:
    """Check regions and district capacity; their frames when usable."""
    small: dict[str, pd.DataFrame] = {}
    for table, file in loaded.items():
        results, gx_result = schema_results(engine, table, None, file.schema, cfg.example_keys)
        run.results.extend(results)
        run.gx_results.append((schema_suite_name(table), "national", gx_result))
        if not all(r.success for r in results):
            continue
        data = read_columns(file, table, None, list(CONTRACTS[table].columns))
        if isinstance(data, CheckResult):
            run.results.append(data)
            continue
        small[table] = frames.plain_frame(data)
        run.rows[table] = data.num_rows
        checked = check_frame(
            engine,
            table,
            table,
            None,
            small[table],
            max_rejected_share=cfg.max_rejected_share,
            example_keys=cfg.example_keys,
        )
        run.results.extend(checked.results)
        run.gx_results.append((table, "national", checked.gx_result))
    return small


def run_validation(
    config: Config,
    catalogue: IndicatorCatalogue,
    outcome_catalogue: OutcomeCatalogue,
    raw_dir: Path,
) -> ValidationRun:
    """Validate the raw tables under ``raw_dir``; nothing is written (see ``report``)."""
    _check_config(config, catalogue)
    cfg = config.validation
    run = ValidationRun(
        started=datetime.now(UTC), raw_dir=raw_dir, contract_digest=contract_digest(config)
    )
    if not raw_dir.is_dir():
        run.results.append(file_failure("(raw input)", None, str(raw_dir), "folder not found"))
        run.finished = datetime.now(UTC)
        return run
    run.partitions, problems = take_inventory(raw_dir)
    run.results.extend(problems)
    # The workers' fork server imports Great Expectations while this process does the same and
    # checks the reference tables, instead of each worker importing it after.
    warm_up(config.runtime, [validate_batch.__module__, "great_expectations"])

    raw = TableLayout(raw_dir)
    loaded: dict[str, LoadedFile] = {}
    for table in SMALL_RAW_TABLES:
        file = load_file(raw_dir, raw.small_table_file(table), table, None)
        if isinstance(file, CheckResult):
            run.results.append(file)
            continue
        run.files[file.relpath] = file.sha256
        loaded[table] = file
    # The suites take their region codes from the regions table (checked by them next).
    inputs = suite_inputs(
        config, catalogue, outcome_catalogue, _region_codes(loaded.get("regions"))
    )
    engine = engine_for(inputs)
    run.suites = engine.suites
    small = _reference_tables(run, engine, loaded, cfg)
    if set(small) != set(SMALL_RAW_TABLES) or not run.partitions:
        log.warning("reference tables unusable: partitions not checked")
        run.finished = datetime.now(UTC)
        return run

    folders = pd.DataFrame(
        [{"table": t, "sigungu": c} for t in PARTITIONED_RAW_TABLES for c in raw.partitions(t)]
    )
    results, gx_result = _national_frame_results(
        engine, PARTITIONS_SUITE, folders, cfg.example_keys
    )
    run.results.extend(results)
    run.gx_results.append((PARTITIONS_SUITE, "national", gx_result))

    emd_sigungu = tuple(
        (emd, code) for code, emds in emd_by_sigungu(small["regions"]).items() for emd in emds
    )
    batches = plan_batches(raw_dir, run.partitions, config.runtime.workers, cfg.batch_rows)
    tasks = [
        BatchTask(
            codes=codes,
            raw_dir=raw_dir,
            inputs=inputs,
            emd_sigungu=emd_sigungu,
            max_rejected_share=cfg.max_rejected_share,
            example_keys=cfg.example_keys,
        )
        for codes in batches
    ]
    log.info(
        "validating %d partitions in %d batches with %d workers",
        len(run.partitions),
        len(tasks),
        config.runtime.workers,
    )
    outcomes = map_partitions(
        validate_batch,
        tasks,
        runtime=config.runtime,
        description="validate",
    )
    merge_partitions(run, outcomes, engine, config, catalogue)
    run.finished = datetime.now(UTC)
    return run


def merge_partitions(
    run: ValidationRun,
    outcomes: list[BatchOutcome],
    engine: GxEngine,
    config: Config,
    catalogue: IndicatorCatalogue,
) -> None:
    """Combine the batches' results and run the national checks."""
    cfg = config.validation
    unusable: set[tuple[str, str]] = set()
    for out in outcomes:
        run.files.update(out.files)
        run.results.extend(out.results)
        for (table, _code), rows in out.rows.items():
            run.rows[table] = run.rows.get(table, 0) + rows
        run.gx_results.extend(out.gx_results)
        unusable |= out.unusable
    run.rejected = concat_rejected([o.rejected for o in outcomes])

    file_rows = pd.DataFrame(
        [
            {"table": table, "sigungu": code, "rows": rows}
            for o in outcomes
            for (table, code), rows in sorted(o.rows.items())
            if table in NON_EMPTY_TABLES
        ],
        columns=["table", "sigungu", "rows"],
    )
    if len(file_rows):
        results, gx_result = _national_frame_results(
            engine, FILE_ROWS_SUITE, file_rows, cfg.example_keys
        )
        run.results.extend(results)
        run.gx_results.append((FILE_ROWS_SUITE, "national", gx_result))

    # Keys across partitions: bucket by bucket, each bucket's GX result kept (national_keys).
    keys = [k for o in outcomes for k in o.keys]
    if keys:
        results, bucket_results = check_keys_across(engine, keys, example_keys=cfg.example_keys)
        run.results.extend(results)
        run.gx_results.extend((UNIQUE_ACROSS_SUITE, label, r) for label, r in bucket_results)

    if not any(table == "crisis_events" for table, _ in unusable):
        window = config.window
        # After retention destroyed the months before its cut, the volumes start there.
        start = window.start_index
        if not config.retention.allow_older_raw:
            start = max(start, retention_cut(config))
        first = source_first_months(
            {i.code: i.available_from_index for i in catalogue.indicators}, start
        )
        counts = combine_counts([v for o in outcomes for v in o.volume])
        run.volume = volume_bounds(counts, first, window.end_index, cfg.volume)
        results, gx_result = _national_frame_results(
            engine, VOLUME_SUITE, run.volume, cfg.example_keys
        )
        run.results.extend(results)
        run.gx_results.append((VOLUME_SUITE, "national", gx_result))
    else:
        log.warning("crisis_events not usable in every partition: volume not checked")
