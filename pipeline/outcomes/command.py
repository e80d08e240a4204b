"""CLI wrapper of ``outreach outcomes import FILE [FILE ...]``.

Exit codes: 0 when every file gave at least one valid answer (rows may have been rejected: the
report is printed and written); 1 when a file could not be imported at all (unreadable, no
round folder, no valid filled-in row); 2 for a usage error.

A rejected row is named by its row number and column; its household key is shown only when it is
a plain code (:func:`pipeline.textsafe.shown_or_withheld`), never a name, phone or resident number.
The rejection file written for the office is Korean
(:func:`pipeline.outcomes.checks.rejection_table`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipeline.catalogues import load_catalogues
from pipeline.config import Config
from pipeline.errors import EXIT_DATA, EXIT_OK, DataError, UsageError

SHOWN_REJECTIONS = 10


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(
        dest="action", metavar="ACTION", parser_class=type(parser), required=True
    )
    importer = actions.add_parser(
        "import",
        help="check returned lists (CSV or XLSX) and merge their answers into outputs/outcomes/",
        description="Check lists that caseworkers filled in and sent back, and merge the valid "
        "answers into <output_root>/outcomes/round=YYYY-MM/outcomes.parquet. Notes are never "
        "read. Rejected rows are reported by row, field and reason, and written to a Korean "
        "rejection file for the office (docs/outcomes.md).",
    )
    importer.add_argument("files", nargs="+", type=Path, metavar="FILE", help="returned list")
    calls = actions.add_parser(
        "import-calls",
        help="check the call service's results (CSV) and merge them into outputs/outcomes/",
        description="Check the results the automated first-contact call service sent back for "
        "the phone tier (callcentre/calls_<시군구>.csv filled in: call_result, call_date) and "
        "merge the valid ones into <output_root>/outcomes/round=YYYY-MM/calls.parquet. "
        "Rejected rows are reported by row, field and reason, and written to a Korean "
        "rejection file (docs/callcentre.md).",
    )
    calls.add_argument("files", nargs="+", type=Path, metavar="FILE", help="call results file")


def _summary(result) -> list[str]:
    from pipeline.outcomes.importer import NOTHING_NEW, NOTHING_VALID, rejection_lines

    c = result.counts
    lines = [
        f"{result.file.name} (round {result.round}, sha256 {result.sha256[:12]}): "
        f"{c['rows']} rows, {c['not_filled_in']} not filled in yet (skipped), "
        f"{c['accepted']} accepted ({c['added_by_caseworker']} added by the caseworker), "
        f"{c['rejected']} rejected"
    ]
    skipped = getattr(result, "overrides", {}).get("skipped", 0)
    if skipped:
        lines.append(f"  {skipped} listed household(s) skipped by the caseworker (no label)")
    if result.status == NOTHING_VALID:
        lines.append("  nothing valid in this file: nothing imported")
    elif result.status == NOTHING_NEW:
        lines.append("  nothing new: every accepted answer was imported before")
    else:
        lines.append(
            f"  {c['new']} new, {c['replaced']} replaced (earlier answers corrected by this "
            f"file), {c['unchanged']} unchanged -> {result.outcomes_file}"
        )
    if c["repeated"]:
        lines.append(f"  {c['repeated']} repeated row(s) with the same answer counted once")
    # The file is Korean, for the office (행 번호, its own headers, 사유); the terminal English.
    return lines + rejection_lines(result, "the office", SHOWN_REJECTIONS)


def run(config: Config, args: argparse.Namespace) -> int:
    from pipeline.outcomes.calls import import_calls_files, summary_lines
    from pipeline.outcomes.importer import import_files

    if args.action == "import":
        return _import_all(config, args.files, import_files, _summary)
    if args.action == "import-calls":
        return _import_all(
            config,
            args.files,
            import_calls_files,
            lambda result: summary_lines(result, SHOWN_REJECTIONS),
        )
    raise UsageError(f"outcomes: unknown action {args.action!r}")  # argparse offers only those


def _import_all(config: Config, files: list[Path], importer, summarise) -> int:
    """Import the files (``importer``: returned lists or call results; per file a result or the
    DataError that stopped it), printing ``summarise``'s lines for each in the order given;
    exit 1 if any file could not be imported."""
    from pipeline.outcomes.checks import RowValidator

    catalogue = load_catalogues(config).outcomes
    failed = 0
    for result in importer(config, files, RowValidator(), catalogue):
        if isinstance(result, DataError):
            print(f"outreach: data error: {result}", file=sys.stderr)
            failed += 1
            continue
        for line in summarise(result):
            print(line)
        if not result.ok:
            failed += 1
    if failed:
        print(f"{failed} of {len(files)} file(s) could not be imported", file=sys.stderr)
        return EXIT_DATA
    return EXIT_OK
