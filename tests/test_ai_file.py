"""The high-impact AI file (issue 19, item 5): generated from the sealed training record for the
registered version, linked from it and from the report, and checked by the audit.

The catalogue tests are pure and fast. The others read the session's ``scored_sample`` (its
MLflow store, read only) or a private copy of it whose MLflow store points at its own artifact
files (``own_store``), so that a byte of the file can be changed on disk.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import REPO_ROOT, ScoredSample, copy_outputs
from test_tamper_lineage import audit_json, client_of, named, own_store

from pipeline.audit import findings as f
from pipeline.audit.checks_ai_file import AiFileFacts, check_ai_file
from pipeline.catalogue import data_sources_path, load_data_sources, load_indicators
from pipeline.cli import main
from pipeline.config import ConfigError
from pipeline.datasets import PARTITIONED_RAW_TABLES
from pipeline.tracking.ai_file import VERSION_SHA_TAG, VERSION_TAG, version_tags
from pipeline.tracking.names import AI_FILE, FAIRNESS, SEAL

INDICATORS = REPO_ROOT / "configs" / "indicators.yaml"
SECTIONS = (
    "## 1. 목적과 의도된 용도 (Purpose and intended use)",
    "## 2. 자료의 출처와 법적 근거 (Data: source agencies and legal basis)",
    "## 3. 성능 (Performance, with 95% intervals)",
    "## 4. 공정성과 대리변수 점검 (Fairness and proxy results)",
    "## 5. 알려진 한계 (Known limits)",
    "## 6. 선택적 라벨 처리 (Selective-label handling)",
    "## 7. 사람의 감독 (Human oversight)",
    "## 8. 모니터링과 사고 대응 (Monitoring and incident path)",
    "## 9. 보존과 파기 (Retention)",
    "## 10. 이 문서의 근거 (Provenance)",
)


# --- the data-source catalogue ----------------------------------------------------------------


def _catalogue_copy(tmp_path: Path, change) -> Path:
    """The shipped data-source catalogue changed by ``change(data)``, beside a copy of the
    indicator catalogue (the loader looks for it there)."""
    (tmp_path / "indicators.yaml").write_bytes(INDICATORS.read_bytes())
    data = yaml.safe_load(data_sources_path(INDICATORS).read_text(encoding="utf-8"))
    change(data)
    path = data_sources_path(tmp_path / "indicators.yaml")
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


def test_the_shipped_catalogue_covers_every_group_and_household_table():
    indicators = load_indicators(INDICATORS)
    catalogue = load_data_sources(data_sources_path(INDICATORS), indicators, PARTITIONED_RAW_TABLES)
    resolved = catalogue.resolved(indicators)
    assert {s["group"] for s in resolved} - {None} == set(indicators.groups)
    # every agency of the crisis-information catalogue is named, from the indicators themselves
    named_agencies = {a["ko"] for s in resolved for a in s["agencies"]}
    assert set(indicators.agencies) <= named_agencies
    crisis = [s for s in resolved if s["group"] is not None]
    assert all("제12조·제12조의2" in s["legal_basis_ko"] for s in crisis)
    assert {t for s in resolved for t in s["tables"]} == set(PARTITIONED_RAW_TABLES)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["sources"].pop(1), "indicator group 'utilities' has no entry"),
        (lambda d: d["sources"][1].update(group="weather"), "unknown indicator group 'weather'"),
        (
            lambda d: d["sources"][1].update(agency_ko="한국전력공사"),
            "takes its names and agencies from the indicator catalogue",
        ),
        (lambda d: d["sources"][0].pop("legal_basis_ko"), "legal_basis_ko: Field required"),
        (lambda d: d["sources"][0].update(tables=["households"]), "'household_members'"),
        (lambda d: d["sources"][2].update(code="crisis_utilities"), "appears twice"),
    ],
)
def test_a_wrong_catalogue_is_refused_naming_file_and_entry(tmp_path, change, message):
    path = _catalogue_copy(tmp_path, change)
    with pytest.raises(ConfigError) as raised:
        load_data_sources(path, load_indicators(INDICATORS), PARTITIONED_RAW_TABLES)
    assert str(raised.value).startswith(f"{path}: ")
    assert message in str(raised.value)


def test_the_check_names_a_link_that_moved():
    """The version's link tags must be the sealed ones (pure check on a file that is intact)."""
    sha = hashlib.sha256(b"x").hexdigest()
    facts = AiFileFacts(
        "welfare-outreach v1",
        "r" * 32,
        sha,
        stored=b"x",
        version_tags={**version_tags("r" * 32, sha), VERSION_SHA_TAG: "b" * 64},
        regenerated="x",
    )
    [finding] = check_ai_file(facts)
    assert finding.status == f.FAILED
    assert finding.message == (
        f"the version's tag {VERSION_SHA_TAG} is '{'b' * 64}', the sealed record gives '{sha}'"
    )
    intact = dataclasses.replace(facts, version_tags=version_tags("r" * 32, sha))
    assert [x.status for x in check_ai_file(intact)] == [f.OK]
    [finding] = check_ai_file(dataclasses.replace(intact, report_copy=b"y"))
    assert finding.status == f.FAILED
    assert finding.message.startswith("report/ai_file.md: sha256 ")
    assert finding.message.endswith("is not the sealed AI file " + sha[:12])


# --- the file of the registered version ---------------------------------------------------------


def _manifest(scored: ScoredSample) -> dict:
    return json.loads((scored.round_dir / "manifest.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def registered(scored_sample) -> dict:
    """The round's version: its tags, the training run's sealed record and AI file (read only)."""
    import tempfile

    client = client_of(scored_sample)
    model = _manifest(scored_sample)["model"]
    run_id, name, version = model["training_run_id"], model["name"], str(model["version"])
    with tempfile.TemporaryDirectory() as tmp:
        text = Path(client.download_artifacts(run_id, AI_FILE, tmp)).read_text(encoding="utf-8")
        seal = json.loads(Path(client.download_artifacts(run_id, SEAL, tmp)).read_bytes())
        fairness = pd.read_csv(client.download_artifacts(run_id, FAIRNESS, tmp))
    return {
        "run_id": run_id,
        "tags": dict(client.get_model_version(name, version).tags),
        "text": text,
        "seal": seal,
        "fairness": fairness,
    }


def test_the_version_links_its_sealed_ai_file(registered):
    sha = hashlib.sha256(registered["text"].encode("utf-8")).hexdigest()
    assert registered["tags"][VERSION_SHA_TAG] == sha
    assert registered["tags"][VERSION_TAG] == f"runs:/{registered['run_id']}/{AI_FILE}"
    # sealed: the file's sha256 among the run's artifacts, the link among the version's tags
    assert registered["seal"]["artifacts"][AI_FILE] == sha
    assert registered["seal"]["model_version"]["tags"][VERSION_SHA_TAG] == sha


def test_every_section_is_filled_from_the_record(registered, scored_sample):
    text, seal = registered["text"], registered["seal"]
    positions = [text.index(heading) for heading in SECTIONS]
    assert positions == sorted(positions)
    assert "`?`" not in text and " ? " not in text  # no fact left unfilled

    def last(key: str) -> float:
        return seal["metrics"][key][-1][2]

    candidate = seal["params"]["training.candidate"]
    b = f"bootstrap.{candidate}."
    interval = (
        f"{last(b + 'truth_precision'):.3f} [{last(b + 'truth_precision_low'):.3f}, "
        f"{last(b + 'truth_precision_high'):.3f}]"
    )
    assert f"| 모형 `{candidate}` | {interval} |" in text
    assert f"pooled ECE {last(candidate + '.ece_pooled'):.4f}" in text

    fairness = registered["fairness"]
    flagged = int(fairness["flagged"].sum())
    assert f"경고 집단 (flagged groups): {flagged}개" in text
    assert f"작은 집단 {int(fairness['too_small'].sum())}개" in text
    assert seal["tags"]["gate.fairness"] in text
    assert seal["model_version"]["tags"]["run_id"] == registered["run_id"]

    indicators = load_indicators(INDICATORS)
    for source in load_data_sources(data_sources_path(INDICATORS), indicators).resolved(indicators):
        row = next(line for line in text.splitlines() if line.startswith(f"| {source['name_ko']}"))
        assert source["legal_basis_ko"] in row
        for agency in source["agencies"]:
            assert agency["ko"] in row

    months = scored_sample.config.retention.period_months
    assert f"`retention.period_months` = {months}" in text
    assert f"{months}개월({months // 12}년)" in text
    assert "담당 공무원이 결정합니다" in text and "자동 거절되는 것은 없습니다" in text
    assert f"학습 실행 (training run): `{registered['run_id']}`" in text


# --- the report and the audit ------------------------------------------------------------------


@pytest.fixture(scope="module")
def reported(scored_sample, tmp_path_factory) -> ScoredSample:
    """A private copy (own artifact files) with the round's report written."""
    copy = copy_outputs(scored_sample, tmp_path_factory.mktemp("ai_file"))
    own_store(copy, scored_sample)
    args = ["--no-progress", "--config", str(copy.config_file), "report"]
    assert main(args) == 0
    return copy


def test_the_report_links_the_file(reported, registered):
    report = reported.round_dir / "report"
    index = (report / "index.html").read_text(encoding="utf-8")
    link = re.search(r'<a href="([^"]+)" id="ai-file-link">', index)
    assert link is not None
    copied = report / link.group(1)
    assert copied.read_text(encoding="utf-8") == registered["text"]
    sha = registered["tags"][VERSION_SHA_TAG]
    assert sha in index
    record = json.loads((report / "report.json").read_text(encoding="utf-8"))
    assert record["files_sha256"][link.group(1)] == sha
    # what a reader clicks: the same file rendered as a page of the report, covered by its record
    page = re.search(r'<a href="([^"]+)" id="ai-file-page">', index)
    assert page is not None and page.group(1).endswith(".html")
    html = (report / page.group(1)).read_text(encoding="utf-8")
    assert '<meta charset="utf-8">' in html and sha in html
    headings = re.findall(r"^#+ (.+)$", registered["text"], flags=re.MULTILINE)
    assert len(headings) >= 10
    for heading in headings:
        assert f">{heading}</h" in html.replace("&amp;", "&")
    assert ("<table>" in html) == ("\n|" in registered["text"])
    assert page.group(1) in record["files_sha256"]


def test_the_audit_passes_then_names_a_changed_byte(reported, registered, capsys):
    code, report = audit_json(reported, capsys)
    assert code == 0, report["failed_links"]
    assert named(report, f.AI_FILE) == ""
    assert named(report, f.REPORT_PAGES) == ""

    client = client_of(reported)
    uri = client.get_run(registered["run_id"]).info.artifact_uri
    path = Path(uri.removeprefix("file://")) / AI_FILE
    data = bytearray(path.read_bytes())
    at = data.index(b" [0.") + 4  # a digit of the first interval: one byte
    data[at] = ord("9") if data[at] != ord("9") else ord("8")
    path.write_bytes(bytes(data))

    code, report = audit_json(reported, capsys)
    assert code == 1
    assert f.AI_FILE in report["failed_links"]
    said = named(report, f.AI_FILE)
    assert f"{AI_FILE} of " in said and "differs from the sealed" in said
    assert "changed after training" in said
    assert "does not match what the sealed record generates" in said
