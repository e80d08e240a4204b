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

from models.data import EMD
from pipeline.config import FairnessConfig

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


def _group_stats(frame: pd.DataFrame, listed: str) -> pd.DataFrame:
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
            "prob": frame["probability"],
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
        mean_probability=("prob", "mean"),
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


def fairness_table(audit: pd.DataFrame, settings: FairnessConfig, listed: str) -> pd.DataFrame:
    """One row per (attribute, group) with disparities against the reference group and flags.

    ``audit`` holds the attribute columns plus ``in_need``, ``observed``, ``probability`` and the
    boolean ``listed`` column, pooled over the test rounds.
    """
    low, high = settings.ratio_bounds
    parts = []
    for attribute in ATTRIBUTES:
        frame = audit[[attribute, listed, "in_need", "observed", "probability"]].rename(
            columns={attribute: "value"}
        )
        stats = _group_stats(frame, listed)
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
