"""CLI wrapper of ``outreach report``."""

from __future__ import annotations

import argparse

from pipeline.config import Config
from pipeline.errors import EXIT_OK
from pipeline.months import resolve_as_of


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--as-of",
        help="round month YYYY-MM of a scored round (default: the next round after the window)",
    )


def measure(config: Config, args: argparse.Namespace) -> int:
    """Write the report (for ``outreach bench``); returns the generated households."""
    from pipeline.report.stage import write_report

    write_report(config, resolve_as_of(config.window, getattr(args, "as_of", None)))
    return config.generator.households


def run(config: Config, args: argparse.Namespace) -> int:
    from pipeline.report.simulation import SIMULATION
    from pipeline.report.stage import write_report

    as_of = resolve_as_of(config.window, getattr(args, "as_of", None))
    result = write_report(config, as_of)
    pages = sum(1 for name in result.files if name.startswith("emd/"))
    print(
        f"report of round {result.round}: overview, {pages} 읍면동 pages"
        + (", follow-up page (visit outcomes imported)" if result.followup else "")
        + (", simulation page (outreach simulate)" if SIMULATION in result.files else "")
    )
    if result.previous is None:
        print("  no previous round to compare with")
    elif result.shifted:
        print(
            f"  compared with {result.previous}: population shift (PSI above the threshold) in "
            f"{', '.join(result.shifted)}"
        )
    else:
        print(f"  compared with {result.previous}: no leading feature shifted")
    print(f"written to {result.folder / 'index.html'} in {result.seconds:.1f} s")
    return EXIT_OK
