"""MLflow plumbing for the stage wrappers: store, experiment, code version, registry aliases.

Nothing here runs at import time. ``import mlflow`` happens inside the functions, after the CLI
(or the tests' conftest) switched telemetry off.
"""

from __future__ import annotations

import json
import logging
import platform
import subprocess
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from pipeline.config import Config
from pipeline.datasets import OutputLayout
from pipeline.errors import UsageError

log = logging.getLogger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"
HISTORY_TAG = "champion_history"  # registered-model tag: versions that held the alias, in order
PACKAGES = ("pandas", "numpy", "pyarrow", "scikit-learn", "lightgbm", "mlflow", "pydantic")


def tracking_uri(config: Config) -> str:
    """The configured URI, else the embedded SQLite store under ``<output_root>/mlflow``."""
    if config.training.tracking_uri:
        return config.training.tracking_uri
    db = (OutputLayout(config.paths.output_root).mlflow / "mlflow.db").resolve()
    return f"sqlite:///{db}"


def artifact_root(config: Config) -> str:
    return (OutputLayout(config.paths.output_root).mlflow / "artifacts").resolve().as_uri()


def connect(config: Config) -> Any:
    """Point MLflow at the configured store; return a client. Creates the folder if local."""
    import mlflow

    uri = tracking_uri(config)
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)


def ensure_experiment(client: Any, config: Config) -> str:
    """The experiment id, created with an explicit artifact location when missing."""
    existing = client.get_experiment_by_name(config.training.experiment)
    if existing is not None:
        return existing.experiment_id
    return client.create_experiment(
        config.training.experiment, artifact_location=artifact_root(config)
    )


def code_version(repo: Path | None = None) -> dict[str, str]:
    """Git commit and dirty flag of the code (read-only git commands), or ``unknown``."""
    repo = repo or Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, check=True
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=repo,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        return {"git_commit": commit, "git_dirty": str(bool(status.strip())).lower()}
    except (OSError, subprocess.CalledProcessError):
        return {"git_commit": "unknown", "git_dirty": "unknown"}


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def pip_requirements() -> list[str]:
    """Explicit requirements of the logged model (inference is slow and includes test tools)."""
    names = ("pandas", "numpy", "scikit-learn", "lightgbm", "cloudpickle", "pyarrow")
    out = []
    for name in names:
        try:
            out.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    return out


def flatten(data: Any, prefix: str = "") -> dict[str, str]:
    """Nested mappings to ``a.b.c`` keys with JSON-encoded leaves (MLflow params)."""
    out: dict[str, str] = {}
    if isinstance(data, dict):
        for key, value in data.items():
            out.update(flatten(value, f"{prefix}{key}."))
        return out
    text = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False, default=str)
    out[prefix.rstrip(".")] = text[:6000]
    return out


@dataclass(frozen=True)
class AliasMove:
    """One move of the champion alias."""

    action: str  # gates, promote, rollback
    version: str
    previous: str | None
    reason: str


def current_champion(client: Any, model_name: str) -> Any | None:
    """The model version holding the champion alias, or None."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(model_name, CHAMPION)
    except MlflowException:
        return None


def champion_history(client: Any, model_name: str) -> list[str]:
    model = client.get_registered_model(model_name)
    text = model.tags.get(HISTORY_TAG, "")
    return [v for v in text.split(",") if v]


def move_champion(
    client: Any, config: Config, model_name: str, version: str, action: str, reason: str
) -> AliasMove:
    """Give ``version`` the champion alias, record the move in the registry and as a run."""
    import mlflow

    previous = current_champion(client, model_name)
    previous_version = str(previous.version) if previous is not None else None
    client.set_registered_model_alias(model_name, CHAMPION, version)
    history = champion_history(client, model_name)
    if action == "rollback" and history and history[-1] == previous_version:
        history = history[:-1]
    if not history or history[-1] != version:
        history.append(version)
    client.set_registered_model_tag(model_name, HISTORY_TAG, ",".join(history))
    client.set_model_version_tag(model_name, version, "champion_reason", reason)
    client.set_model_version_tag(model_name, version, "champion_action", action)
    client.delete_model_version_tag(model_name, version, "challenger_reason")
    move = AliasMove(action, version, previous_version, reason)
    experiment_id = ensure_experiment(client, config)
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"{action} v{version}"):
        mlflow.set_tags(
            {
                "outreach.action": action,
                "outreach.model_name": model_name,
                "outreach.version": version,
                "outreach.previous_champion": previous_version or "",
                "outreach.reason": reason,
            }
        )
    log.info("champion of %s: %s -> %s (%s)", model_name, previous_version, version, action)
    return move


def promote(client: Any, config: Config, version: str, reason: str) -> AliasMove:
    """``outreach promote VERSION --reason TEXT``: move the alias by hand."""
    from mlflow.exceptions import MlflowException

    name = config.training.model_name
    try:
        client.get_model_version(name, version)
    except MlflowException:
        raise UsageError(f"promote: model {name} has no version {version}") from None
    return move_champion(client, config, name, version, "promote", reason)


def rollback(client: Any, config: Config, reason: str) -> AliasMove:
    """``outreach rollback --reason TEXT``: give the alias back to the previous champion."""
    from mlflow.exceptions import MlflowException

    name = config.training.model_name
    try:
        history = champion_history(client, name)
    except MlflowException:
        raise UsageError(f"rollback: no registered model {name}") from None
    if len(history) < 2:
        raise UsageError(f"rollback: model {name} has no earlier champion to return to")
    return move_champion(client, config, name, history[-2], "rollback", reason)
