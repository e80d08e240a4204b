"""The ``features`` stage: a round's feature table and labels, partition by partition.

Writes ``outputs/features/as_of=YYYY-MM/``:
``features/sigungu=CODE/part-0.parquet``, ``labels/sigungu=CODE/part-0.parquet``,
``data_dictionary.csv`` (and ``.json``) and ``manifest.json``. The folder is built aside and
swapped in only when every partition succeeded.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd

from features.build import build_features
from features.labels import build_labels
from features.spec import FeatureSpec, feature_columns, model_input_names
from pipeline.catalogue import IndicatorCatalogue, OutcomeCatalogue
from pipeline.catalogues import Catalogues, load_catalogues
from pipeline.config import Config
from pipeline.datasets import OutputLayout, TableLayout
from pipeline.datasets.features import (
    DATA_DICTIONARY_CSV,
    DATA_DICTIONARY_JSON,
    FEATURES_TABLE,
    LABELS_TABLE,
    MANIFEST,
    input_digests,
)
from pipeline.datasets.outcomes import imported_outcome_files, relative_name
from pipeline.datasets.staged import read_feature_inputs, staged_partitions
from pipeline.engine import map_partitions
from pipeline.errors import DataError
from pipeline.io import sha256_file, sha256_tree, staging_dir, write_json, write_parquet
from pipeline.months import format_month

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FeatureRun:
    """What the features stage wrote for one round."""

    as_of: str
    folder: Path
    households: int
    features: int
    labelled_rows: int
    events_read: int


@dataclass(frozen=True)
class _Task:
    staged_dir: Path
    sigungu: str
    as_of: int
    spec: FeatureSpec
    catalogue: IndicatorCatalogue
    outcome_catalogue: OutcomeCatalogue
    out_dir: Path
    imported_outcomes: tuple[Path, ...] = ()  # outcomes imported from returned lists


def _feature_partition(task: _Task) -> dict[str, int]:
    inputs = read_feature_inputs(task.staged_dir, task.sigungu, task.imported_outcomes)
    features = build_features(inputs, task.as_of, task.spec, task.catalogue, task.outcome_catalogue)
    labels = build_labels(inputs.outcomes, task.as_of, task.outcome_catalogue)
    layout = TableLayout(task.out_dir)
    write_parquet(features, layout.partition_file(FEATURES_TABLE, task.sigungu))
    write_parquet(labels, layout.partition_file(LABELS_TABLE, task.sigungu))
    return {
        "households": len(features),
        "events": len(inputs.events),
        "label_rows": len(labels),
        "labelled": int(labels["label"].notna().sum()),
    }


def data_dictionary(spec: FeatureSpec, catalogue: IndicatorCatalogue) -> pd.DataFrame:
    """One row per column: name, kind, descriptions in Korean and English, unit, sources, window."""
    rows = []
    inputs = set(model_input_names(spec, catalogue))
    for column in feature_columns(spec, catalogue):
        row = asdict(column)
        row["source_indicators"] = ",".join(column.source_indicators)
        row["model_input"] = column.name in inputs
        rows.append(row)
    return pd.DataFrame(rows)


def spec_digest(spec: FeatureSpec) -> str:
    return hashlib.sha256(spec.model_dump_json().encode("utf-8")).hexdigest()


def build_round(
    config: Config,
    as_of: int,
    staged_dir: Path | None = None,
    catalogues: Catalogues | None = None,
) -> FeatureRun:
    """Build features and labels for the round ``as_of`` from the staged tables (the
    ``catalogues`` of the command, read from the config's paths when not given)."""
    staged_dir = staged_dir or OutputLayout(config.paths.output_root).staged
    codes = staged_partitions(staged_dir)
    if not codes:
        raise DataError(f"{staged_dir}: no staged households found: run `outreach ingest` first")
    catalogues = catalogues or load_catalogues(config)
    spec, catalogue = catalogues.features, catalogues.indicators
    outcome_catalogue = catalogues.outcomes
    label = format_month(as_of)
    final = OutputLayout(config.paths.output_root).features(label)
    outcomes_dir = OutputLayout(config.paths.output_root).outcomes
    imported = imported_outcome_files(outcomes_dir, before=as_of)  # rounds before as_of only
    log.info("features as of %s for %d partitions from %s", label, len(codes), staged_dir)
    with staging_dir(final) as out_dir:
        tasks = [
            _Task(
                staged_dir,
                code,
                as_of,
                spec,
                catalogue,
                outcome_catalogue,
                out_dir,
                tuple(imported.values()),
            )
            for code in codes
        ]
        stats = map_partitions(
            _feature_partition,
            tasks,
            runtime=config.runtime,
            description=f"features {label}",
        )
        dictionary = data_dictionary(spec, catalogue)
        dictionary.to_csv(out_dir / DATA_DICTIONARY_CSV, index=False, encoding="utf-8")
        write_json(dictionary.to_dict(orient="records"), out_dir / DATA_DICTIONARY_JSON)
        totals = {key: sum(s[key] for s in stats) for key in stats[0]}
        write_json(
            {
                "as_of": label,
                "knowledge_rule": "facts reported before as_of (reported month < as_of); labels "
                "from outcomes (staged and imported) resolved before as_of",
                "feature_spec_sha256": spec_digest(spec),
                # what the folder was built from: staged manifest, spec file, indicator catalogue
                **input_digests(config, staged_dir),
                "partitions": codes,
                "imported_outcomes_sha256": {
                    relative_name(path): sha256_file(path) for path in imported.values()
                },
                "rows": totals,
                "model_inputs": len(model_input_names(spec, catalogue)),
                "columns": len(dictionary),
                "files_sha256": sha256_tree(out_dir),
            },
            out_dir / MANIFEST,
        )
    log.info("wrote %s", final)
    return FeatureRun(
        as_of=label,
        folder=final,
        households=totals["households"],
        features=len(model_input_names(spec, catalogue)),
        labelled_rows=totals["labelled"],
        events_read=totals["events"],
    )
