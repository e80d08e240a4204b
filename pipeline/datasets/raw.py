"""The raw input tables (``paths.raw_input``): their files and digests."""

from __future__ import annotations

from datetime import UTC, datetime
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


def retention_reference(config: Config) -> int:
    """The month the retention period counts back from: ``retention.today`` when pinned; for
    synthetic raw data (written by ``outreach generate``) the synthetic world's present, the month
    after ``window.end``, so that its calendar, not the wall clock, decides what is old; else
    this month (UTC)."""
    if config.retention.today is not None:
        return config.retention.today_index
    if (Path(config.paths.raw_input) / GENERATION_RECORD).is_file():
        return config.window.end_index + 1
    now = datetime.now(UTC)
    return now.year * 12 + now.month - 1


def retention_cut(config: Config, today: int | None = None) -> int:
    """The first month kept (months before it are older than ``retention.period_months``),
    counted back from ``today`` or else :func:`retention_reference`."""
    reference = retention_reference(config) if today is None else today
    return config.retention.cut(reference)
