"""Writing runs: the one place where stages start MLflow runs and log params, tags, metrics,
artifacts, datasets and models. Stages call these; they never import ``mlflow`` themselves.

Every function acts on the active run (started with :func:`start_run`), like MLflow's own
fluent API, after :func:`pipeline.tracking.connect` pointed MLflow at the configured store.
"""

from __future__ import annotations

import logging
import os
import socket
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd

from models.dataset_summary import DatasetSummary
from pipeline.config import Config
from pipeline.tracking.datasets import mlflow_digest

log = logging.getLogger(__name__)


# Tags of every run started here: the process that runs it, so that a run left RUNNING by a
# process killed outright can be found and ended as FAILED (:func:`fail_abandoned_runs`).
PID_TAG = "outreach.pid"
HOST_TAG = "outreach.host"
PROCESS_STARTED_TAG = "outreach.process_started"
FAILED_REASON_TAG = "outreach.failed_reason"


def process_tags() -> dict[str, str]:
    """The tags naming this process (pid, host, start time)."""
    import psutil

    return {
        PID_TAG: str(os.getpid()),
        HOST_TAG: socket.gethostname(),
        PROCESS_STARTED_TAG: repr(psutil.Process().create_time()),
    }


@contextmanager
def start_run(experiment_id: str, run_name: str) -> Iterator[str]:
    """A run of the experiment, active within the block; yields its run id. A block that
    raises ends the run as FAILED (MLflow's rule), so no run is left RUNNING by an error; one
    left RUNNING by a killed process is ended by the next command (:func:`fail_abandoned_runs`)."""
    import mlflow

    with mlflow.start_run(
        experiment_id=experiment_id, run_name=run_name, tags=process_tags()
    ) as run:
        yield run.info.run_id


def fail_abandoned_runs(
    client: Any, pid: int, host: str, process_started: float | None, reason: str
) -> list[str]:
    """End as FAILED every run still RUNNING that the process ``pid`` on ``host`` (started at
    ``process_started`` when known) started and never ended; tag why. Returns their ids."""
    from mlflow.entities import ViewType

    experiments = [e.experiment_id for e in client.search_experiments(view_type=ViewType.ALL)]
    if not experiments:
        return []
    query = (
        f"attributes.status = 'RUNNING' and tags.`{PID_TAG}` = '{int(pid)}' "
        f"and tags.`{HOST_TAG}` = '{host.replace(chr(39), '')}'"
    )
    ended = []
    for run in client.search_runs(experiments, filter_string=query, max_results=1000):
        started = run.data.tags.get(PROCESS_STARTED_TAG)
        if process_started is not None and started not in (None, repr(process_started)):
            continue  # another process that had the same pid
        client.set_tag(run.info.run_id, FAILED_REASON_TAG, reason)
        client.set_terminated(run.info.run_id, status="FAILED")
        ended.append(run.info.run_id)
    return ended


def log_params(params: Mapping[str, str]) -> None:
    import mlflow

    mlflow.log_params(dict(params))


def set_tags(tags: Mapping[str, str]) -> None:
    import mlflow

    mlflow.set_tags(dict(tags))


def log_metrics(values: Mapping[str, float], step: int | None = None) -> None:
    import mlflow

    mlflow.log_metrics(dict(values), step=step)


def log_artifacts(folder: Path, artifact_path: str | None = None) -> None:
    """Every file under ``folder`` as artifacts of the active run."""
    import mlflow

    mlflow.log_artifacts(str(folder), artifact_path=artifact_path)


def log_artifact(path: Path, artifact_path: str | None = None) -> None:
    import mlflow

    mlflow.log_artifact(str(path), artifact_path=artifact_path)


def log_dict(data: Any, artifact_file: str) -> None:
    import mlflow

    mlflow.log_dict(data, artifact_file)


def summary_dataset(
    summary: DatasetSummary,
    source: str,
    name: str,
    targets: str | None = None,
    digest: str | None = None,
) -> Any:
    """An MLflow pandas dataset recorded from a summary, as MLflow records the whole frame.

    MLflow walks every value in Python for the digest and the schema's "required" flags (41 s
    for 60,000 × 323; hours on a national test round). Here the digest is MLflow's own algorithm
    on the summary (the same value: :func:`pipeline.tracking.datasets.mlflow_digest`), the types
    come from the first rows, required-ness and the profile (rows, cells) from the summary's
    counts. ``digest`` replaces MLflow's digest when given (the one the audit prints).
    """
    import mlflow
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.pandas_dataset import PandasDataset
    from mlflow.types import ColSpec, Schema

    rows, cells = summary.rows, summary.rows * len(summary.columns)

    class SummarisedDataset(PandasDataset):
        @property
        def profile(self) -> dict[str, int]:
            return {"num_rows": rows, "num_elements": cells}

    head = summary.head
    dataset = SummarisedDataset(
        head,
        source=resolve_dataset_source(source),
        targets=targets,
        name=name,
        digest=digest or mlflow_digest(summary),
    )
    sample = mlflow.data.from_pandas(head.head(50), source=source, name=name).schema
    if sample is not None:
        dataset.__dict__["schema"] = Schema(
            [
                ColSpec(type=c.type, name=c.name, required=not bool(summary.missing[c.name]))
                for c in sample.inputs
            ]
        )
    return dataset


def log_summary_dataset(
    summary: DatasetSummary,
    source: str,
    name: str,
    context: str,
    tags: Mapping[str, str],
    targets: str | None = None,
    digest: str | None = None,
) -> None:
    """Record a dataset input of the active run from its summary (see :func:`summary_dataset`)."""
    import mlflow

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dataset = summary_dataset(summary, source, name, targets=targets, digest=digest)
        mlflow.log_input(dataset, context=context, tags=dict(tags))


def log_folder_dataset(
    folder: Path, name: str, digest: str, context: str, tags: Mapping[str, str]
) -> None:
    """Record a dataset input of the active run by its folder and a digest (no rows read)."""
    import mlflow
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dataset = MetaDataset(
            source=resolve_dataset_source(str(folder.resolve())), name=name, digest=digest
        )
        mlflow.log_input(dataset, context=context, tags=dict(tags))


def log_registered_model(
    model: Any,
    example: pd.DataFrame,
    text_columns: list[str],
    model_name: str,
    pip_requirements: list[str],
) -> str:
    """Log the fitted model (cloudpickle, with its signature and input example) in the active
    run and register it as a new version of ``model_name``; returns the version."""
    import mlflow
    from mlflow.models import infer_signature

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        shown = example.astype({c: "string" for c in text_columns})
        signature = infer_signature(shown, model.predict_proba(example)[:, 1])
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            serialization_format="cloudpickle",
            signature=signature,
            input_example=shown,
            pip_requirements=pip_requirements,
            pyfunc_predict_fn="predict_proba",
            registered_model_name=model_name,
        )
    return str(info.registered_model_version)


def end_abandoned_runs(
    config: Config, pid: int, host: str, process_started: float | None, reason: str
) -> list[str]:
    """:func:`fail_abandoned_runs` on the configured store; nothing when the local store does
    not exist yet (no run can be left in it), and nothing but a warning when it cannot be
    opened."""
    from pipeline.tracking import connect, tracking_uri

    uri = tracking_uri(config)
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
        return []
    try:
        return fail_abandoned_runs(connect(config), pid, host, process_started, reason)
    except Exception as exc:  # a store that cannot be read must not stop the command
        log.warning("could not end the MLflow runs left RUNNING by pid %d: %s", pid, exc)
        return []
