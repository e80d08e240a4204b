"""How a visit ends, given the hidden state of a synthetic household (the visit outcome model).

Shared by the generator's past outreach rounds (:mod:`pipeline.generate.simulate`) and the
simulated field work of ``outreach simulate`` (:mod:`pipeline.simulate.fieldwork`), so both draw
outcomes the same way. Pure: the uniforms come in as :class:`VisitDraws`, so the generator draws
them from each past round's own stream (:meth:`VisitDraws.draw`) and the field work from a hash
per household (common random numbers across policies).

The model (docs/synthetic_data.md, "Past outreach rounds"):

- unreachable with probability 0.07, 0.16 for a hard-to-reach household (one person renting
  monthly or in other housing); the next 0.04 of the same uniform stay in progress;
- otherwise, in need: support with probability 0.88 (public support with probability 0.62 for a
  low-income household, income band under 50% of the median, else 0.35; private support
  otherwise), closed with no need found 0.12; not in need: closed with no need found 0.86, else
  support (public 0.3, private 0.7);
- resolved 0, 1, 2 or 3 months after the round (probabilities 0.3, 0.45, 0.2, 0.05); an
  unreachable household the month after; in progress: not resolved (:data:`NOT_RESOLVED`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from pipeline.vocabulary import INCOME_BANDS, NEED_TYPES, TENURES

if TYPE_CHECKING:
    from pipeline.catalogue import Service

# Outcome indexes of :func:`visit_outcomes`, codes of configs/outcomes.yaml.
OUTCOME_CODES: tuple[str, ...] = (
    "public_support",
    "private_support",
    "closed_no_need",
    "unreachable",
    "in_progress",
)
PUBLIC, PRIVATE, CLOSED_NO_NEED, UNREACHABLE, IN_PROGRESS = range(len(OUTCOME_CODES))
LINKED_CODES: tuple[str, ...] = (OUTCOME_CODES[PUBLIC], OUTCOME_CODES[PRIVATE])  # support found
NOT_RESOLVED = -1  # the resolved month of an outcome still in progress

UNREACHABLE_P = 0.07
UNREACHABLE_P_HARD = 0.16
IN_PROGRESS_BAND = 0.04
SUPPORT_IF_NEED = 0.88
CLOSED_IF_NO_NEED = 0.86
PUBLIC_SHARE = 0.35
PUBLIC_SHARE_LOW_INCOME = 0.62
PUBLIC_SHARE_NO_NEED = 0.3
LAG_PROBABILITIES: tuple[float, ...] = (0.3, 0.45, 0.2, 0.05)  # months after the round: 0..3
MAX_LAG = len(LAG_PROBABILITIES) - 1
UNREACHABLE_LAG = 1

# Hard to reach: a one-person household renting monthly or in other housing. Low income: income
# band under 30% or 30-50% of the standard median income.
HARD_TO_REACH_TENURES: tuple[str, ...] = ("monthly_rent", "other")
LOW_INCOME_BANDS: tuple[str, ...] = ("under_30", "30_50")
DRAWS = 5  # uniforms per household: u, v, w_public, w_private, w_lag


@dataclass(frozen=True)
class VisitDraws:
    """The uniforms of one visit per household, each an array of the same length.

    u: reachability and in progress; v: support or not; w_public: public vs private support of a
    household in need; w_private: public vs private support of one not in need (named for the
    generator's second support draw); w_lag: the months until the outcome resolves.
    """

    u: np.ndarray
    v: np.ndarray
    w_public: np.ndarray
    w_private: np.ndarray
    w_lag: np.ndarray

    @classmethod
    def draw(cls, rng: np.random.Generator, size: int) -> VisitDraws:
        """Draw from ``rng`` in a fixed order: u, v, the support draw of households in need,
        that of households not in need, then the lag."""
        u = rng.random(size)
        v = rng.random(size)
        w_public = rng.random(size)
        w_private = rng.random(size)
        w_lag = rng.random(size)
        return cls(u, v, w_public, w_private, w_lag)

    @classmethod
    def from_uniforms(cls, uniforms: np.ndarray) -> VisitDraws:
        """From an array of shape (n, :data:`DRAWS`) of uniforms in [0, 1), columns in field
        order."""
        uniforms = np.asarray(uniforms, dtype=np.float64)
        if uniforms.ndim != 2 or uniforms.shape[1] < DRAWS:
            raise ValueError(f"expected uniforms of shape (n, {DRAWS}), got {uniforms.shape}")
        return cls(*(uniforms[:, i] for i in range(DRAWS)))

    def __len__(self) -> int:
        return len(self.u)


def _levels(values: np.ndarray, levels: tuple[str, ...], wanted: tuple[str, ...]) -> np.ndarray:
    """Whether each value is one of ``wanted``: integer values are indexes into ``levels``,
    text values the levels themselves (missing values are not)."""
    array = np.asarray(values)
    if np.issubdtype(array.dtype, np.integer):
        return np.isin(array, [levels.index(w) for w in wanted])
    return np.isin(array.astype(object), list(wanted))


def hard_to_reach(tenure: np.ndarray, size: np.ndarray) -> np.ndarray:
    """One-person households renting monthly or in other housing. ``tenure``: indexes into
    :data:`pipeline.vocabulary.TENURES` (the generator's) or their text (the raw table's)."""
    return _levels(tenure, TENURES, HARD_TO_REACH_TENURES) & (np.asarray(size) == 1)


def low_income(income: np.ndarray) -> np.ndarray:
    """Income band under 50% of the standard median income. ``income``: indexes into
    :data:`pipeline.vocabulary.INCOME_BANDS` or their text."""
    return _levels(income, INCOME_BANDS, LOW_INCOME_BANDS)


def visit_outcomes(
    need: np.ndarray,
    hard_to_reach: np.ndarray,
    low_income: np.ndarray,
    round_month: np.ndarray | int,
    draws: VisitDraws,
) -> tuple[np.ndarray, np.ndarray]:
    """Outcome indexes (into :data:`OUTCOME_CODES`) and resolved months of visits; pure.

    ``need``, ``hard_to_reach``, ``low_income``: booleans per household; ``round_month``: the
    month index of the round (one, or one per household). The resolved month is the round month
    plus the drawn lag (unreachable: the month after), :data:`NOT_RESOLVED` for in progress.
    Cutting at the end of a data window is the caller's.
    """
    need = np.asarray(need, dtype=bool)
    unreachable_p = np.where(
        np.asarray(hard_to_reach, dtype=bool), UNREACHABLE_P_HARD, UNREACHABLE_P
    )
    public_share = np.where(
        np.asarray(low_income, dtype=bool), PUBLIC_SHARE_LOW_INCOME, PUBLIC_SHARE
    )
    u, v = draws.u, draws.v
    outcome = np.where(
        u < unreachable_p,
        UNREACHABLE,
        np.where(
            u < unreachable_p + IN_PROGRESS_BAND,
            IN_PROGRESS,
            np.where(
                need,
                np.where(
                    v < SUPPORT_IF_NEED,
                    np.where(draws.w_public < public_share, PUBLIC, PRIVATE),
                    CLOSED_NO_NEED,
                ),
                np.where(
                    v < CLOSED_IF_NO_NEED,
                    CLOSED_NO_NEED,
                    np.where(draws.w_private < PUBLIC_SHARE_NO_NEED, PUBLIC, PRIVATE),
                ),
            ),
        ),
    )
    lag = np.searchsorted(np.cumsum(list(LAG_PROBABILITIES)), draws.w_lag, side="right")
    lag = np.minimum(lag, MAX_LAG)
    round_month = np.asarray(round_month)
    resolved = np.where(outcome == UNREACHABLE, round_month + UNREACHABLE_LAG, round_month + lag)
    resolved = np.where(outcome == IN_PROGRESS, NOT_RESOLVED, resolved)
    return outcome, resolved


# --- the service a linked visit records ---------------------------------------------------------

MATCHED_SERVICE = 0.85  # a link serves the household's own kind of need this often


@dataclass(frozen=True)
class HouseholdFacts:
    """What a service's eligibility looks at, per visited household (arrays of one length):
    income band index (:data:`pipeline.vocabulary.INCOME_BANDS`), head's age, a member with a
    disability, children under 18."""

    income: np.ndarray
    head_age: np.ndarray
    disability: np.ndarray
    minors: np.ndarray


def eligible_matrix(services: Sequence[Service], facts: HouseholdFacts) -> np.ndarray:
    """Households × services: whether the household may be offered the service; pure."""
    n = len(facts.income)
    columns = []
    for service in services:
        rule = service.eligible
        ok = np.ones(n, dtype=bool)
        if rule.income_bands is not None:
            ok &= np.isin(facts.income, [INCOME_BANDS.index(b) for b in rule.income_bands])
        if rule.min_head_age is not None:
            ok &= np.asarray(facts.head_age) >= rule.min_head_age
        if rule.disability:
            ok &= np.asarray(facts.disability, dtype=bool)
        if rule.minors:
            ok &= np.asarray(facts.minors) > 0
        columns.append(ok)
    return np.stack(columns, axis=1) if columns else np.zeros((n, 0), dtype=bool)


def linked_services(
    outcome: np.ndarray,
    need_type: np.ndarray,
    facts: HouseholdFacts,
    services: Sequence[Service],
    u_match: np.ndarray,
    u_pick: np.ndarray,
) -> np.ndarray:
    """The service each visit linked (index into ``services``; -1 when it linked none); pure.

    A visit linked to support (public or private) records one service of that outcome the
    household is eligible for: with probability :data:`MATCHED_SERVICE` one that serves its kind
    of need (``need_type``: index into :data:`pipeline.vocabulary.NEED_TYPES`) when there is
    one, else any; drawn uniformly among the candidates with ``u_pick``. No eligible service of
    that outcome: -1 (support outside the catalogue)."""
    outcome = np.asarray(outcome)
    eligible = eligible_matrix(services, facts)
    kinds = np.array([OUTCOME_CODES.index(s.outcome) for s in services])
    serves = np.array(
        [[need in s.need_types for s in services] for need in NEED_TYPES], dtype=bool
    )  # need types × services
    possible = eligible & (kinds[None, :] == outcome[:, None])
    matched = possible & serves[np.asarray(need_type, dtype=np.int64)]
    use_matched = matched.any(axis=1) & (np.asarray(u_match) < MATCHED_SERVICE)
    pool = np.where(use_matched[:, None], matched, possible)
    count = pool.sum(axis=1)
    k = np.minimum((np.asarray(u_pick) * count).astype(np.int64), np.maximum(count - 1, 0))
    chosen = np.argmax(pool.cumsum(axis=1) > k[:, None], axis=1)
    linked_outcome = np.isin(outcome, [PUBLIC, PRIVATE]) & (count > 0)
    return np.where(linked_outcome, chosen, -1).astype(np.int64)
