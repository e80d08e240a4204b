"""CLI wrapper of the ``ingest`` stage."""

from __future__ import annotations

import argparse
from pathlib import Path

from pipeline.catalogues import load_catalogues
from pipeline.config import Config
from pipeline.errors import EXIT_OK


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--raw-dir", type=Path, help="raw tables (default: paths.raw_input)")


def measure(config: Config, args: argparse.Namespace) -> int:
    """Ingest (for ``outreach bench``); returns the raw rows read."""
    from pipeline.ingest.keys import resolve_key
    from pipeline.ingest.stage import ingest

    raw_dir = getattr(args, "raw_dir", None) or config.paths.raw_input
    catalogues = load_catalogues(config)
    catalogue, outcomes = catalogues.indicators, catalogues.outcomes
    result = ingest(config, catalogue, outcomes, raw_dir, resolve_key(config, raw_dir))
    return sum(r["raw"] for r in result.manifest["rows"].values())


def run(config: Config, args: argparse.Namespace) -> int:
    from pipeline.ingest.keys import resolve_key
    from pipeline.ingest.stage import MANIFEST, ingest

    raw_dir = getattr(args, "raw_dir", None) or config.paths.raw_input
    key = resolve_key(config, raw_dir)
    catalogues = load_catalogues(config)
    catalogue, outcomes = catalogues.indicators, catalogues.outcomes
    result = ingest(config, catalogue, outcomes, raw_dir, key)
    rows = result.manifest["rows"]
    excluded = sum(r["excluded"] for r in rows.values())
    print(
        f"staged {rows['households']['staged']:,} households, "
        f"{rows['household_members']['staged']:,} members, "
        f"{rows['crisis_events']['staged']:,} crisis signals, "
        f"{rows['outreach_outcomes']['staged']:,} past outreach rows "
        f"(validation run {result.manifest['validation_run_id']}; "
        f"{excluded:,} quarantined rows left out)"
    )
    print(
        f"pseudonyms: {result.manifest['pseudonym']['key_source']}, "
        f"key fingerprint {result.manifest['pseudonym']['key_fingerprint']}"
    )
    print(f"staged tables: {result.staged_dir}/ ({MANIFEST})")
    return EXIT_OK
