"""Fairness audit at the capacity cut, against the truth, and a proxy check on the model inputs.

Groups: 시도, 시군구, urban/rural, head's sex and age band (audit-only columns, never model
inputs), disability in the household, one-person household, tenure. Per group: size, need rate,
selection rate and selection relative to need, precision, recall, false-negative rate, mean
predicted probability against the observed and true rates, and ratios against a reference group
set in the config, each with a bootstrap interval and a Fisher exact test against the reference
(the practice of aequitas; the per-group figures are fairlearn's ``MetricFrame``). A ratio is
flagged when its whole interval lies outside the configured bounds; groups smaller than the
minimum are reported as too small, without ratios. Geographic groups' recall is judged against
what any list could find at their capacity (:data:`GEOGRAPHIC`).
"""

from __future__ import annotations

import warnings
from functools import partial

import numpy as np
import pandas as pd
from fairlearn.metrics import MetricFrame, false_negative_rate, selection_rate
from lightgbm import LGBMClassifier
from scipy.stats import fisher_exact
from sklearn.metrics import precision_score, recall_score, roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict

from pipeline.config import FairnessConfig
from pipeline.vocabulary import AUDIT_ATTRIBUTES, EMD

ATTRIBUTES = AUDIT_ATTRIBUTES
AUDIT_ONLY = ("audit__head_sex", "audit__head_age_band")
# the feature columns audit_attributes reads (besides emd_code)
AUDIT_SOURCES = (
    "hh__urban",
    "audit__head_sex",
    "audit__head_age_band",
    "hh__disabled_members",
    "hh__size",
    "hh__tenure",
)


def audit_attributes(features: pd.DataFrame) -> pd.DataFrame:
    """The audit groups of every household (no keys), derived from the feature table."""
    emd = features[EMD].astype("string")
    yes_no = np.array(["no", "yes"])
    return pd.DataFrame(
        {
            "sido": emd.str.slice(0, 2).to_numpy(),
            "sigungu": emd.str.slice(0, 5).to_numpy(),
            "urban": np.where(features["hh__urban"].to_numpy() == 1, "urban", "rural"),
            "head_sex": features["audit__head_sex"].astype("string").to_numpy(),
            "head_age_band": features["audit__head_age_band"].astype("string").to_numpy(),
            "disability": yes_no[(features["hh__disabled_members"].to_numpy() > 0).astype(int)],
            "single_person": yes_no[(features["hh__size"].to_numpy() == 1).astype(int)],
            "tenure": features["hh__tenure"].astype("string").to_numpy(),
        }
    )


COUNT_COLUMNS = (
    "size",
    "in_need",
    "labelled",
    "labelled_positive",
    "probability_labelled_sum",
    "probability_labelled_n",
)


def audit_counts(audit: pd.DataFrame, listed: list[str]) -> pd.DataFrame:
    """Counts per (attribute, group) from which :func:`fairness_from_counts` computes the table.

    ``audit`` holds the attribute columns, ``in_need``, ``observed``, ``probability`` and one
    boolean column per name in ``listed``. Counts of several parts (partitions, rounds) add up
    (:func:`add_audit_counts`): the audit never needs the households' rows together.
    Columns: attribute, group, :data:`COUNT_COLUMNS`, and ``selected_<l>``, ``hits_<l>``.
    """
    need = audit["in_need"].astype(bool).to_numpy()
    observed = pd.to_numeric(audit["observed"], errors="coerce")
    known = observed.notna().to_numpy()
    probability = audit["probability"].to_numpy(dtype=np.float64)
    with_probability = known & ~np.isnan(probability)
    data = {
        "size": np.ones(len(audit), dtype=np.int64),
        "in_need": need.astype(np.int64),
        "labelled": known.astype(np.int64),
        "labelled_positive": observed.fillna(0).to_numpy(dtype=np.int64),
        "probability_labelled_sum": np.where(with_probability, probability, 0.0),
        "probability_labelled_n": with_probability.astype(np.int64),
    }
    for name in listed:
        selected = audit[name].astype(bool).to_numpy()
        data[f"selected_{name}"] = selected.astype(np.int64)
        data[f"hits_{name}"] = (selected & need).astype(np.int64)
    values = pd.DataFrame(data)
    parts = []
    for attribute in ATTRIBUTES:
        counts = values.groupby(audit[attribute].to_numpy(), sort=True).sum()
        counts.insert(0, "group", counts.index.astype(str))
        counts.insert(0, "attribute", attribute)
        parts.append(counts.reset_index(drop=True))
    return pd.concat(parts, ignore_index=True)


def add_audit_counts(parts: list[pd.DataFrame]) -> pd.DataFrame:
    """The sum of several :func:`audit_counts` tables (groups missing from a part count 0)."""
    frame = pd.concat(parts, ignore_index=True)
    return frame.groupby(["attribute", "group"], sort=False).sum().reset_index()


GEOGRAPHIC = ("sido", "sigungu", "urban")
"""Attributes whose groups are unions of 읍면동 (urban: 동 against 읍·면). Their slots are set
by the capacity table, not by the model: at a per-읍면동 cut even a perfect list finds a fixed
share of a region's need. Their recall is therefore judged against that share (the oracle's
recall at the same capacity, ``listed_oracle``): the share of the need any list could find there
that this list found.
"""
ORACLE_LIST = "listed_oracle"


def _cells(g: pd.DataFrame, listed: str) -> pd.DataFrame:
    """Four weighted rows per group, (in need, listed) with their household counts: the rows
    :class:`fairlearn.metrics.MetricFrame` weighs exactly as the households themselves."""
    hits = g[f"hits_{listed}"].to_numpy(dtype=np.int64)
    selected = g[f"selected_{listed}"].to_numpy(dtype=np.int64)
    need = g["in_need"].to_numpy(dtype=np.int64)
    size = g["size"].to_numpy(dtype=np.int64)
    parts = [
        (1, 1, hits),
        (0, 1, selected - hits),
        (1, 0, need - hits),
        (0, 0, size - selected - need + hits),
    ]
    return pd.DataFrame(
        {
            "group": np.concatenate([g.index.to_numpy()] * 4),
            "y_true": np.concatenate([np.full(len(g), t) for t, _, _ in parts]),
            "y_pred": np.concatenate([np.full(len(g), p) for _, p, _ in parts]),
            "weight": np.concatenate([w for _, _, w in parts]).astype(np.float64),
        }
    )


def _library_figures(g: pd.DataFrame, listed: str) -> pd.DataFrame:
    """Selection rate, precision, recall and false-negative rate per group, by fairlearn."""
    cells = _cells(g, listed)
    metrics = {
        "selection_rate": selection_rate,
        "precision": partial(precision_score, zero_division=np.nan),
        "recall": partial(recall_score, zero_division=np.nan),
        "false_negative_rate": false_negative_rate,
    }
    frame = MetricFrame(
        metrics=metrics,
        y_true=cells["y_true"],
        y_pred=cells["y_pred"],
        sensitive_features=cells["group"].rename("group"),
        sample_params={name: {"sample_weight": cells["weight"]} for name in metrics},
    )
    by_group = frame.by_group.reindex(g.index)
    need = g["in_need"].to_numpy()
    # no one in need: recall and its complement are undefined, not 0 or 1
    for column in ("recall", "false_negative_rate"):
        by_group.loc[need == 0, column] = np.nan
    return by_group.astype(np.float64)


def _group_stats(counts: pd.DataFrame, listed: str) -> pd.DataFrame:
    g = counts.set_index("group").sort_index()
    figures = _library_figures(g, listed)
    out = pd.DataFrame(index=pd.Index(g.index, name="value"))
    out["size"] = g["size"]
    out["in_need"] = g["in_need"]
    out["need_rate"] = g["in_need"] / g["size"]
    out["selected"] = g[f"selected_{listed}"]
    out["selection_rate"] = figures["selection_rate"]
    out["selection_to_need"] = out["selection_rate"] / out["need_rate"].replace(0, np.nan)
    out["hits"] = g[f"hits_{listed}"]
    out["precision"] = figures["precision"]
    out["recall"] = figures["recall"]
    out["false_negative_rate"] = figures["false_negative_rate"]
    if f"hits_{ORACLE_LIST}" in g.columns:
        out["attainable_hits"] = g[f"hits_{ORACLE_LIST}"]
        out["attainable_recall"] = g[f"hits_{ORACLE_LIST}"] / g["in_need"].replace(0, np.nan)
    out["labelled"] = g["labelled"]
    out["observed_rate"] = g["labelled_positive"] / g["labelled"].replace(0, np.nan)
    out["mean_probability_labelled"] = g["probability_labelled_sum"] / g[
        "probability_labelled_n"
    ].replace(0, np.nan)
    out["calibration_gap"] = out["mean_probability_labelled"] - out["observed_rate"]
    return out


def _draws(stats: pd.DataFrame, samples: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Bootstrap draws (groups × samples) of precision and recall: households resampled with
    replacement within each group. Precision and recall depend on a group's households only
    through its four (in need, listed) counts, so drawing those counts from a multinomial is
    the same as resampling its rows, at any scale."""
    size = stats["size"].to_numpy(dtype=np.int64)
    hits = stats["hits"].to_numpy(dtype=np.int64)
    selected = stats["selected"].to_numpy(dtype=np.int64)
    need = stats["in_need"].to_numpy(dtype=np.int64)
    cells = np.column_stack([hits, selected - hits, need - hits, size - selected - need + hits])
    precision = np.full((len(size), samples), np.nan)
    recall = np.full((len(size), samples), np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        for i in range(len(size)):
            if size[i] == 0:
                continue
            drawn = rng.multinomial(size[i], cells[i] / size[i], size=samples)
            precision[i] = drawn[:, 0] / (drawn[:, 0] + drawn[:, 1])
            recall[i] = drawn[:, 0] / (drawn[:, 0] + drawn[:, 2])
    return {"precision": precision, "recall": recall}


def _ratio(values: np.ndarray, at: int, none: np.ndarray) -> np.ndarray:
    """Each group's value over the reference group's (position ``at``); NaN where ``none``."""
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = values / values[at] if values[at] else np.full(len(values), np.nan)
    return np.where(none, np.nan, ratio)


def _p_value(a_hits: int, a_total: int, b_hits: int, b_total: int) -> float:
    """Two-sided Fisher exact test of equal rates (a_hits / a_total against b_hits / b_total)."""
    if min(a_total, b_total) <= 0:
        return float("nan")
    table = [[int(a_hits), int(a_total - a_hits)], [int(b_hits), int(b_total - b_hits)]]
    return float(fisher_exact(table, alternative="two-sided").pvalue)


def fairness_from_counts(
    counts: pd.DataFrame,
    settings: FairnessConfig,
    listed: str,
    samples: int | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """One row per (attribute, group): figures, disparities against the reference group with
    bootstrap intervals and a significance test, and flags.

    ``counts`` is an :func:`audit_counts` table (pooled over the test rounds) with the
    ``listed`` selection among its columns (and ``listed_oracle``, when present, for the
    geographic attributes: :data:`GEOGRAPHIC`). The per-group figures are fairlearn's
    ``MetricFrame`` over the counts as weighted rows. A precision or recall ratio is flagged when
    its whole interval (``samples`` bootstrap draws, default ``settings.bootstrap_samples``) lies
    outside ``settings.ratio_bounds``; the Fisher exact test's p-value of the same difference is
    reported beside it. Groups smaller than ``min_group_size`` get no ratio.
    """
    low, high = settings.ratio_bounds
    samples = settings.bootstrap_samples if samples is None else samples
    rng = np.random.default_rng([seed, 23])
    parts = []
    for attribute in ATTRIBUTES:
        stats = _group_stats(counts[counts["attribute"] == attribute], listed)
        reference = settings.reference_groups.get(attribute, "largest")
        if reference == "largest" or reference not in stats.index:
            reference = str(stats["size"].idxmax())
        small = (
            (stats["selected"] < settings.min_group_size)
            | (stats["in_need"] < settings.min_group_size)
        ).to_numpy()
        at = stats.index.get_loc(reference)
        ref_small = bool(small[at])
        stats["too_small"] = small
        judged = attribute in GEOGRAPHIC and "attainable_recall" in stats.columns
        stats["recall_judged_as"] = "share_of_attainable" if judged else "recall"
        none = small | ref_small
        for metric in ("precision", "recall", "selection_to_need", "false_negative_rate"):
            stats[f"{metric}_ratio"] = _ratio(stats[metric].to_numpy(dtype=np.float64), at, none)
        draws = _draws(stats, samples, rng)
        judged_recall = stats["recall"].to_numpy(dtype=np.float64)
        if judged:
            attainable = stats["attainable_recall"].to_numpy(dtype=np.float64)
            with np.errstate(invalid="ignore", divide="ignore"):
                judged_recall = judged_recall / attainable
                draws["recall"] = draws["recall"] / attainable[:, None]
        stats["judged_recall_ratio"] = _ratio(judged_recall, at, none)
        totals = {"precision": "selected", "recall": "attainable_hits" if judged else "in_need"}
        for metric, column in (("precision", "precision_ratio"), ("recall", "judged_recall_ratio")):
            with np.errstate(invalid="ignore", divide="ignore"):
                ratios = draws[metric] / draws[metric][at]
            ratios[~np.isfinite(ratios)] = np.nan
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # groups without a finite draw
                lower, upper = np.nanpercentile(ratios, [2.5, 97.5], axis=1)
            stats[f"{column}_low"] = np.where(none, np.nan, lower)
            stats[f"{column}_high"] = np.where(none, np.nan, upper)
            hits = stats["hits"].to_numpy()
            # the oracle finds the most need a region's slots can (precision 1 on the truth);
            # never fewer hits than the list tested
            total = np.maximum(stats[totals[metric]].to_numpy(), hits)
            stats[f"{metric}_p_value"] = [
                np.nan if none[i] else _p_value(hits[i], total[i], hits[at], total[at])
                for i in range(len(stats))
            ]
            point_out = (stats[column] < low) | (stats[column] > high)
            whole = (stats[f"{column}_high"] < low) | (stats[f"{column}_low"] > high)
            stats[f"flag_{metric}"] = (point_out & whole).fillna(False).astype(bool)
        stats["flagged"] = stats["flag_precision"] | stats["flag_recall"]
        stats.insert(0, "reference", reference)
        stats.insert(0, "group", stats.index.astype(str))
        stats.insert(0, "attribute", attribute)
        parts.append(stats.reset_index(drop=True))
    return pd.concat(parts, ignore_index=True)


def fairness_table(
    audit: pd.DataFrame, settings: FairnessConfig, listed: str, samples: int | None = None
) -> pd.DataFrame:
    """:func:`fairness_from_counts` of household rows (``audit``: see :func:`audit_counts`;
    with the oracle's list when it holds one)."""
    lists = [listed]
    if ORACLE_LIST in audit.columns and listed != ORACLE_LIST:
        lists.append(ORACLE_LIST)
    return fairness_from_counts(audit_counts(audit, lists), settings, listed, samples)


def proxy_sample(rows: int, sample: int, seed: int) -> np.ndarray:
    """Positions (sorted) of the households the proxy check uses among ``rows`` households."""
    rng = np.random.default_rng(seed)
    return np.sort(rng.permutation(rows)[: min(sample, rows)])


def proxy_check(features: pd.DataFrame, inputs: list[str], sample: int, seed: int) -> pd.DataFrame:
    """How well the model inputs predict each audit-only attribute (3-fold cross-validated).

    A high AUC means the inputs carry the attribute anyway (a proxy), even though the attribute
    itself is never an input. Reported with the majority-class accuracy as a baseline.
    """
    take = proxy_sample(len(features), sample, seed)
    return proxy_check_rows(features.iloc[take].reset_index(drop=True), inputs, seed)


def proxy_check_rows(frame: pd.DataFrame, inputs: list[str], seed: int) -> pd.DataFrame:
    """:func:`proxy_check` on rows already drawn with :func:`proxy_sample`."""
    X = frame[inputs]
    rows = []
    for column in AUDIT_ONLY:
        if column not in frame.columns:
            continue
        target = frame[column].astype("string")
        classes = sorted(target.dropna().unique())
        y = pd.Categorical(target, categories=classes).codes
        counts = np.bincount(y, minlength=len(classes))
        folds = min(3, int(counts[counts > 0].min()))
        if len(classes) < 2 or folds < 2:
            continue
        model = LGBMClassifier(
            n_estimators=60,
            num_leaves=15,
            learning_rate=0.1,
            n_jobs=1,
            random_state=seed,
            force_row_wise=True,
            deterministic=True,
            verbose=-1,
        )
        cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
        proba = cross_val_predict(model, X, y, cv=cv, method="predict_proba")
        if len(classes) == 2:
            auc = roc_auc_score(y, proba[:, 1])
        else:
            auc = roc_auc_score(y, proba, multi_class="ovr", average="macro")
        rows.append(
            {
                "attribute": column.removeprefix("audit__"),
                "classes": len(classes),
                "households": len(y),
                "auc": float(auc),
                "accuracy": float((proba.argmax(axis=1) == y).mean()),
                "majority_accuracy": float(counts.max() / counts.sum()),
            }
        )
    return pd.DataFrame(rows)
