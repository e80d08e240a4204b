"""Helpers for validation and ingest tests: copies of the sample raw tables, one table changed.

Bad inputs are made by copying ``data_samples/raw`` into a temporary folder and rewriting one
table with a pandas function, keeping the file's Arrow schema unless the change is about types.
The CLI runs in-process (``pipeline.cli.main``) on a config file that points at the copy.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from conftest import REPO_ROOT, make_config, write_config_file

from pipeline.cli import main
from pipeline.config import Config
from pipeline.datasets import PARTITIONED_RAW_TABLES, TableLayout

SAMPLE_RAW = REPO_ROOT / "data_samples" / "raw"


def copy_sample(target: Path) -> Path:
    """A private copy of the committed sample's raw tables."""
    shutil.copytree(SAMPLE_RAW, target)
    return target


def table_files(raw_dir: Path, table: str) -> list[Path]:
    layout = TableLayout(raw_dir)
    if table in PARTITIONED_RAW_TABLES:
        return [layout.partition_file(table, c) for c in layout.partitions(table)]
    return [layout.small_table_file(table)]


def partitions(raw_dir: Path) -> list[str]:
    return TableLayout(raw_dir).partitions("households")


def rewrite(
    raw_dir: Path,
    table: str,
    change: Callable[[pd.DataFrame], pd.DataFrame],
    *,
    partition: str | None = None,
    keep_schema: bool = True,
) -> None:
    """Rewrite a table (every partition, or one) with ``change`` applied to its rows."""
    for path in table_files(raw_dir, table):
        if partition is not None and f"sigungu={partition}" not in path.as_posix():
            continue
        original = pq.read_table(path)
        frame = change(original.to_pandas())
        schema = original.schema if keep_schema else None
        data = pa.Table.from_pandas(frame, schema=schema, preserve_index=False)
        pq.write_table(data.replace_schema_metadata(None), path)


def config_for(tmp_path: Path, raw_dir: Path | None = None, **sections) -> tuple[Config, Path]:
    """A config reading ``raw_dir`` and writing under ``tmp_path/outputs``, and its YAML file."""
    validation = {"data_docs": False, **sections.pop("validation", {})}
    paths = {"raw_input": str(raw_dir or SAMPLE_RAW), **sections.pop("paths", {})}
    config = make_config(tmp_path / "outputs", paths=paths, validation=validation, **sections)
    tmp_path.mkdir(parents=True, exist_ok=True)
    return config, write_config_file(config, tmp_path / "config.yaml")


def run_cli(config_file: Path, *args: str) -> int:
    return main(["--no-progress", "--config", str(config_file), *args])


def validation_dir(config: Config) -> Path:
    return config.paths.output_root / "validation"


def latest_record(config: Config) -> dict:
    """The validation.json of the last run."""
    pointer = json.loads((validation_dir(config) / "latest.json").read_text(encoding="utf-8"))
    run_dir = validation_dir(config) / pointer["path"]
    return json.loads((run_dir / "validation.json").read_text(encoding="utf-8"))


def latest_run_dir(config: Config) -> Path:
    pointer = json.loads((validation_dir(config) / "latest.json").read_text(encoding="utf-8"))
    return validation_dir(config) / pointer["path"]


def rejected_rows(config: Config) -> pd.DataFrame:
    return pd.read_parquet(latest_run_dir(config) / "rejected_rows.parquet")


def leftovers(folder: Path) -> list[Path]:
    """Half-built folders a failed or interrupted stage would leave behind."""
    if not folder.exists():
        return []
    return [p for p in folder.rglob("*") if ".building." in p.name or ".old." in p.name]
