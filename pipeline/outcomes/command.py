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
from pipeline.textsafe import shown_or_withheld

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
    from pipeline.outcomes.importer import NOTHING_NEW, NOTHING_VALID

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
    if result.report is not None:
        # The file is Korean, for the office (행 번호, its own headers, 사유); the terminal English.
        lines.append(f"  rejected rows (in Korean, for the office) -> {result.report}")
        shown = result.rejections.head(SHOWN_REJECTIONS)
        for r in shown.itertuples(index=False):
            key = shown_or_withheld(r.household_key)  # never a name, phone or resident number
            lines.append(f"    row {r.row} {r.field}{f' {key}' if key else ''}: {r.reason}")
        if len(result.rejections) > len(shown):
            lines.append(f"    ... {len(result.rejections) - len(shown)} more in the report")
    return lines


def run(config: Config, args: argparse.Namespace) -> int:
    if args.action == "import-calls":
        return _run_calls(config, args)
    if args.action != "import":  # argparse only offers "import" and "import-calls"
        raise UsageError(f"outcomes: unknown action {args.action!r}")
    from pipeline.outcomes.checks import RowValidator
    from pipeline.outcomes.importer import import_file

    catalogue = load_catalogues(config).outcomes
    validator = RowValidator()
    failed = 0
    for path in args.files:
        try:
            result = import_file(config, path, validator, catalogue)
        except DataError as exc:
            print(f"outreach: data error: {exc}", file=sys.stderr)
            failed += 1
            continue
        for line in _summary(result):
            print(line)
        if not result.ok:
            failed += 1
    if failed:
        print(f"{failed} of {len(args.files)} file(s) could not be imported", file=sys.stderr)
        return EXIT_DATA
    return EXIT_OK


def _run_calls(config: Config, args: argparse.Namespace) -> int:
    """``outcomes import-calls FILE...``: each file on its own; exit 1 if any failed."""
    from pipeline.outcomes.calls import import_calls_file, summary_lines
    from pipeline.outcomes.checks import RowValidator

    catalogue = load_catalogues(config).outcomes
    validator = RowValidator()
    failed = 0
    for path in args.files:
        try:
            result = import_calls_file(config, path, validator, catalogue)
        except DataError as exc:
            print(f"outreach: data error: {exc}", file=sys.stderr)
            failed += 1
            continue
        for line in summary_lines(result, SHOWN_REJECTIONS):
            print(line)
        if not result.ok:
            failed += 1
    if failed:
        print(f"{failed} of {len(args.files)} file(s) could not be imported", file=sys.stderr)
        return EXIT_DATA
    return EXIT_OK
