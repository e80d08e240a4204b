"""One 시군구 of the synthetic world: its population, the hidden monthly process, the crisis
signals it emits and the past outreach rounds, month by month.

Everything here is a pure function of one 시군구 partition's spec, the shared context and the
partition's random streams, so partitions can be generated in any order or place and give the
same bytes. The population draws from the partition's stream; every month of the process, every
indicator's signals of a month and every past round draw from streams of their own (seed,
partition, month), the same streams the world moving on uses (:mod:`pipeline.generate.world`).
Past rounds visit households and the support they link relieves the households' need in the
months after, as it does when the world moves on. Written down in docs/synthetic_data.md.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from pipeline.generate.population import Population, generate_population
from pipeline.generate.process import (
    Profile,
    SimulationContext,
    empty_supports,
    process_rates,
    process_rng,
    register_contacts,
    relief_in,
    step_month,
    zero_state,
)
from pipeline.generate.regions import SigunguSpec
from pipeline.generate.signals import SIGNAL_COLUMNS, live_month, signal_masks
from pipeline.months import format_months, year_of
from pipeline.visits import (
    IN_PROGRESS,
    OUTCOME_CODES,
    HouseholdFacts,
    VisitDraws,
    linked_services,
    low_income,
    visit_outcomes,
)
from pipeline.visits import hard_to_reach as visits_hard_to_reach
from pipeline.vocabulary import NEED_TYPES


@dataclass(frozen=True)
class PartitionData:
    """One partition's raw tables, hidden truth and summary counts."""

    households: pd.DataFrame
    members: pd.DataFrame
    crisis_events: pd.DataFrame
    outreach_outcomes: pd.DataFrame
    truth: pd.DataFrame
    stats: dict[str, float]
    world: WorldState
    supports: pd.DataFrame  # the supports the past rounds linked (the world's ``supports``)


@dataclass(frozen=True)
class WorldState:
    """What the hidden process needs to continue past the window's last month (``through``).

    ``pending`` holds the signals of months up to ``through`` whose reported month lies after it
    (arrays household, person, indicator_code, event_month, reported_month, value).
    """

    through: int
    profile: Profile
    state: dict[str, np.ndarray]
    pending: dict[str, np.ndarray]


def partition_rng(seed: int, ordinal: int) -> np.random.Generator:
    """The random stream of one partition's population: independent of how many partitions
    there are."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(1, ordinal)))


def round_rng(seed: int, ordinal: int, round_month: int) -> np.random.Generator:
    """The random stream of one partition's past outreach round."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(4, ordinal, round_month)))


def _baseline(pop: Population, spec: SigunguSpec, rng: np.random.Generator) -> np.ndarray:
    hh = pop.households
    # Effects by code: income under_30 .. over_100; tenure own, jeonse, monthly_rent,
    # public_rental, other; benefit none, near_poor, basic_livelihood.
    income_effect = np.array([0.35, 0.2, 0.08, 0.0, -0.12])[pop.income]
    tenure_effect = np.array([-0.1, 0.05, 0.2, 0.25, 0.3])[pop.tenure]
    benefit_effect = np.array([0.0, 0.2, 0.15])[pop.benefit]
    single_elderly = (hh["size"].to_numpy() == 1) & (pop.head_age >= 65)
    emd_effect = np.array([e.effect for e in spec.emds])[pop.emd_index]
    base = (
        -0.2
        + income_effect
        + tenure_effect
        + benefit_effect
        + 0.4 * single_elderly
        + 0.3 * pop.any_disability
        + 0.4 * pop.single_parent
        + spec.effect
        + emd_effect
        + rng.normal(0.0, 0.4, size=len(hh))
    )
    return base.astype(np.float32)


PAYMENT_HABIT_SD = 4.0  # of the log of a household's payment habit (mean 1)


def _payment_habit(n: int, rng: np.random.Generator) -> np.ndarray:
    log_habit = rng.normal(-0.5 * PAYMENT_HABIT_SD**2, PAYMENT_HABIT_SD, size=n)
    return np.exp(log_habit).astype(np.float32)


def profile_of(pop: Population, base: np.ndarray, payment_habit: np.ndarray) -> Profile:
    """The per-household attributes the process and the signals use."""
    return Profile(
        emd_index=pop.emd_index,
        size=pop.households["size"].to_numpy(),
        income=pop.income,
        tenure=pop.tenure,
        benefit=pop.benefit,
        head_age=pop.head_age,
        any_disability=pop.any_disability,
        single_parent=pop.single_parent,
        member_offset=pop.member_offset,
        adults=pop.adults,
        minors=pop.minors,
        oldest=pop.oldest,
        base=base,
        payment_habit=payment_habit,
    )


def simulate_partition(spec: SigunguSpec, ctx: SimulationContext) -> PartitionData:
    """Generate one 시군구: population, hidden hardship, crisis signals and past rounds, month by
    month (a round's visits link support that relieves need in the months after)."""
    rng = partition_rng(ctx.seed, spec.ordinal)
    pop = generate_population(spec, rng, year_of(ctx.window_end))
    hh = pop.households
    n = len(hh)
    cfg = ctx.hardship
    base = _baseline(pop, spec, rng)
    profile = profile_of(pop, base, _payment_habit(n, rng))
    rates = process_rates(profile, cfg)
    masks = signal_masks(profile, ctx.indicators)
    n_emd = len(spec.emds)
    months_total = ctx.window_end - ctx.window_start + 1
    hardship = np.zeros((months_total, n), dtype=np.float32)
    need_type = np.zeros((months_total, n), dtype=np.int8)

    state = zero_state(n)
    for month in range(ctx.window_start - cfg.burn_in_months, ctx.window_start):
        state = step_month(
            month, state, profile, rates, ctx, process_rng(ctx.seed, spec.ordinal, month), n_emd
        )
    supports = empty_supports()
    drawn: list[dict[str, np.ndarray]] = []
    past = PastRounds(pop, spec, ctx)
    rounds = set(ctx.round_months)
    for t, month in enumerate(range(ctx.window_start, ctx.window_end + 1)):
        relief = relief_in(supports, month, n)
        lived = live_month(month, state, profile, rates, ctx, masks, spec.ordinal, n_emd, relief)
        state, hardship[t], need_type[t] = lived.state, lived.hardship, lived.need_type
        drawn.append(lived.signals)
        # A round's visits are judged on need in its month or the next: it is drawn once the
        # next month is known (the window's last round: on its own month).
        due = [
            r for r in (month - 1, month) if r in rounds and (r == month - 1 or r == ctx.window_end)
        ]
        for r in due:
            signals = _concat(drawn)
            in_need = hardship[: t + 1] > cfg.need_threshold
            contacts = past.visit(r, signals, hardship, in_need, need_type)
            supports = register_contacts(supports, contacts, month, ctx.contact_effect)

    signals = _concat(drawn)
    codes = [ind.code for ind in ctx.indicators]
    indicator = pd.Index(codes).get_indexer(pd.Index(signals["indicator_code"].astype(str)))
    due = signals["reported_month"] <= ctx.window_end
    events = {name: values[due] for name, values in signals.items()}
    pending = {name: values[~due] for name, values in signals.items()}
    indicator = indicator[due]
    in_need = hardship > cfg.need_threshold

    member_ids = pop.members["resident_id"]
    agencies = [ind.agency_ko for ind in ctx.indicators]
    crisis_events = pd.DataFrame(
        {
            "resident_id": pd.Categorical.from_codes(
                events["person"], categories=pd.Index(member_ids.astype("string"))
            ),
            "indicator_code": pd.Categorical.from_codes(indicator, categories=codes),
            "event_month": format_months(events["event_month"], ctx.window_start, ctx.window_end),
            "reported_month": format_months(
                events["reported_month"], ctx.window_start, ctx.window_end
            ),
            "value": events["value"],
            "source_agency": pd.Categorical(np.asarray(agencies, dtype=object)[indicator]),
        }
    )
    order = np.lexsort(
        (events["event_month"], events["person"], indicator, events["reported_month"])
    )
    crisis_events = crisis_events.take(order).reset_index(drop=True)

    months = np.arange(ctx.window_start, ctx.window_end + 1)
    truth = pd.DataFrame(
        {
            "household_key": pd.Categorical.from_codes(
                np.tile(np.arange(n), months_total), categories=pd.Index(hh["household_key"])
            ),
            "month": format_months(np.repeat(months, n), ctx.window_start, ctx.window_end),
            "hardship": np.round(hardship.reshape(-1), 2).astype(np.float32),
            "in_need": in_need.reshape(-1),
            "need_type": pd.Categorical.from_codes(
                need_type.reshape(-1), categories=list(NEED_TYPES)
            ),
        }
    )
    outcomes = past.frame()
    stats = {
        "households": float(n),
        "members": float(len(pop.members)),
        "events": float(len(crisis_events)),
        "outcome_rows": float(len(outcomes)),
        "household_months": float(in_need.size),
        "in_need_household_months": float(in_need.sum()),
        **past.stats,
    }
    return PartitionData(
        households=hh,
        members=pop.members,
        crisis_events=crisis_events,
        outreach_outcomes=outcomes,
        truth=truth,
        stats=stats,
        world=WorldState(ctx.window_end, profile, state, pending),
        supports=supports,
    )


def _concat(drawn: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {name: np.concatenate([d[name] for d in drawn]) for name in SIGNAL_COLUMNS}


def _distinct_recent(
    household: np.ndarray, kind: np.ndarray, reported: np.ndarray, n: int, first: int, last: int
) -> np.ndarray:
    """Per household: distinct kinds of signal reported in months [first, last]."""
    window = (reported >= first) & (reported <= last)
    pairs = np.unique(np.stack([household[window], kind[window]]), axis=1)
    return np.bincount(pairs[0], minlength=n) if pairs.size else np.zeros(n, dtype=np.int64)


REASONS = ("central_rule", "local_discretion", "random_exploration")
UNKNOWN_PROBABILITY = np.nan  # local discretion: no system knows how an office chose


class PastRounds:
    """The partition's past outreach rounds, one at a time: each 읍면동 lists its capacity by
    the central rule, the office's own knowledge and random exploration; the visits' outcomes
    come from the hidden state (:func:`pipeline.visits.visit_outcomes`)."""

    def __init__(self, pop: Population, spec: SigunguSpec, ctx: SimulationContext) -> None:
        self.pop, self.spec, self.ctx = pop, spec, ctx
        hh = pop.households
        n = len(hh)
        sizes = hh["size"].to_numpy()
        self.eligible = pop.benefit != 2  # basic livelihood recipients are already supported
        self.single_elderly = (sizes == 1) & (pop.head_age >= 65)
        self.hard_to_reach = visits_hard_to_reach(pop.tenure, sizes)
        self.emd_bounds = np.concatenate([[0], np.cumsum([e.households for e in spec.emds])])
        share = ctx.selection.capacity_share
        self.capacities = [max(2, round(e.households * share)) for e in spec.emds]
        self.n = n
        self.rows: dict[str, list[np.ndarray]] = {
            k: []
            for k in ("household", "round", "reason", "prob", "outcome", "resolved", "service")
        }
        self.stats = {"rule_listed": 0.0, "rule_in_need": 0.0, "listed": 0.0, "listed_in_need": 0.0}

    def visit(
        self,
        r: int,
        signals: dict[str, np.ndarray],
        hardship: np.ndarray,
        in_need: np.ndarray,
        need_type: np.ndarray,
    ) -> pd.DataFrame:
        """List and visit round ``r`` (signals drawn so far; hardship, need and kind of need of
        the months so far, from the window's start); returns the contacts for the world:
        household, contact_month (the resolved month), outcome_code (not for visits still in
        progress). A visit linked to support records the service it linked
        (:func:`pipeline.visits.linked_services`)."""
        ctx, sel, n = self.ctx, self.ctx.selection, self.n
        rng = round_rng(ctx.seed, self.spec.ordinal, r)
        t = r - ctx.window_start
        need_now = in_need[t] | (in_need[t + 1] if t + 1 < in_need.shape[0] else False)
        household, kind = signals["household"], signals["indicator_code"]
        _, kind_index = np.unique(kind.astype(str), return_inverse=True)
        reported = signals["reported_month"]
        score = _distinct_recent(
            household, kind_index, reported, n, r - sel.rule_window_months, r - 1
        )
        recent = _distinct_recent(household, kind_index, reported, n, r - 6, r - 1) > 0
        tiebreak = rng.random(n)
        knowledge = hardship[t - 1] + rng.normal(0.0, 1.6, size=n) + 0.5 * self.single_elderly
        chosen_all, reasons, probs = [], [], []
        for e, capacity in enumerate(self.capacities):
            lo, hi = self.emd_bounds[e], self.emd_bounds[e + 1]
            idx = np.arange(lo, hi)
            candidates = idx[self.eligible[idx] & (score[idx] >= 1)]
            order = candidates[np.lexsort((tiebreak[candidates], -score[candidates]))]
            full = order[:capacity]  # the rule alone at full capacity (its documented precision)
            self.stats["rule_listed"] += full.size
            self.stats["rule_in_need"] += need_now[full].sum()
            n_central = round(capacity * sel.central_rule_share)
            n_local = round(capacity * sel.local_discretion_share)
            n_explore = max(0, capacity - n_central - n_local)
            central = order[:n_central]
            central_prob = np.ones(central.size)
            if central.size:
                cut = score[central[-1]]
                at_cut = score[candidates] == cut
                slots = (score[central] == cut).sum()
                if at_cut.sum() > slots:
                    central_prob[score[central] == cut] = slots / at_cut.sum()
            taken = np.zeros(n, dtype=bool)
            taken[central] = True
            pool = idx[self.eligible[idx] & ~taken[idx]]
            gumbel_keys = 0.9 * knowledge[pool] + rng.gumbel(size=pool.size)
            local = pool[np.argsort(-gumbel_keys, kind="stable")[:n_local]]
            taken[local] = True
            pool = idx[self.eligible[idx] & ~taken[idx] & recent[idx]]
            explore = (
                rng.choice(pool, size=min(n_explore, pool.size), replace=False)
                if pool.size
                else pool
            )
            explore_prob = np.full(explore.size, explore.size / max(pool.size, 1))
            for chosen, reason, prob in (
                (central, 0, central_prob),
                (local, 1, np.full(local.size, UNKNOWN_PROBABILITY)),
                (explore, 2, explore_prob),
            ):
                chosen_all.append(chosen)
                reasons.append(np.full(chosen.size, reason, dtype=np.int8))
                probs.append(prob)
                self.stats["listed"] += chosen.size
                self.stats["listed_in_need"] += need_now[chosen].sum()
        chosen = np.concatenate(chosen_all).astype(np.int64)
        outcome, resolved = visit_outcomes(
            need_now[chosen],
            self.hard_to_reach[chosen],
            low_income(self.pop.income[chosen]),
            r,
            VisitDraws.draw(rng, chosen.size),
        )
        pop = self.pop
        facts = HouseholdFacts(
            pop.income[chosen], pop.head_age[chosen], pop.any_disability[chosen], pop.minors[chosen]
        )
        service = linked_services(
            outcome,
            need_type[t][chosen],
            facts,
            ctx.services,
            rng.random(chosen.size),
            rng.random(chosen.size),
        )
        rows = self.rows
        rows["service"].append(service)
        rows["household"].append(chosen)
        rows["round"].append(np.full(chosen.size, r, dtype=np.int32))
        rows["reason"].append(np.concatenate(reasons))
        rows["prob"].append(np.concatenate(probs))
        rows["outcome"].append(outcome)
        rows["resolved"].append(resolved)
        contacted = outcome != IN_PROGRESS
        return pd.DataFrame(
            {
                "household": chosen[contacted],
                "contact_month": resolved[contacted].astype(np.int32),
                "outcome_code": pd.array(
                    np.asarray(OUTCOME_CODES, dtype=object)[outcome[contacted]], dtype="string"
                ),
            }
        )

    def frame(self) -> pd.DataFrame:
        """The raw ``outreach_outcomes`` rows of every round so far: outcomes that would resolve
        after the window's end are in progress, with no resolved month."""
        ctx = self.ctx
        household = np.concatenate(self.rows["household"])
        round_month = np.concatenate(self.rows["round"])
        outcome = np.concatenate(self.rows["outcome"])
        resolved = np.concatenate(self.rows["resolved"])
        unresolved = (outcome == IN_PROGRESS) | (resolved > ctx.window_end)
        outcome = np.where(unresolved, IN_PROGRESS, outcome)
        service = np.where(unresolved, -1, np.concatenate(self.rows["service"]))
        service_codes = np.asarray([s.code for s in ctx.services] + [None], dtype=object)
        resolved = np.where(unresolved, round_month, resolved)  # not written: in progress
        prob = np.concatenate(self.rows["prob"])
        emd_codes = np.array([e.code for e in self.spec.emds], dtype=object)
        frame = pd.DataFrame(
            {
                "household_key": self.pop.households["household_key"].to_numpy()[household],
                "emd_code": emd_codes[self.pop.emd_index[household]].astype(str),
                "round_month": format_months(round_month, ctx.window_start, ctx.window_end),
                "selection_reason": pd.Categorical.from_codes(
                    np.concatenate(self.rows["reason"]), categories=list(REASONS)
                ),
                "selection_probability": np.where(
                    np.isnan(prob), np.nan, np.clip(np.round(prob, 6), 1e-6, 1.0)
                ),
                "outcome_code": pd.Categorical.from_codes(outcome, categories=list(OUTCOME_CODES)),
                "resolved_month": pd.Series(
                    np.where(
                        unresolved,
                        None,
                        format_months(
                            np.minimum(resolved, ctx.window_end), ctx.window_start, ctx.window_end
                        ).astype(object),
                    ),
                    dtype="string",
                ),
                "service_code": pd.Series(service_codes[service], dtype="string"),
            }
        )
        for column in (
            "household_key",
            "emd_code",
            "round_month",
            "selection_reason",
            "outcome_code",
        ):
            frame[column] = frame[column].astype("string")
        frame = frame.sort_values(["round_month", "emd_code", "household_key"], kind="stable")
        return frame.reset_index(drop=True)
