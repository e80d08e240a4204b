"""``outreach promote VERSION --reason TEXT``: give a model version the champion alias by hand."""

from __future__ import annotations

import argparse

from pipeline.config import Config
from pipeline.errors import EXIT_OK


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("version", help="model version number in the registry")
    parser.add_argument("--reason", required=True, help="why (logged with the move)")


def run(config: Config, args: argparse.Namespace) -> int:
    from pipeline.lineage import events, ledger
    from pipeline.tracking import connect
    from pipeline.tracking.registry import promote

    ledger.check_writable(config.paths.output_root)
    move = promote(connect(config), config, str(args.version), args.reason)
    events.alias_moved(config.paths.output_root, config.training.model_name, move)
    print(
        f"{config.training.model_name}: champion {move.previous or '(none)'} -> {move.version} "
        f"(promote: {move.reason})"
    )
    return EXIT_OK
