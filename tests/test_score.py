"""``outreach score``: tiers, exploration, reasons with evidence, lists, manifest and MLflow run.

Unit tests use small hand-made frames; the end-to-end tests use the session's scored sample
(``scored_sample``: a small model trained and a round scored once) and private copies of it.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import ScoredSample, copy_outputs, write_config_file

from pipeline.catalogue import load_indicators, load_outcomes
from pipeline.cli import main
from pipeline.io import sha256_file, sha256_tree
from pipeline.score.reasons import (
    explain,
    latest_signals,
    reason_units,
    signal_text,
    top_units,
)
from pipeline.score.tiers import cut_emd, cut_round, exploration_count, rank_within
from pipeline.tracking import connect
from pipeline.vocabulary import LIST_COLUMNS, list_header

pytestmark = pytest.mark.filterwarnings(
    "ignore::UserWarning", "ignore::FutureWarning", "ignore::DeprecationWarning"
)


# --- tiers -----------------------------------------------------------------------------------


def test_ties_are_broken_by_household_key_whatever_the_row_order():
    scores = np.array([0.5, 0.9, 0.5, 0.5])
    keys = np.array(["H3", "H9", "H1", "H2"])
    assert rank_within(scores, keys).tolist() == [4, 1, 2, 3]
    order = np.array([2, 0, 3, 1])
    assert rank_within(scores[order], keys[order]).tolist() == [2, 4, 3, 1]


def test_exploration_count_rounds_half_up_and_never_takes_the_whole_tier():
    assert exploration_count(10, 0.05) == 1
    assert exploration_count(9, 0.05) == 0
    assert exploration_count(100, 0.05) == 5
    assert exploration_count(2, 0.5) == 1
    assert exploration_count(1, 0.5) == 0
    assert exploration_count(50, 0.0) == 0


def _emd(n: int, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "household_key": [f"H{i:05d}" for i in range(n)],
            "emd_code": "1111051000",
            "score": rng.random(n),
            "has_signal": rng.random(n) < 0.3,
        }
    )


def test_visit_phone_and_monitor_tiers_follow_capacity_and_rank():
    frame = _emd(400)
    cut = cut_emd(
        frame["score"].to_numpy(),
        frame["household_key"].to_numpy(),
        frame["has_signal"].to_numpy(),
        40,
        phone_band=1.5,
        exploration_share=0.1,
        seed=7,
        as_of=24321,
        emd_code="1111051000",
    )
    tiers = cut["tier"].value_counts()
    assert tiers["visit"] == 40 and tiers["phone"] == 60 and tiers["monitor"] == 300
    explored = cut[cut["selection_reason"] == "random_exploration"]
    assert len(explored) == 4
    # The model fills 36 visit slots with its best ranks; exploration draws outside them.
    by_model = cut[(cut["tier"] == "visit") & (cut["selection_reason"] == "model_score")]
    assert sorted(by_model["model_rank"]) == list(range(1, 37))
    assert (explored["model_rank"] > 36).all()
    assert frame.loc[explored.index, "has_signal"].all()
    pool = int((frame["has_signal"].to_numpy() & (cut["model_rank"] > 36).to_numpy()).sum())
    assert explored["selection_probability"].tolist() == pytest.approx([4 / pool] * 4)
    assert (by_model["selection_probability"] == 1.0).all()
    # The phone band is the next 60 by rank among those not visited.
    phone_ranks = cut.loc[cut["tier"] == "phone", "model_rank"]
    not_visited = cut.loc[cut["tier"] != "visit", "model_rank"].sort_values()
    assert sorted(phone_ranks) == not_visited.iloc[:60].tolist()


def test_exploration_at_the_margin_draws_from_the_next_ranks_and_the_rules_list():
    """``exploration_margin``: the pool is the next ceil(slots × margin) by the model's rank and
    the households the rule would list (top capacity by the rule's count, at least 1, ties by
    key), never a household the model placed; each draw records e / pool."""
    frame = _emd(400, seed=4)
    rng = np.random.default_rng(9)
    rule = rng.integers(0, 4, size=400).astype(float)
    kwargs = dict(phone_band=1.0, exploration_share=0.1, seed=7, as_of=24321, emd_code="1111051000")
    cut = cut_emd(
        frame["score"].to_numpy(),
        frame["household_key"].to_numpy(),
        frame["has_signal"].to_numpy(),
        40,
        exploration_margin=0.5,
        rule_scores=rule,
        **kwargs,
    )
    explored = cut["selection_reason"] == "random_exploration"
    assert explored.sum() == 4
    ranks = cut["model_rank"].to_numpy()
    order = np.lexsort((frame["household_key"].to_numpy(), -rule))
    by_rule = np.zeros(400, dtype=bool)
    by_rule[order[:40]] = True
    by_rule &= rule >= 1
    margin = (ranks > 36) & (ranks <= 36 + 20)
    pool = (ranks > 36) & (margin | by_rule)
    assert pool[explored.to_numpy()].all()
    assert cut.loc[explored, "selection_probability"].tolist() == pytest.approx(
        [4 / pool.sum()] * 4
    )
    assert 20 < pool.sum() < 20 + 40  # the margin and the part of the rule's list not placed
    # the rule's scores ignored, the pool is the margin alone
    alone = cut_emd(
        frame["score"].to_numpy(),
        frame["household_key"].to_numpy(),
        frame["has_signal"].to_numpy(),
        40,
        exploration_margin=0.5,
        **kwargs,
    )
    drawn = alone["selection_reason"] == "random_exploration"
    assert margin[drawn.to_numpy()].all()
    assert alone.loc[drawn, "selection_probability"].tolist() == pytest.approx([4 / 20] * 4)
    # cut_round reads the rule's count from the frame's rule_score column
    whole = cut_round(
        frame.assign(rule_score=rule),
        pd.Series({"1111051000": 40}),
        exploration_margin=0.5,
        **{k: v for k, v in kwargs.items() if k != "emd_code"},
    )
    assert whole["selection_reason"].tolist() == cut["selection_reason"].tolist()


def test_exploration_draw_is_seeded_and_independent_of_row_order():
    frame = _emd(300, seed=3)
    kwargs = dict(
        phone_band=1.0, exploration_share=0.2, seed=11, as_of=24321, emd_code="1111051000"
    )

    def explored(f: pd.DataFrame) -> set[str]:
        cut = cut_emd(
            f["score"].to_numpy(),
            f["household_key"].to_numpy(),
            f["has_signal"].to_numpy(),
            30,
            **kwargs,
        )
        return set(f["household_key"].to_numpy()[cut["selection_reason"] == "random_exploration"])

    first = explored(frame)
    assert len(first) == 6
    assert explored(frame.sample(frac=1.0, random_state=5)) == first
    other_seed = cut_emd(
        frame["score"].to_numpy(),
        frame["household_key"].to_numpy(),
        frame["has_signal"].to_numpy(),
        30,
        **{**kwargs, "seed": 12},
    )
    assert set(frame["household_key"][other_seed["selection_reason"] == "random_exploration"]) != (
        first
    )


def test_cut_round_lists_visit_first_and_leaves_emds_without_capacity_unlisted():
    a = _emd(50, seed=4)
    b = _emd(30, seed=5).assign(emd_code="1111051300")
    frame = pd.concat([a, b], ignore_index=True)
    out = cut_round(
        frame,
        pd.Series({"1111051000": 5}),
        phone_band=1.0,
        exploration_share=0.0,
        seed=1,
        as_of=24321,
    )
    listed = out[out["emd_code"] == "1111051000"].dropna(subset=["list_rank"])
    assert listed.sort_values("list_rank")["tier"].tolist() == ["visit"] * 5 + ["phone"] * 5
    assert (out.loc[out["emd_code"] == "1111051300", "tier"] == "monitor").all()
    assert out.loc[out["tier"] == "monitor", "list_rank"].isna().all()


# --- reasons ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def units(catalogue):
    features = [
        "health_ins_arrears__count_3m",
        "health_ins_arrears__months_since_last",
        "power_cut__count_1m",
        "group_arrears__count_3m",
        "distinct_types__3m",
        "hh__income_band",
        "hh__single_elderly",
    ]
    return reason_units(features, catalogue)


def test_columns_are_grouped_by_indicator_and_group_columns_follow_the_latest_signal(
    units, catalogue, outcome_catalogue
):
    rows = pd.DataFrame(
        {
            "household_key": ["H1", "H2"],
            "distinct_types__3m": [2, 0],
            "hh__income_band": [0, 3],
            "hh__single_elderly": [1, 0],
        }
    )
    contrib = np.array(
        [
            [0.3, 0.2, 0.1, 0.4, 0.05, 0.6, -0.2],
            [0.0, 0.0, 0.0, 0.9, 0.0, 0.01, 0.0],
        ]
    )
    events = pd.DataFrame(
        {
            "household_key": ["H1", "H1", "H1", "H1"],
            "indicator_code": [
                "health_ins_arrears",
                "health_ins_arrears",
                "power_cut",
                "rent_arrears",
            ],
            "reported_month": [24318, 24319, 24319, 24330],  # the last one is after as_of
            "value": [5.0, 6.0, 1.0, 3.0],
        }
    )
    as_of = 24321
    signals = latest_signals(events, as_of, 12)
    assert len(signals) == 2  # rent arrears were reported after as_of: unknown at the round
    out = explain(
        contrib, rows, signals, units, catalogue, outcome_catalogue, k=3, window=12, language="ko"
    )
    # H1: health arrears 0.3 + 0.2 + the arrears group 0.4 = 0.9; income 0.6; power cut 0.1.
    assert out.loc[0, "reason_1"] == "ind:health_ins_arrears"
    assert out.loc[0, "reason_1_weight"] == pytest.approx(0.9)
    assert out.loc[0, "reason_2"] == "hh:income_band"
    assert out.loc[0, "reason_3"] == "ind:power_cut"
    text = out.loc[0, "reason_1_text"]
    agency = catalogue.by_code()["health_ins_arrears"].agency_ko
    assert "6" in text and agency in text and "2026-08 보고" in text and "2회" in text
    assert out.loc[0, "reason_2_text"] == "소득 구간: 기준중위소득 30% 미만"
    # H2 has no arrears signal: the group names no fact of the household and is no reason; no
    # negative reason is shown.
    assert out.loc[1, "reason_1"] == "hh:income_band"
    assert pd.isna(out.loc[1, "reason_2"])


def test_an_indicator_without_a_reported_signal_is_never_a_reason(
    units, catalogue, outcome_catalogue
):
    rows = pd.DataFrame({"household_key": ["H1"], "distinct_types__3m": [0]})
    contrib = np.array([[2.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0]])
    out = explain(
        contrib,
        rows,
        latest_signals(
            pd.DataFrame(columns=["household_key", "indicator_code", "reported_month", "value"]),
            24321,
            12,
        ),
        units,
        catalogue,
        outcome_catalogue,
        k=3,
        window=12,
        language="ko",
    )
    assert out["reason_1"].isna().all()


def test_evidence_reads_like_the_issue_example_in_korean_and_in_english(catalogue):
    ko = signal_text("health_ins_arrears", 6, 2025 * 12 + 9, 1, 12, catalogue, "ko")
    ind = catalogue.by_code()["health_ins_arrears"]
    assert ko == f"{ind.name_ko} 6개월 ({ind.agency_ko}, 2025-10 보고)"
    en = signal_text("health_ins_arrears", 6, 2025 * 12 + 9, 3, 12, catalogue, "en")
    assert (
        en == f"{ind.name_en}: 6 months ({ind.agency_en}, reported 2025-10, 3 times in 12 months)"
    )


def test_top_units_orders_ties_by_catalogue_position():
    sums = np.array([[0.5, 0.5, 0.1, -1.0]])
    chosen, values = top_units(sums, np.ones_like(sums, dtype=bool), 4)
    assert chosen.tolist() == [[0, 1, 2, -1]]
    assert np.isnan(values[0, 3])


# --- the scored sample -----------------------------------------------------------------------


def _manifest(round_dir: Path) -> dict:
    return json.loads((round_dir / "manifest.json").read_text(encoding="utf-8"))


def test_round_folder_holds_scores_lists_and_a_manifest_of_every_file(scored_sample):
    round_dir = scored_sample.round_dir
    manifest = _manifest(round_dir)
    files = sha256_tree(round_dir)
    files.pop("manifest.json")
    assert manifest["files_sha256"] == files
    assert "scores.parquet" in files
    scores = pd.read_parquet(round_dir / "scores.parquet")
    counts = manifest["counts"]
    assert counts["scored"] == len(scores)
    assert counts["visit"] == int((scores["tier"] == "visit").sum())
    assert counts["households"] == counts["scored"] + counts["ineligible"]
    assert manifest["model"]["name"] == scored_sample.config.training.model_name
    assert manifest["model"]["chosen_by"] == "champion"
    assert len(manifest["model"]["file_sha256"]) == 64
    assert manifest["validation"]["status"] == "passed"
    assert manifest["raw_inputs_sha256"], "raw input digests are recorded"
    assert manifest["code"]["git_commit"]
    assert manifest["features"]["manifest_sha256"] == sha256_file(
        scored_sample.config.paths.output_root
        / "features"
        / f"as_of={scored_sample.as_of}"
        / "manifest.json"
    )


def test_only_eligible_households_are_scored(scored_sample):
    scores = pd.read_parquet(scored_sample.round_dir / "scores.parquet")
    features = pd.concat(
        pd.read_parquet(p, columns=["household_key", "hh__benefit_status"])
        for p in sorted(
            (
                scored_sample.config.paths.output_root / "features" / f"as_of={scored_sample.as_of}"
            ).glob("features/*/part-0.parquet")
        )
    )
    ineligible = set(
        features.loc[features["hh__benefit_status"] == "basic_livelihood", "household_key"]
    )
    assert ineligible, "the sample has households on basic livelihood support"
    assert not ineligible & set(scores["household_key"])
    assert len(scores) == len(features) - len(ineligible)


def test_each_emd_list_holds_its_own_listed_households_in_rank_order(scored_sample):
    round_dir = scored_sample.round_dir
    scores = pd.read_parquet(round_dir / "scores.parquet")
    capacity = pd.read_parquet(
        scored_sample.config.paths.output_root / "staged" / "district_capacity.parquet"
    ).set_index("emd_code")["capacity_per_round"]
    lists = sorted((round_dir / "lists").glob("*/emd_*.csv"))
    assert len(lists) == scores["emd_code"].nunique()
    for path in lists:
        emd = path.stem.removeprefix("emd_")
        raw = path.read_bytes()
        assert raw.startswith(b"\xef\xbb\xbf"), "UTF-8 with BOM"
        rows = list(csv.reader(raw.decode("utf-8-sig").splitlines()))
        assert rows[0] == list_header("ko")
        body = pd.DataFrame(rows[1:], columns=[c.key for c in LIST_COLUMNS])
        assert set(body["emd_code"]) <= {emd}
        expected = scores[(scores["emd_code"] == emd) & (scores["tier"] != "monitor")]
        assert len(body) == len(expected)
        assert (body["tier"] == "방문").sum() == min(
            capacity[emd], (scores["emd_code"] == emd).sum()
        )
        by_rank = expected.sort_values("list_rank")["household_key"].tolist()
        assert body["household_key"].tolist() == by_rank
        assert body["list_rank"].tolist() == [str(i) for i in range(1, len(body) + 1)]
        assert (body[["outcome_code", "contact_date", "note"]] == "").all().all()
        assert (body["reason_1"] != "").mean() > 0.9


def test_xlsx_lists_have_korean_headers_frozen_row_and_an_outcome_drop_down(scored_sample):
    from openpyxl import load_workbook
    from openpyxl.utils import get_column_letter

    path = sorted((scored_sample.round_dir / "lists").glob("*/emd_*.xlsx"))[0]
    book = load_workbook(path)
    sheet = book.worksheets[0]
    assert [c.value for c in sheet[1]] == list_header("ko")
    assert sheet.freeze_panes == "A2"
    reason = get_column_letter(list_header("ko").index("사유 1") + 1)
    # reasons are readable: they wrap in a column of at least REASON_WIDTHS' lower bound, and
    # every row is high enough to show its reason whole
    from pipeline.score.lists import LINE_POINTS, REASON_WIDTHS, wrapped_lines

    width = sheet.column_dimensions[reason].width
    assert REASON_WIDTHS[0] <= width <= REASON_WIDTHS[1]
    cells = [c for c in sheet[reason][1:] if c.value]
    assert cells and all(c.alignment.wrap_text for c in cells)
    for cell in cells:
        height = sheet.row_dimensions[cell.row].height
        assert height >= wrapped_lines(str(cell.value), width) * LINE_POINTS, cell.coordinate
    rules = sheet.data_validations.dataValidation
    names = [o.name_ko for o in load_outcomes(scored_sample.config.paths.outcomes).outcomes]
    assert any(all(n in (r.formula1 or "") for n in names) for r in rules)  # the Korean labels
    matching_csv = path.with_suffix(".csv")
    rows = list(csv.reader(matching_csv.read_bytes().decode("utf-8-sig").splitlines()))
    assert sheet.max_row == len(rows)
    assert [c.value for c in sheet[2]][5] == rows[1][5]  # same household in the same place


def test_visit_tier_carries_the_exploration_share_with_its_probability(scored_sample):
    scores = pd.read_parquet(scored_sample.round_dir / "scores.parquet")
    explored = scores[scores["selection_reason"] == "random_exploration"]
    assert len(explored) > 0
    assert (explored["tier"] == "visit").all()
    assert ((explored["selection_probability"] > 0) & (explored["selection_probability"] < 1)).all()
    listed = scores[scores["tier"] != "monitor"]
    assert listed["reason_1_text"].notna().mean() > 0.9
    assert scores.loc[scores["tier"] == "monitor", "reason_1"].isna().all()


def test_scoring_run_is_tracked_and_linked_to_the_model_version(scored_sample):
    manifest = _manifest(scored_sample.round_dir)
    client = connect(scored_sample.config)
    run = client.get_run(manifest["scoring_run"]["run_id"])
    tags = run.data.tags
    assert tags["outreach.stage"] == "score"
    assert tags["outreach.model_version"] == manifest["model"]["version"]
    assert tags["outreach.model_run_id"] == manifest["model"]["training_run_id"]
    assert tags["outreach.manifest_sha256"] == sha256_file(
        scored_sample.round_dir / "manifest.json"
    )
    assert run.data.metrics["count.scored"] == manifest["counts"]["scored"]
    inputs = run.inputs.dataset_inputs
    assert inputs and inputs[0].dataset.digest == manifest["features"]["mlflow_digest"]
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.name == scored_sample.config.scoring.experiment
    version = client.get_model_version(manifest["model"]["name"], manifest["model"]["version"])
    assert version.run_id == manifest["model"]["training_run_id"]


@pytest.fixture(scope="module")
def rescored(scored_sample, tmp_path_factory) -> tuple[ScoredSample, Path]:
    """A copy scored again with --force: the earlier folder is kept aside."""
    copy = copy_outputs(scored_sample, tmp_path_factory.mktemp("rescore"))
    refused = main(["--no-progress", "--config", str(copy.config_file), "score"])
    assert refused == 2
    assert main(["--no-progress", "--config", str(copy.config_file), "score", "--force"]) == 0
    return copy, copy.round_dir.parent / "_replaced" / f"{copy.as_of}-1"


def test_existing_round_is_refused_and_force_keeps_the_old_folder(rescored, scored_sample):
    copy, kept = rescored
    assert kept.is_dir()
    assert sha256_tree(kept) == sha256_tree(scored_sample.round_dir)
    assert (
        _manifest(copy.round_dir)["scoring_run"]["run_id"]
        != (_manifest(kept)["scoring_run"]["run_id"])
    )


def test_same_inputs_and_model_give_identical_scores_lists_and_cells(rescored, scored_sample):
    from openpyxl import load_workbook

    copy, _ = rescored
    before = _manifest(scored_sample.round_dir)["files_sha256"]
    after = _manifest(copy.round_dir)["files_sha256"]
    for name, digest in before.items():
        if not name.endswith(".xlsx"):
            assert after[name] == digest, name
    for name in (n for n in before if n.endswith(".xlsx")):
        a = load_workbook(scored_sample.round_dir / name)
        b = load_workbook(copy.round_dir / name)
        for sa, sb in zip(a.worksheets, b.worksheets, strict=True):
            assert list(sa.values) == list(sb.values), name


def test_a_failed_run_leaves_the_last_good_round_untouched(scored_sample, tmp_path):
    copy = copy_outputs(scored_sample, tmp_path)
    before = sha256_tree(copy.round_dir)
    features = copy.config.paths.output_root / "features" / f"as_of={copy.as_of}" / "features"
    victim = sorted(features.glob("*/part-0.parquet"))[-1]
    victim.write_bytes(b"not parquet")
    code = main(["--no-progress", "--config", str(copy.config_file), "score", "--force"])
    assert code != 0
    assert sha256_tree(copy.round_dir) == before
    leftovers = [p.name for p in copy.round_dir.parent.iterdir() if p.name.startswith(".")]
    assert leftovers == []
    assert not (copy.round_dir.parent / "_replaced").exists()


def test_no_champion_stops_with_a_clear_message(scored_sample, tmp_path, capsys):
    copy = copy_outputs(scored_sample, tmp_path)
    client = connect(copy.config)  # tracking and registry of the copy
    client.delete_registered_model_alias(copy.config.training.model_name, "champion")
    code = main(["--no-progress", "--config", str(copy.config_file), "score", "--force"])
    assert code == 2
    err = capsys.readouterr().err
    assert "no champion" in err and "--model-version" in err


def test_a_pinned_version_and_english_lists(scored_sample, tmp_path):
    copy = copy_outputs(scored_sample, tmp_path)
    english = copy.config.with_overrides(scoring={"language": "en"})
    config_file = write_config_file(english, tmp_path / "en.yaml")
    version = _manifest(copy.round_dir)["model"]["version"]
    args = ["--no-progress", "--config", str(config_file), "score", "--force"]
    assert main([*args, "--model-version", version]) == 0
    manifest = _manifest(copy.round_dir)
    assert manifest["model"]["chosen_by"] == "pinned version"
    path = sorted((copy.round_dir / "lists").glob("*/emd_*.csv"))[0]
    rows = list(csv.reader(path.read_bytes().decode("utf-8-sig").splitlines()))
    assert rows[0] == list_header("en")
    assert any("reported" in cell for row in rows[1:] for cell in row)
    assert main([*args, "--model-version", "999"]) == 2


def test_reasons_of_the_scored_sample_name_signals_with_agency_and_month(scored_sample):
    scores = pd.read_parquet(scored_sample.round_dir / "scores.parquet")
    catalogue = load_indicators(scored_sample.config.paths.indicators)
    agencies = {i.agency_ko for i in catalogue.indicators}
    signal_reasons = scores.loc[
        scores["reason_1"].str.startswith("ind:", na=False), "reason_1_text"
    ]
    assert len(signal_reasons) > 0
    for text in signal_reasons:
        assert any(a in text for a in agencies), text
        assert "보고" in text


def test_no_identifier_in_any_file_of_the_round_or_the_store(scored_sample, sample_raw, tmp_path):
    from _ingest_leak import assert_no_identifiers, collect_identifiers

    identifiers = collect_identifiers(sample_raw)
    root = scored_sample.config.paths.output_root
    searched = assert_no_identifiers([scored_sample.round_dir, root / "mlflow"], identifiers)
    assert searched > 40  # scores, every list (CSV and XLSX cells), manifest, MLflow artifacts
    # The search reads XLSX cells: a planted name in a list cell is found.
    from openpyxl import load_workbook

    path = sorted((scored_sample.round_dir / "lists").glob("*/emd_*.xlsx"))[0]
    book = load_workbook(path)
    book.worksheets[0]["O2"] = f"담당 {sorted(identifiers.names)[0]}"
    book.save(tmp_path / "planted.xlsx")
    with pytest.raises(AssertionError, match="direct identifiers found"):
        assert_no_identifiers([tmp_path / "planted.xlsx"], identifiers)
