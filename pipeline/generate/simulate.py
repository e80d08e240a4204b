"""The hidden monthly hardship process, the crisis signals it emits, and past outreach rounds.

Everything here is a pure function of one 시군구 partition's spec, the shared context and the
partition's own random stream, so partitions can be generated in any order or place and give the
same bytes. The process is written down in docs/synthetic_data.md.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from pipeline.catalogue import Indicator
from pipeline.config import HardshipConfig, SelectionConfig
from pipeline.generate.population import Population, generate_population
from pipeline.generate.regions import SigunguSpec
from pipeline.months import calendar_month, format_months, parse_month, year_of
from pipeline.visits import IN_PROGRESS, OUTCOME_CODES, VisitDraws, low_income, visit_outcomes
from pipeline.visits import hard_to_reach as visits_hard_to_reach
from pipeline.vocabulary import TENURES

DRIVERS: tuple[str, ...] = (
    "strain",
    "job",
    "health",
    "disaster",
    "benefit",
    "housing",
    "isolation",
)
CAUSES: tuple[str, ...] = ("baseline", "strain", "job", "health", "disaster", "benefit", "housing")
_DRIVER_CAP = 4.0
_WINTER_UTILITY = 1.3  # utility arrears and cut-offs rise with heating bills


@dataclass(frozen=True)
class SimulationContext:
    """Inputs shared by every partition."""

    seed: int
    window_start: int
    window_end: int
    round_months: tuple[int, ...]
    shock_start: int
    shock_end: int
    shock_multiplier: float
    hardship: HardshipConfig
    selection: SelectionConfig
    indicators: tuple[Indicator, ...]
    rounds_with_truth_next_month: bool = True


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


@dataclass(frozen=True)
class WorldState:
    """What the hidden process needs to continue past the window's last month (``through``).

    ``pending`` holds the signals of months up to ``through`` whose reported month lies after it
    (arrays household, person, indicator (code index), event_month, reported_month, value).
    """

    through: int
    profile: Profile
    state: dict[str, np.ndarray]
    pending: dict[str, np.ndarray]


def partition_rng(seed: int, ordinal: int) -> np.random.Generator:
    """The random stream of one partition: independent of how many partitions there are."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(1, ordinal)))


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


PROCESS: tuple[str, ...] = (
    "job",
    "illness",
    "benefit_loss",
    "housing",
    "disaster",
    "strain",
    "noise",
)
"""The components of the hidden process that carry from one month to the next (all float32)."""


@dataclass(frozen=True)
class Profile:
    """Per-household attributes the monthly process and the signals use (fixed over time)."""

    emd_index: np.ndarray
    size: np.ndarray
    income: np.ndarray
    tenure: np.ndarray
    benefit: np.ndarray
    head_age: np.ndarray
    any_disability: np.ndarray
    single_parent: np.ndarray
    member_offset: np.ndarray
    adults: np.ndarray
    minors: np.ndarray
    oldest: np.ndarray
    base: np.ndarray  # the household's baseline hardship (float32)

    @classmethod
    def of(cls, pop: Population, base: np.ndarray) -> Profile:
        return cls(
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
        )

    def __len__(self) -> int:
        return len(self.base)


@dataclass(frozen=True)
class ProcessRates:
    """What the monthly step derives once from a profile and the hardship parameters."""

    job: np.ndarray
    illness: np.ndarray
    benefit: np.ndarray
    housing: np.ndarray
    jeonse: np.ndarray
    vulnerability: np.ndarray
    heating_burden: np.ndarray
    isolation_level: np.ndarray


def process_rates(profile: Profile, cfg: HardshipConfig) -> ProcessRates:
    size = profile.size
    low_income = profile.income <= 1
    working_age = (profile.head_age >= 18) & (profile.head_age < 65)
    elderly = profile.head_age >= 65
    renting = profile.tenure >= 2
    jeonse = profile.tenure == 1
    return ProcessRates(
        job=cfg.job_loss_rate * np.where(working_age, 1.0, 0.2) * np.where(low_income, 1.3, 1.0),
        illness=cfg.illness_rate * (1.0 + 2.0 * elderly + 1.0 * profile.any_disability),
        benefit=np.array([0.03, 0.6, 1.0])[profile.benefit] * cfg.benefit_loss_rate,
        housing=cfg.housing_shock_rate * np.where(renting, 1.5, np.where(jeonse, 1.0, 0.2)),
        jeonse=jeonse,
        vulnerability=np.where(low_income, 1.15, np.where(profile.income == 4, 0.85, 1.0)),
        # Heating bills weigh on low-income households in winter (Dec-Feb).
        heating_burden=np.where(low_income, 0.12, 0.0).astype(np.float32),
        isolation_level=np.where(
            size == 1, np.where(elderly | profile.any_disability, 1.0, 0.5), 0.1
        ).astype(np.float32),
    )


_JEONSE_WAVE = (parse_month("2024-01"), parse_month("2025-06"))


def zero_state(n: int) -> dict[str, np.ndarray]:
    """The process before its first (burn-in) month: every component zero."""
    return {name: np.zeros(n, dtype=np.float32) for name in PROCESS}


def step_month(
    month: int,
    state: dict[str, np.ndarray],
    profile: Profile,
    rates: ProcessRates,
    ctx: SimulationContext,
    rng: np.random.Generator,
    n_emd: int,
    relief: np.ndarray | None = None,
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """One month of the hidden process: the next state and the month's hardship parts.

    The draws are the same in number and order whatever the state (common random numbers).
    ``relief`` (per household, 0..1) is the share of strain and shocks that support removes this
    month (``outreach generate --advance`` with contacts); None or zeros change nothing.
    """
    cfg = ctx.hardship
    n = len(profile)
    calendar = calendar_month(month)
    if ctx.shock_start <= month <= ctx.shock_end:
        economy = ctx.shock_multiplier
    elif ctx.shock_end < month <= ctx.shock_end + 3:
        economy = 1.0 + (ctx.shock_multiplier - 1.0) * 0.5
    else:
        economy = 1.0
    noise_innovation = cfg.noise_sd * np.sqrt(1 - 0.7**2)

    def shock(rate: np.ndarray) -> np.ndarray:
        hit = rng.random(n) < rate
        return hit * (1.0 + rng.exponential(0.8, size=n)).astype(np.float32)

    winter = 1.2 if calendar in (1, 2, 12) else 1.0
    job = state["job"] * 0.88 + shock(rates.job * economy * winter)
    illness = state["illness"] * 0.93 + shock(rates.illness * winter)
    benefit_loss = state["benefit_loss"] * 0.9 + shock(rates.benefit)
    wave = 3.0 if _JEONSE_WAVE[0] <= month <= _JEONSE_WAVE[1] else 1.0
    housing = state["housing"] * 0.92 + shock(rates.housing * np.where(rates.jeonse, wave, 1.0))
    season = 4.0 if calendar in (7, 8, 9) else (1.5 if calendar in (1, 2, 12) else 1.0)
    emd_hit = rng.random(n_emd) < cfg.disaster_rate * season
    affected = emd_hit[profile.emd_index] & (rng.random(n) < 0.35)
    disaster = state["disaster"] * 0.8 + affected * (1.0 + rng.exponential(0.8, size=n)).astype(
        np.float32
    )
    shocks = job + illness + benefit_loss + housing + disaster
    base = profile.base
    strain = np.maximum(
        0.0,
        0.85 * state["strain"]
        + 0.3 * shocks * rates.vulnerability
        + 0.05 * np.maximum(base, 0.0)
        + rates.heating_burden * (winter > 1.0)
        + rng.normal(0.0, 0.15, size=n),
    ).astype(np.float32)
    noise = (0.7 * state["noise"] + rng.normal(0.0, noise_innovation, size=n)).astype(np.float32)
    if relief is not None and relief.any():
        keep = (1.0 - relief).astype(np.float32)
        job, illness, benefit_loss = job * keep, illness * keep, benefit_loss * keep
        housing, disaster, strain = housing * keep, disaster * keep, strain * keep
    parts = np.stack(
        [
            np.maximum(base, 0.0),
            strain,
            0.5 * job,
            0.4 * illness,
            0.5 * disaster,
            0.5 * benefit_loss,
            0.4 * housing,
        ]
    )
    new_state = {
        "job": job,
        "illness": illness,
        "benefit_loss": benefit_loss,
        "housing": housing,
        "disaster": disaster,
        "strain": strain,
        "noise": noise,
    }
    return new_state, parts


def hardship_of(profile: Profile, state: dict[str, np.ndarray], parts: np.ndarray) -> np.ndarray:
    """The latent hardship score of a month (float32)."""
    return profile.base + state["strain"] + parts[2:].sum(axis=0) + state["noise"]


def drivers_of(profile: Profile, rates: ProcessRates, state: dict[str, np.ndarray]) -> np.ndarray:
    """The hidden drivers of the crisis signals (rows in the order of ``DRIVERS``)."""
    strain = state["strain"]
    return np.stack(
        [
            strain + 0.25 * np.maximum(profile.base, 0.0),
            state["job"],
            state["illness"],
            state["disaster"],
            state["benefit_loss"],
            state["housing"],
            rates.isolation_level * (0.5 + strain),
        ]
    )


def simulate_partition(spec: SigunguSpec, ctx: SimulationContext) -> PartitionData:
    """Generate one 시군구: population, hidden hardship, crisis signals and past rounds."""
    rng = partition_rng(ctx.seed, spec.ordinal)
    reference_year = year_of(ctx.window_end)
    pop = generate_population(spec, rng, reference_year)
    hh = pop.households
    n = len(hh)
    cfg = ctx.hardship
    base = _baseline(pop, spec, rng)
    profile = Profile.of(pop, base)
    rates = process_rates(profile, cfg)

    months_total = ctx.window_end - ctx.window_start + 1
    first = ctx.window_start - cfg.burn_in_months
    state = zero_state(n)
    hardship = np.zeros((months_total, n), dtype=np.float32)
    cause = np.zeros((months_total, n), dtype=np.int8)
    drivers = np.zeros((months_total, len(DRIVERS), n), dtype=np.float32)
    n_emd = len(spec.emds)

    for month in range(first, ctx.window_end + 1):
        state, parts = step_month(month, state, profile, rates, ctx, rng, n_emd)
        if month >= ctx.window_start:
            t = month - ctx.window_start
            hardship[t] = hardship_of(profile, state, parts)
            cause[t] = np.argmax(parts, axis=0)
            drivers[t] = drivers_of(profile, rates, state)

    in_need = hardship > cfg.need_threshold
    events, pending = _emit_signals(profile, ctx, drivers, rng)
    outcomes, rule_stats = _outreach_rounds(pop, spec, ctx, events, hardship, in_need, rng)

    member_ids = pop.members["resident_id"]
    codes = [ind.code for ind in ctx.indicators]
    agencies = [ind.agency_ko for ind in ctx.indicators]
    crisis_events = pd.DataFrame(
        {
            "resident_id": pd.Categorical.from_codes(
                events["person"], categories=pd.Index(member_ids.astype("string"))
            ),
            "indicator_code": pd.Categorical.from_codes(events["indicator"], categories=codes),
            "event_month": format_months(events["event_month"], ctx.window_start, ctx.window_end),
            "reported_month": format_months(
                events["reported_month"], ctx.window_start, ctx.window_end
            ),
            "value": events["value"],
            "source_agency": pd.Categorical.from_codes(
                events["indicator"], categories=pd.Index(agencies).unique().tolist()
            )
            if len(set(agencies)) == len(agencies)
            else pd.Categorical(np.asarray(agencies, dtype=object)[events["indicator"]]),
        }
    )
    order = np.lexsort(
        (events["event_month"], events["person"], events["indicator"], events["reported_month"])
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
            "main_cause": pd.Categorical.from_codes(cause.reshape(-1), categories=list(CAUSES)),
        }
    )

    stats = {
        "households": float(n),
        "members": float(len(pop.members)),
        "events": float(len(crisis_events)),
        "outcome_rows": float(len(outcomes)),
        "household_months": float(in_need.size),
        "in_need_household_months": float(in_need.sum()),
        **rule_stats,
    }
    return PartitionData(
        households=hh,
        members=pop.members,
        crisis_events=crisis_events,
        outreach_outcomes=outcomes,
        truth=truth,
        stats=stats,
        world=WorldState(ctx.window_end, profile, state, pending),
    )


_DRIVER_INDEX = {name: i for i, name in enumerate(DRIVERS)}
SIGNAL_TARGETS = ("head", "adult", "elderly", "child", "member")


def signal_masks(profile: Profile, indicators: tuple[Indicator, ...]) -> list[np.ndarray]:
    """Per indicator: the households it can concern (tenure, minors)."""
    masks = []
    for ind in indicators:
        mask = np.ones(len(profile), dtype=bool)
        if ind.synthetic.tenure is not None:
            allowed = [TENURES.index(t) for t in ind.synthetic.tenure]
            mask &= np.isin(profile.tenure, allowed)
        if ind.synthetic.target == "child":
            mask &= profile.minors > 0
        masks.append(mask)
    return masks


def delivers(ind: Indicator, month: int) -> bool:
    """Whether the indicator's source delivers signals of ``month`` (its availability dates)."""
    start, end = ind.available_from_index, ind.available_until_index
    return (start is None or month >= start) and (end is None or month <= end)


def signal_probability(ind: Indicator, drivers: np.ndarray, month: int) -> tuple[np.ndarray, ...]:
    """The capped driver of an indicator in one month and its emission probability."""
    em = ind.synthetic
    x = np.minimum(drivers[_DRIVER_INDEX[em.driver]], _DRIVER_CAP)
    seasonal = (
        _WINTER_UTILITY if ind.group == "utilities" and calendar_month(month) in (12, 1, 2) else 1.0
    )
    return x, (em.base + em.slope * x) * seasonal


def attribute_person(
    profile: Profile, household: np.ndarray, target_codes: np.ndarray, u: np.ndarray
) -> np.ndarray:
    """The member (index in the partition's member table) a signal is about."""
    offset = profile.member_offset[household]
    adults = profile.adults[household]
    minors = profile.minors[household]
    sizes = adults + minors
    return np.select(
        [target_codes == 0, target_codes == 1, target_codes == 2, target_codes == 3],
        [
            offset,
            offset + np.floor(u * adults).astype(np.int64),
            offset + profile.oldest[household],
            offset + adults + np.floor(u * np.maximum(minors, 1)).astype(np.int64),
        ],
        default=offset + np.floor(u * sizes).astype(np.int64),
    )


def draw_lag(lag: tuple[float, ...], u: np.ndarray) -> np.ndarray:
    """Reporting lags in months from uniforms, by the indicator's lag distribution."""
    cumulative = np.cumsum(lag)
    return np.minimum(np.searchsorted(cumulative, u, side="right"), len(cumulative) - 1)


def _emit_signals(
    profile: Profile, ctx: SimulationContext, drivers: np.ndarray, rng: np.random.Generator
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Crisis signals: at most one per household, indicator and month, with lag and value.

    Returns the signals reported inside the window and those reported after its end (pending).
    """
    n = len(profile)
    months_total = drivers.shape[0]
    hits_household: list[np.ndarray] = []
    hits_indicator: list[np.ndarray] = []
    hits_month: list[np.ndarray] = []
    hits_driver: list[np.ndarray] = []
    masks = signal_masks(profile, ctx.indicators)
    for t in range(months_total):
        month = ctx.window_start + t
        for k, ind in enumerate(ctx.indicators):
            if not delivers(ind, month):
                continue
            x, p = signal_probability(ind, drivers[t], month)
            hit = np.flatnonzero((rng.random(n, dtype=np.float32) < p) & masks[k])
            if hit.size:
                hits_household.append(hit)
                hits_indicator.append(np.full(hit.size, k, dtype=np.int16))
                hits_month.append(np.full(hit.size, month, dtype=np.int32))
                hits_driver.append(x[hit])
    if hits_household:
        household = np.concatenate(hits_household)
        indicator = np.concatenate(hits_indicator)
        event_month = np.concatenate(hits_month)
        driver = np.concatenate(hits_driver).astype(np.float64)
    else:
        household = np.zeros(0, dtype=np.int64)
        indicator = np.zeros(0, dtype=np.int16)
        event_month = np.zeros(0, dtype=np.int32)
        driver = np.zeros(0)

    m = household.size
    u = rng.random(m)
    target_codes = np.array([SIGNAL_TARGETS.index(ind.synthetic.target) for ind in ctx.indicators])[
        indicator
    ]
    person = attribute_person(profile, household, target_codes, u)

    lag = np.zeros(m, dtype=np.int32)
    value = np.ones(m, dtype=np.float64)
    lag_u = rng.random(m)
    for k, ind in enumerate(ctx.indicators):
        rows = np.flatnonzero(indicator == k)
        if not rows.size:
            continue
        lag[rows] = draw_lag(ind.synthetic.lag, lag_u[rows])
        value[rows] = draw_values(ind.synthetic.value, driver[rows], rng)
    reported = event_month + lag
    keep = reported <= ctx.window_end
    columns = {
        "household": household,
        "person": person,
        "indicator": indicator.astype(np.int64),
        "event_month": event_month,
        "reported_month": reported,
        "value": value,
    }
    return (
        {name: values[keep] for name, values in columns.items()},
        {name: values[~keep] for name, values in columns.items()},
    )


def draw_values(model: str, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Signal values in the indicator's unit, growing with the driver ``x``."""
    size = x.size
    if model == "flag":
        return np.ones(size)
    if model == "months":
        return np.minimum(rng.geometric(1.0 / (1.5 + x)), 36).astype(float)
    if model == "months_long":
        return np.minimum(5 + rng.geometric(1.0 / (2.0 + 2.0 * x)), 60).astype(float)
    if model == "grade":
        return np.clip(5 - np.floor(0.8 * x + 2 * rng.random(size)), 1, 5)
    if model == "days":
        return np.clip(np.round(rng.lognormal(np.log(15) + 0.3 * x, 0.7)), 1, 365)
    scale = {
        "krw_small": (80_000, 0.25, 0.6),
        "krw_medium": (400_000, 0.3, 0.8),
        "krw_large": (3_000_000, 0.3, 1.0),
    }
    median, slope, sigma = scale[model]
    return np.maximum(np.round(rng.lognormal(np.log(median) + slope * x, sigma), -3), 1000.0)


def _distinct_recent(
    events: dict[str, np.ndarray], n: int, first: int, last: int, k: int
) -> np.ndarray:
    """Per household: distinct indicators reported in months [first, last]."""
    window = (events["reported_month"] >= first) & (events["reported_month"] <= last)
    seen = np.zeros(n * k, dtype=bool)
    seen[events["household"][window] * k + events["indicator"][window]] = True
    return seen.reshape(n, k).sum(axis=1)


def _outreach_rounds(
    pop: Population,
    spec: SigunguSpec,
    ctx: SimulationContext,
    events: dict[str, np.ndarray],
    hardship: np.ndarray,
    in_need: np.ndarray,
    rng: np.random.Generator,
) -> tuple[pd.DataFrame, dict[str, float]]:
    """Past rounds chosen under capacity; visit outcomes drawn from the hidden state."""
    hh = pop.households
    n = len(hh)
    sel = ctx.selection
    k_ind = len(ctx.indicators)
    eligible = pop.benefit != 2  # basic livelihood recipients are already supported
    single_elderly = (hh["size"].to_numpy() == 1) & (pop.head_age >= 65)
    hard_to_reach = visits_hard_to_reach(pop.tenure, hh["size"].to_numpy())
    emd_bounds = np.concatenate([[0], np.cumsum([e.households for e in spec.emds])])
    capacities = [max(2, round(e.households * sel.capacity_share)) for e in spec.emds]

    rows: dict[str, list[np.ndarray]] = {k: [] for k in ("household", "round", "reason", "prob")}
    stats = {"rule_listed": 0.0, "rule_in_need": 0.0, "listed": 0.0, "listed_in_need": 0.0}
    for r in ctx.round_months:
        t = r - ctx.window_start
        need_now = in_need[t] | (in_need[t + 1] if t + 1 < in_need.shape[0] else False)
        score = _distinct_recent(events, n, r - sel.rule_window_months, r - 1, k_ind)
        recent = _distinct_recent(events, n, r - 6, r - 1, k_ind) > 0
        tiebreak = rng.random(n)
        knowledge = hardship[t - 1] + rng.normal(0.0, 1.6, size=n) + 0.5 * single_elderly
        for e, capacity in enumerate(capacities):
            lo, hi = emd_bounds[e], emd_bounds[e + 1]
            idx = np.arange(lo, hi)
            candidates = idx[eligible[idx] & (score[idx] >= 1)]
            # The rule alone at full capacity (for the documented precision figure).
            order = candidates[np.lexsort((tiebreak[candidates], -score[candidates]))]
            full = order[:capacity]
            stats["rule_listed"] += full.size
            stats["rule_in_need"] += need_now[full].sum()

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

            pool = idx[eligible[idx] & ~taken[idx]]
            weight = np.exp(0.9 * knowledge[pool])
            gumbel_keys = np.log(weight) + rng.gumbel(size=pool.size)
            local = pool[np.argsort(-gumbel_keys, kind="stable")[:n_local]]
            local_prob = np.minimum(1.0, n_local * np.exp(0.9 * knowledge[local]) / weight.sum())
            taken[local] = True

            pool = idx[eligible[idx] & ~taken[idx] & recent[idx]]
            explore = (
                rng.choice(pool, size=min(n_explore, pool.size), replace=False)
                if pool.size
                else pool
            )
            explore_prob = np.full(explore.size, explore.size / max(pool.size, 1))

            for chosen, reason, prob in (
                (central, 0, central_prob),
                (local, 1, local_prob),
                (explore, 2, explore_prob),
            ):
                rows["household"].append(chosen)
                rows["round"].append(np.full(chosen.size, r, dtype=np.int32))
                rows["reason"].append(np.full(chosen.size, reason, dtype=np.int8))
                rows["prob"].append(prob)
                stats["listed"] += chosen.size
                stats["listed_in_need"] += need_now[chosen].sum()

    household = np.concatenate(rows["household"]).astype(np.int64)
    round_month = np.concatenate(rows["round"])
    reason = np.concatenate(rows["reason"])
    prob = np.concatenate(rows["prob"])
    t = round_month - ctx.window_start
    t_next = np.minimum(t + 1, in_need.shape[0] - 1)
    need = in_need[t, household] | in_need[t_next, household]
    m = household.size

    # Outcome draw (pipeline.visits, shared with the simulated field work).
    outcome, resolved = visit_outcomes(
        need,
        hard_to_reach[household],
        low_income(pop.income[household]),
        round_month,
        VisitDraws.draw(rng, m),
    )
    unresolved = (outcome == IN_PROGRESS) | (resolved > ctx.window_end)
    outcome = np.where(unresolved, IN_PROGRESS, outcome)
    resolved = np.where(unresolved, round_month, resolved)  # not written: in progress

    reasons = ["central_rule", "local_discretion", "random_exploration"]
    emd_codes = np.array([e.code for e in spec.emds], dtype=object)
    frame = pd.DataFrame(
        {
            "household_key": hh["household_key"].to_numpy()[household],
            "emd_code": emd_codes[pop.emd_index[household]].astype(str),
            "round_month": format_months(round_month, ctx.window_start, ctx.window_end),
            "selection_reason": pd.Categorical.from_codes(reason, categories=reasons),
            "selection_probability": np.clip(np.round(prob, 6), 1e-6, 1.0),
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
        }
    )
    for column in ("household_key", "emd_code", "round_month", "selection_reason", "outcome_code"):
        frame[column] = frame[column].astype("string")
    frame = frame.sort_values(["round_month", "emd_code", "household_key"], kind="stable")
    return frame.reset_index(drop=True), stats
