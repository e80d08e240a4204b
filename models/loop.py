"""Measures of the living loop (``outreach simulate``): per round and cumulative, per policy.

Every policy runs on its own copy of the same synthetic world (common random numbers); the
policy ``none`` contacts no one and is the counterfactual world. A round is named by its month
``R`` (``year*12 + month-1``); its months are ``R`` and ``R+1``. Inputs (:class:`PolicyRun`,
:class:`LoopWorld`) are plain frames; :func:`policy_arrays` turns one policy's frames into
household × round matrices once, and every measure below is a vectorised function of them.

Words used below:

- *in need at round R*: in need at month ``R`` or ``R+1`` (the label of the project,
  :func:`pipeline.datasets.truth.truth_for_round`) in the policy world before the round's own
  visits: :attr:`PolicyRun.untreated` where it has the month (the advance with the round's
  contacts records it), else the policy world's truth. A list is judged on the need it found,
  not on the need its visits then relieved; hardship-months and spells of need (3, 4) are those
  of the policy world.
- *visit list*: the households a policy listed in the visit tier at the round (the capacity).
- *listed*: listed in any tier (visit or phone).
- *reached at round R*: at least one contact with ``reached`` true whose ``contact_month`` falls
  in the round (a contact belongs to the latest round whose month is not after it; contacts
  before the first round are ignored).
- *household's 읍면동*: the ``emd_code`` of :attr:`LoopWorld.households`.

Measures (the per-round value; the cumulative value at round R is over rounds up to R):

1. ``need_found``: households on the visit list in need. ``need_found_reached``: of those, the
   ones reached at the round. ``visit_listed``: size of the visit list. Cumulative: sums over
   rounds (household-rounds).
2. ``precision``: ``need_found / visit_listed`` (truth precision at capacity). ``recall``:
   ``need_found /`` households in need. Cumulative: pooled counts.
3. ``hardship_months_averted``: in-need household-months of the ``none`` world minus those of the
   policy world over the round's months (``R``, ``R+1``); ``reached_contacts``: contacts with
   ``reached`` true at the round (rows, a household reached twice counts twice);
   ``hardship_averted_per_1000_contacts``: ``1000 × averted / reached_contacts`` (NaN without
   contacts). Cumulative: months from the first round's ``R`` to this round's ``R+1``. A
   hardship-month is an in-need household-month (the truth's ``hardship`` level is not used).
4. ``median_months_to_contact``: for each spell of need (a run of consecutive in-need months of
   a household in the policy world) that was reached, the first reached contact in the spell;
   months from the spell's first month (onset) to that contact. Median over the first contacts
   made at the round (cumulative: up to the round). A spell in need since the first month of
   the truth is left-censored (its onset is that month).
5. ``never_contacted_3_rounds``: households in need at each of the last three rounds (this one
   and the two before) and reached at none of them (NaN for the first two rounds);
   ``never_contacted_3_rounds_share``: over the households in need at the round. Cumulative:
   distinct households that were so at any round to date; the share is the mean of the
   per-round shares to date.
6. ``repeat_listed_without_contact``: listed at this round and at the previous one without being
   reached at the previous one; ``repeat_listed_without_contact_share``: over this round's
   listed. NaN at the first round. Cumulative: sum of counts; share pooled over rounds after
   the first.
7. ``list_overlap``: per 읍면동, the share of this round's visit list that was on the previous
   round's visit list; ``list_jaccard``: per 읍면동, intersection over union of the two visit
   lists. Each the mean over 읍면동 (overlap: those with a list this round; Jaccard: those with
   a list in either round). NaN at the first round. Cumulative: the mean of the per-round
   values to date. ``new_to_list_share``: share of this round's visit list never on an earlier
   visit list of the loop (NaN at the first round); cumulative: distinct households ever on the
   visit list over visit-list entries to date (1 when no household is ever listed twice).
8. Fairness (:func:`fairness_over_time`): per attribute and group, recall of need (visit list in
   need / in need) and precision (visit list in need / visit list), each divided by the
   reference group's (:attr:`LoopWorld.references`, else the group with most households).
   A group counts when it has at least :attr:`LoopWorld.min_group_size` households in need
   (recall) or on the visit list (precision), the reference included. Per attribute:
   ``recall_ratio_min:<attribute>``, ``recall_ratio_max:<attribute>``, and the same for
   ``precision_ratio``; ``worst_recall_ratio`` and ``worst_precision_ratio``: over attributes,
   the smallest of ``min`` and ``1 / max`` (1 is parity; 0.5 is a factor of two either way).
   Cumulative: counts pooled over rounds.
9. ``calibration_gap``: mean expected probability (calibrated score) of the visit list minus its
   precision; NaN when the policy gives no expected probability. Cumulative: pooled.
10. ``exploration_share``: share of the listed households chosen at random
    (``selection_reason`` :data:`pipeline.vocabulary.EXPLORATION`). Cumulative: pooled.

Months (round, contact_month, truth month) may be month integers or ``YYYY-MM`` strings.

Comparisons: :func:`per_emd_totals` and :func:`paired_difference` (a cluster bootstrap over
읍면동, paired across policies), :func:`policy_table` (one row per policy, with differences
against a reference policy) and :func:`broken_loop_signals` (the trends that show a loop
degrading).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import pandas as pd

from pipeline.months import parse_month_series
from pipeline.vocabulary import EMD, EXPLORATION, KEY, VISIT

ROUND = "round"
MONTH = "month"
IN_NEED = "in_need"
TIER = "tier"
EXPECTED = "expected_probability"
SELECTION_REASON = "selection_reason"
CONTACT_MONTH = "contact_month"
REACHED = "reached"
POLICY = "policy"
MEASURE = "measure"
VALUE = "value"
NONE_POLICY = "none"

NEED_FOUND = "need_found"
NEED_FOUND_REACHED = "need_found_reached"
VISIT_LISTED = "visit_listed"
PRECISION = "precision"
RECALL = "recall"
HARDSHIP_AVERTED = "hardship_months_averted"
REACHED_CONTACTS = "reached_contacts"
REACHED_HOUSEHOLDS = "reached_households"
AVERTED_PER_1000 = "hardship_averted_per_1000_contacts"
MONTHS_TO_CONTACT = "median_months_to_contact"
NEVER_CONTACTED = "never_contacted_3_rounds"
NEVER_CONTACTED_SHARE = "never_contacted_3_rounds_share"
REPEAT_LISTED = "repeat_listed_without_contact"
REPEAT_SHARE = "repeat_listed_without_contact_share"
OVERLAP = "list_overlap"
JACCARD = "list_jaccard"
NEW_TO_LIST = "new_to_list_share"
EXPLORATION_SHARE = "exploration_share"
CALIBRATION_GAP = "calibration_gap"
WORST_RECALL_RATIO = "worst_recall_ratio"
WORST_PRECISION_RATIO = "worst_precision_ratio"
NEVER_WINDOW = 3  # rounds in need without a contact that count as "never contacted"


@dataclass(frozen=True, eq=False)
class LoopWorld:
    """What all policies share.

    ``rounds``: the round months, ascending. ``households``: one row per household, columns
    household_key, emd_code and the fairness attributes (plain categorical columns, e.g.
    head_age_band, tenure, single_person, disability, urban, sigungu). ``counterfactual``: the
    truth of the ``none`` world, columns household_key, month (int), in_need (bool), hardship.
    ``attributes``: the fairness attributes (columns of ``households``); ``references``: the
    reference group per attribute (default: its largest group).
    """

    rounds: tuple[int, ...]
    households: pd.DataFrame
    counterfactual: pd.DataFrame
    attributes: tuple[str, ...] = ()
    references: Mapping[str, str] = field(default_factory=dict)
    min_group_size: int = 30

    def __post_init__(self) -> None:
        rounds = np.asarray(self.rounds, dtype=np.int64)
        if len(rounds) == 0 or np.any(np.diff(rounds) <= 0):
            raise ValueError("rounds must be a non-empty ascending sequence of months")
        if self.households[KEY].duplicated().any():
            raise ValueError("households has duplicate household keys")

    @cached_property
    def index(self) -> pd.Index:
        """Household keys in the order of every matrix's rows."""
        return pd.Index(self.households[KEY].astype(str).to_numpy())

    @cached_property
    def first_month(self) -> int:
        """The first month of the matrices: the truth's first, or the first round's."""
        months = month_indexes(self.counterfactual[MONTH])
        return int(min(months.min(), self.rounds[0])) if len(months) else int(self.rounds[0])

    @cached_property
    def width(self) -> int:
        """Months in the matrices, up to the truth's last or the last round's ``R+1``."""
        months = month_indexes(self.counterfactual[MONTH])
        last = int(max(months.max(), self.rounds[-1] + 1)) if len(months) else self.rounds[-1] + 1
        return last - self.first_month + 1

    @cached_property
    def emd(self) -> tuple[np.ndarray, pd.Index]:
        """Each household's 읍면동 as a code, and the 읍면동 of the codes."""
        codes, uniques = pd.factorize(self.households[EMD].astype(str), sort=True)
        return codes, pd.Index(uniques, name=EMD)

    @cached_property
    def none_need(self) -> np.ndarray:
        """In need per household and month in the ``none`` world (households × months)."""
        return need_matrix(self.counterfactual, self)


@dataclass(frozen=True, eq=False)
class PolicyRun:
    """One policy's loop.

    ``listed``: one row per household listed at a round; columns round (the round month),
    household_key, tier ("visit" or "phone"), and optionally emd_code, sigungu_code, score,
    expected_probability (the calibrated score; NaN or absent for policies without a model),
    selection_reason. ``contacts``: one row per contact attempt; columns household_key,
    contact_month (int), reached (bool), and optionally outcome_code, linked. ``truth``: the
    policy world's truth, columns household_key, month, in_need (bool), hardship.
    ``untreated``: household_key, month, in_need: the need of months an advance added had its
    contacts not been made (None or empty: the truth's).
    """

    policy: str
    listed: pd.DataFrame
    contacts: pd.DataFrame
    truth: pd.DataFrame
    untreated: pd.DataFrame | None = None


def _rows(keys: pd.Series, world: LoopWorld, what: str) -> np.ndarray:
    """Matrix rows of ``keys``; a key the world does not know is an error."""
    # the distinct keys only (a truth table repeats each key once per month); a missing key has
    # code -1, which picks the -1 appended to the look-up table
    codes, distinct = pd.factorize(keys)
    found = world.index.get_indexer(pd.Series(distinct, dtype=object).astype(str).to_numpy())
    rows = np.append(found, -1)[codes]
    if np.any(rows < 0):
        raise ValueError(f"{what} holds households that are not in the world's households")
    return rows


def month_indexes(values: pd.Series) -> np.ndarray:
    """Month indexes of a column of month integers or ``YYYY-MM`` strings (a string that is
    not a month is an error)."""
    if pd.api.types.is_numeric_dtype(values.dtype):
        return values.to_numpy(dtype=np.int64)
    parsed = parse_month_series(values)
    if parsed.isna().any():
        raise ValueError("a month column holds values that are not months")
    return parsed.to_numpy(dtype=np.int64)


def need_matrix(truth: pd.DataFrame, world: LoopWorld) -> np.ndarray:
    """In need per household (rows of ``world.index``) and month (from ``world.first_month``);
    a household-month the truth lacks is not in need."""
    matrix = np.zeros((len(world.index), world.width), dtype=bool)
    if len(truth) == 0:
        return matrix
    rows = _rows(truth[KEY], world, "truth")
    months = month_indexes(truth[MONTH]) - world.first_month
    inside = (months >= 0) & (months < world.width)
    need = truth[IN_NEED].to_numpy(dtype=bool)
    matrix[rows[inside], months[inside]] = need[inside]
    return matrix


def spell_onsets(need: np.ndarray, first_month: int) -> np.ndarray:
    """Per household and month, the first month of the spell of need it belongs to (-1 where
    not in need). A loop over months, vectorised over households."""
    onset = np.full(need.shape, -1, dtype=np.int64)
    for j in range(need.shape[1]):
        if j == 0:
            onset[:, 0] = np.where(need[:, 0], first_month, -1)
        else:
            carried = np.where(need[:, j - 1], onset[:, j - 1], first_month + j)
            onset[:, j] = np.where(need[:, j], carried, -1)
    return onset


@dataclass(frozen=True, eq=False)
class PolicyArrays:
    """One policy's loop as household × round matrices (rows: ``world.index``)."""

    policy: str
    world: LoopWorld
    need: np.ndarray  # households × months, policy world
    in_need: np.ndarray  # households × rounds: in need at R or R+1
    visit: np.ndarray  # households × rounds: on the visit list
    listed: np.ndarray  # households × rounds: on the list (any tier)
    reached: np.ndarray  # households × rounds: reached at the round
    reached_contacts: np.ndarray  # per round: reached contact rows
    expected_sum: np.ndarray  # per round: sum of expected probabilities of the visit list
    expected_count: np.ndarray  # per round: visit-list rows with an expected probability
    explored: np.ndarray  # per round: listed households chosen at random
    first_contacts: pd.DataFrame  # per reached spell: round (index), months (to contact)

    @property
    def rounds(self) -> np.ndarray:
        return np.asarray(self.world.rounds, dtype=np.int64)


def _round_of(months: np.ndarray, rounds: np.ndarray) -> np.ndarray:
    """Index of the latest round whose month is not after each month (-1: before the first)."""
    return np.searchsorted(rounds, months, side="right") - 1


def policy_arrays(run: PolicyRun, world: LoopWorld) -> PolicyArrays:
    """Prepare one policy's matrices (the input of every measure)."""
    rounds = np.asarray(world.rounds, dtype=np.int64)
    n_households, n_rounds = len(world.index), len(rounds)
    need = need_matrix(run.truth, world)
    at = rounds - world.first_month
    round_need = need
    if run.untreated is not None and len(run.untreated):
        round_need = need.copy()
        rows = _rows(run.untreated[KEY], world, "untreated")
        months = month_indexes(run.untreated[MONTH]) - world.first_month
        inside = (months >= 0) & (months < world.width)
        round_need[rows[inside], months[inside]] = run.untreated[IN_NEED].to_numpy(dtype=bool)[
            inside
        ]
    in_need = round_need[:, at] | round_need[:, at + 1]

    listed_frame = run.listed
    listed_rounds = month_indexes(listed_frame[ROUND])
    position = np.searchsorted(rounds, listed_rounds)
    known = (position < n_rounds) & (rounds[np.minimum(position, n_rounds - 1)] == listed_rounds)
    if not known.all():
        raise ValueError("listed holds rounds that are not among the world's rounds")
    rows = _rows(listed_frame[KEY], world, "listed")
    is_visit = listed_frame[TIER].astype(str).to_numpy() == VISIT
    visit = np.zeros((n_households, n_rounds), dtype=bool)
    listed = np.zeros((n_households, n_rounds), dtype=bool)
    visit[rows[is_visit], position[is_visit]] = True
    listed[rows, position] = True
    if EXPECTED in listed_frame.columns:
        expected = listed_frame[EXPECTED].to_numpy(dtype=np.float64)
    else:
        expected = np.full(len(listed_frame), np.nan)
    with_expected = is_visit & ~np.isnan(expected)
    expected_sum = np.bincount(
        position[with_expected], weights=expected[with_expected], minlength=n_rounds
    )
    expected_count = np.bincount(position[with_expected], minlength=n_rounds)
    if SELECTION_REASON in listed_frame.columns:
        random = listed_frame[SELECTION_REASON].astype(str).to_numpy() == EXPLORATION
        chosen = np.zeros((n_households, n_rounds), dtype=bool)
        chosen[rows[random], position[random]] = True
        explored = chosen.sum(axis=0)
    else:
        explored = np.zeros(n_rounds, dtype=np.int64)

    contacts = run.contacts
    hit = contacts[REACHED].to_numpy(dtype=bool)
    months = month_indexes(contacts[CONTACT_MONTH])
    contact_round = _round_of(months, rounds)
    keep = hit & (contact_round >= 0)
    contact_rows = _rows(contacts[KEY], world, "contacts")[keep]
    months, contact_round = months[keep], contact_round[keep]
    reached = np.zeros((n_households, n_rounds), dtype=bool)
    reached[contact_rows, contact_round] = True
    reached_contacts = np.bincount(contact_round, minlength=n_rounds)

    column = months - world.first_month
    inside = (column >= 0) & (column < world.width)
    onset = spell_onsets(need, world.first_month)
    spell = np.full(len(months), -1, dtype=np.int64)
    spell[inside] = onset[contact_rows[inside], column[inside]]
    spells = pd.DataFrame(
        {"row": contact_rows, "onset": spell, MONTH: months, ROUND: contact_round}
    )
    spells = spells[spells["onset"] >= 0].sort_values(MONTH, kind="stable")
    spells = spells.drop_duplicates(["row", "onset"], keep="first")
    first_contacts = pd.DataFrame(
        {
            ROUND: spells[ROUND].to_numpy(),
            "months": (spells[MONTH] - spells["onset"]).to_numpy(dtype=np.float64),
        }
    )
    return PolicyArrays(
        policy=run.policy,
        world=world,
        need=need,
        in_need=in_need,
        visit=visit,
        listed=listed,
        reached=reached,
        reached_contacts=reached_contacts,
        expected_sum=expected_sum,
        expected_count=expected_count,
        explored=explored,
        first_contacts=first_contacts,
    )


def _frame(a: PolicyArrays, columns: dict[str, np.ndarray]) -> pd.DataFrame:
    return pd.DataFrame(columns, index=pd.Index(a.rounds, name=ROUND)).astype(np.float64)


def _divide(num: np.ndarray, den: np.ndarray, scale: float = 1.0) -> np.ndarray:
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, scale * num / np.where(den > 0, den, 1.0), np.nan)


def _running_mean(values: np.ndarray) -> np.ndarray:
    """Mean of the non-NaN values up to each position (NaN while there are none)."""
    present = ~np.isnan(values)
    return _divide(np.cumsum(np.where(present, values, 0.0)), np.cumsum(present))


def need_found(a: PolicyArrays, cumulative: bool = False) -> pd.DataFrame:
    """need_found, need_found_reached and visit_listed per round (or summed to date)."""
    found = (a.visit & a.in_need).sum(axis=0)
    found_reached = (a.visit & a.in_need & a.reached).sum(axis=0)
    size = a.visit.sum(axis=0)
    if cumulative:
        found, found_reached, size = np.cumsum(found), np.cumsum(found_reached), np.cumsum(size)
    return _frame(a, {NEED_FOUND: found, NEED_FOUND_REACHED: found_reached, VISIT_LISTED: size})


def precision_at_capacity(a: PolicyArrays, cumulative: bool = False) -> pd.DataFrame:
    """Truth precision of the visit list and recall of need, per round (or pooled to date)."""
    found = (a.visit & a.in_need).sum(axis=0)
    size = a.visit.sum(axis=0)
    total = a.in_need.sum(axis=0)
    if cumulative:
        found, size, total = np.cumsum(found), np.cumsum(size), np.cumsum(total)
    return _frame(a, {PRECISION: _divide(found, size), RECALL: _divide(found, total)})


def _need_months(need: np.ndarray, a: PolicyArrays) -> np.ndarray:
    """In-need household-months over each round's months (R, R+1)."""
    at = a.rounds - a.world.first_month
    return need[:, at].sum(axis=0) + need[:, at + 1].sum(axis=0)


def hardship_averted(a: PolicyArrays, cumulative: bool = False) -> pd.DataFrame:
    """Hardship-months averted against the ``none`` world, reached contacts, and the averted
    months per 1,000 reached contacts, per round (or to date)."""
    averted = _need_months(a.world.none_need, a) - _need_months(a.need, a)
    contacts = a.reached_contacts
    if cumulative:
        averted, contacts = np.cumsum(averted), np.cumsum(contacts)
    return _frame(
        a,
        {
            HARDSHIP_AVERTED: averted,
            REACHED_CONTACTS: contacts,
            AVERTED_PER_1000: _divide(averted, contacts, 1000.0),
        },
    )


def months_to_contact(a: PolicyArrays, cumulative: bool = False) -> pd.DataFrame:
    """Median months from the onset of a spell of need to its first reached contact, over the
    first contacts made at the round (or to date)."""
    rounds_of = a.first_contacts[ROUND].to_numpy()
    months = a.first_contacts["months"].to_numpy()
    values = []
    for i in range(len(a.rounds)):
        chosen = months[rounds_of <= i] if cumulative else months[rounds_of == i]
        values.append(float(np.median(chosen)) if len(chosen) else np.nan)
    return _frame(a, {MONTHS_TO_CONTACT: np.asarray(values)})


def never_contacted(a: PolicyArrays, cumulative: bool = False) -> pd.DataFrame:
    """Households in need at each of the last three rounds and reached at none of them, and
    their share of the households in need at the round (cumulative: distinct households to
    date, mean share to date)."""
    n_rounds = len(a.rounds)
    counts = np.full(n_rounds, np.nan)
    shares = np.full(n_rounds, np.nan)
    distinct = np.full(n_rounds, np.nan)
    ever = np.zeros(len(a.world.index), dtype=bool)
    for i in range(NEVER_WINDOW - 1, n_rounds):
        window = slice(i - NEVER_WINDOW + 1, i + 1)
        left = a.in_need[:, window].all(axis=1) & ~a.reached[:, window].any(axis=1)
        ever |= left
        counts[i] = left.sum()
        shares[i] = _divide(left.sum(), a.in_need[:, i].sum())
        distinct[i] = ever.sum()
    if cumulative:
        return _frame(a, {NEVER_CONTACTED: distinct, NEVER_CONTACTED_SHARE: _running_mean(shares)})
    return _frame(a, {NEVER_CONTACTED: counts, NEVER_CONTACTED_SHARE: shares})


def repeat_listing(a: PolicyArrays, cumulative: bool = False) -> pd.DataFrame:
    """Households listed at this round and the previous one without being reached at the
    previous one, and their share of this round's list."""
    repeat = np.full(len(a.rounds), np.nan)
    size = np.full(len(a.rounds), np.nan)
    if len(a.rounds) > 1:
        again = a.listed[:, 1:] & a.listed[:, :-1] & ~a.reached[:, :-1]
        repeat[1:] = again.sum(axis=0)
        size[1:] = a.listed[:, 1:].sum(axis=0)
    if cumulative:
        repeat, size = np.cumsum(np.nan_to_num(repeat)), np.cumsum(np.nan_to_num(size))
        repeat[0] = size[0] = np.nan
    return _frame(a, {REPEAT_LISTED: repeat, REPEAT_SHARE: _divide(repeat, size)})


def list_churn(a: PolicyArrays, cumulative: bool = False) -> pd.DataFrame:
    """Per 읍면동 overlap (share of this visit list on the previous one) and Jaccard index of the
    visit lists of consecutive rounds, mean over 읍면동; and the share new to the visit list."""
    codes, emds = a.world.emd
    n_rounds = len(a.rounds)
    overlap = np.full(n_rounds, np.nan)
    jaccard = np.full(n_rounds, np.nan)
    new = np.full(n_rounds, np.nan)
    for i in range(1, n_rounds):
        now, before = a.visit[:, i], a.visit[:, i - 1]

        def per_emd(flags: np.ndarray) -> np.ndarray:
            return np.bincount(codes[flags], minlength=len(emds))

        both, size, union = per_emd(now & before), per_emd(now), per_emd(now | before)
        overlap[i] = np.nanmean(_divide(both, size)) if size.any() else np.nan
        jaccard[i] = np.nanmean(_divide(both, union)) if union.any() else np.nan
        new[i] = _divide((now & ~a.visit[:, :i].any(axis=1)).sum(), now.sum())
    if cumulative:
        entries = np.cumsum(a.visit.sum(axis=0))
        distinct = np.array([a.visit[:, : i + 1].any(axis=1).sum() for i in range(n_rounds)])
        return _frame(
            a,
            {
                OVERLAP: _running_mean(overlap),
                JACCARD: _running_mean(jaccard),
                NEW_TO_LIST: _divide(distinct, entries),
            },
        )
    return _frame(a, {OVERLAP: overlap, JACCARD: jaccard, NEW_TO_LIST: new})


def calibration_drift(a: PolicyArrays, cumulative: bool = False) -> pd.DataFrame:
    """Mean expected probability of the visit list minus its truth precision (NaN without
    expected probabilities)."""
    found = (a.visit & a.in_need).sum(axis=0)
    size = a.visit.sum(axis=0)
    expected_sum, expected_count = a.expected_sum, a.expected_count
    if cumulative:
        found, size = np.cumsum(found), np.cumsum(size)
        expected_sum, expected_count = np.cumsum(expected_sum), np.cumsum(expected_count)
    gap = _divide(expected_sum, expected_count) - _divide(found, size)
    return _frame(a, {CALIBRATION_GAP: gap})


def exploration(a: PolicyArrays, cumulative: bool = False) -> pd.DataFrame:
    """Share of the listed households chosen at random (exploration)."""
    explored, size = a.explored, a.listed.sum(axis=0)
    if cumulative:
        explored, size = np.cumsum(explored), np.cumsum(size)
    return _frame(a, {EXPLORATION_SHARE: _divide(explored, size)})


FAIRNESS_COLUMNS = (
    POLICY,
    ROUND,
    "attribute",
    "group",
    "size",
    "in_need",
    "selected",
    "hits",
    RECALL,
    PRECISION,
    "recall_ratio",
    "precision_ratio",
    "reference",
)


def fairness_over_time(a: PolicyArrays, cumulative: bool = False) -> pd.DataFrame:
    """Per round, attribute and group: households in need, on the visit list, both; recall,
    precision and their ratios to the reference group (NaN for groups below
    ``min_group_size``). Columns :data:`FAIRNESS_COLUMNS`."""
    world = a.world
    hits_matrix = a.visit & a.in_need
    parts = []
    for attribute in world.attributes:
        codes, groups = pd.factorize(world.households[attribute].astype(str), sort=True)
        size = np.bincount(codes, minlength=len(groups))
        reference = world.references.get(attribute)
        at = (
            int(np.flatnonzero(groups == str(reference))[0])
            if reference is not None and str(reference) in set(groups)
            else int(np.argmax(size))
        )

        def per_group(flags: np.ndarray, codes: np.ndarray = codes, n: int = len(groups)):
            return np.stack(
                [np.bincount(codes[flags[:, i]], minlength=n) for i in range(flags.shape[1])]
            )

        need, selected, hits = (
            per_group(a.in_need),
            per_group(a.visit),
            per_group(hits_matrix),
        )
        if cumulative:
            need, selected, hits = need.cumsum(0), selected.cumsum(0), hits.cumsum(0)
        recall = np.where(need >= world.min_group_size, _divide(hits, need), np.nan)
        precision = np.where(selected >= world.min_group_size, _divide(hits, selected), np.nan)
        recall_ratio = _divide(recall, recall[:, [at]])
        precision_ratio = _divide(precision, precision[:, [at]])
        n_rounds, n_groups = need.shape
        parts.append(
            pd.DataFrame(
                {
                    POLICY: a.policy,
                    ROUND: np.repeat(a.rounds, n_groups),
                    "attribute": attribute,
                    "group": np.tile(np.asarray(groups, dtype=object), n_rounds),
                    "size": np.tile(size, n_rounds),
                    "in_need": need.ravel(),
                    "selected": selected.ravel(),
                    "hits": hits.ravel(),
                    RECALL: recall.ravel(),
                    PRECISION: precision.ravel(),
                    "recall_ratio": np.where(np.isnan(recall), np.nan, recall_ratio).ravel(),
                    "precision_ratio": np.where(
                        np.isnan(precision), np.nan, precision_ratio
                    ).ravel(),
                    "reference": np.tile(np.arange(n_groups) == at, n_rounds),
                }
            )
        )
    if not parts:
        return pd.DataFrame(columns=list(FAIRNESS_COLUMNS))
    return pd.concat(parts, ignore_index=True)[list(FAIRNESS_COLUMNS)]


def fairness_extremes(a: PolicyArrays, cumulative: bool = False) -> pd.DataFrame:
    """Per round: the smallest and largest recall and precision ratio of each attribute, and
    the worst ratio over attributes (the smallest of min and 1/max)."""
    table = fairness_over_time(a, cumulative)
    out = _frame(a, {})
    worst = {RECALL: np.full(len(a.rounds), np.nan), PRECISION: np.full(len(a.rounds), np.nan)}
    for attribute in a.world.attributes:
        part = table[table["attribute"] == attribute]
        for kind in (RECALL, PRECISION):
            ratios = part.groupby(ROUND)[f"{kind}_ratio"]
            low = ratios.min().reindex(out.index).to_numpy(dtype=np.float64)
            high = ratios.max().reindex(out.index).to_numpy(dtype=np.float64)
            out[f"{kind}_ratio_min:{attribute}"] = low
            out[f"{kind}_ratio_max:{attribute}"] = high
            this = np.fmin(low, _divide(np.ones_like(high), high))
            worst[kind] = np.fmin(worst[kind], this)
    out[WORST_RECALL_RATIO] = worst[RECALL]
    out[WORST_PRECISION_RATIO] = worst[PRECISION]
    return out


MEASURES = (
    need_found,
    precision_at_capacity,
    hardship_averted,
    months_to_contact,
    never_contacted,
    repeat_listing,
    list_churn,
    fairness_extremes,
    calibration_drift,
    exploration,
)


def measures_wide(a: PolicyArrays, cumulative: bool = False) -> pd.DataFrame:
    """Every measure of one policy, one row per round, one column per measure."""
    return pd.concat([measure(a, cumulative) for measure in MEASURES], axis=1)


def _tidy(a: PolicyArrays, wide: pd.DataFrame) -> pd.DataFrame:
    long = wide.reset_index().melt(id_vars=ROUND, var_name=MEASURE, value_name=VALUE)
    long.insert(0, POLICY, a.policy)
    return long[[POLICY, ROUND, MEASURE, VALUE]]


def per_emd_totals(a: PolicyArrays) -> pd.DataFrame:
    """Per 읍면동 (index emd_code), totals over the loop: need_found, visit_listed,
    reached_households (households reached, summed over rounds) and hardship_months_averted
    (over the months of all rounds). The clusters of :func:`paired_difference`."""
    codes, emds = a.world.emd
    at = a.rounds - a.world.first_month
    months = np.union1d(at, at + 1)
    averted = a.world.none_need[:, months].sum(axis=1) - a.need[:, months].sum(axis=1)

    def per_emd(values: np.ndarray) -> np.ndarray:
        return np.bincount(codes, weights=values, minlength=len(emds))

    return pd.DataFrame(
        {
            NEED_FOUND: per_emd((a.visit & a.in_need).sum(axis=1)),
            VISIT_LISTED: per_emd(a.visit.sum(axis=1)),
            REACHED_HOUSEHOLDS: per_emd(a.reached.sum(axis=1)),
            HARDSHIP_AVERTED: per_emd(averted),
        },
        index=emds,
    )


@dataclass(frozen=True)
class LoopMeasures:
    """All policies' measures. ``per_round`` and ``cumulative``: tidy tables (policy, round,
    measure, value); ``per_emd``: :func:`per_emd_totals` per policy (index policy, emd_code);
    ``fairness``: :func:`fairness_over_time` of every policy, per round."""

    per_round: pd.DataFrame
    cumulative: pd.DataFrame
    per_emd: pd.DataFrame
    fairness: pd.DataFrame


def loop_measures(runs: Iterable[PolicyRun], world: LoopWorld) -> LoopMeasures:
    """Measure every policy of the loop (policies in the order given). ``runs`` may be a
    generator: each run's frames are turned into matrices, measured and let go before the next
    is read (a 200,000-household world's truth is hundreds of megabytes per policy)."""
    per_round, cumulative, per_emd, fairness = [], [], {}, []
    for run in runs:
        a = policy_arrays(run, world)
        per_round.append(_tidy(a, measures_wide(a)))
        cumulative.append(_tidy(a, measures_wide(a, cumulative=True)))
        per_emd[run.policy] = per_emd_totals(a)
        fairness.append(fairness_over_time(a))
    return LoopMeasures(
        per_round=pd.concat(per_round, ignore_index=True),
        cumulative=pd.concat(cumulative, ignore_index=True),
        per_emd=pd.concat(per_emd, names=[POLICY, EMD]),
        fairness=pd.concat(fairness, ignore_index=True),
    )


@dataclass(frozen=True)
class PairedDifference:
    """A difference of totals (a − b) with its bootstrap interval at ``level``."""

    estimate: float
    low: float
    high: float
    level: float
    samples: int


def paired_difference(
    per_emd_a: pd.Series,
    per_emd_b: pd.Series,
    samples: int,
    seed: int,
    level: float = 0.9,
) -> PairedDifference:
    """Total of ``per_emd_a`` minus total of ``per_emd_b``, with a percentile interval from a
    cluster bootstrap: 읍면동 drawn with replacement, the same draw for both policies (paired:
    common random numbers make their 읍면동 comparable). 읍면동 missing from one side count 0."""
    index = per_emd_a.index.union(per_emd_b.index)
    difference = per_emd_a.reindex(index, fill_value=0).to_numpy(dtype=np.float64) - (
        per_emd_b.reindex(index, fill_value=0).to_numpy(dtype=np.float64)
    )
    estimate = float(difference.sum())
    n = len(difference)
    if n == 0 or samples <= 0:
        return PairedDifference(estimate, np.nan, np.nan, level, samples)
    rng = np.random.default_rng(seed)
    draws = rng.multinomial(n, np.full(n, 1.0 / n), size=samples).astype(np.float64)
    totals = draws @ difference
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(totals, [tail, 100 - tail])
    return PairedDifference(estimate, float(low), float(high), level, samples)


POLICY_TABLE_MEASURES = (
    NEED_FOUND,
    NEED_FOUND_REACHED,
    PRECISION,
    RECALL,
    HARDSHIP_AVERTED,
    REACHED_CONTACTS,
    AVERTED_PER_1000,
    MONTHS_TO_CONTACT,
    NEVER_CONTACTED,
    REPEAT_LISTED,
    OVERLAP,
    JACCARD,
    WORST_RECALL_RATIO,
    WORST_PRECISION_RATIO,
    CALIBRATION_GAP,
)


def policy_table(
    measures: LoopMeasures,
    reference: str = "rule",
    samples: int = 2000,
    seed: int = 0,
    level: float = 0.9,
) -> pd.DataFrame:
    """One row per policy: the cumulative measures at the last round
    (:data:`POLICY_TABLE_MEASURES`) and, for need found and hardship-months averted, the
    difference against ``reference`` with its paired bootstrap interval over 읍면동
    (``<measure>_minus_reference``, ``_low``, ``_high``)."""
    cumulative = measures.cumulative
    last = cumulative[cumulative[ROUND] == cumulative[ROUND].max()]
    wide = last.pivot(index=POLICY, columns=MEASURE, values=VALUE)
    order = list(dict.fromkeys(cumulative[POLICY]))
    table = wide.reindex(index=order, columns=list(POLICY_TABLE_MEASURES))
    if reference not in order:
        raise ValueError(f"reference policy {reference!r} is not among the policies measured")
    for measure in (NEED_FOUND, HARDSHIP_AVERTED):
        base = measures.per_emd.loc[reference, measure]
        columns = {"": [], "_low": [], "_high": []}
        for policy in order:
            d = paired_difference(measures.per_emd.loc[policy, measure], base, samples, seed, level)
            columns[""].append(d.estimate)
            columns["_low"].append(d.low)
            columns["_high"].append(d.high)
        for suffix, values in columns.items():
            table[f"{measure}_minus_reference{suffix}"] = values
    return table.reset_index().rename(columns={"index": POLICY})


SIGNAL_TRENDS = {
    PRECISION: "precision_slope",
    OVERLAP: "overlap_slope",
    REPEAT_SHARE: "repeat_share_slope",
    NEW_TO_LIST: "new_to_list_slope",
    NEVER_CONTACTED_SHARE: "never_contacted_share_slope",
    CALIBRATION_GAP: "calibration_gap_slope",
}


def _slope(values: np.ndarray) -> float:
    """Least-squares change per round of the non-NaN values (NaN with fewer than two)."""
    x = np.arange(len(values), dtype=np.float64)
    present = ~np.isnan(values)
    if present.sum() < 2:
        return float("nan")
    x, y = x[present], values[present]
    return float(np.polyfit(x, y, 1)[0])


def _mean(values: np.ndarray) -> float:
    present = values[~np.isnan(values)]
    return float(present.mean()) if len(present) else float("nan")


def broken_loop_signals(
    per_round: pd.DataFrame,
    reference: str | None = None,
    tolerance: float = 0.01,
    concentrated_overlap: float = 0.8,
) -> pd.DataFrame:
    """Evidence that a loop is degrading, one row per policy, from the per-round tidy table.

    Trends (least-squares change per round): ``precision_slope`` (a loop that learns only from
    its own lists keeps listing households whose need has passed: falls), ``overlap_slope`` and
    ``repeat_share_slope`` (lists concentrating on the same households: rise),
    ``new_to_list_slope`` (reported only: it falls in any loop as the lists' history grows),
    ``never_contacted_share_slope`` (need nobody looks for: rises), ``calibration_gap_slope``
    (of the gap's absolute value: the model's expected precision no longer matches what its
    lists find: rises). Levels: ``mean_overlap``, ``mean_exploration_share``,
    ``mean_never_contacted_share``, ``last_never_contacted_share``; with a ``reference``
    policy (e.g. one that explores), ``never_contacted_excess``: the mean over rounds of the
    policy's never-contacted share minus the reference's.

    Flags (booleans; beyond ``tolerance`` per round, or in share, in the bad direction):
    ``precision_falling``, ``list_concentrating`` (overlap or repeat share rising, or mean
    overlap at least ``concentrated_overlap``), ``need_left_behind`` (never-contacted share
    rising; with a reference, also its excess over the reference's above ``tolerance``),
    ``calibration_drifting``, ``no_exploration`` (a policy that lists households but never
    at random) and ``degrading`` (any of the first four). A loop without exploration that
    learns only from its own lists shows overlap near 1, precision falling as the need of its
    favourites passes, a growing calibration gap and more need never contacted.
    """
    rows = []
    shares: dict[str, pd.Series] = {}
    for policy, part in per_round.groupby(POLICY, sort=False):
        wide = part.pivot(index=ROUND, columns=MEASURE, values=VALUE).sort_index()

        def series(measure: str, wide: pd.DataFrame = wide) -> np.ndarray:
            if measure not in wide.columns:
                return np.full(len(wide), np.nan)
            return wide[measure].to_numpy(dtype=np.float64)

        row: dict[str, object] = {POLICY: policy}
        for measure, name in SIGNAL_TRENDS.items():
            values = series(measure)
            row[name] = _slope(np.abs(values) if measure == CALIBRATION_GAP else values)
        never = series(NEVER_CONTACTED_SHARE)
        shares[str(policy)] = pd.Series(never, index=wide.index)
        present = never[~np.isnan(never)]
        row["mean_overlap"] = _mean(series(OVERLAP))
        row["mean_exploration_share"] = _mean(series(EXPLORATION_SHARE))
        row["mean_never_contacted_share"] = _mean(never)
        row["last_never_contacted_share"] = float(present[-1]) if len(present) else np.nan
        row["listed"] = bool(np.nansum(series(VISIT_LISTED)) > 0)
        rows.append(row)
    table = pd.DataFrame(rows)
    if reference is not None:
        if reference not in shares:
            raise ValueError(f"reference policy {reference!r} is not in the per-round table")
        base = shares[reference]
        table["never_contacted_excess"] = [
            _mean((shares[str(p)] - base.reindex(shares[str(p)].index)).to_numpy())
            for p in table[POLICY]
        ]

    def beyond(column: str, sign: float) -> pd.Series:
        values = table[column].astype(np.float64)
        return (sign * values > tolerance) & values.notna()

    table["precision_falling"] = beyond("precision_slope", -1)
    table["list_concentrating"] = (
        beyond("overlap_slope", 1)
        | beyond("repeat_share_slope", 1)
        | (table["mean_overlap"].astype(np.float64) >= concentrated_overlap)
    )
    table["need_left_behind"] = beyond("never_contacted_share_slope", 1)
    if reference is not None:
        table["need_left_behind"] |= beyond("never_contacted_excess", 1)
    table["calibration_drifting"] = beyond("calibration_gap_slope", 1)
    table["no_exploration"] = table["listed"] & (table["mean_exploration_share"] == 0)
    table["degrading"] = (
        table["precision_falling"]
        | table["list_concentrating"]
        | table["need_left_behind"]
        | table["calibration_drifting"]
    )
    return table.drop(columns="listed")
