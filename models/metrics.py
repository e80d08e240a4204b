"""Metrics at the outreach capacity: pure functions over scores, labels and capacities.

A list is cut per 읍면동 at that office's capacity (or nationally at the total capacity ``k``).
Ties in the score are broken by the household key (ascending), so the list is deterministic; when
households with the same score straddle the cut, the best and worst case over the tied group are
reported beside the deterministic figure. Observed labels may be missing (a listed household
nobody visited, or whose visit did not resolve): those are counted separately, never as negatives.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, roc_auc_score

ALL = "__all__"
BOOTSTRAP_CELLS = 2**22  # draws held at once by the bootstrap (rows × households): 32 MB


def _key_rank(keys: pd.Series | np.ndarray) -> np.ndarray:
    """Rank of each key in ascending order: numbers by value, anything else as text."""
    values = np.asarray(keys)
    if values.dtype.kind not in "iuf":
        values = values.astype(object)
    return np.asarray(pd.factorize(values, sort=True)[0], dtype=np.int64)


def _group_codes(groups: pd.Series | np.ndarray) -> tuple[np.ndarray, pd.Index]:
    """A code per group (in no particular order: each group's list is cut on its own)."""
    values = groups.array if isinstance(groups, pd.Series) else groups
    if not isinstance(values, pd.Categorical | pd.api.extensions.ExtensionArray):
        values = np.asarray(values, dtype=object)
    codes, uniques = pd.factorize(values)
    return np.asarray(codes, dtype=np.int64), pd.Index(uniques)


def cut_list(
    keys: pd.Series | np.ndarray,
    groups: pd.Series | np.ndarray | None,
    scores: np.ndarray,
    capacity: pd.Series | int,
    min_score: float | None = None,
) -> pd.DataFrame:
    """The list cut at capacity: one row per household, in input order.

    ``capacity`` is a Series (group -> slots, e.g. 읍면동 -> capacity) or one number for a single
    national cut (then ``groups`` is ignored). Households scoring below ``min_score`` are never
    listed. Ties are broken by ``keys`` ascending (text, or numbers such as positions in key
    order). Columns: group (categorical), score, rank (0-based within the group), listed, tied
    (same score as the group's last listed household), above (score strictly above it).
    """
    scores = np.asarray(scores, dtype=np.float64)
    if np.isnan(scores).any():
        raise ValueError("scores must not be NaN")
    n = len(scores)
    if isinstance(capacity, pd.Series):
        group_code, uniques = _group_codes(groups)
        per_group = capacity.reindex(uniques.astype(object)).fillna(0)
        slots = per_group.to_numpy(dtype=np.int64)[group_code]
    else:
        group_code, uniques = np.zeros(n, dtype=np.int64), pd.Index([ALL])
        slots = np.full(n, int(capacity), dtype=np.int64)
    key_rank = _key_rank(keys)
    # sorted by group, score descending, key ascending (the deterministic tie-break)
    order = np.lexsort((key_rank, -scores, group_code))
    sorted_group = group_code[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_group)) + 1]
    first = np.repeat(starts, np.diff(np.r_[starts, n]))
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n) - first
    allowed = np.ones(n, bool) if min_score is None else scores >= min_score
    listed = (rank < slots) & allowed
    lowest = np.full(len(uniques) + 1, np.nan)  # the last entry: households without a group
    np.fmin.at(lowest, group_code[listed], scores[listed])
    lowest[-1] = np.nan
    cut = lowest[group_code]
    has_cut = ~np.isnan(cut)
    return pd.DataFrame(
        {
            "group": pd.Categorical.from_codes(group_code, categories=uniques),
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
    known = ~np.asarray(pd.isna(label), dtype=bool)
    y = np.where(known, np.asarray(label.fillna(0), dtype=np.int64), 0)
    pos = known & (y == 1)
    neg = known & (y == 0)
    unl = ~known
    listed = cut["listed"].to_numpy(bool)
    tied = cut["tied"].to_numpy(bool)
    sure = listed & cut["above"].to_numpy(bool)
    best_pos = best_neg = worst_pos = worst_neg = 0
    group = np.asarray(pd.factorize(cut["group"].array[tied])[0], dtype=np.int64)
    if len(group):
        present = group >= 0  # rows without a group are in none (as groupby drops them)
        group, size = group[present], int(group.max()) + 1

        def per_group(flags: np.ndarray) -> np.ndarray:
            return np.bincount(group[flags[tied][present]], minlength=size)

        slots = per_group(listed)
        n_pos, n_neg, n_unl = per_group(pos), per_group(neg), per_group(unl)
        # best: positives first, then unlabelled, then negatives; worst: the reverse.
        bp = np.minimum(slots, n_pos)
        bu = np.minimum(slots - bp, n_unl)
        best_pos, best_neg = int(bp.sum()), int((slots - bp - bu).sum())
        wn = np.minimum(slots, n_neg)
        wu = np.minimum(slots - wn, n_unl)
        worst_neg, worst_pos = int(wn.sum()), int((slots - wn - wu).sum())
    sure_pos, sure_neg = int((sure & pos).sum()), int((sure & neg).sum())
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


def add_counts(counts: list[ListCounts]) -> ListCounts:
    """Counts of several parts of one list (e.g. partitions whose 읍면동 lists were cut apart)."""
    names = [f.name for f in fields(ListCounts)]
    return ListCounts(**{n: int(sum(getattr(c, n) for c in counts)) for n in names})


def curve_points(k: int, multiple: int = 3, points: int = 60) -> np.ndarray:
    """List sizes of a precision-at-k curve: up to ``multiple`` × the capacity ``k``."""
    return np.unique(np.linspace(1, multiple * max(k, 1), points).astype(int))


def top_candidates(scores: np.ndarray, rows: int) -> np.ndarray:
    """Positions (ascending) of every row scoring at least the ``rows``-th highest score.

    Every row that a ranking cut at ``rows`` or fewer can list, or tie at its cut, is among them.
    """
    n = len(scores)
    rows = min(max(rows, 0), n)
    if rows == 0:
        return np.empty(0, dtype=np.int64)
    threshold = np.partition(scores, n - rows)[n - rows]
    return np.flatnonzero(scores >= threshold)


def ranked_cut(
    scores: np.ndarray,
    observed: np.ndarray,
    need: np.ndarray | None,
    k: int,
    min_score: float | None,
    ks: np.ndarray,
) -> tuple[ListCounts, ListCounts | None, np.ndarray]:
    """The national cut at ``k`` and the precision-at-k curve, from one round's arrays.

    Rows are households in key order (the position is the tie-break); ``observed`` is the label
    code (1, 0, -1 for none), ``need`` the truth (or None). Only the rows that can reach the
    top ``max(k, ks)`` are ranked; totals come from all rows. The same figures as
    :func:`cut_list` and :func:`count_list` on every row. The curve's precision is against the
    truth when given, else among labelled households.
    """
    scores = np.asarray(scores, dtype=np.float64)
    if np.isnan(scores).any():
        raise ValueError("scores must not be NaN")
    top = top_candidates(scores, max(k, int(ks.max()) if len(ks) else 0))
    cut = cut_list(top, None, scores[top], k, min_score)
    code = observed[top]
    labels = pd.array(np.where(code < 0, 0, code), dtype="Int8")
    labels[code < 0] = pd.NA
    seen = replace(
        count_list(cut, labels),
        total_positives=int((observed == 1).sum()),
        total_labelled=int((observed >= 0).sum()),
    )
    truth = None
    if need is not None:
        truth = replace(
            count_list(cut, need[top].astype(np.int64)),
            total_positives=int(need.sum()),
            total_labelled=len(need),
        )
    order = top[np.lexsort((top, -scores[top]))]
    target = need[order].astype(np.float64) if need is not None else observed[order].astype(float)
    if need is None:
        target[observed[order] < 0] = np.nan
    hits = np.nancumsum(target)
    known = np.cumsum(~np.isnan(target))
    at = np.minimum(ks, len(order)) - 1
    curve = hits[at] / np.maximum(known[at], 1) if len(order) else np.full(len(ks), np.nan)
    return seen, truth, curve


def roc_auc_ranks(scores: np.ndarray, labels: np.ndarray) -> float:
    """ROC-AUC of boolean ``labels`` by exact ranks (Mann-Whitney; ties count one half).

    Equals ``sklearn.metrics.roc_auc_score`` to float rounding with a fraction of its memory:
    two sorted copies of the scores, no per-threshold curve.
    """
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels, dtype=bool)
    positive = np.sort(scores[labels])
    negative = np.sort(scores[~labels])
    if len(positive) == 0 or len(negative) == 0:
        return float("nan")
    below = np.searchsorted(negative, positive, side="left").sum(dtype=np.int64)
    upto = np.searchsorted(negative, positive, side="right").sum(dtype=np.int64)
    return float((int(below) + int(upto)) / (2 * len(positive) * len(negative)))


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


def calibration_noise(
    probabilities: np.ndarray,
    bins: int = 10,
    samples: int = 200,
    seed: int = 0,
    level: float = 0.95,
) -> float:
    """The ECE a perfectly calibrated model shows on this many households, by chance alone.

    Consistency resampling (Bröcker and Smith, 2007): labels are drawn from the probabilities
    themselves and the ECE of each draw computed; the ``level`` quantile of those is returned.
    An observed ECE below it cannot be told from measurement noise at this sample size.
    """
    p = np.asarray(probabilities, dtype=np.float64)
    p = p[~np.isnan(p)]
    if len(p) == 0:
        return float("nan")
    which = np.clip(np.digitize(p, np.linspace(0.0, 1.0, bins + 1)[1:-1]), 0, bins - 1)
    predicted = np.bincount(which, weights=p, minlength=bins)
    rng = np.random.default_rng(seed)
    eces = np.empty(samples)
    for i in range(samples):
        y = rng.random(len(p)) < p
        observed = np.bincount(which, weights=y, minlength=bins)
        eces[i] = np.abs(predicted - observed).sum() / len(p)  # the ECE of calibration_metrics
    return float(np.quantile(eces, level))


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
    candidate: str | None = None,
) -> pd.DataFrame:
    """Bootstrap 95% intervals of truth precision, need found, lift and gap closed, and (with
    ``candidate``) of each model's truth precision minus the candidate's, on the same draws: a
    difference whose interval excludes 0 is one the data can tell.

    Each frame in ``rounds`` holds one test round: one row per household on any list, a boolean
    column per model (listed by it), ``in_need`` and the attribute ``total_need`` (in ``attrs``)
    of the round. Rows are resampled with replacement within each round (a paired bootstrap: the
    same draw serves every model); the statistic is the mean over rounds. Draws are made in
    blocks (:data:`BOOTSTRAP_CELLS`): the counts are whole numbers, so the sums are exact and the
    result is the same as with one block.
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
        listed = {m: frame[m].to_numpy(dtype=np.float64) for m in models}
        hits = {m: np.empty(samples) for m in models}
        size = {m: np.empty(samples) for m in models}
        # the draws in blocks of rows (bounded memory); the same stream as one draw of all
        block = max(1, BOOTSTRAP_CELLS // max(n, 1))
        for start in range(0, samples, block):
            stop = min(start + block, samples)
            draws = rng.multinomial(n, np.full(n, 1.0 / n), size=stop - start).astype(np.float64)
            for m in models:
                hits[m][start:stop] = draws @ (need * listed[m])
                size[m][start:stop] = draws @ listed[m]
        for m in models:
            with np.errstate(invalid="ignore", divide="ignore"):
                per_model[m].append(hits[m] / size[m])
            found[m].append(hits[m] / total if total else np.full(samples, np.nan))
            on = listed[m]
            point[m].append(float((need * on).sum() / on.sum()) if on.sum() else np.nan)
            point_found[m].append(float((need * on).sum() / total) if total else np.nan)
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
        if candidate is not None:
            difference = boot[m] - boot[candidate]
            rows[-1].update(
                {
                    "minus_candidate": p_point - float(np.nanmean(point[candidate])),
                    "minus_candidate_low": float(np.nanpercentile(difference, 2.5)),
                    "minus_candidate_high": float(np.nanpercentile(difference, 97.5)),
                }
            )
    return pd.DataFrame(rows)
