"""Freshness by digest: every consumer checks that its inputs are the ones its upstream outputs
record, and refuses stale ones with a message naming the command to run.

- features against staged: a feature folder built from other staged tables (or another feature
  spec or indicator catalogue) is rebuilt first by ``score`` and ``train`` (announced), and the
  reader refuses it;
- score against the model: a model version whose inputs the feature folder lacks is refused;
- report against the round: a round whose files or feature folder changed since scoring is
  refused.

Each test works on a private copy of the session's scored sample (``copy_outputs``).
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from _cli_helpers import run_captured as _run
from conftest import REPO_ROOT, ScoredSample, copy_outputs, write_config_file

from pipeline.catalogue import load_outcomes
from pipeline.datasets import OutputLayout
from pipeline.datasets.features import FeatureRounds, round_status
from pipeline.errors import DataError
from pipeline.io import sha256_file, write_parquet
from pipeline.months import parse_month

pytestmark = pytest.mark.filterwarnings(
    "ignore::UserWarning", "ignore::FutureWarning", "ignore::DeprecationWarning"
)

STAGED_CHANGED = "staged tables changed since it was built"


def _messages(err: str) -> list[str]:
    """The CLI's error lines (stderr also holds the log of the stages run)."""
    return [line for line in err.splitlines() if line.startswith("outreach:")]


def _simulate_ingest(config, change_rows: bool = True) -> str:
    """Do to the staged tables what a new ``outreach ingest`` would: write a new manifest (a
    new start time) and, with ``change_rows``, new rows (one household's tenure changed, its
    file's sha256 recorded anew); returns the new manifest's sha256."""
    staged = OutputLayout(config.paths.output_root).staged
    path = staged / "_manifest.json"
    manifest = json.loads(path.read_text(encoding="utf-8"))
    manifest["started"] = "2099-01-01T00:00:00+00:00"
    if change_rows:
        name = sorted(k for k in manifest["files_sha256"] if k.startswith("households/"))[0]
        table = pd.read_parquet(staged / name)
        tenure = table["tenure"].astype("string")
        tenure.iloc[0] = "public_rental" if tenure.iloc[0] != "public_rental" else "own"
        write_parquet(table.assign(tenure=tenure.astype(table["tenure"].dtype)), staged / name)
        manifest["files_sha256"][name] = sha256_file(staged / name)
    path.write_text(json.dumps(manifest, ensure_ascii=False, indent=2), encoding="utf-8")
    return sha256_file(path)


def test_an_ingest_of_the_same_rows_leaves_the_feature_folders_current(copied):
    """Only the staged content counts: a new start time alone rebuilds nothing."""
    _simulate_ingest(copied.config, change_rows=False)
    assert round_status(copied.config, parse_month(copied.as_of)) is None


def _features_manifest(config, as_of: str) -> dict:
    folder = OutputLayout(config.paths.output_root).features(as_of)
    return json.loads((folder / "manifest.json").read_text(encoding="utf-8"))


@pytest.fixture()
def copied(scored_sample: ScoredSample, tmp_path: Path) -> ScoredSample:
    return copy_outputs(scored_sample, tmp_path)


def test_score_force_after_a_new_ingest_rebuilds_the_feature_folder_first(copied):
    config, as_of = copied.config, copied.as_of
    before = _features_manifest(config, as_of)
    staged_sha = _simulate_ingest(config)
    assert before["staged_manifest_sha256"] != staged_sha
    assert round_status(config, parse_month(as_of)) == STAGED_CHANGED

    code, out, err = _run(copied.config_file, "score", "--as-of", as_of, "--force")
    assert code == 0, err
    assert f"==> outreach features --as-of {as_of} (score needs it: {STAGED_CHANGED})" in out
    rebuilt = _features_manifest(config, as_of)
    assert rebuilt["staged_manifest_sha256"] == staged_sha
    assert round_status(config, parse_month(as_of)) is None
    manifest = json.loads((copied.round_dir / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["staged"]["manifest_sha256"] == staged_sha
    folder = OutputLayout(config.paths.output_root).features(as_of)
    assert manifest["features"]["manifest_sha256"] == sha256_file(folder / "manifest.json")
    # The rebuilt round is consistent: its report is written.
    code, _, err = _run(copied.config_file, "report", "--as-of", as_of)
    assert code == 0, err


def test_the_reader_refuses_a_feature_folder_built_from_other_staged_tables(copied):
    config, as_of = copied.config, copied.as_of
    _simulate_ingest(config)
    source = FeatureRounds(config, load_outcomes(config.paths.outcomes))
    command = f"`outreach features --as-of {as_of}`"
    with pytest.raises(DataError, match=STAGED_CHANGED) as raised:
        source.features(parse_month(as_of), columns=["emd_code"])
    assert command in str(raised.value) and "\n" not in str(raised.value)
    with pytest.raises(DataError, match=command):
        source.lineage(parse_month(as_of))


def test_train_needs_every_round_built_from_other_staged_tables_rebuilt(copied):
    from pipeline.stages import parse_stage_args, prerequisites, stage_named

    config = copied.config
    train = stage_named("train")
    args = parse_stage_args(train, ["--as-of", copied.as_of])
    assert prerequisites(config, train, args) == []
    _simulate_ingest(config)
    needed = prerequisites(config, train, args)
    # One run builds every round in one pass over each partition.
    assert [(n.stage, n.why) for n in needed] == [("features", STAGED_CHANGED)]
    option, months = needed[0].argv
    assert option == "--as-of" and len(months.split(",")) > 3
    assert months.split(",")[-1] == copied.as_of


def test_a_changed_indicator_catalogue_makes_the_folder_out_of_date(copied, tmp_path):
    indicators = tmp_path / "indicators.yaml"
    text = (REPO_ROOT / "configs" / "indicators.yaml").read_text(encoding="utf-8")
    indicators.write_text(text + "\n# edited\n", encoding="utf-8")
    config = copied.config.with_overrides(paths={"indicators": str(indicators)})
    why = "the indicator catalogue changed since it was built"
    assert round_status(config, parse_month(copied.as_of)) == why
    with pytest.raises(DataError, match=why):
        FeatureRounds(config, load_outcomes(config.paths.outcomes)).labels(
            parse_month(copied.as_of)
        )


def test_the_training_run_records_the_spec_of_its_features(copied):
    from pipeline.tracking import connect, tracking_uri
    from pipeline.tracking.models import model_input_names, training_feature_spec
    from pipeline.tracking.registry import resolve_model

    config = copied.config
    ref = resolve_model(connect(config), config.training.model_name, None)
    folder = _features_manifest(config, copied.as_of)
    assert training_feature_spec(ref, tracking_uri(config)) == folder["feature_spec_sha256"]
    inputs = model_input_names(ref)
    assert inputs is not None and len(inputs) == folder["model_inputs"]


def test_a_model_of_another_feature_spec_is_refused_even_with_every_column_present():
    from pipeline.score.command import model_misfit

    assert model_misfit(["a", "b"], ["household_key", "a", "b"], "1" * 64, "1" * 64) is None
    assert model_misfit(["a", "b"], ["a", "b"], None, "2" * 64) is None  # not recorded
    why = model_misfit(["a", "b"], ["a", "b"], "1" * 64, "2" * 64)
    assert why is not None and "another feature spec" in why
    why = model_misfit([f"c{i}" for i in range(8)], ["c0"], None, None)
    assert why == "7 of its input columns are not in the folder (c1, c2, c3, c4, c5 and 2 more)"


def test_a_changed_feature_spec_rebuilds_the_folder_and_a_model_missing_inputs_is_refused(
    copied, tmp_path
):
    spec_text = (REPO_ROOT / "configs" / "features.yaml").read_text(encoding="utf-8")
    assert "sum_windows: [12]" in spec_text
    spec = tmp_path / "features.yaml"
    spec.write_text(spec_text.replace("sum_windows: [12]", "sum_windows: [6]"), encoding="utf-8")
    config = copied.config.with_overrides(paths={"features": str(spec)})
    config_file = write_config_file(config, tmp_path / "changed-spec.yaml")
    as_of = copied.as_of
    assert round_status(config, parse_month(as_of)) == "the feature spec changed since it was built"
    before = sorted(p.name for p in copied.round_dir.iterdir())

    code, out, err = _run(config_file, "score", "--as-of", as_of, "--force")
    assert code in (1, 2), out + err
    assert "==> outreach features --as-of" in out  # the folder was rebuilt first
    lines = _messages(err)
    assert len(lines) == 1, err
    assert "sum_12m" in lines[0] and "v1" in lines[0]
    assert "`outreach train`" in lines[0] and "--model-version" in lines[0]
    assert "Traceback" not in err
    assert sorted(p.name for p in copied.round_dir.iterdir()) == before  # the round is kept


def test_report_refuses_a_round_whose_scores_were_replaced(copied):
    import pandas as pd

    scores = copied.round_dir / "scores.parquet"
    frame = pd.read_parquet(scores)
    frame.loc[frame.index[0], "score"] = 0.999
    frame.to_parquet(scores)
    code, out, err = _run(copied.config_file, "report", "--as-of", copied.as_of)
    assert code == 1, out + err
    assert len(_messages(err)) == 1 and len(err.strip().splitlines()) == 1, err
    assert "scores.parquet" in err
    assert f"`outreach score --as-of {copied.as_of} --force`" in err
    assert not (copied.round_dir / "report").exists()


def test_report_refuses_a_round_whose_feature_folder_was_rebuilt_after_scoring(copied):
    config, as_of = copied.config, copied.as_of
    report = copied.round_dir / "report"
    had_report = report.exists()
    _simulate_ingest(config)
    code, _, err = _run(copied.config_file, "features", "--as-of", as_of)
    assert code == 0, err
    code, out, err = _run(copied.config_file, "report", "--as-of", as_of)
    assert code == 1, out + err
    assert len(_messages(err)) == 1 and len(err.strip().splitlines()) == 1, err
    assert "feature folder" in err and "changed since the round was scored" in err
    assert f"`outreach score --as-of {as_of} --force`" in err
    assert report.exists() == had_report
