"""``outreach retention``: being built (issue 19)."""

from __future__ import annotations

import argparse

from pipeline.config import Config
from pipeline.errors import UsageError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``outreach retention``."""


def run(config: Config, args: argparse.Namespace) -> int:
    """Not built yet."""
    raise UsageError("retention: not built yet")
