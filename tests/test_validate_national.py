"""The national check of keys across partitions: compact batches, bucket by bucket, same verdict.

Batches send the driver the hashes of their distinct keys as numpy arrays, and the driver runs
the Great Expectations suite on buckets of keys split by the high bits of the hash. These tests
hold the bucketed check to the result of the suite on one frame of all keys (as the check ran
before it was bucketed), on synthetic keys and on the sample with keys repeated across
partitions and batches.
"""

from __future__ import annotations

import pickle
import shutil

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import REPO_ROOT, make_config

from pipeline.datasets import TableLayout
from pipeline.validate import national_keys, stage
from pipeline.validate.checks import example_columns, suite_inputs
from pipeline.validate.contract import UNIQUE_ACROSS_SUITE
from pipeline.validate.engine import engine_for
from pipeline.validate.national_keys import (
    TABLE_SALT,
    KeySegment,
    bucket_bits,
    bucket_frame,
    check_keys_across,
    key_segment,
)
from pipeline.validate.partition import (
    BatchTask,
    compact_rejected,
    concat_rejected,
    empty_rejected,
    plain_rejected,
    validate_batch,
)
from pipeline.validate.stage import emd_by_sigungu, plan_batches, region_sets, run_validation
from pipeline.validate.verdict import read_results

SAMPLE_RAW = REPO_ROOT / "data_samples" / "raw"
BATCH_ROWS = 10_000  # crisis-event rows per batch: every sample partition is its own batch


def one_frame_results(engine, segments: list[KeySegment], example_keys: int):
    """The check as it ran before buckets: one frame of every key (table and 시군구 on every
    row), one GX run, examples read from the frame by position."""
    frame = pd.DataFrame(
        {
            "table": pd.Categorical(
                np.repeat([s.table for s in segments], [len(s) for s in segments])
            ),
            "sigungu": pd.Categorical(
                np.repeat([s.sigungu for s in segments], [len(s) for s in segments])
            ),
            "row": np.concatenate([s.rows.astype(np.int64) for s in segments]),
            "key_hash": np.concatenate(
                [s.hashes ^ np.uint64(TABLE_SALT[s.table]) for s in segments]
            ),
        }
    )
    gx_result = engine.run(UNIQUE_ACROSS_SUITE, frame)
    results = read_results(
        gx_result,
        engine.suites[UNIQUE_ACROSS_SUITE],
        table=UNIQUE_ACROSS_SUITE,
        partition=None,
        example_columns=example_columns(UNIQUE_ACROSS_SUITE),
        example_keys=example_keys,
        frame=frame,
    )
    return results, gx_result


@pytest.fixture(scope="module")
def engine(catalogue, outcome_catalogue, tmp_path_factory):
    regions = pd.read_parquet(SAMPLE_RAW / "regions.parquet")
    config = make_config(tmp_path_factory.mktemp("engine"))
    return engine_for(suite_inputs(config, catalogue, outcome_catalogue, region_sets(regions)))


def synthetic_segments(seed: int = 7, repeated: int = 60) -> list[KeySegment]:
    """Twelve partitions' households and members with ``repeated`` keys each found in two
    partitions (more than GX lists as examples), one key three times."""
    rng = np.random.default_rng(seed)
    codes = [f"{1100 + i}000000" for i in range(12)]
    keys = {
        (table, code): rng.integers(0, 2**64, int(rng.integers(500, 3000)), dtype=np.uint64)
        for code in codes
        for table in ("households", "household_members")
    }
    parts = list(keys)
    for _ in range(repeated):
        (a, b) = rng.choice(len(parts), 2, replace=False)
        if parts[a][0] != parts[b][0]:  # only keys of one table meet
            continue
        source = keys[parts[a]]
        keys[parts[b]] = np.append(keys[parts[b]], source[rng.integers(len(source))])
    first = keys[parts[0]][0]
    keys[parts[2]] = np.append(keys[parts[2]], [first])
    keys[parts[4]] = np.append(keys[parts[4]], [first])
    segments = []
    for (table, code), hashes in keys.items():
        rows = rng.permutation(len(hashes) + 10)[: len(hashes)]  # rows of first occurrences
        segments.append(key_segment(table, code, hashes, rows))
    return segments


# --- segments and buckets ----------------------------------------------------------------------


def test_a_segment_keeps_each_key_once_with_its_first_row():
    hashes = np.array([30, 10, 20, 10, 30], dtype=np.uint64)
    segment = key_segment("households", "1111000000", hashes, np.array([4, 5, 6, 7, 8]))
    assert segment.hashes.tolist() == [10, 20, 30]
    assert segment.rows.tolist() == [5, 6, 4]
    assert segment.hashes.dtype == np.uint64 and segment.rows.dtype == np.int32
    assert key_segment("household_members", "x", hashes).rows.tolist() == [1, 2, 0]


@pytest.mark.parametrize("keys, bits", [(0, 0), (1, 0), (1000, 0), (1001, 1), (2000, 1), (2001, 2)])
def test_bucket_count_is_a_power_of_two_within_the_bound(keys, bits):
    assert bucket_bits(keys, 1000) == bits


def _bucket_of(salted: np.ndarray, bits: int) -> np.ndarray:
    if bits == 0:
        return np.zeros(len(salted), dtype=np.uint64)
    return salted >> np.uint64(64 - bits)


@pytest.mark.parametrize("bits", [0, 1, 3, 6])
def test_every_key_is_in_one_bucket_given_by_its_salted_hash(bits):
    segments = synthetic_segments()
    for segment in segments:
        covered = np.zeros(len(segment), dtype=np.int64)
        for bucket in range(1 << bits):
            start, stop = segment.bucket_slice(bucket, bits)
            covered[start:stop] += 1
            assert (_bucket_of(segment.hashes[start:stop] ^ segment.salt, bits) == bucket).all()
        assert (covered == 1).all()
    # A bucket frame lists its keys (salted) in the order of the frame of all keys.
    everything = np.concatenate([s.hashes ^ s.salt for s in segments])
    for bucket in {0, (1 << bits) - 1}:
        frame, _ = bucket_frame(segments, bucket, bits)
        expected = everything[_bucket_of(everything, bits) == bucket]
        assert frame["key_hash"].to_numpy().tolist() == expected.tolist()


# --- the bucketed check equals the check on one frame ----------------------------------------


@pytest.mark.parametrize("bucket_rows", [10**9, 12_000, 3_000])
def test_buckets_give_the_results_of_one_frame(engine, bucket_rows):
    segments = synthetic_segments()
    expected, whole = one_frame_results(engine, segments, example_keys=5)
    results, gx_results = check_keys_across(
        engine, segments, example_keys=5, bucket_rows=bucket_rows
    )
    assert results == expected
    (result,) = results
    assert not result.success and result.unexpected_count > 40  # more than GX's 20 examples
    assert len(result.examples) == 5
    # One GX result per bucket, kept; their counts add up to the one frame's.
    total = sum(len(s) for s in segments)
    assert len(gx_results) == 2 ** bucket_bits(total, bucket_rows)
    counts = [r["results"][0]["result"] for _, r in gx_results]
    whole_counts = whole["results"][0]["result"]
    assert sum(c["element_count"] for c in counts) == whole_counts["element_count"] == total
    assert sum(c["unexpected_count"] for c in counts) == whole_counts["unexpected_count"]
    if len(gx_results) > 1:
        assert max(c["element_count"] for c in counts) <= 1.5 * bucket_rows
        labels = [label for label, _ in gx_results]
        assert labels[0] == f"national (key hash bucket 1 of {len(gx_results)})"
        assert len(set(labels)) == len(labels)
    else:
        assert [label for label, _ in gx_results] == ["national"]
        assert gx_results[0][1]["results"] == whole["results"]


def test_keys_of_two_tables_never_meet_but_equal_salted_hashes_do(engine):
    rng = np.random.default_rng(3)
    shared = rng.integers(0, 2**64, 50, dtype=np.uint64)
    segments = [
        key_segment("households", "1111000000", shared),
        key_segment("household_members", "1112000000", shared),
    ]
    results, _ = check_keys_across(engine, segments, example_keys=5, bucket_rows=30)
    assert results[0].success and results[0].element_count == 100
    salted = shared[:3] ^ np.uint64(TABLE_SALT["households"])
    segments.append(key_segment("household_members", "1113000000", salted))
    for rows in (30, 10**6):
        results, _ = check_keys_across(engine, segments, example_keys=5, bucket_rows=rows)
        assert results == one_frame_results(engine, segments, 5)[0]
        assert results[0].unexpected_count == 6


def test_a_clean_national_frame_passes_in_every_bucket(engine):
    rng = np.random.default_rng(11)
    segments = [
        key_segment(table, f"{c}", rng.integers(0, 2**64, 4000, dtype=np.uint64))
        for c in range(6)
        for table in ("households", "household_members")
    ]
    results, gx_results = check_keys_across(engine, segments, example_keys=5, bucket_rows=6000)
    assert results == one_frame_results(engine, segments, 5)[0]
    assert results[0].success and results[0].examples == ()
    assert len(gx_results) == 8 and all(r["success"] for _, r in gx_results)


# --- batches send compact keys and rows -------------------------------------------------------


@pytest.fixture(scope="module")
def repeated_raw(tmp_path_factory):
    """The sample with a household key of one partition and a resident id of another repeated
    in a third and a fourth partition (appended as the files' last rows)."""
    raw = tmp_path_factory.mktemp("national") / "raw"
    shutil.copytree(SAMPLE_RAW, raw)
    layout = TableLayout(raw)
    codes = layout.partitions("households")

    def append(table: str, code: str, rows: pd.DataFrame) -> int:
        path = layout.partition_file(table, code)
        original = pq.read_table(path)
        frame = pd.concat([original.to_pandas(), rows], ignore_index=True)
        data = pa.Table.from_pandas(frame, schema=original.schema, preserve_index=False)
        pq.write_table(data.replace_schema_metadata(None), path)
        return original.num_rows

    households = pd.read_parquet(layout.partition_file("households", codes[0]))
    members = pd.read_parquet(layout.partition_file("household_members", codes[2]))
    host = pd.read_parquet(layout.partition_file("households", codes[3]))
    member = members.iloc[[7]].assign(household_key=host["household_key"].iloc[0])
    places = {
        ("households", codes[0]): 12,
        ("households", codes[1]): append("households", codes[1], households.iloc[[12]]),
        ("household_members", codes[2]): 7,
        ("household_members", codes[3]): append("household_members", codes[3], member),
    }
    return raw, places


def _batch_tasks(raw, config, catalogue, outcome_catalogue) -> list[BatchTask]:
    regions = pd.read_parquet(raw / "regions.parquet")
    inputs = suite_inputs(config, catalogue, outcome_catalogue, region_sets(regions))
    emd_sigungu = tuple((e, c) for c, emds in emd_by_sigungu(regions).items() for e in emds)
    codes = TableLayout(raw).partitions("households")
    return [
        BatchTask(
            codes=batch,
            raw_dir=raw,
            inputs=inputs,
            emd_sigungu=emd_sigungu,
            max_rejected_share=config.validation.max_rejected_share,
            example_keys=config.validation.example_keys,
        )
        for batch in plan_batches(raw, codes, 1, BATCH_ROWS)
    ]


def _write_rows(raw, table: str, code: str, rows: int) -> None:
    path = TableLayout(raw).partition_file(table, code)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"n": np.arange(rows, dtype=np.int32)}), path)


def test_batches_are_planned_by_the_rows_of_every_partitioned_table(tmp_path):
    """A partition of few crisis events but many households and members is still large.

    Every size is read from the files' footers; a batch is held whole by one worker.
    """
    raw = tmp_path / "raw"
    codes = ["1111000000", "1112000000", "1113000000", "1114000000"]
    for code in codes:
        _write_rows(raw, "crisis_events", code, 100)
        _write_rows(raw, "households", code, 3_000)
        _write_rows(raw, "household_members", code, 6_000)
    # 400 crisis-event rows alone would make one batch; 36,400 raw rows need four.
    assert plan_batches(raw, codes, 1, 10_000) == [(c,) for c in codes]
    assert plan_batches(raw, codes, 2, 40_000) == [(codes[0], codes[2]), (codes[1], codes[3])]
    # A missing or unreadable file counts as empty (its worker reports it).
    (TableLayout(raw).partition_file("households", codes[0])).write_bytes(b"not parquet")
    assert plan_batches(raw, codes, 1, 40_000) == [tuple(codes)]


def test_batches_send_keys_as_compact_arrays(repeated_raw, tmp_path, catalogue, outcome_catalogue):
    raw, _ = repeated_raw
    config = make_config(tmp_path)
    task = _batch_tasks(raw, config, catalogue, outcome_catalogue)[0]
    out = validate_batch(task)
    assert [(s.table, s.sigungu) for s in out.keys] == [
        (table, code) for code in task.codes for table in ("households", "household_members")
    ]
    keys = sum(len(s) for s in out.keys)
    assert len(out.keys[0]) == out.rows[("households", task.codes[0])]  # keys are distinct
    for segment in out.keys:
        assert isinstance(segment, KeySegment)
        assert segment.hashes.dtype == np.uint64 and segment.rows.dtype == np.int32
        assert (np.diff(segment.hashes.astype(np.float64)) >= 0).all()
    # About 12 bytes a key as they travel (a frame with text per row took about 60).
    assert len(pickle.dumps(out.keys, protocol=pickle.HIGHEST_PROTOCOL)) < 13 * keys + 2000
    assert isinstance(out.rejected["reason"].dtype, pd.CategoricalDtype)


def test_rejected_rows_stay_compact_and_are_written_as_text():
    parts = [
        pd.DataFrame(
            {
                "table": "crisis_events",
                "sigungu": pd.Series([code] * 3, dtype="str"),
                "row": np.arange(3, dtype=np.int64) + offset,
                "check": "expect_column_values_to_not_be_null (value)",
                "reason": reason,
                "detail": pd.Series([f"value={v}" for v in range(3)], dtype="str"),
            }
        )
        for code, offset, reason in (("1111000000", 0, "value missing"), ("1112000000", 5, "x"))
    ]
    plain = pd.concat(parts, ignore_index=True)
    compact = concat_rejected(
        [compact_rejected(p) for p in parts] + [compact_rejected(empty_rejected())]
    )
    assert isinstance(compact["table"].dtype, pd.CategoricalDtype)
    pd.testing.assert_frame_equal(plain_rejected(compact), plain)
    pd.testing.assert_frame_equal(plain_rejected(concat_rejected([])), empty_rejected())


# --- the stage: a key in two partitions (and two batches) is still found ---------------------


def test_a_key_in_two_partitions_is_found_with_the_same_message_in_buckets(
    repeated_raw, tmp_path, catalogue, outcome_catalogue, monkeypatch
):
    raw, places = repeated_raw
    config = make_config(
        tmp_path, paths={"raw_input": str(raw)}, validation={"batch_rows": BATCH_ROWS}
    )
    tasks = _batch_tasks(raw, config, catalogue, outcome_catalogue)
    assert len(tasks) == 4  # each partition its own batch: the keys meet in two batches
    order = [
        (t, c) for task in tasks for c in task.codes for t in ("households", "household_members")
    ]
    examples = [
        f"{table} (sigungu={code} row {places[(table, code)]})"
        for table, code in sorted(places, key=order.index)
    ]
    expected = (
        f"keys_across_partitions | key_hash | expect_column_values_to_be_unique | 4 unexpected; "
        f"e.g. {', '.join(examples)} | the same household key or resident id in two 시군구 "
        "partitions (key_hash: 64-bit hash of the key, salted per table)"
    )

    monkeypatch.setattr(national_keys, "BUCKET_ROWS", 5_000)  # 16 buckets of the sample's keys
    checked = []  # the keys the stage checked, and its engine

    def keeping(engine, segments, **kwargs):
        checked.append((engine, list(segments)))
        return check_keys_across(engine, segments, **kwargs)

    monkeypatch.setattr(stage, "check_keys_across", keeping)
    run = run_validation(config, catalogue, outcome_catalogue, raw)
    (across,) = [r for r in run.results if r.suite == UNIQUE_ACROSS_SUITE]
    assert across.line() == expected
    assert across in run.failures
    buckets = [(b, r) for s, b, r in run.gx_results if s == UNIQUE_ACROSS_SUITE]
    assert len(buckets) == 16
    assert sum(r["results"][0]["result"]["element_count"] for _, r in buckets) == (
        across.element_count
    )

    # The same keys checked in one bucket, and as one frame, give the same result.
    ((engine, segments),) = checked
    assert [(s.table, s.sigungu) for s in segments] == order
    keys = config.validation.example_keys
    one_bucket, gx_results = check_keys_across(
        engine, segments, example_keys=keys, bucket_rows=10**9
    )
    assert one_bucket == [across] == one_frame_results(engine, segments, keys)[0]
    assert [label for label, _ in gx_results] == ["national"]
