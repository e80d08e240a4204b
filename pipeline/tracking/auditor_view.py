"""What an auditor reads in the MLflow UI: run and version descriptions in Markdown, gate
verdicts as readable tags, and the scoring run's link to the registered model version.

MLflow shows a run's ``mlflow.note.content`` tag and a model version's description as Markdown
on their pages, and a run's logged-model inputs and outputs with the registered versions behind
them. The text is built by the pure functions here; the thin wrappers at the end write it with
an MLflow client. See "The auditor's view in MLflow" in ``docs/audit.md``.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote

log = logging.getLogger(__name__)

DESCRIPTION_TAG = "mlflow.note.content"  # the run description the MLflow UI shows
RUN_DESCRIPTION_LIMIT = 8000  # MLflow's longest tag value (mlflow.utils.validation)
VERSION_DESCRIPTION_LIMIT = 5000  # the model_versions.description column of MLflow's stores
GATE_TAG_PREFIX = "gate."
# A Markdown table wider than this pushes the UI's run details panel off the page: such a
# section is left to the artifact.
MAX_TABLE_COLUMNS = 8
MODEL_CARD_ARTIFACT = "model_card.md"

# How each gate with a measured value passes: value <= threshold, or value >= threshold.
GATE_PASSES_BELOW = {"calibration": True, "fairness": True}
GATE_PASSES_ABOVE = {"lift_over_rule": True, "champion": True}


# --- links the MLflow UI routes (its pages live under "#/") ---------------------------------


def version_link(name: str, version: str) -> str:
    return f"#/models/{quote(name, safe='')}/versions/{quote(str(version), safe='')}"


def run_link(experiment_id: str, run_id: str) -> str:
    return f"#/experiments/{quote(str(experiment_id), safe='')}/runs/{quote(run_id, safe='')}"


def logged_model_link(experiment_id: str, model_id: str) -> str:
    return f"#/experiments/{quote(str(experiment_id), safe='')}/models/{quote(model_id, safe='')}"


# --- gate verdicts ---------------------------------------------------------------------------


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.4f}"


def _measured(value: Any) -> bool:
    return isinstance(value, int | float) and not math.isnan(float(value))


def _comparison(name: str, value: float, threshold: float) -> str:
    """``value op threshold`` with the operator that holds between them."""
    if GATE_PASSES_ABOVE.get(name):
        op = "≥" if value >= threshold else "<"
    else:
        op = "≤" if value <= threshold else ">"
    return f"{_number(value)} {op} {_number(threshold)}"


def gate_verdict(gate: Mapping[str, Any]) -> str:
    """One gate as a person reads it: ``passed: 0.0140 ≤ 0.0300``, ``failed: 1.0200 < 1.1000``,
    ``waived: <reason> (failed: 0.0705 > 0.0300)``; a gate without a measured value (data
    validation, no champion yet) shows its detail instead of the comparison."""
    name = str(gate.get("name", ""))
    passed = bool(gate.get("passed"))
    value, threshold = gate.get("value"), gate.get("threshold")
    if _measured(value) and _measured(threshold):
        measure = _comparison(name, float(value), float(threshold))
        holds = ("≤" in measure) or ("≥" in measure)
        if passed and not holds:  # passed on another ground (calibration within the noise)
            measure += "; " + str(gate.get("detail", "")).rsplit(": ", 1)[-1]
    else:
        measure = str(gate.get("detail", "")) or "no measured value"
    own = "passed" if passed else "failed"
    if gate.get("waived"):
        return f"waived: {gate.get('waiver_reason', '')} ({own}: {measure})"
    return f"{own}: {measure}"


def gate_tags(gates: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """``gate.<name>`` -> its verdict, for every gate (the training run and the version)."""
    return {f"{GATE_TAG_PREFIX}{g['name']}": gate_verdict(g) for g in gates}


# --- descriptions ----------------------------------------------------------------------------


def table_columns(section: str) -> int:
    """The most columns of a Markdown table row in ``section`` (0 without a table)."""
    rows = [line for line in section.splitlines() if line.lstrip().startswith("|")]
    return max((row.strip().strip("|").count("|") + 1 for row in rows), default=0)


def fit_markdown(text: str, limit: int, pointer: str, max_columns: int = MAX_TABLE_COLUMNS) -> str:
    """``text``'s ``## `` sections in their order: as many as fit in ``limit`` characters whole
    (the shortest first), and the others, or those with a table wider than ``max_columns``, as
    their heading followed by ``pointer`` (where the whole section is). Every heading stays."""
    head, *sections = re.split(r"(?m)^(?=## )", text)
    if len(text) <= limit and all(table_columns(s) <= max_columns for s in sections):
        return text
    stubs = [f"{s.splitlines()[0]}\n\n{pointer}\n\n" for s in sections]
    chosen = list(stubs)
    total = len(head) + sum(len(s) for s in stubs)
    for i in sorted(range(len(sections)), key=lambda i: len(sections[i])):
        section = sections[i]
        if table_columns(section) > max_columns:
            continue
        if total - len(stubs[i]) + len(section) <= limit:
            chosen[i] = section
            total += len(section) - len(stubs[i])
    fitted = head + "".join(chosen)
    if len(fitted) > limit:  # even the headings do not fit: cut, and say where the rest is
        fitted = fitted[: max(0, limit - len(pointer) - 3)] + "\n\n" + pointer
    return fitted.rstrip() + "\n"


def card_pointer(experiment_id: str, run_id: str) -> str:
    return (
        f"_Too long or too wide for this description: the whole section is in the artifact "
        f"`{MODEL_CARD_ARTIFACT}` of the [training run]({run_link(experiment_id, run_id)})._"
    )


def training_run_description(card: str, experiment_id: str, run_id: str) -> str:
    """The training run's description: the model card (sections that do not fit point to the
    run's ``model_card.md``)."""
    return fit_markdown(card, RUN_DESCRIPTION_LIMIT, card_pointer(experiment_id, run_id))


def version_description(card: str, experiment_id: str, run_id: str) -> str:
    """The registered version's description: a line naming the training run, then the card."""
    lead = f"Trained in [run {run_id}]({run_link(experiment_id, run_id)}).\n\n"
    room = VERSION_DESCRIPTION_LIMIT - len(lead)
    return lead + fit_markdown(card, room, card_pointer(experiment_id, run_id))


def _count(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) else str(value)


def scoring_run_description(
    manifest: Mapping[str, Any],
    manifest_sha256: str,
    training_experiment_id: str | None,
    dataset_digest: str,
) -> str:
    """The scoring run's description: the round, a link to the model version and the training
    run, the counts, the features digest and the manifest's sha256, and how to audit it."""
    model = manifest["model"]
    name, version = str(model["name"]), str(model["version"])
    chosen = model.get("chosen_by") or "pinned version"
    training = str(model.get("training_run_id", ""))
    trained = (
        f"[run {training}]({run_link(training_experiment_id, training)})"
        if training_experiment_id
        else f"run `{training}`"
    )
    counts = manifest.get("counts", {})
    rows = [
        ("households", "households in the round"),
        ("scored", "eligible households scored"),
        ("ineligible", "left out as ineligible"),
        ("visit", "tier visit"),
        ("phone", "tier phone"),
        ("monitor", "tier monitor"),
        ("listed", "listed (visit and phone)"),
        ("explored", "of them random exploration"),
        ("emd", "읍면동"),
        ("sigungu", "시군구"),
        ("list_files", "list files"),
    ]
    table = "\n".join(f"| {label} | {_count(counts[k])} |" for k, label in rows if k in counts)
    features = manifest.get("features", {})
    code = manifest.get("code", {})
    return (
        f"## Round {manifest['round']}: scored with {name} version {version}\n\n"
        f"- **Model**: [{name} version {version}]({version_link(name, version)}) "
        f"(chosen by: {chosen}), trained as of {model.get('training_as_of', '?')} in {trained}; "
        f"model file sha256 `{model.get('file_sha256', '')}`.\n"
        f"- **Features**: `{features.get('folder', '')}`, manifest sha256 "
        f"`{features.get('manifest_sha256', '')}` (the dataset digest `{dataset_digest}` "
        f"below is its first {len(dataset_digest)} characters).\n"
        f"- **Round manifest** sha256 `{manifest_sha256}` (the artifact `round/manifest.json`).\n"
        f"- **Code**: commit `{code.get('git_commit', 'unknown')}`"
        f" (dirty: {code.get('git_dirty', 'unknown')}).\n\n"
        f"| count | |\n|---|---:|\n{table}\n\n"
        f"Verify the round and its whole chain: `outreach audit {manifest['round']}` "
        f"(see docs/audit.md).\n"
    )


# --- writing them (thin wrappers around an MLflow client) --------------------------------------


def model_id_of(version: Any) -> str | None:
    """The logged model behind a registered version (MLflow 3): its ``model_id``, else the
    ``models:/m-…`` source it was registered from."""
    model_id = getattr(version, "model_id", None)
    if model_id:
        return str(model_id)
    source = str(getattr(version, "source", "") or "")
    if source.startswith("models:/m-"):
        return source.removeprefix("models:/").split("/", 1)[0]
    return None


def describe_training(
    client: Any,
    experiment_id: str,
    run_id: str,
    model_name: str,
    version: str,
    card: str,
    gates: Iterable[Mapping[str, Any]],
) -> None:
    """The training run's description (the card) and gate tags; the registered version's
    description (the card, after a link to the run) and the same gate tags."""
    gates = list(gates)
    verdicts = gate_tags(gates)
    client.set_tag(run_id, DESCRIPTION_TAG, training_run_description(card, experiment_id, run_id))
    for key, value in verdicts.items():
        client.set_tag(run_id, key, value)
    client.update_model_version(
        model_name, version, description=version_description(card, experiment_id, run_id)
    )
    for key, value in verdicts.items():
        client.set_model_version_tag(model_name, version, key, value)


def describe_scoring(
    client: Any, run_id: str, manifest: Mapping[str, Any], manifest_sha256: str, digest: str
) -> None:
    """The scoring run's description, and the registered version's logged model as an input of
    the run (the run page then lists the model and links its registered version)."""
    from mlflow.entities import LoggedModelInput

    model = manifest["model"]
    experiment_id = None
    try:
        experiment_id = client.get_run(model["training_run_id"]).info.experiment_id
    except Exception as exc:  # the description still names the run; the audit checks it
        log.warning("training run %s not found for the link: %s", model["training_run_id"], exc)
    text = scoring_run_description(manifest, manifest_sha256, experiment_id, digest)
    client.set_tag(run_id, DESCRIPTION_TAG, text)
    version = client.get_model_version(model["name"], str(model["version"]))
    model_id = model_id_of(version)
    if model_id is None:
        log.warning("model version %s has no logged model to link", model["version"])
        return
    try:
        client.log_inputs(run_id, models=[LoggedModelInput(model_id=model_id)])
    except Exception as exc:  # a store without model inputs: the description still links
        log.warning("the scoring run could not record model %s as an input: %s", model_id, exc)


__all__ = [
    "DESCRIPTION_TAG",
    "GATE_TAG_PREFIX",
    "describe_scoring",
    "describe_training",
    "fit_markdown",
    "gate_tags",
    "gate_verdict",
    "model_id_of",
    "scoring_run_description",
    "training_run_description",
    "version_description",
    "version_link",
]
