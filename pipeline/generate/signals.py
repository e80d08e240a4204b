"""Crisis signals the hidden process emits, month by month: which households an indicator can
concern, the chance of a signal, the person it is about, its reporting lag and its value.

Each indicator draws each month from its own stream (seed, partition, month and the indicator's
code), with draws of a fixed size (every household it can concern), so a household's signals
depend on its own state only, and adding an indicator changes no other indicator's signals.
Written down in docs/synthetic_data.md, "Crisis signals".
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

from pipeline.catalogue import Indicator
from pipeline.generate.process import (
    DRIVER_CAP,
    ProcessRates,
    Profile,
    SimulationContext,
    drivers_of,
    hardship_of,
    need_type_of,
    process_rng,
    step_month,
)
from pipeline.months import calendar_month
from pipeline.vocabulary import DRIVERS, TENURES

SIGNAL_TARGETS = ("head", "adult", "elderly", "child", "member")
SIGNAL_COLUMNS = (
    "household",
    "person",
    "indicator_code",
    "event_month",
    "reported_month",
    "value",
)
_DRIVER_INDEX = {name: i for i, name in enumerate(DRIVERS)}
_WINTER_UTILITY = 1.3  # utility arrears and cut-offs rise with heating bills


def signal_rng(seed: int, ordinal: int, month: int, code: str) -> np.random.Generator:
    """The random stream of one indicator's signals in one partition and month."""
    key = zlib.crc32(code.encode("utf-8"))
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(3, ordinal, month, key)))


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
        if ind.synthetic.alone:
            mask &= profile.size == 1
        masks.append(mask)
    return masks


def delivers(ind: Indicator, month: int) -> bool:
    """Whether the indicator's source delivers signals of ``month`` (its availability dates)."""
    start, end = ind.available_from_index, ind.available_until_index
    return (start is None or month >= start) and (end is None or month <= end)


def signal_probability(
    ind: Indicator, drivers: np.ndarray, month: int, payment_habit: np.ndarray
) -> tuple[np.ndarray, ...]:
    """The capped driver of an indicator in one month and its emission probability (a bill left
    unpaid, ``habit``, lapses by habit too: its false-alarm rate scales with the household's)."""
    em = ind.synthetic
    x = np.minimum(drivers[_DRIVER_INDEX[em.driver]], DRIVER_CAP)
    seasonal = (
        _WINTER_UTILITY if ind.group == "utilities" and calendar_month(month) in (12, 1, 2) else 1.0
    )
    base = em.base * payment_habit if em.habit else em.base
    return x, (base + em.slope * x) * seasonal


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


def empty_signals() -> dict[str, np.ndarray]:
    return {
        "household": np.zeros(0, np.int64),
        "person": np.zeros(0, np.int64),
        "indicator_code": np.zeros(0, dtype=object),
        "event_month": np.zeros(0, np.int32),
        "reported_month": np.zeros(0, np.int32),
        "value": np.zeros(0),
    }


def month_signals(
    profile: Profile,
    masks: list[np.ndarray],
    drivers: np.ndarray,
    month: int,
    indicators: tuple[Indicator, ...],
    seed: int,
    ordinal: int,
) -> dict[str, np.ndarray]:
    """Signals of one month (columns of :data:`SIGNAL_COLUMNS`), at most one per household and
    indicator, each indicator from its own stream with draws of a fixed size."""
    parts: dict[str, list[np.ndarray]] = {c: [] for c in SIGNAL_COLUMNS}
    for k, ind in enumerate(indicators):
        if not delivers(ind, month):
            continue
        rng = signal_rng(seed, ordinal, month, ind.code)
        idx = np.flatnonzero(masks[k])
        x, p = signal_probability(ind, drivers, month, profile.payment_habit)
        u_hit = rng.random(idx.size, dtype=np.float32)
        u_person = rng.random(idx.size)
        u_lag = rng.random(idx.size)
        values = draw_values(ind.synthetic.value, x[idx].astype(np.float64), rng)
        hit = u_hit < p[idx]
        household = idx[hit]
        target = np.full(household.size, SIGNAL_TARGETS.index(ind.synthetic.target))
        parts["household"].append(household)
        parts["person"].append(attribute_person(profile, household, target, u_person[hit]))
        parts["indicator_code"].append(np.full(household.size, ind.code, dtype=object))
        parts["event_month"].append(np.full(household.size, month, dtype=np.int32))
        lag = draw_lag(ind.synthetic.lag, u_lag[hit])
        parts["reported_month"].append((month + lag).astype(np.int32))
        parts["value"].append(np.asarray(values, dtype=np.float64)[hit])
    if not parts["household"]:
        return empty_signals()
    return {name: np.concatenate(values) for name, values in parts.items()}


@dataclass(frozen=True)
class LivedMonth:
    """One month of a partition's world: the process after it, and what it showed."""

    state: dict[str, np.ndarray]
    hardship: np.ndarray  # float32 per household
    need_type: np.ndarray  # int8 per household (index into NEED_TYPES)
    signals: dict[str, np.ndarray]  # drawn this month (columns of SIGNAL_COLUMNS)


def live_month(
    month: int,
    state: dict[str, np.ndarray],
    profile: Profile,
    rates: ProcessRates,
    ctx: SimulationContext,
    masks: list[np.ndarray],
    ordinal: int,
    n_emd: int,
    relief: np.ndarray | None,
) -> LivedMonth:
    """A month as generation and the advance both live it: the process steps from the month's
    own stream (support relieving ``relief``), then its hardship, kind of need and signals."""
    rng = process_rng(ctx.seed, ordinal, month)
    state = step_month(month, state, profile, rates, ctx, rng, n_emd, relief=relief)
    drivers = drivers_of(profile, rates, state)
    return LivedMonth(
        state,
        hardship_of(profile, state),
        need_type_of(profile, state),
        month_signals(profile, masks, drivers, month, ctx.indicators, ctx.seed, ordinal),
    )
