"""The ``train`` stage wrapper: fit (:mod:`pipeline.train.fit`), gather lineage, apply the gates,
log everything to MLflow (through :mod:`pipeline.tracking`), register, move the alias.

Pure work happens in :mod:`models` (backtests, metrics, fairness, gates, card) and in
:mod:`pipeline.train.fit`; the files kept with the run are written by
:mod:`pipeline.train.artifacts`.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd

from models.backtest import RULE, BacktestResult
from models.candidates import CalibratedClassifier
from models.card import CardFacts, render_card
from models.dataset_summary import DatasetSummary
from models.gates import (
    CHAMPION_LIST,
    GATE_COLUMNS,
    SAME_ROUNDS,
    GateResult,
    champion_not_comparable,
    decision,
    evaluate_gates,
    gate_metric,
)
from models.mitigation import describe_setting
from models.offpolicy import validation as offpolicy_validation
from pipeline.catalogue import data_sources_path, load_data_sources
from pipeline.catalogues import Catalogues, load_catalogues
from pipeline.config import Config
from pipeline.datasets import PARTITIONED_RAW_TABLES, OutputLayout
from pipeline.datasets.features import DATA_DICTIONARY_CSV, FeatureRounds
from pipeline.datasets.raw import raw_file_digests
from pipeline.datasets.validation import LATEST, PASSED, VALIDATION_JSON, read_pointer
from pipeline.errors import DataError
from pipeline.io import sha256_of_json, short_digest, write_json
from pipeline.lineage import events, ledger
from pipeline.months import format_month, parse_month
from pipeline.tracking import (
    code_version,
    connect,
    ensure_experiment,
    flatten,
    package_versions,
    pip_requirements,
    runlog,
    tracking_uri,
)
from pipeline.tracking.ai_file import write_ai_file
from pipeline.tracking.auditor_view import describe_training
from pipeline.tracking.models import fetch_model, model_input_names, set_threads, unpickle_model
from pipeline.tracking.names import DATA_SOURCES, MODEL_CARD
from pipeline.tracking.registry import (
    champion_metric,
    current_champion,
    mark_challenger,
    move_champion,
    new_version_gates,
    resolve_model,
    tag_version,
)
from pipeline.tracking.runs import first_line
from pipeline.tracking.seal import seal_run
from pipeline.train.artifacts import write_gates, write_lineage_artifacts, write_model_artifacts
from pipeline.train.distributed import lightgbm_fitter
from pipeline.train.fit import Trained, fit_all, input_columns, plan_rounds
from pipeline.train.overrides import (
    OVERRIDES_ARTIFACT,
    override_metrics,
    override_record,
    training_overrides,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainResult:
    """What ``outreach train`` did."""

    run_id: str
    model_name: str
    version: str
    champion: bool
    reason: str
    summary: pd.DataFrame
    bootstrap: pd.DataFrame | None
    seconds: float
    rows: int


def gate_metric_name(config: Config, has_truth: bool, has_offpolicy: bool = True) -> str:
    """The metric the gates read (:func:`models.gates.gate_metric`)."""
    return gate_metric(config.training.gates.metric, has_truth, has_offpolicy)


def _summary_value(summary: pd.DataFrame, model: str, column: str) -> float | None:
    rows = summary[summary["model"] == model]
    if rows.empty or column not in rows.columns:
        return None
    return float(rows[column].iloc[0])


@dataclass(frozen=True)
class ValidationFacts:
    """The validation run that covers the raw files this model was trained on, if any."""

    passed: bool | None
    detail: str
    run_dir: Path | None


def find_validation(config: Config, raw_digests: dict[str, str]) -> ValidationFacts:
    """The latest validation run (``<output_root>/validation/latest.json``).

    Passed only when the latest run passed *and* the raw files it checked have the sha256 of the
    raw files now read (so a model is never credited with another data set's validation).
    """
    layout = OutputLayout(config.paths.output_root)
    latest = read_pointer(layout, LATEST)
    if latest is None:
        pointer = layout.validation / LATEST
        return ValidationFacts(None, f"{pointer} not found: validation has not run", None)
    run_dir = layout.validation / str(latest.get("path", ""))
    record_path = run_dir / VALIDATION_JSON
    if not record_path.is_file():
        return ValidationFacts(None, f"{record_path} not found", None)
    record = json.loads(record_path.read_text(encoding="utf-8"))
    status = record.get("status")
    if status != PASSED:
        return ValidationFacts(False, f"validation run {latest.get('run_id')}: {status}", run_dir)
    checked = record.get("files_sha256") or {}
    tables = {k: v for k, v in raw_digests.items() if k.endswith(".parquet")}
    differ = sorted(k for k, v in tables.items() if checked.get(k) != v)
    if differ:
        return ValidationFacts(
            False,
            f"validation run {latest.get('run_id')} checked other raw files "
            f"({len(differ)} differ, e.g. {differ[0]})",
            run_dir,
        )
    return ValidationFacts(True, f"validation run {latest.get('run_id')} passed", run_dir)


def backtest_metrics(bt: BacktestResult) -> tuple[list[tuple[int, dict[str, float]]], dict]:
    """The backtest's metrics as MLflow logs them: per test round (step) and model, then the
    summary and bootstrap figures in one batch."""
    skip = {"round", "model"}
    steps: list[tuple[int, dict[str, float]]] = []
    for step, (_, frame) in enumerate(bt.metrics.groupby("round", sort=True)):
        for _, row in frame.iterrows():
            values = {
                f"bt.{row['model']}.{k}": float(v)
                for k, v in row.items()
                if k not in skip and pd.notna(v)
            }
            steps.append((step, values))
    batch: dict[str, float] = {}
    for _, row in bt.summary.iterrows():
        for key, value in row.items():
            if key != "model" and pd.notna(value):
                batch[f"{row['model']}.{key}"] = float(value)
    if bt.bootstrap is not None:
        for _, row in bt.bootstrap.iterrows():
            for key, value in row.items():
                if key != "model" and pd.notna(value):
                    batch[f"bootstrap.{row['model']}.{key}"] = float(value)
    if bt.offpolicy is not None:  # the off-policy estimates against the truth (synthetic data)
        for target in ("truth", "truth_label_scale"):
            suffix = "" if target == "truth" else ".label_scale"
            for _, row in offpolicy_validation(bt.offpolicy, target).iterrows():
                for key in ("mae", "bias", "coverage", "width", "n"):
                    batch[f"offpolicy.{row['estimator']}.{key}{suffix}"] = float(row[key])
    if bt.service_match is not None:  # top-k hit rates against the hidden kind of need
        rounds = sorted(r for r in bt.service_match["round"].unique() if r != "all")
        for _, row in bt.service_match.iterrows():
            # per test round (steps) under bt.; every test round together without the prefix
            prefix = "" if row["round"] == "all" else "bt."
            values = {
                f"{prefix}service_match.{row['matcher']}.hit_rate{part}": float(row[key])
                for key, part in (("rate", ""), ("low", "_low"), ("high", "_high"))
                if pd.notna(row[key])
            }
            values[f"{prefix}service_match.{row['matcher']}.households"] = float(row["households"])
            if row["round"] == "all":
                batch.update(values)
            else:
                steps.append((rounds.index(row["round"]), values))
    return steps, batch


def card_facts(
    config: Config,
    trained: Trained,
    gates: list[GateResult],
    promoted: bool,
    reason: str,
    metric: str,
    features_digest: str,
    code: dict[str, str],
) -> CardFacts:
    """What the model card says, from the run's facts."""
    tc = config.training
    return CardFacts(
        model_name=tc.model_name,
        candidate=tc.candidate,
        method=tc.selective_labels.method,
        as_of=format_month(trained.as_of),
        test_rounds=[format_month(r) for r in trained.test_rounds],
        train_rounds=[format_month(r) for r in trained.final_rounds],
        train_rows=trained.final_rows,
        train_labelled=trained.final_labelled,
        train_negatives=trained.final_negatives,
        n_inputs=len(trained.inputs),
        lightgbm_size=(
            f"{tc.lightgbm.n_estimators} trees × {tc.lightgbm.num_leaves} leaves "
            f"(cap {tc.lightgbm.max_trees_x_leaves})"
            if tc.candidate == "lightgbm"
            else f"logistic regression, C={tc.logistic.C}"
        ),
        calibration=f"{tc.calibration.method} on {tc.calibration.holdout_rounds} round(s)",
        summary=trained.backtest.summary,
        bootstrap=trained.backtest.bootstrap,
        fairness=trained.fairness,
        proxy=trained.proxy,
        tradeoff=trained.tradeoff,
        mitigation=describe_setting(
            tc.mitigation.method, tuple(tc.mitigation.attributes), tc.mitigation.strength
        ),
        mitigation_reason=tc.mitigation.reason,
        service_match=trained.backtest.service_match,
        service_labels=trained.model.service_match_.n_labels_,
        loop_settings=(
            f"selective labels `{tc.selective_labels.method}` (reason: "
            f"{tc.selective_labels.reason}); exploration share of the visit tier "
            f"{config.scoring.exploration_share:g}, drawn from the "
            f"`{config.scoring.exploration_pool}` pool with `{config.scoring.exploration_slots}` "
            f"slots (reason: {config.scoring.exploration_reason})"
        ),
        gates=gates,
        promoted=promoted,
        decision=reason,
        gate_metric=metric,
        features_digest=features_digest,
        code_version=code,
        engine=trained.engine,
        compared=trained.compared,
    )


def run_params(config: Config, trained: Trained, cluster: dict[str, str]) -> dict[str, str]:
    """The training run's params: the training and window settings, seeds, rounds, engine."""
    tc = config.training
    params = flatten(tc.model_dump(mode="json"), "training.")
    params.update(flatten(config.window.model_dump(mode="json"), "window."))
    params.update(
        {
            "as_of": format_month(trained.as_of),
            "seed.training": str(tc.seed),
            "seed.backtest": str(tc.backtest.seed),
            "seed.generator": str(config.generator.seed),
            "test_rounds": ",".join(format_month(r) for r in trained.test_rounds),
            "train_rounds": ",".join(format_month(r) for r in trained.final_rounds),
            "n_inputs": str(len(trained.inputs)),
            "config_source": config.source,
            "training.engine": trained.engine,
            "training.compared": ",".join(trained.compared) or "none",
            **cluster,
        }
    )
    return params


def _log_datasets(
    trained: Trained,
    source: FeatureRounds,
    lineage: dict[int, dict[str, Any]],
    features_digest: str,
) -> None:
    """The training and test frames as dataset inputs; their digests are those the audit prints
    (the training run's features digest; a test round's feature folder manifest sha256)."""
    last = lineage[trained.as_of]
    runlog.log_summary_dataset(
        DatasetSummary.of(trained.train_frame),
        str(source.folder(trained.as_of)),
        f"training_as_of_{format_month(trained.as_of)}",
        context="training",
        tags={"manifest_sha256": str(last["manifest_sha256"])},
        targets="label",
        digest=short_digest(features_digest),
    )
    for r, summary in trained.test_summaries.items():
        runlog.log_summary_dataset(
            summary,
            str(source.folder(r)),
            f"test_{format_month(r)}",
            context="backtest_test",
            tags={"manifest_sha256": lineage[r]["manifest_sha256"]},
            digest=short_digest(lineage[r]["manifest_sha256"]),
        )


def _seal_and_record(
    config: Config,
    client: Any,
    run_id: str,
    version: str,
    gates: list[GateResult],
    promoted: bool,
    reason: str,
) -> None:
    """Seal the finished training run and its version, record the registration and the gates'
    decision in the ledger, then move the alias (champion or challenger) and record the move."""
    root, name = config.paths.output_root, config.training.model_name
    seal_sha = seal_run(client, run_id, (name, version))
    as_of = client.get_run(run_id).data.tags.get("outreach.as_of", "")
    events.model_registered(
        root, model=name, version=version, run_id=run_id, as_of=as_of, seal_sha256=seal_sha
    )
    events.gates_decided(
        root,
        model=name,
        version=version,
        gates=[g.as_dict() for g in gates],
        promoted=promoted,
        decision=reason,
    )
    if promoted:
        move = move_champion(client, config, name, version, "gates", reason)
        events.alias_moved(root, name, move)
    else:
        mark_challenger(client, name, version, reason)
        events.challenger_marked(root, model=name, version=version, reason=reason)


def champion_to_score(
    client: Any, config: Config, champion: Any | None, test_rounds: list[int], inputs: list[str]
) -> tuple[CalibratedClassifier | None, str]:
    """The current champion's model when it can be scored on this training's test rounds, and
    the basis of the champion gate's figure (:data:`models.gates.SAME_ROUNDS`, or why the gate
    reads the figure the champion's run logged: :func:`models.gates.champion_not_comparable`)."""
    if champion is None:
        return None, ""
    ref = resolve_model(client, config.training.model_name, str(champion.version))
    as_of = parse_month(ref.as_of) if ref.as_of else None
    model = None
    try:
        why = champion_not_comparable(as_of, test_rounds, model_input_names(ref), inputs)
        model = None if why else unpickle_model(fetch_model(ref))
    except DataError as exc:  # the gate still has the champion's logged figure
        why = f"its model could not be read ({first_line(exc)})"
    if model is None:
        log.info("champion version %s is not scored on the test rounds: %s", ref.version, why)
        return None, why
    set_threads(model, config.training.lightgbm.n_jobs)
    log.info("champion version %s is scored on the test rounds beside the candidates", ref.version)
    return model, SAME_ROUNDS


def train(config: Config, as_of: int, catalogues: Catalogues | None = None) -> TrainResult:
    """``outreach train``: fit, evaluate, log to MLflow, register, and apply the gates."""
    started = time.perf_counter()
    ledger.check_writable(config.paths.output_root)  # before hours of work, not after
    tc = config.training
    catalogues = catalogues or load_catalogues(config)
    data_sources = load_data_sources(  # cited by the AI file; checked before the work
        data_sources_path(config.paths.indicators), catalogues.indicators, PARTITIONED_RAW_TABLES
    )
    source = FeatureRounds(config, catalogues.outcomes)
    client = connect(config)
    champion = current_champion(client, tc.model_name)
    _, test_rounds = plan_rounds(config, as_of)
    champion_model, champion_basis = champion_to_score(
        client, config, champion, test_rounds, input_columns(catalogues).inputs
    )
    with lightgbm_fitter(config.runtime) as fitter:
        trained = fit_all(config, source, as_of, fitter, catalogues, champion_model)
        cluster = fitter.describe() if fitter is not None else {}
    lineage = {m: source.lineage(m) for m in [*trained.rounds, as_of]}
    has_truth = trained.backtest.bootstrap is not None
    metric = gate_metric_name(config, has_truth, trained.backtest.offpolicy is not None)
    column = GATE_COLUMNS[metric]
    summary = trained.backtest.summary
    flags = int(trained.fairness["flagged"].sum()) if trained.fairness is not None else 0
    raw_digests = raw_file_digests(config)
    validation = find_validation(config, raw_digests)
    features_digest = sha256_of_json(
        {format_month(m): v["manifest_sha256"] for m, v in lineage.items()}
    )

    log.info("logging to MLflow at %s", tracking_uri(config))
    experiment_id = ensure_experiment(client, config)
    if champion_model is not None:
        champion_figure = _summary_value(summary, CHAMPION_LIST, column)
    else:
        champion_figure = champion_metric(client, champion, f"{tc.candidate}.{column}")
    gates = evaluate_gates(
        tc.gates,
        validation_passed=validation.passed,
        validation_detail=validation.detail,
        candidate_metric=_summary_value(summary, tc.candidate, column),
        rule_metric=_summary_value(summary, RULE, column),
        ece=_summary_value(summary, tc.candidate, "ece_pooled"),
        ece_noise=_summary_value(summary, tc.candidate, "ece_noise95"),
        fairness_flags=flags,
        champion_metric=champion_figure,
        champion_version=str(champion.version) if champion is not None else None,
        metric_name=metric,
        champion_basis=champion_basis,
    )
    gates += new_version_gates(config, champion)  # shadow rounds (docs/scoring.md)
    promoted, reason = decision(gates)
    code = code_version()
    with (
        runlog.start_run(experiment_id, f"train {format_month(as_of)}") as run_id,
        tempfile.TemporaryDirectory(prefix="outreach-train-") as tmp,
    ):
        out = Path(tmp)
        runlog.log_params(run_params(config, trained, cluster))
        runlog.set_tags(
            {
                **{f"code.{k}": v for k, v in code.items()},
                **{f"package.{k}": v for k, v in package_versions().items()},
                "outreach.stage": "train",
                "outreach.as_of": format_month(as_of),
                "outreach.features_digest": features_digest,
                "outreach.gate_metric": metric,
                "outreach.validation": validation.detail,
                "outreach.engine": trained.engine,
            }
        )
        write_lineage_artifacts(
            out,
            config,
            raw_digests,
            lineage,
            validation.run_dir,
            source.folder(as_of) / DATA_DICTIONARY_CSV,
        )
        write_json(data_sources.resolved(catalogues.indicators), out / DATA_SOURCES)
        write_model_artifacts(trained, config, out)
        write_gates(out, gates)
        facts = card_facts(config, trained, gates, promoted, reason, metric, features_digest, code)
        overrides = training_overrides(config, as_of, trained.final_rounds, catalogues.outcomes)
        facts = replace(facts, overrides=overrides)
        (out / OVERRIDES_ARTIFACT).parent.mkdir(parents=True, exist_ok=True)
        write_json(override_record(overrides), out / OVERRIDES_ARTIFACT)
        (out / MODEL_CARD).write_text(render_card(facts), encoding="utf-8")
        runlog.log_artifacts(out)
        _log_datasets(trained, source, lineage, features_digest)
        steps, batch = backtest_metrics(trained.backtest)
        for step, values in steps:
            runlog.log_metrics(values, step=step)
        runlog.log_metrics(batch)
        runlog.log_metrics(
            {"gates.passed": float(promoted), "final.train_rows": float(trained.final_rows)}
        )
        runlog.log_metrics(override_metrics(overrides))
        for g in gates:
            if g.waived:
                runlog.set_tags({f"waiver.{g.name}": g.waiver_reason})
        version = runlog.log_registered_model(
            trained.model,
            trained.example,
            list(trained.model.categories_),
            tc.model_name,
            pip_requirements(),
        )
        tag_version(
            client,
            tc.model_name,
            version,
            {
                "run_id": run_id,
                "as_of": format_month(as_of),
                "features_digest": features_digest,
                "gates": json.dumps([g.as_dict() for g in gates]),
            },
        )
        runlog.set_tags({"outreach.model_version": version, "outreach.decision": reason})
        card = (out / MODEL_CARD).read_text(encoding="utf-8")
        gate_facts = [g.as_dict() for g in gates]
        describe_training(client, experiment_id, run_id, tc.model_name, version, card, gate_facts)
    write_ai_file(client, run_id, (tc.model_name, version))  # before the seal, which covers it
    _seal_and_record(config, client, run_id, version, gates, promoted, reason)
    seconds = time.perf_counter() - started
    rows = trained.final_rows + sum(s.rows for s in trained.test_summaries.values())
    return TrainResult(
        run_id=run_id,
        model_name=tc.model_name,
        version=version,
        champion=promoted,
        reason=reason,
        summary=summary,
        bootstrap=trained.backtest.bootstrap,
        seconds=seconds,
        rows=rows,
    )


__all__ = ["GateResult", "TrainResult", "fit_all", "plan_rounds", "train"]
