"""CLI wrapper of the ``validate`` stage."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from pipeline.catalogues import load_catalogues
from pipeline.config import Config
from pipeline.datasets import OutputLayout
from pipeline.errors import EXIT_OK, DataError
from pipeline.validate.retention import check_retention

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--raw-dir", type=Path, help="raw tables (default: paths.raw_input)")


def measure(config: Config, args: argparse.Namespace) -> int:
    """Validate and keep the results (for ``outreach bench``); returns the rows checked."""
    from pipeline.validate.report import write_run
    from pipeline.validate.stage import PASSED, run_validation
    from pipeline.validate.verdict import headline

    raw_dir = getattr(args, "raw_dir", None) or config.paths.raw_input
    check_retention(config, Path(raw_dir))
    catalogues = load_catalogues(config)
    result = run_validation(
        config,
        catalogues.indicators,
        catalogues.outcomes,
        raw_dir,
    )
    write_run(result, config, OutputLayout(config.paths.output_root))
    if result.status != PASSED:
        raise DataError(f"bench: validation failed: {headline(result.failures)}")
    return sum(result.rows.values())


def run(config: Config, args: argparse.Namespace) -> int:
    from pipeline.validate.report import SUMMARY_HTML, write_run
    from pipeline.validate.stage import PASSED, run_validation
    from pipeline.validate.verdict import headline, summary_lines

    raw_dir = getattr(args, "raw_dir", None) or config.paths.raw_input
    check_retention(config, Path(raw_dir))  # refuses raw data older than the retention period
    catalogues = load_catalogues(config)
    catalogue, outcomes = catalogues.indicators, catalogues.outcomes
    result = run_validation(config, catalogue, outcomes, raw_dir)
    folder = write_run(result, config, OutputLayout(config.paths.output_root))
    rows = sum(result.rows.values())
    if result.status != PASSED:
        failures = result.failures
        lines = "\n".join(f"  {line}" for line in summary_lines(failures))
        raise DataError(
            f"validation failed: {headline(failures)} ({len(failures)} check(s) stop the run; "
            f"results: {folder / SUMMARY_HTML})\n{lines}"
        )
    rejected = len(result.rejected)
    print(
        f"validation passed: {len(result.files)} raw files, {rows:,} rows, "
        f"{len(result.results):,} checks evaluated"
    )
    if rejected:
        print(f"  {rejected:,} rows set aside (quarantine); ingest will leave them out")
    print(f"results: {folder}/ ({SUMMARY_HTML})")
    return EXIT_OK
