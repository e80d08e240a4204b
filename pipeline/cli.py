"""The ``outreach`` command line: ``outreach [--config FILE] STAGE [--as-of YYYY-MM] [...]``.

Exit codes: 0 success, 1 the data or a check failed, 2 usage or configuration error.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path

from pipeline.config import Config, ConfigError, load_config
from pipeline.errors import EXIT_DATA, EXIT_OK, EXIT_USAGE, DataError, UsageError

log = logging.getLogger("outreach")

STAGE_HELP: dict[str, str] = {
    "generate": "write synthetic raw tables and the hidden truth (Parquet, per 시군구)",
    "bench": "measure stages at a chosen size; print and write outputs/bench/*.json",
}


def _quiet_telemetry() -> None:
    # MLflow and friends must never call home; this has to happen before they are imported.
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DO_NOT_TRACK", "true")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # exit code 2 with a one-line message
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"outreach: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser; ``outreach --help`` lists every stage."""
    stage_lines = "\n".join(f"  {name:<10} {text}" for name, text in STAGE_HELP.items())
    parser = _Parser(
        prog="outreach",
        description="Find households in hidden welfare need and write outreach lists.",
        epilog=f"stages:\n{stage_lines}\n\nexit codes: 0 success, 1 data or check failed, "
        "2 usage or configuration error",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", type=Path, help="YAML config (default: embedded defaults)")
    parser.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    sub = parser.add_subparsers(dest="stage", metavar="STAGE", parser_class=_Parser)

    gen = sub.add_parser("generate", help=STAGE_HELP["generate"])
    gen.add_argument(
        "--output-dir",
        type=Path,
        help="folder to write raw/ and truth/ into (default: the output root)",
    )
    gen.add_argument("--households", type=int, help="override generator.households")
    gen.add_argument("--seed", type=int, help="override generator.seed")
    gen.add_argument(
        "--force",
        action="store_true",
        help="allow replacing the configured input data (e.g. the committed sample)",
    )

    bench = sub.add_parser("bench", help=STAGE_HELP["bench"])
    bench.add_argument("--households", type=int, help="size to measure (default: bench.households)")
    bench.add_argument(
        "--stages", default="generate", help="comma-separated stages to measure (default: generate)"
    )
    return parser


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )


def _run_generate(config: Config, args: argparse.Namespace) -> int:
    from pipeline.catalogue import load_indicators
    from pipeline.generate.stage import generate

    overrides: dict[str, object] = {}
    if args.households is not None:
        overrides["households"] = args.households
    if args.seed is not None:
        overrides["seed"] = args.seed
    if overrides:
        config = config.with_overrides(generator=overrides)
    target = args.output_dir or config.paths.output_root
    protected = config.paths.raw_input.resolve()
    if (target / "raw").resolve() == protected and not args.force:
        raise UsageError(
            f"{target / 'raw'} is the configured input data (paths.raw_input); "
            "pass --force to regenerate it"
        )
    catalogue = load_indicators(config.paths.indicators)
    result = generate(config, catalogue, target, catalogue_path=config.paths.indicators)
    print(f"generated {result.rows['households']:,} households, "
          f"{result.rows['crisis_events']:,} crisis signals, "
          f"{result.rows['outreach_outcomes']:,} past outreach rows")
    print(f"raw tables:   {result.raw_dir}")
    print(f"hidden truth: {result.truth_dir} (for evaluation only)")
    return EXIT_OK


def _run_bench(config: Config, args: argparse.Namespace) -> int:
    import json

    from pipeline.bench import bench_stage
    from pipeline.catalogue import load_indicators
    from pipeline.generate.stage import generate

    households = args.households or config.bench.households
    sigungu = max(2, round(households / 90_000)) if args.households else config.bench.sigungu
    low, high = config.generator.emd_per_sigungu
    bench_config = config.with_overrides(
        generator={"households": households, "sigungu": sigungu},
        runtime={"progress": False},
    )
    out_dir = config.paths.output_root / "bench"
    work = out_dir / "work"
    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    unknown = [s for s in stages if s not in ("generate",)]
    if unknown:
        raise UsageError(f"bench: unknown stage(s) {', '.join(unknown)}; available: generate")
    catalogue = load_indicators(config.paths.indicators)
    log.info("bench: %d households, %d 시군구 (%d-%d 읍면동 each)", households, sigungu, low, high)
    records = []
    if "generate" in stages:
        records.append(
            bench_stage(
                "generate",
                households,
                lambda: generate(bench_config, catalogue, work).rows["households"],
                out_dir,
            )
        )
    for record in records:
        print(json.dumps(asdict(record), ensure_ascii=False))
    return EXIT_OK


COMMANDS: dict[str, Callable[[Config, argparse.Namespace], int]] = {
    "generate": _run_generate,
    "bench": _run_bench,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``outreach`` console script; returns the exit code."""
    _quiet_telemetry()
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.stage is None:
        parser.print_help()
        return EXIT_USAGE
    try:
        config = load_config(args.config)
        if args.no_progress:
            config = config.with_overrides(runtime={"progress": False})
        _setup_logging(args.log_level or config.runtime.log_level)
        return COMMANDS[args.stage](config, args)
    except ConfigError as exc:
        print(f"outreach: configuration error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except UsageError as exc:
        print(f"outreach: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except DataError as exc:
        print(f"outreach: data error: {exc}", file=sys.stderr)
        return EXIT_DATA
    except KeyboardInterrupt:
        print("outreach: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
