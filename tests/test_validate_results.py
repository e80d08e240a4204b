"""Validating the committed sample: it passes, and the results are kept as documented.

The committed sample's validation is the session's (``staged_sample`` validated it, one worker,
Data Docs on); later runs (two workers, then one, keeping two run folders) work on a copy.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import shutil

import pandas as pd
import pytest
from _validate_helpers import config_for, latest_record, latest_run_dir, run_cli, validation_dir
from conftest import write_config_file

from pipeline.io import sha256_tree
from pipeline.validate.checks import EVENTS_DOMAIN_SUITE
from pipeline.validate.contract import CONTRACTS, VOLUME_SUITE

EXTERNAL = re.compile(r"(https?:)?//[A-Za-z0-9.-]+\.[A-Za-z]{2,}|@import|url\(", re.IGNORECASE)


@pytest.fixture(scope="module")
def sample_run(staged_sample, validated_sample, tmp_path_factory):
    """The session's validation of the committed sample (``staged_sample`` ran ``outreach
    validate`` with one worker and Data Docs, ``validated_sample`` is what it printed), its
    results copied into a private output root: (config, config_file, code, stdout, stderr)."""
    staged, _ = staged_sample
    tmp = tmp_path_factory.mktemp("sample")
    config, config_file = config_for(tmp, validation={"data_docs": True})
    assert config.validation == staged.validation  # the same checks as the session's run
    assert config.paths.raw_input == staged.paths.raw_input
    shutil.copytree(validation_dir(staged), validation_dir(config))
    run = validated_sample
    return config, config_file, run.code, run.out, run.err


@pytest.fixture(scope="module")
def later_runs(sample_run, tmp_path_factory):
    """Two more runs on a copy of the sample run's output root, keeping two run folders: the
    first with two workers, the second with one. Returns (config keeping two runs, the run id
    of the sample run, the two-worker run's validation.json)."""
    config, _, _, _, _ = sample_run
    tmp = tmp_path_factory.mktemp("later")
    keep_two = config.with_overrides(
        paths={"output_root": str(tmp / "outputs")},
        validation={"keep_runs": 2, "data_docs": False},
    )
    shutil.copytree(validation_dir(config), validation_dir(keep_two))
    first_id = latest_record(keep_two)["run_id"]
    two_workers = write_config_file(
        keep_two.with_overrides(runtime={"workers": 2}), tmp / "two-workers.yaml"
    )
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        assert run_cli(two_workers, "validate") == 0
    two = latest_record(keep_two)
    assert two["run_id"] != first_id
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        assert run_cli(write_config_file(keep_two, tmp / "c.yaml"), "validate") == 0
    return keep_two, first_id, two


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
    # "too few": a month whose reference holds fewer signals than chance lets the bounds judge
    assert {"warm-up", "learning", "checked"} <= set(volume["status"])
    assert set(volume["status"]) <= {"warm-up", "learning", "checked", "too few"}
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


def test_a_second_run_is_another_folder_and_old_runs_are_pruned(later_runs):
    keep_two, first_id, two = later_runs
    runs = sorted(p.name for p in (validation_dir(keep_two) / "runs").iterdir())
    assert len(runs) == 2
    assert two["run_id"] in runs and first_id not in runs  # the oldest run went
    passed = json.loads((validation_dir(keep_two) / "passed.json").read_text(encoding="utf-8"))
    assert passed["run_id"] in runs


def test_two_workers_give_the_same_verdict(sample_run, later_runs):
    config, _, _, _, _ = sample_run
    _, _, two = later_runs
    one = latest_record(config)
    assert one["run_id"] != two["run_id"]
    assert one["files_sha256"] == two["files_sha256"]
    assert one["rows"] == two["rows"]
    totals = lambda r: sorted(  # noqa: E731
        (x["table"], x["expectation"], x["column"], x["unexpected_count"]) for x in r["results"]
    )
    assert {t[:3] for t in totals(one)} == {t[:3] for t in totals(two)}
    assert two["status"] == "passed"
