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
from pipeline.io import read_wide_parquet, sha256_tree
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


def test_a_wide_read_is_the_frame_pandas_reads_one_block_per_column(staged_sample):
    """Feature partitions are read column by column (no copy into one block per type): the same
    frame as ``pd.read_parquet`` gives, with a column subset and a row filter too."""
    config, _ = staged_sample
    folder = OutputLayout(config.paths.output_root).features(
        format_month(default_as_of(config.window))
    )
    layout = TableLayout(folder)
    path = layout.partition_file("features", layout.partitions("features")[0])
    columns = pd.read_parquet(path).columns[[0, 1, 5, 9, 40, -1]].tolist()
    keys = pd.read_parquet(path, columns=["household_key"])["household_key"].iloc[::7].tolist()
    for options in ({}, {"columns": columns}, {"filters": [("household_key", "in", keys)]}):
        expected = pd.read_parquet(path, **options)
        frame = read_wide_parquet(path, **options)
        pd.testing.assert_frame_equal(frame, expected, check_exact=True)
        assert frame._mgr.nblocks == frame.shape[1] > 1


def test_feature_partitions_keep_floats_plain_and_narrow_tables_keep_dictionaries(
    staged_sample, tmp_path
):
    """A feature partition (hundreds of float columns) is written without dictionaries for its
    floats (faster to write and read: docs/scaling.md), its text columns with them; a table of a
    few float columns keeps dictionaries for all (raw and staged tables, scores). Either way the
    file reads back as written."""
    import pyarrow.parquet as pq

    from pipeline.io import WIDE_FLOAT_COLUMNS, write_parquet

    config, _ = staged_sample
    folder = OutputLayout(config.paths.output_root).features(
        format_month(default_as_of(config.window))
    )
    layout = TableLayout(folder)
    path = layout.partition_file("features", layout.partitions("features")[0])

    def dictionary_encoded(file) -> dict[str, bool]:
        meta = pq.ParquetFile(file).metadata
        columns = [meta.row_group(0).column(i) for i in range(meta.num_columns)]
        return {c.path_in_schema: any("DICTIONARY" in e for e in c.encodings) for c in columns}

    table = pq.read_table(path)
    floats = [f.name for f in table.schema if str(f.type) in ("float", "double")]
    assert len(floats) >= WIDE_FLOAT_COLUMNS
    encoded = dictionary_encoded(path)
    assert not any(encoded[c] for c in floats)
    assert encoded["household_key"] and encoded["emd_code"]
    narrow = table.select(["household_key", "emd_code", *floats[:3]])
    write_parquet(narrow, tmp_path / "narrow.parquet")
    assert all(dictionary_encoded(tmp_path / "narrow.parquet").values())
    assert pq.read_table(tmp_path / "narrow.parquet").equals(narrow)


def test_a_read_of_some_households_filters_each_file_by_its_own_keys(
    staged_sample, outcome_catalogue, monkeypatch
):
    """Reading some households of a round gives the rows a filter of every wanted key gives,
    but each file's row filter holds only the wanted keys that file has (a filter of every key
    builds its set again per file: at national scale minutes per read), and a file with none of
    them is not read."""
    import numpy as np

    import pipeline.datasets.features as feature_data

    config, _ = staged_sample
    as_of = default_as_of(config.window)
    source = feature_data.FeatureRounds(config, outcome_catalogue)
    files = source.feature_files(as_of)
    assert len(files) >= 2
    every = pd.read_parquet(files[0], columns=["household_key"])["household_key"].tolist()
    keys = [*every[::5], *pd.read_parquet(files[1], columns=["household_key"])["household_key"]]
    keys = [*keys, "no-such-household"]
    columns = ["hh__benefit_status", "distinct_types__12m"]
    filters_given: list[int] = []
    real = feature_data.read_feature_file

    def counted(path, levels, columns=None, keys=None):
        filters_given.append(len(keys))
        return real(path, levels, columns, keys)

    monkeypatch.setattr(feature_data, "read_feature_file", counted)
    frame = source.features(as_of, columns=columns, keys=np.random.default_rng(3).permutation(keys))
    expected = pd.read_parquet(
        OutputLayout(config.paths.output_root).features(format_month(as_of)) / "features",
        columns=["household_key", *columns],
        filters=[("household_key", "in", keys)],
    )
    expected = expected.sort_values("household_key").reset_index(drop=True)
    assert frame["household_key"].tolist() == expected["household_key"].tolist()
    assert frame["distinct_types__12m"].tolist() == expected["distinct_types__12m"].tolist()
    assert len(frame) == len(keys) - 1
    assert filters_given == [len(every[::5]), len(keys) - 1 - len(every[::5])]


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


def test_one_bad_month_of_several_builds_none(staged_sample, capsys):
    config, config_file = staged_sample
    argv = ["--config", str(config_file), "features", "--as-of", "2026-02,2027-03"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "--as-of 2027-03" in err and len(err.strip().splitlines()) == 1
    assert not OutputLayout(config.paths.output_root).features("2026-02").exists()


def test_an_unknown_comparison_is_a_usage_error_before_anything_runs(staged_sample, capsys):
    _, config_file = staged_sample
    with pytest.raises(SystemExit) as info:
        main(["--config", str(config_file), "train", "--compare", "candidates,ouija"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "unknown comparison(s) ouija" in err and "==> outreach features" not in err


def test_features_without_staged_tables_is_a_data_error(tmp_path, config_factory, capsys):
    from conftest import write_config_file

    config_file = write_config_file(config_factory(tmp_path / "empty"), tmp_path / "c.yaml")
    assert main(["--config", str(config_file), "features"]) == 1
    assert "run `outreach ingest` first" in capsys.readouterr().err


def _imported_outcomes(staged: pd.DataFrame, round_label: str, seed: int) -> pd.DataFrame:
    """An imported outcomes file of ``round_label`` in the outcomes contract: 20 households that
    no staged row lists in that round, and 5 that it does (the staged row wins for those)."""
    month = parse_month(round_label)
    listed = staged[staged["round_month"] == month]
    others = staged[~staged["household_key"].isin(listed["household_key"])]
    rows = pd.concat(
        [
            others.drop_duplicates("household_key").sample(20, random_state=seed),
            listed.sample(5, random_state=seed),
        ]
    )
    resolved = [format_month(month + 1)] * 15 + [None] * 5 + [format_month(month + 2)] * 5
    return pd.DataFrame(
        {
            "household_key": rows["household_key"].astype("string").to_numpy(),
            "sigungu_code": rows["sigungu"].astype("string").to_numpy(),
            "emd_code": rows["emd_code"].astype("string").to_numpy(),
            "round": round_label,
            "outcome_code": ["public_support", "closed_no_need", "unreachable", "in_progress",
                             "private_support"] * 5,
            "contact_date": pd.Timestamp(round_label + "-15").date(),
            "added_by_caseworker": False,
            "selection_reason": "model_score",
            "selection_probability": 1.0,
            "source_file_sha256": "0" * 64,
            "resolved_month": resolved,
            "override_code": pd.array([None] * 25, dtype="string"),
            "service_code": pd.array(
                ["livelihood_benefit", None, None, None, "food_bank"] * 5, dtype="string"
            ),
        }
    )  # fmt: skip


def test_many_rounds_in_one_pass_equal_rounds_built_one_by_one(staged_sample, tmp_path):
    """``outreach features --as-of A,B,C`` reads each partition once and writes, byte for byte,
    the folders that one run per round writes, imported outcomes of earlier rounds included."""
    import shutil

    import pyarrow as pa

    from pipeline.datasets.outcomes import SCHEMA
    from pipeline.features.stage import build_rounds
    from pipeline.io import write_parquet

    config, _ = staged_sample
    staged = pd.read_parquet(config.paths.output_root / "staged" / "outreach_outcomes")
    months = [parse_month(m) for m in ("2025-10", "2026-02", "2026-06", "2026-10")]
    folders = {}
    for how in ("one by one", "one pass"):
        root = tmp_path / how.replace(" ", "_")
        shutil.copytree(config.paths.output_root / "staged", root / "staged")
        for seed, label in enumerate(("2026-04", "2026-08")):
            imported = _imported_outcomes(staged, label, seed)
            path = OutputLayout(root).outcomes / f"round={label}" / "outcomes.parquet"
            write_parquet(pa.Table.from_pandas(imported, schema=SCHEMA, preserve_index=False), path)
        local = config.with_overrides(paths={"output_root": str(root)})
        if how == "one by one":
            runs = [build_round(local, month) for month in months]
        else:
            runs = build_rounds(local, list(reversed(months)))
        assert [run.as_of for run in runs] == [format_month(m) for m in months]
        folders[how] = {run.as_of: sha256_tree(run.folder) for run in runs}
    assert folders["one pass"] == folders["one by one"]
    manifest = json.loads(
        (OutputLayout(tmp_path / "one_pass").features("2026-06") / "manifest.json").read_text()
    )
    assert list(manifest["imported_outcomes_sha256"]) == ["round=2026-04/outcomes.parquet"]
    labels = pd.read_parquet(OutputLayout(tmp_path / "one_pass").features("2026-10") / "labels")
    assert (labels["source"] == "imported").sum() == 40  # 20 new households in each round


def test_a_failed_pass_keeps_every_last_good_folder(staged_sample, monkeypatch, tmp_path):
    import shutil

    from pipeline.features.stage import build_rounds

    config, _ = staged_sample
    root = tmp_path / "out"
    shutil.copytree(config.paths.output_root / "staged", root / "staged")
    local = config.with_overrides(paths={"output_root": str(root)})
    months = [parse_month("2025-06"), parse_month("2025-08")]
    build_rounds(local, months)
    before = {m: sha256_tree(OutputLayout(root).features(format_month(m))) for m in months}
    calls = []

    def fails_on_the_second_round(*args, **kwargs):
        calls.append(args[1])
        if len(calls) == 2:
            raise RuntimeError("out of memory")
        return build_features(*args, **kwargs)

    monkeypatch.setattr("pipeline.features.stage.build_features", fails_on_the_second_round)
    with pytest.raises(RuntimeError, match="out of memory"):
        build_rounds(local, [*months, parse_month("2025-10")])
    assert {m: sha256_tree(OutputLayout(root).features(format_month(m))) for m in months} == before
    assert not OutputLayout(root).features("2025-10").exists()
    assert not [p for p in (root / "features").iterdir() if p.name.startswith(".")]
