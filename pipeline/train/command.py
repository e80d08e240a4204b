"""CLI wrapper of ``outreach train``."""

from __future__ import annotations

import argparse

from pipeline.config import Config
from pipeline.errors import EXIT_OK, UsageError
from pipeline.months import format_month, parse_month


def default_as_of(config: Config) -> int:
    """The round after the data window: the model that scores the next list."""
    rounds = config.window.round_months()
    return rounds[-1] + config.window.round_interval_months


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--as-of",
        help="train with what is known at this round, YYYY-MM (default: the next round after "
        "the data window)",
    )


def run(config: Config, args: argparse.Namespace) -> int:
    from pipeline.train.stage import train

    as_of = default_as_of(config)
    if getattr(args, "as_of", None):
        try:
            as_of = parse_month(args.as_of)
        except ValueError as exc:
            raise UsageError(f"--as-of: {exc}") from None
    if as_of > config.window.end_index + 1:
        raise UsageError(
            f"--as-of {format_month(as_of)} lies beyond the data window's end {config.window.end}"
        )
    result = train(config, as_of)
    s = result.summary.set_index("model")
    print(f"trained {result.model_name} version {result.version} in {result.seconds:.1f} s")
    column = "truth_emd_precision_mean"
    if column not in s.columns:
        column = "observed_emd_precision_mean"
    print(f"backtest mean {column} (per 읍면동 capacity cut):")
    for model, row in s.iterrows():
        print(f"  {model:<24} {row[column]:.3f}")
    status = "champion" if result.champion else "challenger"
    print(f"version {result.version} is {status}: {result.reason}")
    print(f"MLflow run {result.run_id}")
    return EXIT_OK
