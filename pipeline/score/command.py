"""CLI wrapper of ``outreach score``."""

from __future__ import annotations

import argparse

from pipeline.config import Config
from pipeline.errors import EXIT_OK
from pipeline.months import resolve_as_of
from pipeline.stages import Prerequisite, feature_rounds_needed


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--as-of", help="round month YYYY-MM (default: the next round after the data window)"
    )
    parser.add_argument(
        "--model-version",
        help="score with this registered version instead of the champion (e.g. to re-run a round)",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="score a round that exists again (the old folder is kept in rounds/_replaced/)",
    )


def prerequisites(config: Config, args: argparse.Namespace) -> list[Prerequisite]:
    """The round's feature folder when it is missing or out of date."""
    return feature_rounds_needed(
        config, [resolve_as_of(config.window, getattr(args, "as_of", None))]
    )


def measure(config: Config, args: argparse.Namespace) -> int:
    """Score the round (for ``outreach bench``); returns the households read."""
    from pipeline.score.stage import score_round

    as_of = resolve_as_of(config.window, getattr(args, "as_of", None))
    result = score_round(config, as_of, force=bool(getattr(args, "force", False)))
    return result.counts["households"]


def run(config: Config, args: argparse.Namespace) -> int:
    from pipeline.score.stage import score_round

    as_of = resolve_as_of(config.window, getattr(args, "as_of", None))
    result = score_round(
        config,
        as_of,
        model_version=getattr(args, "model_version", None),
        force=bool(getattr(args, "force", False)),
    )
    c = result.counts
    print(
        f"round {result.round}: {c['scored']:,} eligible households scored with "
        f"{result.model.name} v{result.model.version} ({result.model.alias or 'pinned'}); "
        f"{c['ineligible']:,} left out as ineligible"
    )
    print(
        f"  visit {c['visit']:,} (of which {c['explored']:,} random exploration), "
        f"phone {c['phone']:,}, monitor {c['monitor']:,}; "
        f"{c['emd']} 읍면동 in {c['sigungu']} 시군구"
    )
    if c.get("emd_without_capacity"):
        print(
            f"  warning: {c['emd_without_capacity']} 읍면동 have no capacity: nobody listed there"
        )
    print(f"written to {result.folder} in {result.seconds:.1f} s (MLflow run {result.run_id})")
    return EXIT_OK
