"""What a retention run destroys: every household-level dataset's rows, files and folders of
months before the cut (``docs/retention.md``). Finding them reads files and changes nothing.

Each dataset is dated by one month: a crisis signal by the month it was reported (collected),
a past visit by its round, a feature round by its as-of month, a round's files by the round, an
imported answer by its round, a truth row by its month, a model's input example by the as-of
month of its training. Tables that hold many months lose their old rows (the file is rewritten);
datasets of one old month lose their household-level files (the folder or file goes). Aggregates
(a round's manifest, report overview and ministry table, shadow summaries), digests, validation
records and the ledger stay.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.config import Config
from pipeline.datasets import (
    PARTITIONED_RAW_TABLES,
    RAW_MONTH_COLUMNS,
    OutputLayout,
    TableLayout,
)
from pipeline.datasets.features import LABELS_TABLE
from pipeline.datasets.features import MANIFEST as FEATURES_MANIFEST
from pipeline.datasets.outcomes import IMPORT_LOG, REJECTED_DIR
from pipeline.datasets.rounds import (
    IMPORTANCE,
    MANIFEST,
    REPLACED,
    REPORT,
    REPORT_AI_FILE,
    REPORT_AI_FILE_PAGE,
    REPORT_INDEX,
    REPORT_MINISTRY,
    REPORT_RECORD,
    SHADOW,
    SHADOW_FAIRNESS,
    SHADOW_OVERLAP,
    SHADOW_SUMMARY,
)
from pipeline.datasets.truth import TRUTH_TABLE, UNTREATED_TABLE
from pipeline.io import inside_repository, sha256_file
from pipeline.months import format_month, parse_month, to_month_index
from pipeline.tracking import names

log = logging.getLogger(__name__)

# The month column that dates each row of a many-month table (raw tables as text, staged as
# month indexes). Households and members are the current register: they carry no month.
STAGED_MONTH_COLUMNS = RAW_MONTH_COLUMNS  # ingest keeps the columns (as month indexes)
# The synthetic truth: the hidden state per month, supports by contact month, signals not yet
# delivered by the month they will be reported.
TRUTH_MONTH_COLUMNS = {
    TRUTH_TABLE: "month",
    UNTREATED_TABLE: "month",  # an advanced world's need before each advance's contacts
    "supports": "contact_month",
    "pending_events": "reported_month",
}
LABELS_MONTH_COLUMN = "round_month"
STAGED_MANIFEST = "_manifest.json"
# The files of an old round that stay: aggregates and digests (everything else goes: scores,
# lists, call files, 읍면동 pages, the follow-up page, explanations, export bundles, shadow scores).
ROUND_AGGREGATES = frozenset(
    {MANIFEST, IMPORTANCE}
    | {
        f"{REPORT}/{name}"
        for name in (
            REPORT_INDEX,
            REPORT_RECORD,
            REPORT_MINISTRY,
            REPORT_AI_FILE,
            REPORT_AI_FILE_PAGE,
        )
    }
)
SHADOW_AGGREGATES = frozenset({SHADOW_SUMMARY, SHADOW_OVERLAP, SHADOW_FAIRNESS})
MODEL_EXAMPLES = ("input_example.json", "serving_input_example.json")


@dataclass
class Action:
    """One thing a retention run destroys.

    ``kind``: ``rows`` (the file is rewritten without its old rows), ``file`` or ``folder``
    (removed whole; ``files`` names every file with its sha256), ``manifest`` (a manifest whose
    recorded digests follow the rewritten files). ``month``: the newest month destroyed.
    """

    dataset: str
    path: Path
    kind: str
    rows: int = 0  # rows destroyed
    rows_kept: int = 0
    sha256: str | None = None  # of the file before (rows, file, manifest)
    files: dict[str, str] = field(default_factory=dict)  # folder: relative file -> sha256
    column: str | None = None  # rows: the month column
    month: int | None = None
    new_sha256: str | None = None  # rows, manifest: after the rewrite (known once prepared)

    def described(self, root: Path) -> dict[str, object]:
        """The action as the destruction record and the dry run name it."""
        out: dict[str, object] = {
            "dataset": self.dataset,
            "path": shown_path(self.path, root),
            "action": self.kind,
        }
        if self.kind == "rows":
            out |= {"column": self.column, "rows": self.rows, "rows_kept": self.rows_kept}
        if self.kind in ("file", "folder") and self.rows:
            out["rows"] = self.rows
        if self.month is not None:
            out["newest_month"] = format_month(self.month)
        if self.kind == "folder":
            out["files"] = dict(sorted(self.files.items()))
        else:
            out["sha256"] = self.sha256
        if self.new_sha256 is not None:
            out["sha256_after"] = self.new_sha256
        return out

    @property
    def file_count(self) -> int:
        return len(self.files) if self.kind == "folder" else 1


def shown_path(path: Path, root: Path) -> str:
    """A path relative to the output root when under it, else absolute (the raw input)."""
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return path.resolve().as_posix()


# --- reading month columns --------------------------------------------------------------------


def month_indexes(column: pa.ChunkedArray) -> np.ndarray:
    """Month indexes (float, NaN: no month) of a column of ``YYYY-MM`` text or month indexes."""
    values = to_month_index(column.to_pandas())
    return values.astype("Float64").to_numpy(dtype="float64", na_value=np.nan)


def rows_before(path: Path, column: str, cut: int) -> tuple[int, int, int | None]:
    """(rows before the cut, rows in all, newest month before the cut) of a Parquet file."""
    table = pq.read_table(path, columns=[column])
    months = month_indexes(table.column(column))
    old = months < cut
    newest = int(months[old].max()) if old.any() else None
    return int(old.sum()), table.num_rows, newest


def filtered_table(path: Path, column: str, cut: int) -> pa.Table:
    """The file's table without its rows of months before the cut (rows without a month stay)."""
    table = pq.read_table(path)
    months = month_indexes(table.column(column))
    return table.filter(pa.array(~(months < cut)))


# --- the datasets -----------------------------------------------------------------------------


def _row_actions(dataset: str, files: list[Path], column: str, cut: int) -> Iterator[Action]:
    for path in files:
        if not path.is_file():
            continue
        old, total, newest = rows_before(path, column, cut)
        if old:
            yield Action(
                dataset, path, "rows", rows=old, rows_kept=total - old,
                sha256=sha256_file(path), column=column, month=newest,
            )  # fmt: skip


def _partition_files(root: Path, table: str) -> list[Path]:
    layout = TableLayout(root)
    return [layout.partition_file(table, code) for code in layout.partitions(table)]


def _folder_action(dataset: str, folder: Path, month: int) -> Action:
    files = {
        p.relative_to(folder).as_posix(): sha256_file(p)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }
    rows = sum(pq.read_metadata(folder / f).num_rows for f in files if f.endswith(".parquet"))
    return Action(dataset, folder, "folder", rows=rows, files=files, month=month)


def _file_action(dataset: str, path: Path, month: int) -> Action:
    rows = pq.read_metadata(path).num_rows if path.suffix == ".parquet" else 0
    return Action(dataset, path, "file", rows=rows, sha256=sha256_file(path), month=month)


def raw_actions(raw: Path, dataset: str, cut: int) -> list[Action]:
    """Old rows of the raw tables that carry a month (signals, past visits)."""
    return [
        action
        for table in PARTITIONED_RAW_TABLES
        if table in RAW_MONTH_COLUMNS
        for action in _row_actions(
            f"{dataset}/{table}", _partition_files(raw, table), RAW_MONTH_COLUMNS[table], cut
        )
    ]


def truth_actions(truth: Path, dataset: str, cut: int) -> list[Action]:
    """Old rows of the hidden truth (synthetic data: each household's state per month)."""
    return [
        action
        for table, column in TRUTH_MONTH_COLUMNS.items()
        for action in _row_actions(
            f"{dataset}/{table}", _partition_files(truth, table), column, cut
        )
    ]


def staged_actions(staged: Path, cut: int) -> list[Action]:
    """Old rows of the staged tables, then their manifest's digests."""
    actions = [
        action
        for table, column in STAGED_MONTH_COLUMNS.items()
        for action in _row_actions(f"staged/{table}", _partition_files(staged, table), column, cut)
    ]
    manifest = staged / STAGED_MANIFEST
    if actions and manifest.is_file():
        actions.append(
            Action("staged/manifest", manifest, "manifest", sha256=sha256_file(manifest))
        )
    return actions


def _month_folders(parent: Path, prefix: str) -> Iterator[tuple[Path, int]]:
    if not parent.is_dir():
        return
    for folder in sorted(parent.iterdir()):
        if not folder.is_dir() or not folder.name.startswith(prefix):
            continue
        try:
            yield folder, parse_month(folder.name.removeprefix(prefix)[:7])
        except ValueError:
            continue


def feature_actions(features: Path, cut: int) -> list[Action]:
    """Feature rounds of an old as-of month go whole; a later one loses the labels of old rounds
    (its labels table holds every earlier round's visits), and its manifest follows."""
    actions: list[Action] = []
    for folder, month in _month_folders(features, "as_of="):
        if month < cut:
            actions.append(_folder_action("features", folder, month))
            continue
        rows = list(
            _row_actions(
                "features/labels",
                sorted((folder / LABELS_TABLE).glob("*/*.parquet")),
                LABELS_MONTH_COLUMN,
                cut,
            )
        )
        actions += rows
        manifest = folder / FEATURES_MANIFEST
        if rows and manifest.is_file():
            actions.append(
                Action("features/manifest", manifest, "manifest", sha256=sha256_file(manifest))
            )
    return actions


def round_actions(rounds: Path, cut: int) -> list[Action]:
    """Household-level files of old rounds (and of old rounds replaced with ``score --force``);
    their aggregates stay."""
    folders = list(_month_folders(rounds, ""))
    folders += list(_month_folders(rounds / REPLACED, ""))
    actions = []
    for folder, month in folders:
        if month >= cut:
            continue
        for path in sorted(folder.rglob("*")):
            if not path.is_file():
                continue
            relative = path.relative_to(folder).as_posix()
            if relative in ROUND_AGGREGATES or _shadow_aggregate(relative):
                continue
            actions.append(_file_action(f"rounds/{folder.name}", path, month))
    return actions


def _shadow_aggregate(relative: str) -> bool:
    parts = relative.split("/")
    return parts[0] == SHADOW and parts[-1] in SHADOW_AGGREGATES


def outcome_actions(outcomes: Path, cut: int) -> list[Action]:
    """The outcomes and calls stores of old rounds, and the rejected rows of their imports (the
    import log, counts and digests only, stays)."""
    actions = [
        _folder_action("outcomes", folder, month)
        for folder, month in _month_folders(outcomes, "round=")
        if month < cut
    ]
    log = outcomes / IMPORT_LOG
    if log.is_file():
        for line in log.read_text(encoding="utf-8").splitlines():
            try:
                entry = json.loads(line)
                month = parse_month(str(entry.get("round")))
            except ValueError:
                continue
            report = entry.get("rejected_report")
            file = outcomes / str(report)
            if month < cut and report and file.is_file() and file.parent.name == REJECTED_DIR:
                actions.append(_file_action("outcomes/rejected", file, month))
    return actions


def model_example_actions(artifacts: Path, cut: int) -> list[Action]:
    """A registered model's input example is one household's row of its training data: it goes
    with the training round (the model itself holds no household row)."""
    actions = []
    if not artifacts.is_dir():
        return actions
    for model in sorted((artifacts / "models").glob("m-*/artifacts")):
        as_of = _training_as_of(model)
        if as_of is None or as_of >= cut:
            continue
        for name in MODEL_EXAMPLES:
            if (model / name).is_file():
                actions.append(_file_action("mlflow/model input example", model / name, as_of))
    return actions


def _training_as_of(model_dir: Path) -> int | None:
    """The newest round the training that logged a model read (its run's feature folders,
    next to it in the store), from the model's ``MLmodel`` file; None when it cannot be told."""
    mlmodel = model_dir / "MLmodel"
    run_id = None
    if mlmodel.is_file():
        for line in mlmodel.read_text(encoding="utf-8").splitlines():
            if line.startswith("run_id:"):
                run_id = line.split(":", 1)[1].strip()
    if not run_id:
        return None
    run = model_dir.parents[2] / run_id / "artifacts"
    feature_folders = run / names.FEATURE_FOLDERS
    if not feature_folders.is_file():
        return None
    months = [parse_month(m) for m in json.loads(feature_folders.read_text(encoding="utf-8"))]
    return max(months) if months else None


def plan(config: Config, root: Path, cut: int, nested: bool = True) -> list[Action]:
    """Everything under the output root ``root`` (and the configured raw and truth inputs, for
    the main root) that holds household-level data of months before ``cut``. Inputs inside the
    repository (the committed sample in ``data_samples/``) are never rewritten."""
    layout = OutputLayout(root)
    actions: list[Action] = []
    raws = [layout.raw]
    truths = [layout.truth]
    if nested:  # the configured inputs, unless they are the repository's committed sample
        for given, found in (
            (Path(config.paths.raw_input), raws),
            (Path(config.paths.truth_input), truths),
        ):
            if inside_repository(given):
                log.warning("retention: %s lies inside the repository: left as it is", given)
            else:
                found.append(given)
    for raw in _unique(raws):
        actions += raw_actions(raw, "raw", cut)
    for truth in _unique(truths):
        actions += truth_actions(truth, "truth", cut)
    actions += staged_actions(layout.staged, cut)
    actions += feature_actions(root / "features", cut)
    actions += round_actions(layout.rounds, cut)
    actions += outcome_actions(layout.outcomes, cut)
    actions += model_example_actions(layout.mlflow / "artifacts", cut)
    if nested:  # the scratch output roots of bench and simulate hold the same datasets
        for scratch in [layout.bench_work, *_policy_roots(layout.simulate_work)]:
            if scratch.is_dir():
                actions += plan(config, scratch, cut, nested=False)
    return actions


def _policy_roots(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []


def _unique(paths: list[Path]) -> list[Path]:
    seen: dict[Path, Path] = {}
    for path in paths:
        if path.is_dir():
            seen.setdefault(path.resolve(), path)
    return list(seen.values())
