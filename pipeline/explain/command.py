"""CLI wrapper of ``outreach explain KEY [--round YYYY-MM] [--no-pdf] [--browser PATH]``."""

from __future__ import annotations

import argparse
from pathlib import Path

from pipeline.config import Config
from pipeline.errors import EXIT_OK, UsageError
from pipeline.months import resolve_as_of


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``outreach explain``."""
    from pipeline.explain.pdf import CHROMIUM

    parser.add_argument(
        "key", metavar="KEY", help="the household key (가구 관리번호) as the round's list shows it"
    )
    parser.add_argument(
        "--round",
        metavar="YYYY-MM",
        help="round month YYYY-MM of a scored round (default: the next round after the window)",
    )
    parser.add_argument(
        "--no-pdf",
        action="store_true",
        help="write the HTML only (the PDF needs Debian's Chromium)",
    )
    parser.add_argument(
        "--browser",
        type=Path,
        metavar="PATH",
        default=CHROMIUM,
        help=f"the Chromium that prints the PDF (default {CHROMIUM})",
    )


def run(config: Config, args: argparse.Namespace) -> int:
    """Write the explanation and print where it is."""
    from pipeline.explain.facts import check_key
    from pipeline.explain.pdf import BrowserMissing
    from pipeline.explain.stage import explain_household

    key = check_key(args.key)
    as_of = resolve_as_of(config.window, args.round, option="--round")
    try:
        result = explain_household(config, as_of, key, pdf=not args.no_pdf, browser=args.browser)
    except BrowserMissing as exc:
        from pipeline.datasets.rounds import explanation_paths, round_dir

        html, _ = explanation_paths(round_dir(config, as_of), key)
        raise UsageError(
            f"explain: the PDF needs Chromium: {exc}; the HTML is written: {html} "
            "(install Debian's chromium, or run with --no-pdf for the HTML alone)"
        ) from None
    state = "listed" if result.listed else "scored, not listed"
    print(f"explanation of household {result.key} in round {result.round} ({state}):")
    print(f"  {result.html}")
    if result.pdf is not None:
        fit = f"one page, {result.density}" if result.density else "longer than one page"
        print(f"  {result.pdf} (A4, {fit})")
    return EXIT_OK
