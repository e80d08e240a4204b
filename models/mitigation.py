"""Fairness mitigation: two ways to even out how often households in need are found across groups.

Both use only what a deployment has: the model's probabilities and the households' attributes
(the audit groups, never model inputs), and the training rows' observed labels. The truth only
measures them, in the backtests (docs/fairness.md).

- **Post-processing, group-aware thresholds at capacity** (``equal_recall``): within each 읍면동,
  each group of the chosen attributes (their combinations: cells) is ranked by probability, and a
  household's place is the share of its cell's *expected* need (the sum of the cell's
  probabilities) that the cell's households ranked at or above it hold: the cell's expected recall
  if the list stopped there. Listing by that share, lowest first, stops every cell at the same
  expected recall: group-specific thresholds, cut at the 읍면동's capacity. ``strength`` blends it
  with the same share over the whole 읍면동 (0: the plain list; 1: full equalisation).
- **In training, reweighing** (``reweigh``, Kamiran and Calders 2012): training rows are weighted
  by P(cell) P(label) / P(cell, label) over the fitted rows, so that the label is independent of
  the cell in the weighted data; ``strength`` is the power of that factor.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

NONE = "none"
EQUAL_RECALL = "equal_recall"
REWEIGH = "reweigh"
METHODS = (NONE, EQUAL_RECALL, REWEIGH)


def setting_name(method: str, strength: float) -> str:
    """A mitigation setting as list names and MLflow metric keys show it, without a dot:
    ``equal_recall-50`` is equal_recall at strength 0.5."""
    return NONE if method == NONE else f"{method}-{round(strength * 100)}"


def describe_setting(method: str, attributes: tuple[str, ...], strength: float) -> str:
    """A mitigation setting in words, as the model card and the scoring manifest show it."""
    if method == NONE:
        return NONE
    return f"{method} over {', '.join(attributes)} at strength {strength:g}"


def cell_codes(attributes: pd.DataFrame, names: tuple[str, ...]) -> np.ndarray:
    """One integer per combination of the ``names`` columns (missing values form their own)."""
    if not names:
        return np.zeros(len(attributes), dtype=np.int64)
    frame = attributes[list(names)].astype("string").fillna("<NA>")
    codes = frame.groupby(list(names), sort=True, dropna=False).ngroup()
    return codes.to_numpy(dtype=np.int64)


def _expected_recall_share(probability: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Per household: the share of its group's probability mass held by the group's households
    ranked at or above it (probability descending; ties in input order, i.e. by key)."""
    n = len(probability)
    order = np.lexsort((np.arange(n), -probability, groups))
    sorted_groups = pd.Series(groups[order])
    mass = pd.Series(probability[order])
    # per group, summed within the group only (no carried-over rounding from other groups)
    within = mass.groupby(sorted_groups, sort=False).cumsum().to_numpy()
    totals = mass.groupby(sorted_groups, sort=False).transform("sum").to_numpy()
    share = np.empty(n, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        # a cell with no expected need at all: its households come last, in order
        share[order] = np.where(totals > 0, within / totals, 1.0)
    return share


def equal_recall_key(
    probability: np.ndarray, emd: np.ndarray, cells: np.ndarray, strength: float
) -> np.ndarray:
    """The list order of the ``equal_recall`` post-processing: higher is listed first.

    ``probability``, ``emd`` and ``cells`` are aligned, in household-key order. The key is minus
    the blended expected-recall share (module docstring), so that cutting each 읍면동 at its
    capacity by the key gives every cell the same expected recall when ``strength`` is 1.
    """
    probability = np.asarray(probability, dtype=np.float64)
    emd_code = pd.factorize(np.asarray(emd, dtype=object))[0].astype(np.int64)
    whole = _expected_recall_share(probability, emd_code)
    if strength == 0:
        return -whole
    cell = emd_code * (int(cells.max(initial=0)) + 1) + np.asarray(cells, dtype=np.int64)
    by_cell = _expected_recall_share(probability, cell)
    return -((1.0 - strength) * whole + strength * by_cell)


def reweigh_factors(cells: np.ndarray, y: np.ndarray, fitted: np.ndarray) -> np.ndarray:
    """Kamiran-Calders weights P(cell) P(label) / P(cell, label), estimated on the ``fitted`` rows
    (calibration rows get 1: the calibrator is fitted unweighted)."""
    cells = np.asarray(cells, dtype=np.int64)
    y = np.asarray(y, dtype=np.int64)
    fitted = np.asarray(fitted, dtype=bool)
    factors = np.ones(len(y), dtype=np.float64)
    if not fitted.any():
        return factors
    c, labels = cells[fitted], y[fitted]
    n = float(len(c))
    joint = pd.crosstab(c, labels).reindex(columns=[0, 1], fill_value=0) / n
    p_cell = joint.sum(axis=1)
    p_label = joint.sum(axis=0)
    expected = np.outer(p_cell, p_label)
    with np.errstate(invalid="ignore", divide="ignore"):
        table = np.where(joint.to_numpy() > 0, expected / joint.to_numpy(), 1.0)
    row = pd.Index(joint.index).get_indexer(c)
    factors[fitted] = table[row, labels]
    return factors


@dataclass(frozen=True)
class ListPolicy:
    """How a model's probabilities become a list order: pickled with the registered model
    (``list_policy_``), so that scoring lists households as the backtests measured."""

    method: str  # none or equal_recall (reweighing is in the fit itself)
    attributes: tuple[str, ...]
    strength: float

    def key(self, probability: np.ndarray, emd: np.ndarray, attributes: pd.DataFrame) -> np.ndarray:
        """The list order (higher first) of households in key order."""
        if self.method != EQUAL_RECALL:
            return np.asarray(probability, dtype=np.float64)
        cells = cell_codes(attributes, self.attributes)
        return equal_recall_key(probability, emd, cells, self.strength)

    def describe(self) -> str:
        return describe_setting(self.method, self.attributes, self.strength)


def tradeoff_row(
    name: str,
    setting: str,
    summary: pd.DataFrame,
    fairness: pd.DataFrame,
    attributes: tuple[str, ...],
    registered: bool = False,
) -> dict[str, object]:
    """A list's place on the precision-disparity trade-off: its truth precision and need found at
    capacity (backtest means), its fairness flags, and its largest disparities (the ratio furthest
    from 1 on either side, as a factor >= 1) over the groups large enough to compare: over every
    attribute, and over the mitigated ``attributes`` alone."""
    row = summary.set_index("model").loc[name]
    compared = fairness[~fairness["too_small"].astype(bool)]
    mitigated = compared[compared["attribute"].isin(attributes)]

    def worst(column: str, table: pd.DataFrame = compared) -> float:
        ratios = table[column].to_numpy(dtype=np.float64)
        ratios = ratios[np.isfinite(ratios) & (ratios > 0)]
        return float(np.exp(np.abs(np.log(ratios)).max())) if len(ratios) else float("nan")

    return {
        "list": name,
        "setting": setting,
        "registered": registered,
        "truth_precision": float(row.get("truth_emd_precision_mean", np.nan)),
        "need_found": float(row.get("truth_emd_need_found_mean", np.nan)),
        "flags": int(fairness["flagged"].sum()),
        "worst_recall_disparity": worst("judged_recall_ratio"),
        "worst_precision_disparity": worst("precision_ratio"),
        "mitigated_flags": int(mitigated["flagged"].sum()),
        "mitigated_recall_disparity": worst("judged_recall_ratio", mitigated),
    }
