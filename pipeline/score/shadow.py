"""``outreach score --shadow VERSION``: a challenger scored beside a round the champion scored.

Nothing of the round changes: its lists, ``scores.parquet`` and manifest are read, never
written. The challenger scores every eligible household of the same feature folder, and its tiers
are cut by the same capacity and rules (the scoring settings the round's manifest records, the
same exploration seed, the round's carried cases in their tiers) through the score stage's own
functions (:func:`pipeline.score.stage.tier_frame`, :func:`pipeline.score.tiers.cut_round`). No
reasons are computed: no list is written.

Written atomically to ``rounds/YYYY-MM/shadow/v<N>/`` (:func:`pipeline.datasets.rounds.shadow_dir`):

- ``scores.parquet``: every eligible household: the challenger's score, ranks, tier and
  selection beside the round's (``champion_score``, ``champion_tier``);
- ``overlap_per_emd.csv``: per 읍면동 the visit tier and the listed households (visit and phone)
  of both, their intersection, Jaccard index and the Spearman correlation of the scores;
- ``fairness.csv``: per audited group (``models.fairness.audit_attributes``) its share of the
  listed households and of the visit tier under each model and the difference;
- ``summary.json``: the comparison's figures and lineage.

An MLflow run in the scoring experiment (tags ``outreach.stage`` = ``shadow``,
``outreach.shadow`` = ``true``), sealed, and a ``shadow scored`` ledger entry record it; the
promotion gate ``training.gates.min_shadow_rounds`` counts those runs
(:func:`pipeline.tracking.registry.shadow_gate`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import ValidationError

from models.fairness import AUDIT_SOURCES, audit_attributes
from pipeline.catalogues import Catalogues, load_catalogues
from pipeline.config import Config, ScoringConfig
from pipeline.datasets import TableLayout
from pipeline.datasets.outcomes import read_round_outcomes, skipped_mask
from pipeline.datasets.rounds import (
    MANIFEST,
    SCORES,
    SHADOW,
    SHADOW_FAIRNESS,
    SHADOW_OVERLAP,
    SHADOW_SCORES,
    SHADOW_SUMMARY,
    part_file,
    read_manifest,
    read_rows,
    round_changes,
    round_dir,
    scored_features_folder,
    shadow_dir,
)
from pipeline.datasets.staged import capacity_file
from pipeline.engine import map_partitions, warm_up
from pipeline.errors import DataError, UsageError
from pipeline.io import (
    read_wide_parquet,
    sha256_file,
    short_digest,
    staging_dir,
    write_bytes,
    write_json,
)
from pipeline.lineage import events, ledger
from pipeline.locks import hold
from pipeline.months import format_month
from pipeline.score.contrib import used_inputs
from pipeline.score.stage import (
    PartitionTask,
    assemble_scores,
    capacity_by_sigungu,
    cut_columns,
    list_policy,
    signal_column,
    tier_frame,
)
from pipeline.score.tiers import MONITOR, VISIT
from pipeline.tracking import connect, ensure_experiment, runlog, tracking_uri
from pipeline.tracking.models import fetch_model, set_threads, unpickle_model
from pipeline.tracking.registry import SHADOW_STAGE, SHADOW_TAG, ModelRef, resolve_model
from pipeline.tracking.seal import seal_run
from pipeline.vocabulary import CARRIED_OVER, EMD, coerce_feature_types

log = logging.getLogger(__name__)

ROUND_COLUMNS = ["household_key", "emd_code", "score", "tier", "selection_reason"]
SHADOW_COLUMNS = [
    "household_key",
    "sigungu_code",
    "emd_code",
    "score",
    "model_rank",
    "tier",
    "list_rank",
    "selection_reason",
    "selection_probability",
    "champion_score",
    "champion_tier",
]
COUNTS = ("eligible", "champion_visit", "shadow_visit", "champion_listed", "shadow_listed")


@dataclass(frozen=True)
class ShadowTask:
    """One 시군구 partition of a shadow scoring; picklable."""

    partition: PartitionTask  # lists_dir is the staging folder (nothing is written under it)
    round_scores: Path  # the round's scores.parquet (read, never written)


@dataclass(frozen=True)
class ShadowResult:
    """What ``outreach score --shadow`` did."""

    round: str
    folder: Path
    model: ModelRef
    champion_version: str
    run_id: str
    summary: dict[str, Any]
    seconds: float


# --- pure comparisons -------------------------------------------------------------------------


def _jaccard(both: pd.Series, a: pd.Series, b: pd.Series) -> pd.Series:
    union = a + b - both
    return (both / union.where(union > 0)).astype("float64")


def overlap_counts(frame: pd.DataFrame) -> pd.DataFrame:
    """Per 읍면동 of ``frame`` (columns emd_code, tier, champion_tier, score, champion_score):
    eligible households, the visit tier and the listed (visit and phone) of each model and their
    intersections, and the Spearman correlation of the scores (NaN when undefined). Pure."""
    from scipy.stats import spearmanr

    flags = pd.DataFrame(
        {
            EMD: frame[EMD].astype("string"),
            "eligible": 1,
            "champion_visit": frame["champion_tier"] == VISIT,
            "shadow_visit": frame["tier"] == VISIT,
            "champion_listed": frame["champion_tier"] != MONITOR,
            "shadow_listed": frame["tier"] != MONITOR,
        }
    )
    flags["visit_both"] = flags["champion_visit"] & flags["shadow_visit"]
    flags["listed_both"] = flags["champion_listed"] & flags["shadow_listed"]
    out = flags.groupby(EMD, sort=True).sum().astype("int64")

    def spearman(part: pd.DataFrame) -> float:
        if len(part) < 3 or part["score"].nunique() < 2 or part["champion_score"].nunique() < 2:
            return float("nan")
        return float(spearmanr(part["score"], part["champion_score"]).statistic)

    scores = frame[[EMD, "score", "champion_score"]].assign(**{EMD: flags[EMD]})
    out["spearman"] = pd.Series(
        {emd: spearman(part) for emd, part in scores.groupby(EMD, sort=True)}, dtype="float64"
    )
    return out.reset_index()


def with_jaccard(overlap: pd.DataFrame) -> pd.DataFrame:
    """``overlap`` with the Jaccard index of the visit tiers and of the listed (NaN for a 읍면동
    where neither model lists anybody). Pure."""
    return overlap.assign(
        jaccard_visit=_jaccard(
            overlap["visit_both"], overlap["champion_visit"], overlap["shadow_visit"]
        ),
        jaccard_listed=_jaccard(
            overlap["listed_both"], overlap["champion_listed"], overlap["shadow_listed"]
        ),
    )


def group_counts(groups: pd.DataFrame, frame: pd.DataFrame) -> pd.DataFrame:
    """Per audited group (``groups``: the attribute columns of ``audit_attributes``, aligned
    with ``frame``): eligible households, each model's visit tier and listed. Counts of several
    partitions add up. Pure."""
    flags = {
        "eligible": np.ones(len(frame), dtype=np.int64),
        "champion_visit": (frame["champion_tier"] == VISIT).to_numpy(dtype=np.int64),
        "shadow_visit": (frame["tier"] == VISIT).to_numpy(dtype=np.int64),
        "champion_listed": (frame["champion_tier"] != MONITOR).to_numpy(dtype=np.int64),
        "shadow_listed": (frame["tier"] != MONITOR).to_numpy(dtype=np.int64),
    }
    parts = []
    for attribute in groups.columns:
        part = pd.DataFrame({"group": groups[attribute].astype("string").fillna("missing")})
        for name, values in flags.items():
            part[name] = values
        counts = part.groupby("group", sort=True).sum().reset_index()
        counts.insert(0, "attribute", attribute)
        parts.append(counts)
    return pd.concat(parts, ignore_index=True)


def fairness_shares(counts: pd.DataFrame) -> pd.DataFrame:
    """Each group's share of the listed households and of the visit tier under both models,
    and the differences (challenger - champion); ``counts`` from :func:`group_counts`, summed
    over partitions. Pure."""
    counts = counts.groupby(["attribute", "group"], sort=True)[list(COUNTS)].sum().reset_index()
    out = counts.copy()
    for tier in ("visit", "listed"):
        for who in ("champion", "shadow"):
            column = f"{who}_{tier}"
            total = counts.groupby("attribute")[column].transform("sum")
            out[f"{column}_share"] = (counts[column] / total.where(total > 0)).astype("float64")
        out[f"{tier}_share_difference"] = (
            out[f"shadow_{tier}_share"] - out[f"champion_{tier}_share"]
        )
    return out


def correlations(scores: np.ndarray, champion: np.ndarray) -> dict[str, float | None]:
    """Spearman and Kendall (tau-b) rank correlations of two models' scores over the same
    households (None when undefined: fewer than 3 households or a constant score). Pure."""
    from scipy.stats import kendalltau, spearmanr

    if len(scores) < 3 or np.ptp(scores) == 0 or np.ptp(champion) == 0:
        return {"spearman": None, "kendall": None}
    return {
        "spearman": float(spearmanr(scores, champion).statistic),
        "kendall": float(kendalltau(scores, champion).statistic),
    }


def _stats(values: pd.Series) -> dict[str, float | None]:
    values = values.dropna()
    if values.empty:
        return {"mean": None, "median": None, "min": None}
    return {
        "mean": float(values.mean()),
        "median": float(values.median()),
        "min": float(values.min()),
    }


def summarise(overlap: pd.DataFrame, fairness: pd.DataFrame) -> dict[str, Any]:
    """The figures of the summary from the per-읍면동 overlap (with Jaccard) and the fairness
    shares. Pure."""
    out: dict[str, Any] = {}
    for tier in ("visit", "listed"):
        pooled_union = (
            overlap[f"champion_{tier}"].sum()
            + overlap[f"shadow_{tier}"].sum()
            - overlap[f"{tier}_both"].sum()
        )
        out[tier] = {
            **_stats(overlap[f"jaccard_{tier}"]),
            "pooled": float(overlap[f"{tier}_both"].sum() / pooled_union) if pooled_union else None,
            "emd": int(overlap[f"jaccard_{tier}"].notna().sum()),
            "champion": int(overlap[f"champion_{tier}"].sum()),
            "shadow": int(overlap[f"shadow_{tier}"].sum()),
            "both": int(overlap[f"{tier}_both"].sum()),
        }
    difference: dict[str, Any] = {}
    for tier in ("visit", "listed"):
        column = fairness[f"{tier}_share_difference"].abs()
        per_attribute = (
            fairness.assign(_abs=column).groupby("attribute", sort=True)["_abs"].max().dropna()
        )
        difference[tier] = {
            "max_abs_share_difference": float(column.max()) if column.notna().any() else None,
            "per_attribute_max_abs": {str(k): float(v) for k, v in per_attribute.items()},
        }
    return {"overlap": out, "fairness": difference}


# --- off-policy difference (models.offpolicy) --------------------------------------------------


def round_propensity(visits: pd.DataFrame) -> pd.Series:
    """The probability that each visited household of the round was visited *and* its label
    observed (by household key): the round's logged selection probability (1 for the model's
    and the carried picks, ``e / pool`` for an exploration draw: exact, the round was cut by
    :func:`cut_round`) times the share of that selection reason's visits whose answer gave a
    label (missing at random within a reason; the convention of ``models.offpolicy``). Pure."""
    reason = visits["selection_reason"].astype("string").fillna("")
    known = visits["label"].notna().to_numpy()
    share = pd.Series(known, index=visits.index).groupby(reason.to_numpy()).mean()
    rate = reason.map(share).to_numpy(dtype=np.float64)
    p = visits["selection_probability"].astype("float64").to_numpy() * rate
    return pd.Series(p, index=pd.Index(visits["household_key"].astype("string")))


def offpolicy_difference(
    frame: pd.DataFrame, outcomes: pd.DataFrame | None, labels: dict[str, int | None]
) -> dict[str, Any]:
    """The off-policy estimates (``models.offpolicy.estimate``: IPS, SNIPS, DR) of the visit
    tier's precision under each model and their difference (challenger - champion), from the
    round's own logged visits and their returned outcomes: available once the round's outcomes
    were imported. ``frame``: the households in either visit tier (``tier``, ``champion_tier``,
    ``score``, ``champion_score``, ``champion_reason``, ``champion_probability``,
    ``has_signal``); the DR outcome model is each model's own calibrated score. ``labels``:
    outcome code -> 1, 0 or None."""
    try:
        from models import offpolicy
    except ImportError:
        return {"available": False, "why": "models.offpolicy is not part of this version"}
    if outcomes is None or outcomes.empty:
        return {
            "available": False,
            "why": "no outcomes of this round imported yet: shadow it again after the import",
        }
    added = outcomes["added_by_caseworker"].astype(bool).to_numpy()
    answered = outcomes.loc[~skipped_mask(outcomes) & ~added]
    code = answered.set_index(answered["household_key"].astype("string"))["outcome_code"]
    label = code.map(lambda c: labels.get(str(c)) if pd.notna(c) else None)
    keys = frame["household_key"].astype("string")
    observed = pd.array(keys.map(label).to_numpy(), dtype="Int64")
    visited = (frame["champion_tier"] == VISIT).to_numpy()
    propensity = round_propensity(
        pd.DataFrame(
            {
                "household_key": keys[visited].to_numpy(),
                "selection_reason": frame.loc[visited, "champion_reason"].to_numpy(),
                "selection_probability": frame.loc[visited, "champion_probability"].to_numpy(),
                "label": observed[visited],
            }
        )
    )
    p = propensity.reindex(pd.Index(keys)).to_numpy(dtype=np.float64)
    seen = ~pd.isna(observed) & (p > 0)
    rows = pd.DataFrame(
        {
            "champion": visited,
            "shadow": (frame["tier"] == VISIT).to_numpy(),
            offpolicy.OBSERVED: np.where(seen, observed.fillna(0), -1).astype(np.int64),
            offpolicy.PROPENSITY: p,
            # visited by the log, or in the pool of its exploration draw (a recent signal)
            offpolicy.SUPPORT: ~np.isnan(p) | frame["has_signal"].to_numpy(dtype=bool),
            "m_champion": frame["champion_score"].to_numpy(dtype=np.float64),
            "m_shadow": frame["score"].to_numpy(dtype=np.float64),
        }
    )
    # DR corrects the model term only where 1 / p is at most models.offpolicy's bound (the
    # "switch" estimator): an exploration pick's weight (pool / e, hundreds) would swamp it.
    cap = getattr(offpolicy, "DR_MAX_WEIGHT", None)
    try:
        champion = offpolicy.estimate(rows, "champion", "m_champion", max_weight=cap)
        shadow = offpolicy.estimate(rows, "shadow", "m_shadow", max_weight=cap)
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        return {
            "available": False,
            "why": f"models.offpolicy.estimate failed ({type(exc).__name__}: {exc})",
        }
    return {
        "available": True,
        "labelled_visits": int(seen.sum()),
        "dr_max_weight": cap,
        "champion": champion,
        "shadow": shadow,
        "difference": {k: shadow[k] - champion[k] for k in ("ips", "snips", "dr") if k in shadow},
    }


# --- the partitions ---------------------------------------------------------------------------


def shadow_columns(path: Path, model: Any, task: PartitionTask) -> list[str]:
    """The feature columns a shadow scoring reads: the model's inputs, what the round's cut
    reads (keys, eligibility, the exploration signal, the rule's count for a margin) and the
    audited groups' sources."""
    import pyarrow.parquet as pq

    present = pq.read_schema(path).names
    wanted = {*used_inputs(model), *cut_columns(task), *AUDIT_SOURCES}
    return [c for c in present if c in wanted]


def shadow_partition(task: ShadowTask) -> dict[str, Any]:
    """Score one partition with the challenger, cut its tiers as the round was cut, compare
    with the round's rows; writes the partition's part and returns its counts."""
    t = task.partition
    model = unpickle_model(t.model)
    set_threads(model, t.threads)
    if not t.features_file.is_file():
        raise DataError(f"{t.features_file}: feature partition missing")
    frame = read_wide_parquet(t.features_file, columns=shadow_columns(t.features_file, model, t))
    features = coerce_feature_types(frame, t.outcomes)
    scored = read_rows(
        task.round_scores,
        [*ROUND_COLUMNS, "selection_probability"],
        {"sigungu_code": [t.sigungu]},
    )
    scored = scored.set_index(scored["household_key"].astype("string"))
    carried = scored.loc[scored["selection_reason"] == CARRIED_OVER]
    t = replace(
        t,
        carried=pd.DataFrame(
            {"household_key": carried.index.to_numpy(), "tier": carried["tier"].to_numpy()}
        ),
    )
    cut, eligible, _, _ = tier_frame(t, model, features)
    keys = cut["household_key"].astype("string")
    found = keys.isin(scored.index)
    out = cut.drop(columns=[c for c in cut.columns if c not in SHADOW_COLUMNS])
    out.insert(1, "sigungu_code", pd.Series(t.sigungu, index=out.index, dtype="string"))
    out["champion_score"] = keys.map(scored["score"]).astype("float64")
    out["champion_tier"] = keys.map(scored["tier"]).astype("string")
    out["tier"] = out["tier"].astype("string")
    out["selection_reason"] = out["selection_reason"].astype("string")
    groups = audit_attributes(features.iloc[eligible].reset_index(drop=True))
    groups.index = out.index
    extended = out.assign(
        champion_reason=keys.map(scored["selection_reason"]).astype("string"),
        champion_probability=keys.map(scored["selection_probability"]).astype("float64"),
        has_signal=cut["has_signal"],
    )
    keep = found.to_numpy()
    overlap = overlap_counts(out.loc[keep])
    fairness = group_counts(groups.loc[keep], out.loc[keep])
    out = out.loc[:, SHADOW_COLUMNS].sort_values([EMD, "model_rank"], kind="stable")
    from pipeline.io import write_parquet

    write_parquet(out.reset_index(drop=True), part_file(t.lists_dir, t.sigungu))
    return {
        "overlap": overlap,
        "fairness": fairness,
        # the off-policy rows: listed by either model (a few per cent of the partition)
        "visits": extended.loc[
            keep & ((extended["tier"] == VISIT) | (extended["champion_tier"] == VISIT)).to_numpy()
        ].reset_index(drop=True),
        "scored": len(out),
        "not_in_round": int((~found).sum()),
        "round_rows": len(scored),
        "tiers": out["tier"].value_counts().to_dict(),
        "explored": int((out["selection_reason"] == "random_exploration").sum()),
    }


# --- the command ------------------------------------------------------------------------------


def _round_scoring(manifest: dict[str, Any], config: Config) -> ScoringConfig:
    recorded = (manifest.get("config") or {}).get("scoring")
    if not recorded:
        raise DataError("score --shadow: the round manifest records no scoring settings")
    try:
        return ScoringConfig.model_validate(recorded)
    except ValidationError as exc:
        raise DataError(
            f"score --shadow: the round's scoring settings cannot be read by this version "
            f"({exc.errors()[0]['msg']})"
        ) from None


def check_round(config: Config, as_of: int) -> tuple[Path, dict[str, Any]]:
    """The scored round folder and its manifest; UsageError when the round is not scored."""
    label = format_month(as_of)
    folder = round_dir(config, as_of)
    if not (folder / MANIFEST).is_file():
        raise UsageError(
            f"score --shadow: round {label} is not scored: score it with the champion first "
            f"(`outreach score --as-of {label}`)"
        )
    return folder, read_manifest(folder)


def shadow_round(
    config: Config,
    as_of: int,
    version: str,
    *,
    force: bool = False,
    catalogues: Catalogues | None = None,
) -> ShadowResult:
    """``outreach score --shadow VERSION``: score the round ``as_of`` with ``version`` beside
    the model that scored it; write the shadow record, an MLflow run and a ledger entry."""
    label = format_month(as_of)
    with hold(config.paths.output_root, f"outreach score --shadow {version} --as-of {label}"):
        return _shadow_round(config, as_of, str(version), force, catalogues)


def _shadow_round(
    config: Config, as_of: int, version: str, force: bool, catalogues: Catalogues | None
) -> ShadowResult:
    started = time.perf_counter()
    warm_up(config.runtime, [shadow_partition.__module__])
    label = format_month(as_of)
    folder, manifest = check_round(config, as_of)
    round_model = manifest.get("model") or {}
    champion_version = str(round_model.get("version"))
    client = connect(config)
    ref = resolve_model(client, config.training.model_name, version)
    if ref.version == champion_version:
        raise UsageError(
            f"score --shadow: v{ref.version} scored round {label} itself: shadow another version"
        )
    target = shadow_dir(folder, ref.version)
    if target.exists() and not force:
        raise UsageError(
            f"{target} exists: v{ref.version} was scored in shadow on round {label} already; "
            "use --force to do it again (the old record is kept beside it)"
        )
    changes = round_changes(config, folder, manifest)
    if changes:
        raise DataError(
            f"score --shadow: round {label} no longer matches its manifest ({changes[0]}): a "
            "shadow is compared with the round as it was scored"
        )
    recorded_capacity = (manifest.get("capacity") or {}).get("sha256")
    if recorded_capacity and sha256_file(capacity_file(config)) != recorded_capacity:
        raise DataError(
            f"score --shadow: {capacity_file(config)} changed since round {label} was scored "
            f"(recorded sha256 {short_digest(recorded_capacity)}): the tiers would not be cut "
            "by the same capacity"
        )
    ledger.check_writable(config.paths.output_root)
    scoring = _round_scoring(manifest, config)
    catalogues = catalogues or load_catalogues(config)
    column = signal_column(scoring, catalogues.features.distinct_types_windows)
    model = fetch_model(ref)
    features_dir = scored_features_folder(config, manifest, label)
    feature_layout = TableLayout(features_dir)
    codes = feature_layout.partitions("features")
    if not codes:
        raise DataError(f"{features_dir}: no feature partitions")
    capacity = capacity_by_sigungu(config)
    workers = config.runtime.workers
    manifest_sha = sha256_file(folder / MANIFEST)
    with staging_dir(target, keep_old_in=folder / SHADOW / "_replaced") as out:
        tasks = [
            ShadowTask(
                PartitionTask(
                    sigungu=code,
                    features_file=feature_layout.partition_file("features", code),
                    events_file=Path(),  # no reasons: no events read
                    as_of=as_of,
                    model=model,
                    capacity=capacity.get(code, {}),
                    emd_names={},
                    scoring=scoring,
                    signal_column=column,
                    lookback_months=catalogues.features.lookback_months,
                    catalogue=catalogues.indicators,
                    outcomes=catalogues.outcomes,
                    lists_dir=out,  # the parts go to <out>/.parts/
                    threads=max(1, 2 // max(1, min(workers, len(codes)))),
                ),
                folder / SCORES,
            )
            for code in codes
        ]
        tasks.sort(key=lambda t: (-t.partition.features_file.stat().st_size, t.partition.sigungu))
        results = map_partitions(
            shadow_partition,
            tasks,
            runtime=config.runtime,
            description=f"shadow v{ref.version} {label}",
        )
        missing = sum(r["not_in_round"] for r in results)
        round_rows = sum(r["round_rows"] for r in results)
        scored = sum(r["scored"] for r in results)
        if missing or round_rows != scored:
            raise DataError(
                f"score --shadow: the eligible households differ from round {label}'s "
                f"({scored:,} now, {round_rows:,} in its scores; {missing:,} not in the round): "
                "the features or the eligibility settings changed since it was scored"
            )
        if assemble_scores(out, codes) != scored:
            raise DataError(f"{out / SHADOW_SCORES}: assembled rows differ from the partitions'")
        overlap = with_jaccard(
            pd.concat([r["overlap"] for r in results], ignore_index=True).sort_values(EMD)
        )
        fairness = fairness_shares(pd.concat([r["fairness"] for r in results]))
        import pyarrow.parquet as pq

        both = pq.read_table(out / SHADOW_SCORES, columns=["score", "champion_score"])
        ranks = correlations(
            both["score"].to_numpy(), both["champion_score"].to_numpy(zero_copy_only=False)
        )
        del both
        figures = summarise(overlap, fairness)
        off = offpolicy_difference(
            pd.concat([r["visits"] for r in results], ignore_index=True),
            read_round_outcomes(config, label),
            catalogues.outcomes.label_of(),
        )
        tiers = pd.Series(dtype="int64")
        for r in results:
            tiers = tiers.add(pd.Series(r["tiers"], dtype="int64"), fill_value=0)
        counts = {
            "scored": scored,
            "visit": int(tiers.get(VISIT, 0)),
            "phone": int(tiers.get("phone", 0)),
            "monitor": int(tiers.get(MONITOR, 0)),
            "explored": sum(r["explored"] for r in results),
            "emd": len(overlap),
            "sigungu": len(codes),
        }
        write_bytes(
            overlap.to_csv(index=False, float_format="%.6g").encode("utf-8"), out / SHADOW_OVERLAP
        )
        write_bytes(
            fairness.to_csv(index=False, float_format="%.6g").encode("utf-8"),
            out / SHADOW_FAIRNESS,
        )
        experiment_id = ensure_experiment(client, config, config.scoring.experiment)
        with runlog.start_run(experiment_id, f"shadow v{ref.version} {label}") as run_id:
            summary = {
                "round": label,
                "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "model": {
                    "name": ref.name,
                    "version": ref.version,
                    "uri": ref.uri,
                    "training_run_id": ref.run_id,
                    "training_as_of": ref.as_of,
                    "file_sha256": model.sha256,
                    "list_policy": _policy_text(model),
                },
                "champion": {
                    "version": champion_version,
                    "chosen_by": round_model.get("chosen_by"),
                    "file_sha256": round_model.get("file_sha256"),
                    "scoring_run_id": (manifest.get("scoring_run") or {}).get("run_id"),
                },
                "round_manifest_sha256": manifest_sha,
                "features": {
                    "folder": (manifest.get("features") or {}).get("folder"),
                    "manifest_sha256": (manifest.get("features") or {}).get("manifest_sha256"),
                    "mlflow_digest": short_digest(
                        (manifest.get("features") or {}).get("manifest_sha256")
                    ),
                },
                "scoring": scoring.model_dump(mode="json"),
                "shadow_run": {
                    "run_id": run_id,
                    "experiment": config.scoring.experiment,
                    "tracking_uri": tracking_uri(config),
                },
                "counts": counts,
                "overlap": figures["overlap"],
                "rank_correlation": {
                    **ranks,
                    "emd_spearman_median": _median(overlap["spearman"]),
                },
                "fairness": figures["fairness"],
                "offpolicy": off,
                "files_sha256": {
                    name: sha256_file(out / name)
                    for name in (SHADOW_SCORES, SHADOW_OVERLAP, SHADOW_FAIRNESS)
                },
                "ledger": ledger.head(config.paths.output_root).as_dict(),
            }
            write_json(summary, out / SHADOW_SUMMARY)
            summary_sha = sha256_file(out / SHADOW_SUMMARY)
            _log_shadow_run(ref, summary, summary_sha, out, features_dir)
        seal = seal_run(client, run_id)
    events.shadow_scored(
        config.paths.output_root,
        round_label=label,
        model=ref.name,
        version=ref.version,
        champion_version=champion_version,
        manifest_sha256=manifest_sha,
        summary_sha256=summary_sha,
        scores_sha256=summary["files_sha256"][SHADOW_SCORES],
        run_id=run_id,
        seal_sha256=seal,
    )
    seconds = time.perf_counter() - started
    log.info("shadow v%s on %s in %.1f s", ref.version, label, seconds)
    return ShadowResult(label, target, ref, champion_version, run_id, summary, seconds)


def _policy_text(model: Any) -> str:
    policy = list_policy(unpickle_model(model))
    return policy.describe() if policy is not None else "none"


def _median(values: pd.Series) -> float | None:
    values = values.dropna()
    return float(values.median()) if len(values) else None


def _metric_values(summary: dict[str, Any]) -> dict[str, float]:
    """The run's metrics (the figures that exist)."""
    out: dict[str, float] = {}
    for tier, figures in summary["overlap"].items():
        for stat in ("mean", "median", "min", "pooled"):
            if figures.get(stat) is not None:
                out[f"shadow.jaccard_{tier}_{stat}"] = float(figures[stat])
    for name, value in summary["rank_correlation"].items():
        if value is not None:
            out[f"shadow.{name}"] = float(value)
    for tier, figures in summary["fairness"].items():
        if figures["max_abs_share_difference"] is not None:
            out[f"shadow.fairness_{tier}_max_abs_share_difference"] = float(
                figures["max_abs_share_difference"]
            )
        for attribute, value in figures["per_attribute_max_abs"].items():
            out[f"shadow.fairness_{tier}.{attribute}"] = float(value)
    off = summary["offpolicy"]
    if off.get("available"):
        for k, v in off["difference"].items():
            out[f"shadow.offpolicy_{k}_difference"] = float(v)
        for who in ("champion", "shadow"):
            for k in ("ips", "snips", "dr"):
                value = off[who].get(k)
                if value is not None and np.isfinite(value):
                    out[f"shadow.offpolicy_{k}.{who}"] = float(value)
    out.update({f"count.{k}": float(v) for k, v in summary["counts"].items()})
    return {k: v for k, v in out.items() if np.isfinite(v)}


def _log_shadow_run(
    ref: ModelRef, summary: dict[str, Any], summary_sha: str, out: Path, features_dir: Path
) -> None:
    label = summary["round"]
    runlog.log_params(
        {
            "as_of": label,
            "model_name": ref.name,
            "model_version": ref.version,
            "champion_version": summary["champion"]["version"],
        }
    )
    runlog.set_tags(
        {
            "outreach.stage": SHADOW_STAGE,
            SHADOW_TAG: "true",
            "outreach.as_of": label,
            "outreach.model_name": ref.name,
            "outreach.model_version": ref.version,
            "outreach.model_run_id": ref.run_id,
            "outreach.model_file_sha256": summary["model"]["file_sha256"],
            "outreach.champion_version": summary["champion"]["version"],
            "outreach.champion_file_sha256": str(summary["champion"]["file_sha256"]),
            "outreach.round_manifest_sha256": summary["round_manifest_sha256"],
            "outreach.summary_sha256": summary_sha,
            "outreach.offpolicy": "yes" if summary["offpolicy"].get("available") else "no",
        }
    )
    runlog.log_metrics(_metric_values(summary))
    digest = summary["features"]["manifest_sha256"]
    runlog.log_folder_dataset(
        features_dir,
        name=f"features_as_of_{label}",
        digest=summary["features"]["mlflow_digest"],
        context="shadow",
        tags={"manifest_sha256": str(digest)},
    )
    for name in (SHADOW_SUMMARY, SHADOW_OVERLAP, SHADOW_FAIRNESS):
        runlog.log_artifact(out / name, artifact_path="shadow")
