"""The raw input tables (``paths.raw_input``): their files and digests."""

from __future__ import annotations

from pathlib import Path

from pipeline.config import Config
from pipeline.io import sha256_file

# Written by `outreach generate` beside the raw tables it made (synthetic data only): the seed,
# the config and the sha256 of every file. Its presence is how ingest knows data is synthetic.
GENERATION_RECORD = "_generation.json"


def raw_file_digests(config: Config) -> dict[str, str]:
    """sha256 of every raw input file, computed from the bytes (not copied from a record)."""
    raw = Path(config.paths.raw_input)
    return {
        p.relative_to(raw).as_posix(): sha256_file(p) for p in sorted(raw.rglob("*")) if p.is_file()
    }
