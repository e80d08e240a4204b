"""CLI wrapper of the ``generate`` stage."""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from pipeline.catalogues import load_catalogues
from pipeline.config import Config
from pipeline.datasets import OutputLayout
from pipeline.errors import EXIT_OK, DataError, UsageError
from pipeline.io import write_parquet


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--output-dir",
        type=Path,
        help="folder to write raw/ and truth/ into (default: the output root)",
    )
    parser.add_argument("--households", type=int, help="override generator.households")
    parser.add_argument("--seed", type=int, help="override generator.seed")
    parser.add_argument(
        "--force",
        action="store_true",
        help="allow replacing the configured input data (e.g. the committed sample)",
    )
    parser.add_argument(
        "--advance",
        type=int,
        nargs="?",
        const=0,
        metavar="MONTHS",
        help="move the generated world on by MONTHS months from window.end (default: one round "
        "interval) instead of generating: new signals and truth are appended",
    )
    parser.add_argument(
        "--contacts",
        type=Path,
        help="with --advance: contacted households (CSV or Parquet: household_key, "
        "contact_month, outcome_code); those linked to support recover faster",
    )
    parser.add_argument(
        "--untreated-need",
        type=Path,
        metavar="PATH",
        help="with --advance: write the need of the advanced months had no new contact been "
        "made (Parquet: household_key, month, in_need) to PATH and leave the world as it is",
    )


def _would_replace_kept_input(config: Config, target: Path) -> bool:
    """True when generating would replace input data kept outside the output root (the sample)."""
    raw_input = config.paths.raw_input.resolve()
    if OutputLayout(target).raw.resolve() != raw_input:
        return False
    return not raw_input.is_relative_to(config.paths.output_root.resolve())


def measure(config: Config, args: argparse.Namespace) -> int:
    """Generate into the output root (for ``outreach bench``); returns the households written."""
    from pipeline.generate.stage import generate

    catalogue = load_catalogues(config).indicators
    return generate(config, catalogue, config.paths.output_root).rows["households"]


def read_contacts(path: Path) -> pd.DataFrame:
    """A contacts file (CSV or Parquet); DataError naming it when it cannot be read."""
    try:
        if path.suffix.lower() == ".parquet":
            return pd.read_parquet(path)
        return pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot read contacts ({type(exc).__name__}: {exc})") from None


def _advance(config: Config, args: argparse.Namespace, target: Path) -> int:
    from pipeline.generate.advance import advance

    months = args.advance or config.window.round_interval_months
    catalogues = load_catalogues(config)
    if args.untreated_need is not None:
        from pipeline.generate.advance import untreated_preview

        need = untreated_preview(config, catalogues.indicators, target, months)
        write_parquet(need, args.untreated_need)
        print(
            f"untreated need of the next {months} month(s): {int(need['in_need'].sum()):,} "
            f"household-months in need, written to {args.untreated_need} (the world is unchanged)"
        )
        return EXIT_OK
    contacts = read_contacts(args.contacts) if args.contacts is not None else None
    result = advance(
        config,
        catalogues.indicators,
        target,
        months,
        contacts,
        outcome_codes=list(catalogues.outcomes.codes),
    )
    print(
        f"advanced the world {result.first}..{result.through}: "
        f"{result.events_added:,} crisis signals and {result.truth_rows_added:,} truth rows "
        f"appended, {result.contacts_registered:,} contacts given"
    )
    print(f"the data now runs through {result.through}: set window.end: {result.through}")
    return EXIT_OK


def run(config: Config, args: argparse.Namespace) -> int:
    from pipeline.generate.stage import generate

    if args.contacts is not None and args.advance is None:
        raise UsageError("--contacts needs --advance")
    if args.untreated_need is not None and (args.advance is None or args.contacts is not None):
        raise UsageError("--untreated-need needs --advance and no --contacts")
    if args.advance is not None and (args.households is not None or args.seed is not None):
        raise UsageError(
            "--advance continues the saved world: --households and --seed do not apply"
        )
    overrides: dict[str, object] = {}
    if args.households is not None:
        overrides["households"] = args.households
    if args.seed is not None:
        overrides["seed"] = args.seed
    if overrides:
        config = config.with_overrides(generator=overrides)
    target = args.output_dir or config.paths.output_root
    if _would_replace_kept_input(config, target) and not args.force:
        raise UsageError(
            f"{OutputLayout(target).raw} is the configured input data (paths.raw_input) and lies "
            f"outside the output root {config.paths.output_root}; pass --force to regenerate it"
        )
    if args.advance is not None:
        return _advance(config, args, target)
    catalogue = load_catalogues(config).indicators
    result = generate(config, catalogue, target, catalogue_path=config.paths.indicators)
    print(
        f"generated {result.rows['households']:,} households, "
        f"{result.rows['crisis_events']:,} crisis signals, "
        f"{result.rows['outreach_outcomes']:,} past outreach rows"
    )
    print(f"raw tables:   {result.raw_dir}")
    print(f"hidden truth: {result.truth_dir} (for evaluation only)")
    return EXIT_OK
