"""The links of the audit chain as pure checks: facts in, findings out.

Nothing here reads a file, talks to MLflow or runs git: :mod:`pipeline.audit.stage` gathers the
facts (digests, run records, parsed lists, re-computed scores) and passes them in. Each check
returns a list of :class:`Finding` (one per link), so that the chain can go on after a failure
and an auditor sees every broken link at once.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from pipeline.vocabulary import PHONE, TIER_TEXT, VISIT

OK = "ok"
FAILED = "failed"
UNVERIFIABLE = "unverifiable"  # could not be checked here (no git); does not fail the audit
SKIPPED = "skipped"  # not checked because a link it needs failed; the audit fails anyway

# Link names, in chain order (what the command prints and the tests look for).
LIST_FILE = "list file"
MANIFEST = "round manifest"
LIST_ROWS = "list rows"
SCORING_RUN = "scoring run"
MODEL = "model version"
TRAINING_RUN = "training run"
TRAINING_DATA = "training data"
SCORING_FEATURES = "scoring features"
VALIDATION = "validation"
CODE = "code version"
RESCORE = "re-score"
CHAIN = (
    LIST_FILE,
    MANIFEST,
    LIST_ROWS,
    SCORING_RUN,
    MODEL,
    TRAINING_RUN,
    TRAINING_DATA,
    SCORING_FEATURES,
    VALIDATION,
    CODE,
    RESCORE,
)

MANIFEST_FILE = "manifest.json"
OUT_OF_MANIFEST = ("report/",)  # written by a later stage (the review report), not by score
LIST_NAME = re.compile(
    r"^lists/(?P<sigungu>[^/]+)/(?P<kind>emd|sigungu)_(?P<code>[^/.]+)\.(csv|xlsx)$"
)


@dataclass(frozen=True)
class Finding:
    """One link of the chain: its name, ok/failed/unverifiable/skipped, a one-line message."""

    link: str
    status: str
    message: str
    details: tuple[str, ...] = ()

    @property
    def passed(self) -> bool:
        return self.status in (OK, UNVERIFIABLE)


def result(link: str, problems: Sequence[str], ok_message: str) -> Finding:
    """A failed finding naming the first problem (and how many more), else an ok one."""
    if not problems:
        return Finding(link, OK, ok_message)
    more = f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""
    return Finding(link, FAILED, f"{problems[0]}{more}", tuple(problems))


def skipped(link: str, why: str) -> Finding:
    return Finding(link, SKIPPED, f"not checked: {why}")


def passed(findings: Sequence[Finding]) -> bool:
    """The verdict: every link ok (or unverifiable here), and at least one link checked."""
    return bool(findings) and all(f.passed for f in findings)


def short(digest: str | None) -> str:
    return "none" if not digest else str(digest)[:12]


def dig(data: Mapping[str, Any], dotted: str) -> Any:
    """``dig(manifest, "model.version")``; None when a level is missing."""
    value: Any = data
    for part in dotted.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def compare_files(expected: Mapping[str, str], actual: Mapping[str, str], where: str) -> list[str]:
    """Problems between recorded and observed sha256 per relative path: missing, changed, extra."""
    problems = []
    for name in sorted(expected):
        if name not in actual:
            problems.append(f"{where}/{name}: missing (recorded sha256 {short(expected[name])})")
        elif actual[name] != expected[name]:
            problems.append(
                f"{where}/{name}: sha256 {short(actual[name])} differs from the recorded "
                f"{short(expected[name])}"
            )
    for name in sorted(set(actual) - set(expected)):
        problems.append(f"{where}/{name}: not recorded (a file was added)")
    return problems


# --- list file and round manifest -----------------------------------------------------------


def check_list_file(
    relative: str, actual_sha: str, manifest_files: Mapping[str, str], shown_as: str
) -> list[Finding]:
    """The list's bytes are the ones the round manifest recorded."""
    recorded = manifest_files.get(relative)
    if recorded is None:
        problem = f"{shown_as}: {relative} is not a file of the round manifest"
        return [result(LIST_FILE, [problem], "")]
    if recorded != actual_sha:
        problem = (
            f"{shown_as}: sha256 {short(actual_sha)} differs from the manifest's "
            f"{short(recorded)} for {relative}: the list was changed after scoring"
        )
        return [result(LIST_FILE, [problem], "")]
    return [result(LIST_FILE, [], f"{relative}: sha256 {short(actual_sha)} as in the manifest")]


def check_round_files(
    manifest_files: Mapping[str, str] | None,
    actual_files: Mapping[str, str],
    round_label: str,
    folder_name: str | None = None,
) -> list[Finding]:
    """Every file of the round present with its recorded sha256, and nothing unrecorded; the
    manifest's round is its folder's month.

    ``actual_files`` are the round folder's files except ``manifest.json`` and ``report/``.
    """
    folder_name = folder_name or round_label
    if not manifest_files:
        return [result(MANIFEST, ["manifest.json records no files_sha256"], "")]
    problems = compare_files(manifest_files, actual_files, f"rounds/{folder_name}")
    if round_label != folder_name:
        problems.insert(0, f"the manifest is of round {round_label}, its folder is {folder_name}")
    lists = sum(1 for name in manifest_files if name.startswith("lists/"))
    return [
        result(
            MANIFEST,
            problems,
            f"round {round_label}: {len(manifest_files)} files ({lists} lists, scores.parquet) "
            "match files_sha256",
        )
    ]


# --- list rows against scores.parquet --------------------------------------------------------


def list_scope(relative: str) -> tuple[str, str | None] | None:
    """(시군구 code, 읍면동 code or None for a 시군구 list) of ``lists/<sgg>/emd_<code>.csv``."""
    match = LIST_NAME.match(relative)
    if match is None:
        return None
    if match["kind"] == "emd":
        return match["sigungu"], match["code"]
    return match["sigungu"], None


def _tier_codes() -> dict[str, str]:
    out = {}
    for texts in TIER_TEXT.values():
        for code, text in texts.items():
            out[text] = code
    return out


def shown_in_lists(scores: pd.DataFrame, round_label: str) -> pd.DataFrame:
    """What a list shows of each visit or phone row of scores.parquet, as text (codes for the
    tier and the selection reason): the other side of ``pipeline.score.lists.list_frame``."""
    listed = scores[scores["tier"].isin([VISIT, PHONE]).to_numpy()]
    rank = listed["list_rank"].astype("Float64").round().astype("Int64")
    frame = pd.DataFrame(
        {
            "household_key": listed["household_key"].astype(str).to_numpy(),
            "round": round_label,
            "sigungu_code": listed["sigungu_code"].astype(str).to_numpy(),
            "emd_code": listed["emd_code"].astype(str).to_numpy(),
            "list_rank": rank.astype("string").fillna("").to_numpy(),
            "tier": listed["tier"].astype(str).to_numpy(),
            "risk_percent": [f"{100 * s:.1f}" for s in listed["score"].to_numpy()],
            "selection": listed["selection_reason"].astype(str).to_numpy(),
        }
    )
    for i in (1, 2, 3):
        text = listed.get(f"reason_{i}_text")
        frame[f"reason_{i}"] = "" if text is None else text.astype("string").fillna("").to_numpy()
    return frame


def _list_rows(
    lists: Mapping[str, pd.DataFrame], selection_names: Mapping[str, set[str]]
) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """All lists' rows in one frame with their list and its district; each list's district;
    problems of form (a list with them is left out)."""
    tiers = _tier_codes()
    code_of = {name: code for code, names in selection_names.items() for name in names}
    needed = ("household_key", "tier", "list_rank", "risk_percent", "emd_code")
    frames, scopes, problems = [], [], []
    for relative in sorted(lists):
        rows = lists[relative]
        scope = list_scope(relative)
        if scope is None:
            problems.append(f"{relative}: not a list file name (lists/<시군구>/emd_<code>.csv)")
            continue
        missing = [column for column in needed if column not in rows.columns]
        if missing:
            problems.append(f"{relative}: columns missing: {', '.join(missing)}")
            continue
        district = {"list": relative, "scope_sigungu": scope[0], "scope_emd": scope[1] or ""}
        scopes.append(district)
        frames.append(rows.assign(**district))
    columns = [*needed, "list", "scope_sigungu", "scope_emd"]
    frames.append(pd.DataFrame(columns=columns))  # so that no list, or empty ones, still work
    frame = pd.concat(frames, ignore_index=True).fillna("").astype(str)
    frame["tier"] = [tiers.get(t, f"unknown tier text {t!r}") for t in frame["tier"]]
    if "selection" in frame.columns:
        frame["selection"] = [code_of.get(t, t) for t in frame["selection"]]
    return frame, pd.DataFrame(scopes, columns=["list", "scope_sigungu", "scope_emd"]), problems


def list_row_problems(
    lists: Mapping[str, pd.DataFrame],
    scores: pd.DataFrame,
    round_label: str,
    selection_names: Mapping[str, set[str]],
    limit: int = 5,
) -> list[str]:
    """Problems of lists against scores.parquet (one pass, whatever the number of lists).

    ``lists`` maps a list's path in the round (``lists/<시군구>/emd_<code>.csv``) to its rows
    with the column keys of ``pipeline.score.lists.LIST_COLUMNS`` as text. Each list must hold
    exactly the visit and phone households of its 읍면동 (or 시군구), each with the round, codes,
    tier, rank, risk, selection and reasons that scores.parquet records. At most ``limit``
    problems of each kind are named, then counted.
    """
    got, scopes, problems = _list_rows(lists, selection_names)
    want = shown_in_lists(scores, round_label)

    def name(kind: str, frame: pd.DataFrame, text: Callable[[Any], str]) -> None:
        for row in frame.head(limit).itertuples(index=False):
            problems.append(text(row))
        if len(frame) > limit:
            problems.append(f"{len(frame) - limit} more rows: {kind}")

    dup = got[got.duplicated(["list", "household_key"]).to_numpy()]
    name("duplicated", dup, lambda r: f"{r.list}: household {r.household_key} appears twice")

    merged = got.merge(want, on="household_key", how="left", suffixes=("", "__want"))
    in_scope = merged["emd_code__want"].notna().to_numpy() & np.where(
        merged["scope_emd"] != "",
        merged["emd_code__want"] == merged["scope_emd"],
        merged["sigungu_code__want"] == merged["scope_sigungu"],
    )
    name(
        "not listed in scores.parquet",
        merged[~in_scope],
        lambda r: (
            f"{r.list}: household {r.household_key} is not a listed household of this "
            "list's district in scores.parquet"
        ),
    )
    expected = pd.concat(
        [
            scopes[scopes["scope_emd"] != ""].merge(
                want[["household_key", "emd_code"]], left_on="scope_emd", right_on="emd_code"
            ),
            scopes[scopes["scope_emd"] == ""].merge(
                want[["household_key", "sigungu_code"]],
                left_on="scope_sigungu",
                right_on="sigungu_code",
            ),
        ],
        ignore_index=True,
    )[["list", "household_key"]]
    seen = set(zip(got["list"], got["household_key"], strict=True))
    absent = expected[[pair not in seen for pair in expected.itertuples(index=False, name=None)]]
    name(
        "missing from their list",
        absent,
        lambda r: f"{r.list}: household {r.household_key}, listed in scores.parquet, is missing",
    )
    matched = merged[in_scope].drop_duplicates(["list", "household_key"])
    for column in [c for c in want.columns if c != "household_key" and c in got.columns]:
        differ = matched[
            (matched[column].astype(str) != matched[f"{column}__want"].astype(str)).to_numpy()
        ]
        shown = differ[["list", "household_key", column, f"{column}__want"]].head(limit)
        for where, key, value, wanted in shown.itertuples(index=False, name=None):
            problems.append(
                f"{where}: household {key}: {column} is {value!r}, scores.parquet says {wanted!r}"
            )
        if len(differ) > limit:
            problems.append(f"{len(differ) - limit} more rows differ in {column}")
    return problems


def check_list_rows(
    lists: Mapping[str, pd.DataFrame],
    scores: pd.DataFrame | None,
    round_label: str,
    selection_names: Mapping[str, set[str]],
    scores_error: str | None = None,
    unreadable: Mapping[str, str] | None = None,
) -> list[Finding]:
    """Every given list (relative path -> rows) agrees with scores.parquet; ``unreadable`` names
    lists that could not be parsed, and why."""
    unreadable = unreadable or {}
    if scores is None:
        return [result(LIST_ROWS, [scores_error or "scores.parquet could not be read"], "")]
    if not lists and not unreadable:
        return [result(LIST_ROWS, ["no list to compare with scores.parquet"], "")]
    problems = [f"{name}: not readable ({why})" for name, why in sorted(unreadable.items())]
    problems += list_row_problems(lists, scores, round_label, selection_names)
    rows = sum(len(frame) for frame in lists.values())
    what = next(iter(lists)) if len(lists) == 1 else f"{len(lists)} lists"
    return [
        result(
            LIST_ROWS,
            problems,
            f"{what}: {rows:,} rows have the household, tier, rank, risk and reasons of "
            "scores.parquet",
        )
    ]


# --- MLflow records --------------------------------------------------------------------------


@dataclass(frozen=True)
class RunFacts:
    """What the MLflow store holds about a run."""

    run_id: str
    status: str
    lifecycle_stage: str
    tags: Mapping[str, str] = field(default_factory=dict)
    params: Mapping[str, str] = field(default_factory=dict)
    artifact_uri: str | None = None


@dataclass(frozen=True)
class VersionFacts:
    """A registered model version as the registry holds it now."""

    name: str
    version: str
    run_id: str
    tags: Mapping[str, str] = field(default_factory=dict)


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
            f"manifest.json sha256 {short(manifest_sha)} differs from the scoring run's "
            f"outreach.manifest_sha256 {short(recorded)}: the manifest was changed after scoring"
        )
    if artifact_sha is None:
        problems.append(f"scoring run {run_id} holds no round/manifest.json artifact")
    elif artifact_sha != manifest_sha:
        problems.append(
            f"manifest.json differs from the scoring run's artifact round/manifest.json "
            f"(sha256 {short(artifact_sha)})"
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
    """The version exists, belongs to the training run, and its file is the one that scored."""
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


# --- data digests ----------------------------------------------------------------------------


@dataclass(frozen=True)
class FolderFacts:
    """A feature folder as found on disk: ``manifest_sha256`` None when it or its manifest is
    missing; ``files_sha256`` the files now there (manifest.json excepted)."""

    shown_as: str
    manifest_sha256: str | None
    files_sha256: Mapping[str, str] = field(default_factory=dict)


def check_training_data(
    digest_tag: str | None,
    recorded: Mapping[str, Mapping[str, Any]] | None,
    folders: Mapping[str, FolderFacts],
    digest_of: Callable[[Any], str],
) -> list[Finding]:
    """The feature folders the training run recorded still exist with the same content.

    ``recorded`` is the run's ``lineage/feature_folders.json`` (month -> manifest_sha256 and
    files_sha256); ``digest_of`` is how the training stage digests ``{month: manifest_sha256}``.
    """
    if recorded is None:
        return [
            result(TRAINING_DATA, ["the training run holds no lineage/feature_folders.json"], "")
        ]
    problems: list[str] = []
    recomputed = digest_of({m: v.get("manifest_sha256") for m, v in recorded.items()})
    if recomputed != digest_tag:
        problems.append(
            f"lineage/feature_folders.json digests to {short(recomputed)}, the training run's "
            f"features digest is {short(digest_tag)}"
        )
    missing = []
    for month in sorted(recorded):
        facts = folders.get(month)
        if facts is None or facts.manifest_sha256 is None:
            where = facts.shown_as if facts else f"as_of={month}"
            missing.append(month)
            problems.append(f"{where}: feature folder of the training data is missing")
            continue
        want = recorded[month].get("manifest_sha256")
        if facts.manifest_sha256 != want:
            problems.append(
                f"{facts.shown_as}/manifest.json: sha256 {short(facts.manifest_sha256)} differs "
                f"from the training run's {short(want)}"
            )
        problems += compare_files(
            recorded[month].get("files_sha256") or {}, facts.files_sha256, facts.shown_as
        )
    months = sorted(recorded)
    span = f"{months[0]} … {months[-1]}" if months else "none"
    return [
        result(
            TRAINING_DATA,
            problems,
            f"{len(months)} feature folders ({span}) match the training run's record; digest "
            f"{short(recomputed)}",
        )
    ]


def check_scoring_features(manifest: Mapping[str, Any], folder: FolderFacts) -> list[Finding]:
    """The round's feature folder holds the files the round was scored from."""
    if folder.manifest_sha256 is None:
        return [result(SCORING_FEATURES, [f"{folder.shown_as}: feature folder missing"], "")]
    problems = []
    want = dig(manifest, "features.manifest_sha256")
    if folder.manifest_sha256 != want:
        problems.append(
            f"{folder.shown_as}/manifest.json: sha256 {short(folder.manifest_sha256)} differs "
            f"from the round manifest's {short(want)}"
        )
    recorded = dig(manifest, "features.files_sha256") or {}
    if not recorded:
        problems.append("the round manifest records no features.files_sha256")
    problems += compare_files(recorded, folder.files_sha256, folder.shown_as)
    return [
        result(
            SCORING_FEATURES,
            problems,
            f"{folder.shown_as}: {len(recorded)} files match the round manifest",
        )
    ]


@dataclass(frozen=True)
class ValidationFacts:
    """The validation record the round manifest names, and the one the training run kept."""

    record_path: str | None
    record_sha256: str | None  # None: the file is missing
    record: Mapping[str, Any] | None
    training_record: Mapping[str, Any] | None
    training_raw_sha256: Mapping[str, str] | None


def _raw_against_record(raw: Mapping[str, str], record: Mapping[str, Any], what: str) -> list[str]:
    checked = record.get("files_sha256") or {}
    problems = []
    for name in sorted(n for n in raw if n.endswith(".parquet")):
        if name not in checked:
            problems.append(f"{what}: raw file {name} was not checked by validation")
        elif checked[name] != raw[name]:
            problems.append(
                f"{what}: raw file {name} has sha256 {short(raw[name])}, validation checked "
                f"{short(checked[name])}"
            )
    return problems


def check_validation(manifest: Mapping[str, Any], facts: ValidationFacts) -> list[Finding]:
    """The round's raw inputs passed validation, by a record that is still there unchanged; the
    training run kept a passing record of the raw files it read."""
    v = manifest.get("validation") or {}
    problems: list[str] = []
    if v.get("status") != "passed":
        problems.append(f"the round manifest's validation status is {v.get('status')!r}")
    if not v.get("record"):
        problems.append("the round manifest names no validation record")
    elif facts.record_sha256 is None:
        problems.append(f"{facts.record_path}: validation record missing")
    else:
        if facts.record_sha256 != v.get("record_sha256"):
            problems.append(
                f"{facts.record_path}: sha256 {short(facts.record_sha256)} differs from the "
                f"manifest's {short(v.get('record_sha256'))}"
            )
        record = facts.record or {}
        if record.get("status") != "passed":
            problems.append(f"{facts.record_path}: status {record.get('status')!r}")
        problems += _raw_against_record(manifest.get("raw_inputs_sha256") or {}, record, "round")
    if facts.training_record is None:
        problems.append("the training run holds no validation/validation.json artifact")
    else:
        if facts.training_record.get("status") != "passed":
            problems.append(
                f"the training run's validation record has status "
                f"{facts.training_record.get('status')!r}"
            )
        if facts.training_raw_sha256 is not None:
            problems += _raw_against_record(
                facts.training_raw_sha256, facts.training_record, "training run"
            )
    return [
        result(
            VALIDATION,
            problems,
            f"validation run {v.get('run_id')} passed; record sha256 "
            f"{short(v.get('record_sha256'))}; the raw files scored and trained on are the ones "
            "validated",
        )
    ]


def check_code(
    commits: Mapping[str, tuple[str | None, str | None]], exists: Mapping[str, bool | None]
) -> list[Finding]:
    """The recorded commits exist in the repository (``exists[commit]`` None: git unavailable).

    ``commits`` maps who recorded it (``scoring``, ``training``) to (commit, dirty flag).
    """
    problems = []
    unverifiable = []
    notes = []
    for who, (commit, dirty) in commits.items():
        if not commit or commit == "unknown":
            unverifiable.append(f"{who} recorded no commit")
            continue
        found = exists.get(commit)
        if found is None:
            unverifiable.append(f"{who} commit {commit[:12]}: git unavailable here")
        elif not found:
            problems.append(f"{who} commit {commit[:12]} does not exist in this repository")
        else:
            notes.append(
                f"{who} {commit[:12]}"
                + (" (working tree had uncommitted changes)" if dirty == "true" else "")
            )
    if problems:
        return [result(CODE, problems, "")]
    if unverifiable:
        return [Finding(CODE, UNVERIFIABLE, "; ".join(unverifiable + notes))]
    return [Finding(CODE, OK, "commits exist: " + "; ".join(notes))]


def check_rescore(
    sample: pd.DataFrame,
    tolerance: float,
    population: int,
    model_label: str,
    errors: Sequence[str] = (),
) -> list[Finding]:
    """Stored scores equal the recorded model's scores of the stored features.

    ``sample`` holds ``household_key``, ``stored`` and ``recomputed`` (NaN when the household's
    features were not found or could not be scored); ``errors`` say why a partition could not.
    """
    if sample.empty:
        return [result(RESCORE, ["no row to re-score"], "")]
    problems = list(errors)
    found = sample[sample["recomputed"].notna().to_numpy()]
    diff = (found["recomputed"] - found["stored"]).abs()
    bad = found[(diff > tolerance).to_numpy()]
    worst = float(diff.max()) if len(diff) else math.nan
    if len(bad):
        problems.insert(
            0,
            f"{len(bad)} of {len(sample)} re-scored rows differ by more than {tolerance:g} "
            f"(worst {worst:.3g}) with {model_label}",
        )
        for row in bad.head(5).itertuples(index=False):
            problems.append(
                f"household {row.household_key}: stored {row.stored:.12f}, "
                f"re-scored {row.recomputed:.12f}"
            )
    lost = sample[sample["recomputed"].isna().to_numpy()]
    if len(lost):
        problems.append(
            f"{len(lost)} of {len(sample)} sampled households could not be re-scored from the "
            f"feature folder (e.g. {', '.join(lost['household_key'].head(3))})"
        )
    return [
        result(
            RESCORE,
            problems,
            f"{len(sample)} of {population:,} rows re-scored with {model_label}: max |difference| "
            f"{worst:.3g} (tolerance {tolerance:g})",
        )
    ]


def load_json_text(text: str) -> tuple[dict[str, Any] | None, str | None]:
    """Parsed JSON object, or an error message."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        return None, f"not valid JSON ({exc.msg} at line {exc.lineno})"
    if not isinstance(data, dict):
        return None, "not a JSON object"
    return data, None


__all__ = [
    "CHAIN",
    "FAILED",
    "OK",
    "SKIPPED",
    "UNVERIFIABLE",
    "Finding",
    "FolderFacts",
    "RunFacts",
    "ValidationFacts",
    "VersionFacts",
]
