"""CLI wrapper of the ``generate`` stage."""

from __future__ import annotations

import argparse
from pathlib import Path

from pipeline.catalogues import load_catalogues
from pipeline.config import Config
from pipeline.datasets import OutputLayout
from pipeline.errors import EXIT_OK, UsageError


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


def run(config: Config, args: argparse.Namespace) -> int:
    from pipeline.generate.stage import generate

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
