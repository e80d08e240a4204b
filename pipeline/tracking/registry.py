"""The model registry: versions, the ``champion`` and ``challenger`` aliases and their moves."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from pipeline.config import Config
from pipeline.errors import DataError, UsageError
from pipeline.tracking import ensure_experiment, runlog

log = logging.getLogger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"
HISTORY_TAG = "champion_history"  # registered-model tag: versions that held the alias, in order
# A shadow scoring run (`outreach score --shadow VERSION`, docs/scoring.md "Shadow mode"): its
# tags, by which the shadow-rounds gate counts a version's rounds.
SHADOW_STAGE = "shadow"  # its ``outreach.stage``
SHADOW_TAG = "outreach.shadow"  # "true"
SHADOW_GATE = "shadow_rounds"


@dataclass(frozen=True)
class ModelRef:
    """The registered model version a round is scored with."""

    name: str
    version: str
    run_id: str
    alias: str | None  # "champion" when chosen by alias
    as_of: str | None
    features_digest: str | None
    seal_sha256: str | None = None  # the training run's sealed record (pipeline.tracking.seal)

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


def resolve_model(client: Any, name: str, version: str | None) -> ModelRef:
    """The pinned version, else the champion; a clear UsageError when there is neither."""
    from mlflow.exceptions import MlflowException

    try:
        if version is not None:
            mv = client.get_model_version(name, str(version))
            alias = None
        else:
            mv = client.get_model_version_by_alias(name, CHAMPION)
            alias = CHAMPION
    except MlflowException:
        if version is not None:
            raise UsageError(f"score: model {name} has no version {version}") from None
        raise UsageError(
            f"score: model {name} has no champion: run `outreach train` (its gates must pass), "
            "`outreach promote VERSION`, or pin one with `--model-version N`"
        ) from None
    return ModelRef(
        name=name,
        version=str(mv.version),
        run_id=str(mv.run_id),
        alias=alias,
        as_of=mv.tags.get("as_of"),
        features_digest=mv.tags.get("features_digest"),
        seal_sha256=mv.tags.get("seal_sha256"),
    )


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
    with runlog.start_run(experiment_id, f"{action} v{version}"):
        runlog.set_tags(
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
    ready, why = shadow_gate(client, config, version)
    if not ready:
        raise DataError(f"promote: {why}")
    return move_champion(client, config, name, version, "promote", reason)


def shadow_rounds(client: Any, config: Config, version: str) -> list[str]:
    """The distinct rounds (YYYY-MM, in order) on which ``version`` of the registered model has
    a finished shadow scoring run in the scoring experiment."""
    experiment = client.get_experiment_by_name(config.scoring.experiment)
    if experiment is None:
        return []
    query = (
        f"tags.`{SHADOW_TAG}` = 'true' and tags.`outreach.model_name` = "
        f"'{config.training.model_name}' and tags.`outreach.model_version` = '{int(version)}' "
        "and attributes.status = 'FINISHED'"
    )
    rounds: set[str] = set()
    token = None
    while True:
        page = client.search_runs(
            [experiment.experiment_id], filter_string=query, max_results=1000, page_token=token
        )
        rounds.update(
            str(r.data.tags["outreach.as_of"]) for r in page if r.data.tags.get("outreach.as_of")
        )
        token = page.token
        if not token:
            return sorted(rounds)


def shadow_gate(client: Any, config: Config, version: str) -> tuple[bool, str]:
    """Whether ``version`` may take the champion alias as far as shadow rounds go, and why.

    It may when ``training.gates.min_shadow_rounds`` is 0, when there is no champion to be
    compared with, when it is the champion or held the alias before (its rounds were scored
    live), or when it has that many distinct rounds with a finished shadow run."""
    required = config.training.gates.min_shadow_rounds
    name = config.training.model_name
    if required == 0:
        return True, "no shadow rounds required (training.gates.min_shadow_rounds: 0)"
    champion = current_champion(client, name)
    if champion is None:
        return True, "no champion to be shadowed beside"
    if str(version) == str(champion.version) or str(version) in champion_history(client, name):
        return True, f"v{version} held the champion alias before"
    done = shadow_rounds(client, config, version)
    if len(done) >= required:
        return True, f"v{version} was scored in shadow on {len(done)} rounds ({', '.join(done)})"
    shown = f" ({', '.join(done)})" if done else ""
    return False, (
        f"v{version} has {len(done)} shadow round(s){shown}, training.gates.min_shadow_rounds "
        f"is {required}: score it beside champion v{champion.version} on {required - len(done)} "
        f"more round(s) with `outreach score --shadow {version} --as-of YYYY-MM`"
    )


def new_version_gates(config: Config, champion: Any | None) -> list[Any]:
    """The shadow-rounds gate of a version ``train`` has just registered (none yet), as a gate
    result; no gate when none is required or there is no champion (today's flows unchanged)."""
    from models.gates import GateResult

    required = config.training.gates.min_shadow_rounds
    if required == 0 or champion is None:
        return []
    return [
        GateResult(
            SHADOW_GATE,
            False,
            0.0,
            float(required),
            f"shadow rounds beside champion v{champion.version}: a new version has none; score "
            f"it with `outreach score --shadow VERSION` on {required} round(s), then "
            "`outreach promote VERSION`",
        )
    ]


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


def champion_metric(client: Any, champion: Any | None, key: str) -> float | None:
    """A metric of the run that trained the current champion (None without a champion)."""
    if champion is None or not champion.run_id:
        return None
    return client.get_run(champion.run_id).data.metrics.get(key)


def tag_version(client: Any, model_name: str, version: str, tags: dict[str, str]) -> None:
    """Set tags of a registered version, in the order given."""
    for key, value in tags.items():
        client.set_model_version_tag(model_name, version, key, value)


def mark_challenger(client: Any, model_name: str, version: str, reason: str) -> None:
    """Give ``version`` the challenger alias, with the reason it is not the champion."""
    client.set_registered_model_alias(model_name, CHALLENGER, version)
    client.set_model_version_tag(model_name, version, "challenger_reason", reason)
