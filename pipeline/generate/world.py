"""The world moves on: the hidden process of one 시군구 continued past the data window, purely.

``outreach generate`` saves, per partition, the state the monthly process carries at the last
generated month (each household's profile, baseline and the components of its process), the
signals already drawn whose reported month lies after it, and the supports that contacts started.
:func:`advance_partition` continues from that state by a number of months:

- every month draws from its own random stream, derived from the seed, the partition and the
  month (``SeedSequence(seed, spawn_key=(2, ordinal, month))`` for the process, and one stream per
  indicator and month for its signals, keyed by the indicator's code). Advancing by 2 and then 2
  months gives the same rows as advancing by 4 at once, and a change in one household (a contact)
  changes no other household's draws (common random numbers);
- signals of earlier months whose reported month falls into the advanced months are delivered
  now; sources start and stop by the catalogue's ``available_from`` and ``available_until``;
- contacts linked to support (``public_support``, ``private_support``) relieve a share of the
  household's strain and shocks every month of support (``generator.contact_effect``).

Written down in docs/synthetic_data.md, "The world moves on".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from pipeline.catalogue import Indicator
from pipeline.config import ContactEffectConfig
from pipeline.generate.process import (
    PROCESS,
    Profile,
    SimulationContext,
    hardship_of,
    process_rates,
    process_rng,
    register_contacts,
    relief_in,
    step_month,
)
from pipeline.generate.regions import SigunguSpec
from pipeline.generate.signals import SIGNAL_COLUMNS, live_month, signal_masks
from pipeline.generate.simulate import WorldState
from pipeline.months import format_month, parse_month_series
from pipeline.vocabulary import NEED_TYPES

# The saved state, in the truth folder (hidden like the truth; partitioned by 시군구).
WORLD_STATE = "world_state"  # one row per household: profile and process components
PENDING_EVENTS = "pending_events"  # signals drawn whose reported month is still to come
SUPPORTS = "supports"  # contacts registered, and the support they started
WORLD_RECORD = "_world.json"  # through which month the world runs, its generator settings

PROFILE_COLUMNS: dict[str, str] = {
    "emd_index": "int16",
    "size": "int8",
    "income": "int8",
    "tenure": "int8",
    "benefit": "int8",
    "head_age": "int16",
    "any_disability": "bool",
    "single_parent": "bool",
    "member_offset": "int64",
    "adults": "int16",
    "minors": "int16",
    "oldest": "int16",
    "base": "float32",
    "payment_habit": "float32",
}
PENDING_COLUMNS = SIGNAL_COLUMNS
# --- the saved state as frames (one row per household, pending signal, support) ---------------


def state_frame(world: WorldState, household_key: pd.Series) -> pd.DataFrame:
    """One row per household: its key, profile and the process components at ``through``."""
    profile = world.profile
    columns: dict[str, object] = {"household_key": household_key.astype("string").to_numpy()}
    for name, dtype in PROFILE_COLUMNS.items():
        columns[name] = np.asarray(getattr(profile, name)).astype(dtype)
    for name in PROCESS:
        columns[name] = np.asarray(world.state[name], dtype=np.float32)
    frame = pd.DataFrame(columns)
    frame["household_key"] = frame["household_key"].astype("string")
    return frame


def world_from_frames(frame: pd.DataFrame, through: int, pending: pd.DataFrame) -> WorldState:
    """The state :func:`state_frame` wrote, read back (pending: :func:`pending_frame`'s rows)."""
    profile = Profile(**{name: frame[name].to_numpy() for name in PROFILE_COLUMNS})
    state = {name: frame[name].to_numpy(dtype=np.float32) for name in PROCESS}
    return WorldState(through, profile, state, {c: pending[c].to_numpy() for c in pending})


def pending_frame(
    pending: dict[str, np.ndarray], indicators: tuple[Indicator, ...]
) -> pd.DataFrame:
    """Signals drawn but not reported yet; indicators by code (so the catalogue may change)."""
    codes = np.asarray([ind.code for ind in indicators], dtype=object)
    if "indicator_code" in pending:
        code = np.asarray(pending["indicator_code"], dtype=object)
    else:
        code = codes[np.asarray(pending["indicator"], dtype=np.int64)]
    frame = pd.DataFrame(
        {
            "household": np.asarray(pending["household"], dtype=np.int64),
            "person": np.asarray(pending["person"], dtype=np.int64),
            "indicator_code": pd.array(code, dtype="string"),
            "event_month": np.asarray(pending["event_month"], dtype=np.int32),
            "reported_month": np.asarray(pending["reported_month"], dtype=np.int32),
            "value": np.asarray(pending["value"], dtype=np.float64),
        }
    )
    # (person, indicator, event month) is unique: the order is total, whatever came in.
    return frame.sort_values(
        ["reported_month", "indicator_code", "person", "event_month"], kind="stable"
    ).reset_index(drop=True)


# --- advancing ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class AdvancedPartition:
    """One partition moved on by some months: the new state, signals delivered and truth."""

    world: WorldState  # pending holds indicator codes (``indicator_code``)
    supports: pd.DataFrame
    events: pd.DataFrame  # household, person, indicator (index), event_month, reported_month, value
    hardship: np.ndarray  # [months, households], float32
    need_type: np.ndarray  # [months, households], int8: index into NEED_TYPES
    in_need: np.ndarray  # [months, households], bool
    untreated_in_need: np.ndarray  # [months, households], bool: without the new contacts


def untreated_need(
    spec: SigunguSpec,
    ctx: SimulationContext,
    world: WorldState,
    supports: pd.DataFrame,
    months: int,
) -> np.ndarray:
    """In need per advanced month and household had no new contact been made: the process of
    :func:`advance_partition` from the same state and random streams, relieved only by the
    supports already registered (``supports``). Months × households, bool; pure. Signals are not
    drawn: they do not feed the process."""
    profile = world.profile
    n = len(profile)
    rates = process_rates(profile, ctx.hardship)
    state = {name: np.asarray(values, dtype=np.float32) for name, values in world.state.items()}
    need = np.zeros((months, n), dtype=bool)
    for t, month in enumerate(range(world.through + 1, world.through + months + 1)):
        rng = process_rng(ctx.seed, spec.ordinal, month)
        state = step_month(
            month,
            state,
            profile,
            rates,
            ctx,
            rng,
            len(spec.emds),
            relief=relief_in(supports, month, n),
        )
        need[t] = hardship_of(profile, state) > ctx.hardship.need_threshold
    return need


def advance_partition(
    spec: SigunguSpec,
    ctx: SimulationContext,
    world: WorldState,
    supports: pd.DataFrame,
    contacts: pd.DataFrame,
    months: int,
    effect: ContactEffectConfig,
) -> AdvancedPartition:
    """Continue one partition's hidden process from ``world.through`` by ``months`` months.

    ``contacts``: household (index in the partition), contact_month (month index), outcome_code.
    A pure function of its arguments: the same state, contacts and seed give the same result.
    ``untreated_in_need`` is the need of the same months without these contacts
    (:func:`untreated_need`): the need a round's lists are judged on, before their own visits
    could relieve it.
    """
    profile = world.profile
    n = len(profile)
    rates = process_rates(profile, ctx.hardship)
    masks = signal_masks(profile, ctx.indicators)
    registered = supports
    supports = register_contacts(supports, contacts, world.through, effect)
    first, last = world.through + 1, world.through + months
    state = {name: np.asarray(values, dtype=np.float32) for name, values in world.state.items()}
    hardship = np.zeros((months, n), dtype=np.float32)
    need_type = np.zeros((months, n), dtype=np.int8)
    drawn: list[dict[str, np.ndarray]] = [
        {
            name: np.asarray(values)
            for name, values in pending_frame(world.pending, ctx.indicators).items()
        }
    ]
    n_emd = len(spec.emds)
    for t, month in enumerate(range(first, last + 1)):
        relief = relief_in(supports, month, n)
        lived = live_month(month, state, profile, rates, ctx, masks, spec.ordinal, n_emd, relief)
        state, hardship[t], need_type[t] = lived.state, lived.hardship, lived.need_type
        drawn.append(lived.signals)
    signals = {name: np.concatenate([d[name] for d in drawn]) for name in PENDING_COLUMNS}
    codes = [ind.code for ind in ctx.indicators]
    index = pd.Index(codes).get_indexer(pd.Index(signals["indicator_code"].astype(str)))
    known = index >= 0  # a source dropped from the catalogue delivers nothing more
    due = known & (signals["reported_month"] <= last)
    later = known & (signals["reported_month"] > last)
    events = pd.DataFrame(
        {
            "household": signals["household"][due].astype(np.int64),
            "person": signals["person"][due].astype(np.int64),
            "indicator": index[due].astype(np.int64),
            "event_month": signals["event_month"][due].astype(np.int32),
            "reported_month": signals["reported_month"][due].astype(np.int32),
            "value": signals["value"][due].astype(np.float64),
        }
    )
    order = np.lexsort(
        (events["event_month"], events["person"], events["indicator"], events["reported_month"])
    )
    events = events.take(order).reset_index(drop=True)
    pending = {name: values[later] for name, values in signals.items()}
    in_need = hardship > ctx.hardship.need_threshold
    untreated = (
        untreated_need(spec, ctx, world, registered, months)
        if len(supports) > len(registered)
        else in_need
    )
    return AdvancedPartition(
        world=WorldState(last, profile, state, pending),
        supports=supports,
        events=events,
        hardship=hardship,
        need_type=need_type,
        in_need=in_need,
        untreated_in_need=untreated,
    )


def _household_months(household_key: pd.Series, first: int, months: int) -> dict[str, object]:
    """The key and month columns of month-by-month rows from ``first``, households in order."""
    n = len(household_key)
    month_labels = np.array([format_month(m) for m in range(first, first + months)], dtype=object)
    return {
        "household_key": pd.array(
            np.tile(household_key.astype(str).to_numpy(), months), dtype="string"
        ),
        "month": pd.array(np.repeat(month_labels, n), dtype="string"),
    }


def truth_frame(
    household_key: pd.Series,
    first: int,
    hardship: np.ndarray,
    need_type: np.ndarray,
    in_need: np.ndarray,
) -> pd.DataFrame:
    """Truth rows of consecutive months from ``first``, month by month, households in order."""
    return pd.DataFrame(
        {
            **_household_months(household_key, first, hardship.shape[0]),
            "hardship": np.round(hardship.reshape(-1), 2).astype(np.float32),
            "in_need": in_need.reshape(-1),
            "need_type": pd.array(
                np.asarray(NEED_TYPES, dtype=object)[need_type.reshape(-1)], dtype="string"
            ),
        }
    )


def untreated_frame(household_key: pd.Series, first: int, in_need: np.ndarray) -> pd.DataFrame:
    """Rows of the untreated need (``truth/untreated_need``) of consecutive months from
    ``first``: household_key, month, in_need; month by month, households in order."""
    return pd.DataFrame(
        {
            **_household_months(household_key, first, in_need.shape[0]),
            "in_need": in_need.reshape(-1),
        }
    )


# --- the files of the saved state (month indexes written as YYYY-MM) --------------------------


def month_text(values: np.ndarray) -> np.ndarray:
    """``YYYY-MM`` strings of month indexes (object array), formatting each distinct month once."""
    values = np.asarray(values, dtype=np.int64)
    distinct, inverse = np.unique(values, return_inverse=True)
    return np.asarray([format_month(m) for m in distinct], dtype=object)[inverse.reshape(-1)]


def _months_to_text(values: pd.Series) -> pd.Series:
    return pd.Series(month_text(values.to_numpy()), index=values.index, dtype="string")


def _months_from_text(values: pd.Series) -> np.ndarray:
    return parse_month_series(values).to_numpy(dtype=np.int32)


def pending_to_file(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.copy()
    for column in ("event_month", "reported_month"):
        out[column] = _months_to_text(frame[column])
    return out


def pending_from_file(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.copy()
    for column in ("event_month", "reported_month"):
        out[column] = _months_from_text(frame[column])
    out["indicator_code"] = out["indicator_code"].astype("string")
    return out


def supports_to_file(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.copy()
    for column in ("contact_month", "start_month", "end_month"):
        out[column] = _months_to_text(frame[column])
    return out


def supports_from_file(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.copy()
    for column in ("contact_month", "start_month", "end_month"):
        out[column] = _months_from_text(frame[column])
    out["household"] = out["household"].astype(np.int64)
    out["outcome_code"] = out["outcome_code"].astype("string")
    out["effect"] = out["effect"].astype(np.float32)
    return out
