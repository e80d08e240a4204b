"""Sealed records: everything an auditor relies on about a run, in one canonical JSON.

At the end of a training or scoring run, :func:`seal_run` reads back what the MLflow store now
holds about the run (its info, params, tags, the full history of every metric, its dataset
inputs, the sha256 of every artifact) and, for a training run, about the model version it
registered (its run, source, description, tags and the sha256 of every file of the model), and
writes it as the artifact ``seal/seal.json``. Its sha256 is tagged on the run
(``outreach.seal_sha256``) and the version (``seal_sha256``), and recorded in the ledger, the
round manifest and the report. The audit builds the same record from the store again
(:func:`run_record`) and names every fact that differs from the sealed one.

Left out, because the project's own commands change them after the seal: the seal tags
themselves, and a version's tags that move with the aliases (``champion_reason``,
``champion_action``, ``challenger_reason``): the ledger records those moves.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import sqlite3
import tempfile
from pathlib import Path
from typing import Any

from pipeline.io import sha256_tree
from pipeline.tracking.names import SEAL, SEAL_DIR

log = logging.getLogger(__name__)

FORMAT = "outreach-seal/1"
RUN_TAG = "outreach.seal_sha256"
VERSION_TAG = "seal_sha256"
MOVING_VERSION_TAGS = frozenset(
    {"champion_reason", "champion_action", "challenger_reason", VERSION_TAG}
)


def _value(value: float) -> float | str:
    """A metric value as JSON keeps it comparable: NaN and infinities as text (NaN != NaN)."""
    return value if math.isfinite(value) else repr(value)


def _ordered(rows: list[list[Any]]) -> list[list[Any]]:
    return sorted(rows, key=lambda r: (r[0], r[1], repr(r[2])))


def api_metric_histories(client: Any, run_id: str, keys: list[str]) -> dict[str, list[list[Any]]]:
    """Every logged value of every metric through MLflow's API: ``[step, timestamp, value]``,
    ordered. One query per metric: about a millisecond each on an idle machine, 2,000 metrics
    for a training run."""
    out = {}
    for key in keys:
        history = client.get_metric_history(run_id, key)
        out[key] = _ordered([[m.step, m.timestamp, _value(m.value)] for m in history])
    return out


def sqlite_metric_histories(db: Path, run_id: str) -> dict[str, list[list[Any]]]:
    """The same histories read in one query from a SQLite store's ``metrics`` table, opened
    read-only (MLflow's schema: NaN is stored as 0 with ``is_nan``). Hundreds of times faster
    than one API call per metric; :func:`api_metric_histories` gives the same result (a test
    compares them on a real store)."""
    uri = f"{db.resolve().as_uri()}?mode=ro"
    with contextlib.closing(sqlite3.connect(uri, uri=True)) as con:
        rows = con.execute(
            "SELECT key, step, timestamp, value, is_nan FROM metrics WHERE run_uuid = ?",
            (run_id,),
        ).fetchall()
    out: dict[str, list[list[Any]]] = {}
    for key, step, timestamp, value, is_nan in rows:
        out.setdefault(key, []).append(
            [int(step), int(timestamp), _value(float("nan") if is_nan else float(value))]
        )
    return {key: _ordered(history) for key, history in sorted(out.items())}


def _metric_histories(client: Any, run_id: str, keys: list[str]) -> dict[str, list[list[Any]]]:
    uri = str(client.tracking_uri)
    if uri.startswith("sqlite:///"):
        db = Path(uri.removeprefix("sqlite:///"))
        if db.is_file():
            return sqlite_metric_histories(db, run_id)
    return api_metric_histories(client, run_id, keys)


def _tree_digests(uri: str) -> dict[str, str]:
    """sha256 of every file under an artifact URI (downloaded to a temporary folder)."""
    import mlflow

    with tempfile.TemporaryDirectory(prefix="outreach-seal-") as tmp:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=tmp))
        return sha256_tree(local) if local.is_dir() else {local.name: _file_sha256(local)}


def _file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _datasets(run: Any) -> list[dict[str, Any]]:
    out = []
    for item in run.inputs.dataset_inputs if run.inputs else []:
        ds = item.dataset
        out.append(
            {
                "name": ds.name,
                "digest": ds.digest,
                "source_type": ds.source_type,
                "source": ds.source,
                "schema": ds.schema,
                "profile": ds.profile,
                "tags": {t.key: t.value for t in item.tags},
            }
        )
    return sorted(out, key=lambda d: json.dumps(d, sort_keys=True))


def version_record(client: Any, name: str, version: str) -> dict[str, Any]:
    """A registered version as the registry holds it now, with its model files' sha256."""
    mv = client.get_model_version(name, str(version))
    return {
        "name": str(mv.name),
        "version": str(mv.version),
        "run_id": str(mv.run_id),
        "source": str(mv.source),
        "status": str(mv.status),
        "description": mv.description or "",
        "tags": {k: v for k, v in mv.tags.items() if k not in MOVING_VERSION_TAGS},
        "files_sha256": _tree_digests(f"models:/{name}/{version}"),
    }


def run_record(client: Any, run_id: str, model: tuple[str, str] | None = None) -> dict[str, Any]:
    """Everything the store holds now about run ``run_id`` (and the version it registered)."""
    run = client.get_run(run_id)
    info = run.info
    artifacts = _tree_digests(info.artifact_uri) if info.artifact_uri else {}
    record: dict[str, Any] = {
        "format": FORMAT,
        "run": {
            "run_id": info.run_id,
            "experiment_id": info.experiment_id,
            "name": info.run_name,
            "status": info.status,
            "lifecycle_stage": info.lifecycle_stage,
            "start_time": info.start_time,
            "end_time": info.end_time,
        },
        "params": dict(run.data.params),
        "tags": {k: v for k, v in run.data.tags.items() if k != RUN_TAG},
        "metrics": _metric_histories(client, run_id, sorted(run.data.metrics)),
        "datasets": _datasets(run),
        "artifacts": {k: v for k, v in artifacts.items() if not k.startswith(f"{SEAL_DIR}/")},
    }
    if model is not None:
        from mlflow.exceptions import MlflowException

        try:
            record["model_version"] = version_record(client, *model)
        except MlflowException:  # deleted: the audit says the sealed version is gone
            record["model_version"] = None
    return record


def seal_text(record: dict[str, Any]) -> str:
    """The canonical text of a sealed record (keys sorted, one fact per line, UTF-8)."""
    return json.dumps(record, sort_keys=True, ensure_ascii=False, indent=1) + "\n"


def seal_run(client: Any, run_id: str, model: tuple[str, str] | None = None) -> str:
    """Seal a finished run: write ``seal/seal.json``, tag its sha256 on the run (and on the
    version ``model`` = (name, version) it registered); return the sha256."""
    text = seal_text(run_record(client, run_id, model))
    sha = hashlib.sha256(text.encode("utf-8")).hexdigest()
    client.log_text(run_id, text, SEAL)
    client.set_tag(run_id, RUN_TAG, sha)
    if model is not None:
        client.set_model_version_tag(model[0], model[1], VERSION_TAG, sha)
    log.info("sealed run %s: %s", run_id, sha[:12])
    return sha


def read_seal(client: Any, run_id: str) -> tuple[bytes | None, str | None]:
    """The sealed record's bytes as the run keeps them, or None and why not."""
    from mlflow.exceptions import MlflowException

    try:
        run = client.get_run(run_id)
    except MlflowException as exc:
        return None, f"run {run_id} not found ({str(exc).splitlines()[0][:120]})"
    import mlflow

    with tempfile.TemporaryDirectory(prefix="outreach-seal-") as tmp:
        try:
            local = Path(
                mlflow.artifacts.download_artifacts(
                    artifact_uri=f"{run.info.artifact_uri.rstrip('/')}/{SEAL}", dst_path=tmp
                )
            )
        except (MlflowException, OSError):
            return None, f"run {run_id} holds no {SEAL}"
        return local.read_bytes(), None
