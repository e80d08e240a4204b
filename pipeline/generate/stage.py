"""The ``generate`` stage: synthetic raw tables and the hidden truth, partition by partition."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from pipeline.catalogue import IndicatorCatalogue, load_services
from pipeline.config import Config
from pipeline.datasets import OutputLayout, TableLayout
from pipeline.datasets.raw import GENERATION_RECORD
from pipeline.datasets.truth import TRUTH_SUMMARY
from pipeline.engine import map_partitions
from pipeline.generate.process import SimulationContext
from pipeline.generate.regions import SigunguSpec, build_regions, capacity_table, regions_table
from pipeline.generate.simulate import simulate_partition
from pipeline.generate.world import (
    PENDING_EVENTS,
    SUPPORTS,
    WORLD_RECORD,
    WORLD_STATE,
    pending_frame,
    pending_to_file,
    state_frame,
    supports_to_file,
)
from pipeline.io import sha256_file, sha256_tree, staging_dir, write_json, write_parquet
from pipeline.months import format_month, parse_month

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GenerationResult:
    """What a generation run wrote, with its row counts and headline figures."""

    raw_dir: Path
    truth_dir: Path
    rows: dict[str, int]
    figures: dict[str, float]


@dataclass(frozen=True)
class _PartitionTask:
    spec: SigunguSpec
    context: SimulationContext
    raw_dir: Path
    truth_dir: Path


def simulation_context(config: Config, catalogue: IndicatorCatalogue) -> SimulationContext:
    """The shared inputs of every partition, from the configuration and the catalogue."""
    gen = config.generator
    return SimulationContext(
        seed=gen.seed,
        window_start=config.window.start_index,
        window_end=config.window.end_index,
        round_months=tuple(config.window.round_months()),
        shock_start=parse_month(gen.economic_shock.start),
        shock_end=parse_month(gen.economic_shock.end),
        shock_multiplier=gen.economic_shock.job_loss_multiplier,
        hardship=gen.hardship,
        selection=gen.selection,
        indicators=catalogue.indicators,
        contact_effect=gen.contact_effect,
        services=load_services(Path(config.paths.services)).services,
    )


def _generate_partition(task: _PartitionTask) -> dict[str, float]:
    data = simulate_partition(task.spec, task.context)
    raw = TableLayout(task.raw_dir)
    code = task.spec.code
    write_parquet(data.households, raw.partition_file("households", code))
    write_parquet(data.members, raw.partition_file("household_members", code))
    write_parquet(data.crisis_events, raw.partition_file("crisis_events", code))
    write_parquet(data.outreach_outcomes, raw.partition_file("outreach_outcomes", code))
    truth = TableLayout(task.truth_dir)
    write_parquet(data.truth, truth.partition_file("household_month", code))
    write_parquet(
        state_frame(data.world, data.households["household_key"]),
        truth.partition_file(WORLD_STATE, code),
    )
    pending = pending_frame(data.world.pending, task.context.indicators)
    write_parquet(pending_to_file(pending), truth.partition_file(PENDING_EVENTS, code))
    write_parquet(supports_to_file(data.supports), truth.partition_file(SUPPORTS, code))
    return data.stats


def world_settings(config: Config) -> dict[str, object]:
    """The settings that make a world: the generator's, except the contact effect, which may be
    changed between advances (the history's is recorded apart: :func:`history_contact_effect`)."""
    return config.generator.model_dump(mode="json", exclude={"contact_effect"})


def history_contact_effect(config: Config) -> dict[str, object]:
    """The contact effect the generated history was drawn with (its past rounds' support)."""
    return config.generator.contact_effect.model_dump(mode="json")


def generate(
    config: Config,
    catalogue: IndicatorCatalogue,
    target_root: Path,
    *,
    catalogue_path: Path | None = None,
) -> GenerationResult:
    """Generate raw tables into ``target_root/raw`` and the truth into ``target_root/truth``.

    Both folders are built beside their final place and swapped in only when every partition
    succeeded, so a failed run leaves the previous data untouched.
    """
    gen = config.generator
    specs = build_regions(gen.seed, gen.households, gen.sigungu, gen.emd_per_sigungu)
    context = simulation_context(config, catalogue)
    raw_final = OutputLayout(target_root).raw
    truth_final = OutputLayout(target_root).truth
    log.info(
        "generating %d households in %d 시군구 partitions, %s..%s, seed %d",
        gen.households,
        len(specs),
        config.window.start,
        config.window.end,
        gen.seed,
    )
    with staging_dir(raw_final) as raw_dir, staging_dir(truth_final) as truth_dir:
        write_parquet(regions_table(specs), TableLayout(raw_dir).small_table_file("regions"))
        write_parquet(
            capacity_table(specs, gen.selection.capacity_share),
            TableLayout(raw_dir).small_table_file("district_capacity"),
        )
        tasks = [_PartitionTask(spec, context, raw_dir, truth_dir) for spec in specs]
        stats = map_partitions(
            _generate_partition,
            tasks,
            runtime=config.runtime,
            description="generate",
        )
        totals: dict[str, float] = {}
        for part in stats:
            for key, value in part.items():
                totals[key] = totals.get(key, 0.0) + float(value)
        rows = {
            "regions": sum(1 + len(s.emds) for s in specs) + 17,
            "district_capacity": sum(len(s.emds) for s in specs),
            "households": int(totals["households"]),
            "household_members": int(totals["members"]),
            "crisis_events": int(totals["events"]),
            "outreach_outcomes": int(totals["outcome_rows"]),
            "truth_household_month": int(totals["household_months"]),
        }
        figures = {
            "in_need_share": totals["in_need_household_months"] / totals["household_months"],
            "signals_per_household_month": totals["events"] / totals["household_months"],
            "rule_precision_at_capacity": totals["rule_in_need"] / max(totals["rule_listed"], 1),
            "past_lists_precision": totals["listed_in_need"] / max(totals["listed"], 1),
        }
        provenance = {
            "generator": world_settings(config),
            "history_contact_effect": history_contact_effect(config),
            "window": config.window.model_dump(mode="json"),
            "indicator_catalogue_sha256": sha256_file(catalogue_path) if catalogue_path else None,
            "rows": {k: v for k, v in rows.items() if not k.startswith("truth")},
        }
        write_json(
            {**provenance, "files_sha256": sha256_tree(raw_dir)}, raw_dir / GENERATION_RECORD
        )
        write_json(
            {
                "through": format_month(context.window_end),
                "generator": world_settings(config),
                "history_contact_effect": provenance["history_contact_effect"],
                "indicator_catalogue_sha256": provenance["indicator_catalogue_sha256"],
                "advances": [],
            },
            truth_dir / WORLD_RECORD,
        )
        write_json(
            {"rows": rows, "figures": figures, "files_sha256": sha256_tree(truth_dir)},
            truth_dir / TRUTH_SUMMARY,
        )
    log.info("wrote %s and %s", raw_final, truth_final)
    return GenerationResult(raw_final, truth_final, rows, figures)
