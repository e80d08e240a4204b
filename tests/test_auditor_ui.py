"""The auditor's view in MLflow (issue 16, item 6).

Without a browser: gate verdicts, descriptions and links as the train and score stages write
them on the session's scored sample. With one: the real ``mlflow server`` of ``make mlflow-ui``
(MLflow's basic-auth app, the read-only ``auditor``) on a free 127.0.0.1 port against a copy of
the scored sample, walked in Debian's headless Chromium from the scoring run to the model
version, the training run and its dataset, as docs/audit.md describes. The screenshots go to a
temporary folder, or to ``$OUTREACH_SCREENSHOTS`` (``OUTREACH_SCREENSHOTS=docs/img``) to
refresh the ones the docs show. Nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from _browser import launched_chromium, screenshot
from conftest import REPO_ROOT, copy_outputs

from pipeline.cli import main
from pipeline.io import sha256_file, short_digest
from pipeline.tracking import connect
from pipeline.tracking.auditor_server import (
    AUTHORIZATION_FUNCTION,
    auth_ini,
    is_read_request,
    prepare,
    server_command,
    server_env,
)
from pipeline.tracking.auditor_view import (
    DESCRIPTION_TAG,
    fit_markdown,
    gate_tags,
    gate_verdict,
    model_id_of,
    run_link,
    version_link,
)

pytestmark = pytest.mark.filterwarnings(
    "ignore::UserWarning", "ignore::FutureWarning", "ignore::DeprecationWarning"
)

# The UI opens in the "Model training" view, with MLflow's assistant panel closed.
UI_SETTINGS = """
window.localStorage.setItem('mlflow.workflowType_v1', '"machine_learning"');
window.localStorage.setItem('mlflow.assistant.fab.autoOpenedOnFirstLoad_v1', 'true');
window.localStorage.setItem('mlflow.assistant.panelOpen_v1', 'false');
"""
SCREENSHOTS_ENV = "OUTREACH_SCREENSHOTS"
TEMPLATE = REPO_ROOT / "configs" / "mlflow_auth.ini"


# --- pure parts --------------------------------------------------------------------------------


def _gate(name, passed, value, threshold, detail="", waived=False, reason=""):
    return {
        "name": name,
        "passed": passed,
        "value": value,
        "threshold": threshold,
        "detail": detail,
        "waived": waived,
        "waiver_reason": reason,
    }


def test_gate_verdicts_read_as_comparisons():
    assert gate_verdict(_gate("calibration", True, 0.014, 0.03)) == "passed: 0.0140 ≤ 0.0300"
    assert gate_verdict(_gate("lift_over_rule", False, 1.02, 1.1)) == "failed: 1.0200 < 1.1000"
    assert gate_verdict(_gate("fairness", True, 0.0, 0.0)) == "passed: 0 ≤ 0"
    assert gate_verdict(_gate("champion", True, 0.61, 0.6)) == "passed: 0.6100 ≥ 0.6000"
    waived = _gate("calibration", False, 0.0705, 0.03, waived=True, reason="few trees")
    assert gate_verdict(waived) == "waived: few trees (failed: 0.0705 > 0.0300)"
    noise = _gate(
        "calibration", True, 0.05, 0.03, "ECE: above the limit, but not distinguishable from noise"
    )
    assert gate_verdict(noise) == (
        "passed: 0.0500 > 0.0300; above the limit, but not distinguishable from noise"
    )
    validation = _gate("data_validation", True, None, None, "validation run X passed")
    assert gate_verdict(validation) == "passed: validation run X passed"
    assert gate_tags([validation, waived]) == {
        "gate.data_validation": "passed: validation run X passed",
        "gate.calibration": "waived: few trees (failed: 0.0705 > 0.0300)",
    }


def test_a_long_or_wide_card_keeps_every_heading_within_the_limit():
    wide = "| " + " | ".join(f"c{i}" for i in range(12)) + " |\n"
    card = (
        "# Card\n\n## Short\n\nshort text\n\n## Long\n\n"
        + "x" * 300
        + "\n\n## Wide\n\n"
        + wide
        + "\n## Last\n\nlast words\n"
    )
    fitted = fit_markdown(card, 200, "(see the artifact)")
    assert len(fitted) <= 200
    assert [line for line in fitted.splitlines() if line.startswith("## ")] == [
        "## Short",
        "## Long",
        "## Wide",
        "## Last",
    ]
    assert "short text" in fitted and "last words" in fitted and "c11" not in fitted
    assert fitted.count("(see the artifact)") == 2
    assert fit_markdown("# Card\n\n## A\n\nfits\n", 200, "p") == "# Card\n\n## A\n\nfits\n"


def test_only_reads_pass_the_auditors_guard():
    assert is_read_request("GET", "/ajax-api/2.0/mlflow/runs/get")
    assert is_read_request("POST", "/ajax-api/2.0/mlflow/runs/search")
    assert is_read_request("POST", "/graphql")
    assert is_read_request("POST", "/ajax-api/2.0/mlflow/logged-models/search")
    for path in (
        "/api/2.0/mlflow/experiments/create",
        "/api/2.0/mlflow/registered-models/create",
        "/api/2.0/mlflow/runs/set-tag",
        "/api/2.0/mlflow/model-versions/update",
    ):
        assert not is_read_request("POST", path)
    assert not is_read_request("DELETE", "/api/2.0/mlflow/registered-models/alias")
    assert not is_read_request("PATCH", "/api/2.0/mlflow/registered-models/update")


def test_the_auth_template_holds_no_secret_and_reads_by_default(tmp_path):
    template = TEMPLATE.read_text(encoding="utf-8")
    assert "admin_password" not in template.replace("# ", "").split("[mlflow]", 1)[1].replace(
        "MLFLOW_AUTH_ADMIN_PASSWORD", ""
    )
    text = auth_ini(template + "admin_password = leaked\n", tmp_path / "auth.db")
    assert "leaked" not in text and "default_permission = READ" in text
    assert f"database_uri = sqlite:///{(tmp_path / 'auth.db').resolve()}" in text
    assert f"authorization_function = {AUTHORIZATION_FUNCTION}" in text
    command = server_command("mlflow", tmp_path, 5123)
    assert command[command.index("--host") + 1] == "127.0.0.1"
    assert command[command.index("--app-name") + 1] == "basic-auth"


def test_prepare_creates_the_users_once_and_keeps_the_passwords_private(tmp_path):
    from mlflow.server.auth.sqlalchemy_store import SqlAlchemyStore

    root = tmp_path / "mlflow"
    with pytest.raises(FileNotFoundError, match="no MLflow store"):
        prepare(root, TEMPLATE, env={})
    root.mkdir()
    (root / "mlflow.db").touch()
    first = prepare(root, TEMPLATE, env={"OUTREACH_AUDITOR_PASSWORD": "given-password-123"})
    assert first.created and first.auditor_password == "given-password-123"
    assert (root / "auth").stat().st_mode & 0o777 == 0o700
    assert first.credentials.stat().st_mode & 0o777 == 0o600
    again = prepare(root, TEMPLATE, env={})
    assert not again.created and again.auditor_password == first.auditor_password
    first.credentials.unlink()  # lost: new passwords, given to the users already there
    fresh = prepare(root, TEMPLATE, env={})
    assert fresh.created and fresh.auditor_password != first.auditor_password
    store = SqlAlchemyStore()
    store.init_db(f"sqlite:///{root / 'auth' / 'basic_auth.db'}")
    assert store.authenticate_user("auditor", fresh.auditor_password)
    assert not store.authenticate_user("auditor", first.auditor_password)
    assert not store.get_user("auditor").is_admin and store.get_user("admin").is_admin
    store.engine.dispose()


# --- what the stages wrote, read back without a browser -----------------------------------------


@pytest.fixture(scope="module")
def recorded(scored_sample):
    """The scored sample's round manifest, scoring and training runs and model version."""
    client = connect(scored_sample.config)
    manifest_file = scored_sample.round_dir / "manifest.json"
    manifest = json.loads(manifest_file.read_text(encoding="utf-8"))
    model = manifest["model"]
    version = client.get_model_version(model["name"], model["version"])
    training = client.get_run(model["training_run_id"])
    scoring = client.get_run(manifest["scoring_run"]["run_id"])
    folders = Path(client.download_artifacts(training.info.run_id, "lineage/feature_folders.json"))
    return {
        "client": client,
        "manifest": manifest,
        "manifest_sha256": sha256_file(manifest_file),
        "version": version,
        "training": training,
        "scoring": scoring,
        "folders": json.loads(folders.read_text(encoding="utf-8")),
    }


def test_runs_and_version_carry_the_card_and_the_gates(recorded):
    version, training = recorded["version"], recorded["training"]
    experiment, run_id = training.info.experiment_id, training.info.run_id
    card = training.data.tags[DESCRIPTION_TAG]
    assert card.startswith("# Model card: ") and "## Promotion" in card
    assert len(card) <= 8000
    assert version.description.startswith(
        f"Trained in [run {run_id}]({run_link(experiment, run_id)})"
    )
    assert "# Model card: " in version.description and len(version.description) <= 5000
    verdicts = gate_tags(json.loads(version.tags["gates"]))
    assert set(verdicts) >= {"gate.data_validation", "gate.calibration", "gate.fairness"}
    assert {k: v for k, v in version.tags.items() if k.startswith("gate.")} == verdicts
    assert {k: v for k, v in training.data.tags.items() if k.startswith("gate.")} == verdicts
    assert all(v.split(":")[0] in ("passed", "failed", "waived") for v in verdicts.values())


def test_the_scoring_run_links_its_model_version_and_training_run(recorded):
    manifest, scoring, version = recorded["manifest"], recorded["scoring"], recorded["version"]
    training = recorded["training"]
    text = scoring.data.tags[DESCRIPTION_TAG]
    name, number = manifest["model"]["name"], manifest["model"]["version"]
    assert text.startswith(f"## Round {manifest['round']}: scored with {name} version {number}")
    assert f"]({version_link(name, number)})" in text
    assert f"]({run_link(training.info.experiment_id, training.info.run_id)})" in text
    assert recorded["manifest_sha256"] in text
    assert f"{manifest['counts']['scored']:,}" in text
    # MLflow 3's model input: the logged model behind the registered version
    assert [m.model_id for m in scoring.inputs.model_inputs] == [model_id_of(version)]


def test_dataset_digests_are_the_ones_the_audit_prints(recorded):
    manifest, scoring, training = recorded["manifest"], recorded["scoring"], recorded["training"]
    (features,) = scoring.inputs.dataset_inputs
    assert features.dataset.digest == short_digest(manifest["features"]["manifest_sha256"])
    digests = {d.dataset.name: d.dataset.digest for d in training.inputs.dataset_inputs}
    as_of = training.data.tags["outreach.as_of"]
    assert digests.pop(f"training_as_of_{as_of}") == short_digest(
        training.data.tags["outreach.features_digest"]
    )
    assert len(digests) == 3
    for name, digest in digests.items():
        month = name.removeprefix("test_")
        assert digest == short_digest(recorded["folders"][month]["manifest_sha256"])


# --- the real server, in a real browser --------------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _request(url: str, user: str | None = None, password: str = "", body: dict | None = None):
    """(status, text) of a GET, or a POST of ``body`` as JSON, with basic auth when ``user``."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method="POST" if data else "GET")
    request.add_header("Content-Type", "application/json")
    if user:
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


@pytest.fixture(scope="module")
def ui(scored_sample, tmp_path_factory):
    """``make mlflow-ui`` on a copy of the scored sample: (url, access, copy, audit output)."""
    scored = copy_outputs(scored_sample, tmp_path_factory.mktemp("auditor-ui"))
    out_lines: list[str] = []
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["--no-progress", "--config", str(scored.config_file), "audit"])
    out_lines = out.getvalue().splitlines()
    assert code == 0, out.getvalue()
    root = Path(scored.config.paths.output_root) / "mlflow"
    access = prepare(root, TEMPLATE, env={})
    port = _free_port()
    command = server_command(str(Path(sys.executable).with_name("mlflow")), root, port)
    log = (root / "server.log").open("wb")
    process = subprocess.Popen(
        command,
        env=server_env(access, os.environ),
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its workers too are ended with its process group
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                status, _ = _request(f"{url}/health")
                if status == 200:
                    break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(
                    f"the MLflow server did not start:\n{(root / 'server.log').read_text()}"
                )
            time.sleep(0.3)
        yield url, access, scored, out_lines
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()


def test_the_auditor_reads_everything_and_changes_nothing(ui):
    url, access, scored, _ = ui
    api = f"{url}/api/2.0/mlflow"
    manifest = json.loads((scored.round_dir / "manifest.json").read_text(encoding="utf-8"))
    name, version = manifest["model"]["name"], manifest["model"]["version"]
    run_id = manifest["model"]["training_run_id"]
    assert _request(f"{api}/experiments/search?max_results=10")[0] == 401  # no anonymous view
    auditor = (access.auditor, access.auditor_password)
    assert access.auditor == "auditor" and access.credentials.stat().st_mode & 0o777 == 0o600
    reads = [
        f"{api}/experiments/search?max_results=10",
        f"{api}/runs/get?run_id={run_id}",
        f"{api}/registered-models/search",
        f"{api}/model-versions/get?name={name}&version={version}",
        f"{api}/artifacts/list?run_id={run_id}",
        f"{url}/get-artifact?path=model_card.md&run_uuid={run_id}",
    ]
    for read in reads:
        status, text = _request(read, *auditor)
        assert status == 200, (read, text[:300])
    client = connect(scored.config)
    before = client.get_run(run_id).data.tags
    writes = {
        "runs/set-tag": {"run_id": run_id, "key": "gate.calibration", "value": "passed"},
        "model-versions/set-tag": {"name": name, "version": version, "key": "k", "value": "v"},
        "registered-models/alias": {"name": name, "alias": "champion", "version": version},
        "experiments/create": {"name": "not-by-an-auditor"},
        "registered-models/create": {"name": "not-by-an-auditor"},
    }
    for endpoint, body in writes.items():
        status, text = _request(f"{api}/{endpoint}", *auditor, body=body)
        assert status == 403, (endpoint, status, text[:300])
    assert client.get_experiment_by_name("not-by-an-auditor") is None
    assert client.get_run(run_id).data.tags == before


@pytest.fixture(scope="module")
def browser():
    yield from launched_chromium()


def _printed(audit_lines: list[str], link: str) -> str:
    (line,) = [line for line in audit_lines if line.split()[1:3] == link.split()[:2]]
    return line


def test_the_auditor_walks_from_the_round_to_model_data_and_checks(ui, browser, tmp_path):
    url, access, scored, audit_lines = ui
    shots = Path(os.environ.get(SCREENSHOTS_ENV) or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    manifest = json.loads((scored.round_dir / "manifest.json").read_text(encoding="utf-8"))
    model = manifest["model"]
    name, number, training_id = model["name"], model["version"], model["training_run_id"]
    features_digest = short_digest(manifest["features"]["manifest_sha256"])
    tags = connect(scored.config).get_model_version(name, number).tags
    gates = {k: v for k, v in tags.items() if k.startswith("gate.")}
    assert len(gates) == 5
    training_digest = short_digest(model["training_features_digest"])
    # the digests the pages show are the ones `outreach audit` printed
    assert f"manifest sha256 {features_digest}" in _printed(audit_lines, "scoring features")
    assert f"digest {training_digest}" in _printed(audit_lines, "training data")
    assert f"features digest {training_digest}" in _printed(audit_lines, "training run")

    context = browser.new_context(
        http_credentials={"username": access.auditor, "password": access.auditor_password},
        viewport={"width": 1440, "height": 900},
        locale="en-US",
    )
    context.add_init_script(UI_SETTINGS)
    requests: list[str] = []
    context.on("request", lambda request: requests.append(request.url))
    context.route(
        "**/*",
        lambda route: route.continue_() if route.request.url.startswith(url) else route.abort(),
    )
    context.set_default_timeout(60_000)  # a page takes 5-15 s on a busy two-core machine

    def shot(page, name: str) -> None:
        """A screenshot of the window, in 256 colours (a fifth of the bytes, as legible)."""
        from PIL import Image

        path = shots / name
        screenshot(page, path)
        with Image.open(path) as image:
            small = image.convert("RGB").quantize(256)
        small.save(path, optimize=True)

    def follow(page, name: str, href: str) -> None:
        """The link the page shows, followed in the same tab (MLflow opens Markdown links in a
        new one, which would load the whole UI again)."""
        link = page.get_by_role("link", name=name).first
        assert link.get_attribute("href") == href
        page.goto(f"{url}/{href}")

    try:
        # 1. the scoring run of the round: its description names the model version
        page = context.new_page()
        scoring = manifest["scoring_run"]
        page.goto(f"{url}/{run_link(scoring['experiment_id'], scoring['run_id'])}")
        page.get_by_text(f"Round {manifest['round']}: scored with").first.wait_for()
        page.get_by_text(f"({features_digest})").first.wait_for()
        body = page.inner_text("body")
        assert f"{name} version {number}" in body and features_digest in body
        assert f"features_as_of_{manifest['round']} ({features_digest})" in body
        shot(page, "audit_1_scoring_run.png")

        # 2. the link to the registered version: its description is the model card
        follow(page, f"{name} version {number}", version_link(name, number))
        page.get_by_text("Model card: ").first.wait_for()
        page.get_by_text("@ champion").first.wait_for()
        assert f"Version {number}" in page.inner_text("body")
        shot(page, "audit_2_model_version.png")
        page.get_by_text("gate.calibration").first.scroll_into_view_if_needed()
        page.get_by_text("gate.lift_over_rule").first.scroll_into_view_if_needed()
        text = page.inner_text("body")
        for key, verdict in gates.items():
            assert key in text and verdict in text, key
        shot(page, "audit_3_version_gates.png")

        # 3. the training run: the same card, its gates, its datasets with the audit's digests
        experiment = connect(scored.config).get_run(training_id).info.experiment_id
        follow(page, f"run {training_id}", run_link(experiment, training_id))
        page.get_by_text("Model card: ").first.wait_for()
        dataset = page.get_by_text(f"({training_digest})").first
        dataset.wait_for()
        text = page.inner_text("body")
        assert "gate.calibration" in text and "train " in text
        shot(page, "audit_4_training_run.png")
        dataset.click()
        page.get_by_text("Digest:").first.wait_for()
        assert training_digest in page.inner_text("body")
        shot(page, "audit_5_training_dataset.png")
    finally:
        context.close()
    outside = [r for r in requests if not r.startswith(url) and not r.startswith("data:")]
    assert outside == []
