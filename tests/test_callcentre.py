"""The phone tier to the call centre: the export ``outreach score`` writes for the automated
first-contact call service, and ``outreach outcomes import-calls`` of its results.

Export tests read the scored sample's round; the import tests work on a light copy of it (the
round folder and the staged households) in tmp_path, never on the shared fixture.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
from _cli_helpers import run_captured as _run
from _ingest_leak import assert_no_identifiers, collect_identifiers
from conftest import ScoredSample, write_config_file

from pipeline.config import Config
from pipeline.datasets.outcomes import CALL_STORE_COLUMNS, read_round_calls, round_calls_file
from pipeline.datasets.rounds import CALL_COLUMNS, CALL_INTERFACE_VERSION, call_export_file
from pipeline.lineage import ledger
from pipeline.outcomes.calls import read_results
from pipeline.score.callcentre import CALL_PURPOSE, call_csv, call_frame
from pipeline.vocabulary import PHONE, VISIT

BOM = b"\xef\xbb\xbf"
CODES = ("reached", "needs_visit", "declined", "not_reached")
KOREAN = {  # configs/outcomes.yaml, call_results: name_ko
    "reached": "통화 완료(추가 지원 불필요)",
    "needs_visit": "방문 필요",
    "declined": "상담 거부",
    "not_reached": "미연결",
}


@dataclass(frozen=True)
class Light:
    """A private output root holding the scored round and the staged households."""

    config: Config
    config_file: Path
    round_dir: Path
    scores: pd.DataFrame


def _light(scored: ScoredSample, tmp_path: Path) -> Light:
    out = tmp_path / "outputs"
    source = scored.config.paths.output_root
    shutil.copytree(scored.round_dir, out / "rounds" / scored.as_of)
    shutil.copytree(source / "staged" / "households", out / "staged" / "households")
    config = scored.config.with_overrides(paths={"output_root": str(out)})
    config_file = write_config_file(config, tmp_path / "config.yaml")
    scores = pd.read_parquet(out / "rounds" / scored.as_of / "scores.parquet")
    return Light(config, config_file, out / "rounds" / scored.as_of, scores)


def _read(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    text = path.read_bytes().removeprefix(BOM).decode("utf-8")
    rows = list(csv.reader(io.StringIO(text, newline="")))
    return rows[0], [dict(zip(rows[0], r, strict=True)) for r in rows[1:]]


def _write(path: Path, head: list[str], rows: list[dict[str, str]], encoding="utf-8") -> Path:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(head)
    writer.writerows([[r.get(h, "") for h in head] for r in rows])
    data = buffer.getvalue().encode(encoding)
    path.write_bytes(BOM + data if encoding == "utf-8" else data)
    return path


def _phone_sigungu(scores: pd.DataFrame, n: int = 2) -> list[str]:
    """The 시군구 with the most phone-tier households, largest first."""
    counts = scores.loc[scores["tier"] == PHONE, "sigungu_code"].value_counts()
    return sorted(counts.index.astype(str), key=lambda c: (-counts[c], c))[:n]


# --- the export ---------------------------------------------------------------------------------


def test_export_columns_encoding_only_phone_tier_no_identifiers(scored_sample, sample_raw):
    scores = pd.read_parquet(scored_sample.round_dir / "scores.parquet")
    reasons = {
        str(v) for i in (1, 2, 3) for v in scores[f"reason_{i}_text"].dropna() if len(str(v)) > 8
    }
    files = []
    for code in sorted(scores["sigungu_code"].astype(str).unique()):
        path = call_export_file(scored_sample.round_dir, code)
        assert path.is_file(), f"no call file for 시군구 {code}"
        files.append(path)
        data = path.read_bytes()
        assert data.startswith(BOM) and b"\r\n" in data
        head, rows = _read(path)
        assert tuple(head) == CALL_COLUMNS  # the documented columns, in order, nothing else
        phone = scores[(scores["sigungu_code"] == code) & (scores["tier"] == PHONE)]
        assert sorted(r["household_key"] for r in rows) == sorted(phone["household_key"])
        # Priority: 1..n by risk across the 시군구 (highest first); the risk is not written.
        by_key = dict(zip(phone["household_key"], phone["score"], strict=True))
        risks = [by_key[r["household_key"]] for r in rows]
        assert [r["priority"] for r in rows] == [str(i) for i in range(1, len(rows) + 1)]
        assert risks == sorted(risks, reverse=True)
        assert len({r["call_id"] for r in rows}) == len(rows)
        for r in rows:
            assert r["interface_version"] == CALL_INTERFACE_VERSION
            assert r["round"] == scored_sample.as_of and r["sigungu_code"] == code
            assert r["call_purpose"] == CALL_PURPOSE
            assert r["call_result"] == "" and r["call_date"] == ""
            assert (
                r["call_id"]
                == f"{scored_sample.as_of.replace('-', '')}-{code}-{int(r['priority']):05d}"
            )
        text = data.decode("utf-8")
        assert not any(reason in text for reason in reasons)  # no reasons leave with the calls
    assert sum(len(_read(p)[1]) for p in files) == int((scores["tier"] == PHONE).sum()) > 0
    # The files are in the round's manifest (sha256), like the lists.
    manifest = json.loads((scored_sample.round_dir / "manifest.json").read_text("utf-8"))
    assert all(p.relative_to(scored_sample.round_dir).as_posix() in manifest["files_sha256"]
               for p in files)  # fmt: skip
    assert_no_identifiers(files, collect_identifiers(sample_raw))


def test_call_frame_is_pure_ordered_and_formula_safe():
    scored = pd.DataFrame(
        {
            "household_key": ["H3", '=HYPERLINK("x")', "H1", "H2", "H4"],
            "emd_code": ["E1", "E2", "E1", "E2", "E1"],
            "score": [0.30, 0.50, 0.50, 0.90, 0.10],
            "tier": [PHONE, PHONE, PHONE, VISIT, "monitor"],
        }
    )
    before = scored.copy()
    frame = call_frame(scored, "2026-10", "4111000000")
    pd.testing.assert_frame_equal(scored, before)  # the input is not changed
    # H2 is visited, H4 monitored: only the phone tier; equal risks by household key.
    assert list(frame["household_key"]) == ['=HYPERLINK("x")', "H1", "H3"]
    assert list(frame["priority"]) == ["1", "2", "3"]
    assert list(frame["call_id"]) == [f"202610-4111000000-0000{i}" for i in (1, 2, 3)]
    data = call_csv(frame)
    assert b"'=HYPERLINK" in data  # neutralised for a spreadsheet
    assert call_csv(call_frame(scored, "2026-10", "4111000000")) == data  # deterministic


# --- the import ---------------------------------------------------------------------------------


def _filled(light: Light, code: str, every: int = 1) -> tuple[list[str], list[dict[str, str]]]:
    """The call file of a 시군구 filled in as the call service would (codes for some rows,
    Korean names for others, dates in several unambiguous forms), every ``every``-th row."""
    head, rows = _read(call_export_file(light.round_dir, code))
    dates = ("2026-10-15", "2026.11.3", "20261120", "2026. 12. 1.")
    for i, row in enumerate(rows):
        if i % every:
            continue  # not called yet: left empty
        result = CODES[i % len(CODES)]
        row["call_result"] = KOREAN[result] if i % 3 == 1 else result
        row["call_date"] = dates[i % len(dates)]
    return head, rows


def _expected(rows: list[dict[str, str]]) -> dict[str, str]:
    names = {v: k for k, v in KOREAN.items()}
    return {r["household_key"]: names.get(r["call_result"], r["call_result"])
            for r in rows if r["call_result"]}  # fmt: skip


def test_round_trip_export_fill_import_store_idempotent(scored_sample, tmp_path):
    light = _light(scored_sample, tmp_path)
    first, second = _phone_sigungu(light.scores)
    head, rows = _filled(light, first)
    head2, rows2 = _filled(light, second, every=2)  # half not called yet
    a = _write(tmp_path / f"calls_{first}.csv", head, rows)
    b = _write(tmp_path / f"calls_{second}.csv", head2, rows2, encoding="cp949")
    assert any(r["call_result"] in KOREAN.values() for r in rows)  # Korean names used

    code, out, err = _run(light.config_file, "outcomes", "import-calls", str(a), str(b))
    assert code == 0, err
    assert "0 rejected" in out and "not called yet" in out
    stored = read_round_calls(light.config, scored_sample.as_of)
    assert tuple(stored.columns) == CALL_STORE_COLUMNS
    expected = {**_expected(rows), **_expected(rows2)}
    assert dict(zip(stored["household_key"], stored["call_result"], strict=True)) == expected
    assert set(stored["call_result"]) == set(CODES)
    sent = {r["household_key"]: r for r in [*rows, *rows2]}
    for r in stored.itertuples(index=False):
        assert r.emd_code == sent[r.household_key]["emd_code"]
        assert r.sigungu_code == sent[r.household_key]["sigungu_code"]
        assert r.round == scored_sample.as_of
    assert str(stored["call_date"].dtype).startswith("object")  # date32 read back as dates
    first_row = next(r for r in rows if r["call_date"] == "2026.11.3")
    day = stored.loc[stored["household_key"] == first_row["household_key"], "call_date"].iloc[0]
    assert str(day) == "2026-11-03"

    # The ledger and the import log say so.
    entries = ledger.read(light.config.paths.output_root).entries
    calls = [e for e in entries if e["facts"].get("kind") == "calls"]
    assert len(calls) == 2 and calls[0]["event"] == ledger.OUTCOMES_IMPORTED
    target = round_calls_file(light.config, scored_sample.as_of)
    from pipeline.io import sha256_file

    assert calls[-1]["facts"]["calls_file_sha256"] == sha256_file(target)
    log = light.config.paths.output_root / "outcomes" / "imports.jsonl"
    assert [json.loads(line)["kind"] for line in log.read_text("utf-8").splitlines()] == [
        "calls",
        "calls",
    ]

    # Idempotent: the same files again change nothing.
    before = target.read_bytes()
    code, out, err = _run(light.config_file, "outcomes", "import-calls", str(a), str(b))
    assert code == 0, err
    assert out.count("nothing new") == 2
    assert target.read_bytes() == before
    assert len(ledger.read(light.config.paths.output_root).entries) == len(entries)

    # A correction replaces the earlier result of that household only.
    changed = dict(rows[0], call_result="needs_visit", call_date="2026-10-20")
    if _expected(rows)[rows[0]["household_key"]] == "needs_visit":
        changed["call_result"] = "declined"
    c = _write(tmp_path / "correction.csv", head, [changed])
    code, out, _ = _run(light.config_file, "outcomes", "import-calls", str(c))
    assert code == 0 and "0 new, 1 replaced" in out
    again = read_round_calls(light.config, scored_sample.as_of)
    assert len(again) == len(stored)
    assert (
        again.set_index("household_key").at[rows[0]["household_key"], "call_result"]
        == (changed["call_result"])
    )


def test_the_files_of_a_round_are_checked_in_one_validation(scored_sample, tmp_path, validations):
    light = _light(scored_sample, tmp_path)
    first, second = _phone_sigungu(light.scores)
    head, rows = _filled(light, first)
    twice = dict(
        rows[0], call_result="declined" if rows[0]["call_result"] != "declined" else "reached"
    )
    a = _write(tmp_path / "a.csv", head, [*rows, twice])  # one household twice: rejected here
    head2, rows2 = _filled(light, second)
    b = _write(tmp_path / "b.csv", head2, rows2)
    c = _write(tmp_path / "c.csv", head, [rows[0]])  # the same household once: accepted
    code, out, err = _run(light.config_file, "outcomes", "import-calls", str(a), str(b), str(c))
    assert code == 0, err
    assert validations == [len(rows) + 1 + len(rows2) + 1]  # one run over the three files' rows
    lines_a, rest = out.split("b.csv")
    lines_b, lines_c = rest.split("c.csv")
    assert f"{len(rows) - 1} accepted" in lines_a and "2 rejected" in lines_a
    assert lines_a.count("appears in more than one row with different results") == 2
    assert "0 rejected" in lines_b and "0 rejected" in lines_c and "1 new" in lines_c
    stored = read_round_calls(light.config, scored_sample.as_of).set_index("household_key")
    assert len(stored) == len(rows) - 1 + len(rows2) + 1
    assert stored.at[rows[0]["household_key"], "sigungu_code"] == first


def test_bad_rows_rejected_in_korean_with_row_numbers(scored_sample, tmp_path):
    light = _light(scored_sample, tmp_path)
    code = _phone_sigungu(light.scores, 1)[0]
    head, rows = _read(call_export_file(light.round_dir, code))
    assert len(rows) >= 8
    good = dict(rows[0], call_result="reached", call_date="2026-10-15")
    visited = light.scores[(light.scores["sigungu_code"] == code) & (light.scores["tier"] == VISIT)]
    bad = [
        good,  # row 2: accepted
        dict(rows[1], call_result="maybe", call_date="2026-10-15"),  # row 3: unknown result
        dict(rows[2], call_result="미연결", call_date="26.10.15"),  # row 4: ambiguous date
        dict(rows[3], call_result="reached", call_date="2027-03-02"),  # row 5: outside round
        dict(rows[4], call_result="declined", call_date=""),  # row 6: date missing
        dict(rows[5], call_result="reached", call_date="2026-10-16",
             call_id=rows[6]["call_id"]),  # row 7: another household's call id
        dict(rows[0], household_key=str(visited["household_key"].iloc[0]),
             emd_code=str(visited["emd_code"].iloc[0]), call_result="reached",
             call_date="2026-10-15"),  # row 8: a visit-tier household, not in the phone tier
        dict(rows[7], call_result="reached", call_date="2026-10-15"),  # row 9: duplicate,
        dict(rows[7], call_result="declined", call_date="2026-10-15"),  # row 10: other answer
    ]  # fmt: skip
    path = _write(tmp_path / "bad.csv", head, bad)
    status, out, err = _run(light.config_file, "outcomes", "import-calls", str(path))
    assert status == 0, err  # one valid row: imported, the others reported
    assert "1 accepted" in out and "8 rejected" in out
    stored = read_round_calls(light.config, scored_sample.as_of)
    assert list(stored["household_key"]) == [good["household_key"]]

    report = next((light.config.paths.output_root / "outcomes" / "rejected").glob("*.csv"))
    data = report.read_bytes()
    assert data.startswith(BOM)
    table = pd.read_csv(io.BytesIO(data), encoding="utf-8-sig", dtype=str)
    assert (table.columns[0], table.columns[-1]) == ("행 번호", "사유")
    assert "통화 결과(call_result)" in table.columns
    reasons = table.groupby("행 번호")["사유"].apply(" / ".join).to_dict()
    assert set(reasons) == {"3", "4", "5", "6", "7", "8", "9", "10"}
    assert "[통화 결과] 알 수 없는 통화 결과입니다" in reasons["3"]
    assert "[통화일] 통화일을 날짜로 읽을 수 없습니다" in reasons["4"]
    assert "[통화일] 회차 기간 밖의 통화일입니다" in reasons["5"]
    assert "[통화일] 통화일이 비어 있습니다" in reasons["6"]
    assert "[통화 ID] 이 가구에 보낸 통화 ID가 아닙니다" in reasons["7"]
    assert "전화 확인 명단에 없는 가구입니다" in reasons["8"]
    assert "서로 다른 결과" in reasons["9"] and "서로 다른 결과" in reasons["10"]
    # The Korean name of a known result is shown; an unknown one is not echoed.
    shown = table.set_index("행 번호")["통화 결과(call_result)"].to_dict()
    assert shown["4"] == "미연결" and shown["3"] == "(표시 안 함)"
    assert "row 3 call_result" in out  # the terminal in English


def test_file_refused_unknown_round_or_version(scored_sample, tmp_path):
    light = _light(scored_sample, tmp_path)
    code = _phone_sigungu(light.scores, 1)[0]
    head, rows = _read(call_export_file(light.round_dir, code))
    filled = [dict(r, round="2031-02", call_result="reached", call_date="2031-02-03")
              for r in rows[:3]]  # fmt: skip
    path = _write(tmp_path / "other_round.csv", head, filled)
    status, _, err = _run(light.config_file, "outcomes", "import-calls", str(path))
    assert status == 1 and "round 2031-02 was not scored here" in err
    versioned = [dict(r, interface_version="2", call_result="reached", call_date="2026-10-15")
                 for r in rows[:3]]  # fmt: skip
    path = _write(tmp_path / "v2.csv", head, versioned)
    status, _, err = _run(light.config_file, "outcomes", "import-calls", str(path))
    assert status == 1 and "interface_version 2" in err
    with pytest.raises(Exception, match="lacks column"):
        read_results(_write(tmp_path / "short.csv", ["round", "household_key"], []))
    assert read_round_calls(light.config, scored_sample.as_of) is None  # nothing imported
