"""CLI wrapper of ``outreach report``."""

from __future__ import annotations

import argparse

from pipeline.config import Config
from pipeline.errors import EXIT_OK


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--as-of",
        help="round month YYYY-MM of a scored round (default: the next round after the window)",
    )


def run(config: Config, args: argparse.Namespace) -> int:
    from pipeline.report.stage import write_report
    from pipeline.score.command import round_as_of

    as_of = round_as_of(config, getattr(args, "as_of", None))
    result = write_report(config, as_of)
    pages = sum(1 for name in result.files if name.startswith("emd/"))
    print(
        f"report of round {result.round}: overview, {pages} 읍면동 pages"
        + (", follow-up page (visit outcomes imported)" if result.followup else "")
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
