"""Fairness audit at the capacity cut, against the truth, and a proxy check on the model inputs.

Groups: 시도, 시군구, urban/rural, head's sex and age band (audit-only columns, never model
inputs), disability in the household, one-person household, tenure. Per group: size, need rate,
selection rate and selection relative to need, precision, recall, false-negative rate, mean
predicted probability against the observed and true rates, and ratios against a reference group
set in the config. Ratios of precision or recall outside the configured bounds are flagged;
groups smaller than the minimum are reported as too small, without ratios.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from lightgbm import LGBMClassifier
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict

from pipeline.config import FairnessConfig
from pipeline.vocabulary import EMD

ATTRIBUTES = (
    "sido",
    "sigungu",
    "urban",
    "head_sex",
    "head_age_band",
    "disability",
    "single_person",
    "tenure",
)
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


def _group_stats(counts: pd.DataFrame, listed: str) -> pd.DataFrame:
    g = counts.set_index("group").sort_index()
    out = pd.DataFrame(index=pd.Index(g.index, name="value"))
    out["size"] = g["size"]
    out["in_need"] = g["in_need"]
    out["need_rate"] = g["in_need"] / g["size"]
    out["selected"] = g[f"selected_{listed}"]
    out["selection_rate"] = out["selected"] / g["size"]
    out["selection_to_need"] = out["selection_rate"] / out["need_rate"].replace(0, np.nan)
    hits = g[f"hits_{listed}"]
    out["precision"] = hits / out["selected"].replace(0, np.nan)
    out["recall"] = hits / g["in_need"].replace(0, np.nan)
    out["false_negative_rate"] = 1 - out["recall"]
    out["labelled"] = g["labelled"]
    out["observed_rate"] = g["labelled_positive"] / g["labelled"].replace(0, np.nan)
    out["mean_probability_labelled"] = g["probability_labelled_sum"] / g[
        "probability_labelled_n"
    ].replace(0, np.nan)
    out["calibration_gap"] = out["mean_probability_labelled"] - out["observed_rate"]
    return out


def fairness_from_counts(
    counts: pd.DataFrame, settings: FairnessConfig, listed: str
) -> pd.DataFrame:
    """One row per (attribute, group) with disparities against the reference group and flags.

    ``counts`` is an :func:`audit_counts` table (pooled over the test rounds) with the
    ``listed`` selection among its columns.
    """
    low, high = settings.ratio_bounds
    parts = []
    for attribute in ATTRIBUTES:
        stats = _group_stats(counts[counts["attribute"] == attribute], listed)
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


def fairness_table(audit: pd.DataFrame, settings: FairnessConfig, listed: str) -> pd.DataFrame:
    """:func:`fairness_from_counts` of household rows (``audit``: see :func:`audit_counts`)."""
    return fairness_from_counts(audit_counts(audit, [listed]), settings, listed)


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
