"""CLI wrapper of ``bench``: each measured stage registers a runner in ``BENCH_STAGES``."""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from pipeline.bench import bench_stage
from pipeline.config import Config
from pipeline.errors import EXIT_OK, UsageError

log = logging.getLogger(__name__)


def _bench_generate(config: Config, work: Path) -> int:
    from pipeline.catalogue import load_indicators
    from pipeline.generate.stage import generate

    catalogue = load_indicators(config.paths.indicators)
    return generate(config, catalogue, work).rows["households"]


# Stage name -> runner(config, work_dir) returning the input rows it processed. Runners run in
# this order; later stages read what earlier ones wrote under work_dir.
BENCH_STAGES: dict[str, Callable[[Config, Path], int]] = {
    "generate": _bench_generate,
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--households", type=int, help="size to measure (default: bench.households)")
    parser.add_argument(
        "--stages",
        default=",".join(BENCH_STAGES),
        help=f"comma-separated stages to measure (default: {','.join(BENCH_STAGES)})",
    )


def run(config: Config, args: argparse.Namespace) -> int:
    households = args.households or config.bench.households
    if args.households:
        sigungu = max(2, round(households / 90_000))
    else:
        sigungu = config.bench.sigungu
    low, high = config.bench.emd_per_sigungu
    out_dir = config.paths.output_root / "bench"
    work = out_dir / "work"
    bench_config = config.with_overrides(
        generator={"households": households, "sigungu": sigungu, "emd_per_sigungu": [low, high]},
        paths={"raw_input": str(work / "raw"), "truth_input": str(work / "truth")},
        runtime={"progress": False},
    )
    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    unknown = [s for s in stages if s not in BENCH_STAGES]
    if unknown:
        raise UsageError(
            f"bench: unknown stage(s) {', '.join(unknown)}; available: {', '.join(BENCH_STAGES)}"
        )
    log.info("bench: %d households, %d 시군구 (%d-%d 읍면동 each)", households, sigungu, low, high)
    for name, runner in BENCH_STAGES.items():
        if name in stages:
            record = bench_stage(name, households, lambda r=runner: r(bench_config, work), out_dir)
            print(json.dumps(asdict(record), ensure_ascii=False), flush=True)
    return EXIT_OK
