"""The raw input tables (``paths.raw_input``): their files and digests."""

from __future__ import annotations

from pathlib import Path

from pipeline.config import Config
from pipeline.io import sha256_file


def raw_file_digests(config: Config) -> dict[str, str]:
    """sha256 of every raw input file, computed from the bytes (not copied from a record)."""
    raw = Path(config.paths.raw_input)
    return {
        p.relative_to(raw).as_posix(): sha256_file(p) for p in sorted(raw.rglob("*")) if p.is_file()
    }
