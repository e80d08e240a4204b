"""CLI wrapper of the ``features`` stage."""

from __future__ import annotations

import argparse

from pipeline.config import Config
from pipeline.errors import EXIT_OK, UsageError
from pipeline.months import format_month, parse_month


def default_as_of(config: Config) -> int:
    """The next round after the data window: the round the pipeline prepares by default."""
    rounds = config.window.round_months()
    return rounds[-1] + config.window.round_interval_months


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--as-of",
        help="round month YYYY-MM (default: the next round after the data window)",
    )


def run(config: Config, args: argparse.Namespace) -> int:
    from pipeline.features.stage import build_round

    if args.as_of:
        try:
            as_of = parse_month(args.as_of)
        except ValueError as exc:
            raise UsageError(f"--as-of: {exc}") from None
    else:
        as_of = default_as_of(config)
    if as_of > config.window.end_index + 1:
        raise UsageError(
            f"--as-of {format_month(as_of)} lies beyond the data window's end "
            f"{config.window.end} (+1 month): nothing is known there yet"
        )
    result = build_round(config, as_of)
    print(
        f"features as of {result.as_of}: {result.households:,} households × {result.features} "
        f"model inputs; {result.labelled_rows:,} labelled past visits"
    )
    print(f"written to {result.folder}")
    return EXIT_OK
