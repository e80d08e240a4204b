"""An office's bundle: its files in a zip with a manifest, encrypted with its key (pure).

The bundle's bytes are one header line, ``outreach-bundle/1 office=<읍면동> key=<fingerprint>``,
then a Fernet token (``cryptography``: AES-128-CBC with HMAC-SHA256, authenticated). The header
only says which office and key to use; it is checked against the manifest once opened. Inside
the token: a zip whose first member is ``bundle.json`` (round, office, the key's fingerprint,
the name and sha256 of every file), then the files in name order, each with a fixed date: the
same files give the same zip.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from hashlib import sha256
from pathlib import PurePosixPath
from typing import Any

from cryptography.fernet import InvalidToken

from pipeline.errors import DataError
from pipeline.export.keys import OfficeKeys

FORMAT = "welfare-outreach office bundle"
VERSION = 1
MANIFEST = "bundle.json"
HEADER = re.compile(rb"^outreach-bundle/1 office=([0-9]{10}) key=([0-9a-f]{16})$")
ZIP_DATE = (1980, 1, 1, 0, 0, 0)


@dataclass(frozen=True)
class Sealed:
    """A bundle made: its bytes, its manifest and the sha256 of the manifest and the bundle."""

    data: bytes
    manifest: dict[str, Any]
    manifest_sha256: str
    sha256: str


@dataclass(frozen=True)
class Opened:
    """A bundle opened and checked: its manifest (parsed and as stored) and files (name ->
    bytes)."""

    manifest: dict[str, Any]
    files: dict[str, bytes]
    manifest_data: bytes


def _member(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=ZIP_DATE)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = 0o644 << 16
    return info


def manifest_bytes(manifest: Mapping[str, Any]) -> bytes:
    """A bundle manifest as the bundle holds it (JSON, keys sorted, UTF-8)."""
    return (json.dumps(manifest, ensure_ascii=False, indent=2, sort_keys=True) + "\n").encode()


def zip_files(manifest: Mapping[str, Any], files: Mapping[str, bytes]) -> bytes:
    """The zip of a bundle: the manifest first, then the files in name order, fixed dates."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr(_member(MANIFEST), manifest_bytes(manifest))
        for name in sorted(files):
            archive.writestr(_member(name), files[name])
    return out.getvalue()


def seal(
    keys: OfficeKeys,
    *,
    round_label: str,
    emd: str,
    sigungu: str,
    files: Mapping[str, bytes],
    round_manifest_sha256: str,
) -> Sealed:
    """The bundle of office ``emd``: ``files`` (name in the round folder -> bytes) zipped with
    their manifest and encrypted with the office's first key."""
    key = keys.encrypting_fingerprint(emd)
    manifest = {
        "format": FORMAT,
        "version": VERSION,
        "round": round_label,
        "emd_code": emd,
        "sigungu_code": sigungu,
        "key_fingerprint": key,
        "round_manifest_sha256": round_manifest_sha256,
        "files": {name: sha256(files[name]).hexdigest() for name in sorted(files)},
    }
    token = keys.fernet(emd).encrypt(zip_files(manifest, files))
    data = f"outreach-bundle/1 office={emd} key={key}\n".encode("ascii") + token
    return Sealed(
        data, manifest, sha256(manifest_bytes(manifest)).hexdigest(), sha256(data).hexdigest()
    )


def header(data: bytes, label: str) -> tuple[str, str]:
    """The office and key fingerprint a bundle's header names; DataError when it has none."""
    line, _, _ = data.partition(b"\n")
    found = HEADER.match(line)
    if found is None:
        raise DataError(f"{label}: not an outreach bundle (no 'outreach-bundle/1' header)")
    return found.group(1).decode(), found.group(2).decode()


def _safe_name(name: str) -> bool:
    path = PurePosixPath(name)
    return bool(name) and not path.is_absolute() and ".." not in path.parts and "\\" not in name


def open_bundle(data: bytes, keys: OfficeKeys, label: str) -> Opened:
    """Decrypt and check a bundle with the office's keys in ``keys``.

    DataError (one line, naming ``label``) when the keys hold no key of the bundle's office, when
    none of its keys opens it (wrong key, or the bundle was changed), or when the content does
    not match its manifest (office, key, file names, sha256).
    """
    emd, key = header(data, label)
    if emd not in keys.keys:
        held = ", ".join(keys.offices()) or "none"
        raise DataError(
            f"{label}: bundle of 읍면동 {emd}; {keys.source} holds no key of that office "
            f"(offices: {held})"
        )
    held = keys.fingerprints(emd)
    try:
        plain = keys.fernet(emd).decrypt(data.partition(b"\n")[2])
    except InvalidToken:
        if key not in held:
            raise DataError(
                f"{label}: wrong key: the bundle of 읍면동 {emd} was encrypted with key {key}, "
                f"{keys.source} holds {', '.join(held)} for that office"
            ) from None
        raise DataError(
            f"{label}: does not open with the key of 읍면동 {emd} ({key}): the bundle was "
            "changed or damaged after it was written"
        ) from None
    return _check(plain, emd, key, label)


def _check(plain: bytes, emd: str, key: str, label: str) -> Opened:
    try:
        with zipfile.ZipFile(io.BytesIO(plain)) as archive:
            names = archive.namelist()
            if not names or names[0] != MANIFEST:
                raise DataError(f"{label}: the bundle has no {MANIFEST} first")
            manifest_data = archive.read(MANIFEST)
            manifest = json.loads(manifest_data.decode("utf-8"))
            files = {n: archive.read(n) for n in names[1:]}
    except (zipfile.BadZipFile, ValueError, KeyError) as exc:
        raise DataError(f"{label}: the bundle's content is not readable ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise DataError(f"{label}: {MANIFEST} is not an office bundle's manifest")
    if manifest.get("emd_code") != emd or manifest.get("key_fingerprint") != key:
        raise DataError(
            f"{label}: the header names 읍면동 {emd} and key {key}, the manifest "
            f"{manifest.get('emd_code')} and {manifest.get('key_fingerprint')}"
        )
    recorded = manifest.get("files") or {}
    if sorted(recorded) != sorted(files) or len(set(names)) != len(names):
        raise DataError(
            f"{label}: the files ({', '.join(sorted(files))}) are not those of {MANIFEST} "
            f"({', '.join(sorted(recorded))})"
        )
    for name, content in files.items():
        if not _safe_name(name):
            raise DataError(f"{label}: unsafe file name {name!r} in the bundle")
        have = sha256(content).hexdigest()
        if have != recorded[name]:
            raise DataError(
                f"{label}: {name} has sha256 {have[:12]}, {MANIFEST} records "
                f"{str(recorded[name])[:12]}"
            )
    return Opened(manifest, files, manifest_data)
