"""Rank and cut one round per 읍면동: visit, phone and monitor tiers, with random exploration.

Pure functions over frames; nothing here reads files or talks to MLflow.

Rules (docs/scoring.md):

- within a 읍면동, eligible households are ranked by score, highest first; equal scores are
  ordered by the administrative household key (ascending), so a rank never depends on row order;
- the visit tier holds ``capacity`` households: the best ``capacity - n_explore`` by rank, plus
  ``n_explore = round(capacity * exploration_share)`` drawn uniformly at random from a pool of
  eligible households that the model did not already place in the visit tier: those with a
  recent crisis signal (``signal``), or those at the **margin** (``margin``: the next
  ``ceil(capacity * exploration_margin)`` by the model's rank, and those the rule would list:
  the 읍면동's top ``capacity`` by the rule's count of crisis types, at least one, ties by key).
  The draw is seeded by (seed, round, 읍면동 code) and made over the pool in key order,
  so it does not depend on partitioning or row order. Each explored household records its
  selection probability ``n_explore / pool size``; households placed by the model record 1;
- carried-over cases take their tier's slots first; the exploration's slots are kept beside them
  (``reserve_exploration``: the list is then longer than the capacity by at most ``n_explore``)
  or are a share of the slots they leave (the capacity replaced by those slots above);
- the phone tier holds the next ``ceil(capacity * phone_band)`` households by rank;
- every other eligible household is monitored.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from pipeline.vocabulary import (
    CARRIED_OVER,
    EXPLORATION,
    LIST_ORDER,
    MODEL_SCORE,
    MONITOR,
    PHONE,
    TIERS,
    VISIT,
)

CARRIED = "carried_tier"  # the column of cut_round's frame naming a carried household's tier
RULE_SCORE = "rule_score"  # the column of cut_round's frame with the rule's count (margin pool)
__all__ = ["EXPLORATION", "MODEL_SCORE", "MONITOR", "PHONE", "TIERS", "VISIT", "cut_round"]


def exploration_count(capacity: int, share: float) -> int:
    """Explored slots of a 읍면동 (half rounds up), never the whole visit tier."""
    if capacity <= 1 or share <= 0:
        return 0
    return min(capacity - 1, math.floor(capacity * share + 0.5))


def rank_within(scores: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """1-based ranks by score descending, ties by key ascending."""
    order = np.lexsort((keys, -scores))
    ranks = np.empty(len(scores), dtype=np.int64)
    ranks[order] = np.arange(1, len(scores) + 1)
    return ranks


def rule_listed(rule_scores: np.ndarray, keys: np.ndarray, capacity: int) -> np.ndarray:
    """Whether the rule would list each household of a 읍면동: the top ``capacity`` by the rule's
    score (at least 1), ties by key ascending (the rule's list of the backtests)."""
    rule_scores = np.asarray(rule_scores, dtype=np.float64)
    listed = np.zeros(len(rule_scores), dtype=bool)
    ranks = rank_within(np.nan_to_num(rule_scores, nan=0.0), keys)
    listed[(ranks <= capacity) & (rule_scores >= 1)] = True
    return listed


def _emd_seed(seed: int, as_of: int, emd_code: str) -> np.random.Generator:
    digits = int(emd_code) if emd_code.isdigit() else sum(map(ord, emd_code))
    return np.random.default_rng([seed, as_of, digits])


def cut_emd(
    scores: np.ndarray,
    keys: np.ndarray,
    has_signal: np.ndarray,
    capacity: int,
    *,
    phone_band: float,
    exploration_share: float,
    seed: int,
    as_of: int,
    emd_code: str,
    carried: np.ndarray | None = None,
    exploration_margin: float | None = None,
    rule_scores: np.ndarray | None = None,
    reserve_exploration: bool = False,
) -> pd.DataFrame:
    """Tiers of one 읍면동's eligible households (arrays in any order, same length).

    ``exploration_margin``: None draws the exploration from the households with a recent signal
    (``has_signal``); a number draws it from the margin (see the module's rules), with
    ``rule_scores`` the rule's count per household.

    ``carried``: per household, the tier an open case of the previous round carries it into
    (``visit`` or ``phone``; None when not carried). Carried households take their tier's
    slots first; the model and the exploration draw fill what is left (none when carried cases
    fill the tier: the list is then longer than the capacity, never shorter of a carried case).
    ``reserve_exploration``: the exploration's share is of the capacity and its slots are kept
    whatever the carried cases take (the model fills what is left after both; the list is longer
    than the capacity by at most the exploration's slots when carried cases fill the rest), and
    the margin is counted from the capacity too.

    Returns a frame aligned with the inputs: model_rank, tier, selection_reason,
    selection_probability.
    """
    n = len(scores)
    keys = np.asarray(keys)
    if keys.dtype.kind not in "iu":  # integer keys are key ranks already (see cut_round)
        keys = keys.astype(str)
    ranks = rank_within(np.asarray(scores, dtype=np.float64), keys)
    capacity = max(0, int(capacity))
    tier = np.full(n, MONITOR, dtype=object)
    reason = np.full(n, MODEL_SCORE, dtype=object)
    probability = np.ones(n, dtype=np.float64)
    carried_visits = carried_phones = 0
    free = np.ones(n, dtype=bool)
    if carried is not None:
        carried = np.asarray(carried, dtype=object)
        for carried_tier in (VISIT, PHONE):
            mask = carried == carried_tier
            tier[mask] = carried_tier
            reason[mask] = CARRIED_OVER
            free &= ~mask
        carried_visits = int((carried == VISIT).sum())
        carried_phones = int((carried == PHONE).sum())
    visit_slots = max(0, capacity - carried_visits)
    if reserve_exploration:
        n_explore = exploration_count(capacity, exploration_share)
        model_slots = max(0, visit_slots - n_explore)
        margin_base = capacity
    else:
        n_explore = exploration_count(visit_slots, exploration_share)
        model_slots = visit_slots - n_explore
        margin_base = visit_slots
    # the model's order among the households not carried (all of them when none is)
    free_rank = np.zeros(n, dtype=np.int64)
    free_rows = np.flatnonzero(free)
    free_rank[free_rows[np.argsort(ranks[free_rows], kind="stable")]] = np.arange(
        1, len(free_rows) + 1
    )
    by_model = free & (free_rank <= model_slots)
    tier[by_model] = VISIT
    if exploration_margin is None:
        explorable = np.asarray(has_signal, dtype=bool)
    else:
        band = math.ceil(margin_base * exploration_margin)
        explorable = free_rank <= model_slots + band
        if rule_scores is not None:
            explorable |= rule_listed(rule_scores, keys, capacity)
    pool = np.flatnonzero(free & ~by_model & explorable)
    drawn = np.array([], dtype=np.int64)
    if n_explore and len(pool):
        pool = pool[np.argsort(keys[pool], kind="stable")]
        take = min(n_explore, len(pool))
        rng = _emd_seed(seed, as_of, emd_code)
        drawn = np.sort(rng.choice(pool, size=take, replace=False))
        tier[drawn] = VISIT
        reason[drawn] = EXPLORATION
        probability[drawn] = take / len(pool)
    # The phone band follows the model's order among those not already visited.
    phone_slots = max(0, math.ceil(capacity * phone_band) - carried_phones)
    rest = np.flatnonzero(tier == MONITOR)
    if phone_slots and len(rest):
        rest = rest[np.argsort(ranks[rest], kind="stable")][:phone_slots]
        tier[rest] = PHONE
    return pd.DataFrame(
        {
            "model_rank": ranks.astype(np.int32),
            "tier": tier,
            "selection_reason": reason,
            "selection_probability": probability,
        }
    )


def cut_round(
    frame: pd.DataFrame,
    capacity: pd.Series,
    *,
    phone_band: float,
    exploration_share: float,
    seed: int,
    as_of: int,
    exploration_margin: float | None = None,
    reserve_exploration: bool = False,
) -> pd.DataFrame:
    """Tiers for every 읍면동 in ``frame`` (columns household_key, emd_code, score, has_signal,
    ``list_order`` when the model's list policy orders the list: then it ranks, not score,
    ``carried_tier`` when open cases are carried in, and ``rule_score`` for an exploration drawn
    at the margin: see :func:`cut_emd`).

    ``capacity`` is indexed by 읍면동 code; a 읍면동 missing from it has no capacity (everyone is
    monitored) and is reported by the caller. Returns ``frame`` with model_rank, tier,
    selection_reason, selection_probability and list_rank (1.. within the 읍면동's list of visit
    and phone households: visit first, then by score and key; null when monitored).
    """
    # Keys replaced by their rank once (a C sort of fixed-width text), so that every later sort
    # compares integers, not Python strings.
    key_text = frame["household_key"].to_numpy(dtype=str)
    key_rank = np.empty(len(frame), dtype=np.int64)
    key_rank[np.argsort(key_text, kind="stable")] = np.arange(len(frame))
    emd_code, emd_levels = pd.factorize(frame["emd_code"].astype(str), sort=True)
    # the list order: the score, or the model's list policy's order when it has one
    scores = frame[LIST_ORDER if LIST_ORDER in frame.columns else "score"].to_numpy(
        dtype=np.float64
    )
    signal = frame["has_signal"].to_numpy(dtype=bool)
    carried = frame[CARRIED].to_numpy(dtype=object) if CARRIED in frame.columns else None
    rule = frame[RULE_SCORE].to_numpy(dtype=np.float64) if RULE_SCORE in frame.columns else None
    parts = []
    for index, emd in enumerate(emd_levels):
        rows = np.flatnonzero(emd_code == index)
        cut = cut_emd(
            scores[rows],
            key_rank[rows],
            signal[rows],
            int(capacity.get(emd, 0)),
            phone_band=phone_band,
            exploration_share=exploration_share,
            seed=seed,
            as_of=as_of,
            emd_code=str(emd),
            carried=None if carried is None else carried[rows],
            exploration_margin=exploration_margin,
            rule_scores=None if rule is None else rule[rows],
            reserve_exploration=reserve_exploration,
        )
        cut.index = frame.index[rows]
        parts.append(cut)
    tiers = pd.concat(parts) if parts else pd.DataFrame(index=frame.index)
    out = frame.join(tiers)
    listed = out["tier"] != MONITOR
    tier_order = out["tier"].map({VISIT: 0, PHONE: 1, MONITOR: 2}).to_numpy()
    order = np.lexsort((key_rank, -scores, tier_order, emd_code))
    ordered = out.iloc[order]
    position = ordered.groupby("emd_code", sort=False, observed=True).cumcount() + 1
    list_rank = pd.Series(position.to_numpy(), index=ordered.index).reindex(out.index)
    ranks = np.where(listed, list_rank.fillna(0).to_numpy(), 0).astype(np.int32)
    out["list_rank"] = pd.Series(ranks, index=out.index, dtype="Int32").mask(~listed)
    return out
