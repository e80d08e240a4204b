"""CLI wrapper of ``outreach describe``."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from pipeline.catalogues import load_catalogues
from pipeline.config import Config
from pipeline.datasets import OutputLayout
from pipeline.describe.stage import describe
from pipeline.errors import EXIT_OK
from pipeline.io import write_json

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--raw-dir", type=Path, help="raw tables (default: paths.raw_input)")
    parser.add_argument("--truth-dir", type=Path, help="hidden truth (default: paths.truth_input)")


def run(config: Config, args: argparse.Namespace) -> int:
    raw_dir = getattr(args, "raw_dir", None) or config.paths.raw_input
    truth_dir = getattr(args, "truth_dir", None) or config.paths.truth_input
    catalogue = load_catalogues(config).indicators
    summary = describe(config, catalogue, raw_dir, truth_dir)
    out = OutputLayout(config.paths.output_root).describe_summary
    write_json(summary, out)
    rows = summary["rows"]
    print(
        f"raw tables in {raw_dir}: {rows['households']:,} households, "
        f"{rows['members']:,} members, {rows['crisis_events']:,} crisis signals, "
        f"{rows['outreach_outcomes']:,} past outreach rows"
    )
    signals = summary["signals"]
    print(
        f"  signals per household-month: {signals['per_household_month']:.3f}; households with "
        f"any signal: {signals['households_with_any_share']:.1%} "
        f"({signals['per_household_with_any']:.1f} signals each)"
    )
    if "truth" in summary:
        t = summary["truth"]
        rule = t["rule_precision_at_capacity"]
        auc = t["auc_against_truth"]
        print(f"  truly in need (household-months): {t['in_need_share']:.2%}")
        print(
            "  rule (distinct crisis types, 3 months) at capacity: "
            f"{rule['overall']:.1%} truly in need "
            f"(rounds {rule['min_round']:.1%}..{rule['max_round']:.1%})"
        )
        print(
            f"  AUC against truth: distinct types {auc['distinct_types_3m']:.3f}, "
            f"best single column {auc['best_single_column']} {auc['best_single_column_auc']:.3f}"
        )
    print(f"summary written to {out}")
    log.debug("describe summary: %s", json.dumps(summary, ensure_ascii=False)[:500])
    return EXIT_OK
