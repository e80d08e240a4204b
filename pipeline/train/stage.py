"""The ``train`` stage: backtests, final model, fairness audit, MLflow lineage, promotion.

Pure work happens in :mod:`models.backtest`, :mod:`models.metrics`, :mod:`models.fairness` and
:mod:`models.gates`; this wrapper reads the datasets, writes artifacts and talks to MLflow.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.spec import load_feature_spec, model_input_names
from models import plots
from models.backtest import (
    ORACLE,
    RULE,
    BacktestResult,
    TestRoundReader,
    build_pool,
    fit_candidate,
    run_backtests,
    training_table,
)
from models.candidates import CalibratedClassifier, LightGBMFitter, feature_importance
from models.card import CardFacts, render_card
from models.dataset_summary import DIGEST_ROWS, DatasetSummary
from models.evaluation import RoundHouseholds, household_keys
from models.fairness import fairness_from_counts, proxy_check_rows, proxy_sample
from models.gates import GateResult, decision, evaluate_gates
from pipeline.catalogue import load_indicators, load_outcomes
from pipeline.config import Config
from pipeline.datasets import OutputLayout
from pipeline.datasets.features import CachedSource, FeatureRounds, RoundSource
from pipeline.datasets.raw import raw_file_digests
from pipeline.datasets.staged import capacity_file, load_capacity
from pipeline.datasets.truth import truth_available, truth_covers, truth_files
from pipeline.errors import DataError
from pipeline.io import sha256_file, sha256_of_json, write_json
from pipeline.months import format_month
from pipeline.tracking import (
    code_version,
    connect,
    ensure_experiment,
    flatten,
    package_versions,
    pip_requirements,
    tracking_uri,
)
from pipeline.tracking.datasets import mlflow_digest
from pipeline.tracking.registry import CHALLENGER, current_champion, move_champion
from pipeline.train.distributed import engine_of, lightgbm_fitter
from pipeline.vocabulary import KEY, category_levels

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


@dataclass(frozen=True)
class Trained:
    """Results of the pure part of training (before anything is logged)."""

    as_of: int
    rounds: list[int]
    test_rounds: list[int]
    inputs: list[str]
    backtest: BacktestResult
    model: CalibratedClassifier
    final_rows: int
    final_labelled: int
    final_negatives: int
    final_rounds: list[int]
    fairness: pd.DataFrame | None
    fairness_rule: pd.DataFrame | None
    proxy: pd.DataFrame | None
    example: pd.DataFrame
    train_frame: pd.DataFrame
    test_summaries: dict[int, DatasetSummary]  # each test round's model inputs, for MLflow
    engine: str = "local"  # where LightGBM was fitted: local or dask


def plan_rounds(config: Config, as_of: int) -> tuple[list[int], list[int]]:
    """Past rounds before ``as_of`` and the last K of them as test rounds."""
    rounds = [r for r in config.window.round_months() if r < as_of]
    bt = config.training.backtest
    need = bt.min_train_rounds + config.training.calibration.holdout_rounds + bt.test_rounds
    if len(rounds) < need:
        raise DataError(
            f"train as of {format_month(as_of)}: {len(rounds)} past rounds, need at least {need} "
            "(backtest.min_train_rounds + calibration.holdout_rounds + backtest.test_rounds)"
        )
    return rounds, rounds[-bt.test_rounds :]


def _example_row(X: pd.DataFrame) -> pd.DataFrame:
    """A made-up input row (medians and most frequent levels), not any household's data."""
    row = {}
    for column in X.columns:
        values = X[column]
        if isinstance(values.dtype, pd.CategoricalDtype):
            mode = values.mode(dropna=True)
            row[column] = pd.Categorical(
                [mode.iloc[0] if len(mode) else values.cat.categories[0]],
                categories=values.cat.categories,
            )
        else:
            median = values.median()
            row[column] = np.array([0.0 if pd.isna(median) else median], dtype=values.dtype)
    return pd.DataFrame(row)


def round_input_rows(
    source: RoundSource, test: RoundHouseholds, inputs: list[str], proxy: int, seed: int
) -> tuple[DatasetSummary, pd.DataFrame]:
    """The round's MLflow dataset summary and the proxy check's rows, by one lean read.

    Both need the model inputs of a few households only: the first rows in key order (the
    digest) and a seeded sample (the proxy check), so only those rows are read again.
    """
    rows = test.total
    head_at = np.arange(min(DIGEST_ROWS, rows))
    sample_at = proxy_sample(rows, proxy, seed)
    wanted_at = np.union1d(head_at, sample_at)
    keys = pd.Series(household_keys(test, wanted_at), index=wanted_at, dtype="string")
    head, sample = keys.loc[head_at], keys.loc[sample_at]
    found = source.features(test.round_month, keys=pd.Index(keys.unique()))
    found = found[source.eligible(found)].set_index(KEY, drop=False)
    summary = DatasetSummary.from_parts(
        found.loc[head, inputs].reset_index(drop=True), rows, test.input_flags
    )
    return summary, found.loc[sample].reset_index(drop=True)


def fit_all(
    config: Config,
    source: RoundSource,
    as_of: int,
    fitter: LightGBMFitter | None = None,
) -> Trained:
    """Backtests, the final model and the fairness audit: no tracking, no files.

    ``fitter`` fits the LightGBM candidates elsewhere (``pipeline.train.distributed``, on Dask),
    in the backtests and for the final model alike, so that the backtest metrics describe how the
    registered model was trained. Test rounds are scored on ``config.runtime``'s engine.
    """
    tc = config.training
    spec = load_feature_spec(config.paths.features)
    catalogue = load_indicators(config.paths.indicators)
    outcomes = load_outcomes(config.paths.outcomes)
    inputs = model_input_names(spec, catalogue)
    levels = category_levels(outcomes)
    categorical = [c for c in inputs if c in levels]
    numeric = [c for c in inputs if c not in levels]
    rounds, test_rounds = plan_rounds(config, as_of)
    source = CachedSource(source)
    log.info(
        "train as of %s: %d past rounds, test rounds %s",
        format_month(as_of),
        len(rounds),
        ", ".join(format_month(r) for r in test_rounds),
    )
    pool = build_pool(
        source,
        rounds,
        as_of,
        inputs,
        tc.selective_labels,
        tc.seed,
        cap=float(spec.months_since_cap),
    )
    has_truth = truth_available(config)
    if has_truth and not truth_covers(config, test_rounds):
        # Scoring every household as "not in need" would make truth metrics (and gates) wrong.
        log.warning(
            "the hidden truth does not cover the test rounds %s: evaluating on observed labels",
            ", ".join(format_month(r) for r in test_rounds),
        )
        has_truth = False
    truth = tuple(truth_files(config)) if has_truth else None
    readers = [
        TestRoundReader(source, r, as_of, inputs, levels, truth_files=truth, runtime=config.runtime)
        for r in test_rounds
    ]
    capacity = load_capacity(config)
    result = run_backtests(pool, readers, capacity, tc, numeric, categorical, fitter)
    table = training_table(
        pool,
        as_of,
        tc.selective_labels.method,
        tc.selective_labels,
        inputs,
        tc.calibration.holdout_rounds,
    )
    model = fit_candidate(tc.candidate, table, tc, numeric, categorical, fitter)
    log.info("final %s model on %d rows", tc.candidate, len(table.y))
    fairness = fairness_rule = None
    if result.audit is not None:
        fairness = fairness_from_counts(result.audit, tc.fairness, "listed_model")
        fairness_rule = fairness_from_counts(result.audit, tc.fairness, "listed_rule")
    summaries: dict[int, DatasetSummary] = {}
    proxy = None
    for test in result.rounds:
        last = test is result.rounds[-1]  # the proxy check uses the latest test round
        sample = tc.fairness.proxy_sample if last else 0
        summaries[test.round_month], proxy_rows = round_input_rows(
            source, test, inputs, sample, tc.seed
        )
        if last:
            proxy = proxy_check_rows(proxy_rows, inputs, tc.seed)
    train_frame = table.X.assign(label=table.y, weight=table.weight)
    return Trained(
        as_of=as_of,
        rounds=rounds,
        test_rounds=test_rounds,
        inputs=inputs,
        backtest=result,
        model=model,
        final_rows=len(table.y),
        final_labelled=table.n_labelled,
        final_negatives=table.n_negatives,
        final_rounds=table.rounds,
        fairness=fairness,
        fairness_rule=fairness_rule,
        proxy=proxy,
        example=_example_row(table.X),
        train_frame=train_frame,
        test_summaries=summaries,
        engine=engine_of(fitter),
    )


def gate_metric_name(config: Config, has_truth: bool) -> str:
    metric = config.training.gates.metric
    if metric == "auto":
        metric = "truth_precision_emd" if has_truth else "observed_precision_emd"
    return metric


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
    """Read ``<output_root>/validation/latest.json`` (written by ``outreach validate``).

    Passed only when the latest run passed *and* the raw files it checked have the sha256 of the
    raw files now read (so a model is never credited with another data set's validation).
    """
    folder = OutputLayout(config.paths.output_root).validation
    pointer = folder / "latest.json"
    if not pointer.is_file():
        return ValidationFacts(None, f"{pointer} not found: validation has not run", None)
    latest = json.loads(pointer.read_text(encoding="utf-8"))
    run_dir = folder / str(latest.get("path", ""))
    record_path = run_dir / "validation.json"
    if not record_path.is_file():
        return ValidationFacts(None, f"{record_path} not found", None)
    record = json.loads(record_path.read_text(encoding="utf-8"))
    status = record.get("status")
    if status != "passed":
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


def _write_artifacts(trained: Trained, config: Config, out: Path) -> dict[str, Path]:
    bt = trained.backtest
    files = {}
    (out / "backtest").mkdir(parents=True)
    bt.metrics.to_csv(out / "backtest" / "metrics_per_round.csv", index=False)
    bt.summary.to_csv(out / "backtest" / "summary.csv", index=False)
    if bt.bootstrap is not None:
        bt.bootstrap.to_csv(out / "backtest" / "truth_bootstrap.csv", index=False)
    for name, table in bt.reliability.items():
        table.to_csv(out / "backtest" / f"reliability_{name}.csv", index=False)
    k = int(bt.metrics["k"].iloc[0])
    plot_dir = out / "plots"
    plots.precision_at_k(bt.curves, k, plot_dir / "precision_at_k.png")
    learned = {m: c for m, c in bt.labelled.items() if m not in (ORACLE,)}
    plots.pr_curves(learned, plot_dir / "pr_curve.png")
    plots.reliability(bt.reliability, plot_dir / "calibration.png")
    importance = feature_importance(trained.model)
    importance.rename("importance").to_csv(out / "feature_importance.csv", index_label="feature")
    plots.importance(importance, plot_dir / "feature_importance.png")
    fair = out / "fairness"
    fair.mkdir()
    if trained.fairness is not None:
        trained.fairness.to_csv(fair / "fairness.csv", index=False)
        trained.fairness_rule.to_csv(fair / "fairness_rule_baseline.csv", index=False)
        plots.fairness_chart(
            trained.fairness, config.training.fairness.ratio_bounds, fair / "fairness.png"
        )
    if trained.proxy is not None:
        trained.proxy.to_csv(fair / "proxy_check.csv", index=False)
    files["importance"] = out / "feature_importance.csv"
    return files


def _dataset(summary: DatasetSummary, source: str, name: str, targets: str | None = None) -> Any:
    """An MLflow pandas dataset recorded from a summary, as MLflow records the whole frame.

    MLflow walks every value in Python for the digest and the schema's "required" flags (41 s
    for 60,000 × 323; hours on a national test round). Here the digest is MLflow's own algorithm
    on the summary (the same value: :mod:`models.dataset_summary`), the types come from the first
    rows, required-ness and the profile (rows, cells) from the summary's counts.
    """
    import mlflow
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.pandas_dataset import PandasDataset
    from mlflow.types import ColSpec, Schema

    rows, cells = summary.rows, summary.rows * len(summary.columns)

    class SummarisedDataset(PandasDataset):
        @property
        def profile(self) -> dict[str, int]:
            return {"num_rows": rows, "num_elements": cells}

    head = summary.head
    dataset = SummarisedDataset(
        head,
        source=resolve_dataset_source(source),
        targets=targets,
        name=name,
        digest=mlflow_digest(summary),
    )
    sample = mlflow.data.from_pandas(head.head(50), source=source, name=name).schema
    if sample is not None:
        dataset.__dict__["schema"] = Schema(
            [
                ColSpec(type=c.type, name=c.name, required=not bool(summary.missing[c.name]))
                for c in sample.inputs
            ]
        )
    return dataset


def _log_datasets(
    trained: Trained, source: FeatureRounds, lineage: dict[int, dict[str, Any]]
) -> None:
    import mlflow

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        last = lineage[trained.as_of]
        train_ds = _dataset(
            DatasetSummary.of(trained.train_frame),
            str(source.folder(trained.as_of)),
            f"training_as_of_{format_month(trained.as_of)}",
            targets="label",
        )
        mlflow.log_input(
            train_ds,
            context="training",
            tags={"manifest_sha256": str(last["manifest_sha256"])},
        )
        for r, summary in trained.test_summaries.items():
            ds = _dataset(summary, str(source.folder(r)), f"test_{format_month(r)}")
            mlflow.log_input(
                ds, context="backtest_test", tags={"manifest_sha256": lineage[r]["manifest_sha256"]}
            )


def _log_metrics(bt: BacktestResult) -> None:
    import mlflow

    skip = {"round", "model"}
    batch: dict[str, float] = {}
    for step, (_, frame) in enumerate(bt.metrics.groupby("round", sort=True)):
        for _, row in frame.iterrows():
            values = {
                f"bt.{row['model']}.{k}": float(v)
                for k, v in row.items()
                if k not in skip and pd.notna(v)
            }
            mlflow.log_metrics(values, step=step)
    for _, row in bt.summary.iterrows():
        for key, value in row.items():
            if key != "model" and pd.notna(value):
                batch[f"{row['model']}.{key}"] = float(value)
    if bt.bootstrap is not None:
        for _, row in bt.bootstrap.iterrows():
            for key, value in row.items():
                if key != "model" and pd.notna(value):
                    batch[f"bootstrap.{row['model']}.{key}"] = float(value)
    mlflow.log_metrics(batch)


def train(config: Config, as_of: int) -> TrainResult:
    """``outreach train``: fit, evaluate, log to MLflow, register, and apply the gates."""
    import mlflow
    from mlflow.models import infer_signature

    started = time.perf_counter()
    tc = config.training
    outcomes = load_outcomes(config.paths.outcomes)
    source = FeatureRounds(config, outcomes)
    with lightgbm_fitter(config.runtime) as fitter:
        trained = fit_all(config, source, as_of, fitter)
        cluster = fitter.describe() if fitter is not None else {}
    lineage = {m: source.lineage(m) for m in [*trained.rounds, as_of]}
    has_truth = trained.backtest.bootstrap is not None
    metric = gate_metric_name(config, has_truth)
    column = {
        "truth_precision_emd": "truth_emd_precision_mean",
        "observed_precision_emd": "observed_emd_precision_mean",
    }[metric]
    summary = trained.backtest.summary
    candidate_metric = _summary_value(summary, tc.candidate, column)
    rule_metric = _summary_value(summary, RULE, column)
    ece = _summary_value(summary, tc.candidate, "ece_mean")
    flags = int(trained.fairness["flagged"].sum()) if trained.fairness is not None else 0
    raw_digests = raw_file_digests(config)
    validation = find_validation(config, raw_digests)
    features_digest = sha256_of_json(
        {format_month(m): v["manifest_sha256"] for m, v in lineage.items()}
    )

    log.info("logging to MLflow at %s", tracking_uri(config))
    client = connect(config)
    experiment_id = ensure_experiment(client, config)
    champion = current_champion(client, tc.model_name)
    champion_metric = None
    if champion is not None and champion.run_id:
        champion_metric = client.get_run(champion.run_id).data.metrics.get(
            f"{tc.candidate}.{column}"
        )
    gates = evaluate_gates(
        tc.gates,
        validation_passed=validation.passed,
        validation_detail=validation.detail,
        candidate_metric=candidate_metric,
        rule_metric=rule_metric,
        ece=ece,
        fairness_flags=flags,
        champion_metric=champion_metric,
        champion_version=str(champion.version) if champion is not None else None,
        metric_name=metric,
    )
    promoted, reason = decision(gates)
    code = code_version()
    with (
        mlflow.start_run(
            experiment_id=experiment_id, run_name=f"train {format_month(as_of)}"
        ) as run,
        tempfile.TemporaryDirectory(prefix="outreach-train-") as tmp,
    ):
        out = Path(tmp)
        params = flatten(config.training.model_dump(mode="json"), "training.")
        params.update(flatten(config.window.model_dump(mode="json"), "window."))
        params.update(
            {
                "as_of": format_month(as_of),
                "seed.training": str(tc.seed),
                "seed.backtest": str(tc.backtest.seed),
                "seed.generator": str(config.generator.seed),
                "test_rounds": ",".join(format_month(r) for r in trained.test_rounds),
                "train_rounds": ",".join(format_month(r) for r in trained.final_rounds),
                "n_inputs": str(len(trained.inputs)),
                "config_source": config.source,
                "training.engine": trained.engine,
                **cluster,
            }
        )
        mlflow.log_params(params)
        mlflow.set_tags(
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
        resolved = config.model_dump(mode="json")
        write_json(resolved, out / "config" / "resolved_config.json")
        write_json(raw_digests, out / "lineage" / "raw_files_sha256.json")
        write_json(
            {format_month(m): v for m, v in lineage.items()},
            out / "lineage" / "feature_folders.json",
        )
        write_json(
            {"path": str(capacity_file(config)), "sha256": sha256_file(capacity_file(config))},
            out / "lineage" / "capacity.json",
        )
        if validation.run_dir is not None:
            for name in ("validation.json", "volume.json", "summary.html"):
                if (validation.run_dir / name).is_file():
                    (out / "validation").mkdir(exist_ok=True)
                    (out / "validation" / name).write_bytes(
                        (validation.run_dir / name).read_bytes()
                    )
        dictionary = source.folder(as_of) / "data_dictionary.csv"
        if dictionary.is_file():
            (out / "data_dictionary.csv").write_bytes(dictionary.read_bytes())
        _write_artifacts(trained, config, out)
        write_json([g.as_dict() for g in gates], out / "gates.json")
        facts = CardFacts(
            model_name=tc.model_name,
            candidate=tc.candidate,
            method=tc.selective_labels.method,
            as_of=format_month(as_of),
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
            summary=summary,
            bootstrap=trained.backtest.bootstrap,
            fairness=trained.fairness,
            proxy=trained.proxy,
            gates=gates,
            promoted=promoted,
            decision=reason,
            gate_metric=metric,
            features_digest=features_digest,
            code_version=code,
            engine=trained.engine,
        )
        (out / "model_card.md").write_text(render_card(facts), encoding="utf-8")
        mlflow.log_artifacts(str(out))
        _log_datasets(trained, source, lineage)
        _log_metrics(trained.backtest)
        mlflow.log_metrics(
            {"gates.passed": float(promoted), "final.train_rows": float(trained.final_rows)}
        )
        for g in gates:
            if g.waived:
                mlflow.set_tag(f"waiver.{g.name}", g.waiver_reason)
        example = trained.example
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            signature = infer_signature(
                example.astype({c: "string" for c in trained.model.categories_}),
                trained.model.predict_proba(example)[:, 1],
            )
            info = mlflow.sklearn.log_model(
                trained.model,
                name="model",
                serialization_format="cloudpickle",
                signature=signature,
                input_example=example.astype({c: "string" for c in trained.model.categories_}),
                pip_requirements=pip_requirements(),
                pyfunc_predict_fn="predict_proba",
                registered_model_name=tc.model_name,
            )
        version = str(info.registered_model_version)
        client.set_model_version_tag(tc.model_name, version, "run_id", run.info.run_id)
        client.set_model_version_tag(tc.model_name, version, "as_of", format_month(as_of))
        client.set_model_version_tag(tc.model_name, version, "features_digest", features_digest)
        client.set_model_version_tag(
            tc.model_name, version, "gates", json.dumps([g.as_dict() for g in gates])
        )
        mlflow.set_tags({"outreach.model_version": version, "outreach.decision": reason})
        run_id = run.info.run_id
    if promoted:
        move_champion(client, config, tc.model_name, version, "gates", reason)
    else:
        client.set_registered_model_alias(tc.model_name, CHALLENGER, version)
        client.set_model_version_tag(tc.model_name, version, "challenger_reason", reason)
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
