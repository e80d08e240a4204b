"""CLI wrapper of ``bench``: each measured stage registers a runner in ``BENCH_STAGES``."""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from pipeline.bench.measure import bench_stage
from pipeline.config import Config
from pipeline.errors import EXIT_OK, UsageError

log = logging.getLogger(__name__)


def _bench_generate(config: Config, work: Path) -> int:
    from pipeline.catalogue import load_indicators
    from pipeline.generate.stage import generate

    catalogue = load_indicators(config.paths.indicators)
    return generate(config, catalogue, work).rows["households"]


def _bench_validate(config: Config, work: Path) -> int:
    from pipeline.catalogue import load_indicators, load_outcomes
    from pipeline.datasets import OutputLayout
    from pipeline.errors import DataError
    from pipeline.validate.report import write_run
    from pipeline.validate.stage import PASSED, run_validation

    config = config.with_overrides(paths={"output_root": str(work)})
    result = run_validation(
        config,
        load_indicators(config.paths.indicators),
        load_outcomes(config.paths.outcomes),
        config.paths.raw_input,
    )
    write_run(result, config, OutputLayout(work))
    if result.status != PASSED:
        raise DataError(f"bench: validation failed: {result.failures[0].line()}")
    return sum(result.rows.values())


def _bench_ingest(config: Config, work: Path) -> int:
    from pipeline.catalogue import load_indicators, load_outcomes
    from pipeline.ingest.keys import resolve_key
    from pipeline.ingest.stage import ingest

    config = config.with_overrides(paths={"output_root": str(work)})
    raw = config.paths.raw_input
    result = ingest(
        config,
        load_indicators(config.paths.indicators),
        load_outcomes(config.paths.outcomes),
        raw,
        resolve_key(config, raw),
    )
    return sum(r["raw"] for r in result.manifest["rows"].values())


def _bench_features(config: Config, work: Path) -> int:
    from pipeline.features.command import default_as_of
    from pipeline.features.stage import build_round

    return build_round(config, default_as_of(config)).events_read


def _bench_train(config: Config, work: Path) -> int:
    from pipeline.train.command import default_as_of
    from pipeline.train.stage import train

    # Builds the feature folders of past rounds it lacks (through the features stage) first.
    return train(config, default_as_of(config)).rows


def _bench_score(config: Config, work: Path) -> int:
    import shutil

    from pipeline.features.command import default_as_of
    from pipeline.score.stage import score_round

    # The bench's own scratch folder: earlier benchmark rounds are not kept (outside the bench,
    # --force keeps the replaced round instead).
    shutil.rmtree(work / "rounds", ignore_errors=True)
    return score_round(config, default_as_of(config)).counts["households"]


def _bench_report(config: Config, work: Path) -> int:
    from pipeline.features.command import default_as_of
    from pipeline.report.stage import write_report

    write_report(config, default_as_of(config))
    return config.generator.households


def has_champion(config: Config) -> bool:
    """Whether the (bench) store has a champion to score with."""
    from mlflow.exceptions import MlflowException

    from pipeline.tracking import connect

    try:
        connect(config).get_model_version_by_alias(config.training.model_name, "champion")
    except MlflowException:
        return False
    return True


# Stage name -> runner(config, work_dir) returning the input rows it processed. Runners run in
# this order; later stages read what earlier ones wrote under work_dir.
BENCH_STAGES: dict[str, Callable[[Config, Path], int]] = {
    "generate": _bench_generate,
    "validate": _bench_validate,
    "ingest": _bench_ingest,
    "features": _bench_features,
    "train": _bench_train,
    "score": _bench_score,
    "report": _bench_report,
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--households", type=int, help="size to measure (default: bench.households)"
    )
    parser.add_argument(
        "--stages",
        default=",".join(BENCH_STAGES),
        help=f"comma-separated stages to measure (default: {','.join(BENCH_STAGES)})",
    )


def run(config: Config, args: argparse.Namespace) -> int:
    households = args.households or config.bench.households
    sigungu = max(2, round(households / 90000)) if args.households else config.bench.sigungu
    low, high = config.bench.emd_per_sigungu
    out_dir = config.paths.output_root / "bench"
    work = out_dir / "work"
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
        log.warning("bench: no champion in %s: training one before scoring", work / "mlflow")
        stages.append("train")
    for name, runner in BENCH_STAGES.items():
        if name in stages:
            record = bench_stage(name, households, lambda r=runner: r(bench_config, work), out_dir)
            print(json.dumps(asdict(record), ensure_ascii=False), flush=True)
    return EXIT_OK
