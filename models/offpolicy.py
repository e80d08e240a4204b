"""Off-policy estimates of a list's precision at capacity from the logged visits (pure).

Any candidate's list (cut per 읍면동 at capacity) can be judged without the truth from the visits
the *logging* policy made in the same round, each with the probability that the reason which
chose it had of choosing it (``selection_probability``):

- **IPS** (inverse propensity): ``sum over listed, labelled i of y_i / p_i``, over the list size;
- **SNIPS** (self-normalised): the same sum over ``sum of 1 / p_i`` (precision among the
  households the log can vouch for; biased by O(1/n) but with much less variance);
- **DR** (doubly robust): ``mean over the list of m_i + o_i (y_i - m_i) / p_i``, where ``m_i`` is
  an outcome model's probability that a visit to i finds need (the candidate's own calibrated
  probability, or another model's: the backtests use the logistic candidate's for every list)
  and ``o_i`` says whether i's label was observed. Unbiased when either the propensities or the
  outcome model are right; a household the log could never visit is covered by ``m_i`` alone.
  With ``max_weight`` (the backtests: :data:`DR_MAX_WEIGHT`) visits weighing more correct nothing
  (the "switch" estimator): less variance, and the model term's bias where they would have.

``p_i`` is the probability that the household was visited *and* its label observed: the visit
probability (:func:`logging_propensity`: the logged probability of the reason that chose it,
combined with what the log tells of the other reasons) times the share of the round's visits
chosen by the same reason whose outcome is known (a visit that was unreachable, is in progress
or was not resolved by the evaluation date gives no label; it is treated as missing at random
within its round and selection reason, never as a negative).

Identification. A household has a logged probability only when it was chosen. For a household a
candidate lists but the log did not visit, IPS needs its probability to be positive (then its
absence is part of the estimate's randomness); a household the logging policy could never visit
is not identified by IPS at all (its need is silently counted as 0 by IPS, left out by SNIPS),
and only DR's model term covers it. ``support_share`` is the share of a list that the log can
vouch for: visited households and those in the pool of a reason that draws at random with a
recorded probability (:func:`logging_propensity`; :mod:`models.evaluation` takes "a crisis signal
reported in the 6 months before the round" as the exploration pool).

Intervals: households on any list of the round are resampled with replacement (one paired
multinomial draw per bootstrap sample, in blocks as :func:`models.metrics.paired_bootstrap`);
the propensities and the model terms are held fixed. Percentile intervals at ``level``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from models.metrics import BOOTSTRAP_CELLS

ESTIMATORS = ("ips", "snips", "dr")
# DR corrects its model term only with labelled visits of weight at most this (a visit
# probability of at least 1 %): the logged exploration draws with probability about 0.001, and
# one such visit would move a 1,800-household list's estimate by about 0.5 (docs/offpolicy.md)
DR_MAX_WEIGHT = 100.0
OBSERVED = "observed"  # label code: 1, 0, -1 (no label)
PROPENSITY = "propensity"  # probability of visit and label; NaN when not visited
SUPPORT = "support"  # the log gives the household a known positive probability
IN_NEED = "in_need"  # the truth (synthetic data only)
MODEL_TERM = "model_term:"  # prefix of an outcome model's probability column
# the logging policy's selection reasons (pipeline/generate/simulate.py)
CENTRAL, LOCAL, EXPLORE = "central_rule", "local_discretion", "random_exploration"


def metric_name(estimator: str) -> str:
    """The backtest metric of an estimator, e.g. ``offpolicy_dr_emd_precision``."""
    return f"offpolicy_{estimator}_emd_precision"


def observed_rates(visits: pd.DataFrame) -> dict[str, float]:
    """Per selection reason, the share of a round's visits whose label is known (``label``
    not missing): visits that were unreachable, in progress or not resolved by the evaluation
    date are treated as missing at random within their reason."""
    if visits.empty:
        return {}
    reason = visits["selection_reason"].astype("string").fillna("").to_numpy()
    known = visits["label"].notna().to_numpy(dtype=np.float64)
    return {str(k): float(v) for k, v in pd.Series(known).groupby(reason).mean().items()}


def logging_propensity(
    reason: np.ndarray,
    probability: np.ndarray,
    emd: np.ndarray,
    rule_score: np.ndarray,
    recent: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """The probability that the logging policy visited each household, and whether the log
    gives it a known positive probability (support).

    Rows are every eligible household of whole 읍면동 (one partition); ``reason`` and
    ``probability`` are the logged selection reason and probability (empty / NaN when not
    visited). The logging policy chose in turn by the central rule (top rule scores, ties at the
    cut drawn at random), local discretion (weighted by what the caseworker knew: unknown for a
    household it did not choose) and random exploration among households with a recent signal
    (one probability per 읍면동 and round). The logged probability is that of the reason that
    chose the household; a household could also have come by the other reasons, so the visit
    probability combines them, ``1 - (1 - c)(1 - l)(1 - x)``, with what the log tells:

    - ``c``: 1 for a central pick above the cut; at the cut score, the tie probability logged
      for that 읍면동's tied central picks (for any household with that score);
    - ``l``: the logged probability of a local pick; 0 otherwise (not known);
    - ``x``: the 읍면동's logged exploration probability for a household with a recent signal.

    A visit whose logged probability is missing (a local pick: no system records how an office
    chose, so the generator logs none) has an unknown visit probability: NaN, and its label is
    left to DR's model term.

    Returns the visit probability of visited households with a known one (NaN elsewhere) and the
    support: such a visit, or ``c`` or ``x`` positive.
    """
    reason = np.asarray(reason, dtype=object)
    prob = np.asarray(probability, dtype=np.float64)
    emd = np.asarray(emd, dtype=object)
    score = np.asarray(rule_score, dtype=np.float64)
    recent = np.asarray(recent, dtype=bool)
    visited = pd.notna(reason) & (reason != "")
    unknown = visited & np.isnan(prob)  # chosen by a reason with no logged probability
    codes, uniques = pd.factorize(emd)
    codes = np.asarray(codes, dtype=np.int64)
    groups = len(uniques)
    explore = np.zeros(groups)
    tie_p = np.zeros(groups)
    tie_score = np.full(groups, np.nan)
    is_explore = visited & (reason == EXPLORE)
    np.maximum.at(explore, codes[is_explore], prob[is_explore])
    tied = visited & (reason == CENTRAL) & (prob < 1.0)
    np.maximum.at(tie_p, codes[tied], prob[tied])
    np.fmin.at(tie_score, codes[tied], score[tied])
    c = np.where(score == tie_score[codes], tie_p[codes], 0.0)
    c = np.where(visited & (reason == CENTRAL), prob, c)
    x = np.where(recent, explore[codes], 0.0)
    x = np.where(is_explore, prob, x)
    local = visited & (reason == LOCAL) & ~unknown
    l_ = np.where(local, prob, 0.0)
    known = visited & ~np.isin(reason, [CENTRAL, LOCAL, EXPLORE])  # another logging policy
    combined = 1.0 - (1.0 - c) * (1.0 - l_) * (1.0 - x)
    combined = np.where(known, prob, combined)
    out = np.where(visited & ~unknown, combined, np.nan)
    support = (visited & ~unknown) | (c > 0) | (x > 0)
    return out, support


@dataclass(frozen=True)
class Terms:
    """Per-household terms of one list (rows: households on any list of the round)."""

    listed: np.ndarray  # float 0/1
    ips: np.ndarray  # listed * o * y / p
    weight: np.ndarray  # listed * o / p
    dr: np.ndarray  # listed * (m + o (y - m) / p); NaN without a model term
    support: np.ndarray  # listed * support


def list_terms(
    frame: pd.DataFrame, listed: str, model: str | None, max_weight: float | None = None
) -> Terms:
    """The estimators' terms of the list ``listed`` (a boolean column of ``frame``) with the
    outcome model column ``model`` (or none: DR is then NaN).

    ``max_weight``: DR corrects the model term only where the weight 1 / p is at most this
    (the "switch" estimator of Wang, Agarwal and Dudík 2017): beyond it the model term stands
    alone. None: every labelled household corrects it (plain DR).
    """
    on = frame[listed].to_numpy(dtype=np.float64)
    code = frame[OBSERVED].to_numpy(dtype=np.int64)
    seen = code >= 0
    y = np.where(seen, code, 0).astype(np.float64)
    p = frame[PROPENSITY].to_numpy(dtype=np.float64)
    if np.any(seen & (p <= 0)):
        raise ValueError("a labelled visit needs a positive propensity")
    seen &= ~np.isnan(p)  # a visit of unknown probability: its label cannot be weighed
    w = np.zeros(len(frame))
    w[seen] = 1.0 / p[seen]
    if model is None:
        dr = np.full(len(frame), np.nan)
    else:
        m = frame[model].to_numpy(dtype=np.float64)
        use = w if max_weight is None else np.where(w <= max_weight, w, 0.0)
        dr = on * (m + use * (y - m))
    support = on * frame[SUPPORT].to_numpy(dtype=np.float64)
    return Terms(on, on * w * y, on * w, dr, support)


def _ratios(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return num / den


def estimate(
    frame: pd.DataFrame, listed: str, model: str | None = None, max_weight: float | None = None
) -> dict[str, float]:
    """Point estimates of the precision of one list: ips, snips, dr, support_share, listed."""
    t = list_terms(frame, listed, model, max_weight)
    n = t.listed.sum()
    out = {
        "ips": float(_ratios(t.ips.sum(), n)),
        "snips": float(_ratios(t.ips.sum(), t.weight.sum())),
        "dr": float(_ratios(t.dr.sum(), n)),
        "support_share": float(_ratios(t.support.sum(), n)),
        "listed": float(n),
        "labelled_on_list": float((t.weight > 0).sum()),
    }
    return out


def bootstrap_round(
    frame: pd.DataFrame,
    lists: dict[str, str | None],
    *,
    samples: int,
    seed: int | np.random.Generator,
    level: float = 0.90,
    max_weight: float | None = None,
) -> pd.DataFrame:
    """Point estimates and bootstrap intervals of several lists of one round.

    ``frame``: one row per household on any list of the round, with a boolean column per list,
    :data:`OBSERVED`, :data:`PROPENSITY`, :data:`SUPPORT`, the outcome models' columns and
    optionally :data:`IN_NEED` (then the truth precision is reported beside the estimates).
    ``lists``: list column -> outcome model column (or None). Households are resampled with
    replacement (the same draws for every list). Returns one row per list.
    """
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    n = len(frame)
    terms = {name: list_terms(frame, name, model, max_weight) for name, model in lists.items()}
    sums = {
        name: {part: np.empty(samples) for part in ("listed", "ips", "weight", "dr")}
        for name in lists
    }
    block = max(1, BOOTSTRAP_CELLS // max(n, 1))
    for start in range(0, samples, block):
        stop = min(start + block, samples)
        if n:
            draws = rng.multinomial(n, np.full(n, 1.0 / n), size=stop - start).astype(np.float64)
        else:
            draws = np.zeros((stop - start, 0))
        for name, t in terms.items():
            for part in ("listed", "ips", "weight", "dr"):
                sums[name][part][start:stop] = draws @ np.nan_to_num(getattr(t, part))
    tail = (1.0 - level) / 2.0 * 100.0
    rows = []
    need = frame[IN_NEED].to_numpy(dtype=np.float64) if IN_NEED in frame.columns else None
    for name, model in lists.items():
        point = estimate(frame, name, model, max_weight)
        s = sums[name]
        boot = {
            "ips": _ratios(s["ips"], s["listed"]),
            "snips": _ratios(s["ips"], s["weight"]),
            "dr": _ratios(s["dr"], s["listed"]) if model is not None else None,
        }
        row: dict[str, float | str] = {"model": name, **point}
        for est, values in boot.items():
            ok = values is not None and np.isfinite(values).any()
            row[f"{est}_low"] = float(np.nanpercentile(values, tail)) if ok else np.nan
            row[f"{est}_high"] = float(np.nanpercentile(values, 100 - tail)) if ok else np.nan
        if need is not None:
            on = terms[name].listed
            row["truth"] = float(_ratios((on * need).sum(), on.sum()))
        rows.append(row)
    return pd.DataFrame(rows)


def backtest_estimates(
    rounds: Iterable[tuple[str, pd.DataFrame]],
    lists: dict[str, str | None],
    *,
    samples: int,
    seed: int,
    level: float = 0.90,
    max_weight: float | None = None,
) -> pd.DataFrame:
    """:func:`bootstrap_round` for every test round (``(round label, frame)``), one seeded
    stream over the rounds in order. Adds ``round`` and, when the frame's attrs hold the rates
    at which visits found need among the truly in need and not in need (``label_rates``), the
    truth on the labels' scale (``truth_label_scale``: what a perfect estimate of the share of
    the list whose visit would find need comes to, see docs/offpolicy.md)."""
    rng = np.random.default_rng(seed)
    parts = []
    for label, frame in rounds:
        table = bootstrap_round(
            frame, lists, samples=samples, seed=rng, level=level, max_weight=max_weight
        )
        table.insert(0, "round", label)
        rates = frame.attrs.get("label_rates")
        if "truth" in table.columns and rates is not None:
            hit, false = rates
            table["truth_label_scale"] = hit * table["truth"] + false * (1.0 - table["truth"])
        parts.append(table)
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def validation(estimates: pd.DataFrame, target: str = "truth") -> pd.DataFrame:
    """How close each estimator came to ``target`` over the rounds and lists: mean absolute
    error, mean error (bias), the share of intervals that hold the target (coverage), the
    mean interval width and the number of (round, list) pairs."""
    rows = []
    if estimates.empty or target not in estimates.columns:
        return pd.DataFrame(columns=["estimator", "target", "mae", "bias", "coverage", "n"])
    for est in ESTIMATORS:
        ok = estimates[est].notna() & estimates[target].notna()
        e = estimates[ok]
        if e.empty:
            continue
        error = e[est] - e[target]
        inside = (e[f"{est}_low"] <= e[target]) & (e[target] <= e[f"{est}_high"])
        rows.append(
            {
                "estimator": est,
                "target": target,
                "mae": float(error.abs().mean()),
                "bias": float(error.mean()),
                "coverage": float(inside.mean()),
                "width": float((e[f"{est}_high"] - e[f"{est}_low"]).mean()),
                "n": len(e),
            }
        )
    return pd.DataFrame(rows)


def as_metrics(estimates: pd.DataFrame) -> pd.DataFrame:
    """The estimates as backtest metric columns (one row per round and model)."""
    out = pd.DataFrame({"round": estimates["round"], "model": estimates["model"]})
    for est in ESTIMATORS:
        name = metric_name(est)
        out[name] = estimates[est]
        out[f"{name}_low"] = estimates[f"{est}_low"]
        out[f"{name}_high"] = estimates[f"{est}_high"]
    out["offpolicy_support_share"] = estimates["support_share"]
    out["offpolicy_labelled_on_list"] = estimates["labelled_on_list"]
    if "truth_label_scale" in estimates.columns:  # what the estimators estimate (synthetic data)
        out["offpolicy_truth_label_scale"] = estimates["truth_label_scale"]
    return out
