"""Tampering with what an auditor relies on in MLflow and in the ledger: every case exits 1 and
names the altered fact; honest commands (a promote, an outcomes import) keep the audit passing.

Each case works on a private copy of the session's scored sample (``copy_outputs``) whose MLflow
store points at its own copied artifacts (:func:`own_store`), so that artifacts can be changed on
disk as someone with access to the store's folder would. Changes to the store go through the
MLflow client where MLflow allows them (aliases, tags, metrics, descriptions, versions) and
through SQL where only the database allows them (params, a run's status, a dataset's source).
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import ScoredSample, copy_outputs

from pipeline.audit import findings as f
from pipeline.cli import main
from pipeline.lineage import ledger
from pipeline.tracking import tracking_uri
from pipeline.tracking.seal import RUN_TAG, VERSION_TAG, run_record, seal_text

MODEL = "welfare-outreach"
REPO = Path(__file__).resolve().parents[1]


def own_store(scored: ScoredSample, original: ScoredSample) -> None:
    """Point the copy's MLflow database at the copy's artifact folder (paths are absolute)."""
    old = str(Path(original.config.paths.output_root).resolve())
    new = str(Path(scored.config.paths.output_root).resolve())
    db = Path(tracking_uri(scored.config).removeprefix("sqlite:///"))
    with sqlite3.connect(db) as con:
        for table, column in (
            ("experiments", "artifact_location"),
            ("runs", "artifact_uri"),
            ("model_versions", "storage_location"),
            ("model_versions", "source"),
            ("logged_models", "artifact_location"),
        ):
            con.execute(f"UPDATE {table} SET {column} = replace({column}, ?, ?)", (old, new))


@pytest.fixture()
def private(scored_sample, tmp_path) -> ScoredSample:
    copy = copy_outputs(scored_sample, tmp_path)
    own_store(copy, scored_sample)
    return copy


def client_of(scored: ScoredSample) -> Any:
    import mlflow

    uri = tracking_uri(scored.config)
    mlflow.set_tracking_uri(uri)  # the registry finds a version's logged model through it
    mlflow.set_registry_uri(uri)
    return mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)


def manifest_of(scored: ScoredSample) -> dict:
    return json.loads((scored.round_dir / "manifest.json").read_text(encoding="utf-8"))


def audit_json(scored: ScoredSample, capsys) -> tuple[int, dict]:
    capsys.readouterr()
    args = ["--no-progress", "--config", str(scored.config_file), "audit", "--json"]
    code = main([*args, str(scored.round_dir)])
    return code, json.loads(capsys.readouterr().out)


def named(report: dict, link: str) -> str:
    """What the audit says of ``link`` (its line and every detail), or '' when it passed."""
    for finding in report["findings"]:
        if finding["link"] == link:
            if finding["status"] == f.OK:
                return ""
            return "\n".join([finding["message"], *finding["details"]])
    raise AssertionError(f"no {link} link in {[x['link'] for x in report['findings']]}")


# --- the facts a case changes ----------------------------------------------------------------


class Round:
    """A private scored round and the handles a tamper needs."""

    def __init__(self, scored: ScoredSample):
        self.scored = scored
        self.client = client_of(scored)
        manifest = manifest_of(scored)
        self.training = manifest["model"]["training_run_id"]
        self.scoring = manifest["scoring_run"]["run_id"]
        self.version = manifest["model"]["version"]
        self.db = Path(tracking_uri(scored.config).removeprefix("sqlite:///"))
        self.ledger = ledger.ledger_file(scored.config.paths.output_root)

    def sql(self, statement: str, *args: Any) -> None:
        with sqlite3.connect(self.db) as con:
            assert con.execute(statement, args).rowcount >= 1, statement

    def artifact(self, run_id: str, path: str) -> Path:
        uri = self.client.get_run(run_id).info.artifact_uri
        return Path(uri.removeprefix("file://")) / path

    def model_dir(self) -> Path:
        source = self.client.get_model_version(MODEL, self.version).source
        model = self.client.get_logged_model(source.removeprefix("models:/"))
        return Path(model.artifact_location.removeprefix("file://"))

    def new_version(self) -> str:
        mv = self.client.get_model_version(MODEL, self.version)
        return str(self.client.create_model_version(MODEL, mv.source, run_id=mv.run_id).version)

    def ledger_lines(self) -> list[str]:
        return self.ledger.read_text(encoding="utf-8").splitlines(keepends=True)

    def write_ledger(self, entries: list[dict]) -> None:
        self.ledger.write_text("".join(ledger.entry_line(e) for e in entries), encoding="utf-8")


def _entries(r: Round) -> list[dict]:
    return [json.loads(line) for line in r.ledger_lines()]


def _rechain(entries: list[dict]) -> list[dict]:
    prev = ledger.GENESIS
    for number, entry in enumerate(entries, start=1):
        entry["seq"], entry["prev"] = number, prev
        entry["sha256"] = ledger.entry_sha256(entry)
        prev = entry["sha256"]
    return entries


def _edit_file(path: Path, change: Callable[[bytes], bytes]) -> None:
    assert path.is_file(), path
    before = path.read_bytes()
    after = change(before)
    assert after != before, f"the edit leaves {path.name} as it was"
    path.write_bytes(after)


def _another_commit() -> str:
    return subprocess.run(
        ["git", "rev-list", "--max-parents=0", "HEAD"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()[0]


def _reseal(r: Round, run_id: str, model: tuple[str, str] | None) -> str:
    """What a forger with write access to the store does: seal the changed run again."""
    import hashlib

    text = seal_text(run_record(r.client, run_id, model))
    r.artifact(run_id, "seal/seal.json").write_text(text, encoding="utf-8")
    sha = hashlib.sha256(text.encode("utf-8")).hexdigest()
    r.client.set_tag(run_id, RUN_TAG, sha)
    return sha


def _delete_waiver(r: Round) -> None:
    """The waiver tags (``waiver.<gate>``) when a gate was waived, else the decision tag that
    names the waived gates (the test model may need no waiver)."""
    tags = r.client.get_run(r.training).data.tags
    waivers = sorted(t for t in tags if t.startswith("waiver."))
    r.client.delete_tag(r.training, waivers[0] if waivers else "outreach.decision")


def _gate_param(r: Round) -> None:
    r.sql(
        "UPDATE params SET value = '0.5' WHERE run_uuid = ? AND key = 'training.gates.max_ece'",
        r.training,
    )


def _reseal_run_only(r: Round) -> None:
    _gate_param(r)
    _reseal(r, r.training, (MODEL, r.version))


def _reseal_run_and_version(r: Round) -> None:
    _gate_param(r)
    sha = _reseal(r, r.training, (MODEL, r.version))
    r.client.set_model_version_tag(MODEL, r.version, VERSION_TAG, sha)


def _ledger_edit_reason(r: Round) -> None:
    entries = _entries(r)
    move = next(e for e in entries if e["event"] == ledger.CHAMPION_MOVED)
    move["facts"]["reason"] = "approved by the director"
    r.write_ledger(entries)


def _ledger_rechained(r: Round) -> None:
    entries = _entries(r)
    entries[0]["facts"]["as_of"] = "2026-08"
    r.write_ledger(_rechain(entries))


def _ledger_drop(index: int) -> Callable[[Round], None]:
    def tamper(r: Round) -> None:
        entries = _entries(r)
        del entries[index]
        r.write_ledger(entries)

    return tamper


def _ledger_drop_round_rechained(r: Round) -> None:
    entries = [e for e in _entries(r) if e["event"] != ledger.ROUND_SCORED]
    r.write_ledger(_rechain(entries))


def _scoring_dataset_source(r: Round) -> None:
    r.sql(
        'UPDATE datasets SET dataset_source = \'{"uri": "/elsewhere"}\' WHERE dataset_uuid IN '
        "(SELECT source_id FROM inputs WHERE destination_id = ?)",
        r.training,
    )


def _forge_manifest(r: Round) -> None:
    """Someone who can rewrite the manifest and the scoring run's copy of it: the counts and the
    capacity digest changed, the run's tag and artifact made to match."""
    import hashlib

    path = r.scored.round_dir / "manifest.json"
    manifest = json.loads(path.read_text(encoding="utf-8"))
    manifest["counts"]["listed"] += 7
    manifest["capacity"]["sha256"] = "0" * 64
    path.write_text(json.dumps(manifest, ensure_ascii=False, indent=2), encoding="utf-8")
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    r.artifact(r.scoring, "round/manifest.json").write_bytes(path.read_bytes())
    r.client.set_tag(r.scoring, "outreach.manifest_sha256", sha)


# (id, the tamper, the link that must fail, words its finding must hold)
CASES: list[tuple[str, Callable[[Round], None], str, str]] = [
    (
        "champion alias moved",
        lambda r: r.client.set_registered_model_alias(MODEL, "champion", r.new_version()),
        f.LEDGER,
        "the champion alias of welfare-outreach points to v2, the ledger expects v1",
    ),
    (
        "champion alias deleted",
        lambda r: r.client.delete_registered_model_alias(MODEL, "champion"),
        f.LEDGER,
        "the champion alias of welfare-outreach is on no version, the ledger expects v1",
    ),
    (
        "challenger alias set outside",
        lambda r: r.client.set_registered_model_alias(MODEL, "challenger", r.version),
        f.LEDGER,
        "the challenger alias of welfare-outreach points to v1, the ledger expects no version",
    ),
    (
        "an alias the project never sets",
        lambda r: r.client.set_registered_model_alias(MODEL, "production", r.version),
        f.LEDGER,
        "alias production of welfare-outreach (v1) is not one the ledger records",
    ),
    (
        "version registered outside",
        lambda r: r.new_version(),
        f.LEDGER,
        "welfare-outreach v2 is in the registry but was never registered through the ledger",
    ),
    ("gate threshold param changed", _gate_param, f.TRAINING_SEAL, "param training.gates.max_ece"),
    (
        "param added",
        lambda r: r.sql(
            "INSERT INTO params (key, value, run_uuid) VALUES ('reviewed_by', 'x', ?)",
            r.training,
        ),
        f.TRAINING_SEAL,
        "param reviewed_by: added after the seal",
    ),
    (
        "ECE re-logged as 0",
        lambda r: r.client.log_metric(r.training, "lightgbm.ece_pooled", 0.0),
        f.TRAINING_SEAL,
        "metric lightgbm.ece_pooled",
    ),
    (
        "a backtest round's metric rewritten in SQL",
        lambda r: r.sql(
            "UPDATE metrics SET value = 0.99 WHERE run_uuid = ? AND key = "
            "'bt.lightgbm.truth_emd_precision' AND step = 0",
            r.training,
        ),
        f.TRAINING_SEAL,
        "metric bt.lightgbm.truth_emd_precision",
    ),
    (
        "a metric deleted",
        lambda r: r.sql(
            "DELETE FROM metrics WHERE run_uuid = ? AND key = 'lightgbm.ece_pooled'", r.training
        ),
        f.TRAINING_SEAL,
        "metric lightgbm.ece_pooled",
    ),
    ("waiver or decision tag deleted", _delete_waiver, f.TRAINING_SEAL, ": removed (sealed"),
    (
        "training commit swapped for another that exists",
        lambda r: r.client.set_tag(r.training, "code.git_commit", _another_commit()),
        f.TRAINING_SEAL,
        "tag code.git_commit",
    ),
    (
        "run description edited",
        lambda r: r.client.set_tag(r.training, "mlflow.note.content", "a better model"),
        f.TRAINING_SEAL,
        "tag mlflow.note.content",
    ),
    (
        "version gates tag rewritten to all-pass",
        lambda r: r.client.set_model_version_tag(MODEL, r.version, "gates", "[]"),
        f.TRAINING_SEAL,
        "version tag gates",
    ),
    (
        "version description edited",
        lambda r: r.client.update_model_version(MODEL, r.version, description="all good"),
        f.TRAINING_SEAL,
        "version description",
    ),
    (
        "model card edited",
        lambda r: _edit_file(
            r.artifact(r.training, "model_card.md"), lambda b: b + b"\nNo known issues.\n"
        ),
        f.TRAINING_SEAL,
        "artifact model_card.md",
    ),
    (
        "fairness table edited",
        lambda r: _edit_file(
            # every flag turned: a flagged group cleared, an unflagged one flagged
            r.artifact(r.training, "fairness/fairness.csv"),
            lambda b: b.replace(b"True", b"\0").replace(b"False", b"True").replace(b"\0", b"False"),
        ),
        f.TRAINING_SEAL,
        "artifact fairness/fairness.csv",
    ),
    (
        "training copy of the validation record cut short",
        lambda r: _edit_file(
            r.artifact(r.training, "validation/validation.json"), lambda b: b[: len(b) // 2]
        ),
        f.TRAINING_SEAL,
        "artifact validation/validation.json",
    ),
    (
        "artifact added to the training run",
        lambda r: r.artifact(r.training, "notes.txt").write_text("fine", encoding="utf-8"),
        f.TRAINING_SEAL,
        "artifact notes.txt: added after the seal",
    ),
    (
        "dataset input re-pointed",
        _scoring_dataset_source,
        f.TRAINING_SEAL,
        "dataset training_as_of_2026-10 source",
    ),
    (
        "training run marked failed",
        lambda r: r.sql("UPDATE runs SET status = 'FAILED' WHERE run_uuid = ?", r.training),
        f.TRAINING_SEAL,
        'run status: sealed "FINISHED", now "FAILED"',
    ),
    (
        "model file replaced",
        lambda r: _edit_file(r.model_dir() / "model.pkl", lambda b: b + b"\0"),
        f.TRAINING_SEAL,
        "model file model.pkl",
    ),
    (
        "model version deleted",
        lambda r: r.client.delete_model_version(MODEL, r.version),
        f.TRAINING_SEAL,
        "welfare-outreach v1 is no longer in the registry",
    ),
    (
        "training run re-sealed by a forger",
        _reseal_run_only,
        f.TRAINING_SEAL,
        "the version's tag seal_sha256 records seal",
    ),
    (
        "training run and version re-sealed by a forger",
        _reseal_run_and_version,
        f.TRAINING_SEAL,
        "the round manifest records seal",
    ),
    (
        "scoring param changed",
        lambda r: r.sql(
            "UPDATE params SET value = '99' WHERE run_uuid = ? AND key = 'scoring.audit_sample'",
            r.scoring,
        ),
        f.SCORING_SEAL,
        "param scoring.audit_sample",
    ),
    (
        "scoring metric re-logged",
        lambda r: r.client.log_metric(r.scoring, "count.listed", 1.0),
        f.SCORING_SEAL,
        "metric count.listed",
    ),
    (
        "manifest forged with the scoring run's copy and tag",
        _forge_manifest,
        f.SCORING_SEAL,
        "artifact round/manifest.json",
    ),
    (
        "manifest forged with the scoring run's copy and tag (the ledger)",
        _forge_manifest,
        f.LEDGER,
        "(round scored 2026-10) records manifest sha256",
    ),
    (
        "scoring run's seal removed",
        lambda r: r.artifact(r.scoring, "seal/seal.json").unlink(),
        f.SCORING_SEAL,
        "not sealed",
    ),
    ("a ledger entry edited", _ledger_edit_reason, f.LEDGER, "(champion moved) was changed"),
    ("a ledger entry removed", _ledger_drop(1), f.LEDGER, "entry 2 is numbered 3"),
    (
        "the ledger rewritten and chained again",
        _ledger_rechained,
        f.LEDGER,
        "the ledger was rewritten",
    ),
    (
        "the round's entry removed and the ledger chained again",
        _ledger_drop_round_rechained,
        f.LEDGER,
        "no `round scored` entry for round",
    ),
    ("the ledger deleted", lambda r: r.ledger.unlink(), f.LEDGER, "not found or empty"),
]


@pytest.mark.parametrize(
    ("tamper", "link", "words"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_a_tampered_fact_fails_the_audit_and_is_named(private, capsys, tamper, link, words):
    tamper(Round(private))
    code, report = audit_json(private, capsys)
    assert code == 1
    said = named(report, link)
    assert words in said, f"{link}: {said}"


def test_an_honest_promote_is_recorded_and_the_round_still_verifies(private, capsys):
    config = ["--no-progress", "--config", str(private.config_file)]
    assert main([*config, "promote", "1", "--reason", "reviewed again by the board"]) == 0
    entries = ledger.read(private.config.paths.output_root).entries
    assert entries[-1]["event"] == ledger.CHAMPION_MOVED
    assert entries[-1]["facts"]["reason"] == "reviewed again by the board"
    assert entries[-1]["facts"]["action"] == "promote"
    code, report = audit_json(private, capsys)
    assert code == 0, report["failed_links"]


def test_a_report_record_edited_with_its_pages_fails_at_the_ledger(private, capsys):
    config = ["--no-progress", "--config", str(private.config_file)]
    assert main([*config, "report", "--as-of", private.as_of]) == 0
    assert ledger.read(private.config.paths.output_root).entries[-1]["event"] == (
        ledger.REPORT_WRITTEN
    )
    assert audit_json(private, capsys)[0] == 0
    record = private.round_dir / "report" / "report.json"
    data = json.loads(record.read_text(encoding="utf-8"))
    data["shifted_features"] = []
    record.write_text(json.dumps(data), encoding="utf-8")
    code, report = audit_json(private, capsys)
    assert code == 1
    assert "the report record was changed" in named(report, f.LEDGER)


def test_metric_histories_read_from_sqlite_are_the_apis(scored_sample):
    from pipeline.tracking.seal import (
        _metric_histories,
        api_metric_histories,
        sqlite_metric_histories,
    )

    r = Round(scored_sample)
    for run_id in (r.training, r.scoring):
        keys = sorted(r.client.get_run(run_id).data.metrics)
        through_api = api_metric_histories(r.client, run_id, keys)
        assert through_api == sqlite_metric_histories(r.db, run_id)
        assert through_api == _metric_histories(r.client, run_id, keys)
        assert len(through_api) == len(keys) > 0


def test_the_untouched_round_is_sealed_and_in_the_ledger(scored_sample, capsys):
    code, report = audit_json(scored_sample, capsys)
    assert code == 0, report["failed_links"]
    manifest = manifest_of(scored_sample)
    assert len(manifest["model"]["training_seal_sha256"]) == 64
    book = ledger.read(scored_sample.config.paths.output_root)
    assert book.problems == ()
    assert [e["event"] for e in book.entries] == [
        ledger.MODEL_REGISTERED,
        ledger.GATES_DECIDED,
        ledger.CHAMPION_MOVED,
        ledger.ROUND_SCORED,
    ]
    assert manifest["ledger"] == {"seq": 3, "sha256": book.entries[2]["sha256"]}
    scored = book.entries[3]["facts"]
    assert scored["training_seal_sha256"] == manifest["model"]["training_seal_sha256"]
