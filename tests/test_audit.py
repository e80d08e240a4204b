"""``outreach audit``: the chain verifies on a scored round, and each tampered link fails.

The untouched ``scored_sample`` is only read; every tampering happens on a private copy
(``copy_outputs``). The copy's MLflow database is its own, its artifact files are shared with the
original: MLflow records are changed through the client, never the artifact files on disk.
"""

from __future__ import annotations

import copy
import csv
import io
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import ScoredSample, copy_outputs

from pipeline.audit import checks, checks_files
from pipeline.audit import findings as c
from pipeline.audit.chain import LINK_NAMES
from pipeline.cli import main


def audit(scored: ScoredSample, capsys, *args: str) -> tuple[int, dict[str, str], str]:
    """Run ``outreach audit``; return the exit code, each link's status and what it printed."""
    capsys.readouterr()
    code = main(["--no-progress", "--config", str(scored.config_file), "audit", *args])
    captured = capsys.readouterr()
    return code, statuses(captured.out), captured.out + captured.err


@pytest.fixture(scope="module")
def untouched_audit(scored_sample) -> tuple[int, dict[str, str], str]:
    """``audit`` of the untouched round folder, run once for the tests that only read it."""
    import contextlib

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        args = ["--no-progress", "--config", str(scored_sample.config_file), "audit"]
        code = main([*args, str(scored_sample.round_dir)])
    return code, statuses(out.getvalue()), out.getvalue() + err.getvalue()


def statuses(out: str) -> dict[str, str]:
    found = {}
    for line in out.splitlines():
        for link in LINK_NAMES:
            match = re.match(rf"^  (\S+)\s+{re.escape(link)}\s{{2,}}\S", line)
            if match:
                found[link] = match.group(1).lower()
    return found


def failed(status: dict[str, str]) -> set[str]:
    """Links that do not verify (``unverifiable``, e.g. the code link without git, does)."""
    return {link for link, s in status.items() if s not in ("ok", "unverifiable")}


def line_of(out: str, link: str) -> str:
    return next(
        line for line in out.splitlines() if re.match(rf"^  \S+\s+{re.escape(link)}\s", line)
    )


def first_list(round_dir: Path, suffix: str) -> Path:
    """The first 읍면동 list with rows (a list file may be empty when nobody is listed)."""
    for path in sorted(round_dir.glob("lists/*/emd_*.csv")):
        if len(path.read_bytes().decode("utf-8-sig").splitlines()) > 2:
            return path.with_suffix(suffix)
    raise AssertionError(f"no 읍면동 list with rows in {round_dir}")


@pytest.fixture()
def private(scored_sample, tmp_path) -> ScoredSample:
    return copy_outputs(scored_sample, tmp_path)


def client_of(scored: ScoredSample):
    import mlflow

    from pipeline.tracking import tracking_uri

    uri = tracking_uri(scored.config)
    return mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)


def manifest_of(scored: ScoredSample) -> dict:
    return json.loads((scored.round_dir / "manifest.json").read_text(encoding="utf-8"))


# --- the untouched round verifies ------------------------------------------------------------


def test_round_folder_verifies_link_by_link(scored_sample, untouched_audit):
    code, status, out = untouched_audit
    assert code == 0, out
    chain = [link for link in LINK_NAMES if link != c.LIST_FILE]
    assert list(status) == chain  # printed in chain order, one line per link
    assert set(status.values()) <= {"ok", "unverifiable"}
    assert status[c.RESCORE] == "ok" and "re-scored" in line_of(out, c.RESCORE)
    assert "verdict: PASSED" in out
    manifest = manifest_of(scored_sample)
    assert manifest["scoring_run"]["run_id"] in line_of(out, c.SCORING_RUN)
    assert manifest["model"]["training_run_id"] in line_of(out, c.TRAINING_RUN)


@pytest.mark.parametrize("suffix", [".csv", ".xlsx"])
def test_a_list_file_verifies(scored_sample, capsys, suffix):
    path = first_list(scored_sample.round_dir, suffix)
    code, status, out = audit(scored_sample, capsys, str(path))
    assert code == 0, out
    assert status[c.LIST_FILE] == "ok" and status[c.LIST_ROWS] == "ok"
    assert path.name in line_of(out, c.LIST_ROWS)


def test_the_manifest_and_a_month_name_the_round(scored_sample, capsys):
    manifest = scored_sample.round_dir / "manifest.json"
    code, _, out = audit(scored_sample, capsys, str(manifest))
    assert code == 0, out
    code, _, out = audit(scored_sample, capsys, scored_sample.as_of, "--sample", "20")
    assert code == 0, out
    assert "20 sampled of the other" in line_of(out, c.RESCORE)


def test_a_list_kept_outside_the_round_verifies_with_round(scored_sample, capsys, tmp_path):
    sent = tmp_path / "received"
    sent.mkdir()
    original = first_list(scored_sample.round_dir, ".csv")
    shutil.copy2(original, sent / original.name)
    code, _, out = audit(scored_sample, capsys, str(sent / original.name))
    assert code == 2 and "--round" in out  # not inside a round: a usage error naming --round
    code, status, out = audit(
        scored_sample, capsys, str(sent / original.name), "--round", str(scored_sample.round_dir)
    )
    assert code == 0, out
    assert status[c.LIST_FILE] == "ok"


def _fill_in(path: Path, *, risk: str | None = None, add_key: str | None = None) -> None:
    """What an office does to a list: the first row's outcome and date filled in; optionally a
    household added (selection "지자체 자체 발굴") and the first row's risk changed."""
    values = {"결과 코드": "public_support", "확인일(YYYY-MM-DD)": "2026-10-15"}
    if risk is not None:
        values["위험도(%)"] = risk
    if path.suffix == ".csv":
        rows = list(csv.reader(io.StringIO(path.read_bytes().decode("utf-8-sig"))))
        header = rows[0]
        for name, value in values.items():
            rows[1][header.index(name)] = value
        if add_key is not None:
            added = [""] * len(header)
            for name, value in {
                **values,
                "회차": rows[1][header.index("회차")],
                "읍면동 코드": rows[1][header.index("읍면동 코드")],
                "가구 관리번호": add_key,
                "선정 사유": "지자체 자체 발굴",
            }.items():
                added[header.index(name)] = value
            rows.append(added)
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\r\n").writerows(rows)
        path.write_bytes(b"\xef\xbb\xbf" + buffer.getvalue().encode("utf-8"))
        return
    from openpyxl import load_workbook

    book = load_workbook(path)
    sheet = book.worksheets[0]
    header = [cell.value for cell in sheet[1]]
    for name, value in values.items():
        sheet.cell(row=2, column=header.index(name) + 1).value = value
    book.save(path)


@pytest.mark.parametrize("suffix", [".csv", ".xlsx"])
def test_a_returned_list_with_outcomes_filled_in_verifies_as_returned(
    scored_sample, capsys, tmp_path, suffix
):
    """Issue "Tamper-evident lineage", item 5: a list an office filled in as intended failed
    with "the list was changed after scoring"; its scored columns are checked instead."""
    original = first_list(scored_sample.round_dir, suffix)
    sent = tmp_path / original.name
    shutil.copy2(original, sent)
    scores = pd.read_parquet(scored_sample.round_dir / "scores.parquet")
    monitored = scores.loc[scores["tier"] == "monitor", "household_key"].astype(str).iloc[0]
    _fill_in(sent, add_key=monitored if suffix == ".csv" else None)
    code, status, out = audit(
        scored_sample, capsys, str(sent), "--round", str(scored_sample.round_dir)
    )
    assert code == 0, out
    assert status[c.LIST_FILE] == "ok" and status[c.LIST_ROWS] == "ok"
    added = 1 if suffix == ".csv" else 0
    assert f"returned list: {1 + added} rows filled in, {added} households added" in line_of(
        out, c.LIST_FILE
    )


@pytest.mark.parametrize("suffix", [".csv", ".xlsx"])
def test_a_returned_list_with_a_scored_column_changed_fails(
    scored_sample, capsys, tmp_path, suffix
):
    original = first_list(scored_sample.round_dir, suffix)
    sent = tmp_path / original.name
    shutil.copy2(original, sent)
    _fill_in(sent, risk="99.9")
    code, status, out = audit(
        scored_sample, capsys, str(sent), "--round", str(scored_sample.round_dir)
    )
    assert code == 1
    assert "the list was changed after scoring" in line_of(out, c.LIST_FILE)
    assert status[c.LIST_ROWS] == "failed" and "risk_percent" in out


def test_a_renamed_copy_of_a_list_fails_clearly(scored_sample, capsys, tmp_path):
    """A copy under another name cannot be placed in the round: named, no traceback (it was a
    KeyError)."""
    sent = tmp_path / "our_list.csv"
    shutil.copy2(first_list(scored_sample.round_dir, ".csv"), sent)
    code, _, out = audit(scored_sample, capsys, str(sent), "--round", str(scored_sample.round_dir))
    assert code == 1 and "Traceback" not in out
    assert "is not a file of the round manifest" in line_of(out, c.LIST_FILE)
    assert "not a list file name" in line_of(out, c.LIST_ROWS)


def test_json_report_says_what_the_lines_say(scored_sample, capsys, tmp_path, untouched_audit):
    """``outreach audit --json``: one JSON object, the same links, statuses and exit codes."""
    code, status, _ = untouched_audit
    json_code, _, out = audit(scored_sample, capsys, str(scored_sample.round_dir), "--json")
    report = json.loads(out)
    assert json_code == code == 0 and report["verdict"] == "passed"
    assert {f["link"]: f["status"] for f in report["findings"]} == status
    assert report["round"] == scored_sample.as_of and report["failed_links"] == []
    sent = tmp_path / first_list(scored_sample.round_dir, ".csv").name
    shutil.copy2(first_list(scored_sample.round_dir, ".csv"), sent)
    _fill_in(sent, risk="99.9")
    code, out = audit(
        scored_sample, capsys, str(sent), "--round", str(scored_sample.round_dir), "--json"
    )[::2]
    report = json.loads(out)
    assert code == 1 and report["verdict"] == "failed"
    assert report["failed_links"] == [c.LIST_FILE, c.LIST_ROWS]
    rows = next(f for f in report["findings"] if f["link"] == c.LIST_ROWS)
    assert "risk_percent" in rows["message"] + " ".join(rows["details"])


def test_full_rescore_finds_a_changed_score_a_sample_can_miss(private, capsys):
    """``--full`` re-scores every household: a monitored household's stored score lowered in
    scores.parquet is named (a 200-row sample of about 19,000 would find it 1 time in 90)."""
    path = private.round_dir / "scores.parquet"
    scores = pd.read_parquet(path)
    monitored = scores.index[scores["tier"] == "monitor"][-1]
    key = str(scores.loc[monitored, "household_key"])
    scores.loc[monitored, "score"] = scores.loc[monitored, "score"] / 2
    scores.to_parquet(path, index=False)
    code, status, out = audit(private, capsys, str(private.round_dir), "--full")
    assert code == 1 and status[c.RESCORE] == "failed"
    assert f"1 of {len(scores):,} re-scored rows (1 sampled) differ" in out and key in out
    assert audit(private, capsys, str(private.round_dir), "--full", "--sample", "5")[0] == 2


def test_paths_that_are_not_a_round_are_usage_errors(scored_sample, capsys, tmp_path):
    assert audit(scored_sample, capsys, str(tmp_path / "nope"))[0] == 2
    assert audit(scored_sample, capsys, str(tmp_path))[0] == 2  # a folder, not a round
    features = scored_sample.config.paths.output_root / "features" / f"as_of={scored_sample.as_of}"
    assert audit(scored_sample, capsys, str(features))[0] == 2  # has a manifest, not a round's
    assert audit(scored_sample, capsys, str(features / "manifest.json"))[0] == 2
    assert audit(scored_sample, capsys, "2001-01")[0] == 2  # a month that was never scored
    (tmp_path / "notes.txt").write_text("x", encoding="utf-8")
    assert audit(scored_sample, capsys, str(tmp_path / "notes.txt"))[0] == 2


# --- each link, tampered, fails and is named --------------------------------------------------


@pytest.mark.parametrize("suffix", [".csv", ".xlsx"])
def test_an_edited_list_row_fails_at_the_list(private, capsys, suffix):
    path = first_list(private.round_dir, suffix)
    if suffix == ".csv":
        rows = list(csv.reader(io.StringIO(path.read_bytes().decode("utf-8-sig"))))
        rank = rows[0].index("위험도(%)")
        rows[1][rank] = "99.9" if rows[1][rank] != "99.9" else "1.0"
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\r\n").writerows(rows)
        path.write_bytes(b"\xef\xbb\xbf" + buffer.getvalue().encode("utf-8"))
        column = "risk_percent"
    else:
        from openpyxl import load_workbook

        book = load_workbook(path)
        sheet = book.worksheets[0]
        tier = [cell.value for cell in sheet[1]].index("구분") + 1
        cell = sheet.cell(row=2, column=tier)
        cell.value = "전화 확인" if cell.value == "방문" else "방문"
        book.save(path)
        column = "tier"
    code, status, out = audit(private, capsys, str(path))
    assert code == 1
    assert status[c.LIST_FILE] == "failed"
    assert "the list was changed after scoring" in line_of(out, c.LIST_FILE)
    assert status[c.LIST_ROWS] == "failed" and column in out
    assert failed(status) == {c.LIST_FILE, c.MANIFEST, c.LIST_ROWS}
    assert "verdict: FAILED" in out
    # audited as a round, the manifest link names the changed file
    code, status, out = audit(private, capsys, str(private.round_dir))
    assert code == 1 and status[c.MANIFEST] == "failed"
    assert path.relative_to(private.round_dir).as_posix() in out


def test_an_edited_manifest_fails_at_the_scoring_run(private, capsys):
    from pipeline.io import write_json

    manifest = manifest_of(private)
    manifest["counts"]["visit"] += 1
    write_json(manifest, private.round_dir / "manifest.json")
    code, status, out = audit(private, capsys, str(private.round_dir))
    assert code == 1
    assert failed(status) == {c.SCORING_RUN, c.LEDGER}  # seals, ledger too
    assert "the manifest was changed after scoring" in line_of(out, c.SCORING_RUN)


def test_a_round_without_its_manifest_fails(private, capsys):
    (private.round_dir / "manifest.json").unlink()
    code, status, out = audit(private, capsys, str(private.round_dir))
    assert code == 1 and status[c.MANIFEST] == "failed"
    assert "manifest.json missing" in line_of(out, c.MANIFEST)
    assert {s for link, s in status.items() if link != c.MANIFEST} == {"skipped"}


def test_files_added_to_the_round_fail_except_the_report(private, capsys):
    (private.round_dir / "report").mkdir()
    (private.round_dir / "report" / "index.html").write_text("<html></html>", encoding="utf-8")
    code, status, out = audit(private, capsys, str(private.round_dir))
    # report/ is outside the round manifest; its pages are checked against its report.json
    assert status[c.MANIFEST] == "ok" and failed(status) == {c.REPORT_PAGES}, out
    assert "report/report.json: missing" in line_of(out, c.REPORT_PAGES)
    shutil.rmtree(private.round_dir / "report")
    extra = next(private.round_dir.glob("lists/*")) / "emd_0000000000.csv"
    extra.write_text("x\r\n", encoding="utf-8")
    code, status, out = audit(private, capsys, str(private.round_dir))
    assert code == 1 and failed(status) == {c.MANIFEST}
    assert "not recorded" in line_of(out, c.MANIFEST)


def test_a_deleted_scoring_run_fails(private, capsys):
    client_of(private).delete_run(manifest_of(private)["scoring_run"]["run_id"])
    code, status, out = audit(private, capsys, str(private.round_dir))
    assert code == 1
    assert failed(status) == {c.SCORING_RUN, c.SCORING_SEAL}  # seals, ledger too
    assert "deleted" in line_of(out, c.SCORING_RUN)


def test_a_deleted_model_version_fails(private, capsys):
    model = manifest_of(private)["model"]
    client_of(private).delete_model_version(model["name"], model["version"])
    code, status, out = audit(private, capsys, str(private.round_dir))
    assert code == 1
    assert status[c.MODEL] == "failed" and "not in the model registry" in line_of(out, c.MODEL)
    assert status[c.RESCORE] == "skipped"  # nothing to re-score with
    assert failed(status) == {c.MODEL, c.RESCORE, c.TRAINING_SEAL, c.LEDGER}  # seals, ledger too


def _register_again(scored: ScoredSample, source: str, run_id: str) -> None:
    """The registered model deleted and created again: version 1 now has this source and run."""
    client = client_of(scored)
    model = manifest_of(scored)["model"]
    old = client.get_model_version(model["name"], model["version"])
    client.delete_registered_model(model["name"])
    client.create_registered_model(model["name"])
    new = client.create_model_version(model["name"], source=source, run_id=run_id, tags=old.tags)
    assert str(new.version) == model["version"]
    client.set_registered_model_alias(model["name"], "champion", new.version)


def test_a_version_of_another_run_fails_at_the_model(private, capsys):
    manifest = manifest_of(private)
    old = client_of(private).get_model_version(
        manifest["model"]["name"], manifest["model"]["version"]
    )
    _register_again(private, old.source, manifest["scoring_run"]["run_id"])
    code, status, out = audit(private, capsys, str(private.round_dir))
    assert code == 1
    assert failed(status) == {c.MODEL, c.TRAINING_SEAL}  # seals, ledger too
    assert "belongs to run" in line_of(out, c.MODEL)


def test_a_replaced_model_fails_at_the_model_and_the_rescore(private, capsys, tmp_path):
    """Version 1 registered again, same training run and tags, but another model file."""
    import cloudpickle
    import mlflow
    from sklearn.linear_model import LogisticRegression

    from pipeline.tracking import connect

    manifest = manifest_of(private)
    connect(private.config)  # models:/ URIs resolve against the copy's registry
    local = Path(
        mlflow.artifacts.download_artifacts(
            artifact_uri=manifest["model"]["uri"], dst_path=str(tmp_path / "original")
        )
    )
    replaced = copy.deepcopy(cloudpickle.loads((local / "model.pkl").read_bytes()))
    replaced.method = "sigmoid"
    replaced.calibrator_ = LogisticRegression().fit(np.array([[-1.0], [1.0]]), [1, 0])
    mlflow.sklearn.save_model(
        replaced,
        str(tmp_path / "replaced"),
        serialization_format="cloudpickle",
        pip_requirements=[],  # no slow inference of requirements
    )
    _register_again(private, str(tmp_path / "replaced"), manifest["model"]["training_run_id"])
    code, status, out = audit(private, capsys, str(private.round_dir))
    assert code == 1
    assert failed(status) == {c.MODEL, c.RESCORE, c.TRAINING_SEAL}  # seals, ledger too
    assert "the model behind this version was replaced" in line_of(out, c.MODEL)
    assert "differ by more than" in line_of(out, c.RESCORE)


def test_a_deleted_training_run_fails(private, capsys):
    client_of(private).delete_run(manifest_of(private)["model"]["training_run_id"])
    code, status, out = audit(private, capsys, str(private.round_dir))
    assert code == 1
    assert failed(status) == {c.TRAINING_RUN, c.TRAINING_SEAL}  # seals, ledger too
    assert "deleted" in line_of(out, c.TRAINING_RUN)


def test_an_edited_feature_file_fails_at_the_data_and_the_rescore(private, capsys):
    folder = private.config.paths.output_root / "features" / f"as_of={private.as_of}"
    part = sorted(folder.glob("features/sigungu=*/part-0.parquet"))[0]
    frame = pd.read_parquet(part)
    numbers = [
        col
        for col in frame.columns
        if pd.api.types.is_numeric_dtype(frame[col]) and not col.startswith("audit__")
    ]
    frame[numbers] = frame[numbers] + 3
    frame.to_parquet(part, index=False)
    code, status, out = audit(private, capsys, str(private.round_dir))
    assert code == 1
    assert failed(status) == {c.TRAINING_DATA, c.SCORING_FEATURES, c.RESCORE}
    shown = part.relative_to(folder).as_posix()
    assert shown in line_of(out, c.SCORING_FEATURES)
    assert "differ by more than" in line_of(out, c.RESCORE)


def test_a_missing_training_feature_folder_fails_clearly(private, capsys):
    first = sorted((private.config.paths.output_root / "features").glob("as_of=*"))[0]
    shutil.rmtree(first)
    code, status, out = audit(private, capsys, str(private.round_dir))
    assert code == 1
    assert failed(status) == {c.TRAINING_DATA}
    assert f"{first.name}: feature folder of the training data is missing" in out


def test_a_removed_validation_record_fails(private, capsys):
    record = manifest_of(private)["validation"]["record"]
    (private.config.paths.output_root / record).unlink()
    code, status, out = audit(private, capsys, str(private.round_dir))
    assert code == 1
    # its run's results and pages cannot be checked without it: skipped
    assert failed(status) == {c.VALIDATION, c.VALIDATION_FILES}
    assert status[c.VALIDATION_FILES] == "skipped"
    assert "validation record missing" in line_of(out, c.VALIDATION)


def test_an_unknown_commit_fails_at_the_code_version(private, capsys):
    from pipeline.audit.facts import commit_exists

    if commit_exists("0" * 40) is None:
        pytest.skip("git or the repository is not available here")
    client_of(private).set_tag(
        manifest_of(private)["model"]["training_run_id"], "code.git_commit", "0" * 40
    )
    code, status, out = audit(private, capsys, str(private.round_dir))
    assert code == 1
    assert failed(status) == {c.CODE, c.TRAINING_SEAL}  # seals, ledger too
    assert "does not exist in this repository" in line_of(out, c.CODE)


# --- pure checks -----------------------------------------------------------------------------


def test_round_files_name_missing_changed_and_added_files():
    recorded = {"scores.parquet": "a" * 64, "lists/1/emd_2.csv": "b" * 64}
    actual = {"scores.parquet": "c" * 64, "lists/1/emd_3.csv": "d" * 64}
    (finding,) = checks_files.check_round_files(recorded, actual, "2026-10")
    assert finding.status == c.FAILED
    text = "\n".join(finding.details)
    assert "scores.parquet: sha256 cccccccccccc differs" in text
    assert "emd_2.csv: missing" in text and "emd_3.csv: not recorded" in text
    assert checks_files.check_round_files(recorded, dict(recorded), "2026-10")[0].status == c.OK


def test_a_round_scored_from_features_of_older_staged_tables_fails():
    """The finding of the hardening issue: ``score --force`` after a new ingest scored the round
    from a feature folder built from the older staged tables, and the audit passed it."""
    files = {"features/sigungu=1/part-0.parquet": "e" * 64}
    manifest = {
        "features": {"manifest_sha256": "f" * 64, "files_sha256": files},
        "staged": {"manifest_sha256": "1" * 64},
    }
    stale = checks.FolderFacts("features/as_of=2026-10", "f" * 64, files, "0" * 64)
    (finding,) = checks.check_scoring_features(manifest, stale)
    assert finding.status == c.FAILED
    assert "scored from stale features" in "\n".join(finding.details)
    current = checks.FolderFacts("features/as_of=2026-10", "f" * 64, files, "1" * 64)
    assert checks.check_scoring_features(manifest, current)[0].status == c.OK


def test_code_without_git_is_unverifiable_not_failed():
    (finding,) = checks.check_code({"scoring": ("ab" * 20, "false")}, {"ab" * 20: None})
    assert finding.status == c.UNVERIFIABLE and finding.passed
    (finding,) = checks.check_code({"scoring": ("unknown", "unknown")}, {})
    assert finding.status == c.UNVERIFIABLE
    (finding,) = checks.check_code({"scoring": ("ab" * 20, "false")}, {"ab" * 20: False})
    assert finding.status == c.FAILED


def test_rescore_tolerance_and_missing_features():
    from pipeline.audit.checks_rescore import check_rescore
    from pipeline.audit.rescore import Selection

    compared = pd.DataFrame(
        {
            "household_key": ["H1", "H2", "H3"],
            "stored": [0.1, 0.2, 0.3],
            "recomputed": [0.1, 0.2 + 1e-12, np.nan],
            "why": ["listed", "near the cut", "sampled"],
        }
    )
    chosen = Selection(compared, 10, 1, 1, 1, 7, 1, 0, False)
    (finding,) = check_rescore(compared.iloc[:2], chosen, 1e-9, "m v1")
    assert finding.status == c.OK
    (finding,) = check_rescore(compared, chosen, 1e-9, "m v1")
    assert finding.status == c.FAILED
    assert "1 of 3 chosen households could not be re-scored" in finding.message
    assert "H3" in finding.message
    compared.loc[1, "recomputed"] = 0.25
    (finding,) = check_rescore(compared.iloc[:2], chosen, 1e-9, "m v1")
    assert finding.status == c.FAILED
    assert "1 of 2 re-scored rows (1 near the cut) differ" in finding.message
