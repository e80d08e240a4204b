"""The command ``outreach audit [PATH]``: its arguments, and the chain printed one line per
link (details below a failed one), then a verdict; ``--household KEY``: that household's row,
lists, re-computed score and reasons before the round's chain (:mod:`pipeline.audit.household`);
``measure`` for ``outreach bench``.

Exit codes: 0 every link verifies; 1 a link failed (the line says which and why); 2 PATH is not
found or not a round, a list or a manifest, or the household KEY is not one of the round.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.config import Config
from pipeline.errors import EXIT_DATA, EXIT_OK, UsageError

if TYPE_CHECKING:
    from pipeline.audit.findings import Finding
    from pipeline.audit.stage import AuditReport
    from pipeline.audit.target import AuditTarget

log = logging.getLogger(__name__)

MAX_DETAILS = 20
MARK = {
    "ok": "ok",
    "failed": "FAILED",
    "unverifiable": "unverifiable",
    "skipped": "skipped",
    "destroyed": "destroyed",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "path",
        nargs="?",
        metavar="PATH",
        help="a round folder (outputs/rounds/YYYY-MM), a list file (CSV or XLSX) in its lists/ "
        "folder, the round's manifest.json, or a round month YYYY-MM "
        "(default: the round `outreach score` writes by default)",
    )
    parser.add_argument(
        "--round",
        type=Path,
        metavar="DIR",
        help="the round folder of a list file kept outside it (e.g. a copy sent to an office)",
    )
    parser.add_argument(
        "--sample",
        type=int,
        metavar="N",
        help="rows to re-score with the recorded model (default: scoring.audit_sample)",
    )
    parser.add_argument(
        "--full",
        action="store_true",
        help="re-score every household of the round (or of the list), not a sample",
    )
    parser.add_argument(
        "--household",
        metavar="KEY",
        help="one household of the round PATH (a round folder or YYYY-MM): its scored row, its "
        "list rows, its score re-computed, its reasons and the round's chain",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="print the report as one JSON object (same exit codes) instead of lines",
    )


def measure(config: Config, args: argparse.Namespace) -> int:
    """Audit the default round with the default re-score (for ``outreach bench``); returns the
    round's scored households. A round that does not verify is logged as a warning."""
    from pipeline.audit.facts import Facts
    from pipeline.audit.stage import audit_facts
    from pipeline.audit.target import resolve_target

    target = resolve_target(config, getattr(args, "path", None), getattr(args, "round", None))
    full = bool(getattr(args, "full", False))
    facts = Facts(config, target, getattr(args, "sample", None), full)
    report = audit_facts(facts)
    if not report.passed:  # measured all the same (every link ran); the figure says so
        log.warning(
            "audit of round %s failed: %s: run `outreach audit` on it for the reasons",
            report.round,
            ", ".join(report.failed_links),
        )
    for finding in report.findings:
        log.info("audit %s: %s %s", finding.link, finding.status, finding.message)
    return 0 if facts.scores is None else len(facts.scores)


def run(config: Config, args: argparse.Namespace) -> int:
    from pipeline.audit.stage import audit
    from pipeline.audit.target import resolve_target

    sample = getattr(args, "sample", None)
    if sample is not None and sample < 1:
        raise UsageError("audit: --sample must be at least 1")
    full = bool(getattr(args, "full", False))
    if full and sample is not None:
        raise UsageError("audit: --full re-scores every row: give --full or --sample, not both")
    target = resolve_target(config, getattr(args, "path", None), getattr(args, "round", None))
    key = getattr(args, "household", None)
    if key is not None:
        return _household(config, target, key, sample, full, bool(getattr(args, "json", False)))
    report = audit(config, target, sample, full)
    if getattr(args, "json", False):
        print(json.dumps(report.as_dict(), ensure_ascii=False, indent=2))
        return EXIT_OK if report.passed else EXIT_DATA
    print(f"audit of {target.given}")
    return _print_chain(report)


def _household(
    config: Config, target: AuditTarget, key: str, sample: int | None, full: bool, as_json: bool
) -> int:
    """``--household KEY``: the household's row, lists, re-score and reasons, then the chain."""
    from pipeline.audit.facts import Facts
    from pipeline.audit.household import audit_household, describe_list, describe_row

    if target.list_file is not None:
        raise UsageError("audit: --household needs a round (folder or YYYY-MM), not a list file")
    household = audit_household(Facts(config, target, sample, full), key)
    report = household.audit
    assert report is not None
    if as_json:
        data = report.as_dict()
        data["household"] = household.as_dict()
        data["verdict"] = "passed" if household.passed else "failed"
        print(json.dumps(data, ensure_ascii=False, indent=2))
        return EXIT_OK if household.passed else EXIT_DATA
    print(f"audit of household {key} in {target.given}")
    print(f"  row          {describe_row(household.row)}")
    if household.list_rows:
        for relative, cells in household.list_rows.items():
            print(f"  list         {describe_list(relative, cells)}")
    else:
        print("  list         not on a list of this round")
    for i, reason in enumerate(household.reasons()):
        print(f"  {'reasons' if i == 0 else '':<12} {reason}")
    return _print_chain(report, household.finding)


def _print_chain(report: AuditReport, household: Finding | None = None) -> int:
    """The round's link lines (after the household's own, when given) and the verdict; the
    exit code."""
    store = f"MLflow store {report.tracking_uri}"
    if report.recorded_tracking_uri and report.recorded_tracking_uri != report.tracking_uri:
        store += f" (the round recorded {report.recorded_tracking_uri})"
    print(f"round {report.round or '?'}; {store}")
    findings = [*([household] if household else []), *report.findings]
    width = max(len(f.link) for f in findings)
    for finding in findings:
        print(f"  {MARK[finding.status]:<12} {finding.link:<{width}}  {finding.message}")
        more = finding.details[1:]  # the first is the line's message
        for line in more[:MAX_DETAILS]:
            print(f"  {'':<12} {'':<{width}}    - {line}")
        if len(more) > MAX_DETAILS:
            print(f"  {'':<12} {'':<{width}}    … {len(more) - MAX_DETAILS} more")
    failed = [f.link for f in findings if not f.passed]
    if not failed:
        print(f"verdict: PASSED: every link of round {report.round} verifies")
        return EXIT_OK
    print(
        f"verdict: FAILED: {len(failed)} of {len(findings)} links do not verify: "
        + ", ".join(failed)
    )
    return EXIT_DATA
