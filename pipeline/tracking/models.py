"""The registered model's files: its pickle (bytes and sha256), loading it, its input columns
(from its signature), and files of its training run (downloaded through MLflow)."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

from models.candidates import CalibratedClassifier
from pipeline.errors import DataError
from pipeline.tracking.names import FEATURE_FOLDERS, TRAINING_IMPORTANCE
from pipeline.tracking.registry import ModelRef
from pipeline.tracking.runs import download_run_artifact, first_line

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelFile:
    """The registered model's pickle, as bytes, and its sha256.

    Workers unpickle the bytes themselves: the parent process never runs LightGBM (its OpenMP
    thread pool is not safe to fork), and the manifest can name the exact model file.
    """

    data: bytes
    sha256: str
    path: str  # inside the model's artifacts


def fetch_model(ref: ModelRef) -> ModelFile:
    """Download the registered model's files and read its pickle (no unpickling here)."""
    import tempfile

    import mlflow

    with tempfile.TemporaryDirectory(prefix="outreach-model-") as tmp:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=ref.uri, dst_path=tmp))
        pickles = sorted(local.rglob("*.pkl"))
        if len(pickles) != 1:
            raise DataError(f"{ref.uri}: expected one pickled model file, found {len(pickles)}")
        data = pickles[0].read_bytes()
        relative = pickles[0].relative_to(local).as_posix()
    return ModelFile(data, hashlib.sha256(data).hexdigest(), relative)


def fetch_importance(ref: ModelRef) -> bytes | None:
    """The training run's ``feature_importance.csv`` (kept with the round for its report)."""
    return download_run_artifact(ref.run_id, TRAINING_IMPORTANCE)


def model_input_names(ref: ModelRef) -> list[str] | None:
    """The input columns of the registered version, from its MLflow signature (the ``MLmodel``
    file only: no model is loaded); None when it was registered without one.

    ``Model.load``, not ``get_model_info``: the latter also fetches the logged model's metrics
    (2,600 of them after a training with backtests: 0.2 s of every score command at 1 M)."""
    from mlflow.exceptions import MlflowException
    from mlflow.models import Model

    try:
        signature = Model.load(ref.uri).signature
    except (MlflowException, OSError) as exc:
        raise DataError(
            f"{ref.uri}: cannot read the model's signature ({first_line(exc)})"
        ) from None
    inputs = signature.inputs if signature is not None else None
    return None if inputs is None else [str(name) for name in inputs.input_names()]


def training_feature_spec(ref: ModelRef, tracking_uri: str | None = None) -> str | None:
    """The feature spec digest (``feature_spec_sha256``) of the feature folder the version was
    trained as of, as its training run recorded it (``lineage/feature_folders.json``); None when
    the run did not record one."""
    data = download_run_artifact(ref.run_id, FEATURE_FOLDERS, tracking_uri)
    if data is None or ref.as_of is None:
        return None
    try:
        folders = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    entry = folders.get(ref.as_of) if isinstance(folders, dict) else None
    digest = entry.get("feature_spec_sha256") if isinstance(entry, dict) else None
    return str(digest) if digest else None


def unpickle_model(model: ModelFile) -> CalibratedClassifier:
    """The model object from its pickle (the classes come from this package)."""
    import cloudpickle

    loaded = cloudpickle.loads(model.data)
    if not isinstance(loaded, CalibratedClassifier):
        raise DataError(f"model file: expected a CalibratedClassifier, got {type(loaded).__name__}")
    return loaded


def set_threads(model: CalibratedClassifier, threads: int) -> None:
    """Threads LightGBM may use in this process (the engine already runs partitions in parallel)."""
    base = model.estimator_
    if hasattr(base, "set_params") and "n_jobs" in base.get_params():
        base.set_params(n_jobs=threads)
