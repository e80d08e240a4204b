"""``outreach retention``: destroy household-level data older than ``retention.period_months``
(``--dry-run``: list what would go, change nothing); a destruction record goes to the ledger.
The work is in :mod:`pipeline.retention.stage`; docs/retention.md."""

from __future__ import annotations

import argparse
from datetime import date
from pathlib import Path

from pipeline.config import Config
from pipeline.datasets.raw import retention_cut, retention_reference
from pipeline.errors import EXIT_OK, UsageError
from pipeline.months import format_month, parse_month
from pipeline.retention.plan import shown_path
from pipeline.retention.stage import Outcome, retain


def _today(text: str) -> str:
    """``YYYY-MM-DD`` or ``YYYY-MM``: the reference date of the period."""
    try:
        if len(text) == 10:
            date.fromisoformat(text)
        else:
            parse_month(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--today {text!r}: expected YYYY-MM-DD") from None
    return text


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``outreach retention``."""
    parser.add_argument(
        "--today",
        type=_today,
        help="reference date YYYY-MM-DD (default: retention.today; for synthetic data the "
        "month after window.end; else today's date)",
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="list what would be destroyed; change nothing"
    )


def run(config: Config, args: argparse.Namespace) -> int:
    """Destroy (or list) what the retention period no longer allows; print what went."""
    text = getattr(args, "today", None)
    if text:
        try:
            today = parse_month(text[:7])
        except ValueError:
            raise UsageError(f"retention: reference date {text!r} is not YYYY-MM-DD") from None
    else:  # retention.today, the synthetic world's present, or this month
        today = retention_reference(config)
        text = format_month(today)
    cut = retention_cut(config, today)
    dry_run = bool(getattr(args, "dry_run", False))
    outcome = retain(config, text, cut, dry_run=dry_run)
    _print(config, outcome, dry_run)
    return EXIT_OK


def _print(config: Config, outcome: Outcome, dry_run: bool) -> None:
    root = Path(config.paths.output_root)
    if outcome.resumed is not None:
        print(
            f"finished the interrupted retention run of {outcome.resumed['destroyed_at']} "
            f"({outcome.resumed['rows']:,} rows, {outcome.resumed['files']:,} files)"
        )
    period = config.retention.period_months
    cut = format_month(outcome.cut)
    if not outcome.actions:
        print(f"retention: nothing older than {period} months (before {cut}) to destroy")
        return
    verb = "would destroy" if dry_run else "destroyed"
    print(
        f"retention: {verb} {outcome.rows:,} rows in {outcome.files:,} files of months before "
        f"{cut} (older than {period} months)"
    )
    for dataset, files, rows in outcome.per_dataset():
        print(f"  {dataset}: {files:,} files, {rows:,} rows")
    if dry_run:
        for action in outcome.actions:
            if action.kind == "manifest":
                continue
            rows = f", {action.rows:,} rows" if action.rows else ""
            print(f"    {action.kind} {shown_path(action.path, root)}{rows}")
        print("dry run: nothing was changed")
    elif outcome.record is not None:
        print(f"destruction record in the ledger (run {outcome.record['run'][:12]})")
