"""Keyed pseudonyms for people: HMAC-SHA256 with a key that never enters the repository.

The key comes from the environment variable ``ingest.key_env`` (default
``OUTREACH_PSEUDONYM_KEY``) or else from the file ``ingest.key_file``, which must lie outside the
repository. With neither, ``ingest.demo_key: true`` allows the public demo key below, and only for
synthetic data (a raw folder written by ``outreach generate``); otherwise ingest refuses to run.
The key itself is never logged or written: outputs record only its fingerprint.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from pipeline.config import Config
from pipeline.datasets.raw import GENERATION_RECORD
from pipeline.errors import UsageError
from pipeline.io import inside_repository

log = logging.getLogger(__name__)

# Public and deliberately named so: pseudonyms made with it protect nothing.
DEMO_KEY = b"welfare-outreach-PUBLIC-DEMO-KEY-for-synthetic-data-only"
MIN_KEY_BYTES = 16
PSEUDONYM_HEX = 32  # the first 128 bits of the HMAC, as hex
MESSAGE_PREFIX = b"person:"  # domain separation: other kinds of pseudonym would use others
SYNTHETIC_MARKER = GENERATION_RECORD  # written by `outreach generate` beside the raw tables

SCHEME = (
    "HMAC-SHA256(key, 'person:' + resident id as UTF-8); the first 128 bits as 32 lowercase "
    "hex characters"
)


@dataclass(frozen=True)
class PseudonymKey:
    """A pseudonym key and where it came from (``source`` says so without revealing it)."""

    secret: bytes
    source: str
    demo: bool

    def __repr__(self) -> str:  # never show the secret, even in a traceback
        return f"PseudonymKey(source={self.source!r}, fingerprint={self.fingerprint})"

    @property
    def fingerprint(self) -> str:
        """A short digest that identifies the key across runs without revealing it."""
        return fingerprint(self.secret)


def fingerprint(secret: bytes) -> str:
    return hashlib.sha256(b"welfare-outreach pseudonym key fingerprint\0" + secret).hexdigest()[:16]


def resolve_key(
    config: Config, raw_dir: Path, environ: dict[str, str] | None = None
) -> PseudonymKey:
    """The pseudonym key for this run, or a UsageError saying how to provide one."""
    cfg = config.ingest
    environ = dict(os.environ) if environ is None else environ
    value = environ.get(cfg.key_env)
    if value:
        secret = value.encode("utf-8")
        if len(secret) < MIN_KEY_BYTES:
            raise UsageError(
                f"ingest: the key in ${cfg.key_env} is too short "
                f"({len(secret)} bytes; at least {MIN_KEY_BYTES})"
            )
        return PseudonymKey(secret, f"environment variable {cfg.key_env}", demo=False)
    if cfg.key_file is not None:
        path = Path(cfg.key_file)
        if inside_repository(path):
            raise UsageError(
                f"ingest: the key file {path} lies inside the repository; keep it outside "
                "(ingest.key_file)"
            )
        if not path.is_file():
            raise UsageError(f"ingest: key file {path} not found (ingest.key_file)")
        secret = path.read_bytes().strip()
        if len(secret) < MIN_KEY_BYTES:
            raise UsageError(
                f"ingest: the key in {path} is too short ({len(secret)} bytes; "
                f"at least {MIN_KEY_BYTES})"
            )
        return PseudonymKey(secret, f"key file {path}", demo=False)
    if cfg.demo_key:
        if not (raw_dir / SYNTHETIC_MARKER).is_file():
            raise UsageError(
                f"ingest: ingest.demo_key is for synthetic data only and {raw_dir} was not "
                f"written by `outreach generate` (no {SYNTHETIC_MARKER}); set ${cfg.key_env} "
                "or ingest.key_file"
            )
        return PseudonymKey(DEMO_KEY, "public demo key (ingest.demo_key)", demo=True)
    raise UsageError(
        f"ingest: no pseudonym key: set the environment variable {cfg.key_env}, or "
        "ingest.key_file to a file outside the repository (ingest.demo_key is only for the "
        "synthetic sample)"
    )


class Pseudonymizer:
    """HMAC-SHA256 (RFC 2104) with the key's inner and outer hash states computed once.

    Equal to ``hmac.new(key, b"person:" + id, sha256)``, about twice as fast per value.
    """

    def __init__(self, secret: bytes) -> None:
        block = 64
        key = hashlib.sha256(secret).digest() if len(secret) > block else secret
        key = key.ljust(block, b"\0")
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in key))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in key))
        self._inner.update(MESSAGE_PREFIX)

    def digest(self, value: str) -> bytes:
        inner = self._inner.copy()
        inner.update(value.encode("utf-8"))
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()

    def pseudonym(self, value: str) -> str:
        return self.digest(value).hex()[:PSEUDONYM_HEX]

    def pseudonyms(self, values: Iterable[str | None]) -> list[str | None]:
        """Pseudonyms of many values (None stays None)."""
        inner, outer = self._inner, self._outer
        out: list[str | None] = []
        for value in values:
            if value is None:
                out.append(None)
                continue
            i = inner.copy()
            i.update(value.encode("utf-8"))
            o = outer.copy()
            o.update(i.digest())
            out.append(o.hexdigest()[:PSEUDONYM_HEX])
        return out
