"""Caseworkers' overrides (담당자 판단: skip a listed household, add one the list missed).

The returned list's override column in Korean, English or as a code, in a CSV and an XLSX; the
rejections (unknown text, an add on a listed household, a skip on an added one, a skip with an
outcome of a contact); the store's ``override_code``; labels (a skipped household gives no
label and is not a visit); the follow-up page's rates per 읍면동 and reason; the training run's
override metrics and the model card's section.
"""

from __future__ import annotations

import csv
import io
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from _cli_helpers import get_cell, set_cell
from _features_fixtures import sample_inputs
from conftest import REPO_ROOT, ScoredSample, copy_outputs, write_config_file

from pipeline.catalogue import load_outcomes
from pipeline.config import Config
from pipeline.datasets.outcomes import (
    COLUMNS,
    SCHEMA,
    feature_outcomes,
    merge_outcomes,
    read_round_outcomes,
    round_outcomes_file,
    skipped_mask,
    to_table,
)
from pipeline.outcomes.checks import RowValidator
from pipeline.outcomes.importer import NOTHING_NEW, import_file
from pipeline.vocabulary import LIST_COLUMNS, SKIPPED

ROUND = "2026-10"
CATALOGUE = load_outcomes(REPO_ROOT / "configs" / "outcomes.yaml")
KO = {r.code: r.name_ko for r in CATALOGUE.override_reasons}
EN = {r.code: r.name_en for r in CATALOGUE.override_reasons}
LOCAL_KO = "지자체 자체 발굴"


# --- helpers ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Light:
    config: Config
    round_dir: Path
    scores: pd.DataFrame


def _light(scored: ScoredSample, tmp_path: Path) -> Light:
    """A private output root with the scored round and the staged households only."""
    out = tmp_path / "outputs"
    source = scored.config.paths.output_root
    shutil.copytree(scored.round_dir, out / "rounds" / scored.as_of)
    shutil.copytree(source / "staged" / "households", out / "staged" / "households")
    config = scored.config.with_overrides(paths={"output_root": str(out)})
    scores = pd.read_parquet(out / "rounds" / scored.as_of / "scores.parquet")
    return Light(config, out / "rounds" / scored.as_of, scores)


def _csv_list(light: Light) -> tuple[Path, list[str], list[list[str]]]:
    path = next(
        p for p in sorted((light.round_dir / "lists").glob("*/emd_*.csv")) if len(_read(p)[1]) >= 10
    )
    head, rows = _read(path)
    return path, head, rows


def _read(path: Path) -> tuple[list[str], list[list[str]]]:
    rows = list(csv.reader(io.StringIO(path.read_text(encoding="utf-8-sig"))))
    return rows[0], rows[1:]


def _write(path: Path, head: list[str], rows: list[list[str]]) -> Path:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerows([head, *rows])
    path.write_bytes(b"\xef\xbb\xbf" + buffer.getvalue().encode("utf-8"))
    return path


def _unlisted(light: Light, emd: str, n: int) -> list[str]:
    scores = light.scores
    monitor = scores[(scores["emd_code"] == emd) & (scores["tier"] == "monitor")]
    return sorted(monitor["household_key"].astype(str))[:n]


def _added(row: list[str], key: str, **values: str) -> list[str]:
    """A row the office adds below the list: the round and codes copied, its own key."""
    blank = {c.key: "" for c in LIST_COLUMNS if c.key not in ("round", "sigungu_code", "emd_code")}
    return set_cell(row, **{**blank, "household_key": key, **values})


@pytest.fixture(scope="module")
def validator() -> RowValidator:
    return RowValidator()


# --- import: CSV and XLSX, Korean, English and codes -------------------------------------------


def test_csv_with_skip_and_add_overrides_in_korean_english_and_codes(
    scored_sample, tmp_path, validator
):
    light = _light(scored_sample, tmp_path)
    _, head, rows = _csv_list(light)
    emd = get_cell(rows[0], "emd_code")
    first, second, third = _unlisted(light, emd, 3)
    rows[0] = set_cell(rows[0], override=KO["skip_moved"])  # a skip, no outcome
    rows[1] = set_cell(
        rows[1], override=EN["skip_safety"], outcome_code="연락 불가", contact_date="2026-10-12"
    )  # a skip after a failed attempt: accepted, still no label
    rows[2] = set_cell(rows[2], override="skip_other")  # the code
    rows[3] = set_cell(rows[3], override=" 제외  -  이미 관리 중인 가구 ", outcome_code="처리 중")
    rows[4] = set_cell(rows[4], outcome_code="closed_no_need", contact_date="2026-10-05")
    added = [
        _added(rows[0], first, override=KO["add_referral"], outcome_code="공공 서비스 연계",
               contact_date="2026-10-20"),  # added by the override alone
        _added(rows[0], second, override="Add - found through local knowledge",
               selection=LOCAL_KO, outcome_code="in_progress"),  # both marks
        _added(rows[0], third, selection=LOCAL_KO, outcome_code="closed_no_need",
               contact_date="2026-11-02"),  # the selection alone, as before
    ]  # fmt: skip
    path = _write(tmp_path / "overrides.csv", head, [*rows, *added])
    result = import_file(light.config, path, validator)
    assert result.rejections.empty, result.rejections.to_dict("records")
    assert result.counts["accepted"] == 8 and result.counts["added_by_caseworker"] == 3
    assert result.overrides == {"skipped": 4, "added_with_reason": 2}

    stored = read_round_outcomes(light.config, ROUND).set_index("household_key")
    key = [get_cell(r, "household_key") for r in rows]
    assert list(stored.loc[key[:5], "override_code"].fillna("")) == [
        "skip_moved",
        "skip_safety",
        "skip_other",
        "skip_already_known",
        "",
    ]
    assert stored.loc[[key[0], key[2]], "outcome_code"].isna().all()  # skipped, no outcome
    assert stored.loc[key[1], "outcome_code"] == "unreachable"
    assert list(stored.loc[[first, second, third], "override_code"].fillna("")) == [
        "add_referral",
        "add_local_knowledge",
        "",
    ]
    assert stored.loc[[first, second, third], "added_by_caseworker"].all()
    assert (stored.loc[[first, second, third], "selection_reason"] == "local_discretion").all()
    # nobody records how likely a caseworker's own pick was: unknown, not 1
    assert stored.loc[[first, second, third], "selection_probability"].isna().all()
    assert list(skipped_mask(stored.reset_index())) == list(
        stored.index.isin(key[:4])
    )  # skipped: the four listed households with an override

    # The log keeps its counts and says what was overridden; the same file again: nothing new.
    log = (light.config.paths.output_root / "outcomes" / "imports.jsonl").read_text("utf-8")
    assert '"overrides": {"added_with_reason": 2, "skipped": 4}' in log
    before = round_outcomes_file(light.config, ROUND).read_bytes()
    again = import_file(light.config, path, validator)
    assert again.status == NOTHING_NEW and again.counts["unchanged"] == 8
    assert round_outcomes_file(light.config, ROUND).read_bytes() == before

    # Withdrawing a skip is a correction: the answer is replaced, not added.
    rows[0] = set_cell(rows[0], override="", outcome_code="private_support",
                       contact_date="2026-10-09")  # fmt: skip
    fixed = import_file(light.config, _write(tmp_path / "fixed.csv", head, rows[:1]), validator)
    assert fixed.counts["replaced"] == 1
    stored = read_round_outcomes(light.config, ROUND).set_index("household_key")
    assert pd.isna(stored.loc[key[0], "override_code"])


def test_xlsx_filled_with_the_drop_down_names(scored_sample, tmp_path, validator):
    from openpyxl import load_workbook

    light = _light(scored_sample, tmp_path)
    source = next(
        p
        for p in sorted((light.round_dir / "lists").glob("*/emd_*.xlsx"))
        if load_workbook(p, read_only=True).worksheets[0].max_row > 6
    )
    book = load_workbook(source)
    sheet = book.worksheets[0]
    keys = [c.key for c in LIST_COLUMNS]
    col = {k: keys.index(k) + 1 for k in keys}
    emd = str(sheet.cell(2, col["emd_code"]).value)
    sheet.cell(2, col["override"]).value = KO["skip_no_concern"]
    sheet.cell(3, col["override"]).value = KO["skip_already_known"]
    sheet.cell(4, col["outcome_code"]).value = "방문 후 종결(지원 불필요)"
    sheet.cell(4, col["contact_date"]).value = pd.Timestamp("2026-10-07").to_pydatetime()
    new = sheet.max_row + 1
    for k in ("round", "sigungu_code", "emd_code"):
        sheet.cell(new, col[k]).value = sheet.cell(2, col[k]).value
    sheet.cell(new, col["household_key"]).value = _unlisted(light, emd, 1)[0]
    sheet.cell(new, col["override"]).value = KO["add_local_knowledge"]
    sheet.cell(new, col["outcome_code"]).value = "민간 서비스 연계"
    sheet.cell(new, col["contact_date"]).value = "2026. 10. 21."
    path = tmp_path / source.name
    book.save(path)

    result = import_file(light.config, path, validator)
    assert result.rejections.empty, result.rejections.to_dict("records")
    assert result.counts["accepted"] == 4 and result.counts["added_by_caseworker"] == 1
    stored = read_round_outcomes(light.config, ROUND)
    assert sorted(stored["override_code"].dropna()) == [
        "add_local_knowledge",
        "skip_already_known",
        "skip_no_concern",
    ]
    assert int(skipped_mask(stored).sum()) == 2


# --- rejections ---------------------------------------------------------------------------------


def test_override_rejections_by_row_with_korean_reasons(scored_sample, tmp_path, validator):
    light = _light(scored_sample, tmp_path)
    _, head, rows = _csv_list(light)
    emd = get_cell(rows[0], "emd_code")
    first, second = _unlisted(light, emd, 2)
    rows = rows[:4]
    rows[0] = set_cell(rows[0], override="방문 안 함 김순자 010-1234-5678")  # row 2: unknown
    rows[1] = set_cell(rows[1], override=KO["add_referral"], outcome_code="public_support",
                       contact_date="2026-10-10")  # fmt: skip  # row 3: add on a listed household
    rows[2] = set_cell(rows[2], override="skip_no_concern", outcome_code="공공 서비스 연계",
                       contact_date="2026-10-10")  # fmt: skip  # row 4: skip, yet contacted
    rows[3] = set_cell(rows[3], override="skip_moved", outcome_code="unreachable",
                       contact_date="2026-10-11")  # fmt: skip  # row 5: accepted
    extra = [
        _added(rows[0], first, selection=LOCAL_KO, override=KO["skip_other"],
               outcome_code="in_progress"),  # row 6: a skip on an added household
        _added(rows[0], second, override="add_referral"),  # row 7: added, no outcome
    ]  # fmt: skip
    path = _write(tmp_path / "bad.csv", head, [*rows, *extra])
    result = import_file(light.config, path, validator)
    report = result.rejections
    assert {(r.row, r.field) for r in report.itertuples()} == {
        (2, "override"),
        (3, "override"),
        (4, "override"),
        (6, "override"),
        (7, "outcome_code"),
    }
    ko = dict(zip(report["row"], report["reason_ko"], strict=True))
    assert ko[2].startswith("알 수 없는 담당자 판단입니다") and KO["skip_moved"] in ko[2]
    assert "명단에 있는 가구입니다" in ko[3]
    assert "방문·접촉했다고" in ko[4]
    assert "명단에 있는 가구에만" in ko[6]
    assert "제외한 가구만 결과 없이" in ko[7]
    assert "김순자" not in report.to_csv()
    # The office's file: its own headers, the override by its Korean name, free text withheld.
    table = pd.read_csv(result.report, encoding="utf-8-sig", dtype=str).fillna("")
    assert "담당자 판단(제외·추가)" in table.columns
    by_row = table.set_index("행 번호")
    assert by_row.loc["2", "담당자 판단(제외·추가)"] == "(표시 안 함)"
    assert by_row.loc["3", "담당자 판단(제외·추가)"] == KO["add_referral"]
    assert by_row.loc["2", "사유"].startswith("[담당자 판단] 알 수 없는")
    assert "김순자" not in result.report.read_text(encoding="utf-8-sig")
    stored = read_round_outcomes(light.config, ROUND)
    assert list(stored["override_code"]) == ["skip_moved"]  # only row 5


# --- the store ----------------------------------------------------------------------------------


def _stored(rows: list[dict]) -> pd.DataFrame:
    base = {
        "sigungu_code": "4111000000",
        "emd_code": "4111031000",
        "round": ROUND,
        "contact_date": None,
        "added_by_caseworker": False,
        "selection_reason": "model_score",
        "selection_probability": 0.5,
        "source_file_sha256": "0" * 64,
        "resolved_month": None,
        "override_code": None,
    }
    return pd.DataFrame([{**base, **r} for r in rows])


def test_the_store_holds_override_code_and_reads_older_files_without_it(tmp_path):
    assert "override_code" in COLUMNS and SCHEMA.field("override_code").type == pa.string()
    rows = _stored(
        [
            {"household_key": "H1", "outcome_code": None, "override_code": "skip_moved"},
            {"household_key": "H2", "outcome_code": "closed_no_need", "resolved_month": ROUND},
            {
                "household_key": "H3",
                "outcome_code": "public_support",
                "added_by_caseworker": True,
                "override_code": "add_referral",
                "resolved_month": ROUND,
            },
        ]
    )
    table = to_table(rows)
    assert table.column("override_code").to_pylist() == ["skip_moved", None, "add_referral"]
    assert list(skipped_mask(rows)) == [True, False, False]
    # A file written before the column existed merges as "no override".
    old = rows.drop(columns="override_code").iloc[1:2]
    merge = merge_outcomes(old, rows.iloc[1:2])
    assert (merge.new, merge.replaced, merge.unchanged) == (0, 0, 1)
    merge = merge_outcomes(rows, rows.assign(override_code=[None, None, "add_referral"]))
    assert (merge.new, merge.replaced, merge.unchanged) == (0, 1, 2)  # H1's skip withdrawn


# --- labels and history features ----------------------------------------------------------------


def test_a_skipped_household_gives_no_label_while_an_unreachable_one_is_as_before(tmp_path):
    from features.labels import build_labels
    from pipeline.datasets.staged import OUTCOME_COLUMNS, combine_outcomes
    from pipeline.io import write_parquet
    from pipeline.months import parse_month

    rows = _stored(
        [
            {"household_key": "H1", "outcome_code": None, "override_code": "skip_no_concern"},
            {  # tried, then skipped: the skip wins, whatever the outcome says
                "household_key": "H2",
                "outcome_code": "unreachable",
                "override_code": "skip_moved",
                "contact_date": pd.Timestamp("2026-10-03"),
                "resolved_month": ROUND,
            },
            {
                "household_key": "H3",
                "outcome_code": "unreachable",
                "contact_date": pd.Timestamp("2026-10-03"),
                "resolved_month": ROUND,
            },
            {
                "household_key": "H4",
                "outcome_code": "closed_no_need",
                "contact_date": pd.Timestamp("2026-11-03"),
                "resolved_month": "2026-11",
            },
            {
                "household_key": "H5",
                "outcome_code": "public_support",
                "added_by_caseworker": True,
                "override_code": "add_referral",
                "selection_reason": "local_discretion",
                "selection_probability": 1.0,
                "contact_date": pd.Timestamp("2026-10-03"),
                "resolved_month": ROUND,
            },
        ]
    )
    path = tmp_path / "outcomes.parquet"
    write_parquet(to_table(rows), path)
    inputs = feature_outcomes(path, "4111000000")
    assert list(inputs["outcome_code"]) == [SKIPPED, SKIPPED, "unreachable", "closed_no_need",
                                            "public_support"]  # fmt: skip
    assert inputs["resolved_month"].isna().tolist() == [True, True, False, False, False]
    staged = pd.DataFrame({c: pd.Series(dtype="object") for c in OUTCOME_COLUMNS})
    combined = combine_outcomes(staged.astype({"round_month": "int64"}), [inputs])
    labels = build_labels(combined, parse_month("2026-12"), CATALOGUE).set_index("household_key")
    assert labels["label"].isna().tolist()[:3] == [True, True, True]
    assert labels.loc["H4", "label"] == 0 and labels.loc["H5", "label"] == 1
    assert list(labels.loc[["H1", "H2"], "missing_reason"]) == [SKIPPED, SKIPPED]
    assert not labels.loc[["H1", "H2"], "label_known"].any()
    assert labels.loc["H3", "missing_reason"] == "unreachable"  # as before: known, no label
    assert bool(labels.loc["H3", "label_known"])
    # Before the round's answers are known, a skip is still a skip (never a label).
    early = build_labels(combined, parse_month("2026-11"), CATALOGUE).set_index("household_key")
    assert early.loc["H1", "missing_reason"] == SKIPPED
    assert early.loc["H4", "missing_reason"] == "not_resolved_by_as_of"


def test_a_skipped_household_counts_as_listed_not_as_visited_in_history_features(
    sample_raw, catalogue, outcome_catalogue
):
    from dataclasses import replace

    from features.build import build_features
    from features.spec import load_feature_spec

    spec = load_feature_spec(REPO_ROOT / "configs" / "features.yaml")
    inputs = sample_inputs(sample_raw, households=200)
    as_of = int(inputs.outcomes["round_month"].max()) + 4
    key = str(inputs.households["household_key"].iloc[0])
    emd = str(inputs.households["emd_code"].iloc[0])
    round_month = as_of - 2

    def with_row(code: str, resolved: int | None):
        extra = pd.DataFrame(
            {
                "household_key": [key],
                "emd_code": [emd],
                "round_month": [round_month],
                "selection_reason": ["model_score"],
                "selection_probability": [0.5],
                "outcome_code": [code],
                "resolved_month": pd.array([resolved], dtype="Int64"),
            }
        )
        outcomes = pd.concat([inputs.outcomes, extra], ignore_index=True)
        return build_features(
            replace(inputs, outcomes=outcomes), as_of, spec, catalogue, outcome_catalogue
        ).set_index("household_key")

    base = build_features(inputs, as_of, spec, catalogue, outcome_catalogue).set_index(
        "household_key"
    )
    skipped = with_row(SKIPPED, None)
    visited = with_row("closed_no_need", round_month)
    assert skipped.loc[key, "history__times_listed"] == base.loc[key, "history__times_listed"] + 1
    assert skipped.loc[key, "history__last_outcome"] == base.loc[key, "history__last_outcome"]
    assert visited.loc[key, "history__last_outcome"] == "closed_no_need"  # a visit would count
    rate = "context__emd_past_need_rate"
    if rate in base.columns:
        assert np.allclose(skipped[rate], base[rate], equal_nan=True)


# --- the follow-up page -------------------------------------------------------------------------


def _districts() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "sigungu_code": ["4111000000", "4111000000", "4111000000"],
            "emd_code": ["4111031000", "4111032000", "4111033000"],
            "listed": [30, 12, 8],
        }
    )


def _answers() -> pd.DataFrame:
    rows = []
    for i in range(20):  # 읍면동 1: 20 answers back, 6 skipped, 1 added
        override = ["skip_already_known"] * 4 + ["skip_moved"] * 2
        rows.append(
            {
                "household_key": f"A{i}",
                "emd_code": "4111031000",
                "outcome_code": None if i < 6 else "closed_no_need",
                "override_code": override[i] if i < 6 else None,
            }
        )
    rows.append(
        {
            "household_key": "A99",
            "emd_code": "4111031000",
            "outcome_code": "public_support",
            "override_code": "add_referral",
            "added_by_caseworker": True,
        }
    )
    for i in range(5):  # 읍면동 2: 5 answers, 1 skipped
        rows.append(
            {
                "household_key": f"B{i}",
                "emd_code": "4111032000",
                "outcome_code": None if i == 0 else "unreachable",
                "override_code": "skip_safety" if i == 0 else None,
            }
        )
    frame = pd.DataFrame(rows)
    frame["added_by_caseworker"] = frame["added_by_caseworker"].fillna(False).astype(bool)
    return frame


def test_override_rates_per_emd_and_reason_with_small_counts_masked():
    from pipeline.report.overrides import override_context, override_table

    table = override_table(_districts(), _answers(), CATALOGUE).set_index("emd_code")
    assert table.loc["4111031000", ["listed", "returned", "skipped", "added"]].tolist() == [
        30,
        20,
        6,
        1,
    ]
    assert table.loc["4111031000", "skip_already_known"] == 4
    assert table.loc["4111032000", ["returned", "skipped", "skip_safety"]].tolist() == [5, 1, 1]
    assert table.loc["4111033000", ["returned", "skipped", "added"]].tolist() == [0, 0, 0]

    names = {"4111031000": "가동", "4111032000": "나동", "4111000000": "다시"}
    context = override_context(_districts(), _answers(), names, CATALOGUE, 5)
    rows = {r["emd_code"]: r for r in context["override_rows"]}
    assert set(rows) == {"4111031000", "4111032000"}  # the 읍면동 with no answer is left out
    assert context["override_silent"] == "1"
    assert rows["4111031000"]["skip_rate"] == "30.0%"  # 6 of 20
    assert rows["4111031000"]["added"] == "<5" and rows["4111031000"]["add_rate"] == "–"
    assert rows["4111032000"]["skip_rate"] == "–"  # 1 of 5: a small count
    total = context["override_total"]
    assert total["skipped"] == "7" and total["skip_rate"] == "28.0%"  # 7 of 25
    reasons = {r["code"]: r for r in context["override_reasons"]}
    assert reasons["skip_already_known"]["rate"] == "–"  # 4: under 5
    assert reasons["skip_already_known"]["households"] == "<5"
    assert reasons["skip_moved"]["name"] == KO["skip_moved"]


def test_the_follow_up_page_shows_the_override_rates(scored_sample, tmp_path):
    from _cli_helpers import run_captured

    scored = copy_outputs(scored_sample, tmp_path)
    config = scored.config
    scores = pd.read_parquet(scored.round_dir / "scores.parquet")
    listed = scores[scores["tier"].isin(["visit", "phone"])].sort_values(["emd_code", "list_rank"])
    emd = listed["emd_code"].value_counts().index[0]
    mine = listed[listed["emd_code"] == emd].head(12)
    answers = _stored(
        [
            {
                "household_key": str(r.household_key),
                "sigungu_code": str(r.sigungu_code),
                "emd_code": str(r.emd_code),
                "selection_reason": str(r.selection_reason),
                "outcome_code": None if i < 6 else "closed_no_need",
                "override_code": "skip_no_concern" if i < 6 else None,
                "contact_date": None if i < 6 else pd.Timestamp("2026-10-05"),
                "resolved_month": None if i < 6 else ROUND,
            }
            for i, r in enumerate(mine.itertuples(index=False))
        ]
    )
    from pipeline.io import write_parquet

    write_parquet(to_table(answers), round_outcomes_file(config, ROUND))
    config_file = write_config_file(config, tmp_path / "config.yaml")
    code, out, err = run_captured(config_file, "report", "--as-of", ROUND)
    assert code == 0, out + err
    page = (scored.round_dir / "report" / "followup.html").read_text(encoding="utf-8")
    assert 'id="override-emd-table"' in page and 'id="override-reason-table"' in page
    assert KO["skip_no_concern"] in page
    assert 'id="override-skip-rate">50.0%<' in page  # 6 of the 12 listed answers
    assert f"<code>{emd}</code>" in page


# --- training: the metric and the model card ----------------------------------------------------


def test_override_figures_metrics_and_card_section():
    from models.card import HIGH_SKIP_RATE, override_section
    from pipeline.train.overrides import override_figures, override_metrics, override_record

    answers = _answers().assign(round=ROUND)
    older = _answers().assign(round="2026-08").head(3)
    figures = override_figures(pd.concat([answers, older]), [ROUND], CATALOGUE)
    assert (figures.listed, figures.skipped, figures.added) == (25, 7, 1)
    assert figures.rounds == (ROUND,)
    metrics = override_metrics(figures)
    assert metrics["overrides.skip_rate"] == pytest.approx(7 / 25)
    assert metrics["overrides.add_rate"] == pytest.approx(1 / 25)
    assert metrics["overrides.rate.skip_already_known"] == pytest.approx(4 / 25)
    record = override_record(figures)
    assert record["reasons"][0] == {
        "code": "skip_already_known",
        "action": "skip",
        "name_en": EN["skip_already_known"],
        "households": 4,
        "share_of_listed": 0.16,
    }
    text = "\n".join(override_section(figures))
    assert "skip rate 28.0%" in text and "missing labels, not negatives" in text
    assert "high skip rate" in text and "The skip rate is high" not in text
    assert figures.skip_rate < HIGH_SKIP_RATE
    high = override_figures(answers.assign(override_code="skip_other"), [ROUND], CATALOGUE)
    assert "The skip rate is high" in "\n".join(override_section(high))
    none = override_figures(answers.iloc[0:0], [ROUND], CATALOGUE)
    assert set(override_metrics(none)) == {
        "overrides.listed_returned",
        "overrides.skipped",
        "overrides.added",
    }
    assert "override rate is not known" in "\n".join(override_section(none))


def test_the_training_run_logs_the_override_rate_and_the_card_discusses_it(scored_sample):
    from mlflow.tracking import MlflowClient

    from pipeline.tracking import tracking_uri
    from pipeline.tracking.names import MODEL_CARD

    client = MlflowClient(tracking_uri(scored_sample.config))
    runs = [
        r
        for e in client.search_experiments()
        for r in client.search_runs([e.experiment_id])
        if r.data.tags.get("outreach.stage") == "train"
    ]
    assert runs
    run = runs[0]
    # The sample's training rounds have no imported answers: counts 0, no rate.
    assert run.data.metrics["overrides.listed_returned"] == 0
    assert "overrides.skip_rate" not in run.data.metrics
    folder = Path(client.download_artifacts(run.info.run_id, "overrides"))
    assert (folder / "override_rates.json").is_file()
    card = Path(client.download_artifacts(run.info.run_id, MODEL_CARD)).read_text("utf-8")
    assert "## Caseworker overrides" in card and "missing labels, not negatives" in card


# --- the list: the drop-down ---------------------------------------------------------------------


@pytest.mark.parametrize("language", ["ko", "en"])
def test_the_xlsx_offers_the_override_reasons_and_explains_them(tmp_path, language):
    from datetime import datetime

    from openpyxl import load_workbook

    from pipeline.score.lists import (
        column_widths,
        outcome_choices,
        override_choices,
        wrapped_lines,
        write_xlsx,
    )
    from pipeline.vocabulary import list_header

    keys = [c.key for c in LIST_COLUMNS]
    values = {"round": "2026-10", "emd_code": "4111031000", "emd_name": "청내면",
              "household_key": "H0030000778", "risk_percent": 12.0}  # fmt: skip
    rows = [tuple(values.get(k, 1 if k == "list_rank" else "") for k in keys)]
    path = tmp_path / "emd_4111031000.xlsx"
    write_xlsx(rows, path, language, CATALOGUE, datetime(2026, 10, 1))
    book = load_workbook(path)
    sheet, legend = book.worksheets
    choices = override_choices(CATALOGUE, language)
    assert choices == [KO[c] if language == "ko" else EN[c] for c in KO]
    rules = [
        r
        for r in sheet.data_validations.dataValidation
        if all(c in (r.formula1 or "") for c in choices)
    ]
    assert rules and rules[0].type == "list"
    column = sheet.cell(2, keys.index("override") + 1).column_letter
    assert str(rules[0].sqref).startswith(f"{column}2:")
    assert int(str(rules[0].sqref).split(":")[1][1:]) > 2  # rows the office adds get it too
    widths = column_widths(
        list_header(language),
        rows,
        {"outcome_code": outcome_choices(CATALOGUE, language), "override": choices},
    )
    assert all(wrapped_lines(c, widths[keys.index("override")]) <= 2 for c in choices)
    legend_text = [c.value for row in legend.iter_rows() for c in row if c.value]
    assert all(c in legend_text for c in choices)
    assert any(str(t).startswith("skip_moved") for t in legend_text)
