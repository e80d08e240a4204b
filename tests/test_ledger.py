"""The lineage ledger (``pipeline.lineage.ledger``) on real files, and the naming of the
differences between a sealed record and the store now (``pipeline.lineage.seals``)."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import pytest

from pipeline.errors import DataError
from pipeline.lineage import events, ledger
from pipeline.lineage.seals import differences


def _three(root: Path) -> list[dict]:
    return [
        events.model_registered(
            root, model="m", version="1", run_id="r1", as_of="2026-10", seal_sha256="a" * 64
        ),
        events.champion_moved(
            root, model="m", version="1", previous=None, action="gates", reason="gates passed"
        ),
        events.round_scored(
            root,
            round_label="2026-10",
            manifest_sha256="b" * 64,
            scoring_run_id="s1",
            scoring_seal_sha256="c" * 64,
            model="m",
            version="1",
            training_seal_sha256="a" * 64,
        ),
    ]


def _lines(root: Path) -> list[str]:
    return ledger.ledger_file(root).read_text(encoding="utf-8").splitlines(keepends=True)


def _write(root: Path, lines: list[str]) -> None:
    ledger.ledger_file(root).write_text("".join(lines), encoding="utf-8")


def test_entries_chain_and_the_head_is_the_last(tmp_path):
    written = _three(tmp_path)
    book = ledger.read(tmp_path)
    assert book.problems == ()
    assert [e["seq"] for e in book.entries] == [1, 2, 3]
    assert book.entries[0]["prev"] == ledger.GENESIS
    assert book.entries[1]["prev"] == written[0]["sha256"]
    assert ledger.head(tmp_path) == ledger.Head(3, written[2]["sha256"])
    assert all(e["by"] for e in book.entries)


def test_an_empty_ledger_has_the_genesis_head(tmp_path):
    assert ledger.head(tmp_path) == ledger.EMPTY
    assert ledger.read(tmp_path).problems == ()


def test_an_edited_entry_is_named(tmp_path):
    _three(tmp_path)
    lines = _lines(tmp_path)
    entry = json.loads(lines[1])
    entry["facts"]["reason"] = "someone else's reason"
    lines[1] = json.dumps(entry, sort_keys=True, ensure_ascii=False) + "\n"
    _write(tmp_path, lines)
    problems = ledger.read(tmp_path).problems
    assert len(problems) == 1
    assert problems[0].startswith("entry 2 (champion moved) was changed")


def test_an_edited_entry_with_its_hash_recomputed_breaks_the_next_link(tmp_path):
    _three(tmp_path)
    lines = _lines(tmp_path)
    entry = json.loads(lines[0])
    entry["facts"]["seal_sha256"] = "f" * 64
    entry["sha256"] = ledger.entry_sha256(entry)
    lines[0] = ledger.entry_line(entry)
    _write(tmp_path, lines)
    problems = ledger.read(tmp_path).problems
    assert (
        problems == (problems[0],)
        and "entry 2 (champion moved) does not follow entry 1" in problems[0]
    )


def test_a_removed_entry_is_named(tmp_path):
    _three(tmp_path)
    lines = _lines(tmp_path)
    _write(tmp_path, [lines[0], lines[2]])
    problems = ledger.read(tmp_path).problems
    assert "entry 2 is numbered 3" in problems
    assert any("does not follow entry 1" in p for p in problems)


def test_a_line_cut_short_is_named_and_nothing_is_appended_after_it(tmp_path):
    _three(tmp_path)
    path = ledger.ledger_file(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[:-20])
    assert any("cut short" in p for p in ledger.read(tmp_path).problems)
    before = path.read_bytes()
    with pytest.raises(DataError, match="does not verify"):
        events.challenger_marked(tmp_path, model="m", version="2", reason="x")
    assert path.read_bytes() == before
    with pytest.raises(DataError, match=r"lineage\.jsonl"):
        ledger.check_writable(tmp_path)


def test_text_with_other_line_separators_stays_one_entry(tmp_path):
    events.champion_moved(
        tmp_path, model="m", version="1", previous=None, action="promote", reason="a\u2028b\rc"
    )
    book = ledger.read(tmp_path)
    assert book.problems == () and book.entries[0]["facts"]["reason"] == "a\u2028b\rc"


def _append_many(root: str, n: int, tag: str) -> None:
    for i in range(n):
        events.challenger_marked(Path(root), model="m", version=str(i), reason=tag)


def test_appends_from_two_processes_at_once_lose_nothing(tmp_path):
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_append_many, args=(str(tmp_path), 25, tag)) for tag in "ab"]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
        assert w.exitcode == 0
    book = ledger.read(tmp_path)
    assert book.problems == ()
    assert len(book.entries) == 50
    assert sorted(e["facts"]["reason"] for e in book.entries) == ["a"] * 25 + ["b"] * 25


def test_aliases_expected_from_the_moves(tmp_path):
    _three(tmp_path)
    events.challenger_marked(tmp_path, model="m", version="2", reason="gates failed")
    events.champion_moved(
        tmp_path, model="m", version="2", previous="1", action="promote", reason="reviewed"
    )
    events.champion_moved(
        tmp_path, model="other", version="9", previous=None, action="gates", reason="x"
    )
    entries = ledger.read(tmp_path).entries
    assert ledger.expected_aliases(entries, "m") == {"champion": "2", "challenger": "2"}
    assert ledger.expected_aliases(entries, "nobody") == {"champion": None, "challenger": None}


def test_unknown_events_are_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown ledger event"):
        ledger.append(tmp_path, "model deleted", {})


SEALED = {
    "format": "outreach-seal/1",
    "run": {"status": "FINISHED", "end_time": 2},
    "params": {"training.gates.max_ece": "0.03"},
    "tags": {"waiver.fairness": "reviewed", "code.git_commit": "abc"},
    "metrics": {"lightgbm.ece_pooled": [[0, 1, 0.014]]},
    "datasets": [{"name": "training_as_of_2026-10", "digest": "4f016917", "source": "x"}],
    "artifacts": {"model_card.md": "1" * 64},
    "model_version": {
        "name": "m",
        "version": "1",
        "tags": {"gates": "[]"},
        "description": "card",
        "files_sha256": {"model.pkl": "2" * 64},
    },
}


def _now(**changes) -> dict:
    now = json.loads(json.dumps(SEALED))
    for dotted, value in changes.items():
        *path, key = dotted.split("/")
        target = now
        for part in path:
            target = target[part]
        if value is None:
            del target[key]
        else:
            target[key] = value
    return now


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"params/training.gates.max_ece": "0.05"}, 'param training.gates.max_ece: sealed "0.03"'),
        ({"metrics/lightgbm.ece_pooled": [[0, 1, 0.014], [0, 5, 0.0]]}, "metric lightgbm.ece"),
        ({"tags/waiver.fairness": None}, 'tag waiver.fairness: removed (sealed "reviewed")'),
        ({"tags/code.git_commit": "def"}, 'tag code.git_commit: sealed "abc", now "def"'),
        ({"artifacts/model_card.md": "3" * 64}, "artifact model_card.md: sealed"),
        ({"artifacts/extra.csv": "4" * 64}, "artifact extra.csv: added after the seal"),
        ({"run/status": "FAILED"}, 'run status: sealed "FINISHED", now "FAILED"'),
        ({"model_version/description": "other"}, 'version description: sealed "card"'),
        ({"model_version/tags": {"gates": "[ok]"}}, "version tag gates"),
        ({"model_version/files_sha256": {"model.pkl": "5" * 64}}, "model file model.pkl"),
        ({"model_version": None}, "registered version: m v1 is no longer in the registry"),
        ({"datasets": [{"name": "training_as_of_2026-10", "digest": "x", "source": "x"}]}, ""),
    ],
)
def test_each_changed_fact_is_named(change, named):
    if "model_version" in change and change["model_version"] is None:
        now = _now()
        now["model_version"] = None
    else:
        now = _now(**change)
    found = differences(SEALED, now)
    assert len(found) == 1, found
    assert named in found[0] if named else "dataset training_as_of_2026-10 digest" in found[0]


def test_an_unchanged_record_has_no_differences():
    assert differences(SEALED, _now()) == []
