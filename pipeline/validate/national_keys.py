"""The national check that keys are unique across partitions: compact hashes, bucket by bucket.

Every batch returns, for each table partition it read, the distinct keys of that partition as
a :class:`KeySegment`: the 64-bit hashes of the keys (household keys, resident ids) in
ascending order and the row of each key's first occurrence, as numpy arrays (12 bytes a key;
a pandas frame with the table and the 시군구 as text on every row took about 60). A key that is
repeated inside one partition is that partition's own failure, so each key counts once here.

The driver checks the segments bucket by bucket. A key's bucket is given by the high bits of
its hash as the suite sees it (``key_hash``: salted per table, so that a household key and a
resident id never meet), so equal keys always land in the same bucket; the number of buckets is
a power of two chosen from the number of keys so that a bucket holds at most about
``BUCKET_ROWS`` of them. Because a segment is sorted by its hash and a salt only flips bits, a
bucket's keys are one contiguous slice of every segment, and a bucket frame lists its keys in
the order of the frame of all keys (segments in the order the batches returned them, keys in
hash order inside a segment).

Great Expectations runs the suite on every bucket frame, and every bucket's result is kept. The
buckets' results are then merged into the one result the suite gives on the frame of all keys:
element, missing and unexpected counts summed, success when every bucket succeeded, and the
example rows the first unexpected ones in the order of that frame (GX lists the first unexpected
rows of each bucket in order, so the first ones overall are among them).

What still grows with the households is the segments themselves: 12 bytes per key, about
3.2 keys per household (190 MB at 5 million households, about 0.9 GB nationally). A bucket
frame and GX's work on it stay bounded by ``BUCKET_ROWS``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from pipeline.expectations import result_key
from pipeline.validate.checks import example_columns
from pipeline.validate.contract import UNIQUE_ACROSS_SUITE
from pipeline.validate.engine import PARTIAL_UNEXPECTED_COUNT, GxEngine
from pipeline.validate.verdict import CheckResult, read_results

# Keys per bucket frame at most (8 MB of hashes). pandas finds duplicates several times faster
# per key in tables of up to about a million keys than in larger ones (measured: 8.7 s of CPU for
# 15.7 million keys in one frame, 5.6 s in buckets of 4 million, 2.5-2.9 s in buckets of one
# million, 2.3 s of half a million), and GX's own cost is about 50 ms a run.
BUCKET_ROWS = 1_000_000
# Hashes of different tables' keys must not meet in the check across partitions.
TABLE_SALT = {"households": 0x9E3779B97F4A7C15, "household_members": 0}
NATIONAL = "national"


@dataclass(frozen=True, eq=False)
class KeySegment:
    """The distinct keys of one table partition: hashes (ascending, unsalted) and rows."""

    table: str
    sigungu: str
    hashes: np.ndarray  # uint64, ascending, distinct
    rows: np.ndarray  # row of each key's first occurrence in its file (int32 when it fits)

    def __len__(self) -> int:
        return len(self.hashes)

    @property
    def salt(self) -> np.uint64:
        return np.uint64(TABLE_SALT[self.table])

    def bucket_slice(self, bucket: int, bits: int) -> tuple[int, int]:
        """Positions ``[start, stop)`` of the keys whose salted hash starts with ``bucket``'s
        ``bits`` high bits (all keys when ``bits`` is 0)."""
        if bits == 0:
            return 0, len(self.hashes)
        shift = 64 - bits
        prefix = bucket ^ (int(self.salt) >> shift)  # the same high bits before the salt
        start = int(np.searchsorted(self.hashes, np.uint64(prefix << shift), side="left"))
        if prefix + 1 == 1 << bits:
            return start, len(self.hashes)
        stop = int(np.searchsorted(self.hashes, np.uint64((prefix + 1) << shift), side="left"))
        return start, stop


def key_segment(
    table: str, code: str, hashes: np.ndarray, rows: np.ndarray | None = None
) -> KeySegment:
    """The segment of one table partition from the hash of every key (``rows``: their rows in
    the file, default 0, 1, ...); each distinct hash is kept once, with its first row."""
    unique, first = np.unique(np.asarray(hashes, dtype=np.uint64), return_index=True)
    found = first if rows is None else np.asarray(rows)[first]
    narrow = np.int32 if len(found) == 0 or int(found.max()) < 2**31 else np.int64
    return KeySegment(table, code, unique, found.astype(narrow))


def bucket_bits(keys: int, bucket_rows: int = BUCKET_ROWS) -> int:
    """High bits of the hash that pick a bucket: ``2**bits`` buckets of at most about
    ``bucket_rows`` keys (0 bits: one bucket)."""
    needed = -(-keys // max(bucket_rows, 1))
    return max(needed - 1, 0).bit_length()


def bucket_label(bucket: int, buckets: int) -> str:
    """How a bucket's GX result is named: ``national`` when there is one bucket."""
    return NATIONAL if buckets == 1 else f"{NATIONAL} (key hash bucket {bucket + 1} of {buckets})"


@dataclass(frozen=True)
class _Pieces:
    """Where the rows of a bucket frame come from: one piece per segment with keys in it."""

    offsets: np.ndarray  # start of every piece in the bucket frame (ascending)
    starts: list[tuple[int, int]]  # (segment, start in the segment) of every piece

    def entry(
        self, segments: Sequence[KeySegment], position: int
    ) -> tuple[tuple[int, int], dict[str, Any]]:
        """The place in the frame of all keys (segment, position) and the example columns of
        the bucket frame's row at ``position``."""
        piece = int(np.searchsorted(self.offsets, position, side="right")) - 1
        segment, start = self.starts[piece]
        at = start + position - int(self.offsets[piece])
        seg = segments[segment]
        return (segment, at), {"table": seg.table, "sigungu": seg.sigungu, "row": int(seg.rows[at])}


def bucket_frame(
    segments: Sequence[KeySegment], bucket: int, bits: int
) -> tuple[pd.DataFrame, _Pieces]:
    """The frame of one bucket's keys (``key_hash``, salted) and where its rows come from."""
    slices = [(i, *s.bucket_slice(bucket, bits)) for i, s in enumerate(segments)]
    slices = [(i, start, stop) for i, start, stop in slices if stop > start]
    sizes = np.array([stop - start for _, start, stop in slices], dtype=np.int64)
    offsets = np.concatenate([np.zeros(1, dtype=np.int64), np.cumsum(sizes)])
    hashes = np.empty(int(offsets[-1]), dtype=np.uint64)
    for (i, start, stop), at in zip(slices, offsets[:-1], strict=True):
        segment = segments[i]
        np.bitwise_xor(segment.hashes[start:stop], segment.salt, out=hashes[at : at + stop - start])
    frame = pd.DataFrame({"key_hash": hashes}, copy=False)
    return frame, _Pieces(offsets[:-1], [(i, start) for i, start, _ in slices])


def _merge(
    results: list[tuple[_Pieces, dict[str, Any]]], segments: Sequence[KeySegment]
) -> dict[str, Any]:
    """One suite result from the buckets' results, as GX gives it on the frame of all keys,
    except that example rows are given as mappings of the example columns."""
    merged: dict[tuple[str, str], dict[str, Any]] = {}
    examples: dict[tuple[str, str], list[tuple[tuple[int, int], Any, Any]]] = {}
    for pieces, gx_result in results:
        for item in gx_result.get("results", []):
            config = item["expectation_config"]
            key = result_key(config["type"], config.get("kwargs") or {})
            raised = (item.get("exception_info") or {}).get("raised_exception")
            into = merged.get(key)
            if into is None or (raised and not into["raised"]):
                into = merged[key] = {
                    "item": item,
                    "raised": bool(raised),
                    "success": True,
                    "counts": {},
                }
                examples[key] = []
            into["success"] = into["success"] and bool(item.get("success"))
            result = item.get("result") or {}
            for name in ("element_count", "missing_count", "unexpected_count"):
                if result.get(name) is not None:
                    into["counts"][name] = into["counts"].get(name, 0) + int(result[name])
            values = result.get("partial_unexpected_list") or []
            positions = result.get("partial_unexpected_index_list") or []
            for n, position in enumerate(positions):
                order, example = pieces.entry(segments, int(position))
                examples[key].append((order, example, values[n] if n < len(values) else None))
    items = []
    for key, into in merged.items():
        item = into["item"]
        if not into["raised"]:
            found = sorted(examples[key], key=lambda e: e[0])[:PARTIAL_UNEXPECTED_COUNT]
            result = {
                **into["counts"],
                "partial_unexpected_list": [value for _, _, value in found],
                "partial_unexpected_index_list": [example for _, example, _ in found],
            }
            item = {**item, "success": into["success"], "result": result}
        items.append(item)
    return {"results": items}


def check_keys_across(
    engine: GxEngine,
    segments: Sequence[KeySegment],
    *,
    example_keys: int,
    bucket_rows: int | None = None,
) -> tuple[list[CheckResult], list[tuple[str, dict[str, Any]]]]:
    """Run the suite of keys across partitions on ``segments``, bucket by bucket (buckets of at
    most about ``bucket_rows`` keys, default ``BUCKET_ROWS``).

    Returns the suite's results (one per check, as on one frame of all keys) and each
    bucket's GX result with its label.
    """
    suite = UNIQUE_ACROSS_SUITE
    rows = BUCKET_ROWS if bucket_rows is None else bucket_rows
    bits = bucket_bits(sum(len(s) for s in segments), rows)
    buckets = 1 << bits
    results: list[tuple[_Pieces, dict[str, Any]]] = []
    gx_results: list[tuple[str, dict[str, Any]]] = []
    for number in range(buckets):
        frame, pieces = bucket_frame(segments, number, bits)
        gx_result = engine.run(suite, frame)
        del frame  # GX holds on to the last frame it ran on until its next run, no more
        gx_results.append((bucket_label(number, buckets), gx_result))
        results.append((pieces, gx_result))
    checked = read_results(
        _merge(results, segments),
        engine.suites[suite],
        table=suite,
        partition=None,
        example_columns=example_columns(suite),
        example_keys=example_keys,
    )
    return checked, gx_results
