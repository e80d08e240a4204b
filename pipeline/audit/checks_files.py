"""Pure checks of the round's own files: the ``list file``, ``round manifest`` and ``list rows``
links.

Facts in, findings out: sha256 digests of the round folder's files, the manifest's
``files_sha256``, list rows parsed to column keys, and the columns of ``scores.parquet``
(gathered by :mod:`pipeline.audit.facts`). Owns what a list shows of a scored household
(:func:`shown_in_lists`, the other side of ``pipeline.score.lists.list_frame``) and the
comparison of lists with the scores, whatever the number of lists.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath, PureWindowsPath
from typing import Any

import numpy as np
import pandas as pd

from pipeline.audit.findings import (
    LIST_FILE,
    LIST_ROWS,
    MANIFEST,
    RAW_INPUTS,
    REPORT_PAGES,
    STAGED_TABLES,
    UNVERIFIABLE,
    VALIDATION_FILES,
    Finding,
    compare_files,
    dig,
    result,
    short,
    skipped,
)
from pipeline.datasets.rounds import LIST_SUFFIXES, LISTS, REPORT, REPORT_RECORD, SCORES
from pipeline.datasets.rounds import MANIFEST as MANIFEST_FILE
from pipeline.datasets.staged import STAGED_MANIFEST
from pipeline.datasets.validation import OUTPUTS_SHA256
from pipeline.vocabulary import (
    EMD,
    FILL_IN,
    KEY,
    LISTED_TIERS,
    LOCAL_DISCRETION,
    TIER_TEXT,
    risk_band,
    risk_percent,
)

CSV = LIST_SUFFIXES[0]
# ``lists/<시군구>/emd_<읍면동>.csv|.xlsx`` or ``lists/<시군구>/sigungu_<시군구>.csv|.xlsx``
# (pipeline.datasets.rounds.list_paths).
LIST_NAME = re.compile(
    rf"^{re.escape(LISTS)}/(?P<sigungu>[^/]+)/(?P<kind>emd|sigungu)_(?P<code>[^/.]+)\."
    rf"({'|'.join(re.escape(s.lstrip('.')) for s in LIST_SUFFIXES)})$"
)


def load_json_text(text: str) -> tuple[dict[str, Any] | None, str | None]:
    """Parsed JSON object, or an error message."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        return None, f"not valid JSON ({exc.msg} at line {exc.lineno})"
    if not isinstance(data, dict):
        return None, "not a JSON object"
    return data, None


# --- list file and round manifest -----------------------------------------------------------


def check_list_file(
    relative: str,
    actual_sha: str,
    manifest_files: Mapping[str, str],
    shown_as: str,
    returned: Returned | None = None,
) -> list[Finding]:
    """The list's bytes are the ones the round manifest recorded; or, for a list returned by an
    office, every scored column of every row is as scored (``returned``: the rows check passed)
    and only what a caseworker fills in or adds differs."""
    recorded = manifest_files.get(relative)
    if recorded is None:
        problem = f"{shown_as}: {relative} is not a file of the round manifest"
        return [result(LIST_FILE, [problem], "")]
    if recorded != actual_sha and returned is not None and returned.rows_intact:
        return [
            result(
                LIST_FILE,
                [],
                f"{relative}: returned list: {returned.filled} rows filled in, {returned.added} "
                "households added by the caseworker; every scored column as scored (the bytes "
                f"differ from the manifest's {short(recorded)}, as a filled-in list's do)",
            )
        ]
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
    path_problems: Sequence[str] = (),
) -> list[Finding]:
    """Every file of the round present with its recorded sha256, and nothing unrecorded; the
    manifest's round is its folder's month; no path it records is absolute or leaves the output
    root (``path_problems``, :func:`manifest_path_problems`).

    ``actual_files`` are the round folder's files except ``manifest.json`` and ``report/``.
    """
    folder_name = folder_name or round_label
    if not manifest_files:
        return [result(MANIFEST, [*path_problems, f"{MANIFEST_FILE} records no files_sha256"], "")]
    problems = [*path_problems]
    problems += compare_files(manifest_files, actual_files, f"rounds/{folder_name}")
    if round_label != folder_name:
        problems.insert(0, f"the manifest is of round {round_label}, its folder is {folder_name}")
    lists = sum(1 for name in manifest_files if name.startswith(f"{LISTS}/"))
    return [
        result(
            MANIFEST,
            problems,
            f"round {round_label}: {len(manifest_files)} files ({lists} lists, {SCORES}) "
            "match files_sha256",
        )
    ]


# --- paths the manifest records --------------------------------------------------------------

# Where the round manifest records paths or relative file names (dotted key; "*" = its keys).
MANIFEST_PATHS = (
    ("features.folder", False),
    ("validation.record", False),
    ("capacity.file", False),
    ("files_sha256", True),
    ("features.files_sha256", True),
    ("raw_inputs_sha256", True),
)


def unsafe_path(recorded: str) -> str | None:
    """Why a path a manifest records must not be followed (absolute, or leaving its folder
    with ``..``), or None."""
    text = recorded.replace("\\", "/")
    if text.startswith("/") or PureWindowsPath(recorded).drive:
        return "is absolute"
    if ".." in PurePosixPath(text).parts:
        return "leaves its folder (..)"
    return None


def manifest_path_problems(manifest: Mapping[str, Any]) -> list[str]:
    """Every path the round manifest records that is absolute or leaves the output root (or
    its own folder): the audit does not follow them, and names each."""
    problems = []
    for key, names_are_keys in MANIFEST_PATHS:
        value = dig(manifest, key)
        if names_are_keys:
            paths = [str(name) for name in value] if isinstance(value, Mapping) else []
        else:
            paths = [str(value)] if value else []
        for path in paths:
            why = unsafe_path(path)
            if why:
                problems.append(f"{MANIFEST_FILE}: {key} path {path!r} {why}: not followed")
    return problems


# --- the files the round was made from -------------------------------------------------------


@dataclass(frozen=True)
class StagedFacts:
    """The staged folder as found: sha256 of ``_manifest.json`` (None: missing), the files it
    records (None: none recorded), the files now there, the round's capacity file's sha256."""

    shown_as: str
    manifest_sha256: str | None
    recorded: Mapping[str, str] | None
    files: Mapping[str, str]
    capacity_file: str | None
    capacity_sha256: str | None


@dataclass(frozen=True)
class ReportFacts:
    """The round's ``report/`` as found: its record ``report.json`` (or why not read) and the
    sha256 of its pages now."""

    record: Mapping[str, Any] | None
    record_error: str | None
    files: Mapping[str, str]


def check_raw_inputs(
    recorded: Mapping[str, str] | None, actual: Mapping[str, str], shown_as: str
) -> list[Finding]:
    """Every raw file the round names in ``raw_inputs_sha256`` is in the raw input folder with
    that sha256, and no other raw file is there."""
    if not recorded:
        return [result(RAW_INPUTS, ["the round manifest records no raw_inputs_sha256"], "")]
    safe = {name: sha for name, sha in recorded.items() if not unsafe_path(str(name))}
    problems = [
        f"raw_inputs_sha256 names {name!r}, which {unsafe_path(str(name))}: not followed"
        for name in sorted(set(recorded) - set(safe))
    ]
    problems += compare_files(safe, actual, shown_as)
    return [
        result(
            RAW_INPUTS,
            problems,
            f"{shown_as}: {len(recorded)} raw files match raw_inputs_sha256; no other file",
        )
    ]


def check_validation_files(
    record_path: str | None, record: Mapping[str, Any] | None, actual: Mapping[str, str] | None
) -> list[Finding]:
    """Every file of the validation run the round names (GX results, Data Docs pages, summary,
    rejected rows) has the sha256 its record ``validation.json`` holds, and no other is there."""
    if record is None or actual is None:
        return [skipped(VALIDATION_FILES, f"{record_path or 'the validation record'} not there")]
    recorded = record.get(OUTPUTS_SHA256)
    folder = str(record_path).rsplit("/", 1)[0] if record_path else "validation run"
    if not isinstance(recorded, Mapping):
        return [
            Finding(
                VALIDATION_FILES,
                UNVERIFIABLE,
                f"{record_path}: holds no {OUTPUTS_SHA256} (validated before the record kept "
                f"its files' sha256): {len(actual)} files not verified",
            )
        ]
    problems = compare_files(recorded, actual, folder)
    pages = sum(1 for name in recorded if name.endswith(".html"))
    return [
        result(
            VALIDATION_FILES,
            problems,
            f"{folder}: {len(recorded)} files ({pages} pages, the GX results) match the "
            "record's sha256",
        )
    ]


def check_staged_tables(manifest: Mapping[str, Any], staged: StagedFacts) -> list[Finding]:
    """The staged manifest is the one the round records; every staged file (crisis events, the
    capacity table, ...) has the sha256 the staged manifest records; the capacity file the round
    names has the round's sha256."""
    problems: list[str] = []
    want = dig(manifest, "staged.manifest_sha256")
    where = f"{staged.shown_as}/{STAGED_MANIFEST}"
    if staged.manifest_sha256 is None:
        problems.append(f"{where}: missing")
    elif staged.manifest_sha256 != want:
        problems.append(
            f"{where}: sha256 {short(staged.manifest_sha256)} differs from the round "
            f"manifest's {short(want)}"
        )
    if staged.manifest_sha256 is not None and staged.recorded is None:
        problems.append(f"{where}: records no files_sha256")
    problems += compare_files(staged.recorded or {}, staged.files, staged.shown_as)
    capacity = dig(manifest, "capacity.sha256")
    if not staged.capacity_file or not capacity:
        problems.append("the round manifest records no capacity file and sha256")
    elif staged.capacity_sha256 is None:
        problems.append(f"{staged.capacity_file}: capacity file missing (or not followed)")
    elif staged.capacity_sha256 != capacity:
        problems.append(
            f"{staged.capacity_file}: sha256 {short(staged.capacity_sha256)} differs from the "
            f"round manifest's capacity.sha256 {short(capacity)}"
        )
    return [
        result(
            STAGED_TABLES,
            problems,
            f"{where} sha256 {short(want)} as the round records; {len(staged.recorded or {})} "
            f"staged files and the capacity table match",
        )
    ]


def check_report_pages(
    report: ReportFacts | None, manifest_sha256: str, round_label: str | None
) -> list[Finding]:
    """When the round has a ``report/``: every page has the sha256 its ``report.json`` records,
    no page is there that it does not record, and it reports on this round's manifest."""
    if report is None:
        return [result(REPORT_PAGES, [], f"no {REPORT}/ written for round {round_label}")]
    where = f"{REPORT}/{REPORT_RECORD}"
    if report.record is None:
        return [result(REPORT_PAGES, [f"{where}: {report.record_error}"], "")]
    problems = []
    recorded = report.record.get("files_sha256")
    if not isinstance(recorded, Mapping):
        problems.append(f"{where}: records no files_sha256")
        recorded = {}
    on = report.record.get("round_manifest_sha256")
    if on != manifest_sha256:
        problems.append(
            f"{where}: reports on round manifest {short(on)}, the round's is "
            f"{short(manifest_sha256)}"
        )
    problems += compare_files(recorded, report.files, REPORT)
    return [
        result(
            REPORT_PAGES,
            problems,
            f"{REPORT}/: {len(recorded)} pages match {REPORT_RECORD}, made from this manifest",
        )
    ]


# --- list rows against scores.parquet --------------------------------------------------------


@dataclass(frozen=True)
class Returned:
    """What an office did to a list: rows filled in (outcome, date or note), households added
    (selection "added by the caseworker"), and whether every scored column is still as scored."""

    filled: int
    added: int
    rows_intact: bool


def returned_rows(rows: pd.DataFrame, selection_names: Mapping[str, set[str]]) -> tuple[int, int]:
    """Rows of one list with a column of :data:`FILL_IN` filled in, and rows added by the
    caseworker."""
    filled = np.zeros(len(rows), dtype=bool)
    for column in FILL_IN:
        if column in rows.columns:
            filled |= rows[column].fillna("").astype(str).str.strip().ne("").to_numpy()
    return int(filled.sum()), int(_added(rows, selection_names).sum())


def _added(rows: pd.DataFrame, selection_names: Mapping[str, set[str]]) -> np.ndarray:
    if "selection" not in rows.columns:
        return np.zeros(len(rows), dtype=bool)
    names = {LOCAL_DISCRETION, *selection_names.get(LOCAL_DISCRETION, set())}
    return rows["selection"].fillna("").astype(str).str.strip().isin(names).to_numpy()


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
    listed = scores[scores["tier"].isin(LISTED_TIERS).to_numpy()]
    rank = listed["list_rank"].astype("Float64").round().astype("Int64")
    frame = pd.DataFrame(
        {
            KEY: listed[KEY].astype(str).to_numpy(),
            "round": round_label,
            "sigungu_code": listed["sigungu_code"].astype(str).to_numpy(),
            EMD: listed[EMD].astype(str).to_numpy(),
            "list_rank": rank.astype("string").fillna("").to_numpy(),
            "tier": listed["tier"].astype(str).to_numpy(),
            "risk_percent": [str(risk_percent(s)) for s in listed["score"].to_numpy()],
            "risk_band": [str(risk_band(s)) for s in listed["score"].to_numpy()],
            "selection": listed["selection_reason"].astype(str).to_numpy(),
            # lists written before risk was shown to the whole percent showed one decimal
            "risk_one_decimal": [f"{100 * s:.1f}" for s in listed["score"].to_numpy()],
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
    needed = (KEY, "tier", "list_rank", "risk_percent", "sigungu_code", EMD)
    frames, scopes, problems = [], [], []
    for relative in sorted(lists):
        rows = lists[relative]
        scope = list_scope(relative)
        if scope is None:
            problems.append(
                f"{relative}: not a list file name ({LISTS}/<시군구>/emd_<code>{LIST_SUFFIXES[0]})"
            )
            continue
        missing = [column for column in needed if column not in rows.columns]
        if missing:
            problems.append(f"{relative}: columns missing: {', '.join(missing)}")
            continue
        scopes.append({"list": relative, "scope_sigungu": scope[0], "scope_emd": scope[1] or ""})
        frames.append(rows)
    district = ["list", "scope_sigungu", "scope_emd"]
    frames.append(pd.DataFrame(columns=[*needed, *district]))  # no list, or empty ones, work too
    frame = pd.concat(frames, ignore_index=True)
    # Each row's list and district, set once on all rows (not on each list's frame: faster).
    sizes = [len(rows) for rows in frames[:-1]]
    for column in district:
        frame[column] = np.repeat([scope[column] for scope in scopes], sizes).astype(object)
    frame = frame.fillna("").astype(str)
    frame["tier"] = [tiers.get(t, f"unknown tier text {t!r}") for t in frame["tier"]]
    # Risk as a whole percent ("52", or 52.0 read from an XLSX number); the band by its number.
    frame["risk_percent"] = [_whole(t) for t in frame["risk_percent"]]
    if "risk_band" in frame.columns:
        frame["risk_band"] = [t.partition(" ")[0] for t in frame["risk_band"]]
    if "selection" in frame.columns:
        frame["selection"] = [code_of.get(t, t) for t in frame["selection"]]
    return frame, pd.DataFrame(scopes, columns=district), problems


def _whole(text: str) -> str:
    """``"52.0"`` -> ``"52"``; any other text as it is."""
    try:
        value = float(text)
    except ValueError:
        return text
    return str(int(value)) if value.is_integer() else text


def list_row_problems(
    lists: Mapping[str, pd.DataFrame],
    scores: pd.DataFrame,
    round_label: str,
    selection_names: Mapping[str, set[str]],
    limit: int = 5,
) -> list[str]:
    """Problems of lists against scores.parquet (one pass, whatever the number of lists).

    ``lists`` maps a list's path in the round (``lists/<시군구>/emd_<code>.csv``) to its rows
    with the column keys of ``pipeline.vocabulary.LIST_COLUMNS`` as text. Each list must hold
    exactly the visit and phone households of its 읍면동 (or 시군구), each with the round, codes,
    tier, rank, risk, selection and reasons that scores.parquet records. At most ``limit``
    problems of each kind are named, then counted.
    """
    got, scopes, problems = _list_rows(lists, selection_names)
    want = shown_in_lists(scores, round_label)
    # Households a caseworker added to a returned list are no scored rows: set aside (a row
    # marked so for a listed household is compared as any other).
    added = (got["selection"] == LOCAL_DISCRETION).to_numpy() if "selection" in got else None
    if added is not None:
        got = got[~(added & ~got[KEY].isin(want[KEY]).to_numpy())]

    def name(kind: str, frame: pd.DataFrame, text: Callable[[Any], str]) -> None:
        if frame.empty:  # the usual case: no named tuple type built for nothing
            return
        for row in frame.head(limit).itertuples(index=False):
            problems.append(text(row))
        if len(frame) > limit:
            problems.append(f"{len(frame) - limit} more rows: {kind}")

    dup = got[got.duplicated(["list", KEY]).to_numpy()]
    name("duplicated", dup, lambda r: f"{r.list}: household {r.household_key} appears twice")

    merged = got.merge(want, on=KEY, how="left", suffixes=("", "__want"))
    in_scope = merged[f"{EMD}__want"].notna().to_numpy() & np.where(
        merged["scope_emd"] != "",
        merged[f"{EMD}__want"] == merged["scope_emd"],
        merged["sigungu_code__want"] == merged["scope_sigungu"],
    )
    name(
        f"not listed in {SCORES}",
        merged[~in_scope],
        lambda r: (
            f"{r.list}: household {r.household_key} is not a listed household of this "
            f"list's district in {SCORES}"
        ),
    )
    expected = pd.concat(
        [
            scopes[scopes["scope_emd"] != ""].merge(
                want[[KEY, EMD]], left_on="scope_emd", right_on=EMD
            ),
            scopes[scopes["scope_emd"] == ""].merge(
                want[[KEY, "sigungu_code"]],
                left_on="scope_sigungu",
                right_on="sigungu_code",
            ),
        ],
        ignore_index=True,
    )[["list", KEY]]
    seen = set(zip(got["list"], got[KEY], strict=True))
    absent = expected[[pair not in seen for pair in expected.itertuples(index=False, name=None)]]
    name(
        "missing from their list",
        absent,
        lambda r: f"{r.list}: household {r.household_key}, listed in {SCORES}, is missing",
    )
    matched = merged[in_scope].drop_duplicates(["list", KEY])
    older = (matched["risk_percent"] == matched["risk_one_decimal"]).to_numpy()
    matched.loc[older, "risk_percent"] = matched.loc[older, "risk_percent__want"]
    for column in [c for c in want.columns if c != KEY and c in got.columns]:
        differ = matched[
            (matched[column].astype(str) != matched[f"{column}__want"].astype(str)).to_numpy()
        ]
        shown = differ[["list", KEY, column, f"{column}__want"]].head(limit)
        for where, key, value, wanted in shown.itertuples(index=False, name=None):
            problems.append(
                f"{where}: household {key}: {column} is {value!r}, {SCORES} says {wanted!r}"
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
        return [result(LIST_ROWS, [scores_error or f"{SCORES} could not be read"], "")]
    if not lists and not unreadable:
        return [result(LIST_ROWS, [f"no list to compare with {SCORES}"], "")]
    problems = [f"{name}: not readable ({why})" for name, why in sorted(unreadable.items())]
    problems += list_row_problems(lists, scores, round_label, selection_names)
    rows = sum(len(frame) for frame in lists.values())
    what = next(iter(lists)) if len(lists) == 1 else f"{len(lists)} lists"
    return [
        result(
            LIST_ROWS,
            problems,
            f"{what}: {rows:,} rows have the household, tier, rank, risk and reasons of {SCORES}",
        )
    ]
