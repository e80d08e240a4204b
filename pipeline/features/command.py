"""CLI wrapper of the ``features`` stage."""

from __future__ import annotations

import argparse

from pipeline.config import Config
from pipeline.errors import EXIT_OK
from pipeline.months import resolve_as_of


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--as-of",
        help="round month YYYY-MM, or several separated by commas, built in one pass over each "
        "partition (default: the next round after the data window)",
    )


def round_months(config: Config, text: str | None) -> list[int]:
    """The months of ``--as-of`` (one, or several separated by commas), each checked."""
    if not text:
        return [resolve_as_of(config.window, None)]
    return sorted({resolve_as_of(config.window, part.strip()) for part in text.split(",")})


def measure(config: Config, args: argparse.Namespace) -> int:
    """Build the rounds (for ``outreach bench``); returns the crisis events read."""
    from pipeline.features.stage import build_rounds

    runs = build_rounds(config, round_months(config, getattr(args, "as_of", None)))
    return sum(run.events_read for run in runs)


def run(config: Config, args: argparse.Namespace) -> int:
    from pipeline.features.stage import build_rounds

    for result in build_rounds(config, round_months(config, getattr(args, "as_of", None))):
        print(
            f"features as of {result.as_of}: {result.households:,} households × "
            f"{result.features} model inputs; {result.labelled_rows:,} labelled past visits"
        )
        print(f"written to {result.folder}")
    return EXIT_OK
