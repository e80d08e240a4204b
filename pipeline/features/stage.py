"""The ``features`` stage: rounds' feature tables and labels, partition by partition.

Writes ``outputs/features/as_of=YYYY-MM/`` for each round asked for:
``features/sigungu=CODE/part-0.parquet``, ``labels/sigungu=CODE/part-0.parquet``,
``data_dictionary.csv`` (and ``.json``) and ``manifest.json``. Many rounds are built in one pass:
each partition's staged tables are read and indexed once, then every round is built from them
(:func:`features.build.prepare_partition`). The folders are built aside and swapped in only
when every partition of every round succeeded.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import pandas as pd

from features.build import build_features, prepare_partition
from features.labels import build_labels
from features.spec import FeatureSpec, feature_columns, model_input_names
from pipeline.catalogue import IndicatorCatalogue, OutcomeCatalogue
from pipeline.catalogues import Catalogues, load_catalogues
from pipeline.config import Config
from pipeline.datasets import OutputLayout, TableLayout
from pipeline.datasets import objections as objections_dataset
from pipeline.datasets.features import (
    DATA_DICTIONARY_CSV,
    DATA_DICTIONARY_JSON,
    FEATURES_TABLE,
    LABELS_TABLE,
    MANIFEST,
    input_digests,
)
from pipeline.datasets.outcomes import feature_outcomes, imported_outcome_files, relative_name
from pipeline.datasets.staged import (
    combine_outcomes,
    read_feature_inputs,
    staged_partitions,
)
from pipeline.engine import map_partitions
from pipeline.errors import DataError
from pipeline.features.refusals import refusal_record, refusal_rewrites
from pipeline.io import sha256_file, sha256_tree, staging_dir, write_json, write_parquet
from pipeline.lineage import events
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
class _RoundOut:
    """One round a partition task builds: its month, where its partitions go, and the imported
    outcome files (rounds before it) whose rows join the staged outcomes."""

    as_of: int
    out_dir: Path
    imported_outcomes: tuple[Path, ...] = ()


@dataclass(frozen=True)
class _Task:
    staged_dir: Path
    sigungu: str
    spec: FeatureSpec
    catalogue: IndicatorCatalogue
    outcome_catalogue: OutcomeCatalogue
    rounds: tuple[_RoundOut, ...]
    # households that refuse automated profiling (None: no objections registry is staged)
    refused: frozenset[str] | None = None


def _feature_partition(task: _Task) -> list[dict[str, int]]:
    """Every round of one partition from one read of its staged tables (and of each imported
    outcomes file); one stats record per round."""
    inputs = read_feature_inputs(task.staged_dir, task.sigungu)
    prepared = prepare_partition(inputs, task.catalogue)
    staged_outcomes = inputs.outcomes
    imported: dict[Path, pd.DataFrame] = {}
    stats = []
    for out in task.rounds:
        for path in out.imported_outcomes:
            if path not in imported:
                imported[path] = feature_outcomes(path, task.sigungu)
        outcomes = combine_outcomes(
            staged_outcomes, [imported[path] for path in out.imported_outcomes]
        )
        round_inputs = replace(inputs, outcomes=outcomes)
        features = build_features(
            round_inputs,
            out.as_of,
            task.spec,
            task.catalogue,
            task.outcome_catalogue,
            prepared=prepared,
        )
        labels = build_labels(outcomes, out.as_of, task.outcome_catalogue)
        left_out = {}
        if task.refused is not None:
            features, labels, left_out = leave_out_refused(features, labels, task.refused)
        layout = TableLayout(out.out_dir)
        write_parquet(features, layout.partition_file(FEATURES_TABLE, task.sigungu))
        write_parquet(labels, layout.partition_file(LABELS_TABLE, task.sigungu))
        stats.append(
            {
                "households": len(features),
                "events": len(inputs.events),
                "label_rows": len(labels),
                "labelled": int(labels["label"].notna().sum()),
                **left_out,
            }
        )
    return stats


def leave_out_refused(
    features: pd.DataFrame, labels: pd.DataFrame, refused: frozenset[str]
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, int]]:
    """Features and labels without the households that refuse automated profiling, and how
    many rows each lost; pure. The one place a refusal is applied: no later stage sees them.
    The 읍면동 rates of the other households were computed before, with them counted."""
    keep_features = ~features["household_key"].isin(refused).to_numpy()
    keep_labels = ~labels["household_key"].isin(refused).to_numpy()
    left_out = {
        "refused_households_left_out": int((~keep_features).sum()),
        "refused_label_rows_left_out": int((~keep_labels).sum()),
    }
    return (
        features[keep_features].reset_index(drop=True),
        labels[keep_labels].reset_index(drop=True),
        left_out,
    )


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
    """Build features and labels for the round ``as_of`` (:func:`build_rounds` of one round)."""
    return build_rounds(config, [as_of], staged_dir, catalogues)[0]


def build_rounds(
    config: Config,
    months: Sequence[int],
    staged_dir: Path | None = None,
    catalogues: Catalogues | None = None,
) -> list[FeatureRun]:
    """Build features and labels for every round of ``months`` from the staged tables (the
    ``catalogues`` of the command, read from the config's paths when not given), in one pass
    over each partition. No folder is replaced unless every round was built."""
    months = sorted(set(months))
    if not months:
        return []
    staged_dir = staged_dir or OutputLayout(config.paths.output_root).staged
    codes = staged_partitions(staged_dir)
    if not codes:
        raise DataError(f"{staged_dir}: no staged households found: run `outreach ingest` first")
    catalogues = catalogues or load_catalogues(config)
    spec, catalogue = catalogues.features, catalogues.indicators
    objections = _staged_objections(config, staged_dir)
    layout = OutputLayout(config.paths.output_root)
    labels = [format_month(m) for m in months]
    what = labels[0] if len(labels) == 1 else f"{labels[0]}..{labels[-1]} ({len(labels)} rounds)"
    log.info("features as of %s for %d partitions from %s", what, len(codes), staged_dir)
    refusals: dict[str, list[dict[str, object]]] = {}  # rounds rebuilt only without refusals
    with ExitStack() as stack:
        rounds = []
        imported_by_round = []
        for month in months:
            out_dir = stack.enter_context(staging_dir(layout.features(format_month(month))))
            imported = imported_outcome_files(layout.outcomes, before=month)  # earlier rounds
            imported_by_round.append(imported)
            rounds.append(_RoundOut(month, out_dir, tuple(imported.values())))
        tasks = [
            _Task(
                staged_dir,
                code,
                spec,
                catalogue,
                catalogues.outcomes,
                tuple(rounds),
                refused=None if objections is None else objections["refused"],
            )
            for code in codes
        ]
        # Largest partitions first, so that no big one is left running alone at the end; the
        # round's totals are sums (the order of the stats does not matter).
        staged = TableLayout(staged_dir)
        size = {code: staged.partition_file("households", code).stat().st_size for code in codes}
        tasks.sort(key=lambda t: (-size[t.sigungu], t.sigungu))
        stats = map_partitions(
            _feature_partition, tasks, runtime=config.runtime, description=f"features {what}"
        )
        dictionary = data_dictionary(spec, catalogue)
        results = []
        for i, out in enumerate(rounds):
            round_stats = [per_partition[i] for per_partition in stats]
            totals = {key: sum(s[key] for s in round_stats) for key in round_stats[0]}
            _write_round_files(
                config, staged_dir, spec, catalogue, dictionary, out, codes, totals,
                imported_by_round[i], None if objections is None else objections["record"],
            )  # fmt: skip
            if objections is not None:
                rewrites = refusal_rewrites(
                    layout.features(format_month(out.as_of)),
                    out.out_dir,
                    objections["refused"],
                    Path(config.paths.output_root),
                )
                if rewrites:
                    refusals[format_month(out.as_of)] = rewrites
            results.append(
                FeatureRun(
                    as_of=format_month(out.as_of),
                    folder=layout.features(format_month(out.as_of)),
                    households=totals["households"],
                    features=len(model_input_names(spec, catalogue)),
                    labelled_rows=totals["labelled"],
                    events_read=totals["events"],
                )
            )
    if refusals:  # the folders are in place: the ledger says what left them and why
        registry = objections["record"].get("registry_sha256") if objections else None
        events.data_destroyed(Path(config.paths.output_root), refusal_record(refusals, registry))
    log.info("wrote %s", ", ".join(str(run.folder) for run in results))
    return results


def _write_round_files(
    config: Config,
    staged_dir: Path,
    spec: FeatureSpec,
    catalogue: IndicatorCatalogue,
    dictionary: pd.DataFrame,
    out: _RoundOut,
    codes: list[str],
    totals: dict[str, int],
    imported: dict[str, Path],
    objections: dict[str, object] | None = None,
) -> None:
    """A round folder's data dictionary and manifest (after its partitions are written)."""
    dictionary.to_csv(out.out_dir / DATA_DICTIONARY_CSV, index=False, encoding="utf-8")
    write_json(dictionary.to_dict(orient="records"), out.out_dir / DATA_DICTIONARY_JSON)
    extra = {}
    if objections is not None:  # only with a registry: the round's manifest is otherwise as before
        extra[objections_dataset.MANIFEST_KEY] = {
            **objections,
            "left_out_households": totals.pop("refused_households_left_out"),
            "left_out_label_rows": totals.pop("refused_label_rows_left_out"),
        }
    write_json(
        {
            "as_of": format_month(out.as_of),
            "knowledge_rule": "facts reported before as_of (reported month < as_of); labels "
            "from outcomes (staged and imported) resolved before as_of",
            "feature_spec_sha256": spec_digest(spec),
            # what the folder was built from: staged manifest, spec file, indicator catalogue
            **input_digests(config, staged_dir, as_of=out.as_of),
            "partitions": codes,
            "imported_outcomes_sha256": {
                relative_name(path): sha256_file(path) for path in imported.values()
            },
            "rows": totals,
            "model_inputs": len(model_input_names(spec, catalogue)),
            "columns": len(dictionary),
            **extra,
            "files_sha256": sha256_tree(out.out_dir),
        },
        out.out_dir / MANIFEST,
    )


def _staged_objections(config: Config, staged_dir: Path) -> dict[str, object] | None:
    """The refused households and the registry's record (sha256, counts by kind) when an
    objections registry is staged and is the configured one; None when there is none."""
    objections = objections_dataset.read_objections(config, staged_dir)
    record = objections_dataset.staged_record(staged_dir)
    if record is None:
        return None
    return {
        "refused": objections_dataset.refused_keys(objections),
        "record": {
            "registry_sha256": record.get("registry_sha256"),
            "counts": objections_dataset.counts_by_kind(objections),
        },
    }
