"""``outreach export``: each 읍면동's list and report page as a bundle encrypted with that office's
key, written into ``rounds/YYYY-MM/export/<시군구>/emd_<읍면동>.bundle``, one ledger record each.

All or nothing for the round: every office to export must have a key, every file must still be
the one the round manifest (lists) or the report record (pages) recorded, and the ledger must
verify, before anything is written. The bundles are built in a temporary folder and moved into
place only when all were made.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from hashlib import sha256
from pathlib import Path, PurePosixPath
from typing import Any

from pipeline.config import Config
from pipeline.datasets.rounds import (
    BUNDLE_SUFFIX,
    EXPORT,
    LIST_SUFFIXES,
    LISTS,
    MANIFEST,
    REPORT,
    REPORT_RECORD,
    bundle_path,
    read_manifest,
    report_emd_page,
    round_dir,
)
from pipeline.errors import DataError, UsageError
from pipeline.export.bundle import MANIFEST as BUNDLE_MANIFEST
from pipeline.export.bundle import Opened, Sealed, open_bundle, seal
from pipeline.export.keys import OfficeKeys
from pipeline.io import BUILDING_MARK, read_json_file, sha256_file, short_digest, staging_dir
from pipeline.lineage import events, ledger
from pipeline.months import format_month

log = logging.getLogger(__name__)

LIST_PREFIX = "emd_"


@dataclass(frozen=True)
class Office:
    """A 읍면동 of the round and the files its bundle holds (name in the round folder ->
    the sha256 the round recorded)."""

    emd: str
    sigungu: str
    files: dict[str, str]


@dataclass(frozen=True)
class Exported:
    """One bundle written: the office, where, and its ledger entry's number."""

    office: Office
    path: Path
    sealed: Sealed
    seq: int


@dataclass(frozen=True)
class ExportResult:
    round: str
    folder: Path
    bundles: list[Exported]
    with_pages: bool
    key_source: str


def round_offices(manifest: Mapping[str, Any]) -> dict[str, Office]:
    """The 읍면동 with a list in the round (``lists/<시군구>/emd_<읍면동>.csv|.xlsx`` in the
    manifest's ``files_sha256``), by code (pure)."""
    found: dict[str, Office] = {}
    for name, digest in sorted((manifest.get("files_sha256") or {}).items()):
        parts = PurePosixPath(name).parts
        if len(parts) != 3 or parts[0] != LISTS:
            continue
        path = PurePosixPath(parts[2])
        if path.suffix not in LIST_SUFFIXES or not path.stem.startswith(LIST_PREFIX):
            continue
        emd = path.stem[len(LIST_PREFIX) :]
        office = found.setdefault(emd, Office(emd, parts[1], {}))
        office.files[name] = str(digest)
    return found


def report_pages(folder: Path, manifest_sha256: str) -> dict[str, str] | None:
    """The report's files (name in the round folder -> sha256) when the round has a report of
    this very round manifest; None when no report was written; DataError when the report was
    made from an earlier scoring of the round."""
    record_path = folder / REPORT / REPORT_RECORD
    if not record_path.is_file():
        return None
    record = read_json_file(record_path)
    if record.get("round_manifest_sha256") != manifest_sha256:
        raise DataError(
            f"{record_path}: the report was made from another scoring of the round (manifest "
            f"{short_digest(record.get('round_manifest_sha256'))}, the round's is "
            f"{short_digest(manifest_sha256)}): run `outreach report --as-of {folder.name}` "
            "first; nothing exported"
        )
    return {f"{REPORT}/{n}": str(d) for n, d in (record.get("files_sha256") or {}).items()}


def choose_offices(
    offices: Mapping[str, Office], keys: OfficeKeys, only: Iterable[str] | None
) -> list[Office]:
    """The offices to export: ``only`` (each must have a list in the round) or all; UsageError
    naming every chosen office without a key (pure)."""
    if only is not None:
        wanted = sorted(set(only))
        unknown = [e for e in wanted if e not in offices]
        if unknown:
            raise UsageError(
                f"export --emd: no list of 읍면동 {', '.join(unknown)} in this round "
                f"(its 읍면동: {', '.join(sorted(offices))})"
            )
    else:
        wanted = sorted(offices)
    missing = [e for e in wanted if e not in keys.keys]
    if missing:
        raise UsageError(
            f"export: no key for 읍면동 {', '.join(missing)} in {keys.source}; nothing exported "
            "(make keys with `outreach export keygen`, or name the offices to export with --emd)"
        )
    return [offices[e] for e in wanted]


def read_checked(folder: Path, name: str, recorded: str) -> bytes:
    """A round file's bytes, which must have the sha256 the round recorded."""
    path = folder / name
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({type(exc).__name__}); nothing exported") from None
    have = sha256(data).hexdigest()
    if have != recorded:
        raise DataError(
            f"{path}: sha256 {short_digest(have)} is not the {short_digest(recorded)} the round "
            "recorded (changed since it was written: run `outreach audit`); nothing exported"
        )
    return data


def export_round(
    config: Config, as_of: int, keys: OfficeKeys, only: Iterable[str] | None = None
) -> ExportResult:
    """Encrypt each chosen office's list and report page into its bundle, move the bundles into
    place together, and record each in the ledger."""
    label = format_month(as_of)
    folder = round_dir(config, as_of)
    root = Path(config.paths.output_root)
    if not (folder / MANIFEST).is_file():
        raise DataError(
            f"{folder}: no scored round {label} (no {MANIFEST}): run `outreach score --as-of "
            f"{label}` first"
        )
    manifest = read_manifest(folder)
    manifest_sha = sha256_file(folder / MANIFEST)
    offices = round_offices(manifest)
    if not offices:
        raise DataError(f"{folder / MANIFEST}: the round records no 읍면동 list; nothing to export")
    chosen = choose_offices(offices, keys, only)
    pages = report_pages(folder, manifest_sha)
    ledger.check_writable(root)

    temp = Path(tempfile.mkdtemp(prefix=f".{EXPORT}{BUILDING_MARK}", dir=folder))
    try:
        sealed = [
            _seal_into(temp, folder, office, keys, label, manifest_sha, pages) for office in chosen
        ]
        placed = _place(temp, folder, sealed)
    finally:
        shutil.rmtree(temp, ignore_errors=True)
    exported = []
    for (office, bundle), path in zip(sealed, placed, strict=True):
        entry = events.bundle_exported(
            root,
            round_label=label,
            emd_code=office.emd,
            sigungu_code=office.sigungu,
            bundle=path.relative_to(folder).as_posix(),
            bundle_sha256=bundle.sha256,
            files=bundle.manifest["files"],
            manifest_sha256=bundle.manifest_sha256,
            key_fingerprint=bundle.manifest["key_fingerprint"],
            round_manifest_sha256=manifest_sha,
        )
        exported.append(Exported(office, path, bundle, int(entry["seq"])))
    return ExportResult(label, folder, exported, pages is not None, keys.source)


def _seal_into(
    temp: Path,
    folder: Path,
    office: Office,
    keys: OfficeKeys,
    label: str,
    manifest_sha: str,
    pages: Mapping[str, str] | None,
) -> tuple[Office, Sealed]:
    """Seal one office's files and write its bundle into ``temp`` (the bundle's bytes are not
    kept: a national round's bundles need not fit in memory together)."""
    files = dict(office.files)
    if pages is not None:
        page = f"{REPORT}/{report_emd_page(office.emd)}"
        if page not in pages:
            raise DataError(
                f"{folder / REPORT / REPORT_RECORD}: no page of 읍면동 {office.emd}; "
                "nothing exported"
            )
        files[page] = pages[page]
    content = {name: read_checked(folder, name, digest) for name, digest in files.items()}
    bundle = seal(
        keys,
        round_label=label,
        emd=office.emd,
        sigungu=office.sigungu,
        files=content,
        round_manifest_sha256=manifest_sha,
    )
    with (temp / f"{office.emd}{BUNDLE_SUFFIX}").open("wb") as out:
        out.write(bundle.data)
        out.flush()
        os.fsync(out.fileno())
    log.info(
        "export %s: 읍면동 %s, %d files, key %s",
        label,
        office.emd,
        len(content),
        bundle.manifest["key_fingerprint"],
    )
    return office, replace(bundle, data=b"")


def _place(temp: Path, folder: Path, sealed: list[tuple[Office, Sealed]]) -> list[Path]:
    """Move each bundle written into ``temp`` into place (a rename: readers see the old bundle
    or the new one); called only once every bundle was written."""
    placed = []
    for office, _ in sealed:
        final = bundle_path(folder, office.sigungu, office.emd)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(temp / f"{office.emd}{BUNDLE_SUFFIX}", final)
        placed.append(final)
    return placed


def open_to_folder(bundle: Path, keys: OfficeKeys, out: Path) -> Opened:
    """``outreach export open``: decrypt and check ``bundle``, then write its files (and its
    ``bundle.json``) into the new folder ``out``, all at once; nothing is written when the key is
    wrong, the bundle was changed or ``out`` already holds something."""
    bundle, out = Path(bundle), Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UsageError(f"export open: {out} exists and is not an empty folder; nothing written")
    try:
        data = bundle.read_bytes()
    except OSError as exc:
        raise DataError(f"{bundle}: cannot read ({type(exc).__name__})") from None
    opened = open_bundle(data, keys, str(bundle))
    with staging_dir(out) as temp:
        for name, content in {BUNDLE_MANIFEST: opened.manifest_data, **opened.files}.items():
            path = temp / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
    return opened


def round_emd_codes(config: Config, as_of: int) -> list[str]:
    """The 읍면동 with a list in a scored round (``keygen --round``)."""
    folder = round_dir(config, as_of)
    if not (folder / MANIFEST).is_file():
        raise DataError(f"{folder}: no scored round {format_month(as_of)} (no {MANIFEST})")
    return sorted(round_offices(read_manifest(folder)))
