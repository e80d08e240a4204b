"""What ``outreach audit PATH`` audits: PATH resolved to a round folder, and a list file in it.

Owns :class:`AuditTarget` and :func:`resolve_target`: a round folder, a month ``YYYY-MM``, the
round's ``manifest.json``, a list file in the round's ``lists/`` folder, or a copy of a list kept
elsewhere with ``--round DIR``. Anything else is a usage error (exit code 2).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from pipeline.config import Config
from pipeline.datasets import OutputLayout
from pipeline.datasets.rounds import LIST_SUFFIXES, LISTS, MANIFEST, SCORES, read_manifest
from pipeline.errors import DataError, UsageError
from pipeline.months import default_as_of, format_month, parse_month

MONTH = re.compile(r"^\d{4}-\d{2}$")


@dataclass(frozen=True)
class AuditTarget:
    """What is audited: a round folder, and the list file when a list was given."""

    given: str
    round_dir: Path
    list_file: Path | None = None
    list_relative: str | None = None  # its path inside the round (None: find it by name)


def resolve_target(config: Config, path: str | None, round_dir: Path | None = None) -> AuditTarget:
    """The round (and list) named by PATH: a round folder, a list file, the manifest, a month.

    No PATH: the round ``outreach score`` writes by default. A list file outside a round's
    ``lists/`` folder (a copy sent to an office) needs ``round_dir``. Usage errors when PATH does
    not exist or is not one of these.
    """
    layout = OutputLayout(config.paths.output_root)
    if path is None:
        folder = layout.round(format_month(default_as_of(config.window)))
        if not folder.is_dir():
            raise UsageError(f"audit: {folder} not found: score the round first or give PATH")
        return _round_target(str(folder), folder)
    p = Path(path)
    if not p.exists() and MONTH.match(path):
        try:
            parse_month(path)
        except ValueError as exc:
            raise UsageError(f"audit: {exc}") from None
        p = layout.round(path)
        if not p.is_dir():
            raise UsageError(f"audit: round {path} not found at {p}")
    if not p.exists():
        raise UsageError(f"audit: {path} not found")
    if p.is_dir():
        if round_dir is not None:
            raise UsageError("audit: --round is for a list file, not for a folder")
        return _round_target(path, p)
    if p.name == MANIFEST:
        return _round_target(path, p.parent)
    if p.suffix.lower() not in LIST_SUFFIXES:
        raise UsageError(
            f"audit: {path} is neither a round folder, a list (CSV/XLSX) nor a manifest"
        )
    if round_dir is not None:
        if not round_dir.is_dir():
            raise UsageError(f"audit: --round {round_dir} not found")
        return AuditTarget(path, round_dir, p, None)
    for parent in p.resolve().parents:
        if parent.name == LISTS:
            root = parent.parent
            return AuditTarget(path, root, p, p.resolve().relative_to(root).as_posix())
    raise UsageError(
        f"audit: {path} is not inside a round's {LISTS}/ folder: give the round with --round DIR"
    )


def _round_target(given: str, folder: Path) -> AuditTarget:
    """A round folder: named YYYY-MM with a manifest, lists or scores, or holding a manifest
    that names a round and its scoring run (a feature folder's manifest does not)."""
    manifest = folder / MANIFEST
    named_like_round = bool(MONTH.match(folder.name)) and (
        manifest.is_file() or (folder / LISTS).is_dir() or (folder / SCORES).is_file()
    )
    if named_like_round or _is_round_manifest(folder):
        return AuditTarget(given, folder)
    raise UsageError(f"audit: {given} is not a round folder (rounds/YYYY-MM/ with {MANIFEST})")


def _is_round_manifest(folder: Path) -> bool:
    if not (folder / MANIFEST).is_file():
        return False
    try:
        data = read_manifest(folder)
    except DataError:
        return False
    return isinstance(data, dict) and "round" in data and "scoring_run" in data
