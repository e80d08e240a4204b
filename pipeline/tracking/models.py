"""The registered model's files: its pickle (bytes and sha256), loading it, and files of its
training run (downloaded through MLflow)."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

from models.candidates import CalibratedClassifier
from pipeline.errors import DataError
from pipeline.tracking.names import TRAINING_IMPORTANCE
from pipeline.tracking.registry import ModelRef
from pipeline.tracking.runs import download_run_artifact

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
