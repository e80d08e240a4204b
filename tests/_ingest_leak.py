"""The leak check: no direct-identifier value of the raw tables may appear downstream.

Later stages extend the leak test by passing their own output folders and captured logs to
:func:`assert_no_identifiers`::

    identifiers = collect_identifiers(raw_dir)
    assert_no_identifiers([output_root], identifiers, texts={"stdout": captured})

Every file under the given paths is searched: Parquet files cell by cell (every distinct value
of every column, as text), every other file as text (UTF-8, undecodable bytes ignored, so binary
formats are searched for embedded text too). Resident ids and phones are found by their shape,
addresses by their street part, names as syllables inside Korean words, and every candidate is
compared with the raw values.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.datasets import TableLayout

RESIDENT_ID = re.compile(r"\d{6}-\d{7}")
PHONE = re.compile(r"\d{2,3}-\d{3,4}-\d{4}")
HANGUL_RUN = re.compile(r"[가-힣]+")
STREET = re.compile(r"[가-힣]+로\d+길 \d+(?: \d+동 \d+호)?")


@dataclass(frozen=True)
class Identifiers:
    """The direct identifiers found in a raw folder."""

    resident_ids: frozenset[str]
    names: frozenset[str]
    phones: frozenset[str]
    addresses: frozenset[str]

    @property
    def streets(self) -> frozenset[str]:
        """The street part of every address (what is left once 시도, 시군구 and 읍면동 go)."""
        return frozenset(m.group(0) for a in self.addresses for m in STREET.finditer(a))

    def counts(self) -> dict[str, int]:
        return {
            "resident_ids": len(self.resident_ids),
            "names": len(self.names),
            "phones": len(self.phones),
            "addresses": len(self.addresses),
        }


def collect_identifiers(raw_dir: Path) -> Identifiers:
    """Names, resident ids, phones and addresses of every partition of a raw folder."""
    layout = TableLayout(raw_dir)
    ids: set[str] = set()
    names: set[str] = set()
    phones: set[str] = set()
    addresses: set[str] = set()
    for code in layout.partitions("household_members"):
        members = pq.read_table(layout.partition_file("household_members", code))
        ids.update(v for v in members.column("resident_id").to_pylist() if v)
        names.update(v for v in members.column("name").to_pylist() if v)
    for code in layout.partitions("households"):
        households = pq.read_table(layout.partition_file("households", code))
        phones.update(v for v in households.column("phone").to_pylist() if v)
        addresses.update(v for v in households.column("address").to_pylist() if v)
    return Identifiers(frozenset(ids), frozenset(names), frozenset(phones), frozenset(addresses))


def _files(paths: Iterable[Path]) -> Iterator[Path]:
    for path in paths:
        path = Path(path)
        if path.is_file():
            yield path
        elif path.is_dir():
            yield from (p for p in sorted(path.rglob("*")) if p.is_file())


def text_of(path: Path) -> str:
    """A file's content as searchable text (Parquet: every cell on its own line)."""
    if path.suffix == ".parquet":
        table = pq.read_table(path)
        lines = [*table.column_names]
        for column in table.columns:
            if pa.types.is_dictionary(column.type):
                column = column.cast(column.type.value_type)
            while pa.types.is_list(column.type) or pa.types.is_large_list(column.type):
                column = pc.list_flatten(column)  # every element of every list
            distinct = pc.unique(column)  # each distinct cell once: the same values, faster
            lines.extend("" if v is None else str(v) for v in distinct.to_pylist())
        return "\n".join(lines)
    if path.suffix == ".xlsx":  # a zip: search the cells, not the compressed bytes
        from openpyxl import load_workbook

        book = load_workbook(path, read_only=True)
        return "\n".join(
            "" if v is None else str(v)
            for sheet in book.worksheets
            for row in sheet.iter_rows(values_only=True)
            for v in row
        )
    return path.read_bytes().decode("utf-8", errors="ignore")


def find_identifiers(text: str, identifiers: Identifiers) -> dict[str, int]:
    """How many identifier values of each kind occur in a text."""
    hits = {
        "resident_ids": sum(1 for m in RESIDENT_ID.findall(text) if m in identifiers.resident_ids),
        "phones": sum(1 for m in PHONE.findall(text) if m in identifiers.phones),
        "addresses": sum(1 for m in STREET.findall(text) if m in identifiers.streets),
        "names": 0,
    }
    lengths = {len(n) for n in identifiers.names}
    for run in HANGUL_RUN.findall(text):
        for width in lengths:
            if any(run[i : i + width] in identifiers.names for i in range(len(run) - width + 1)):
                hits["names"] += 1
                break
    return {kind: count for kind, count in hits.items() if count}


def assert_no_identifiers(
    paths: Iterable[Path],
    identifiers: Identifiers,
    texts: Mapping[str, str] | None = None,
) -> int:
    """Fail, naming the file and the kind (never the value), if an identifier shows up.

    Returns the number of files searched.
    """
    found: dict[str, dict[str, int]] = {}
    searched = 0
    for path in _files(paths):
        searched += 1
        hits = find_identifiers(text_of(path), identifiers)
        if hits:
            found[str(path)] = hits
    for label, text in (texts or {}).items():
        hits = find_identifiers(text, identifiers)
        if hits:
            found[f"<{label}>"] = hits
    assert not found, f"direct identifiers found downstream: {found}"
    return searched
