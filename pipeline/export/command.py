"""``outreach export``: being built (issue 19)."""

from __future__ import annotations

import argparse

from pipeline.config import Config
from pipeline.errors import UsageError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``outreach export``."""


def run(config: Config, args: argparse.Namespace) -> int:
    """Not built yet."""
    raise UsageError("export: not built yet")
