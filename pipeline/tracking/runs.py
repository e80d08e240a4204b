"""Read-only views of the MLflow store: runs, registered versions and their artifacts.

What the audit and the report read back. Nothing here writes to the store; a store that does not
exist is reported (:func:`store_missing`), never created.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunFacts:
    """What the MLflow store holds about a run."""

    run_id: str
    status: str
    lifecycle_stage: str
    tags: Mapping[str, str] = field(default_factory=dict)
    params: Mapping[str, str] = field(default_factory=dict)
    artifact_uri: str | None = None


@dataclass(frozen=True)
class VersionFacts:
    """A registered model version as the registry holds it now."""

    name: str
    version: str
    run_id: str
    tags: Mapping[str, str] = field(default_factory=dict)


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (MLflow's are long), at most 160 characters."""
    text = str(getattr(exc, "message", exc)).strip()
    return text.splitlines()[0][:160] if text else type(exc).__name__


def store_missing(uri: str) -> str | None:
    """Why the store at ``uri`` cannot be read here (a SQLite file that does not exist), or None.

    MLflow would create an empty store on first use: callers that only read check this first.
    """
    if uri.startswith("sqlite:///"):
        db = Path(uri.removeprefix("sqlite:///"))
        if not db.is_file():
            return f"MLflow store {db} not found"
    return None


def run_facts(client: Any, run_id: str | None) -> tuple[RunFacts | None, str | None]:
    """The run's facts, or None and why not."""
    from mlflow.exceptions import MlflowException

    if not run_id:
        return None, "no run id"
    try:
        run = client.get_run(run_id)
    except MlflowException as exc:
        return None, f"not found in the MLflow store ({first_line(exc)})"
    return (
        RunFacts(
            run_id=run.info.run_id,
            status=run.info.status,
            lifecycle_stage=run.info.lifecycle_stage,
            tags=dict(run.data.tags),
            params=dict(run.data.params),
            artifact_uri=run.info.artifact_uri,
        ),
        None,
    )


def version_facts(client: Any, name: str, version: str) -> tuple[VersionFacts | None, str | None]:
    """The registered version's facts, or None and why not."""
    from mlflow.exceptions import MlflowException

    try:
        mv = client.get_model_version(name, str(version))
    except MlflowException as exc:
        return None, f"not in the model registry ({first_line(exc)})"
    return VersionFacts(str(mv.name), str(mv.version), str(mv.run_id), dict(mv.tags)), None


def artifact_bytes(run: RunFacts, path: str) -> bytes | None:
    """An artifact of the run, read from the run's artifact location; None when it is not there.

    Read by URI, not through the run (which would look up logged models on every call).
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    if not run.artifact_uri:
        return None
    with tempfile.TemporaryDirectory(prefix="outreach-artifact-") as tmp:
        try:
            local = Path(
                mlflow.artifacts.download_artifacts(
                    artifact_uri=f"{run.artifact_uri.rstrip('/')}/{path}", dst_path=tmp
                )
            )
        except (MlflowException, OSError):
            return None
        return local.read_bytes() if local.is_file() else None


def artifact_json(run: RunFacts | None, path: str) -> Any:
    """A JSON artifact of the run, parsed; None when absent or not JSON."""
    data = artifact_bytes(run, path) if run is not None else None
    if data is None:
        return None
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None


def download_run_artifact(run_id: str, path: str, tracking_uri: str | None = None) -> bytes | None:
    """The bytes of one artifact of a run, or None (logged as a warning) when it is not there
    or the store cannot be reached."""
    if tracking_uri is not None and store_missing(tracking_uri):
        return None
    import mlflow

    with tempfile.TemporaryDirectory(prefix="outreach-artifact-") as tmp:
        try:
            local = mlflow.artifacts.download_artifacts(
                run_id=run_id, artifact_path=path, dst_path=tmp, tracking_uri=tracking_uri
            )
            return Path(local).read_bytes()
        except Exception as exc:  # the store or the artifact is not reachable: the caller decides
            log.warning("%s of run %s not available: %s", path, run_id, exc)
            return None


@dataclass(frozen=True)
class RegistryState:
    """A registered model's aliases (alias -> version) and versions, as the registry holds them
    now; ``error`` says why they could not be read."""

    aliases: Mapping[str, str] = field(default_factory=dict)
    versions: tuple[str, ...] = ()
    error: str | None = None


def registry_state(client: Any, name: str) -> RegistryState:
    """The aliases and versions of registered model ``name`` now."""
    from mlflow.exceptions import MlflowException

    try:
        model = client.get_registered_model(name)
        versions = client.search_model_versions(f"name = '{name}'")
    except MlflowException as exc:
        return RegistryState(error=f"registered model {name}: {first_line(exc)}")
    aliases = {str(k): str(v) for k, v in (model.aliases or {}).items()}
    numbers = tuple(sorted((str(v.version) for v in versions), key=int))
    return RegistryState(aliases, numbers)


def training_backtests(
    client: Any, experiment: str, measures: Sequence[str]
) -> list[dict[str, Any]]:
    """Per finished training run of ``experiment`` and test round of its backtests: the values
    of the per-round backtest metrics ``bt.<list>.<measure>`` for every ``measure`` given.

    One dict per (run, test round, list): run_id, window_end (the run's data window end), round
    (``YYYY-MM``), list (a candidate, the rule, ...), and one key per measure (NaN if absent).
    """
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return []
    rows: list[dict[str, Any]] = []
    for run in client.search_runs(
        [found.experiment_id], filter_string="attributes.status = 'FINISHED'"
    ):
        rounds = [r for r in run.data.params.get("test_rounds", "").split(",") if r]
        if not rounds:
            continue
        lists = sorted(
            {
                key.split(".")[1]
                for key in run.data.metrics
                if key.startswith("bt.") and key.count(".") >= 2
            }
        )
        for name in lists:
            values: dict[str, dict[int, float]] = {}
            for measure in measures:
                key = f"bt.{name}.{measure}"
                if key in run.data.metrics:
                    history = client.get_metric_history(run.info.run_id, key)
                    values[measure] = {m.step: m.value for m in history}
            if not values:
                continue
            for step, label in enumerate(rounds):
                rows.append(
                    {
                        "run_id": run.info.run_id,
                        "window_end": run.data.params.get("window.end", ""),
                        "round": label,
                        "list": name,
                        **{m: values.get(m, {}).get(step, float("nan")) for m in measures},
                    }
                )
    return rows
