"""The thin I/O wrapper of ``outreach audit``: find the round, gather facts, run the checks.

The chain, in order (docs/audit.md): list file -> round manifest -> list rows -> scoring run ->
model version -> training run -> training data -> scoring features -> validation -> code
version -> re-score. Facts come from the round folder, the feature and validation folders under
the configured output root, the configured MLflow store (read only) and ``git``; the pure checks
in :mod:`pipeline.audit.checks` compare them.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.audit import checks as c
from pipeline.audit.checks import Finding, FolderFacts, RunFacts, ValidationFacts, VersionFacts
from pipeline.config import Config
from pipeline.datasets import OutputLayout, TableLayout
from pipeline.errors import UsageError
from pipeline.io import sha256_file
from pipeline.months import default_as_of, format_month, parse_month

log = logging.getLogger(__name__)

SCORES = "scores.parquet"
LIST_SUFFIXES = (".csv", ".xlsx")
MONTH = re.compile(r"^\d{4}-\d{2}$")
REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class AuditTarget:
    """What is audited: a round folder, and the list file when a list was given."""

    given: str
    round_dir: Path
    list_file: Path | None = None
    list_relative: str | None = None  # its path inside the round (None: find it by name)


@dataclass(frozen=True)
class AuditReport:
    """The findings of one audit, in chain order."""

    target: AuditTarget
    round: str | None
    tracking_uri: str
    recorded_tracking_uri: str | None
    findings: list[Finding]

    @property
    def passed(self) -> bool:
        return c.passed(self.findings)

    @property
    def failed_links(self) -> list[str]:
        return [f.link for f in self.findings if not f.passed]


# --- what is audited -------------------------------------------------------------------------


def resolve_target(config: Config, path: str | None, round_dir: Path | None = None) -> AuditTarget:
    """The round (and list) named by PATH: a round folder, a list file, the manifest, a month.

    No PATH: the round ``outreach score`` writes by default. A list file outside a round's
    ``lists/`` folder (a copy sent to an office) needs ``round_dir``. Usage errors when PATH does
    not exist or is not one of these.
    """
    layout = OutputLayout(config.paths.output_root)
    if path is None:
        folder = layout.round(format_month(default_as_of(config.window)))
        if not folder.is_dir():
            raise UsageError(f"audit: {folder} not found: score the round first or give PATH")
        return _round_target(str(folder), folder)
    p = Path(path)
    if not p.exists() and MONTH.match(path):
        try:
            parse_month(path)
        except ValueError as exc:
            raise UsageError(f"audit: {exc}") from None
        p = layout.round(path)
        if not p.is_dir():
            raise UsageError(f"audit: round {path} not found at {p}")
    if not p.exists():
        raise UsageError(f"audit: {path} not found")
    if p.is_dir():
        if round_dir is not None:
            raise UsageError("audit: --round is for a list file, not for a folder")
        return _round_target(path, p)
    if p.name == c.MANIFEST_FILE:
        return _round_target(path, p.parent)
    if p.suffix.lower() not in LIST_SUFFIXES:
        raise UsageError(
            f"audit: {path} is neither a round folder, a list (CSV/XLSX) nor a manifest"
        )
    if round_dir is not None:
        if not round_dir.is_dir():
            raise UsageError(f"audit: --round {round_dir} not found")
        return AuditTarget(path, round_dir, p, None)
    for parent in p.resolve().parents:
        if parent.name == "lists":
            root = parent.parent
            return AuditTarget(path, root, p, p.resolve().relative_to(root).as_posix())
    raise UsageError(
        f"audit: {path} is not inside a round's lists/ folder: give the round with --round DIR"
    )


def _round_target(given: str, folder: Path) -> AuditTarget:
    """A round folder: named YYYY-MM with a manifest, lists or scores, or holding a manifest
    that names a round and its scoring run (a feature folder's manifest does not)."""
    manifest = folder / c.MANIFEST_FILE
    named_like_round = bool(MONTH.match(folder.name)) and (
        manifest.is_file() or (folder / "lists").is_dir() or (folder / SCORES).is_file()
    )
    if named_like_round or _is_round_manifest(manifest):
        return AuditTarget(given, folder)
    raise UsageError(f"audit: {given} is not a round folder (rounds/YYYY-MM/ with manifest.json)")


def _is_round_manifest(path: Path) -> bool:
    if not path.is_file():
        return False
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(data, dict) and "round" in data and "scoring_run" in data


# --- facts from files ------------------------------------------------------------------------


def round_files(round_dir: Path) -> dict[str, str]:
    """sha256 of the round's files, except the manifest itself and what later stages add."""
    out = {}
    for path in sorted(round_dir.rglob("*")):
        if not path.is_file():
            continue
        name = path.relative_to(round_dir).as_posix()
        if name == c.MANIFEST_FILE or name.startswith(c.OUT_OF_MANIFEST):
            continue
        out[name] = sha256_file(path)
    return out


def folder_facts(folder: Path, shown_as: str) -> FolderFacts:
    manifest = folder / c.MANIFEST_FILE
    if not manifest.is_file():
        return FolderFacts(shown_as, None)
    files = {
        p.relative_to(folder).as_posix(): sha256_file(p)
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p != manifest
    }
    return FolderFacts(shown_as, sha256_file(manifest), files)


def read_list(path: Path) -> pd.DataFrame:
    """A list file's rows as text, with column keys (Korean or English headers mapped back)."""
    from pipeline.vocabulary import list_header_keys

    if path.suffix.lower() == ".csv":
        text = path.read_bytes().decode("utf-8-sig")
        rows = list(csv.reader(io.StringIO(text)))
    else:
        rows = _xlsx_rows(path)
    if not rows:
        return pd.DataFrame()
    keys = list_header_keys()
    columns = [keys.get(str(h).strip(), f"unknown: {h}") for h in rows[0]]
    body = [list(r) + [""] * (len(columns) - len(r)) for r in rows[1:] if any(v != "" for v in r)]
    return pd.DataFrame(body, columns=columns, dtype="object")


def _xlsx_rows(path: Path) -> list[list[str]]:
    """The first sheet's cells as text as the CSV shows them (risk with one decimal)."""
    from openpyxl import load_workbook

    book = load_workbook(path, read_only=True, data_only=True)
    try:
        sheet = book.worksheets[0]
        rows = [list(r) for r in sheet.iter_rows(values_only=True)]
    finally:
        book.close()
    if not rows:
        return []
    from pipeline.vocabulary import list_header_keys

    keys = list_header_keys()
    risk = [keys.get(str(h), "") for h in rows[0]].index("risk_percent") if rows else -1
    out = [["" if v is None else str(v) for v in rows[0]]]
    for row in rows[1:]:
        text = []
        for i, value in enumerate(row):
            if value is None:
                text.append("")
            elif i == risk and isinstance(value, int | float):
                text.append(f"{float(value):.1f}")
            elif isinstance(value, float) and value.is_integer():
                text.append(str(int(value)))
            else:
                text.append(str(value))
        out.append(text)
    return out


SCORE_COLUMNS = (
    "household_key",
    "sigungu_code",
    "emd_code",
    "score",
    "tier",
    "selection_reason",
    "list_rank",
    "reason_1_text",
    "reason_2_text",
    "reason_3_text",
)


def read_scores(round_dir: Path) -> pd.DataFrame:
    """The columns of scores.parquet that lists show and the re-score needs."""
    import pyarrow.parquet as pq

    present = set(pq.read_schema(round_dir / SCORES).names)
    frame = pd.read_parquet(round_dir / SCORES, columns=[k for k in SCORE_COLUMNS if k in present])
    text = ["household_key", "sigungu_code", "emd_code", "tier", "selection_reason"]
    return frame.assign(**{k: frame[k].astype(str) for k in text if k in frame.columns})


def selection_names(config: Config) -> dict[str, set[str]]:
    from pipeline.catalogue import load_outcomes

    outcomes = load_outcomes(config.paths.outcomes)
    return {r.code: {r.name_ko, r.name_en, r.code} for r in outcomes.selection_reasons}


def _load_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


# --- facts from MLflow -----------------------------------------------------------------------


def _store_missing(uri: str) -> str | None:
    if uri.startswith("sqlite:///"):
        db = Path(uri.removeprefix("sqlite:///"))
        if not db.is_file():
            return f"MLflow store {db} not found"
    return None


def run_facts(client: Any, run_id: str | None) -> tuple[RunFacts | None, str | None]:
    from mlflow.exceptions import MlflowException

    if not run_id:
        return None, "no run id"
    try:
        run = client.get_run(run_id)
    except MlflowException as exc:
        return None, f"not found in the MLflow store ({_first_line(exc)})"
    return (
        RunFacts(
            run_id=run.info.run_id,
            status=run.info.status,
            lifecycle_stage=run.info.lifecycle_stage,
            tags=dict(run.data.tags),
            params=dict(run.data.params),
            artifact_uri=run.info.artifact_uri,
        ),
        None,
    )


def artifact_bytes(run: RunFacts, path: str) -> bytes | None:
    """An artifact of the run, read from the run's artifact location; None when it is not there.

    Read by URI, not through the run (which would look up logged models on every call).
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    if not run.artifact_uri:
        return None
    with tempfile.TemporaryDirectory(prefix="outreach-audit-") as tmp:
        try:
            local = Path(
                mlflow.artifacts.download_artifacts(
                    artifact_uri=f"{run.artifact_uri.rstrip('/')}/{path}", dst_path=tmp
                )
            )
        except (MlflowException, OSError):
            return None
        return local.read_bytes() if local.is_file() else None


def artifact_json(run: RunFacts | None, path: str) -> Any:
    data = artifact_bytes(run, path) if run is not None else None
    if data is None:
        return None
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None


def version_facts(client: Any, name: str, version: str) -> tuple[VersionFacts | None, str | None]:
    from mlflow.exceptions import MlflowException

    try:
        mv = client.get_model_version(name, str(version))
    except MlflowException as exc:
        return None, f"not in the model registry ({_first_line(exc)})"
    return VersionFacts(str(mv.name), str(mv.version), str(mv.run_id), dict(mv.tags)), None


def _first_line(exc: Exception) -> str:
    text = str(getattr(exc, "message", exc)).strip()
    return text.splitlines()[0][:160] if text else type(exc).__name__


# --- facts from git --------------------------------------------------------------------------


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


# --- re-score --------------------------------------------------------------------------------


def choose_sample(candidates: pd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    """A deterministic sample of ``n`` rows: half from the listed tiers, the rest from all others.

    Listed households are what offices act on, so they are always represented; the draw depends
    only on the rows (in household-key order), ``n`` and the seed.
    """
    from pipeline.vocabulary import PHONE, VISIT

    frame = candidates.sort_values("household_key", kind="stable").reset_index(drop=True)
    if len(frame) <= n:
        return frame
    rng = np.random.default_rng(seed)
    listed = np.flatnonzero(frame["tier"].isin([VISIT, PHONE]).to_numpy())
    other = np.flatnonzero(~frame["tier"].isin([VISIT, PHONE]).to_numpy())
    take_listed = min(len(listed), n // 2 if len(other) else n)
    take_other = min(len(other), n - take_listed)
    take_listed = min(len(listed), n - take_other)
    chosen = np.concatenate(
        [
            rng.choice(listed, size=take_listed, replace=False),
            rng.choice(other, size=take_other, replace=False),
        ]
    )
    return frame.iloc[np.sort(chosen)].reset_index(drop=True)


def rescore(
    config: Config, model: Any, features_dir: Path, sample: pd.DataFrame
) -> tuple[pd.DataFrame, list[str]]:
    """``household_key``, ``stored`` and ``recomputed`` scores of the sampled rows (NaN where
    the features are missing or cannot be scored), and why a partition could not be scored."""
    from pipeline.catalogue import load_outcomes
    from pipeline.vocabulary import coerce_feature_types

    outcomes = load_outcomes(config.paths.outcomes)
    layout = TableLayout(features_dir)
    recomputed: dict[str, float] = {}
    errors: list[str] = []
    for code, group in sample.groupby("sigungu_code", sort=True):
        path = layout.partition_file("features", str(code))
        shown = path.relative_to(features_dir).as_posix()
        if not path.is_file():
            errors.append(f"{shown}: feature partition missing")
            continue
        keys = sorted(group["household_key"].astype(str))
        try:
            frame = pd.read_parquet(path, filters=[("household_key", "in", keys)])
            if frame.empty:
                continue
            frame = coerce_feature_types(frame, outcomes)
            scores = model.predict_proba(frame)[:, 1]
        except Exception as exc:  # a tampered partition: report it, keep auditing
            errors.append(f"{shown}: cannot be scored ({_first_line(exc)})")
            continue
        recomputed.update(zip(frame["household_key"].astype(str), scores.tolist(), strict=True))
    compared = pd.DataFrame(
        {
            "household_key": sample["household_key"].astype(str).to_numpy(),
            "stored": sample["score"].astype("float64").to_numpy(),
            "recomputed": [recomputed.get(k, np.nan) for k in sample["household_key"].astype(str)],
        }
    )
    return compared, errors


# --- the chain -------------------------------------------------------------------------------


def audit(config: Config, target: AuditTarget, sample_size: int | None = None) -> AuditReport:
    """Verify every link from the list (or round) back to the code; never raises on a mismatch."""
    from pipeline.tracking import tracking_uri

    uri = tracking_uri(config)
    root = config.paths.output_root
    findings: list[Finding] = []
    round_dir = target.round_dir
    manifest_path = round_dir / c.MANIFEST_FILE

    def skip_rest(why: str) -> AuditReport:
        done = {f.link for f in findings}
        for link in c.CHAIN:
            if link not in done and (link != c.LIST_FILE or target.list_file is not None):
                findings.append(c.skipped(link, why))
        return AuditReport(target, None, uri, None, _ordered(findings))

    if not manifest_path.is_file():
        findings.append(c.result(c.MANIFEST, [f"{manifest_path}: manifest.json missing"], ""))
        return skip_rest("the round has no manifest")
    manifest, error = c.load_json_text(manifest_path.read_text(encoding="utf-8", errors="replace"))
    if manifest is None:
        findings.append(c.result(c.MANIFEST, [f"{manifest_path}: {error}"], ""))
        return skip_rest("the manifest cannot be read")
    manifest_sha = sha256_file(manifest_path)
    label = str(manifest.get("round") or round_dir.name)
    manifest_files = manifest.get("files_sha256") or {}

    # list file -> round manifest -> list rows
    lists: dict[str, pd.DataFrame] = {}
    list_relative = target.list_relative
    if target.list_file is not None:
        if list_relative is None:  # a copy outside the round: find it by name
            matches = [k for k in manifest_files if k.rsplit("/", 1)[-1] == target.list_file.name]
            list_relative = matches[0] if len(matches) == 1 else f"lists/?/{target.list_file.name}"
        findings += c.check_list_file(
            list_relative, sha256_file(target.list_file), manifest_files, target.given
        )
        to_read = {list_relative: target.list_file}
    else:
        to_read = {
            name: round_dir / name
            for name in sorted(manifest_files)
            if name.startswith("lists/") and name.endswith(".csv") and (round_dir / name).is_file()
        }
    unreadable: dict[str, str] = {}
    for name, path in to_read.items():
        try:
            lists[name] = read_list(path)
        except Exception as exc:  # a damaged CSV or workbook is a finding, not a crash
            unreadable[name] = _first_line(exc)
    findings += c.check_round_files(manifest_files, round_files(round_dir), label, round_dir.name)
    scores, scores_error = None, None
    if (round_dir / SCORES).is_file():
        try:
            scores = read_scores(round_dir)
        except (OSError, ValueError, KeyError) as exc:
            scores_error = f"{SCORES}: not readable ({_first_line(exc)})"
    else:
        scores_error = f"{round_dir / SCORES}: missing"
    findings += c.check_list_rows(
        lists, scores, label, selection_names(config), scores_error, unreadable
    )

    # MLflow: scoring run -> model version -> training run -> training data
    missing_store = _store_missing(uri)
    model_obj, load_error, training = None, None, None
    model_label = f"{c.dig(manifest, 'model.name')} v{c.dig(manifest, 'model.version')}"
    training_validation = training_raw = None
    if missing_store:
        for link in (c.SCORING_RUN, c.MODEL, c.TRAINING_RUN, c.TRAINING_DATA):
            findings.append(c.result(link, [missing_store], ""))
    else:
        from pipeline.tracking import connect

        client = connect(config)
        scoring_id = c.dig(manifest, "scoring_run.run_id")
        scoring, error = run_facts(client, scoring_id)
        artifact = artifact_bytes(scoring, "round/manifest.json") if scoring else None
        artifact_sha = _sha_bytes(artifact) if artifact is not None else None
        findings += c.check_scoring_run(manifest, manifest_sha, scoring, error, artifact_sha)

        name, number = c.dig(manifest, "model.name"), c.dig(manifest, "model.version")
        version, version_error = (
            version_facts(client, str(name), str(number)) if name and number else (None, None)
        )
        model_file, fetch_error = None, None
        if version is not None:
            model_file, fetch_error, model_obj, load_error = _fetch_model(version)
        findings += c.check_model(
            manifest,
            version,
            version_error,
            (model_file.path, model_file.sha256) if model_file else None,
            fetch_error,
        )

        training_id = c.dig(manifest, "model.training_run_id")
        training, error = run_facts(client, training_id)
        findings += c.check_training_run(manifest, training, error, version)

        if training is None:
            findings.append(c.skipped(c.TRAINING_DATA, "the training run is not there"))
        else:
            from pipeline.io import sha256_of_json

            recorded = artifact_json(training, "lineage/feature_folders.json")
            layout = OutputLayout(root)
            folders = {
                month: folder_facts(layout.features(month), f"features/as_of={month}")
                for month in (recorded or {})
            }
            findings += c.check_training_data(
                training.tags.get("outreach.features_digest"), recorded, folders, sha256_of_json
            )
            training_validation = artifact_json(training, "validation/validation.json")
            training_raw = artifact_json(training, "lineage/raw_files_sha256.json")

    # scoring features -> validation -> code
    features_dir = _under_root(root, c.dig(manifest, "features.folder"))
    features_shown = str(c.dig(manifest, "features.folder") or "features folder")
    findings += c.check_scoring_features(manifest, folder_facts(features_dir, features_shown))
    findings += c.check_validation(
        manifest,
        _validation_facts(root, manifest, training_validation, training_raw, missing_store),
    )
    commits = {"scoring": (c.dig(manifest, "code.git_commit"), c.dig(manifest, "code.git_dirty"))}
    if training is not None:
        commits["training"] = (
            training.tags.get("code.git_commit"),
            training.tags.get("code.git_dirty"),
        )
    exists = {commit: commit_exists(commit) for commit, _ in commits.values() if commit}
    findings += c.check_code(commits, exists)

    # re-score
    n = sample_size or config.scoring.audit_sample
    if model_obj is None:
        why = f"{model_label} {load_error or 'could not be loaded'}"
        findings.append(c.skipped(c.RESCORE, why))
    elif scores is None:
        findings.append(c.skipped(c.RESCORE, "scores.parquet could not be read"))
    else:
        candidates = scores
        if target.list_file is not None and lists:  # the list's own rows, if it has any
            rows = next(iter(lists.values()))
            keys = set(rows["household_key"].astype(str)) if "household_key" in rows else set()
            listed = scores[scores["household_key"].isin(keys).to_numpy()]
            candidates = listed if len(listed) else scores
        sample = choose_sample(candidates, n, config.scoring.seed)
        compared, errors = rescore(config, model_obj, features_dir, sample)
        findings += c.check_rescore(
            compared, config.scoring.audit_tolerance, len(candidates), model_label, errors
        )
    recorded_uri = c.dig(manifest, "scoring_run.tracking_uri")
    return AuditReport(target, label, uri, recorded_uri, _ordered(findings))


def _ordered(findings: list[Finding]) -> list[Finding]:
    rank = {link: i for i, link in enumerate(c.CHAIN)}
    return sorted(findings, key=lambda f: rank.get(f.link, len(rank)))


def _sha_bytes(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def _under_root(root: Path, folder: Any) -> Path:
    if not folder:
        return Path(root) / "features" / "<not recorded>"
    path = Path(str(folder))
    return path if path.is_absolute() else Path(root) / path


def _fetch_model(version: VersionFacts) -> tuple[Any, str | None, Any, str | None]:
    """The version's model file (bytes, sha256) or why not; the model object or why not."""
    from mlflow.exceptions import MlflowException

    from pipeline.errors import DataError
    from pipeline.tracking.models import fetch_model, set_threads, unpickle_model
    from pipeline.tracking.registry import ModelRef

    ref = ModelRef(version.name, version.version, version.run_id, None, None, None)
    try:
        model_file = fetch_model(ref)
    except (MlflowException, DataError, OSError) as exc:
        return None, _first_line(exc), None, "could not be fetched"
    try:
        model = unpickle_model(model_file)
        set_threads(model, 1)
    except Exception as exc:  # a replaced file may not even unpickle: report, do not crash
        log.debug("model of %s does not load", ref.uri, exc_info=True)
        return model_file, None, None, f"does not load: {_first_line(exc)}"
    return model_file, None, model, None


def _validation_facts(
    root: Path,
    manifest: dict[str, Any],
    training_record: Any,
    training_raw: Any,
    missing_store: str | None,
) -> ValidationFacts:
    record = c.dig(manifest, "validation.record")
    path = _under_root(root, record) if record else None
    exists = path is not None and path.is_file()
    data = None
    if exists:
        try:
            data = _load_json(path)
        except (OSError, json.JSONDecodeError):
            data = {"status": "unreadable"}
    if missing_store:
        training_record = {"status": f"unknown: {missing_store}"}
    return ValidationFacts(
        record_path=str(record) if record else None,
        record_sha256=sha256_file(path) if exists else None,
        record=data,
        training_record=training_record if isinstance(training_record, dict) else None,
        training_raw_sha256=training_raw if isinstance(training_raw, dict) else None,
    )
