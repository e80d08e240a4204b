"""No direct identifier of the raw tables leaves ingest: not in staged tables, validation results
(JSON, rejected rows, the summary page, Data Docs), nor in what the commands print or log.

Later stages extend this test: run them in ``pipeline_outputs`` (or on its output root) and their
files are searched too; ``assert_no_identifiers`` (tests/_ingest_leak.py) does the searching.
"""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pandas as pd
import pytest
from _ingest_leak import Identifiers, assert_no_identifiers, collect_identifiers
from _validate_helpers import config_for, copy_sample, partitions, rewrite, run_cli


def _run(config_file, stage: str, captured: list[str]) -> int:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = run_cli(config_file, stage)
    captured.extend([out.getvalue(), err.getvalue()])
    return code


@pytest.fixture(scope="module")
def pipeline_outputs(tmp_path_factory):
    """validate (failing, then passing with rows set aside) and ingest into one output root.

    The rows set aside carry real resident ids (one of another 시군구, one with a negative value),
    and the failing run trips over duplicate real resident ids, so identifiers are right there
    in the rows validation reports on.
    """
    tmp = tmp_path_factory.mktemp("leak")
    good = copy_sample(tmp / "raw")
    bad = copy_sample(tmp / "raw_bad")
    first, second = partitions(good)[:2]
    other_id = str(
        pd.read_parquet(good / "household_members" / f"sigungu={second}" / "part-0.parquet")[
            "resident_id"
        ].iloc[0]
    )

    def events(frame: pd.DataFrame) -> pd.DataFrame:
        frame = frame.copy()
        ids = frame["resident_id"].astype(object)
        ids.iloc[10] = other_id  # a real person, but not of this 시군구
        frame["resident_id"] = ids.astype("str")
        frame["value"] = np.where(np.arange(len(frame)) == 11, -1.0, frame["value"])
        return frame

    rewrite(good, "crisis_events", events, partition=first)
    rewrite(
        bad,
        "household_members",
        lambda f: f.assign(
            resident_id=f["resident_id"].where(f.index != 1, f["resident_id"].iloc[0])
        ),
        partition=first,
    )
    output = tmp / "outputs"
    validation = {"data_docs": True}
    _, bad_config = config_for(
        tmp / "bad", bad, paths={"output_root": str(output)}, validation=validation
    )
    config, good_config = config_for(
        tmp / "good", good, paths={"output_root": str(output)}, validation=validation
    )
    captured: list[str] = []
    codes = {
        "validate (bad)": _run(bad_config, "validate", captured),
        "validate": _run(good_config, "validate", captured),
        "ingest": _run(good_config, "ingest", captured),
    }
    identifiers = collect_identifiers(good)
    identifiers = Identifiers(
        identifiers.resident_ids | collect_identifiers(bad).resident_ids,
        identifiers.names,
        identifiers.phones,
        identifiers.addresses,
    )
    return config, codes, "\n".join(captured), identifiers


def test_the_runs_did_what_the_leak_test_needs(pipeline_outputs):
    config, codes, captured, _ = pipeline_outputs
    assert codes == {"validate (bad)": 1, "validate": 0, "ingest": 0}
    root = config.paths.output_root
    rejected = pd.read_parquet(next((root / "validation" / "runs").glob("*/rejected_rows.parquet")))
    assert len(list((root / "validation" / "runs").iterdir())) == 2
    assert (root / "staged" / "_manifest.json").is_file()
    assert list((root / "validation" / "runs").glob("*/data_docs/index.html"))
    assert "duplicate resident id" in captured
    assert rejected is not None


def test_no_identifier_anywhere_downstream(pipeline_outputs):
    config, _, captured, identifiers = pipeline_outputs
    searched = assert_no_identifiers(
        [config.paths.output_root], identifiers, texts={"stdout and stderr": captured}
    )
    assert searched > 30  # staged tables, validation JSON, rejected rows, HTML, Data Docs


def test_the_search_finds_planted_identifiers(pipeline_outputs, tmp_path):
    _, _, _, identifiers = pipeline_outputs
    resident = sorted(identifiers.resident_ids)[0]
    name = sorted(identifiers.names)[0]
    phone = sorted(identifiers.phones)[0]
    address = sorted(identifiers.addresses)[0]
    for planted in (resident, f"담당: {name}님", f"tel {phone}", f"주소 {address}"):
        path = tmp_path / "planted.json"
        path.write_text(f'{{"note": "{planted}"}}', encoding="utf-8")
        with pytest.raises(AssertionError, match="direct identifiers found"):
            assert_no_identifiers([path], identifiers)
    frame = pd.DataFrame({"household_key": ["H1"], "who": [resident]})
    frame.to_parquet(tmp_path / "planted.parquet")
    with pytest.raises(AssertionError, match="resident_ids"):
        assert_no_identifiers([tmp_path / "planted.parquet"], identifiers)
