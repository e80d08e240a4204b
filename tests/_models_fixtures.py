"""Feature folders written from raw tables in memory, for training tests (and development).

Also the reference for the partition-wise evaluation of test rounds: the evaluation as it was
done on a round's whole frame (:func:`whole_round_evaluation`).

Until ingest lands, the features stage cannot read staged tables; this writes the same folder
layout the features stage writes (``features/as_of=YYYY-MM/features|labels/sigungu=CODE/``,
``data_dictionary.csv``, ``manifest.json``) from the raw tables, identifiers dropped.
"""

from __future__ import annotations

import hashlib
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
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
    from pipeline.datasets.raw import raw_file_digests

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


# --- the evaluation of a test round on its whole frame (before partition-wise evaluation) -----


def _whole_truth(truth_paths, keys: pd.Series, round_month: int) -> pd.DataFrame:
    """The hidden truth of every household (the whole table of the two months, as before)."""
    from pipeline.datasets.truth import truth_for_round
    from pipeline.months import parse_month_series

    wanted = [format_month(round_month), format_month(round_month + 1)]
    parts = [
        pd.read_parquet(
            path,
            columns=["household_key", "month", "hardship", "in_need"],
            filters=[("month", "in", wanted)],
        )
        for path in truth_paths
    ]
    truth = pd.concat(parts, ignore_index=True)
    truth["household_key"] = truth["household_key"].astype("string")
    truth["month"] = parse_month_series(truth["month"]).astype("int64")
    truth["in_need"] = truth["in_need"].astype(bool)
    per = truth_for_round(truth, round_month).reindex(keys)
    return pd.DataFrame(
        {
            "in_need": per["in_need"].fillna(False).astype(bool).to_numpy(),
            "hardship": per["hardship"].to_numpy(dtype=np.float64),
        }
    )


def _old_group_stats(frame: pd.DataFrame, listed: str) -> pd.DataFrame:
    sel = frame[listed].astype(bool)
    need = frame["in_need"].astype(bool)
    observed = pd.to_numeric(frame["observed"], errors="coerce")
    data = pd.DataFrame(
        {
            "value": frame["value"],
            "n": 1,
            "need": need.astype(int),
            "selected": sel.astype(int),
            "hit": (sel & need).astype(int),
            "obs_known": observed.notna().astype(int),
            "obs_pos": observed.fillna(0),
            "prob_obs": frame["probability"].where(observed.notna()),
        }
    )
    g = data.groupby("value", sort=True).agg(
        size=("n", "sum"),
        in_need=("need", "sum"),
        selected=("selected", "sum"),
        hits=("hit", "sum"),
        labelled=("obs_known", "sum"),
        labelled_positive=("obs_pos", "sum"),
        mean_probability_labelled=("prob_obs", "mean"),
    )
    out = pd.DataFrame(index=g.index)
    out["size"] = g["size"]
    out["in_need"] = g["in_need"]
    out["need_rate"] = g["in_need"] / g["size"]
    out["selected"] = g["selected"]
    out["selection_rate"] = g["selected"] / g["size"]
    out["selection_to_need"] = out["selection_rate"] / out["need_rate"].replace(0, np.nan)
    out["precision"] = g["hits"] / g["selected"].replace(0, np.nan)
    out["recall"] = g["hits"] / g["in_need"].replace(0, np.nan)
    out["false_negative_rate"] = 1 - out["recall"]
    out["labelled"] = g["labelled"]
    out["observed_rate"] = g["labelled_positive"] / g["labelled"].replace(0, np.nan)
    out["mean_probability_labelled"] = g["mean_probability_labelled"]
    out["calibration_gap"] = out["mean_probability_labelled"] - out["observed_rate"]
    return out


OLD_FLAGS = ("flag_precision", "flag_recall", "flagged")


def comparable(new: pd.DataFrame, old: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The figures the old row-wise table also computed (not its flags, which were set by the
    point ratio alone), from both tables: the new one adds intervals, tests and attainable recall.
    """
    columns = [c for c in old.columns if c not in OLD_FLAGS]
    return new[columns], old[columns]


def old_fairness_table(audit: pd.DataFrame, settings, listed: str) -> pd.DataFrame:
    """The fairness table computed from household rows, as before the count tables."""
    from models.fairness import ATTRIBUTES

    low, high = settings.ratio_bounds
    parts = []
    for attribute in ATTRIBUTES:
        frame = audit[[attribute, listed, "in_need", "observed", "probability"]].rename(
            columns={attribute: "value"}
        )
        stats = _old_group_stats(frame, listed)
        reference = settings.reference_groups.get(attribute, "largest")
        if reference == "largest" or reference not in stats.index:
            reference = str(stats["size"].idxmax())
        small = (stats["selected"] < settings.min_group_size) | (
            stats["in_need"] < settings.min_group_size
        )
        ref = stats.loc[reference]
        ref_small = bool(small.loc[reference])
        stats["too_small"] = small
        for metric in ("precision", "recall", "selection_to_need", "false_negative_rate"):
            ratio = stats[metric] / ref[metric] if ref[metric] else np.nan
            stats[f"{metric}_ratio"] = np.where(small | ref_small, np.nan, ratio)
        outside = lambda r: (r < low) | (r > high)  # noqa: E731
        stats["flag_precision"] = outside(stats["precision_ratio"]).fillna(False).astype(bool)
        stats["flag_recall"] = outside(stats["recall_ratio"]).fillna(False).astype(bool)
        stats["flagged"] = stats["flag_precision"] | stats["flag_recall"]
        stats.insert(0, "reference", reference)
        stats.insert(0, "group", stats.index.astype(str))
        stats.insert(0, "attribute", attribute)
        parts.append(stats.reset_index(drop=True))
    return pd.concat(parts, ignore_index=True)


@dataclass
class WholeRound:
    """What the evaluation of one test round gave when its households were held in one frame."""

    metrics: list[dict]
    reliability: dict[str, pd.DataFrame]
    curves: dict[str, pd.DataFrame]  # per model: score, observed, round (and in_need)
    bootstrap: pd.DataFrame | None
    audit: pd.DataFrame | None  # one row per household: attributes, lists, labels
    keys: pd.Series


def whole_round_evaluation(
    source, round_month, final_as_of, inputs, truth_paths, models, capacity, main, bins=10
) -> WholeRound:
    """The reference: a test round evaluated on its whole frame, as training did before.

    The body of the former ``run_backtests`` loop and ``evaluate_scores``: every eligible
    household in one frame, every list cut on it.
    """
    from models.candidates import RuleBaseline
    from models.fairness import audit_attributes
    from models.metrics import (
        calibration_metrics,
        count_list,
        counts_to_metrics,
        cut_list,
        ranking_metrics,
    )
    from pipeline.vocabulary import KEY

    label = format_month(round_month)
    features = source.features(round_month)
    features = features[source.eligible(features)].reset_index(drop=True)
    labels = source.labels(final_as_of)
    own = labels[(labels["round_month"] == round_month) & labels["label"].notna()]
    observed = own.set_index(KEY)["label"].reindex(features[KEY]).astype("Int8")
    observed = observed.reset_index(drop=True)
    truth = _whole_truth(truth_paths, features[KEY], round_month) if truth_paths else None
    rule = RuleBaseline().fit(features)
    scored = {RULE_NAME: (rule.score_households(features), None, rule.min_score)}
    for name, model in models.items():
        p = model.predict_proba(features[inputs])[:, 1]
        scored[name] = (p, p, None)
    if truth is not None:
        scored[ORACLE_NAME] = (truth["hardship"].fillna(-1e9).to_numpy(), None, None)
    keys = features[KEY].to_numpy()
    emd = features[EMD_NAME].to_numpy()
    k_total = int(capacity.reindex(pd.unique(emd)).fillna(0).sum())
    rows, reliability, curves, listed, probs = [], {}, {}, {}, {}
    for name, (scores, prob, min_score) in scored.items():
        by_emd = cut_list(keys, emd, scores, capacity, min_score)
        overall = cut_list(keys, emd, scores, k_total, min_score)
        metrics = {"k": float(k_total)}
        metrics.update(counts_to_metrics("observed_emd_", count_list(by_emd, observed)))
        metrics.update(counts_to_metrics("observed_k_", count_list(overall, observed)))
        metrics.update(ranking_metrics(scores, observed))
        if prob is not None:
            calib, rel = calibration_metrics(prob, observed, bins)
            metrics.update(calib)
            reliability[name] = rel.assign(round=label)
            probs[name] = prob
        if truth is not None:
            need = truth["in_need"].to_numpy(dtype=np.int64)
            metrics.update(counts_to_metrics("truth_emd_", count_list(by_emd, need), truth=True))
            metrics.update(counts_to_metrics("truth_k_", count_list(overall, need), truth=True))
            metrics["truth_roc_auc"] = ranking_metrics(scores, need)["roc_auc"]
        rows.append({"round": label, "model": name, **metrics})
        listed[name] = by_emd["listed"].to_numpy(bool)
        curve = pd.DataFrame({"score": scores, "observed": observed.to_numpy(), "round": label})
        if truth is not None:
            curve["in_need"] = truth["in_need"].to_numpy()
        curves[name] = curve
    bootstrap = audit = None
    if truth is not None:
        union = np.zeros(len(features), dtype=bool)
        for flags in listed.values():
            union |= flags
        bootstrap = pd.DataFrame({m: f[union] for m, f in listed.items()})
        bootstrap["in_need"] = truth["in_need"].to_numpy()[union]
        bootstrap.attrs["total_need"] = int(truth["in_need"].sum())
        audit = audit_attributes(features)
        audit["round"] = label
        audit["listed_model"] = listed[main]
        audit["listed_rule"] = listed[RULE_NAME]
        audit["listed_oracle"] = listed[ORACLE_NAME]
        audit["probability"] = probs.get(main, np.full(len(audit), np.nan))
        audit["observed"] = observed.to_numpy()
        audit["in_need"] = truth["in_need"].to_numpy()
    return WholeRound(rows, reliability, curves, bootstrap, audit, features[KEY])


def old_precision_at_k(frame: pd.DataFrame, ks: np.ndarray) -> np.ndarray:
    """One round's precision at each list size, as the precision-at-k plot computed it."""
    target = "in_need" if "in_need" in frame.columns else "observed"
    order = np.argsort(-frame["score"].to_numpy(), kind="stable")
    y = pd.to_numeric(frame[target], errors="coerce").to_numpy(dtype=float)[order]
    hits = np.nancumsum(y)
    seen = np.cumsum(~np.isnan(y))
    return hits[ks - 1] / np.maximum(seen[ks - 1], 1)


RULE_NAME = "rule"
ORACLE_NAME = "oracle"
EMD_NAME = "emd_code"
