"""CLI wrapper of ``bench``: the stages named in ``BENCH_STAGES`` are measured through the
stage registry (their ``measure`` hooks), never by importing another stage."""

from __future__ import annotations

import argparse
import json
import logging
import shutil
from collections.abc import Callable
from dataclasses import asdict

from pipeline.bench.measure import bench_stage
from pipeline.config import Config
from pipeline.datasets import OutputLayout
from pipeline.errors import EXIT_OK, UsageError
from pipeline.stages import load, parse_stage_args, run_prerequisites, stage_named

log = logging.getLogger(__name__)


# The stages bench measures, in this order; later stages read what earlier ones wrote under the
# bench's work folder. Each is run through the stage registry: its command module's
# ``measure(config, args)`` after its declared prerequisites (see :mod:`pipeline.stages`).
BENCH_STAGES: tuple[str, ...] = (
    "generate",
    "validate",
    "ingest",
    "features",
    "train",
    "score",
    "audit",  # reads only: the lineage audit of the round just scored (default re-score)
    "report",
    "simulate",  # the living loop on the generated world (make bench-simulate)
)
# What bench measures when --stages is not given: one round of the pipeline. The living loop
# runs every policy for the config's rounds (about an hour at 200,000 households): only on request.
ROUND_STAGES: tuple[str, ...] = BENCH_STAGES[: BENCH_STAGES.index("report") + 1]


def has_champion(config: Config) -> bool:
    """Whether the (bench) store has a champion to score with."""
    from pipeline.tracking import connect
    from pipeline.tracking.registry import current_champion

    return current_champion(connect(config), config.training.model_name) is not None


def measure_stage(config: Config, name: str) -> int:
    """Run one stage with its default options and prerequisites; the input rows it processed."""
    stage = stage_named(name)
    args = parse_stage_args(stage)
    if name == "score":
        # The bench's own scratch folder: earlier benchmark rounds are not kept (outside the
        # bench, --force keeps the replaced round instead).
        shutil.rmtree(OutputLayout(config.paths.output_root).rounds, ignore_errors=True)
    run_prerequisites(config, stage, args, announce=log.info, quiet=True)
    return load(stage).measure(config, args)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--households", type=int, help="size to measure (default: bench.households)"
    )
    parser.add_argument(
        "--stages",
        default=",".join(ROUND_STAGES),
        help=(
            f"comma-separated stages to measure, of {','.join(BENCH_STAGES)} "
            f"(default: {','.join(ROUND_STAGES)})"
        ),
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="runs of each stage; the record holds the median and each run (default 1)",
    )


def start_cold(config: Config, name: str) -> Callable[[], None] | None:
    """What puts the bench's work root where every run of stage ``name`` starts: ``train``
    from cold, building all its feature rounds (they are removed before each run, also when an
    earlier bench left them; each run registers a version in the same store, as a data
    scientist's next run would); the other stages start from their inputs anyway."""
    if name != "train":
        return None
    features = OutputLayout(config.paths.output_root).root / "features"

    def reset() -> None:
        shutil.rmtree(features, ignore_errors=True)

    return reset


def run(config: Config, args: argparse.Namespace) -> int:
    if args.repeat < 1:
        raise UsageError(f"bench: --repeat {args.repeat}: at least 1 run")
    households = args.households or config.bench.households
    sigungu = max(2, round(households / 90000)) if args.households else config.bench.sigungu
    low, high = config.bench.emd_per_sigungu
    work = OutputLayout(config.paths.output_root).bench_work
    bench_config = config.with_overrides(
        generator={"households": households, "sigungu": sigungu, "emd_per_sigungu": [low, high]},
        paths={
            "output_root": str(work),
            "raw_input": str(work / "raw"),
            "truth_input": str(work / "truth"),
        },
        runtime={"progress": False},
    )
    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    unknown = [s for s in stages if s not in BENCH_STAGES]
    if unknown:
        raise UsageError(
            f"bench: unknown stage(s) {', '.join(unknown)}; available: {', '.join(BENCH_STAGES)}"
        )
    log.info("bench: %d households, %d 시군구 (%d-%d 읍면동 each)", households, sigungu, low, high)
    if "score" in stages and "train" not in stages and not has_champion(bench_config):
        # Scoring needs a model: train one at this size first (it is measured as its own stage).
        log.warning(
            "bench: no champion in %s: training one before scoring", OutputLayout(work).mlflow
        )
        stages.append("train")
    for name in BENCH_STAGES:
        if name in stages:
            record = bench_stage(
                name,
                households,
                lambda n=name: measure_stage(bench_config, n),
                OutputLayout(config.paths.output_root).bench_record(name),
                repeat=args.repeat,
                before_run=start_cold(bench_config, name),
            )
            shown = {k: v for k, v in asdict(record).items() if v is not None}
            print(json.dumps(shown, ensure_ascii=False), flush=True)
    return EXIT_OK
