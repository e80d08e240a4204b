"""The tracking room: all MLflow access of the stages (store, experiments, runs, code version).

The registry (versions, aliases, champion moves) is in :mod:`pipeline.tracking.registry`, the
registered model's files in :mod:`pipeline.tracking.models`. Stages call these; ``features/``
and ``models/`` never reach MLflow.

Nothing here runs at import time. ``import mlflow`` happens inside the functions, after the CLI
(or the tests' conftest) switched telemetry off.
"""

from __future__ import annotations

import json
import logging
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

from pipeline.config import Config
from pipeline.datasets import OutputLayout

log = logging.getLogger(__name__)

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


def ensure_experiment(client: Any, config: Config, name: str | None = None) -> str:
    """The id of experiment ``name`` (default: the training experiment), created with an
    explicit artifact location when missing."""
    name = name or config.training.experiment
    existing = client.get_experiment_by_name(name)
    if existing is not None:
        return existing.experiment_id
    return client.create_experiment(name, artifact_location=artifact_root(config))


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
