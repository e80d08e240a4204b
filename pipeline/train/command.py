"""CLI wrapper of ``outreach train``."""

from __future__ import annotations

import argparse

from pipeline.config import COMPARISONS, Config
from pipeline.errors import EXIT_OK
from pipeline.months import resolve_as_of
from pipeline.stages import Prerequisite, feature_rounds_needed


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--as-of",
        help="train with what is known at this round, YYYY-MM (default: the next round after "
        "the data window)",
    )
    parser.add_argument(
        "--compare",
        type=comparisons,
        help="also measure in the backtests, beside the registered candidate: 'all' or some of "
        f"{','.join(COMPARISONS)} (comma-separated; adds to training.compare)",
    )


def comparisons(text: str) -> tuple[str, ...]:
    """The comparisons of ``--compare``: ``all`` or some of :data:`COMPARISONS`, comma-separated
    (an unknown one is a usage error, before anything runs)."""
    asked = COMPARISONS if text.strip() == "all" else tuple(p.strip() for p in text.split(","))
    unknown = [p for p in asked if p not in COMPARISONS]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown comparison(s) {', '.join(unknown)}; use 'all' or some of "
            f"{', '.join(COMPARISONS)}"
        )
    return asked


def with_comparisons(config: Config, args: argparse.Namespace) -> Config:
    """``config`` with the comparisons of ``--compare`` added to ``training.compare``."""
    asked = getattr(args, "compare", None) or ()
    if not asked:
        return config
    wanted = [*config.training.compare, *(p for p in asked if p not in config.training.compare)]
    return config.with_overrides(training={"compare": wanted})


def prerequisites(config: Config, args: argparse.Namespace) -> list[Prerequisite]:
    """The feature rounds training reads (every past round and the as-of round) that are
    missing or out of date: built first with ``outreach features --as-of YYYY-MM``."""
    from pipeline.train.fit import plan_rounds

    as_of = resolve_as_of(config.window, getattr(args, "as_of", None))
    rounds, _ = plan_rounds(config, as_of)
    return feature_rounds_needed(config, [*rounds, as_of])


def measure(config: Config, args: argparse.Namespace) -> int:
    """Train (for ``outreach bench``); returns the rows fitted and evaluated."""
    from pipeline.train.stage import train

    as_of = resolve_as_of(config.window, getattr(args, "as_of", None))
    return train(with_comparisons(config, args), as_of).rows


def run(config: Config, args: argparse.Namespace) -> int:
    from pipeline.train.stage import train

    as_of = resolve_as_of(config.window, getattr(args, "as_of", None))
    result = train(with_comparisons(config, args), as_of)
    s = result.summary.set_index("model")
    print(f"trained {result.model_name} version {result.version} in {result.seconds:.1f} s")
    column = "truth_emd_precision_mean"
    if column not in s.columns:
        column = "observed_emd_precision_mean"
    print(f"backtest mean {column} (per 읍면동 capacity cut):")
    for model, row in s.iterrows():
        print(f"  {model:<24} {row[column]:.3f}")
    status = "champion" if result.champion else "challenger"
    print(f"version {result.version} is {status}: {result.reason}")
    print(f"MLflow run {result.run_id}")
    return EXIT_OK
