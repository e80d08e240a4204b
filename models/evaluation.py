"""A backtest test round evaluated partition by partition, keeping aggregates, not households.

A test round is every eligible household. Its evaluation never holds their rows together: each
partition (one 시군구: its 읍면동 lie in it alone) is read, scored by every model of the backtest
and reduced, where it was read (:func:`evaluate_partition`), to

- the per-읍면동 lists cut at capacity and their counts (observed labels and truth);
- the households on some model's per-읍면동 list: listed flags and truth (the paired bootstrap);
- the labelled households (the round's own visits: observed ROC-AUC and AUC-PR, calibration,
  reliability table, PR curve): they grow with the visits, not with the households;
- fairness count tables per audit group (:func:`models.fairness.audit_counts`);
- per household, the score of every model and the labels: 8 bytes per household and model
  (float64: float32 would merge distinct probabilities and change the ranking; scores that are
  whole numbers, such as the rule's, 4 bytes) and 2 bytes of labels (observed code, truth).

:func:`evaluate_round` combines the partitions of a round. The per-household arrays give, exactly,
the national cut at the total capacity, the precision-at-k curve (only the rows that can reach
the top 3 k are ranked) and the truth ROC-AUC (by ranks: :func:`models.metrics.roc_auc_ranks`).
They are held for one round at a time and dropped once it is measured: 8 bytes per eligible
household and list, about 54 bytes with the seven lists compared before mitigation and about 118
with the fifteen of the default config now (the eight mitigation settings of ``training.mitigation``
add theirs: ``compare`` and ``strengths`` bound it).

Rows are in household-key order, the tie-break of every list. When the partition files' key
ranges (Parquet statistics) are disjoint, the files are evaluated in key order and nothing more is
needed; otherwise each partition also returns its keys (compact bytes) and the round is put in key
order when combined.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from models.candidates import CalibratedClassifier, RuleBaseline
from models.dataset_summary import column_flags
from models.fairness import add_audit_counts, audit_attributes, audit_counts
from models.metrics import (
    ListCounts,
    add_counts,
    calibration_metrics,
    count_list,
    counts_to_metrics,
    curve_points,
    cut_list,
    ranked_cut,
    ranking_metrics,
    roc_auc_ranks,
)
from models.mitigation import ListPolicy
from models.offpolicy import (
    IN_NEED,
    MODEL_TERM,
    OBSERVED,
    PROPENSITY,
    SUPPORT,
    logging_propensity,
    observed_rates,
)
from models.service_match import ServiceMatch, match_hits
from pipeline.config import RuntimeConfig
from pipeline.datasets.features import RoundSource, file_key_range, read_feature_file
from pipeline.datasets.truth import NEED_TYPE, read_round_truth
from pipeline.engine import map_partitions
from pipeline.months import format_month
from pipeline.vocabulary import EMD, KEY, eligible_mask

log = logging.getLogger(__name__)

RULE = "rule"
ORACLE = "oracle"
NO_LABEL = -1  # observed label code of a household without a label
PREDICT_ROWS = 50_000  # households scored at once: bounds the copies a model makes of its input
# the lists the fairness audit compares; the oracle's is what any list could find at capacity
LISTED = ("listed_model", "listed_rule", "listed_oracle")
PROBABILITY = "probability:"  # prefix of a model's probability column among the labelled rows
RECENT_MONTHS = 6  # a crisis signal this recent puts a household in the log's exploration pool


@dataclass(frozen=True)
class PartitionTask:
    """One partition file of a test round and what its evaluation needs (picklable)."""

    path: Path
    levels: dict[str, list[str]]
    ineligible: tuple[str, ...]  # benefit statuses no list may hold (the eligibility rule)
    inputs: list[str]
    models: dict[str, CalibratedClassifier]
    capacity: pd.Series  # 읍면동 -> slots
    observed: pd.Series  # label (0/1) by household key of the round's visits in this file
    truth_files: tuple[Path, ...] | None  # the truth files that can hold it; None: no truth
    round_month: int
    main: str  # the registered candidate, whose list the fairness audit examines
    keep_keys: bool = False  # the files' key ranges overlap: return the keys
    # lists made from a model's probabilities by a list policy: name -> (model, policy); a name
    # that is also a model's keeps that model's probabilities for calibration
    selections: dict[str, tuple[str, ListPolicy]] = field(default_factory=dict)
    audited: tuple[str, ...] = ()  # further lists the fairness audit counts (listed_<name>)
    # the round's visits in this file by key: selection_reason, selection_probability, and
    # observed_rate (the share of the reason's visits with a label); None: no off-policy frame
    visits: pd.DataFrame | None = None
    # the service match fitted on the visits known before the round: its suggestions and the
    # rule mapping's for the main list's households, judged against the hidden kind of need
    service_match: ServiceMatch | None = None


@dataclass(frozen=True)
class PartitionEvaluation:
    """What one partition contributes to its round's metrics (no household keys unless asked)."""

    rows: int
    emds: np.ndarray  # the 읍면동 of the partition
    emd_counts: dict[str, dict[str, ListCounts]]  # model -> observed / truth counts of its lists
    scores: dict[str, np.ndarray]  # model -> score of every household, in key order
    min_scores: dict[str, float | None]
    probabilities: tuple[str, ...]  # models whose scores are calibrated probabilities
    observed: np.ndarray  # int8 label code: 1, 0, NO_LABEL
    need: np.ndarray | None  # truth: in need in the round's month or the month after
    listed: pd.DataFrame | None  # households on a per-읍면동 list: flags, in_need, _position
    labelled: pd.DataFrame  # labelled households: key, observed, a list-order column per list and
    # a probability column (PROBABILITY + name) per model
    audit: pd.DataFrame | None  # fairness counts (models.fairness.audit_counts)
    missing: pd.Series  # per model input: some value is missing
    text: pd.Series  # per model input: every value is a str
    keys: np.ndarray | None = None  # utf-8 bytes, when the round needs them for its key order
    # households on any list with what the off-policy estimates need (models.offpolicy)
    offpolicy: pd.DataFrame | None = None
    # labelled visits by truth: (in need, of which labelled 1, not in need, of which labelled 1)
    label_need: tuple[int, int, int, int] | None = None
    # the main list's households in need: 읍면동, and whether each matcher's suggestions hit
    service_hits: pd.DataFrame | None = None


@dataclass(frozen=True)
class RoundHouseholds:
    """Where a test round's eligible households are, in key order, without holding them."""

    round_month: int
    files: tuple[Path, ...]  # in evaluation order
    rows: tuple[int, ...]  # eligible households per file
    ordered: bool  # the files' key ranges are disjoint and in this order
    levels: dict[str, list[str]]
    ineligible: tuple[str, ...]  # benefit statuses no list may hold (the eligibility rule)
    input_flags: list[tuple[pd.Series, pd.Series]] = field(default_factory=list)

    @property
    def total(self) -> int:
        return int(sum(self.rows))


@dataclass(frozen=True)
class RoundEvaluation:
    """One test round, measured: aggregates only (nothing here names a household)."""

    round_month: int
    metrics: list[dict]  # one row per model: round, model, metrics
    reliability: dict[str, pd.DataFrame]  # model -> reliability table of the round
    curves: dict[str, pd.DataFrame]  # model -> round, listed, precision, target
    labelled: dict[str, pd.DataFrame]  # model -> score, observed, round of labelled households
    bootstrap: pd.DataFrame | None  # households on any list: flags, in_need; attrs total_need
    audit: pd.DataFrame | None  # fairness counts of the round
    ks: np.ndarray  # the list sizes of the curves
    households: RoundHouseholds
    offpolicy: pd.DataFrame | None = None  # households on any list: models.offpolicy columns
    # the main list's households in need: 읍면동, and whether each matcher's suggestions hit
    service_match: pd.DataFrame | None = None


def _probability(model: CalibratedClassifier, X: pd.DataFrame) -> np.ndarray:
    parts = [
        model.predict_proba(X.iloc[start : start + PREDICT_ROWS])[:, 1]
        for start in range(0, len(X), PREDICT_ROWS)
    ]
    return np.concatenate(parts) if parts else np.empty(0, dtype=np.float64)


def _compact(scores: np.ndarray) -> np.ndarray:
    """float32 when that keeps every score exactly (whole numbers), else float64."""
    narrow = scores.astype(np.float32)
    return narrow if np.array_equal(narrow.astype(np.float64), scores) else scores


def _model_scores(
    features: pd.DataFrame,
    X: pd.DataFrame,
    models: dict[str, CalibratedClassifier],
    truth: pd.DataFrame | None,
) -> tuple[dict[str, np.ndarray], dict[str, float | None]]:
    """Scores of the rule, every learned model and (with the truth) the oracle, in that order."""
    rule = RuleBaseline().fit(features)
    scores = {RULE: rule.score_households(features)}
    min_scores: dict[str, float | None] = {RULE: rule.min_score}
    for name, model in models.items():
        scores[name] = _probability(model, X)
        min_scores[name] = None
    if truth is not None:
        scores[ORACLE] = truth["hardship"].fillna(-1e9).to_numpy(dtype=np.float64)
        min_scores[ORACLE] = None
    return scores, min_scores


def _utf8(keys: pd.Series) -> np.ndarray:
    """Keys as fixed-width utf-8 bytes: compact, and sorted as the text is."""
    return keys.str.encode("utf-8").to_numpy(dtype=object).astype(np.bytes_)


def evaluate_partition(task: PartitionTask) -> PartitionEvaluation:
    """Read one partition, score its eligible households, reduce them to the round's parts."""
    features = read_feature_file(task.path, task.levels)
    features = features[eligible_mask(features, task.ineligible)]
    if not features[KEY].is_monotonic_increasing:
        features = features.sort_values(KEY, kind="stable")
    features = features.reset_index(drop=True)
    keys = features[KEY]
    X = features[task.inputs]
    missing, text = column_flags(X)
    truth = None
    if task.truth_files is not None:
        truth = read_round_truth(task.truth_files, keys, task.round_month)
    observed = task.observed.reindex(pd.Index(keys)).astype("Int8").reset_index(drop=True)
    code = observed.fillna(NO_LABEL).to_numpy(dtype=np.int8)
    need = truth["in_need"].to_numpy(dtype=bool) if truth is not None else None
    scores, min_scores = _model_scores(features, X, task.models, truth)
    probabilities = {name: scores[name] for name in task.models}
    attributes = audit_attributes(features) if (need is not None or task.selections) else None
    emd = features[EMD].to_numpy()
    for name, (base, policy) in task.selections.items():
        scores[name] = policy.key(probabilities[base], emd, attributes)
        min_scores[name] = None
    position = np.arange(len(features))  # the key order: keys are unique and sorted
    emd_counts: dict[str, dict[str, ListCounts]] = {}
    listed: dict[str, np.ndarray] = {}
    for name, values in scores.items():
        cut = cut_list(position, emd, values, task.capacity, min_scores[name])
        emd_counts[name] = {"observed": count_list(cut, observed)}
        if need is not None:
            emd_counts[name]["truth"] = count_list(cut, need.astype(np.int64))
        listed[name] = cut["listed"].to_numpy(dtype=bool)
    known = code != NO_LABEL
    labelled = pd.DataFrame({KEY: keys[known].to_numpy(), "observed": observed[known].array})
    for name, values in scores.items():
        labelled[name] = values[known]
    for name, values in probabilities.items():
        labelled[PROBABILITY + name] = values[known]
    on_list = audit = None
    if need is not None:
        union = np.logical_or.reduce(list(listed.values()))
        on_list = pd.DataFrame({name: flags[union] for name, flags in listed.items()})
        on_list["in_need"] = need[union]
        on_list["_position"] = np.flatnonzero(union)
        rows = attributes
        rows[LISTED[0]] = listed[task.main]
        rows[LISTED[1]] = listed[RULE]
        rows[LISTED[2]] = listed[ORACLE]
        for name in task.audited:
            rows[f"listed_{name}"] = listed[name]
        rows["probability"] = probabilities.get(task.main, np.nan)
        rows["observed"] = observed.to_numpy()
        rows["in_need"] = need
        audit = audit_counts(rows, [*LISTED, *(f"listed_{name}" for name in task.audited)])
    offpolicy = label_need = None
    if task.visits is not None:
        offpolicy = _offpolicy_rows(
            features, listed, probabilities, code, need, task.visits, scores[RULE]
        )
    service_hits = None
    if task.service_match is not None and truth is not None and NEED_TYPE in truth.columns:
        service_hits = match_hits(
            task.service_match, features[listed[task.main]], truth[NEED_TYPE][listed[task.main]]
        )
    if need is not None:
        y = code[known]
        n_ = need[known]
        label_need = (
            int(n_.sum()),
            int((n_ & (y == 1)).sum()),
            int((~n_).sum()),
            int((~n_ & (y == 1)).sum()),
        )
    return PartitionEvaluation(
        rows=len(features),
        emds=pd.unique(emd),
        emd_counts=emd_counts,
        scores={name: _compact(values) for name, values in scores.items()},
        min_scores=min_scores,
        probabilities=tuple(task.models),
        observed=code,
        need=need,
        listed=on_list,
        labelled=labelled,
        audit=audit,
        missing=missing,
        text=text,
        keys=_utf8(keys) if task.keep_keys else None,
        offpolicy=offpolicy,
        label_need=label_need,
        service_hits=service_hits,
    )


def _offpolicy_rows(
    features: pd.DataFrame,
    listed: dict[str, np.ndarray],
    probabilities: dict[str, np.ndarray],
    code: np.ndarray,
    need: np.ndarray | None,
    visits: pd.DataFrame,
    rule_score: np.ndarray,
) -> pd.DataFrame:
    """The households on any list with the off-policy estimators' inputs: list flags, label
    code, propensity (probability of a visit with a label; NaN unless visited), support (the log
    gives a known positive probability: :func:`models.offpolicy.logging_propensity`, with a
    crisis signal reported in the :data:`RECENT_MONTHS` before the round as the exploration
    pool) and every model's probability (the DR model terms)."""
    union = np.logical_or.reduce(list(listed.values())) if listed else np.zeros(len(code), bool)
    rows = np.flatnonzero(union)
    logged = visits.reindex(pd.Index(features[KEY].to_numpy()))
    since = [c for c in features.columns if c.startswith("group_") and "months_since" in c]
    recent = np.zeros(len(features), dtype=bool)
    if since:
        values = features[since].to_numpy(dtype=np.float64)
        recent = np.nan_to_num(values, nan=np.inf).min(axis=1) <= RECENT_MONTHS
    visit, support = logging_propensity(
        logged["selection_reason"].astype("object").to_numpy(),
        logged["selection_probability"].to_numpy(dtype=np.float64),
        features[EMD].to_numpy(),
        rule_score,
        recent,
    )
    p = visit * logged["observed_rate"].to_numpy(dtype=np.float64)
    frame = pd.DataFrame({name: flags[rows] for name, flags in listed.items()})
    frame[OBSERVED] = code[rows]
    frame[PROPENSITY] = p[rows]
    frame[SUPPORT] = support[rows]
    for name, values in probabilities.items():
        frame[MODEL_TERM + name] = values[rows]
    if need is not None:
        frame[IN_NEED] = need[rows]
    frame["_position"] = rows
    return frame


def _joined(arrays: Sequence[np.ndarray], order: np.ndarray | None) -> np.ndarray:
    joined = np.concatenate(arrays)
    return joined if order is None else joined[order]


def evaluate_round(
    parts: list[PartitionEvaluation],
    households: RoundHouseholds,
    capacity: pd.Series,
    bins: int = 10,
    ks: np.ndarray | None = None,
) -> RoundEvaluation:
    """Combine a round's partitions into its metrics per model (pure).

    ``ks``: the list sizes of the precision-at-k curve (by default up to 3 × this round's total
    capacity). The figures are those of the whole round's households evaluated at once.
    """
    label = format_month(households.round_month)
    emds = np.concatenate([p.emds for p in parts]) if parts else np.empty(0, dtype=object)
    if len(pd.unique(emds)) != len(emds):
        raise ValueError(
            f"test round {label}: a 읍면동 lies in more than one partition file: "
            "its list cannot be cut partition by partition"
        )
    k = int(capacity.reindex(pd.Index(emds, dtype=object)).fillna(0).sum())
    ks = curve_points(k) if ks is None else ks
    order = None
    if not households.ordered:
        order = np.argsort(np.concatenate([p.keys for p in parts]), kind="stable")
    observed = _joined([p.observed for p in parts], order)
    has_truth = bool(parts) and parts[0].need is not None
    need = _joined([p.need for p in parts], order) if has_truth else None
    labelled = pd.concat([p.labelled for p in parts], ignore_index=True)
    if order is not None:
        labelled = labelled.sort_values(KEY, kind="stable").reset_index(drop=True)
    names = list(parts[0].scores) if parts else []
    probabilities = set(parts[0].probabilities) if parts else set()
    target = "in_need" if has_truth else "observed"
    rows, reliability, curves, by_model = [], {}, {}, {}
    for name in names:
        scores = _joined([p.scores[name] for p in parts], order).astype(np.float64)
        min_score = parts[0].min_scores[name]
        seen, truth, curve = ranked_cut(scores, observed, need, k, min_score, ks)
        metrics: dict[str, float] = {"k": float(k)}
        emd_seen = add_counts([p.emd_counts[name]["observed"] for p in parts])
        metrics.update(counts_to_metrics("observed_emd_", emd_seen))
        metrics.update(counts_to_metrics("observed_k_", seen))
        # a model's own figures on its visits (ranking, calibration) use its probabilities; the
        # list figures use the list order (the same unless a list policy applies)
        own = labelled[PROBABILITY + name if name in probabilities else name].to_numpy()
        metrics.update(ranking_metrics(own, labelled["observed"]))
        if name in probabilities:
            calib, table = calibration_metrics(own, labelled["observed"], bins)
            metrics.update(calib)
            reliability[name] = table.assign(round=label)
        if need is not None:
            emd_truth = add_counts([p.emd_counts[name]["truth"] for p in parts])
            metrics.update(counts_to_metrics("truth_emd_", emd_truth, truth=True))
            metrics.update(counts_to_metrics("truth_k_", truth, truth=True))
            metrics["truth_roc_auc"] = roc_auc_ranks(scores, need)
        rows.append({"round": label, "model": name, **metrics})
        curves[name] = pd.DataFrame(
            {"round": label, "listed": ks, "precision": curve, "target": target}
        )
        by_model[name] = pd.DataFrame(
            {"score": own, "observed": labelled["observed"], "round": label}
        )
    bootstrap = audit = None
    if need is not None:
        bootstrap = _on_any_list(parts, order)
        bootstrap.attrs["total_need"] = int(need.sum())
        audit = add_audit_counts([p.audit for p in parts])
    offpolicy = None
    if parts and all(p.offpolicy is not None for p in parts):
        offpolicy = _on_any_list(parts, order, "offpolicy")
        if has_truth:
            counts = np.sum([p.label_need for p in parts], axis=0)
            rates = (
                counts[1] / counts[0] if counts[0] else np.nan,
                counts[3] / counts[2] if counts[2] else np.nan,
            )
            offpolicy.attrs["label_rates"] = tuple(float(r) for r in rates)
    flags = [(p.missing, p.text) for p in parts]
    return RoundEvaluation(
        round_month=households.round_month,
        metrics=rows,
        reliability=reliability,
        curves=curves,
        labelled=by_model,
        bootstrap=bootstrap,
        audit=audit,
        ks=ks,
        households=RoundHouseholds(
            households.round_month,
            households.files,
            tuple(p.rows for p in parts),
            households.ordered,
            households.levels,
            households.ineligible,
            flags,
        ),
        offpolicy=offpolicy,
        service_match=_service_hits(parts),
    )


def _service_hits(parts: list[PartitionEvaluation]) -> pd.DataFrame | None:
    """The main list's households in need of every partition: 읍면동 and the matchers' hits."""
    frames = [p.service_hits for p in parts if p.service_hits is not None]
    return pd.concat(frames, ignore_index=True) if frames else None


def _on_any_list(
    parts: list[PartitionEvaluation], order: np.ndarray | None, attribute: str = "listed"
) -> pd.DataFrame:
    """The households on some model's list, in key order, without their keys."""
    offsets = np.cumsum([0, *(p.rows for p in parts)])[:-1]
    shifted = [
        getattr(p, attribute).assign(_position=getattr(p, attribute)["_position"] + offset)
        for p, offset in zip(parts, offsets, strict=True)
    ]
    frame = pd.concat(shifted, ignore_index=True)
    if order is not None:
        rank = np.empty(len(order), dtype=np.int64)
        rank[order] = np.arange(len(order))
        frame = frame.iloc[np.argsort(rank[frame["_position"].to_numpy()], kind="stable")]
    return frame.drop(columns="_position").reset_index(drop=True)


def partition_order(ranges: list[tuple[str, str] | None]) -> tuple[list[int], bool]:
    """The files to evaluate, in order, and whether their key ranges are disjoint in that order.

    Files without rows (range ``("", "")``) are left out. Disjoint ranges are put in key order
    (each file's rows then follow the previous file's); otherwise the files keep their order and
    the round is sorted by key when combined.
    """
    kept = [i for i, r in enumerate(ranges) if r != ("", "")]
    if any(ranges[i] is None for i in kept):
        return kept, False
    order = sorted(kept, key=lambda i: ranges[i])
    for before, after in itertools.pairwise(order):
        if not ranges[before][1] < ranges[after][0]:
            return kept, False
    return order, True


def _overlapping(
    key_range: tuple[str, str] | None,
    files: Sequence[Path],
    ranges: Sequence[tuple[str, str] | None],
) -> tuple[Path, ...]:
    """The files whose key range can hold keys of ``key_range`` (all when unknown)."""
    if key_range is None:
        return tuple(files)
    low, high = key_range
    return tuple(
        path
        for path, other in zip(files, ranges, strict=True)
        if other is None or (other != ("", "") and other[0] <= high and other[1] >= low)
    )


def _observed_in(own: pd.Series, key_range: tuple[str, str] | None) -> pd.Series:
    """The round's labels of the households within a file's key range (all when unknown)."""
    if key_range is None:
        return own
    return own.loc[key_range[0] : key_range[1]]


@dataclass(frozen=True)
class TestRoundReader:
    """Evaluates a test round partition by partition with the models of its backtest.

    The partitions run on the configured engine (``runtime``): in this process when it is local
    (LightGBM already uses the cores, and a forked process pool could hang in OpenMP after the
    fits), on the workers when it is Dask. Only aggregates come back (see the module docstring).
    ``truth_files``: the hidden truth's partition files, None without truth (real data).
    """

    source: RoundSource
    round_month: int
    final_as_of: int
    inputs: list[str]
    levels: dict[str, list[str]]
    truth_files: tuple[Path, ...] | None = None
    runtime: RuntimeConfig | None = None
    offpolicy: bool = True  # keep what the off-policy estimates need (models.offpolicy)

    def evaluate(
        self,
        models: dict[str, CalibratedClassifier],
        capacity: pd.Series,
        main: str,
        bins: int = 10,
        ks: np.ndarray | None = None,
        selections: dict[str, tuple[str, ListPolicy]] | None = None,
        audited: tuple[str, ...] = (),
        service_match: ServiceMatch | None = None,
    ) -> RoundEvaluation:
        started = time.perf_counter()
        runtime = self.runtime or RuntimeConfig(progress=False)
        files = self.source.feature_files(self.round_month)
        ranges = [file_key_range(path) for path in files]
        order, ordered = partition_order(ranges)
        truth_ranges = [file_key_range(path) for path in self.truth_files or ()]
        labels = self.source.labels(self.final_as_of)
        visits = labels[labels["round_month"] == self.round_month]
        own = visits[visits["label"].notna()]
        own = own.set_index(KEY)["label"].sort_index()
        logged = None
        if self.offpolicy:
            rates = observed_rates(visits)
            logged = visits.set_index(KEY)[["selection_reason", "selection_probability"]]
            reason = logged["selection_reason"].astype("string").fillna("")
            logged = logged.assign(observed_rate=reason.map(rates).astype("float64"))
            logged = logged.sort_index()
        tasks = [
            PartitionTask(
                path=files[i],
                levels=self.levels,
                ineligible=self.source.ineligible,
                inputs=self.inputs,
                models=models,
                capacity=capacity,
                observed=_observed_in(own, ranges[i] if ordered else None),
                truth_files=(
                    None
                    if self.truth_files is None
                    else _overlapping(ranges[i], self.truth_files, truth_ranges)
                ),
                round_month=self.round_month,
                main=main,
                keep_keys=not ordered,
                selections=selections or {},
                audited=audited,
                visits=(
                    None if logged is None else _observed_in(logged, ranges[i] if ordered else None)
                ),
                service_match=service_match,
            )
            for i in order
        ]
        parts = map_partitions(
            evaluate_partition,
            tasks,
            description=f"backtest {format_month(self.round_month)}: evaluating",
            runtime=runtime,
            workers=1 if runtime.engine == "local" else None,
        )
        households = RoundHouseholds(
            self.round_month,
            tuple(files[i] for i in order),
            tuple(p.rows for p in parts),
            ordered,
            self.levels,
            self.source.ineligible,
        )
        result = evaluate_round(parts, households, capacity, bins, ks)
        log.info(
            "backtest %s: %d households evaluated in %d partitions in %.1f s",
            format_month(self.round_month),
            households.total,
            len(parts),
            time.perf_counter() - started,
        )
        return result


def _eligible_keys(households: RoundHouseholds, path: Path) -> pd.Series:
    frame = read_feature_file(path, households.levels, columns=[KEY, "hh__benefit_status"])
    keys = frame.loc[eligible_mask(frame, households.ineligible), KEY]
    return keys.sort_values(kind="stable").reset_index(drop=True)


def household_keys(households: RoundHouseholds, positions: np.ndarray) -> np.ndarray:
    """The keys of the eligible households at ``positions`` (in key order) of a test round.

    Reads the key column again: of the files holding those positions when the files are in key
    order, else of every file (as compact bytes, sorted once).
    """
    positions = np.asarray(positions, dtype=np.int64)
    out = np.empty(len(positions), dtype=object)
    if households.ordered:
        start = 0
        for path, rows in zip(households.files, households.rows, strict=True):
            wanted = (positions >= start) & (positions < start + rows)
            if wanted.any():
                keys = _eligible_keys(households, path).to_numpy()
                out[wanted] = keys[positions[wanted] - start]
            start += rows
        return out
    keys = np.sort(np.concatenate([_utf8(_eligible_keys(households, p)) for p in households.files]))
    out[:] = [k.decode("utf-8") for k in keys[positions]]
    return out
