"""Pure checks of the MLflow records: the ``scoring run``, ``model version`` and ``training run``
links.

Facts in, findings out: the round manifest, the runs and the registered version as the store
holds them now (:class:`~pipeline.tracking.runs.RunFacts`,
:class:`~pipeline.tracking.runs.VersionFacts`), and the digests of the manifest artifact and of
the model file (gathered by :mod:`pipeline.audit.facts`). Owns which tags and params of a run
must repeat what the manifest records.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pipeline.audit.findings import (
    MODEL,
    SCORING_MANIFEST_ARTIFACT,
    SCORING_RUN,
    TRAINING_RUN,
    Finding,
    dig,
    result,
    short,
)
from pipeline.datasets.rounds import MANIFEST as MANIFEST_FILE
from pipeline.tracking.runs import RunFacts, VersionFacts


def _run_state(run: RunFacts, what: str) -> list[str]:
    problems = []
    if run.lifecycle_stage != "active":
        problems.append(f"{what} {run.run_id} was {run.lifecycle_stage} in MLflow")
    if run.status != "FINISHED":
        problems.append(f"{what} {run.run_id} has status {run.status}, not FINISHED")
    return problems


def _same(problems: list[str], what: str, recorded: Any, expected: Any, source: str) -> None:
    if str(recorded) != str(expected):
        problems.append(f"{what} is {recorded!r} in {source}, the manifest says {expected!r}")


def check_scoring_run(
    manifest: Mapping[str, Any],
    manifest_sha: str,
    run: RunFacts | None,
    lookup_error: str | None,
    artifact_sha: str | None,
) -> list[Finding]:
    """The scoring run exists, finished, and recorded exactly this manifest and this model."""
    run_id = dig(manifest, "scoring_run.run_id")
    if not run_id:
        return [result(SCORING_RUN, ["the manifest names no scoring run"], "")]
    if run is None:
        return [result(SCORING_RUN, [f"scoring run {run_id}: {lookup_error or 'not found'}"], "")]
    problems = _run_state(run, "scoring run")
    recorded = run.tags.get("outreach.manifest_sha256")
    if recorded != manifest_sha:
        problems.append(
            f"{MANIFEST_FILE} sha256 {short(manifest_sha)} differs from the scoring run's "
            f"outreach.manifest_sha256 {short(recorded)}: the manifest was changed after scoring"
        )
    if artifact_sha is None:
        problems.append(f"scoring run {run_id} holds no {SCORING_MANIFEST_ARTIFACT} artifact")
    elif artifact_sha != manifest_sha:
        problems.append(
            f"{MANIFEST_FILE} differs from the scoring run's artifact "
            f"{SCORING_MANIFEST_ARTIFACT} (sha256 {short(artifact_sha)})"
        )
    source = "scoring run tag"
    pairs = {
        "outreach.stage": "score",
        "outreach.as_of": manifest.get("round"),
        "outreach.model_name": dig(manifest, "model.name"),
        "outreach.model_version": dig(manifest, "model.version"),
        "outreach.model_run_id": dig(manifest, "model.training_run_id"),
        "outreach.model_file_sha256": dig(manifest, "model.file_sha256"),
    }
    for tag, expected in pairs.items():
        _same(problems, tag, run.tags.get(tag), expected, source)
    _same(
        problems,
        "config_sha256",
        run.params.get("config_sha256"),
        dig(manifest, "config.sha256"),
        "scoring run param",
    )
    return [
        result(
            SCORING_RUN,
            problems,
            f"run {run_id} (FINISHED) recorded manifest sha256 {short(manifest_sha)}, the model "
            "and the config digest",
        )
    ]


def check_model(
    manifest: Mapping[str, Any],
    version: VersionFacts | None,
    lookup_error: str | None,
    model_file: tuple[str, str] | None,
    fetch_error: str | None,
) -> list[Finding]:
    """The version exists, belongs to the training run, and its file is the one that scored.

    ``model_file`` is the file behind the version now: (path in its artifacts, sha256).
    """
    name, number = dig(manifest, "model.name"), dig(manifest, "model.version")
    label = f"{name} v{number}"
    if not name or not number:
        return [result(MODEL, ["the manifest names no model version"], "")]
    if version is None:
        return [result(MODEL, [f"{label}: {lookup_error or 'not in the registry'}"], "")]
    problems: list[str] = []
    run_id = dig(manifest, "model.training_run_id")
    if version.run_id != run_id:
        problems.append(
            f"{label} belongs to run {version.run_id}, the manifest says training run {run_id}"
        )
    for tag, key in (
        ("run_id", "model.training_run_id"),
        ("as_of", "model.training_as_of"),
        ("features_digest", "model.training_features_digest"),
    ):
        _same(
            problems,
            f"{label} tag {tag}",
            version.tags.get(tag),
            dig(manifest, key),
            "the registry",
        )
    if model_file is None:
        problems.append(f"{label}: model file not readable: {fetch_error or 'unknown error'}")
    else:
        path, sha = model_file
        recorded = dig(manifest, "model.file_sha256")
        if sha != recorded:
            problems.append(
                f"{label}: the model file {path} has sha256 {short(sha)}, the round was scored "
                f"with {short(recorded)}: the model behind this version was replaced"
            )
        if path != dig(manifest, "model.file"):
            problems.append(
                f"{label}: model file is {path}, the manifest says {dig(manifest, 'model.file')}"
            )
    sha = short(model_file[1]) if model_file else "?"
    return [
        result(
            MODEL,
            problems,
            f"{label} ({dig(manifest, 'model.chosen_by')}) from run {run_id}, file "
            f"{dig(manifest, 'model.file')} sha256 {sha}",
        )
    ]


def check_training_run(
    manifest: Mapping[str, Any],
    run: RunFacts | None,
    lookup_error: str | None,
    version: VersionFacts | None,
) -> list[Finding]:
    """The training run finished and recorded the features digest the model version carries."""
    run_id = dig(manifest, "model.training_run_id")
    if not run_id:
        return [result(TRAINING_RUN, ["the manifest names no training run"], "")]
    if run is None:
        return [result(TRAINING_RUN, [f"training run {run_id}: {lookup_error or 'not found'}"], "")]
    problems = _run_state(run, "training run")
    digest = run.tags.get("outreach.features_digest")
    _same(
        problems,
        "outreach.features_digest",
        digest,
        dig(manifest, "model.training_features_digest"),
        "the training run",
    )
    if version is not None and version.tags.get("features_digest") != digest:
        problems.append(
            f"features digest {short(digest)} of the training run differs from the version's "
            f"{short(version.tags.get('features_digest'))}"
        )
    _same(problems, "outreach.stage", run.tags.get("outreach.stage"), "train", "the training run")
    _same(
        problems,
        "outreach.model_version",
        run.tags.get("outreach.model_version"),
        dig(manifest, "model.version"),
        "the training run",
    )
    _same(
        problems,
        "outreach.as_of",
        run.tags.get("outreach.as_of"),
        dig(manifest, "model.training_as_of"),
        "the training run",
    )
    return [
        result(
            TRAINING_RUN,
            problems,
            f"run {run_id} (FINISHED) trained as of {run.tags.get('outreach.as_of')}, "
            f"features digest {short(digest)}",
        )
    ]
