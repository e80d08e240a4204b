"""The hidden monthly process of a synthetic household: shocks, strain, the kind of need, and the
support that contacts start. Pure functions of a partition's profile, its state and a month's
random stream; the window's history (:mod:`pipeline.generate.simulate`) and the world moving on
(:mod:`pipeline.generate.world`) step through the same months the same way.

Written down in docs/synthetic_data.md, "The hidden hardship process".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from pipeline.catalogue import Indicator, Service
from pipeline.config import ContactEffectConfig, HardshipConfig, SelectionConfig
from pipeline.months import calendar_month, parse_month

PROCESS: tuple[str, ...] = (
    "job",
    "illness",
    "benefit_loss",
    "housing",
    "disaster",
    "debt",
    "care",
    "isolation",
    "strain",
    "noise",
)
"""The components of the hidden process that carry from one month to the next (all float32)."""

# Weights of the components in the hardship score (docs/synthetic_data.md).
WEIGHTS: dict[str, float] = {
    "job": 0.5,
    "illness": 0.4,
    "benefit_loss": 0.5,
    "housing": 0.4,
    "disaster": 0.5,
    "debt": 0.5,
    "care": 0.6,
    "isolation": 0.6,
}
CHRONIC = 0.8  # the share of a positive baseline that counts as a lasting lack of income
DRIVER_CAP = 4.0
# The burden an ordinary household carries: arrears beyond false alarms show above it.
ARREARS_FLOOR = 3.0
_JEONSE_WAVE = (parse_month("2024-01"), parse_month("2025-06"))


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
    contact_effect: ContactEffectConfig
    services: tuple[Service, ...] = ()  # what a linked visit records (configs/services.yaml)


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
    # How often the household lets a bill lapse whatever its hardship (mean 1, heavy-tailed:
    # most never do, a few often): multiplies the false-alarm rate of arrears (float32).
    payment_habit: np.ndarray

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
    debt: np.ndarray
    care: np.ndarray
    isolation: np.ndarray
    vulnerability: np.ndarray
    heating_burden: np.ndarray
    low_income: np.ndarray


def process_rates(profile: Profile, cfg: HardshipConfig) -> ProcessRates:
    size = profile.size
    low_income = profile.income <= 1
    working_age = (profile.head_age >= 18) & (profile.head_age < 65)
    elderly = profile.head_age >= 65
    renting = profile.tenure >= 2
    jeonse = profile.tenure == 1
    alone = size == 1
    return ProcessRates(
        job=cfg.job_loss_rate * np.where(working_age, 1.0, 0.2) * np.where(low_income, 1.3, 1.0),
        illness=cfg.illness_rate * (1.0 + 2.0 * elderly + 1.0 * profile.any_disability),
        benefit=np.array([0.03, 0.6, 1.0])[profile.benefit] * cfg.benefit_loss_rate,
        housing=cfg.housing_shock_rate * np.where(renting, 1.5, np.where(jeonse, 1.0, 0.2)),
        jeonse=jeonse,
        debt=cfg.debt_shock_rate
        * np.where(working_age, 1.0, 0.4)
        * np.where(low_income, 1.4, np.where(profile.income == 4, 0.6, 1.0)),
        care=cfg.care_onset_rate * (0.2 + 2.0 * elderly + 1.5 * profile.any_disability),
        isolation=cfg.isolation_rate
        * np.where(alone, np.where(elderly | profile.any_disability, 1.0, 0.5), 0.05),
        vulnerability=np.where(low_income, 1.15, np.where(profile.income == 4, 0.85, 1.0)),
        # Heating bills weigh on low-income households in winter (Dec-Feb).
        heating_burden=np.where(low_income, 0.12, 0.0).astype(np.float32),
        low_income=low_income,
    )


def process_rng(seed: int, ordinal: int, month: int) -> np.random.Generator:
    """The random stream of one partition's hidden process in one month."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(2, ordinal, month)))


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
) -> dict[str, np.ndarray]:
    """One month of the hidden process: the next state.

    The draws are the same in number and order whatever the state (common random numbers).
    ``relief`` (per household, 0..1) is the share of strain, shocks and lasting needs that
    support removes this month; None or zeros change nothing.
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
    # Debt grows from its own shocks (a loan default, a failed business) and from lasting strain;
    # care needs (frailty, dementia, a member's disability) and isolation set in and stay long.
    debt = state["debt"] * 0.95 + shock(rates.debt * economy) + 0.01 * state["strain"]
    care = state["care"] * 0.97 + shock(rates.care)
    isolation = state["isolation"] * 0.95 + shock(rates.isolation)
    shocks = job + illness + benefit_loss + housing + disaster
    base = profile.base
    strain = np.maximum(
        0.0,
        0.85 * state["strain"]
        + 0.3 * shocks * rates.vulnerability
        + 0.05 * np.maximum(base, 0.0)
        + rates.heating_burden * (winter > 1.0)
        + rng.normal(0.0, 0.15, size=n),
    )
    noise = 0.7 * state["noise"] + rng.normal(0.0, noise_innovation, size=n)
    new = {
        "job": job,
        "illness": illness,
        "benefit_loss": benefit_loss,
        "housing": housing,
        "disaster": disaster,
        "debt": debt,
        "care": care,
        "isolation": isolation,
        "strain": strain,
        "noise": noise,
    }
    if relief is not None and relief.any():
        keep = 1.0 - relief
        new = {name: v if name == "noise" else v * keep for name, v in new.items()}
    return {name: np.asarray(v, dtype=np.float32) for name, v in new.items()}


def hardship_of(profile: Profile, state: dict[str, np.ndarray]) -> np.ndarray:
    """The latent hardship score of a month (float32)."""
    weighted = sum(weight * state[name] for name, weight in WEIGHTS.items())
    return (profile.base + state["strain"] + weighted + state["noise"]).astype(np.float32)


def need_parts(profile: Profile, state: dict[str, np.ndarray]) -> np.ndarray:
    """What drives each household's hardship, by kind of need (rows in the order of
    :data:`pipeline.vocabulary.NEED_TYPES`): a lasting lack of income (the positive part of the
    baseline) and lost benefits, housing and disaster shocks, illness, care needs, job loss,
    debt and isolation. Strain is what they all build up, so it names none of them."""
    w = WEIGHTS
    return np.stack(
        [
            CHRONIC * np.maximum(profile.base, 0.0) + w["benefit_loss"] * state["benefit_loss"],
            w["housing"] * state["housing"] + w["disaster"] * state["disaster"],
            w["illness"] * state["illness"],
            w["care"] * state["care"],
            w["job"] * state["job"],
            w["debt"] * state["debt"],
            w["isolation"] * state["isolation"],
        ]
    )


def need_type_of(profile: Profile, state: dict[str, np.ndarray]) -> np.ndarray:
    """The kind of need that weighs most in each household this month (index into
    :data:`pipeline.vocabulary.NEED_TYPES`, int8)."""
    return np.argmax(need_parts(profile, state), axis=0).astype(np.int8)


def drivers_of(profile: Profile, rates: ProcessRates, state: dict[str, np.ndarray]) -> np.ndarray:
    """The hidden drivers of the crisis signals (rows in the order of
    :data:`pipeline.vocabulary.DRIVERS`)."""
    # Bills go unpaid when the household's whole burden (its hardship without the month's noise)
    # passes what an ordinary household carries, whatever caused it.
    burden = hardship_of(profile, state) - state["noise"]
    strain = np.maximum(burden - ARREARS_FLOOR, 0.0)
    return np.stack(
        [
            strain,
            state["job"],
            state["illness"],
            state["disaster"],
            state["benefit_loss"],
            state["housing"],
            state["isolation"],
            state["debt"] + 0.2 * strain,
            state["care"],
            state["illness"] * np.where(rates.low_income, 1.5, 1.0) + 0.2 * strain,
        ]
    ).astype(np.float32)


# --- support that contacts start --------------------------------------------------------------

SUPPORT_COLUMNS = (
    "household",
    "contact_month",
    "outcome_code",
    "start_month",
    "end_month",
    "effect",
)


def empty_supports() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "household": np.zeros(0, dtype=np.int64),
            "contact_month": np.zeros(0, dtype=np.int32),
            "outcome_code": pd.array([], dtype="string"),
            "start_month": np.zeros(0, dtype=np.int32),
            "end_month": np.zeros(0, dtype=np.int32),
            "effect": np.zeros(0, dtype=np.float32),
        }
    )


def register_contacts(
    supports: pd.DataFrame,
    contacts: pd.DataFrame,
    through: int,
    effect: ContactEffectConfig,
) -> pd.DataFrame:
    """The supports after adding new contacts (columns household, contact_month as a month
    index, outcome_code). A contact already registered (same household, month and outcome) is
    not added again, so passing every outcome each round is safe. Support starts at the contact
    month, or at the first month not simulated yet when the contact is dated earlier (the past is
    not rewritten), and lasts ``effect.support_months``; outcomes that link no support are kept
    with effect 0 (they are contacts all the same)."""
    new = contacts[["household", "contact_month", "outcome_code"]].drop_duplicates()
    key = ["household", "contact_month", "outcome_code"]
    if len(supports):
        known = supports[key].astype({"outcome_code": "string"})
        merged = new.astype({"outcome_code": "string"}).merge(
            known, on=key, how="left", indicator=True
        )
        new = merged.loc[merged["_merge"] == "left_only", key]
    start = np.maximum(new["contact_month"].to_numpy(dtype=np.int32), through + 1)
    added = pd.DataFrame(
        {
            "household": new["household"].to_numpy(dtype=np.int64),
            "contact_month": new["contact_month"].to_numpy(dtype=np.int32),
            "outcome_code": pd.array(new["outcome_code"].astype(str), dtype="string"),
            "start_month": start.astype(np.int32),
            "end_month": (start + effect.support_months - 1).astype(np.int32),
            "effect": np.array(
                [effect.effect(code) for code in new["outcome_code"].astype(str)], dtype=np.float32
            ),
        }
    )
    both = pd.concat([supports, added], ignore_index=True) if len(supports) else added
    return both.sort_values(key, kind="stable").reset_index(drop=True)


def relief_in(supports: pd.DataFrame, month: int, n: int) -> np.ndarray:
    """Per household: the strongest support effect active in ``month`` (0 without support)."""
    relief = np.zeros(n, dtype=np.float32)
    if not len(supports):
        return relief
    active = (supports["start_month"] <= month) & (supports["end_month"] >= month)
    rows = supports.loc[active]
    np.maximum.at(relief, rows["household"].to_numpy(dtype=np.int64), rows["effect"].to_numpy())
    return relief
