"""Metrics at the outreach capacity: pure functions over scores, labels and capacities.

A list is cut per 읍면동 at that office's capacity (or nationally at the total capacity ``k``).
Ties in the score are broken by the household key (ascending), so the list is deterministic; when
households with the same score straddle the cut, the best and worst case over the tied group are
reported beside the deterministic figure. Observed labels may be missing (a listed household
nobody visited, or whose visit did not resolve): those are counted separately, never as negatives.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, roc_auc_score

ALL = "__all__"


def cut_list(
    keys: pd.Series | np.ndarray,
    groups: pd.Series | np.ndarray,
    scores: np.ndarray,
    capacity: pd.Series | int,
    min_score: float | None = None,
) -> pd.DataFrame:
    """The list cut at capacity: one row per household, in input order.

    ``capacity`` is a Series (group -> slots, e.g. 읍면동 -> capacity) or one number for a single
    national cut (then ``groups`` is ignored). Households scoring below ``min_score`` are never
    listed. Columns: group, score, rank (0-based within the group), listed, tied (same score as
    the group's last listed household), above (score strictly above it).
    """
    scores = np.asarray(scores, dtype=np.float64)
    if np.isnan(scores).any():
        raise ValueError("scores must not be NaN")
    n = len(scores)
    if isinstance(capacity, pd.Series):
        group = np.asarray(groups, dtype=object)
    else:
        group = np.full(n, ALL, dtype=object)
    group_code, uniques = pd.factorize(pd.Series(group, dtype="string"), sort=True)
    if isinstance(capacity, pd.Series):
        per_group = capacity.reindex(pd.Index(uniques).astype(object)).fillna(0)
        slots = per_group.to_numpy(dtype=np.int64)[group_code]
    else:
        slots = np.full(n, int(capacity), dtype=np.int64)
    key_rank = pd.factorize(pd.Series(np.asarray(keys), dtype="string"), sort=True)[0]
    # sorted by group, score descending, key ascending (the deterministic tie-break)
    order = np.lexsort((key_rank, -scores, group_code))
    sorted_group = group_code[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_group)) + 1]
    first = np.repeat(starts, np.diff(np.r_[starts, n]))
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n) - first
    allowed = np.ones(n, bool) if min_score is None else scores >= min_score
    listed = (rank < slots) & allowed
    cut_score = pd.Series(scores[listed]).groupby(group_code[listed]).min()
    cut = pd.Series(group_code).map(cut_score).to_numpy(dtype=np.float64)
    has_cut = ~np.isnan(cut)
    return pd.DataFrame(
        {
            "group": group,
            "score": scores,
            "rank": rank,
            "listed": listed,
            "tied": has_cut & (scores == cut) & allowed,
            "above": has_cut & (scores > cut),
        }
    )


@dataclass(frozen=True)
class ListCounts:
    """Counts on a cut list for one label vector; best/worst over ties straddling the cut."""

    listed: int
    positives: int
    negatives: int
    unlabelled: int
    best_positives: int
    best_negatives: int
    worst_positives: int
    worst_negatives: int
    total_positives: int
    total_labelled: int

    @staticmethod
    def _ratio(num: float, den: float) -> float:
        return float(num / den) if den else float("nan")

    @property
    def precision(self) -> float:
        """Positives among listed households that have a label."""
        return self._ratio(self.positives, self.positives + self.negatives)

    @property
    def precision_best(self) -> float:
        return self._ratio(self.best_positives, self.best_positives + self.best_negatives)

    @property
    def precision_worst(self) -> float:
        return self._ratio(self.worst_positives, self.worst_positives + self.worst_negatives)

    @property
    def recall(self) -> float:
        """Listed positives among all positives."""
        return self._ratio(self.positives, self.total_positives)

    @property
    def recall_best(self) -> float:
        return self._ratio(self.best_positives, self.total_positives)

    @property
    def recall_worst(self) -> float:
        return self._ratio(self.worst_positives, self.total_positives)

    @property
    def unlabelled_share(self) -> float:
        return self._ratio(self.unlabelled, self.listed)


def count_list(cut: pd.DataFrame, labels: pd.Series | np.ndarray) -> ListCounts:
    """Count positives, negatives and unlabelled on a cut list (labels 1/0/NA, in cut's order)."""
    label = pd.array(labels, dtype="Int8")
    known = ~pd.isna(label)
    y = np.where(known, np.asarray(label.fillna(0), dtype=np.int64), 0)
    pos = known & (y == 1)
    neg = known & (y == 0)
    unl = ~known
    listed = cut["listed"].to_numpy(bool)
    tied = cut["tied"].to_numpy(bool)
    above = cut["above"].to_numpy(bool)
    frame = pd.DataFrame(
        {
            "group": cut["group"].to_numpy(),
            "listed": listed,
            "sure": listed & above,
            "tied": tied,
            "pos": pos,
            "neg": neg,
            "unl": unl,
        }
    )
    best_pos = best_neg = worst_pos = worst_neg = 0
    sure = frame[frame["sure"]]
    sure_pos, sure_neg = int(sure["pos"].sum()), int(sure["neg"].sum())
    tied_rows = frame[frame["tied"]]
    if len(tied_rows):
        per_group = tied_rows.groupby("group").agg(
            n_pos=("pos", "sum"),
            n_neg=("neg", "sum"),
            n_unl=("unl", "sum"),
            slots=("listed", "sum"),
        )
        slots = per_group["slots"].to_numpy()
        n_pos, n_neg, n_unl = (per_group[c].to_numpy() for c in ("n_pos", "n_neg", "n_unl"))
        # best: positives first, then unlabelled, then negatives; worst: the reverse.
        bp = np.minimum(slots, n_pos)
        bu = np.minimum(slots - bp, n_unl)
        best_pos, best_neg = int(bp.sum()), int((slots - bp - bu).sum())
        wn = np.minimum(slots, n_neg)
        wu = np.minimum(slots - wn, n_unl)
        worst_neg, worst_pos = int(wn.sum()), int((slots - wn - wu).sum())
    return ListCounts(
        listed=int(listed.sum()),
        positives=int((listed & pos).sum()),
        negatives=int((listed & neg).sum()),
        unlabelled=int((listed & unl).sum()),
        best_positives=sure_pos + best_pos,
        best_negatives=sure_neg + best_neg,
        worst_positives=sure_pos + worst_pos,
        worst_negatives=sure_neg + worst_neg,
        total_positives=int(pos.sum()),
        total_labelled=int((pos | neg).sum()),
    )


def ranking_metrics(scores: np.ndarray, labels: pd.Series | np.ndarray) -> dict[str, float]:
    """ROC-AUC and AUC-PR (average precision) over the households that have a label."""
    label = pd.array(labels, dtype="Int8")
    known = ~pd.isna(label)
    y = np.asarray(label[known], dtype=np.int64)
    s = np.asarray(scores, dtype=np.float64)[known]
    if len(np.unique(y)) < 2:
        return {"roc_auc": float("nan"), "auc_pr": float("nan")}
    return {
        "roc_auc": float(roc_auc_score(y, s)),
        "auc_pr": float(average_precision_score(y, s)),
    }


def calibration_metrics(
    probabilities: np.ndarray, labels: pd.Series | np.ndarray, bins: int = 10
) -> tuple[dict[str, float], pd.DataFrame]:
    """Brier score and expected calibration error (equal-width bins) over labelled households.

    Returns the figures and the reliability table (bin, count, mean predicted, observed rate).
    """
    label = pd.array(labels, dtype="Int8")
    known = ~pd.isna(label)
    y = np.asarray(label[known], dtype=np.float64)
    p = np.asarray(probabilities, dtype=np.float64)[known]
    if len(y) == 0:
        empty = pd.DataFrame(columns=["bin", "count", "mean_predicted", "observed_rate"])
        return {"brier": float("nan"), "ece": float("nan"), "labelled": 0}, empty
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(p, edges[1:-1], right=False), 0, bins - 1)
    table = (
        pd.DataFrame({"bin": which, "p": p, "y": y})
        .groupby("bin")
        .agg(count=("y", "size"), mean_predicted=("p", "mean"), observed_rate=("y", "mean"))
        .reset_index()
    )
    ece = float(
        (table["count"] * (table["mean_predicted"] - table["observed_rate"]).abs()).sum() / len(y)
    )
    return {"brier": float(np.mean((p - y) ** 2)), "ece": ece, "labelled": len(y)}, table


def counts_to_metrics(prefix: str, counts: ListCounts, truth: bool = False) -> dict[str, float]:
    """Flat metric names for one cut: precision, recall (or need found), ties' best and worst."""
    recall_name = "need_found" if truth else "recall"
    metrics = {
        f"{prefix}precision": counts.precision,
        f"{prefix}precision_best": counts.precision_best,
        f"{prefix}precision_worst": counts.precision_worst,
        f"{prefix}{recall_name}": counts.recall,
        f"{prefix}{recall_name}_best": counts.recall_best,
        f"{prefix}{recall_name}_worst": counts.recall_worst,
        f"{prefix}listed": float(counts.listed),
    }
    if not truth:
        metrics[f"{prefix}unlabelled"] = float(counts.unlabelled)
        metrics[f"{prefix}labelled"] = float(counts.positives + counts.negatives)
    return metrics


def gap_closed(model: float, rule: float, oracle: float) -> float:
    """Share of the rule → oracle gap in precision that the model closes."""
    gap = oracle - rule
    return float((model - rule) / gap) if gap > 0 else float("nan")


def paired_bootstrap(
    rounds: list[pd.DataFrame],
    models: list[str],
    *,
    reference: str,
    oracle: str,
    samples: int,
    seed: int,
) -> pd.DataFrame:
    """Bootstrap 95% intervals of truth precision, need found, lift and gap closed.

    Each frame in ``rounds`` holds one test round: one row per household on any list, a boolean
    column per model (listed by it), ``in_need`` and the attribute ``total_need`` (in ``attrs``)
    of the round. Rows are resampled with replacement within each round (a paired bootstrap: the
    same draw serves every model); the statistic is the mean over rounds.
    """
    rng = np.random.default_rng(seed)
    per_model: dict[str, list[np.ndarray]] = {m: [] for m in models}
    found: dict[str, list[np.ndarray]] = {m: [] for m in models}
    point: dict[str, list[float]] = {m: [] for m in models}
    point_found: dict[str, list[float]] = {m: [] for m in models}
    for frame in rounds:
        n = len(frame)
        need = frame["in_need"].to_numpy(dtype=np.float64)
        total = float(frame.attrs["total_need"])
        draws = rng.multinomial(n, np.full(n, 1.0 / n), size=samples).astype(np.float64)
        for m in models:
            listed = frame[m].to_numpy(dtype=np.float64)
            hits = draws @ (need * listed)
            size = draws @ listed
            with np.errstate(invalid="ignore", divide="ignore"):
                per_model[m].append(hits / size)
            found[m].append(hits / total if total else np.full(samples, np.nan))
            point[m].append(float((need * listed).sum() / listed.sum()) if listed.sum() else np.nan)
            point_found[m].append(float((need * listed).sum() / total) if total else np.nan)
    rows = []
    boot = {m: np.nanmean(np.vstack(per_model[m]), axis=0) for m in models}
    boot_found = {m: np.nanmean(np.vstack(found[m]), axis=0) for m in models}
    for m in models:
        p_point = float(np.nanmean(point[m]))
        r_point = float(np.nanmean(point[reference]))
        o_point = float(np.nanmean(point[oracle]))
        with np.errstate(invalid="ignore", divide="ignore"):
            lift = boot[m] / boot[reference]
            gap = (boot[m] - boot[reference]) / (boot[oracle] - boot[reference])
        rows.append(
            {
                "model": m,
                "truth_precision": p_point,
                "truth_precision_low": float(np.nanpercentile(boot[m], 2.5)),
                "truth_precision_high": float(np.nanpercentile(boot[m], 97.5)),
                "need_found": float(np.nanmean(point_found[m])),
                "need_found_low": float(np.nanpercentile(boot_found[m], 2.5)),
                "need_found_high": float(np.nanpercentile(boot_found[m], 97.5)),
                "lift_over_rule": p_point / r_point if r_point else float("nan"),
                "lift_low": float(np.nanpercentile(lift, 2.5)),
                "lift_high": float(np.nanpercentile(lift, 97.5)),
                "gap_closed": gap_closed(p_point, r_point, o_point),
                "gap_closed_low": float(np.nanpercentile(gap, 2.5)),
                "gap_closed_high": float(np.nanpercentile(gap, 97.5)),
            }
        )
    return pd.DataFrame(rows)
