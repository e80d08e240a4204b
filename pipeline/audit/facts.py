"""The facts the audit compares, gathered once: the round folder, MLflow and git.

Owns every fact of one audit (it changes nothing), read through :mod:`pipeline.audit.readers`
(files), :mod:`pipeline.tracking` (MLflow) and ``git``:

- the round folder: its ``manifest.json``, the sha256 of its files, its list files (CSV, or XLSX
  read back as the CSV shows it) and the columns of ``scores.parquet`` the lists show;
- the feature folders and the validation record under the configured output root;
- the configured MLflow store, read only, through :mod:`pipeline.tracking` (runs, the registered
  version, artifacts, the model file); a store that does not exist is reported, never created;
- ``git``: whether a recorded commit exists in this repository.

:class:`Facts` holds them for one audit; each fact is gathered when a link first asks for it
(:mod:`pipeline.audit.chain`), then kept, so that no file is hashed and no run fetched twice.
The model file is fetched and unpickled here (:func:`model_facts`), and commits looked up with
``git`` (:func:`commit_exists`).
"""

from __future__ import annotations

import hashlib
import logging
import re
import subprocess
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from pipeline.audit.checks import FolderFacts, ValidationFacts
from pipeline.audit.checks_files import (
    ReportFacts,
    StagedFacts,
    load_json_text,
    manifest_path_problems,
    unsafe_path,
)
from pipeline.audit.checks_lineage import seal_places
from pipeline.audit.facts_lineage import (
    SealFacts,
    registered_entries,
    round_entries,
    seal_facts,
)
from pipeline.audit.findings import (
    FEATURE_FOLDERS_ARTIFACT,
    RAW_FILES_ARTIFACT,
    SCORING_MANIFEST_ARTIFACT,
    VALIDATION_ARTIFACT,
    dig,
)
from pipeline.audit.readers import (
    folder_facts,
    raw_facts,
    read_list,
    read_scores,
    report_facts,
    round_files,
    selection_names,
    staged_facts,
    under_root,
    validation_facts,
    validation_run_files,
)
from pipeline.audit.rescore import Selection, choose_rows, rescore, scope
from pipeline.audit.target import AuditTarget
from pipeline.config import Config
from pipeline.datasets import OutputLayout
from pipeline.datasets.rounds import (
    LIST_SUFFIXES,
    LISTS,
    MANIFEST,
    REPORT,
    REPORT_RECORD,
    SCORES,
)
from pipeline.io import sha256_file
from pipeline.lineage.ledger import Ledger
from pipeline.lineage.ledger import read as read_ledger
from pipeline.tracking import connect, tracking_uri
from pipeline.tracking.registry import ModelRef
from pipeline.tracking.runs import (
    RegistryState,
    RunFacts,
    VersionFacts,
    artifact_bytes,
    artifact_json,
    first_line,
    registry_state,
    run_facts,
    store_missing,
    version_facts,
)
from pipeline.tracking.seal import VERSION_TAG as VERSION_SEAL_TAG

if TYPE_CHECKING:
    from pipeline.tracking.models import ModelFile

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]
# From this many re-scored rows on, feature partitions are read whole (faster than a key filter).
WHOLE_PARTITIONS_FROM = 5_000


# --- MLflow: the model file ------------------------------------------------------------------


@dataclass(frozen=True)
class ModelFacts:
    """The file behind a registered version now, or why it cannot be fetched; the model object,
    or why it cannot be loaded (``load_error`` None with no model: there was no version)."""

    file: ModelFile | None = None
    fetch_error: str | None = None
    model: Any = None
    load_error: str | None = None


def model_facts(version: VersionFacts) -> ModelFacts:
    """Fetch the version's model file and unpickle it (one thread), as ``outreach score`` does."""
    from pipeline.tracking.models import fetch_model, set_threads, unpickle_model

    ref = ModelRef(version.name, version.version, version.run_id, None, None, None)
    try:
        model_file = fetch_model(ref)
    except Exception as exc:  # MLflow, DataError, OSError: the model link says why
        return ModelFacts(fetch_error=first_line(exc), load_error="could not be fetched")
    try:
        model = unpickle_model(model_file)
        set_threads(model, 1)
    except Exception as exc:  # a replaced file may not even unpickle: report, do not crash
        log.debug("model of %s does not load", ref.uri, exc_info=True)
        return ModelFacts(model_file, load_error=f"does not load: {first_line(exc)}")
    return ModelFacts(model_file, model=model)


# --- git -------------------------------------------------------------------------------------


def commit_exists(commit: str, repo: Path = REPO) -> bool | None:
    """True/False, or None when git (or the repository) is not available here."""
    if not re.fullmatch(r"[0-9a-fA-F]{7,64}", commit):
        return False
    try:
        inside = subprocess.run(
            ["git", "rev-parse", "--is-inside-work-tree"],
            cwd=repo,
            capture_output=True,
            text=True,
            check=False,
        )
        if inside.returncode != 0:
            return None
        found = subprocess.run(
            ["git", "cat-file", "-e", f"{commit}^{{commit}}"],
            cwd=repo,
            capture_output=True,
            check=False,
        )
    except OSError:
        return None
    return found.returncode == 0


# --- the facts of one audit ------------------------------------------------------------------


class Facts:
    """Everything the links of one audit compare, each gathered on first use and then kept.

    The manifest's facts are only asked for when it was read (links that need it are skipped
    otherwise, :attr:`without_manifest`); MLflow's only when the store exists
    (:attr:`store_missing`).
    """

    def __init__(
        self,
        config: Config,
        target: AuditTarget,
        sample_size: int | None = None,
        full: bool = False,
    ):
        self.config = config
        self.target = target
        self.sample_size = sample_size or config.scoring.audit_sample
        self.full = full  # re-score every row the sample is drawn from, not a sample
        self.root = config.paths.output_root
        self.round_dir = target.round_dir
        self.manifest_path = target.round_dir / MANIFEST
        self.tracking_uri = tracking_uri(config)
        self._folders: dict[Path, FolderFacts] = {}

    # --- the round manifest

    @cached_property
    def _manifest_read(self) -> tuple[dict[str, Any] | None, str | None]:
        if not self.manifest_path.is_file():
            return None, f"{self.manifest_path}: {MANIFEST} missing"
        text = self.manifest_path.read_text(encoding="utf-8", errors="replace")
        manifest, error = load_json_text(text)
        return manifest, None if manifest is not None else f"{self.manifest_path}: {error}"

    @property
    def manifest_problem(self) -> str | None:
        """Why the round manifest cannot be read (missing, not JSON), or None."""
        return self._manifest_read[1]

    @property
    def without_manifest(self) -> str | None:
        """Why the links that need the manifest are not checked, or None when it was read."""
        if not self.manifest_path.is_file():
            return "the round has no manifest"
        return "the manifest cannot be read" if self.manifest_problem else None

    @property
    def manifest(self) -> dict[str, Any]:
        manifest = self._manifest_read[0]
        if manifest is None:  # a link that needs the manifest ran without it
            raise RuntimeError(f"audit: {self.manifest_problem}")
        return manifest

    @cached_property
    def manifest_sha256(self) -> str:
        return sha256_file(self.manifest_path)

    @property
    def round_label(self) -> str | None:
        """The round the manifest records (else its folder's name); None without a manifest."""
        if self.without_manifest:
            return None
        return str(self.manifest.get("round") or self.round_dir.name)

    @property
    def recorded_tracking_uri(self) -> str | None:
        return None if self.without_manifest else dig(self.manifest, "scoring_run.tracking_uri")

    @property
    def manifest_files(self) -> dict[str, str]:
        return self.manifest.get("files_sha256") or {}

    @property
    def model_label(self) -> str:
        return f"{dig(self.manifest, 'model.name')} v{dig(self.manifest, 'model.version')}"

    # --- the round's files and lists

    @cached_property
    def round_files(self) -> dict[str, str]:
        return round_files(self.round_dir)

    @cached_property
    def list_relative(self) -> str | None:
        """The audited list's path in the round; a copy kept outside it is found by name."""
        list_file = self.target.list_file
        if list_file is None or self.target.list_relative is not None:
            return self.target.list_relative
        matches = [k for k in self.manifest_files if k.rsplit("/", 1)[-1] == list_file.name]
        return matches[0] if len(matches) == 1 else f"{LISTS}/?/{list_file.name}"

    @cached_property
    def list_sha256(self) -> str:
        assert self.target.list_file is not None
        return sha256_file(self.target.list_file)

    @cached_property
    def _lists(self) -> tuple[dict[str, pd.DataFrame], dict[str, str]]:
        if self.target.list_file is not None:
            to_read = {self.list_relative: self.target.list_file}
        else:  # a round: every list of the manifest, CSV and XLSX (unsafe paths not followed)
            to_read = {
                name: self.round_dir / name
                for name in sorted(self.manifest_files)
                if name.startswith(f"{LISTS}/")
                and name.endswith(LIST_SUFFIXES)
                and not unsafe_path(name)
                and (self.round_dir / name).is_file()
            }
        lists, unreadable = {}, {}
        for name, path in to_read.items():
            try:
                lists[name] = read_list(path)
            except Exception as exc:  # a damaged CSV or workbook is a finding, not a crash
                unreadable[name] = first_line(exc)
        return lists, unreadable

    @property
    def lists(self) -> dict[str, pd.DataFrame]:
        """The lists read (path in the round -> rows as text with column keys)."""
        return self._lists[0]

    @property
    def unreadable_lists(self) -> dict[str, str]:
        """Lists that could not be parsed, and why."""
        return self._lists[1]

    @cached_property
    def _scores(self) -> tuple[pd.DataFrame | None, str | None]:
        if not (self.round_dir / SCORES).is_file():
            return None, f"{self.round_dir / SCORES}: missing"
        try:
            return read_scores(self.round_dir), None
        except (OSError, ValueError, KeyError) as exc:
            return None, f"{SCORES}: not readable ({first_line(exc)})"

    @property
    def scores(self) -> pd.DataFrame | None:
        return self._scores[0]

    @property
    def scores_error(self) -> str | None:
        return self._scores[1]

    @cached_property
    def selection_names(self) -> dict[str, set[str]]:
        return selection_names(self.config)

    # --- MLflow

    @cached_property
    def store_missing(self) -> str | None:
        """Why the configured store cannot be read here (it is never created), or None."""
        return store_missing(self.tracking_uri)

    @cached_property
    def _client(self) -> Any:
        if self.store_missing:  # connecting would create an empty store
            raise RuntimeError(f"audit: {self.store_missing}")
        return connect(self.config)

    @cached_property
    def scoring_run(self) -> tuple[RunFacts | None, str | None]:
        """The manifest's scoring run, or None and why not."""
        return run_facts(self._client, dig(self.manifest, "scoring_run.run_id"))

    @cached_property
    def scoring_artifact_sha256(self) -> str | None:
        """sha256 of the scoring run's copy of the manifest; None when it holds none."""
        run = self.scoring_run[0]
        data = artifact_bytes(run, SCORING_MANIFEST_ARTIFACT) if run else None
        return hashlib.sha256(data).hexdigest() if data is not None else None

    @cached_property
    def version(self) -> tuple[VersionFacts | None, str | None]:
        """The manifest's model version as the registry holds it now, or None and why not."""
        name, number = dig(self.manifest, "model.name"), dig(self.manifest, "model.version")
        if not name or not number:
            return None, None
        return version_facts(self._client, str(name), str(number))

    @cached_property
    def model(self) -> ModelFacts:
        """The model file and object behind the version now (nothing without a version or a
        store)."""
        if self.store_missing:
            return ModelFacts()
        version = self.version[0]
        return model_facts(version) if version is not None else ModelFacts()

    @cached_property
    def training_run(self) -> tuple[RunFacts | None, str | None]:
        """The manifest's training run (None and why not; None, None without a store)."""
        if self.store_missing:
            return None, None
        return run_facts(self._client, dig(self.manifest, "model.training_run_id"))

    @cached_property
    def training_folders(self) -> tuple[Any, dict[str, FolderFacts]]:
        """The training run's record of its feature folders, and those folders as found now
        under the configured output root (not at the paths it recorded: a copied root audits)."""
        recorded = artifact_json(self.training_run[0], FEATURE_FOLDERS_ARTIFACT)
        layout = OutputLayout(self.root)
        folders = {}
        for month in recorded or {}:
            folder = layout.features(month)
            folders[month] = self._folder(folder, folder.relative_to(layout.root).as_posix())
        return recorded, folders

    # --- the seals and the ledger (pipeline.tracking.seal, pipeline.lineage)

    @cached_property
    def ledger(self) -> Ledger:
        return read_ledger(self.root)

    @cached_property
    def registry(self) -> RegistryState | None:
        """The registered model's aliases and versions now (None without a store)."""
        if self.store_missing or not dig(self.manifest, "model.name"):
            return None
        return registry_state(self._client, str(dig(self.manifest, "model.name")))

    @cached_property
    def report_record_sha256(self) -> str | None:
        """sha256 of the round's ``report/report.json``; None when no report was written."""
        path = self.round_dir / REPORT / REPORT_RECORD
        return sha256_file(path) if path.is_file() else None

    def _ledger_fact(self, event_entries: list[dict], key: str) -> str | None:
        return (event_entries[-1].get("facts") or {}).get(key) if event_entries else None

    @cached_property
    def scoring_seal(self) -> SealFacts:
        run, _ = self.scoring_run
        scored = round_entries(self.ledger.entries, str(self.round_label))
        places = seal_places(
            run.tags if run else None,
            {"the ledger's `round scored` entry": self._ledger_fact(scored, "scoring_seal_sha256")},
        )
        return seal_facts(self._client, str(dig(self.manifest, "scoring_run.run_id")), None, places)

    @cached_property
    def training_seal(self) -> SealFacts:
        run, _ = self.training_run
        version, _ = self.version
        name = str(dig(self.manifest, "model.name"))
        number = str(dig(self.manifest, "model.version"))
        registered = registered_entries(self.ledger.entries, name, number)
        scored = round_entries(self.ledger.entries, str(self.round_label))
        places = seal_places(
            run.tags if run else None,
            {
                f"the version's tag {VERSION_SEAL_TAG}": version.tags.get(VERSION_SEAL_TAG)
                if version
                else None,
                "the round manifest": dig(self.manifest, "model.training_seal_sha256"),
                "the ledger's `model registered` entry": self._ledger_fact(
                    registered, "seal_sha256"
                ),
                "the ledger's `round scored` entry": self._ledger_fact(
                    scored, "training_seal_sha256"
                ),
            },
        )
        run_id = str(dig(self.manifest, "model.training_run_id"))
        return seal_facts(self._client, run_id, (name, number), places)

    # --- the output root and git

    def _folder(self, folder: Path, shown_as: str) -> FolderFacts:
        """:func:`folder_facts`, hashed once per folder (the round's feature folder is usually
        one of the training run's too)."""
        key = folder.resolve()
        if key not in self._folders:
            self._folders[key] = folder_facts(folder, shown_as)
        found = self._folders[key]
        return FolderFacts(shown_as, found.manifest_sha256, found.files_sha256)

    @cached_property
    def features_dir(self) -> Path | None:
        """The round's feature folder; None when the manifest's path is not followed."""
        return under_root(self.root, dig(self.manifest, "features.folder"))

    @cached_property
    def scoring_folder(self) -> FolderFacts:
        shown = str(dig(self.manifest, "features.folder") or "features folder")
        if self.features_dir is None:
            return FolderFacts(shown, None)
        return self._folder(self.features_dir, shown)

    @cached_property
    def path_problems(self) -> list[str]:
        """Paths the manifest records that are absolute or leave the output root."""
        return manifest_path_problems(self.manifest)

    @cached_property
    def raw_dir(self) -> Path:
        return Path(self.config.paths.raw_input)

    @cached_property
    def raw_files(self) -> dict[str, str]:
        """sha256 of the configured raw input's files now."""
        return raw_facts(self.raw_dir)

    @cached_property
    def staged(self) -> StagedFacts:
        return staged_facts(self.root, self.manifest)

    @cached_property
    def validation_run_files(self) -> dict[str, str] | None:
        return validation_run_files(self.root, self.manifest)

    @cached_property
    def report(self) -> ReportFacts | None:
        return report_facts(self.round_dir)

    @cached_property
    def validation(self) -> ValidationFacts:
        if self.store_missing:
            training_record: Any = {"status": f"unknown: {self.store_missing}"}
            training_raw = None
        else:
            training = self.training_run[0]
            training_record = artifact_json(training, VALIDATION_ARTIFACT)
            training_raw = artifact_json(training, RAW_FILES_ARTIFACT)
        return validation_facts(self.root, self.manifest, training_record, training_raw)

    @cached_property
    def commits(self) -> dict[str, tuple[str | None, str | None]]:
        """Who recorded which commit (the scoring run in the manifest, the training run in its
        tags) -> (commit, dirty flag)."""
        manifest = self.manifest
        commits = {"scoring": (dig(manifest, "code.git_commit"), dig(manifest, "code.git_dirty"))}
        training = self.training_run[0]
        if training is not None:
            commits["training"] = (
                training.tags.get("code.git_commit"),
                training.tags.get("code.git_dirty"),
            )
        return commits

    @cached_property
    def commits_exist(self) -> dict[str, bool | None]:
        return {commit: commit_exists(commit) for commit, _ in self.commits.values() if commit}

    # --- re-score

    @cached_property
    def rescored(self) -> tuple[pd.DataFrame, Selection, list[str]]:
        """Stored and re-computed scores of the chosen rows, how they were chosen, and why a
        partition could not be scored. Needs the model object and the scores."""
        assert self.scores is not None and self.model.model is not None
        lists = self.lists if self.target.list_file is not None else None
        scoring = self.config.scoring
        selection = choose_rows(
            scope(self.scores, lists),
            scoring.audit_near_cut,
            None if self.full else self.sample_size,
            scoring.seed,
        )
        many = self.full or len(selection.rows) > WHOLE_PARTITIONS_FROM
        compared, errors = rescore(
            self.config, self.model.model, self.features_dir, selection.rows, whole=many
        )
        return compared, selection, errors
