"""The ``score`` stage: the champion scores a round; lists per 읍면동; manifest; MLflow run.

Writes ``<output_root>/rounds/YYYY-MM/`` (built aside, swapped in only when everything
succeeded; an existing round is replaced only with ``force``, and then kept in
``rounds/_replaced/``):

- ``scores.parquet``: every eligible household: score, ranks, tier, selection, reasons;
- ``lists/<시군구>/emd_<읍면동>.csv|.xlsx`` and ``lists/<시군구>/sigungu_<시군구>.csv|.xlsx``;
- ``manifest.json``: the lineage of the round and the sha256 of every other file.

The work is done partition by partition (one 시군구 at a time, all its 읍면동 inside it) by
:func:`score_partition`, a picklable function run by the partition engine.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from models.candidates import CalibratedClassifier
from models.fairness import AUDIT_SOURCES, audit_attributes
from models.mitigation import NONE, ListPolicy
from pipeline.cases import CarryPolicy
from pipeline.catalogue import IndicatorCatalogue, OutcomeCatalogue
from pipeline.catalogues import Catalogues, load_catalogues
from pipeline.config import Config, ConfigError, ScoringConfig
from pipeline.datasets import OutputLayout, TableLayout
from pipeline.datasets.cases import carried_into
from pipeline.datasets.features import FeatureRounds
from pipeline.datasets.rounds import (
    IMPORTANCE,
    LISTS,
    MANIFEST,
    PARTS,
    SCORES,
    list_paths,
    part_file,
    replaced_dir,
    round_exists,
)
from pipeline.datasets.staged import (
    capacity_file,
    read_capacity_table,
    read_staged_manifest,
    region_names,
    staged_manifest_file,
    staged_view_digest,
)
from pipeline.datasets.validation import validation_record_file
from pipeline.engine import map_partitions, warm_up
from pipeline.errors import DataError, UsageError
from pipeline.io import (
    read_wide_parquet,
    sha256_file,
    sha256_tree,
    short_digest,
    staging_dir,
    write_json,
    write_parquet,
)
from pipeline.lineage import events, ledger
from pipeline.locks import hold
from pipeline.months import first_day, format_month, parse_month
from pipeline.score import monitor  # monitoring between rounds: docs/monitoring.md
from pipeline.score.contrib import FrameScorer, used_inputs
from pipeline.score.lists import list_frame, list_rows, write_csv, write_xlsx
from pipeline.score.reasons import attribute_columns, explain, latest_signals, reason_units
from pipeline.score.services import service_match, suggestion_columns
from pipeline.score.tiers import (
    CARRIED,
    EXPLORATION,
    MONITOR,
    PHONE,
    RULE_SCORE,
    VISIT,
    cut_round,
)
from pipeline.tracking import (
    code_version,
    connect,
    ensure_experiment,
    package_versions,
    runlog,
    tracking_uri,
)
from pipeline.tracking.auditor_view import describe_scoring
from pipeline.tracking.models import (
    ModelFile,
    fetch_importance,
    fetch_model,
    set_threads,
    unpickle_model,
)
from pipeline.tracking.registry import ModelRef, resolve_model
from pipeline.tracking.seal import seal_run
from pipeline.vocabulary import (
    CARRIED_OVER,
    EMD,
    KEY,
    LIST_ORDER,
    RULE_COLUMN,
    coerce_feature_types,
    eligible_mask,
)

log = logging.getLogger(__name__)

SCORE_STAGE = "score"


@dataclass(frozen=True)
class ScoreResult:
    """What ``outreach score`` did."""

    round: str
    folder: Path
    model: ModelRef
    run_id: str
    counts: dict[str, int]
    seconds: float


def signal_column(config: ScoringConfig, distinct_windows: tuple[int, ...]) -> str:
    """The feature column telling whether a household had a crisis signal recently."""
    w = config.exploration_signal_months
    if w not in distinct_windows:
        raise ConfigError(
            f"scoring.exploration_signal_months: {w} is not a window of distinct_types "
            f"(features spec has {', '.join(map(str, distinct_windows))})"
        )
    return f"distinct_types__{w}m"


@dataclass(frozen=True)
class PartitionTask:
    """Everything one 시군구 partition needs; picklable."""

    sigungu: str
    features_file: Path
    events_file: Path
    as_of: int
    model: ModelFile
    capacity: dict[str, int]
    emd_names: dict[str, str]
    scoring: ScoringConfig
    signal_column: str
    lookback_months: int
    catalogue: IndicatorCatalogue
    outcomes: OutcomeCatalogue
    lists_dir: Path
    threads: int
    household_month: int | None = None  # the household record's month (window end), for reasons
    # open cases of the previous round carried into this one (pipeline.cases.CARRY_COLUMNS)
    carried: pd.DataFrame | None = None
    # the services a caseworker can record as linked (the list's drop-down), in list language
    service_names: tuple[str, ...] = ()
    # the feature columns the round's monitoring counts (pipeline.score.monitor.monitor_columns)
    monitor_columns: tuple[str, ...] = ()


@dataclass(frozen=True)
class PartitionScored:
    """What one partition's scoring sends back: its counts for the round's record and, when
    it scored any household, its monitoring counts (None: nothing scored, nothing counted)."""

    counts: dict[str, int]
    monitoring: monitor.MonitorCounts | None


def tier_frame(
    task: PartitionTask, model: CalibratedClassifier, features: pd.DataFrame
) -> tuple[pd.DataFrame, np.ndarray, FrameScorer, pd.DataFrame | None]:
    """Scores and tiers of one partition's eligible households, without reasons (pure): the
    frame :func:`cut_round` returns, the positions of the eligible rows in ``features``, the
    scorer (for contributions) and the carried cases indexed by household key (None without)."""
    sc = task.scoring
    eligible = np.flatnonzero(eligible_mask(features, sc.ineligible_benefit_status))
    # Every row is scored and the eligible ones kept: cheaper than copying the eligible rows.
    scorer = FrameScorer(model, features, threads=task.threads)
    scores = scorer.scores()[eligible]
    base = pd.DataFrame(
        {
            "household_key": features["household_key"].astype("string").to_numpy()[eligible],
            "emd_code": features["emd_code"].astype("string").to_numpy()[eligible],
            "score": scores.astype(np.float64),
            "has_signal": (features[task.signal_column].fillna(0) > 0).to_numpy()[eligible],
        }
    )
    policy = list_policy(model)
    if policy is not None:
        base[LIST_ORDER] = list_order(policy, features.iloc[eligible], scores)
    carried = task.carried
    if carried is not None and len(carried):
        carried = carried.set_index("household_key")
        base[CARRIED] = base["household_key"].map(carried["tier"]).astype(object)
    margin = sc.exploration_margin if sc.exploration_pool == "margin" else None
    if margin is not None:
        base[RULE_SCORE] = features[RULE_COLUMN].to_numpy(dtype=np.float64)[eligible]
    cut = cut_round(
        base,
        pd.Series(task.capacity, dtype="int64"),
        phone_band=sc.phone_band,
        exploration_share=sc.exploration_share,
        seed=sc.seed,
        as_of=task.as_of,
        exploration_margin=margin,
        reserve_exploration=sc.exploration_slots == "reserved",
    )
    return cut, eligible, scorer, carried


def score_frame(
    task: PartitionTask, model: CalibratedClassifier, features: pd.DataFrame
) -> tuple[pd.DataFrame, dict[str, int]]:
    """Scores, tiers and reasons of one partition's eligible households (pure apart from the
    events read for the evidence of listed households)."""
    sc = task.scoring
    cut, eligible, scorer, carried = tier_frame(task, model, features)
    listed = np.flatnonzero((cut["tier"] != MONITOR).to_numpy())
    rows = features.iloc[eligible[listed]]
    contrib = scorer.contributions(eligible[listed])
    signals = latest_signals(
        _read_events(task.events_file, set(rows["household_key"].astype(str))),
        task.as_of,
        sc.exploration_signal_months,
    )
    units = reason_units(list(model.feature_names_in_), task.catalogue)
    reasons = explain(
        contrib,
        rows.reset_index(drop=True),
        signals,
        units,
        task.catalogue,
        task.outcomes,
        k=sc.reasons,
        window=sc.exploration_signal_months,
        language=sc.language,
        as_of=task.as_of,
        household_month=task.household_month,
    )
    reasons.index = cut.index[listed]
    out = cut.drop(columns=["has_signal", LIST_ORDER, CARRIED, RULE_SCORE], errors="ignore").join(
        reasons
    )
    match = service_match(model)
    if match is not None:  # the services to offer (docs/services.md)
        suggested = suggestion_columns(
            match, rows.reset_index(drop=True), task.catalogue, sc.language
        )
        suggested.index = cut.index[listed]
        out = out.join(suggested)
    out = out.join(carried_history(out["household_key"], carried))
    out.insert(1, "sigungu_code", task.sigungu)
    out["sigungu_code"] = out["sigungu_code"].astype("string")
    out["tier"] = out["tier"].astype("string")
    out["selection_reason"] = out["selection_reason"].astype("string")
    out = out.sort_values(["emd_code", "model_rank"], kind="stable").reset_index(drop=True)
    tiers = out["tier"].value_counts()
    counts = {
        "households": len(features),
        "ineligible": len(features) - len(eligible),
        "scored": len(out),
        "visit": int(tiers.get(VISIT, 0)),
        "phone": int(tiers.get(PHONE, 0)),
        "monitor": int(tiers.get(MONITOR, 0)),
        "explored": int((out["selection_reason"] == EXPLORATION).sum()),
        "carried": int((out["selection_reason"] == CARRIED_OVER).sum()),
        "carried_not_found": 0
        if carried is None
        else int((~carried.index.isin(cut["household_key"])).sum()),
        "emd_without_capacity": len(set(cut["emd_code"].unique()) - set(task.capacity)),
    }
    return out, counts


def carried_history(keys: pd.Series, carried: pd.DataFrame | None) -> pd.DataFrame:
    """The case history columns of the scores (aligned with ``keys``): how often a household was
    carried, its unsuccessful phone attempts in a row and the history its list row shows; null
    for a household not carried. ``carried`` is indexed by household key."""
    columns = {
        "carried_rounds": pd.Series(pd.NA, index=keys.index, dtype="Int32"),
        "phone_attempts": pd.Series(pd.NA, index=keys.index, dtype="Int32"),
        "case_history": pd.Series(pd.NA, index=keys.index, dtype="string"),
    }
    if carried is not None and len(carried):
        for name, kind in (("carried_rounds", "Int32"), ("phone_attempts", "Int32")):
            columns[name] = keys.map(carried[name]).astype(kind)
        columns["case_history"] = keys.map(carried["case_history"]).astype("string")
    return pd.DataFrame(columns)


def _read_events(path: Path, keys: set[str]) -> pd.DataFrame:
    columns = ["household_key", "indicator_code", "reported_month", "value"]
    if not path.is_file():
        raise DataError(f"{path}: staged crisis events missing: run `outreach ingest` again")
    table = pq.read_table(path, columns=columns)
    # A filter after the read: about twice as fast as the reader's "in" filter here.
    wanted = pc.is_in(table["household_key"], value_set=pa.array(sorted(keys), type=pa.string()))
    frame = table.filter(wanted).to_pandas()
    return frame.assign(reported_month=frame["reported_month"].astype("int64"))


def assemble_scores(round_dir: Path, codes: list[str]) -> int:
    """Concatenate the partitions' score parts into ``scores.parquet`` (one row group each, in
    partition order) and remove the parts; returns the rows written."""
    import shutil

    from pipeline.io import PARQUET_OPTIONS, parquet_options

    rows = 0
    target = round_dir / SCORES
    writer = None
    try:
        for code in codes:
            table = pq.read_table(part_file(round_dir, code))
            if writer is None:
                options = parquet_options(table.schema)
                del options["row_group_size"]  # a writer's option of each write, below
                writer = pq.ParquetWriter(target, table.schema, **options)
            writer.write_table(
                table.cast(writer.schema), row_group_size=PARQUET_OPTIONS["row_group_size"]
            )
            rows += table.num_rows
    finally:
        if writer is not None:
            writer.close()
    shutil.rmtree(round_dir / PARTS)
    return rows


def write_lists(task: PartitionTask, scored: pd.DataFrame) -> int:
    """CSV and XLSX of every 읍면동 of the partition, and of the 시군구; returns files written."""
    sc = task.scoring
    label = format_month(task.as_of)
    stamp = first_day(task.as_of)
    frame = list_frame(scored, label, task.emd_names, task.outcomes, sc.language, sc.reasons)
    rows = list_rows(frame)
    # list_frame orders rows by 읍면동: each 읍면동's rows are one slice.
    emd_of_row = frame["emd_code"].to_numpy(dtype=object)
    bounds = {}
    for emd in pd.unique(emd_of_row):
        where = np.flatnonzero(emd_of_row == emd)
        bounds[str(emd)] = (int(where[0]), int(where[-1]) + 1)
    written = 0
    emds = sorted(set(task.capacity) | set(scored["emd_code"].unique().tolist()))
    for emd in emds:
        start, stop = bounds.get(emd, (0, 0))
        csv_path, xlsx_path = list_paths(task.lists_dir, task.sigungu, emd)
        write_csv(rows[start:stop], csv_path, sc.language)
        write_xlsx(
            rows[start:stop], xlsx_path, sc.language, task.outcomes, stamp, task.service_names
        )
        written += 2
    csv_path, xlsx_path = list_paths(task.lists_dir, task.sigungu, None)
    write_csv(rows, csv_path, sc.language)
    write_xlsx(rows, xlsx_path, sc.language, task.outcomes, stamp, task.service_names)
    return written + 2


def cut_columns(task: PartitionTask) -> set[str]:
    """The feature columns :func:`tier_frame` reads besides the model's inputs: keys,
    eligibility, the exploration signal and, for an exploration at the margin, the rule's count
    (the rule's list is part of the margin)."""
    wanted = {"household_key", "emd_code", "hh__benefit_status", task.signal_column}
    if task.scoring.exploration_pool == "margin":
        wanted.add(RULE_COLUMN)
    return wanted


def partition_columns(path: Path, model: CalibratedClassifier, task: PartitionTask) -> list[str]:
    """The feature columns scoring reads: the inputs the model uses, those reasons may show,
    and what the cut reads (:func:`cut_columns`; the model's other inputs are never read).
    """
    present = pq.read_schema(path).names
    wanted = {*used_inputs(model), *attribute_columns(present), *cut_columns(task)}
    if list_policy(model) is not None:
        wanted |= {EMD, *AUDIT_SOURCES}  # the groups its list policy evens out
    match = service_match(model)
    if match is not None:
        wanted |= set(match.columns())  # what the service match reads
    return [c for c in present if c in wanted]


def list_policy(model: CalibratedClassifier) -> ListPolicy | None:
    """The list policy the registered model was measured with (``equal_recall``), if any."""
    policy = getattr(model, "list_policy_", None)
    return policy if isinstance(policy, ListPolicy) and policy.method != NONE else None


def list_order(policy: ListPolicy, features: pd.DataFrame, scores: np.ndarray) -> np.ndarray:
    """The list order of eligible households (aligned with ``features``), computed in household
    key order as the backtests computed it, so that ties fall the same way."""
    keys = features["household_key"].astype("string").to_numpy(dtype=str)
    order = np.argsort(keys, kind="stable")
    ordered = features.iloc[order].reset_index(drop=True)
    key = policy.key(scores[order], ordered[EMD].to_numpy(), audit_attributes(ordered))
    out = np.empty(len(scores), dtype=np.float64)
    out[order] = key
    return out


def score_partition(task: PartitionTask) -> PartitionScored:
    """Read one partition's features, score it, write its lists and its part of the scores,
    and count what the round's monitoring needs of it (from the same read).

    The part goes to ``<round>/.parts/<시군구>.parquet``; the round's ``scores.parquet`` is then
    assembled part by part, so no process holds the national table.
    """
    model = unpickle_model(task.model)
    set_threads(model, task.threads)
    if not task.features_file.is_file():
        raise DataError(f"{task.features_file}: feature partition missing")
    try:
        scoring_columns = partition_columns(task.features_file, model, task)
        wanted = {*scoring_columns, *task.monitor_columns, KEY}
        frame = read_wide_parquet(
            task.features_file,
            columns=[c for c in pq.read_schema(task.features_file).names if c in wanted],
        )
    except (OSError, ValueError) as exc:  # pyarrow's errors derive from these
        raise DataError(
            f"{task.features_file}: cannot read the feature partition "
            f"({type(exc).__name__}): build the round's features again"
        ) from None
    scoring_frame = frame if len(frame.columns) == len(scoring_columns) else frame[scoring_columns]
    features = coerce_feature_types(scoring_frame, task.outcomes)
    scored, counts = score_frame(task, model, features)
    monitoring = None
    if len(scored):
        monitoring = monitor.partition_counts(
            scored[list(monitor.SCORE_COLUMNS)],
            frame if task.monitor_columns else None,
            task.monitor_columns,
        )
    counts["list_files"] = write_lists(task, scored)
    from pipeline.score.callcentre import export_phone_tier  # docs/callcentre.md

    export_phone_tier(scored, format_month(task.as_of), task.sigungu, task.lists_dir.parent)
    counts["emd"] = int(scored["emd_code"].nunique())
    write_parquet(scored, part_file(task.lists_dir.parent, task.sigungu))
    return PartitionScored(counts, monitoring)


def capacity_by_sigungu(config: Config) -> dict[str, dict[str, int]]:
    """Capacity per round of every 읍면동, grouped by its 시군구."""
    frame = read_capacity_table(config)
    out: dict[str, dict[str, int]] = {}
    for row in frame.itertuples(index=False):
        out.setdefault(str(row.sigungu_code), {})[str(row.emd_code)] = int(row.capacity_per_round)
    return out


def config_digest(config: Config) -> str:
    text = json.dumps(config.model_dump(mode="json"), sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _relative(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(path)


def _validation_facts(config: Config, run_id: str | None) -> dict[str, Any]:
    if not run_id:
        return {"run_id": None, "status": "unknown: the staged data names no validation run"}
    record = validation_record_file(config, run_id)
    if not record.is_file():
        return {"run_id": run_id, "status": f"unknown: {record} not found"}
    data = json.loads(record.read_text(encoding="utf-8"))
    return {
        "run_id": run_id,
        "status": data.get("status"),
        "record": _relative(record, config.paths.output_root),
        "record_sha256": sha256_file(record),
    }


def score_round(
    config: Config,
    as_of: int,
    *,
    model_version: str | None = None,
    force: bool = False,
    catalogues: Catalogues | None = None,
) -> ScoreResult:
    """``outreach score``: score the round ``as_of`` and write its folder, tracked in MLflow."""
    # Under the output root's lock (re-entered under `outreach score`): a round is placed by one
    # command at a time, and a plain score never replaces a round another one placed.
    with hold(config.paths.output_root, f"outreach score --as-of {format_month(as_of)}"):
        return _score_round(config, as_of, model_version, force, catalogues)


def _refuse_existing(config: Config, final: Path, force: bool) -> None:
    if round_exists(final) and not force:
        raise UsageError(
            f"{final} exists: a scored round is not overwritten; use --force to score it again "
            f"(the old folder is kept in {replaced_dir(config)})"
        )


def _score_round(
    config: Config,
    as_of: int,
    model_version: str | None,
    force: bool,
    catalogues: Catalogues | None,
) -> ScoreResult:
    started = time.perf_counter()
    # The workers' fork server imports its libraries while this process opens the MLflow store.
    warm_up(config.runtime, [score_partition.__module__])
    label = format_month(as_of)
    layout = OutputLayout(config.paths.output_root)
    final = layout.round(label)
    _refuse_existing(config, final, force)
    ledger.check_writable(config.paths.output_root)
    catalogues = catalogues or load_catalogues(config)
    spec, catalogue, outcomes = catalogues.features, catalogues.indicators, catalogues.outcomes
    column = signal_column(config.scoring, spec.distinct_types_windows)
    client = connect(config)
    ref = resolve_model(client, config.training.model_name, model_version)
    log.info("scoring %s with %s v%s (%s)", label, ref.name, ref.version, ref.alias or "pinned")
    model = fetch_model(ref)
    policy = list_policy(unpickle_model(model))
    policy_text = policy.describe() if policy is not None else NONE
    source = FeatureRounds(config, outcomes)
    lineage = source.lineage(as_of)  # builds the feature folder when it is missing
    features_dir = source.folder(as_of)
    feature_layout = TableLayout(features_dir)
    codes = feature_layout.partitions("features")
    if not codes:
        raise DataError(f"{features_dir}: no feature partitions")
    capacity = capacity_by_sigungu(config)
    staged = layout.staged
    staged_manifest_path = staged_manifest_file(config)
    staged_manifest = read_staged_manifest(config)
    emd_names = region_names(config, "emd")
    carry = config.scoring.carry_over
    carried_in = carried_into(
        config, as_of, outcomes, CarryPolicy(carry.max_rounds, carry.escalate_phone_after)
    )
    carried_by_sigungu = {
        str(code): part.reset_index(drop=True)
        for code, part in carried_in.frame.groupby("sigungu_code", sort=True)
    }
    workers = config.runtime.workers
    counted = tuple(monitor.monitor_columns(features_dir, spec, catalogue))
    with staging_dir(final, keep_old_in=replaced_dir(config)) as out:
        lists_dir = out / LISTS
        tasks = []
        for code in codes:
            emds = capacity.get(code, {})
            tasks.append(
                PartitionTask(
                    sigungu=code,
                    features_file=feature_layout.partition_file("features", code),
                    events_file=TableLayout(staged).partition_file("crisis_events", code),
                    as_of=as_of,
                    model=model,
                    capacity=emds,
                    emd_names=emd_names,
                    scoring=config.scoring,
                    signal_column=column,
                    lookback_months=spec.lookback_months,
                    catalogue=catalogue,
                    outcomes=outcomes,
                    lists_dir=lists_dir,
                    threads=max(1, 2 // max(1, min(workers, len(codes)))),
                    household_month=parse_month(config.window.end),
                    carried=carried_by_sigungu.get(code),
                    service_names=tuple(
                        s.name_ko if config.scoring.language == "ko" else s.name_en
                        for s in catalogues.services.services
                    ),
                    monitor_columns=counted,
                )
            )
        # Largest partitions first, so that no big one is left running alone at the end; the
        # results do not depend on the order (every partition writes its own files).
        tasks.sort(key=lambda t: (-t.features_file.stat().st_size, t.sigungu))
        results = map_partitions(
            score_partition, tasks, runtime=config.runtime, description=f"score {label}"
        )
        importance = fetch_importance(ref)
        if importance is not None:
            (out / IMPORTANCE).parent.mkdir(parents=True, exist_ok=True)
            (out / IMPORTANCE).write_bytes(importance)
        counts = {k: sum(r.counts[k] for r in results) for k in results[0].counts}
        counts["listed"] = counts["visit"] + counts["phone"]
        counts["sigungu"] = len(codes)
        if assemble_scores(out, codes) != counts["scored"]:
            raise DataError(f"{out / SCORES}: assembled rows differ from the partitions' counts")
        monitoring = monitor.monitor_round(
            config,
            as_of,
            out,
            features_dir,
            spec,
            catalogue,
            monitor.combine_partitions(
                {
                    t.sigungu: r.monitoring
                    for t, r in zip(tasks, results, strict=True)
                    if r.monitoring is not None
                }
            ),
        )
        files = sha256_tree(out)
        code = code_version()
        experiment_id = ensure_experiment(client, config, config.scoring.experiment)
        with runlog.start_run(experiment_id, f"score {label}") as run_id:
            manifest = {
                "round": label,
                "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "model": {
                    "name": ref.name,
                    "version": ref.version,
                    "uri": ref.uri,
                    "chosen_by": ref.alias or "pinned version",
                    "training_run_id": ref.run_id,
                    "training_as_of": ref.as_of,
                    "training_features_digest": ref.features_digest,
                    "file": model.path,
                    "file_sha256": model.sha256,
                    "list_policy": policy_text,
                    "training_seal_sha256": ref.seal_sha256,
                },
                "scoring_run": {
                    "run_id": run_id,
                    "experiment_id": experiment_id,
                    "experiment": config.scoring.experiment,
                    "tracking_uri": tracking_uri(config),
                },
                "features": {
                    "as_of": label,
                    "folder": _relative(features_dir, config.paths.output_root),
                    "manifest_sha256": lineage["manifest_sha256"],
                    "mlflow_digest": short_digest(lineage["manifest_sha256"]),
                    "files_sha256": lineage["files_sha256"],
                },
                "staged": {
                    "manifest_sha256": sha256_file(staged_manifest_path)
                    if staged_manifest_path.is_file()
                    else None,
                    # what a feature round as of this month reads of them
                    "view_sha256": staged_view_digest(staged_manifest, as_of),
                },
                "capacity": {
                    "file": _relative(capacity_file(config), config.paths.output_root),
                    "sha256": sha256_file(capacity_file(config)),
                },
                "raw_inputs_sha256": staged_manifest.get("inputs_sha256", {}),
                "carried_over": {
                    "from_round": carried_in.from_round,
                    "households": len(carried_in.frame),
                    "answers_sha256": carried_in.files_sha256,
                },
                "validation": _validation_facts(config, staged_manifest.get("validation_run_id")),
                "config": {
                    "sha256": config_digest(config),
                    "source": config.source,
                    "scoring": config.scoring.model_dump(mode="json"),
                },
                "code": {**code, "packages": package_versions()},
                "counts": counts,
                "monitoring": monitoring,
                "files_sha256": files,
                "ledger": ledger.head(config.paths.output_root).as_dict(),
            }
            write_json(manifest, out / MANIFEST)
            manifest_sha = sha256_file(out / MANIFEST)
            _log_scoring_run(config, ref, manifest, manifest_sha, out, features_dir, code)
            runlog.log_metrics(monitor.monitoring_metrics(monitoring))
        describe_scoring(  # the run's description and its link to the model version
            client,
            manifest["scoring_run"]["run_id"],
            manifest,
            manifest_sha,
            manifest["features"]["mlflow_digest"],
        )
        # Sealed last: nothing is written to the scoring run after its seal.
        scoring_seal = seal_run(client, run_id)
        _refuse_existing(config, final, force)  # checked again right before it is placed
    events.round_scored(
        config.paths.output_root,
        round_label=label,
        manifest_sha256=manifest_sha,
        scoring_run_id=run_id,
        scoring_seal_sha256=scoring_seal,
        model=ref.name,
        version=ref.version,
        training_seal_sha256=ref.seal_sha256,
    )
    seconds = time.perf_counter() - started
    log.info(
        "round %s: %d scored, %d listed in %.1f s",
        label,
        counts["scored"],
        counts["listed"],
        seconds,
    )
    return ScoreResult(label, final, ref, run_id, counts, seconds)


def _log_scoring_run(
    config: Config,
    ref: ModelRef,
    manifest: dict[str, Any],
    manifest_sha: str,
    out: Path,
    features_dir: Path,
    code: dict[str, str],
) -> None:
    """Params, tags, metrics, the feature dataset and the manifest of the scoring run."""
    label = manifest["round"]
    runlog.log_params(
        {
            "as_of": label,
            "model_name": ref.name,
            "model_version": ref.version,
            "config_sha256": manifest["config"]["sha256"],
            "config_source": config.source,
            **{f"scoring.{k}": json.dumps(v) for k, v in manifest["config"]["scoring"].items()},
        }
    )
    runlog.set_tags(
        {
            "outreach.stage": SCORE_STAGE,
            "outreach.as_of": label,
            "outreach.model_name": ref.name,
            "outreach.model_version": ref.version,
            "outreach.model_run_id": ref.run_id,
            "outreach.model_file_sha256": manifest["model"]["file_sha256"],
            "outreach.model_chosen_by": ref.alias or "pinned version",
            "outreach.manifest_sha256": manifest_sha,
            "outreach.features_manifest_sha256": manifest["features"]["manifest_sha256"],
            **{f"code.{k}": v for k, v in code.items()},
        }
    )
    runlog.log_metrics({f"count.{k}": float(v) for k, v in manifest["counts"].items()})
    runlog.log_folder_dataset(
        features_dir,
        name=f"features_as_of_{label}",
        digest=manifest["features"]["mlflow_digest"],
        context="scoring",
        tags={"manifest_sha256": manifest["features"]["manifest_sha256"]},
    )
    runlog.log_artifact(out / MANIFEST, artifact_path="round")
    runlog.log_dict(config.model_dump(mode="json"), "config/resolved_config.json")
