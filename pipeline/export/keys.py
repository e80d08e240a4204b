"""The offices' keys: one or more Fernet keys per 읍면동 code, never in the repository.

A key file is JSON: ``{"offices": {"<읍면동 코드>": "<key>" | ["<newest key>", "<older>", ...]}}``.
Keys are Fernet keys (``cryptography``: 32 random bytes, URL-safe base64). An office may hold
several keys: the first encrypts, all of them open (``MultiFernet``), so a key can be rotated
without losing the bundles made with the one before.

Where the exporter's keys come from (:func:`resolve_keys`): the environment variable
``export.key_env`` (default ``OUTREACH_OFFICE_KEYS``), holding either the key file's path or the
JSON itself; else the file ``export.key_file``. A key file inside the repository is refused. Keys
are never logged, printed or recorded: only their fingerprints (:func:`fingerprint`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import stat
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from cryptography.fernet import Fernet, MultiFernet

from pipeline.config import Config
from pipeline.errors import UsageError
from pipeline.io import TEMP_SUFFIX, inside_repository, temp_file_prefix

log = logging.getLogger(__name__)

OFFICES = "offices"
EMD_CODE = re.compile(r"^[0-9]{10}$")
PER_OFFICE_FILE = "office_{emd}.json"  # `keygen --per-office DIR`: the file handed to one office


def fingerprint(key: bytes) -> str:
    """A short digest that names a key across runs without revealing it."""
    return hashlib.sha256(b"welfare-outreach office key fingerprint\0" + key).hexdigest()[:16]


@dataclass(frozen=True)
class OfficeKeys:
    """The keys of the offices a key source holds and where they came from (``source`` names the
    file or variable, never a key)."""

    keys: Mapping[str, tuple[bytes, ...]]
    source: str

    def __repr__(self) -> str:  # never show a key, even in a traceback
        return f"OfficeKeys(source={self.source!r}, offices={sorted(self.keys)})"

    def offices(self) -> list[str]:
        return sorted(self.keys)

    def fingerprints(self, emd: str) -> list[str]:
        return [fingerprint(k) for k in self.keys[emd]]

    def encrypting_fingerprint(self, emd: str) -> str:
        return fingerprint(self.keys[emd][0])

    def fernet(self, emd: str) -> MultiFernet:
        """The office's keys as one MultiFernet: encrypts with the first, opens with any."""
        return MultiFernet([Fernet(k) for k in self.keys[emd]])


def refuse_inside_repository(path: Path, what: str) -> None:
    """UsageError when ``path`` lies inside the repository (keys never enter it)."""
    if inside_repository(path):
        raise UsageError(
            f"export: the {what} {path} lies inside the repository; keep keys outside it"
        )


def parse_keys(text: str, source: str) -> OfficeKeys:
    """The offices' keys in a key file's text; UsageError naming ``source`` and the office (never
    the key) when the text is not a key file."""
    try:
        data = json.loads(text)
    except ValueError:
        raise UsageError(f"export: {source} is not JSON (a key file: docs/export.md)") from None
    offices = data.get(OFFICES) if isinstance(data, dict) else None
    if not isinstance(offices, dict) or not offices:
        raise UsageError(
            f'export: {source} has no "{OFFICES}" object of 읍면동 codes and keys (docs/export.md)'
        )
    keys: dict[str, tuple[bytes, ...]] = {}
    for emd, value in offices.items():
        if not EMD_CODE.match(str(emd)):
            raise UsageError(f"export: {source}: {emd!r} is not a 10-digit 읍면동 code")
        values = [value] if isinstance(value, str) else value
        if not isinstance(values, list) or not values:
            raise UsageError(
                f"export: {source}: the key of 읍면동 {emd} must be a key or a list of keys"
            )
        found = []
        for item in values:
            try:
                Fernet(item if isinstance(item, str) else b"")
            except (ValueError, TypeError):
                raise UsageError(
                    f"export: {source}: a key of 읍면동 {emd} is not a Fernet key (32 bytes, "
                    "URL-safe base64; make one with `outreach export keygen`)"
                ) from None
            found.append(item.encode("ascii"))
        keys[str(emd)] = tuple(found)
    return OfficeKeys(keys, source)


def read_key_file(path: Path) -> OfficeKeys:
    """The keys in the key file ``path`` (refused inside the repository); warns when others than
    its owner may read it."""
    path = Path(path)
    refuse_inside_repository(path, "key file")
    if not path.is_file():
        raise UsageError(f"export: key file {path} not found")
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        log.warning("export: key file %s may be read by others (mode %o): chmod 600", path, mode)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"export: cannot read key file {path} ({type(exc).__name__})") from None
    return parse_keys(text, f"key file {path}")


def resolve_keys(config: Config, environ: Mapping[str, str] | None = None) -> OfficeKeys:
    """The exporter's keys: ``$export.key_env`` (a key file's path, or the JSON itself), else
    ``export.key_file``; UsageError saying how to provide them when there are none."""
    cfg = config.export
    environ = os.environ if environ is None else environ
    value = (environ.get(cfg.key_env) or "").strip()
    if value.startswith("{"):
        return parse_keys(value, f"environment variable {cfg.key_env}")
    if value:
        return read_key_file(Path(value))
    if cfg.key_file is not None:
        return read_key_file(Path(cfg.key_file))
    raise UsageError(
        f"export: no office keys: set the environment variable {cfg.key_env} (a key file's path "
        "or its JSON), or export.key_file to a file outside the repository; make keys with "
        "`outreach export keygen`"
    )


def new_keys(offices: Iterable[str]) -> dict[str, str]:
    """A new Fernet key for each office."""
    out = {}
    for emd in sorted(set(offices)):
        if not EMD_CODE.match(emd):
            raise UsageError(f"export keygen: {emd!r} is not a 10-digit 읍면동 code")
        out[emd] = Fernet.generate_key().decode("ascii")
    return out


def key_file_text(keys: Mapping[str, str | list[str]]) -> str:
    return json.dumps({OFFICES: dict(sorted(keys.items()))}, indent=2) + "\n"


def write_secret(path: Path, text: str, *, replace: bool = False) -> None:
    """Write a key file readable by its owner only (0600), atomically; never over an existing
    file unless ``replace`` (a rotation, which keeps the old keys in the new file). UsageError
    when ``path`` exists (without ``replace``) or lies inside the repository."""
    path = Path(path)
    refuse_inside_repository(path, "key file")
    if path.exists() and not replace:
        raise UsageError(f"export keygen: {path} exists; keys are never overwritten")
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(
        prefix=temp_file_prefix(path), suffix=TEMP_SUFFIX, dir=path.parent
    )
    try:
        os.fchmod(handle, 0o600)
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        if replace:
            os.replace(temp, path)
            return
        try:
            os.link(temp, path)  # fails when the path appeared meanwhile: never overwrites
        except FileExistsError:
            raise UsageError(f"export keygen: {path} exists; keys are never overwritten") from None
    finally:
        Path(temp).unlink(missing_ok=True)


def rotated(current: OfficeKeys, new: Mapping[str, str]) -> dict[str, list[str]]:
    """The key file after a rotation: each office of ``new`` gets its new key in front of the
    keys it had (which still open its earlier bundles); the other offices keep theirs (pure)."""
    out = {emd: [k.decode("ascii") for k in keys] for emd, keys in current.keys.items()}
    for emd, key in new.items():
        out[emd] = [key, *out.get(emd, [])]
    return out
