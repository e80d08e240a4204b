"""``outreach generate --advance MONTHS``: move a generated world on, atomically.

Reads the saved state in ``<root>/truth`` (:mod:`pipeline.generate.world`), continues every
partition's hidden process by some months (:func:`pipeline.generate.world.advance_partition`),
and appends the new months to the raw crisis signals and to the truth. The raw and truth
folders are rebuilt beside their place (unchanged files linked, changed ones rewritten) and
swapped in only when every partition succeeded: a failure leaves the previous tables and state
exactly as they were.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.catalogue import IndicatorCatalogue
from pipeline.config import Config, ContactEffectConfig
from pipeline.datasets import OutputLayout, TableLayout
from pipeline.datasets.raw import GENERATION_RECORD
from pipeline.datasets.truth import TRUTH_SUMMARY, TRUTH_TABLE, UNTREATED_TABLE
from pipeline.engine import map_partitions
from pipeline.errors import DataError, UsageError
from pipeline.generate.process import SimulationContext
from pipeline.generate.regions import SigunguSpec, build_regions
from pipeline.generate.stage import simulation_context, world_settings
from pipeline.generate.world import (
    PENDING_EVENTS,
    SUPPORTS,
    WORLD_RECORD,
    WORLD_STATE,
    advance_partition,
    month_text,
    pending_frame,
    pending_from_file,
    pending_to_file,
    state_frame,
    supports_from_file,
    supports_to_file,
    truth_frame,
    untreated_frame,
    untreated_need,
    world_from_frames,
)
from pipeline.io import (
    read_json_file,
    sha256_of_json,
    sha256_tree,
    staging_dir,
    table_from_frame,
    write_json,
    write_parquet,
)
from pipeline.months import format_month, parse_month, parse_month_series

log = logging.getLogger(__name__)

CONTACT_COLUMNS = ("household_key", "contact_month", "outcome_code")
_CHANGED_RAW = ("crisis_events",)
_CHANGED_TRUTH = (TRUTH_TABLE, UNTREATED_TABLE, WORLD_STATE, PENDING_EVENTS, SUPPORTS)


@dataclass(frozen=True)
class AdvanceResult:
    """What an advance wrote: the months added and the rows appended."""

    raw_dir: Path
    truth_dir: Path
    first: str
    through: str
    events_added: int
    truth_rows_added: int
    contacts_registered: int
    in_need_share_by_month: dict[str, float]


@dataclass(frozen=True)
class _AdvanceTask:
    spec: SigunguSpec
    context: SimulationContext
    months: int
    effect: ContactEffectConfig
    contacts: pd.DataFrame  # household_key, contact_month (index), outcome_code
    old_raw: Path
    old_truth: Path
    raw_dir: Path
    truth_dir: Path


def world_record(root: Path) -> dict:
    """``truth/_world.json`` of the world under ``root``; DataError when there is none."""
    path = OutputLayout(root).truth / WORLD_RECORD
    if not path.is_file():
        raise DataError(
            f"{path} not found: the data under {root} has no saved world state (generate it again "
            "with this version of `outreach generate`)"
        )
    return read_json_file(path)


def check_contacts(contacts: pd.DataFrame, outcome_codes: list[str]) -> pd.DataFrame:
    """Contacts as a frame (household_key, contact_month as a month index, outcome_code);
    DataError naming the problem and example rows otherwise."""
    missing = [c for c in CONTACT_COLUMNS if c not in contacts.columns]
    if missing:
        raise DataError(f"contacts: missing column(s) {', '.join(missing)}")
    frame = contacts[list(CONTACT_COLUMNS)].copy()
    frame["household_key"] = frame["household_key"].astype("string")
    frame["outcome_code"] = frame["outcome_code"].astype("string")
    month = parse_month_series(frame["contact_month"])
    bad = month.isna() | frame["household_key"].isna()
    if bad.any():
        examples = frame.loc[bad].head(3).to_dict("records")
        raise DataError(
            f"contacts: {int(bad.sum())} row(s) without a key or a YYYY-MM month: {examples}"
        )
    unknown = ~frame["outcome_code"].isin(outcome_codes)
    if unknown.any():
        codes = sorted(frame.loc[unknown, "outcome_code"].astype(str).unique())[:5]
        raise DataError(
            f"contacts: unknown outcome code(s) {', '.join(codes)} (configs/outcomes.yaml)"
        )
    frame["contact_month"] = month.to_numpy(dtype=np.int32)
    return frame.drop_duplicates().reset_index(drop=True)


def _link_tree(source: Path, target: Path, skip: tuple[str, ...]) -> None:
    """Hard-link (or copy) every file of ``source`` into ``target``, except the top-level
    entries named in ``skip``. Files are only ever replaced, never changed in place, so a link
    is as safe as a copy."""
    for path in sorted(source.rglob("*")):
        relative = path.relative_to(source)
        if relative.parts[0] in skip or not path.is_file():
            continue
        destination = target / relative
        destination.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(path, destination)
        except OSError:
            shutil.copy2(path, destination)


def _append(old_file: Path, new_rows: pa.Table, new_file: Path) -> None:
    """``old_file``'s rows and ``new_rows`` to ``new_file`` (only the new rows when there is no
    old file: a table the first advance starts)."""
    if not old_file.is_file():
        write_parquet(new_rows, new_file)
        return
    table = pq.read_table(old_file)
    combined = pa.concat_tables([table, new_rows.cast(table.schema)]).combine_chunks()
    write_parquet(combined, new_file)


def _advance_partition(task: _AdvanceTask) -> dict[str, object]:
    spec, code = task.spec, task.spec.code
    old_raw, old_truth = TableLayout(task.old_raw), TableLayout(task.old_truth)
    raw, truth = TableLayout(task.raw_dir), TableLayout(task.truth_dir)
    state = pd.read_parquet(old_truth.partition_file(WORLD_STATE, code))
    pending = pending_from_file(pd.read_parquet(old_truth.partition_file(PENDING_EVENTS, code)))
    supports = supports_from_file(pd.read_parquet(old_truth.partition_file(SUPPORTS, code)))
    through = task.context.window_end - task.months
    world = world_from_frames(state, through, pending)
    keys = state["household_key"].astype("string")
    position = pd.Series(np.arange(len(keys)), index=pd.Index(keys))
    household = position.reindex(pd.Index(task.contacts["household_key"])).to_numpy()
    unknown = task.contacts.loc[np.isnan(household), "household_key"].astype(str).tolist()
    contacts = pd.DataFrame(
        {
            "household": household[~np.isnan(household)].astype(np.int64),
            "contact_month": task.contacts["contact_month"].to_numpy()[~np.isnan(household)],
            "outcome_code": task.contacts["outcome_code"].to_numpy()[~np.isnan(household)],
        }
    )
    moved = advance_partition(
        spec, task.context, world, supports, contacts, task.months, task.effect
    )
    members = pq.read_table(
        old_raw.partition_file("household_members", code), columns=["resident_id"]
    ).column("resident_id")
    indicators = task.context.indicators
    events = moved.events
    agencies = np.asarray([ind.agency_ko for ind in indicators], dtype=object)
    codes = np.asarray([ind.code for ind in indicators], dtype=object)
    new_events = pa.table(
        {
            "resident_id": members.take(pa.array(events["person"].to_numpy())),
            "indicator_code": pa.array(codes[events["indicator"].to_numpy()], type=pa.string()),
            "event_month": pa.array(month_text(events["event_month"]), type=pa.string()),
            "reported_month": pa.array(month_text(events["reported_month"]), type=pa.string()),
            "value": pa.array(events["value"].to_numpy(), type=pa.float64()),
            "source_agency": pa.array(agencies[events["indicator"].to_numpy()], type=pa.string()),
        }
    )
    _append(
        old_raw.partition_file("crisis_events", code),
        new_events,
        raw.partition_file("crisis_events", code),
    )
    first = through + 1
    new_truth = truth_frame(keys, first, moved.hardship, moved.need_type, moved.in_need)
    _append(
        old_truth.partition_file(TRUTH_TABLE, code),
        table_from_frame(new_truth),
        truth.partition_file(TRUTH_TABLE, code),
    )
    _append(
        old_truth.partition_file(UNTREATED_TABLE, code),
        table_from_frame(untreated_frame(keys, first, moved.untreated_in_need)),
        truth.partition_file(UNTREATED_TABLE, code),
    )
    write_parquet(state_frame(moved.world, keys), truth.partition_file(WORLD_STATE, code))
    write_parquet(
        pending_to_file(pending_frame(moved.world.pending, indicators)),
        truth.partition_file(PENDING_EVENTS, code),
    )
    write_parquet(supports_to_file(moved.supports), truth.partition_file(SUPPORTS, code))
    return {
        "events": len(events),
        "truth_rows": len(new_truth),
        "in_need": moved.in_need.sum(axis=1).tolist(),
        "households": len(keys),
        "contacts": len(contacts),
        "unknown": unknown,
    }


def _saved_world(config: Config, target_root: Path, months: int) -> tuple[OutputLayout, dict, dict]:
    """The layout, world record and generation record of the world to advance; UsageError or
    DataError naming what does not fit (months, window.end, a half-swapped advance, settings)."""
    if months < 1:
        raise UsageError(f"--advance needs a positive number of months, got {months}")
    layout = OutputLayout(target_root)
    record = world_record(target_root)
    if config.window.end_index != parse_month(record["through"]):
        raise UsageError(
            f"the world in {layout.truth} runs through {record['through']}, but the config's "
            f"window.end is {config.window.end}: advance from the data's end (set window.end: "
            f"{record['through']})"
        )
    generation = read_json_file(layout.raw / GENERATION_RECORD)
    if generation["window"]["end"] != record["through"]:
        raise DataError(
            f"{layout.raw} runs through {generation['window']['end']} but the world state in "
            f"{layout.truth} through {record['through']}: they were not swapped in together "
            "(an advance was killed); generate the world again"
        )
    settings = world_settings(config)
    if settings != record["generator"]:
        differ = sorted(k for k in settings if settings[k] != record["generator"].get(k))
        raise UsageError(
            f"the world in {layout.truth} was generated with other generator settings "
            f"({', '.join('generator.' + k for k in differ)}); advance it with the config it was "
            "generated with (generator.contact_effect may change)"
        )
    return layout, record, generation


@dataclass(frozen=True)
class _PreviewTask:
    spec: SigunguSpec
    context: SimulationContext
    months: int
    truth: Path


def _untreated_partition(task: _PreviewTask) -> pd.DataFrame:
    truth = TableLayout(task.truth)
    code = task.spec.code
    state = pd.read_parquet(truth.partition_file(WORLD_STATE, code))
    pending = pending_from_file(pd.read_parquet(truth.partition_file(PENDING_EVENTS, code)))
    supports = supports_from_file(pd.read_parquet(truth.partition_file(SUPPORTS, code)))
    through = task.context.window_end - task.months
    world = world_from_frames(state, through, pending)
    need = untreated_need(task.spec, task.context, world, supports, task.months)
    return untreated_frame(state["household_key"].astype("string"), through + 1, need)


def untreated_preview(
    config: Config, catalogue: IndicatorCatalogue, target_root: Path, months: int
) -> pd.DataFrame:
    """The need of the next ``months`` months had no new contact been made (household_key,
    month as YYYY-MM, in_need), computed from the saved state without changing the world: what
    the advance with this round's contacts then writes to ``truth/untreated_need``. The
    simulated field work draws its visits from it (docs/simulation.md)."""
    layout, record, _ = _saved_world(config, target_root, months)
    through = parse_month(record["through"])
    gen = config.generator
    specs = build_regions(gen.seed, gen.households, gen.sigungu, gen.emd_per_sigungu)
    context = replace(simulation_context(config, catalogue), window_end=through + months)
    tasks = [_PreviewTask(spec, context, months, layout.truth) for spec in specs]
    parts = map_partitions(
        _untreated_partition, tasks, runtime=config.runtime, description="untreated need"
    )
    return pd.concat(parts, ignore_index=True)


def advance(
    config: Config,
    catalogue: IndicatorCatalogue,
    target_root: Path,
    months: int,
    contacts: pd.DataFrame | None = None,
    *,
    outcome_codes: list[str] | None = None,
) -> AdvanceResult:
    """Advance the world under ``target_root`` by ``months`` months from ``config.window.end``.

    ``config.window.end`` must be the month the world runs through (``truth/_world.json``): it
    is "now" before advancing, and the new data runs through ``window.end + months`` (a config
    set to that month reads it). ``contacts``: household_key, contact_month (YYYY-MM),
    outcome_code. Deterministic from the seed, the saved state and the contacts.
    """
    layout, record, generation = _saved_world(config, target_root, months)
    through = parse_month(record["through"])
    codes = outcome_codes if outcome_codes is not None else []
    frame = (
        check_contacts(contacts, codes)
        if contacts is not None
        else pd.DataFrame({c: pd.Series(dtype="string") for c in CONTACT_COLUMNS}).astype(
            {"contact_month": np.int32}
        )
    )
    gen = config.generator
    specs = build_regions(gen.seed, gen.households, gen.sigungu, gen.emd_per_sigungu)
    end = through + months
    context = replace(simulation_context(config, catalogue), window_end=end)
    prefix = frame["household_key"].astype(str).str.slice(1, 4)
    log.info(
        "advancing the world in %s from %s by %d month(s)", target_root, record["through"], months
    )
    with staging_dir(layout.raw) as raw_dir, staging_dir(layout.truth) as truth_dir:
        _link_tree(layout.raw, raw_dir, (*_CHANGED_RAW, GENERATION_RECORD))
        _link_tree(layout.truth, truth_dir, (*_CHANGED_TRUTH, WORLD_RECORD, TRUTH_SUMMARY))
        tasks = [
            _AdvanceTask(
                spec=spec,
                context=context,
                months=months,
                effect=gen.contact_effect,
                contacts=frame.loc[prefix == f"{spec.ordinal % 1000:03d}"].reset_index(drop=True),
                old_raw=layout.raw,
                old_truth=layout.truth,
                raw_dir=raw_dir,
                truth_dir=truth_dir,
            )
            for spec in specs
        ]
        results = map_partitions(
            _advance_partition, tasks, runtime=config.runtime, description="advance"
        )
        unknown = [key for r in results for key in r["unknown"]]
        routed = sum(len(t.contacts) for t in tasks)
        if unknown or routed != len(frame):
            examples = (
                unknown[:5]
                or sorted(
                    set(frame["household_key"].astype(str))
                    - set().union(*(set(t.contacts["household_key"].astype(str)) for t in tasks))
                )[:5]
            )
            raise DataError(
                f"contacts: {len(frame) - routed + len(unknown)} household key(s) not in this "
                f"world, e.g. {', '.join(examples)}"
            )
        households = sum(int(r["households"]) for r in results)
        in_need = np.sum([r["in_need"] for r in results], axis=0)
        share = {
            format_month(through + 1 + t): round(float(v) / households, 6)
            for t, v in enumerate(in_need)
        }
        events_added = sum(int(r["events"]) for r in results)
        truth_rows = sum(int(r["truth_rows"]) for r in results)
        advance_entry = {
            "from": record["through"],
            "through": format_month(end),
            "months": months,
            "contacts": len(frame),
            "contacts_sha256": sha256_of_json(
                frame.assign(contact_month=frame["contact_month"].map(format_month))
                .astype(str)
                .to_dict("list")
            ),
            "contact_effect": gen.contact_effect.model_dump(mode="json"),
            "events_added": events_added,
            "truth_rows_added": truth_rows,
        }
        generation["window"] = {**generation["window"], "end": format_month(end)}
        generation["rows"] = {**generation["rows"]}
        generation["rows"]["crisis_events"] = (
            int(generation["rows"]["crisis_events"]) + events_added
        )
        generation["advances"] = [
            *generation.get("advances", []),
            {k: advance_entry[k] for k in ("from", "through", "months", "events_added")},
        ]
        generation["files_sha256"] = sha256_tree(raw_dir)
        write_json(generation, raw_dir / GENERATION_RECORD)
        write_json(
            {
                **record,
                "through": format_month(end),
                "advances": [*record["advances"], {**advance_entry, "in_need_share": share}],
            },
            truth_dir / WORLD_RECORD,
        )
        summary = read_json_file(layout.truth / TRUTH_SUMMARY)
        rows = {**summary["rows"]}
        rows["crisis_events"] = int(rows["crisis_events"]) + events_added
        rows["truth_household_month"] = int(rows["truth_household_month"]) + truth_rows
        summary = {
            **summary,
            "rows": rows,
            "through": format_month(end),
            "in_need_share_by_advanced_month": {
                **summary.get("in_need_share_by_advanced_month", {}),
                **share,
            },
        }
        summary.pop("files_sha256", None)
        write_json({**summary, "files_sha256": sha256_tree(truth_dir)}, truth_dir / TRUTH_SUMMARY)
    log.info("the world now runs through %s", format_month(end))
    return AdvanceResult(
        raw_dir=layout.raw,
        truth_dir=layout.truth,
        first=format_month(through + 1),
        through=format_month(end),
        events_added=events_added,
        truth_rows_added=truth_rows,
        contacts_registered=len(frame),
        in_need_share_by_month=share,
    )
