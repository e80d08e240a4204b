"""The chain of links as data: :data:`CHAIN`, in chain order (docs/audit.md).

list file -> round manifest -> list rows -> report pages -> scoring run -> model version ->
training run -> training data -> scoring features -> staged tables -> validation -> validation
files -> raw inputs -> code version -> re-score.

Each :class:`Link` names its check (facts in, findings out) and the facts it cannot be checked
without (:class:`Need`). A link whose need is missing is not checked: it is ``skipped`` with
why, or, for the MLflow store, ``failed``. Needs are facts, not the verdicts of earlier links:
a link that failed does not stop the next one when the facts it needs are there (a deleted
training run is still read back, and its data checked), so that every broken link shows at once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pipeline.audit import (
    checks,
    checks_ai_file,
    checks_files,
    checks_lineage,
    checks_mlflow,
    checks_rescore,
)
from pipeline.audit.facts import Facts
from pipeline.audit.findings import (
    AI_FILE,
    CODE,
    LEDGER,
    LIST_FILE,
    LIST_ROWS,
    MANIFEST,
    MODEL,
    RAW_INPUTS,
    REPORT_PAGES,
    RESCORE,
    SCORING_FEATURES,
    SCORING_RUN,
    SCORING_SEAL,
    STAGED_TABLES,
    TRAINING_DATA,
    TRAINING_RUN,
    TRAINING_SEAL,
    VALIDATION,
    VALIDATION_FILES,
    Finding,
    result,
    skipped,
)
from pipeline.datasets.rounds import SCORES
from pipeline.io import sha256_of_json

# --- what a link needs -----------------------------------------------------------------------


@dataclass(frozen=True)
class Need:
    """A fact a link cannot be checked without: ``missing(facts)`` says why it is not there
    (None: it is). The link is then skipped with that reason, or failed when ``fails``."""

    name: str
    missing: Callable[[Facts], str | None]
    fails: bool = False


ROUND_MANIFEST = Need("round manifest", lambda f: f.without_manifest)
MLFLOW_STORE = Need("MLflow store", lambda f: f.store_missing, fails=True)
TRAINING_RECORD = Need(
    "training run",
    lambda f: None if f.training_run[0] is not None else "the training run is not there",
)
MODEL_OBJECT = Need(
    "model object",
    lambda f: (
        None
        if f.model.model is not None
        else f"{f.model_label} {f.model.load_error or 'could not be loaded'}"
    ),
)
SCORES_READ = Need(
    "scores", lambda f: None if f.scores is not None else f"{SCORES} could not be read"
)


# --- each link's check, on the facts ---------------------------------------------------------


def _list_file(f: Facts) -> list[Finding]:
    assert f.list_relative is not None
    return checks_files.check_list_file(
        f.list_relative, f.list_sha256, f.manifest_files, f.target.given, _returned(f)
    )


def _returned(f: Facts) -> checks_files.Returned | None:
    """What an office changed in the audited list, when it could be read with the scores."""
    rows = f.lists.get(f.list_relative or "")
    if rows is None or f.scores is None:
        return None
    filled, added = checks_files.returned_rows(rows, f.selection_names)
    problems = checks_files.list_row_problems(
        {f.list_relative: rows}, f.scores, f.round_label, f.selection_names
    )
    return checks_files.Returned(filled, added, rows_intact=not problems)


def _round_manifest(f: Facts) -> list[Finding]:
    if f.manifest_problem:
        return [result(MANIFEST, [f.manifest_problem], "")]
    return checks_files.check_round_files(
        f.manifest_files, f.round_files, f.round_label, f.round_dir.name, f.path_problems
    )


def _list_rows(f: Facts) -> list[Finding]:
    return checks_files.check_list_rows(
        f.lists, f.scores, f.round_label, f.selection_names, f.scores_error, f.unreadable_lists
    )


def _report_pages(f: Facts) -> list[Finding]:
    return checks_files.check_report_pages(f.report, f.manifest_sha256, f.round_label)


def _scoring_run(f: Facts) -> list[Finding]:
    run, error = f.scoring_run
    return checks_mlflow.check_scoring_run(
        f.manifest, f.manifest_sha256, run, error, f.scoring_artifact_sha256
    )


def _model_version(f: Facts) -> list[Finding]:
    version, error = f.version
    file = f.model.file
    return checks_mlflow.check_model(
        f.manifest,
        version,
        error,
        (file.path, file.sha256) if file else None,
        f.model.fetch_error,
    )


def _training_run(f: Facts) -> list[Finding]:
    run, error = f.training_run
    return checks_mlflow.check_training_run(f.manifest, run, error, f.version[0])


def _training_data(f: Facts) -> list[Finding]:
    run = f.training_run[0]
    assert run is not None
    recorded, folders = f.training_folders
    return checks.check_training_data(
        run.tags.get("outreach.features_digest"), recorded, folders, sha256_of_json
    )


def _scoring_features(f: Facts) -> list[Finding]:
    return checks.check_scoring_features(f.manifest, f.scoring_folder)


def _staged_tables(f: Facts) -> list[Finding]:
    return checks_files.check_staged_tables(f.manifest, f.staged)


def _validation(f: Facts) -> list[Finding]:
    return checks.check_validation(f.manifest, f.validation)


def _validation_files(f: Facts) -> list[Finding]:
    return checks_files.check_validation_files(
        f.validation.record_path, f.validation.record, f.validation_run_files
    )


def _raw_inputs(f: Facts) -> list[Finding]:
    return checks_files.check_raw_inputs(
        f.manifest.get("raw_inputs_sha256"), f.raw_files, f.raw_dir.as_posix()
    )


def _code_version(f: Facts) -> list[Finding]:
    return checks.check_code(f.commits, f.commits_exist)


def _rescore(f: Facts) -> list[Finding]:
    compared, selection, errors = f.rescored
    return checks_rescore.check_rescore(
        compared, selection, f.config.scoring.audit_tolerance, f.model_label, errors
    )


def _scoring_seal(f: Facts) -> list[Finding]:
    return checks_lineage.check_seal(SCORING_SEAL, "scoring", f.scoring_seal)


def _training_seal(f: Facts) -> list[Finding]:
    return checks_lineage.check_seal(TRAINING_SEAL, "training", f.training_seal)


def _ledger(f: Facts) -> list[Finding]:
    return checks_lineage.check_ledger(
        f.ledger, f.manifest, f.manifest_sha256, f.registry, f.report_record_sha256
    )


# --- the chain -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Link:
    """One link of the chain: its name, its check, the facts it needs (in the order their
    absence is reported); ``lists_only``: checked only when a list file is audited."""

    name: str
    check: Callable[[Facts], list[Finding]]
    needs: tuple[Need, ...] = ()
    lists_only: bool = False


CHAIN: tuple[Link, ...] = (
    Link(LIST_FILE, _list_file, needs=(ROUND_MANIFEST,), lists_only=True),
    Link(MANIFEST, _round_manifest),  # fails itself when the manifest cannot be read
    Link(LIST_ROWS, _list_rows, needs=(ROUND_MANIFEST,)),
    Link(REPORT_PAGES, _report_pages, needs=(ROUND_MANIFEST,)),
    Link(SCORING_RUN, _scoring_run, needs=(ROUND_MANIFEST, MLFLOW_STORE)),
    Link(SCORING_SEAL, _scoring_seal, needs=(ROUND_MANIFEST, MLFLOW_STORE)),
    Link(MODEL, _model_version, needs=(ROUND_MANIFEST, MLFLOW_STORE)),
    Link(TRAINING_RUN, _training_run, needs=(ROUND_MANIFEST, MLFLOW_STORE)),
    Link(TRAINING_SEAL, _training_seal, needs=(ROUND_MANIFEST, MLFLOW_STORE)),
    Link(AI_FILE, checks_ai_file.ai_file_link, needs=(ROUND_MANIFEST, MLFLOW_STORE)),
    Link(TRAINING_DATA, _training_data, needs=(ROUND_MANIFEST, MLFLOW_STORE, TRAINING_RECORD)),
    Link(SCORING_FEATURES, _scoring_features, needs=(ROUND_MANIFEST,)),
    Link(STAGED_TABLES, _staged_tables, needs=(ROUND_MANIFEST,)),
    Link(VALIDATION, _validation, needs=(ROUND_MANIFEST,)),
    Link(VALIDATION_FILES, _validation_files, needs=(ROUND_MANIFEST,)),
    Link(RAW_INPUTS, _raw_inputs, needs=(ROUND_MANIFEST,)),
    Link(CODE, _code_version, needs=(ROUND_MANIFEST,)),
    Link(LEDGER, _ledger, needs=(ROUND_MANIFEST,)),
    Link(RESCORE, _rescore, needs=(ROUND_MANIFEST, MODEL_OBJECT, SCORES_READ)),
)
LINK_NAMES: tuple[str, ...] = tuple(link.name for link in CHAIN)


def applies(link: Link, facts: Facts) -> bool:
    """Whether the link is part of this audit (the list file link only when a list is given)."""
    return not link.lists_only or facts.target.list_file is not None


def check_link(link: Link, facts: Facts) -> list[Finding]:
    """The link's findings: its check's, or skipped (failed) on the first need that is missing."""
    for need in link.needs:
        why = need.missing(facts)
        if why:
            return [result(link.name, [why], "") if need.fails else skipped(link.name, why)]
    return link.check(facts)
