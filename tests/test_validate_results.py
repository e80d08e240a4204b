"""Validating the committed sample: it passes, and the results are kept as documented."""

from __future__ import annotations

import contextlib
import io
import json
import re

import pandas as pd
import pytest
from _validate_helpers import config_for, latest_record, latest_run_dir, run_cli, validation_dir

from pipeline.io import sha256_tree
from pipeline.validate.checks import EVENTS_DOMAIN_SUITE
from pipeline.validate.contract import CONTRACTS, VOLUME_SUITE

EXTERNAL = re.compile(r"(https?:)?//[A-Za-z0-9.-]+\.[A-Za-z]{2,}|@import|url\(", re.IGNORECASE)


@pytest.fixture(scope="module")
def sample_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sample")
    config, config_file = config_for(tmp, validation={"data_docs": True})
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = run_cli(config_file, "validate")
    return config, config_file, code, out.getvalue(), err.getvalue()


def test_the_committed_sample_passes(sample_run, sample_raw):
    config, _, code, out, err = sample_run
    assert code == 0, err
    assert "validation passed" in out
    record = latest_record(config)
    assert record["status"] == "passed" and not record["failures"]
    assert record["files_sha256"] == {
        k: v for k, v in sha256_tree(sample_raw).items() if k.endswith(".parquet")
    }
    assert set(record["rows"]) == set(CONTRACTS)
    tables = {r["table"] for r in record["results"]}
    assert set(CONTRACTS) | {VOLUME_SUITE, "keys_across_partitions", "partitions"} <= tables
    assert any(r["suite"] == EVENTS_DOMAIN_SUITE for r in record["results"])
    # Progress bars are off: nothing of GX's tqdm output reaches the terminal.
    assert "Calculating Metrics" not in err


def test_results_are_kept_per_run_with_pointers(sample_run):
    config, _, _, _, _ = sample_run
    folder = validation_dir(config)
    latest = json.loads((folder / "latest.json").read_text(encoding="utf-8"))
    passed = json.loads((folder / "passed.json").read_text(encoding="utf-8"))
    assert latest == passed and latest["status"] == "passed"
    run_dir = latest_run_dir(config)
    for name in (
        "validation.json",
        "volume.json",
        "rejected_rows.parquet",
        "gx_results.json",
        "summary.html",
        "data_docs/index.html",
    ):
        assert (run_dir / name).is_file(), name
    gx = json.loads((run_dir / "gx_results.json").read_text(encoding="utf-8"))
    assert {g["suite"] for g in gx} >= {"households", "crisis_events", VOLUME_SUITE}
    assert all("results" in g["result"] for g in gx)
    assert len(pd.read_parquet(run_dir / "rejected_rows.parquet")) == 0


def test_volume_bounds_are_stored_with_the_results(sample_run):
    config, _, _, _, _ = sample_run
    volume = pd.DataFrame(
        json.loads((latest_run_dir(config) / "volume.json").read_text(encoding="utf-8"))
    )
    checked = volume[volume["status"] == "checked"]
    assert set(volume["status"]) == {"warm-up", "learning", "checked"}
    assert (checked["lower"] <= checked["signals"]).all()
    assert (checked["signals"] <= checked["upper"]).all()
    # Sources that start mid-window are bounded from their own first month.
    wage = volume[volume["indicator_code"] == "wage_arrears"]
    assert wage["reported_month"].min() == "2025-01"


def test_the_summary_page_opens_offline(sample_run):
    config, _, _, _, _ = sample_run
    html = (latest_run_dir(config) / "summary.html").read_text(encoding="utf-8")
    assert "PASSED" in html and "<svg" in html and "</html>" in html
    assert not EXTERNAL.search(html), EXTERNAL.search(html)
    assert "<link" not in html and "<script" not in html


def test_a_second_run_is_another_folder_and_old_runs_are_pruned(sample_run, tmp_path):
    config, _, _, _, _ = sample_run
    from conftest import write_config_file

    keep_two = config.with_overrides(validation={"keep_runs": 2, "data_docs": False})
    config_file = write_config_file(keep_two, tmp_path / "c.yaml")
    for _ in range(2):
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            assert run_cli(config_file, "validate") == 0
    runs = sorted(p.name for p in (validation_dir(config) / "runs").iterdir())
    assert len(runs) == 2
    passed = json.loads((validation_dir(config) / "passed.json").read_text(encoding="utf-8"))
    assert passed["run_id"] in runs


def test_two_workers_give_the_same_verdict(sample_run, tmp_path):
    config, _, _, _, _ = sample_run
    _, config_file = config_for(tmp_path, runtime={"workers": 2})
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        assert run_cli(config_file, "validate") == 0
    one = latest_record(config)
    two = json.loads(
        next((tmp_path / "outputs" / "validation" / "runs").glob("*/validation.json")).read_text()
    )
    assert one["files_sha256"] == two["files_sha256"]
    assert one["rows"] == two["rows"]
    totals = lambda r: sorted(  # noqa: E731
        (x["table"], x["expectation"], x["column"], x["unexpected_count"]) for x in r["results"]
    )
    assert {t[:3] for t in totals(one)} == {t[:3] for t in totals(two)}
    assert two["status"] == "passed"
