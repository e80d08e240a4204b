"""Ingest: only validated raw files, no direct identifiers, keyed pseudonyms, typed tables."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import io
import json
import shutil

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from _validate_helpers import (
    config_for,
    copy_sample,
    leftovers,
    partitions,
    rewrite,
    run_cli,
)
from conftest import REPO_ROOT, write_config_file

from pipeline.config import Config
from pipeline.datasets import PARTITIONED_RAW_TABLES, TableLayout
from pipeline.errors import UsageError
from pipeline.ingest.keys import (
    DEMO_KEY,
    MESSAGE_PREFIX,
    Pseudonymizer,
    fingerprint,
    resolve_key,
)
from pipeline.ingest.schema import DROPPED_COLUMNS, STAGED_SCHEMAS, read_staged
from pipeline.io import sha256_tree
from pipeline.months import parse_month

KEY_ENV = "OUTREACH_PSEUDONYM_KEY"


def _cli(config_file, stage: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = run_cli(config_file, stage)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def ingested(tmp_path_factory):
    """A sample copy with one signal set aside (negative value), validated and ingested."""
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv(KEY_ENV, raising=False)
        tmp = tmp_path_factory.mktemp("ingest")
        raw = copy_sample(tmp / "raw")
        code = partitions(raw)[0]
        rewrite(
            raw,
            "crisis_events",
            lambda f: f.assign(value=np.where(np.arange(len(f)) == 17, -1.0, f["value"])),
            partition=code,
        )
        config, config_file = config_for(tmp, raw)
        assert _cli(config_file, "validate")[0] == 0
        result = _cli(config_file, "ingest")
        assert result[0] == 0, result[2]
        return config, config_file, raw, code, result


def _staged(config: Config):
    return config.paths.output_root / "staged"


def test_staged_tables_have_their_schema_and_no_identifier(ingested):
    config, _, raw, _, _ = ingested
    layout = TableLayout(_staged(config))
    for table, schema in STAGED_SCHEMAS.items():
        if table in PARTITIONED_RAW_TABLES:
            assert layout.partitions(table) == TableLayout(raw).partitions(table)
            paths = [layout.partition_file(table, c) for c in layout.partitions(table)]
        else:
            paths = [layout.small_table_file(table)]
        for path in paths:
            stored = pq.read_schema(path)
            assert stored.names == schema.names, path
            assert [f.type for f in stored] == [f.type for f in schema], path
            assert not set(DROPPED_COLUMNS.get(table, ())) & set(stored.names)


def test_signals_are_linked_to_households_with_keyed_person_pseudonyms(ingested):
    config, _, raw, code, _ = ingested
    raw_events = pd.read_parquet(raw / "crisis_events" / f"sigungu={code}" / "part-0.parquet")
    members = pd.read_parquet(raw / "household_members" / f"sigungu={code}" / "part-0.parquet")
    raw_events = raw_events[raw_events["value"] >= 0].reset_index(drop=True)  # the row set aside
    staged = read_staged(_staged(config), "crisis_events", code)
    assert len(staged) == len(raw_events)
    household_of = dict(zip(members["resident_id"], members["household_key"], strict=True))
    sample = np.random.default_rng(1).choice(len(staged), 200, replace=False)
    for i in sample:
        resident = raw_events["resident_id"].iloc[i]
        assert staged["household_key"].iloc[i] == household_of[resident]
        expected = hmac.new(DEMO_KEY, MESSAGE_PREFIX + resident.encode(), hashlib.sha256)
        assert staged["person_id"].iloc[i] == expected.hexdigest()[:32]
        assert staged["event_month"].iloc[i] == parse_month(raw_events["event_month"].iloc[i])
    staged_members = read_staged(_staged(config), "household_members", code)
    assert set(staged["person_id"].astype(str)) <= set(staged_members["person_id"])
    assert staged_members["person_id"].is_unique


def test_types_are_normalised(ingested):
    config, _, _, _, _ = ingested
    staged = _staged(config)
    events = read_staged(staged, "crisis_events")
    assert isinstance(events["indicator_code"].dtype, pd.CategoricalDtype)
    assert str(events["event_month"].dtype) == "int32"
    outcomes = read_staged(staged, "outreach_outcomes")
    assert str(outcomes["resolved_month"].dtype) == "Int32"
    assert (
        outcomes["resolved_month"].isna().sum() == (outcomes["outcome_code"] == "in_progress").sum()
    )
    households = read_staged(staged, "households")
    assert list(households["tenure"].cat.categories) == list(config.validation.value_sets.tenure)
    layout = TableLayout(staged)
    path = layout.partition_file("crisis_events", layout.partitions("crisis_events")[0])
    field = pq.read_schema(path).field("reported_month")
    assert b"month index" in field.metadata[b"description"]


def test_quarantined_rows_are_left_out_and_the_manifest_says_what_happened(ingested):
    config, _, raw, _, (_, out, _) = ingested
    manifest = json.loads((_staged(config) / "_manifest.json").read_text(encoding="utf-8"))
    events = manifest["rows"]["crisis_events"]
    assert events["excluded"] == 1 and events["staged"] == events["raw"] - 1
    passed = json.loads((config.paths.output_root / "validation" / "passed.json").read_text())
    assert manifest["validation_run_id"] == passed["run_id"]
    assert manifest["inputs_sha256"] == {
        k: v for k, v in sha256_tree(raw).items() if k.endswith(".parquet")
    }
    assert manifest["pseudonym"]["key_fingerprint"] == fingerprint(DEMO_KEY)
    assert manifest["pseudonym"]["demo_key"] is True
    assert DEMO_KEY.decode() not in json.dumps(manifest)
    assert set(manifest["files_sha256"]) == {
        p for p in sha256_tree(_staged(config)) if p != "_manifest.json"
    }
    assert "1 quarantined rows left out" in out


def test_ingest_is_deterministic(ingested, tmp_path):
    config, config_file, _, _, _ = ingested
    before = sha256_tree(_staged(config))
    assert _cli(config_file, "ingest")[0] == 0
    after = sha256_tree(_staged(config))
    before.pop("_manifest.json"), after.pop("_manifest.json")
    assert before == after


def test_a_key_from_the_environment_changes_every_pseudonym(ingested, monkeypatch, tmp_path):
    config, _, _, code, _ = ingested
    other = config.with_overrides(paths={"output_root": str(tmp_path / "out")})
    shutil.copytree(config.paths.output_root / "validation", tmp_path / "out" / "validation")
    config_file = write_config_file(other, tmp_path / "config.yaml")
    monkeypatch.setenv(KEY_ENV, "a-secret-key-that-is-long-enough")
    code_, out, err = _cli(config_file, "ingest")
    assert code_ == 0, err
    assert "a-secret-key" not in out + err
    demo = read_staged(_staged(config), "household_members", code)["person_id"]
    keyed = read_staged(tmp_path / "out" / "staged", "household_members", code)["person_id"]
    assert not set(demo) & set(keyed)
    manifest = json.loads((tmp_path / "out" / "staged" / "_manifest.json").read_text())
    assert manifest["pseudonym"]["demo_key"] is False
    assert manifest["pseudonym"]["key_source"] == f"environment variable {KEY_ENV}"
    assert "a-secret-key" not in json.dumps(manifest)


def test_ingest_refuses_without_a_passing_validation(tmp_path):
    _, config_file = config_for(tmp_path)
    code, _, err = _cli(config_file, "ingest")
    assert code == 1
    assert "no passing validation" in err and "outreach validate" in err


def test_ingest_refuses_raw_files_other_than_the_validated_ones(ingested, tmp_path):
    config, _, raw, code, _ = ingested
    staged_before = sha256_tree(_staged(config))
    # A new file, a changed file: each is refused, and the staged tables stay as they were.
    extra = raw / "crisis_events" / f"sigungu={code}" / "part-1.parquet"
    extra.write_bytes((raw / "crisis_events" / f"sigungu={code}" / "part-0.parquet").read_bytes())
    try:
        result = _cli(tmp_path_config(config, tmp_path), "ingest")
        assert result[0] == 1 and "differ from those validation run" in result[2]
    finally:
        extra.unlink()
    path = raw / "outreach_outcomes" / f"sigungu={code}" / "part-0.parquet"
    original = path.read_bytes()
    rewrite(raw, "outreach_outcomes", lambda f: f.iloc[:-1], partition=code)
    try:
        result = _cli(tmp_path_config(config, tmp_path), "ingest")
        assert result[0] == 1 and "changed since it was validated" in result[2]
    finally:
        path.write_bytes(original)
    assert sha256_tree(_staged(config)) == staged_before
    assert not leftovers(config.paths.output_root)


def tmp_path_config(config: Config, tmp_path):
    return write_config_file(config, tmp_path / "same.yaml")


def test_changed_checks_need_a_new_validation(ingested, tmp_path):
    config, _, _, _, _ = ingested
    changed = config.with_overrides(validation={"max_rejected_share": 0.02})
    code, _, err = _cli(write_config_file(changed, tmp_path / "c.yaml"), "ingest")
    assert code == 1 and "used other checks" in err


# Keys --------------------------------------------------------------------------------------


def test_a_non_demo_run_without_a_key_is_refused(ingested, tmp_path, monkeypatch):
    config, _, _, _, _ = ingested
    monkeypatch.delenv(KEY_ENV, raising=False)
    no_demo = config.with_overrides(ingest={"demo_key": False})
    code, _, err = _cli(write_config_file(no_demo, tmp_path / "c.yaml"), "ingest")
    assert code == 2
    assert "no pseudonym key" in err and KEY_ENV in err
    assert len([line for line in err.splitlines() if line.startswith("outreach:")]) == 1


def test_key_sources_and_their_guards(tmp_path, sample_raw):
    config = Config()
    env = {KEY_ENV: "x" * 20}
    assert resolve_key(config, sample_raw, env).source == f"environment variable {KEY_ENV}"
    with pytest.raises(UsageError, match="too short"):
        resolve_key(config, sample_raw, {KEY_ENV: "short"})
    inside = REPO_ROOT / "configs" / "indicators.yaml"
    with pytest.raises(UsageError, match="inside the repository"):
        resolve_key(config.with_overrides(ingest={"key_file": str(inside)}), sample_raw, {})
    key_file = tmp_path / "pseudonym.key"
    key_file.write_bytes(b"0123456789abcdef0123456789abcdef\n")
    from_file = resolve_key(
        config.with_overrides(ingest={"key_file": str(key_file)}), sample_raw, {}
    )
    assert from_file.secret == b"0123456789abcdef0123456789abcdef" and not from_file.demo
    assert "0123456789abcdef" not in repr(from_file)
    with pytest.raises(UsageError, match="not found"):
        resolve_key(
            config.with_overrides(ingest={"key_file": str(tmp_path / "nope")}), sample_raw, {}
        )
    demo = resolve_key(config, sample_raw, {})
    assert demo.demo and demo.secret == DEMO_KEY
    # The demo key is for synthetic data only (a raw folder written by `outreach generate`).
    real = tmp_path / "real"
    real.mkdir()
    with pytest.raises(UsageError, match="synthetic data only"):
        resolve_key(config, real, {})


@pytest.mark.parametrize(
    "key", [b"k" * 16, b"a much longer key " * 8, "한국어 키 값입니다 길게".encode()]
)
def test_pseudonyms_are_hmac_sha256(key):
    pseudonymizer = Pseudonymizer(key)
    values = ["900101-1234567", "", "한글", "x" * 200]
    for value, got in zip(values, pseudonymizer.pseudonyms([*values]), strict=True):
        expected = hmac.new(key, MESSAGE_PREFIX + value.encode(), hashlib.sha256).hexdigest()[:32]
        assert got == expected == pseudonymizer.pseudonym(value)
    assert pseudonymizer.pseudonyms([None]) == [None]
