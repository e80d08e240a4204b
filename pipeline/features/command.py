"""CLI wrapper of the ``features`` stage."""

from __future__ import annotations

import argparse

from pipeline.config import Config
from pipeline.errors import EXIT_OK
from pipeline.months import resolve_as_of


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--as-of",
        help="round month YYYY-MM (default: the next round after the data window)",
    )


def measure(config: Config, args: argparse.Namespace) -> int:
    """Build the round (for ``outreach bench``); returns the crisis events read."""
    from pipeline.features.stage import build_round

    as_of = resolve_as_of(config.window, getattr(args, "as_of", None))
    return build_round(config, as_of).events_read


def run(config: Config, args: argparse.Namespace) -> int:
    from pipeline.features.stage import build_round

    result = build_round(config, resolve_as_of(config.window, getattr(args, "as_of", None)))
    print(
        f"features as of {result.as_of}: {result.households:,} households × {result.features} "
        f"model inputs; {result.labelled_rows:,} labelled past visits"
    )
    print(f"written to {result.folder}")
    return EXIT_OK
