"""Fast hashing and lookup of string keys that all have the same length (ids, household keys).

Resident ids and household keys are fixed-width strings. Their bytes can be viewed as an
``n x width`` matrix without copying each string, hashed (64 bit, word by word, each word fully
mixed) in a few numpy passes, and looked up through an integer hash table; every match is then
confirmed byte for byte, so lookups are exact. Columns that are not fixed-width (or hold nulls)
take the general path (Arrow's ``index_in``; pandas hashing).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

SEED = np.uint64(0xCBF29CE484222325)
MIX_1 = np.uint64(0xBF58476D1CE4E5B9)
MIX_2 = np.uint64(0x94D049BB133111EB)
MAX_WIDTH = 64


def _array(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if pa.types.is_dictionary(values.type):
        values = values.dictionary_decode()
    if pa.types.is_large_string(values.type):
        values = values.cast(pa.string())
    return values


def byte_matrix(values: pa.Array | pa.ChunkedArray) -> np.ndarray | None:
    """The strings' bytes as an ``n x width`` uint8 matrix, or None if not fixed-width."""
    values = _array(values)
    if not pa.types.is_string(values.type) or values.null_count or len(values) == 0:
        return None
    offsets = np.frombuffer(values.buffers()[1], dtype=np.int32)[
        values.offset : values.offset + len(values) + 1
    ]
    width = int(offsets[1] - offsets[0])
    if width == 0 or width > MAX_WIDTH or int(offsets[-1] - offsets[0]) != width * len(values):
        return None
    if not (np.diff(offsets) == width).all():
        return None
    data = np.frombuffer(values.buffers()[2], dtype=np.uint8)
    return data[offsets[0] : offsets[-1]].reshape(len(values), width)


def _mix(values: np.ndarray) -> None:
    """SplitMix64's finaliser, in place: every input bit changes about half the output bits."""
    values ^= values >> np.uint64(30)
    values *= MIX_1
    values ^= values >> np.uint64(27)
    values *= MIX_2
    values ^= values >> np.uint64(31)


def row_hashes(matrix: np.ndarray) -> np.ndarray:
    """64-bit hash of every row of a byte matrix, 8-byte word by word, each word mixed in fully.

    Rows are zero-padded to whole words, so a 14-byte id costs two passes, not fourteen. Every
    word goes through a full avalanche mix before the next is added: the FNV-style step used
    before (one multiply, one shift) let digit patterns cancel, and 788 of 52 million synthetic
    resident ids collided with others (e.g. ``610320-1726009`` and ``810320-1936007``).
    """
    n, width = matrix.shape
    words = -(-width // 8)
    padded = np.zeros((n, words * 8), dtype=np.uint8)
    padded[:, :width] = matrix
    lanes = padded.view(np.uint64)
    out = np.full(n, SEED, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for column in range(words):
            out ^= lanes[:, column]
            _mix(out)
        out ^= np.uint64(width)
        _mix(out)
    return out


def hash_strings(values: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """64-bit hashes of strings (to compare keys across partitions without the keys)."""
    matrix = byte_matrix(values)
    if matrix is not None:
        return row_hashes(matrix)
    series = pd.Series(_array(values).to_pandas(), dtype="str")
    return pd.util.hash_pandas_object(series, index=False).to_numpy()


def lookup(keys: pa.Array | pa.ChunkedArray, value_set: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Position of every key in ``value_set`` (-1: null or not there); exact."""
    keys = _array(keys)
    value_set = _array(value_set)
    if len(value_set) == 0 or len(keys) == 0:
        return np.full(len(keys), -1, dtype=np.int64)
    probe, build = byte_matrix(keys), byte_matrix(value_set)
    if probe is None or build is None or probe.shape[1] != build.shape[1]:
        found = pc.index_in(keys, value_set=value_set)
        return found.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
    build_hash = row_hashes(build)
    index = pd.Index(build_hash)
    if not index.is_unique:  # repeated values (or a hash collision): keep the first of each
        first = ~pd.Series(build_hash).duplicated().to_numpy()
        positions_of = np.flatnonzero(first)
        index = pd.Index(build_hash[first])
    else:
        positions_of = None
    found = index.get_indexer(row_hashes(probe)).astype(np.int64)
    if positions_of is not None:
        found = np.where(found >= 0, positions_of[np.maximum(found, 0)], -1)
    hit = found >= 0
    if hit.any():  # confirm byte for byte: a hash collision must not pass for a match
        width = probe.shape[1]
        probe_rows = probe.view(f"V{width}").ravel()
        build_rows = build.view(f"V{width}").ravel()
        same = probe_rows[hit] == build_rows[found[hit]]
        if not same.all():
            rows = np.flatnonzero(hit)[~same]
            exact = pc.index_in(keys.take(pa.array(rows)), value_set=value_set)
            found[rows] = exact.fill_null(-1).to_numpy(zero_copy_only=False)
    return found


def factorize(values: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, pa.Array]:
    """Codes (-1 for null) and distinct values of a string column; exact.

    Fixed-width columns are factorised by their 64-bit hash, and every row is then compared
    byte for byte with the first row of its code; anything else (or a collision) goes through
    Arrow's dictionary encoding.
    """
    values = _array(values)
    matrix = byte_matrix(values)
    if matrix is not None:
        codes, _ = pd.factorize(row_hashes(matrix))
        first = np.full(codes.max() + 1 if len(codes) else 0, -1, dtype=np.int64)
        first[codes[::-1]] = np.arange(len(codes), dtype=np.int64)[::-1]
        rows = matrix.view(f"V{matrix.shape[1]}").ravel()
        if (rows == rows[first[codes]]).all():
            return codes.astype(np.int64), values.take(pa.array(first))
    encoded = pc.dictionary_encode(values)
    codes = encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
    return codes, encoded.dictionary
