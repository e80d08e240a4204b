"""Tampering with the files a round names: each case exits 1 and names the altered file.

Issue "Tamper-evident lineage", items 3, 4 and 7: the raw input files, the validation results and
pages, the staged tables and their manifest, the capacity table, XLSX lists in a round audit, the
report pages, paths in the manifest that leave the output root, an unlisted household's score
(the default re-score covers the households just below each cut; one far below needs
``--full``), and ``--household``.

Every case runs on a private copy of the session's scored sample (``copy_outputs``), with its own
copy of the raw input (``with_raw``); the untouched sample is only read.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
from conftest import ScoredSample, copy_outputs, write_config_file

from pipeline.audit import findings as c
from pipeline.audit.chain import LINK_NAMES
from pipeline.cli import main


def audit(scored: ScoredSample, capsys, *args: str) -> tuple[int, dict[str, str], str]:
    """Run ``outreach audit``; the exit code, each link's status and what it printed."""
    capsys.readouterr()
    code = main(["--no-progress", "--config", str(scored.config_file), "audit", *args])
    captured = capsys.readouterr()
    found = {}
    for line in captured.out.splitlines():
        for link in (*LINK_NAMES, "household"):
            match = re.match(rf"^  (\S+)\s+{re.escape(link)}\s{{2,}}\S", line)
            if match:
                found[link] = match.group(1).lower()
    return code, found, captured.out + captured.err


def line_of(out: str, link: str) -> str:
    return next(
        line for line in out.splitlines() if re.match(rf"^  \S+\s+{re.escape(link)}\s", line)
    )


def with_raw(scored: ScoredSample, tmp_path: Path) -> ScoredSample:
    """A private copy of the outputs and of the raw input the round was made from."""
    copy = copy_outputs(scored, tmp_path)
    raw = tmp_path / "raw"
    shutil.copytree(scored.config.paths.raw_input, raw)
    config = copy.config.with_overrides(paths={"raw_input": str(raw)})
    write_config_file(config, copy.config_file)
    return ScoredSample(config, copy.config_file, copy.round_dir, copy.as_of)


@pytest.fixture()
def private(scored_sample, tmp_path) -> ScoredSample:
    return with_raw(scored_sample, tmp_path)


def manifest_of(scored: ScoredSample) -> dict:
    return json.loads((scored.round_dir / "manifest.json").read_text(encoding="utf-8"))


def write_manifest(scored: ScoredSample, manifest: dict) -> None:
    (scored.round_dir / "manifest.json").write_text(
        json.dumps(manifest, ensure_ascii=False, indent=2), encoding="utf-8"
    )


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def append(path: Path, data: bytes = b"\n") -> None:
    with path.open("ab") as handle:
        handle.write(data)


def validation_run(scored: ScoredSample) -> Path:
    record = manifest_of(scored)["validation"]["record"]
    return scored.config.paths.output_root / Path(record).parent


def staged(scored: ScoredSample) -> Path:
    return scored.config.paths.output_root / "staged"


def first_partition(folder: Path, table: str) -> Path:
    return sorted((folder / table).glob("sigungu=*/part-0.parquet"))[0]


def edit_first_row(path: Path, column: str, value) -> None:
    """A Parquet table with one cell of its first row changed (written again)."""
    frame = pd.read_parquet(path)
    frame.loc[frame.index[0], column] = value
    frame.to_parquet(path, index=False)


# --- the cases: (what is done, the link that fails, what its line or details must name) ---------


def _raw_changed(s: ScoredSample) -> str:
    path = first_partition(s.config.paths.raw_input, "households")
    append(path)
    return path.relative_to(s.config.paths.raw_input).as_posix()


def _raw_removed(s: ScoredSample) -> str:
    path = first_partition(s.config.paths.raw_input, "crisis_events")
    path.unlink()
    return path.relative_to(s.config.paths.raw_input).as_posix() + ": missing"


def _raw_added(s: ScoredSample) -> str:
    path = first_partition(s.config.paths.raw_input, "households").with_name("part-1.parquet")
    shutil.copy2(first_partition(s.config.paths.raw_input, "households"), path)
    return "part-1.parquet: not recorded"


def _raw_small_table_changed(s: ScoredSample) -> str:
    append(Path(s.config.paths.raw_input) / "district_capacity.parquet")
    return "district_capacity.parquet: sha256"


def _gx_result_edited(s: ScoredSample) -> str:
    path = validation_run(s) / "gx_results.json"
    results = json.loads(path.read_text(encoding="utf-8"))
    results[0]["result"]["success"] = not results[0]["result"].get("success")
    path.write_text(json.dumps(results), encoding="utf-8")
    return "gx_results.json: sha256"


def _data_docs_page_edited(s: ScoredSample) -> str:
    page = sorted((validation_run(s) / "data_docs").rglob("*.html"))[0]
    page.write_text(page.read_text(encoding="utf-8") + "<p>all passed</p>", encoding="utf-8")
    return page.relative_to(validation_run(s)).as_posix()


def _summary_page_removed(s: ScoredSample) -> str:
    (validation_run(s) / "summary.html").unlink()
    return "summary.html: missing"


def _validation_file_added(s: ScoredSample) -> str:
    (validation_run(s) / "data_docs" / "extra.html").write_text("<p>ok</p>", encoding="utf-8")
    return "data_docs/extra.html: not recorded"


def _staged_capacity_edited(s: ScoredSample) -> str:
    path = staged(s) / "district_capacity.parquet"
    frame = pd.read_parquet(path)
    number = next(col for col in frame.columns if pd.api.types.is_integer_dtype(frame[col]))
    edit_first_row(path, number, int(frame[number].iloc[0]) + 50)
    return "district_capacity.parquet"


def _staged_crisis_events_edited(s: ScoredSample) -> str:
    path = first_partition(staged(s), "crisis_events")
    append(path)
    return path.relative_to(staged(s)).as_posix()


def _staged_manifest_edited(s: ScoredSample) -> str:
    path = staged(s) / "_manifest.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    data["dropped_columns"] = {}
    path.write_text(json.dumps(data), encoding="utf-8")
    return "staged/_manifest.json: sha256"


def _staged_file_removed(s: ScoredSample) -> str:
    (staged(s) / "regions.parquet").unlink()
    return "regions.parquet: missing"


def _xlsx_cell_changed(s: ScoredSample) -> str:
    """A list's XLSX changed and its sha256 recomputed in the manifest: only the rows show it."""
    from openpyxl import load_workbook

    path = sorted(s.round_dir.glob("lists/*/emd_*.xlsx"))[0]
    book = load_workbook(path)
    sheet = book.worksheets[0]
    header = [cell.value for cell in sheet[1]]
    sheet.cell(row=2, column=header.index("위험도(%)") + 1).value = 1.0
    book.save(path)
    manifest = manifest_of(s)
    relative = path.relative_to(s.round_dir).as_posix()
    manifest["files_sha256"][relative] = sha256(path)
    write_manifest(s, manifest)
    return f"{relative}: household"


def _absolute_features_folder(s: ScoredSample) -> str:
    manifest = manifest_of(s)
    folder = s.config.paths.output_root / manifest["features"]["folder"]
    manifest["features"]["folder"] = str(folder)
    write_manifest(s, manifest)
    return f"features.folder path '{folder}' is absolute"


def _escaping_validation_record(s: ScoredSample) -> str:
    manifest = manifest_of(s)
    manifest["validation"]["record"] = "../elsewhere/validation.json"
    write_manifest(s, manifest)
    return "validation.record path '../elsewhere/validation.json' leaves its folder"


def _escaping_list_path(s: ScoredSample) -> str:
    manifest = manifest_of(s)
    manifest["files_sha256"]["lists/../../../escape.csv"] = "0" * 64
    write_manifest(s, manifest)
    return "files_sha256 path 'lists/../../../escape.csv' leaves its folder"


def _absolute_capacity_file(s: ScoredSample) -> str:
    manifest = manifest_of(s)
    manifest["capacity"]["file"] = "/etc/passwd"
    write_manifest(s, manifest)
    return "capacity.file path '/etc/passwd' is absolute"


def _absolute_raw_input(s: ScoredSample) -> str:
    manifest = manifest_of(s)
    raw = manifest["raw_inputs_sha256"]
    name = sorted(raw)[0]
    raw["/tmp/" + name] = raw.pop(name)
    write_manifest(s, manifest)
    return f"raw_inputs_sha256 path '/tmp/{name}' is absolute"


CASES: dict[str, tuple[Callable[[ScoredSample], str], str]] = {
    "raw file changed": (_raw_changed, c.RAW_INPUTS),
    "raw file removed": (_raw_removed, c.RAW_INPUTS),
    "raw file added": (_raw_added, c.RAW_INPUTS),
    "raw capacity table changed": (_raw_small_table_changed, c.RAW_INPUTS),
    "GX result edited": (_gx_result_edited, c.VALIDATION_FILES),
    "Data Docs page edited": (_data_docs_page_edited, c.VALIDATION_FILES),
    "validation summary removed": (_summary_page_removed, c.VALIDATION_FILES),
    "validation page added": (_validation_file_added, c.VALIDATION_FILES),
    "staged capacity table edited": (_staged_capacity_edited, c.STAGED_TABLES),
    "staged crisis events edited": (_staged_crisis_events_edited, c.STAGED_TABLES),
    "staged manifest edited": (_staged_manifest_edited, c.STAGED_TABLES),
    "staged table removed": (_staged_file_removed, c.STAGED_TABLES),
    "XLSX cell changed, digest recomputed": (_xlsx_cell_changed, c.LIST_ROWS),
    "absolute features folder": (_absolute_features_folder, c.MANIFEST),
    "validation record outside the root": (_escaping_validation_record, c.MANIFEST),
    "list path escaping the round": (_escaping_list_path, c.MANIFEST),
    "absolute capacity file": (_absolute_capacity_file, c.MANIFEST),
    "absolute raw input path": (_absolute_raw_input, c.MANIFEST),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_tampered_file_fails_naming_it(private, capsys, case):
    tamper, link = CASES[case]
    named = tamper(private)
    code, status, out = audit(private, capsys, str(private.round_dir))
    assert code == 1, out
    assert status[link] == "failed", out
    assert named in _link_text(out, link), _link_text(out, link)


def _link_text(out: str, link: str) -> str:
    """A link's line and its detail lines."""
    lines = out.splitlines()
    start = lines.index(line_of(out, link))
    text = [lines[start]]
    for line in lines[start + 1 :]:
        if not line.strip().startswith(("- ", "…")):
            break
        text.append(line)
    return "\n".join(text)


def test_the_untouched_round_with_its_raw_input_verifies(private, capsys):
    code, status, out = audit(private, capsys, str(private.round_dir))
    assert code == 0, out
    for link in (c.RAW_INPUTS, c.VALIDATION_FILES, c.STAGED_TABLES, c.REPORT_PAGES):
        assert status[link] == "ok", out
    assert "pages, the GX results" in line_of(out, c.VALIDATION_FILES)
    assert "near the cut" in line_of(out, c.RESCORE) and "seed " in line_of(out, c.RESCORE)


def test_an_honestly_returned_list_verifies(private, capsys, tmp_path):
    """Outcome columns filled in by the office: the round's other files are untouched."""
    import csv
    import io

    original = sorted(private.round_dir.glob("lists/*/emd_*.csv"))[0]
    sent = tmp_path / "returned" / original.name
    sent.parent.mkdir()
    rows = list(csv.reader(io.StringIO(original.read_bytes().decode("utf-8-sig"))))
    rows[1][rows[0].index("결과 코드")] = "public_support"
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerows(rows)
    sent.write_bytes(b"\xef\xbb\xbf" + buffer.getvalue().encode("utf-8"))
    code, _status, out = audit(private, capsys, str(sent), "--round", str(private.round_dir))
    assert code == 0, out
    assert "returned list: 1 rows filled in" in line_of(out, c.LIST_FILE)


# --- the report -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def reported(scored_sample, tmp_path_factory) -> ScoredSample:
    """A copy of the scored sample with its review report written (once for the module)."""
    copy = with_raw(scored_sample, tmp_path_factory.mktemp("reported"))
    assert main(["--no-progress", "--config", str(copy.config_file), "report"]) == 0
    return copy


@pytest.mark.parametrize("how", ["edited", "added", "record"])
def test_an_altered_report_fails_at_the_report_pages(reported, capsys, tmp_path, how):
    scored = with_raw(reported, tmp_path)
    if how == "edited":  # the report verifies before it is edited (checked once, not per case)
        code, status, out = audit(scored, capsys, str(scored.round_dir))
        assert code == 0 and status[c.REPORT_PAGES] == "ok", out
        page = scored.round_dir / "report" / "index.html"
        page.write_text(page.read_text(encoding="utf-8") + "<!-- -->", encoding="utf-8")
        named = "report/index.html: sha256"
    elif how == "added":
        (scored.round_dir / "report" / "emd" / "extra.html").write_text("x", encoding="utf-8")
        named = "report/emd/extra.html: not recorded"
    else:
        record = scored.round_dir / "report" / "report.json"
        data = json.loads(record.read_text(encoding="utf-8"))
        data["round_manifest_sha256"] = "0" * 64
        record.write_text(json.dumps(data), encoding="utf-8")
        named = "reports on round manifest 000000000000"
    code, status, out = audit(scored, capsys, str(scored.round_dir))
    assert code == 1 and status[c.REPORT_PAGES] == "failed", out
    assert named in _link_text(out, c.REPORT_PAGES)


# --- re-score: which lowered scores the default catches -------------------------------------


def _lower(scored: ScoredSample, pick: Callable[[pd.DataFrame], int], factor: float) -> str:
    """An unlisted household's stored score lowered, the manifest's digest of scores.parquet
    recomputed (a forger's move): its key."""
    path = scored.round_dir / "scores.parquet"
    scores = pd.read_parquet(path)
    row = pick(scores)
    scores.loc[row, "score"] = scores.loc[row, "score"] * factor
    scores.to_parquet(path, index=False)
    manifest = manifest_of(scored)
    manifest["files_sha256"]["scores.parquet"] = sha256(path)
    write_manifest(scored, manifest)
    return str(scores.loc[row, "household_key"])


def _just_below_the_cut(scores: pd.DataFrame) -> int:
    unlisted = scores[scores["tier"] == "monitor"]
    return int(unlisted.sort_values(["emd_code", "score"], ascending=[True, False]).index[0])


def _far_below_the_cut(scores: pd.DataFrame) -> int:
    unlisted = scores[scores["tier"] == "monitor"]
    return int(unlisted.sort_values("score").index[len(unlisted) // 2])


def test_a_lowered_score_just_below_a_cut_fails_the_default_rescore(private, capsys):
    key = _lower(private, _just_below_the_cut, 0.999)
    code, status, out = audit(private, capsys, str(private.round_dir))
    assert code == 1 and status[c.RESCORE] == "failed", out
    assert f"household {key} (near the cut)" in _link_text(out, c.RESCORE)


def test_a_lowered_score_far_below_the_cut_needs_full(private, capsys):
    """The default re-score covers the listed households, the next ``audit_near_cut`` per
    읍면동 and a sample of the rest: a median household lowered is (almost surely) not in
    the sample; ``--full`` names it. The audit fails either way (the forged manifest's sha256
    is not the scoring run's)."""
    key = _lower(private, _far_below_the_cut, 0.5)
    code, status, out = audit(private, capsys, str(private.round_dir), "--sample", "1")
    assert code == 1 and status[c.RESCORE] == "ok", out
    code, status, out = audit(private, capsys, str(private.round_dir), "--full")
    assert code == 1 and status[c.RESCORE] == "failed"
    assert f"household {key} (sampled)" in _link_text(out, c.RESCORE)


# --- --household ---------------------------------------------------------------------------


def test_household_prints_its_row_lists_rescore_reasons_and_chain(scored_sample, capsys):
    scores = pd.read_parquet(scored_sample.round_dir / "scores.parquet")
    listed = scores[scores["tier"] == "visit"].iloc[0]
    key = str(listed["household_key"])
    code, status, out = audit(scored_sample, capsys, scored_sample.as_of, "--household", key)
    assert code == 0, out
    assert status["household"] == "ok" and status[c.RESCORE] == "ok"
    assert f"{key}: stored {float(listed['score']):.12f}, re-scored" in out
    assert f"lists/{listed['sigungu_code']}/emd_{listed['emd_code']}.csv" in out
    assert str(listed["reason_1_text"]) in out
    assert set(LINK_NAMES) - {c.LIST_FILE} <= set(status)
    code, _, out = audit(scored_sample, capsys, scored_sample.as_of, "--household", key, "--json")
    data = json.loads(out[: out.rindex("}") + 1])
    assert code == 0 and data["household"]["key"] == key and data["household"]["status"] == "ok"
    assert data["household"]["lists"] and data["verdict"] == "passed"


def test_household_unknown_key_is_a_usage_error(scored_sample, capsys):
    code, _, out = audit(scored_sample, capsys, scored_sample.as_of, "--household", "H-NOPE")
    assert code == 2
    assert "household H-NOPE is not in 2026-10/scores.parquet" in out.replace(
        scored_sample.as_of, "2026-10"
    )


def test_household_with_a_changed_score_fails(private, capsys):
    key = _lower(private, _far_below_the_cut, 0.5)
    code, status, out = audit(private, capsys, private.as_of, "--household", key)
    assert code == 1 and status["household"] == "failed", out
    assert "not on a list of this round" in out


# --- the pure parts ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "why"),
    [
        ("features/as_of=2026-10", None),
        ("lists/1111000000/emd_1111051000.csv", None),
        ("/etc/passwd", "is absolute"),
        ("C:\\outputs\\features", "is absolute"),
        ("../outside", "leaves its folder (..)"),
        ("lists/../../x.csv", "leaves its folder (..)"),
        ("lists\\..\\..\\x.csv", "leaves its folder (..)"),
    ],
)
def test_unsafe_paths_are_named(path, why):
    from pipeline.audit.checks_files import unsafe_path

    assert unsafe_path(path) == why


def test_the_rows_rescored_by_default():
    """Every listed row, the next N unlisted per 읍면동 by stored score, a seeded sample."""
    from pipeline.audit.rescore import LISTED, NEAR_CUT, SAMPLED, choose_rows

    rows = pd.DataFrame(
        {
            "household_key": [f"H{i:03d}" for i in range(40)],
            "emd_code": ["A"] * 20 + ["B"] * 20,
            "score": [1 - i / 100 for i in range(40)],
            "tier": (["visit"] * 3 + ["monitor"] * 17) * 2,
        }
    )
    chosen = choose_rows(rows, 2, 5, seed=7)
    why = dict(zip(chosen.rows["household_key"], chosen.rows["why"], strict=True))
    assert [k for k, w in why.items() if w == NEAR_CUT] == ["H003", "H004", "H023", "H024"]
    assert sum(w == LISTED for w in why.values()) == 6 and chosen.sampled == 5
    assert (chosen.listed, chosen.near_cut, chosen.rest, chosen.population) == (6, 4, 30, 40)
    assert choose_rows(rows, 2, 5, seed=7).rows.equals(chosen.rows)  # the same draw again
    assert set(choose_rows(rows, 2, None, seed=7).rows["why"]) == {LISTED, NEAR_CUT, SAMPLED}
    assert len(choose_rows(rows, 2, None, seed=7).rows) == 40


def test_a_validation_record_without_file_digests_is_unverifiable():
    from pipeline.audit.checks_files import check_validation_files

    (finding,) = check_validation_files("validation/runs/x/validation.json", {}, {"a.html": "1"})
    assert finding.status == c.UNVERIFIABLE and "holds no outputs_sha256" in finding.message
    (finding,) = check_validation_files(
        "validation/runs/x/validation.json", {"outputs_sha256": {"a.html": "1"}}, {"a.html": "2"}
    )
    assert finding.status == c.FAILED and "validation/runs/x/a.html: sha256" in finding.message
