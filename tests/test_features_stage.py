"""The features stage on real staged tables: layout, manifest, dictionary, atomicity, CLI errors."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from _features_fixtures import sample_inputs

from features.build import build_features
from features.spec import load_feature_spec, model_input_names
from pipeline.cli import main
from pipeline.datasets import OutputLayout, TableLayout
from pipeline.features.stage import build_round
from pipeline.io import sha256_tree
from pipeline.months import default_as_of, format_month, parse_month


def test_round_folder_holds_features_labels_dictionary_and_manifest(staged_sample, catalogue):
    config, _ = staged_sample
    as_of = format_month(default_as_of(config.window))
    assert as_of == "2026-10"
    folder = OutputLayout(config.paths.output_root).features(as_of)
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["as_of"] == as_of
    assert manifest["rows"]["households"] == 20_000
    files = {k: v for k, v in manifest["files_sha256"].items()}
    on_disk = {k: v for k, v in sha256_tree(folder).items() if k != "manifest.json"}
    assert files == on_disk
    dictionary = pd.read_csv(folder / "data_dictionary.csv")
    features = pd.read_parquet(folder / "features")
    assert set(dictionary["name"]) == set(features.columns) - {
        "household_key",
        "emd_code",
        "sigungu",
    }
    assert dictionary["model_input"].sum() == manifest["model_inputs"]
    assert features["household_key"].is_unique
    assert TableLayout(folder).partitions("features") == TableLayout(folder).partitions("labels")


def test_staged_features_equal_features_built_from_the_raw_sample(
    staged_sample, catalogue, outcome_catalogue, sample_raw
):
    """Ingest changes the form of the data, never what a feature says."""
    config, _ = staged_sample
    spec = load_feature_spec(config.paths.features)
    folder = OutputLayout(config.paths.output_root).features("2026-10")
    code = TableLayout(folder).partitions("features")[0]
    staged = pd.read_parquet(TableLayout(folder).partition_file("features", code))
    direct = build_features(
        sample_inputs(sample_raw, households=10**9, partition=0),
        parse_month("2026-10"),
        spec,
        catalogue,
        outcome_catalogue,
    )
    names = model_input_names(spec, catalogue)
    numeric = [c for c in names if pd.api.types.is_numeric_dtype(direct[c])]
    pd.testing.assert_frame_equal(
        staged[numeric].reset_index(drop=True),
        direct[numeric].reset_index(drop=True),
        check_dtype=False,
    )
    assert list(staged["history__last_outcome"]) == list(
        direct["history__last_outcome"].astype("string")
    )


def test_labels_in_the_round_folder_only_know_resolved_outcomes(staged_sample):
    config, _ = staged_sample
    folder = OutputLayout(config.paths.output_root).features("2026-10")
    labels = pd.read_parquet(folder / "labels")
    assert (labels["round_month"] < parse_month("2026-10")).all()
    known = labels[labels["label"].notna()]
    assert (known["resolved_month"] < parse_month("2026-10")).all()
    assert set(labels.loc[labels["label"].isna(), "missing_reason"]) <= {
        "unreachable",
        "in_progress",
        "not_resolved_by_as_of",
    }
    assert 0.2 < known["label"].mean() < 0.6


def test_a_failed_round_keeps_the_last_good_folder(staged_sample, monkeypatch, tmp_path):
    import shutil

    config, _ = staged_sample
    root = tmp_path / "out"
    shutil.copytree(config.paths.output_root / "staged", root / "staged")
    local = config.with_overrides(paths={"output_root": str(root)})
    build_round(local, parse_month("2025-06"))
    folder = OutputLayout(root).features("2025-06")
    before = sha256_tree(folder)

    def broken(*args, **kwargs):
        raise RuntimeError("out of memory")

    monkeypatch.setattr("pipeline.features.stage.build_features", broken)
    with pytest.raises(RuntimeError, match="out of memory"):
        build_round(local, parse_month("2025-06"))
    assert sha256_tree(folder) == before
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("stage", ["features", "train", "score", "report"])
@pytest.mark.parametrize(
    ("as_of", "message"),
    [
        ("2026-13", "YYYY-MM|01..12"),
        ("2027-03", "beyond the data window"),
        ("2023-10", "not after the data window's start"),
        ("2021-04", "not after the data window's start"),
    ],
)
def test_bad_as_of_is_a_usage_error_for_every_command(staged_sample, capsys, stage, as_of, message):
    _, config_file = staged_sample
    assert main(["--config", str(config_file), stage, "--as-of", as_of]) == 2
    err = capsys.readouterr().err
    assert "--as-of" in err and any(part in err for part in message.split("|"))
    assert len(err.strip().splitlines()) == 1


def test_features_without_staged_tables_is_a_data_error(tmp_path, config_factory, capsys):
    from conftest import write_config_file

    config_file = write_config_file(config_factory(tmp_path / "empty"), tmp_path / "c.yaml")
    assert main(["--config", str(config_file), "features"]) == 1
    assert "run `outreach ingest` first" in capsys.readouterr().err
