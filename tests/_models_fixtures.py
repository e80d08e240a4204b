"""Feature folders written from raw tables in memory, for training tests (and development).

Until ingest lands, the features stage cannot read staged tables; this writes the same folder
layout the features stage writes (``features/as_of=YYYY-MM/features|labels/sigungu=CODE/``,
``data_dictionary.csv``, ``manifest.json``) from the raw tables, identifiers dropped.
"""

from __future__ import annotations

import hashlib
import sys
from dataclasses import asdict
from pathlib import Path

import pandas as pd

from features.build import build_features
from features.labels import build_labels
from features.spec import FeatureSpec, feature_columns, load_feature_spec, model_input_names
from pipeline.catalogue import load_indicators, load_outcomes
from pipeline.config import Config
from pipeline.datasets import OutputLayout, TableLayout
from pipeline.io import sha256_tree, staging_dir, write_json, write_parquet
from pipeline.months import format_month

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _features_fixtures import sample_inputs


def _dictionary(spec: FeatureSpec, catalogue) -> pd.DataFrame:
    inputs = set(model_input_names(spec, catalogue))
    rows = []
    for column in feature_columns(spec, catalogue):
        row = asdict(column)
        row["source_indicators"] = ",".join(column.source_indicators)
        row["model_input"] = column.name in inputs
        rows.append(row)
    return pd.DataFrame(rows)


def training_months(config: Config) -> list[int]:
    """Every round month plus the round after the window (the default as_of)."""
    rounds = config.window.round_months()
    return [*rounds, rounds[-1] + config.window.round_interval_months]


def write_feature_folders(config: Config, months: list[int] | None = None) -> list[Path]:
    """Write a feature folder per month from ``config.paths.raw_input``; returns the folders."""
    months = months or training_months(config)
    spec = load_feature_spec(config.paths.features)
    catalogue = load_indicators(config.paths.indicators)
    outcomes = load_outcomes(config.paths.outcomes)
    raw = TableLayout(config.paths.raw_input)
    codes = raw.partitions("households")
    inputs = [sample_inputs(config.paths.raw_input, 10**9, i) for i in range(len(codes))]
    folders = []
    for as_of in months:
        final = OutputLayout(config.paths.output_root).features(format_month(as_of))
        with staging_dir(final) as out:
            layout = TableLayout(out)
            for code, inp in zip(codes, inputs, strict=True):
                features = build_features(inp, as_of, spec, catalogue, outcomes)
                labels = build_labels(inp.outcomes, as_of, outcomes)
                write_parquet(features, layout.partition_file("features", code))
                write_parquet(labels, layout.partition_file("labels", code))
            dictionary = _dictionary(spec, catalogue)
            dictionary.to_csv(out / "data_dictionary.csv", index=False, encoding="utf-8")
            write_json(
                {
                    "as_of": format_month(as_of),
                    "feature_spec_sha256": hashlib.sha256(
                        spec.model_dump_json().encode("utf-8")
                    ).hexdigest(),
                    "partitions": codes,
                    "source": "tests/_models_fixtures.py (raw tables, in memory)",
                    "files_sha256": sha256_tree(out),
                },
                out / "manifest.json",
            )
        folders.append(final)
    return folders


def write_validation_record(config: Config, status: str = "passed") -> Path:
    """A validation record in the layout ``outreach validate`` writes (latest.json -> run)."""
    from models.data import raw_file_digests

    folder = OutputLayout(config.paths.output_root).validation
    run_id = "test-run"
    digests = {k: v for k, v in raw_file_digests(config).items() if k.endswith(".parquet")}
    write_json(
        {"run_id": run_id, "status": status, "files_sha256": digests},
        folder / "runs" / run_id / "validation.json",
    )
    write_json(
        {"run_id": run_id, "path": f"runs/{run_id}", "status": status}, folder / "latest.json"
    )
    return folder


def config_file(config: Config, path: Path) -> Path:
    """Write a config as YAML (for calling the CLI with ``--config``)."""
    import yaml

    data = config.model_dump(mode="json")
    data.pop("source", None)
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path
