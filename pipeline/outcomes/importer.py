"""``outreach outcomes import``: returned lists in, checked answers merged into the outcomes store.

The thin I/O wrapper around the pure parts, in three phases (:func:`import_files`):

1. read each returned file (:mod:`pipeline.outcomes.returned`) and normalise it
   (:mod:`pipeline.outcomes.normalise`) against the scored round and the household register,
   each read once per import (:class:`RoundInputs`); a file that cannot be read fails alone;
2. validate with Great Expectations (:mod:`pipeline.outcomes.checks`): one run per round for
   the rows of all its files;
3. per file, in the order given: merge (:func:`pipeline.datasets.outcomes.merge_outcomes`) into
   the round's outcomes, written atomically, and write the rejection report, the import log line
   and the ledger entry, exactly as if the file had been imported alone.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline.catalogue import OutcomeCatalogue, ServiceCatalogue, load_services
from pipeline.catalogues import load_catalogues
from pipeline.config import Config
from pipeline.datasets import OutputLayout, TableLayout
from pipeline.datasets.outcomes import (
    import_log_file,
    merge_outcomes,
    outcomes_root,
    read_round_outcomes,
    rejection_file,
    round_outcomes_file,
    skipped_mask,
    write_round_outcomes,
)
from pipeline.datasets.rounds import SCORES
from pipeline.errors import DataError
from pipeline.io import sha256_file, write_bytes
from pipeline.lineage import events, ledger
from pipeline.locks import SHORT_WAIT_S, hold
from pipeline.outcomes.checks import (
    REPORT_COLUMNS,
    RowCheck,
    RowValidator,
    rejection_bytes,
    rejection_table,
    row_checks,
)
from pipeline.outcomes.normalise import (
    Normalised,
    RoundFacts,
    accepted_outcomes,
    checked_rows,
    file_round,
    fold,
    register_emd,
)
from pipeline.outcomes.returned import ROW, ReturnedList, read_returned_list
from pipeline.textsafe import shown_or_withheld
from pipeline.vocabulary import LOCAL_DISCRETION, PHONE, VISIT

log = logging.getLogger(__name__)

IMPORTED = "imported"
NOTHING_NEW = "nothing new"
NOTHING_VALID = "nothing valid"
# Case statuses (configs/outcomes.yaml) of outcomes that say the household was contacted: a skip
# override on a row with such an outcome contradicts it and is rejected (docs/outcomes.md,
# "Overrides"); unreachable and in_progress may go with a skip (tried, then given up).
CONTACTED_STATUSES = ("linked", "visited")


@dataclass(frozen=True)
class ImportResult:
    """What one file's import did."""

    file: Path
    sha256: str
    round: str
    status: str  # IMPORTED, NOTHING_NEW or NOTHING_VALID
    counts: dict[str, int]
    rejections: pd.DataFrame
    report: Path | None
    outcomes_file: Path
    overrides: dict[str, int] = field(default_factory=dict)  # skipped, added_with_reason

    @property
    def ok(self) -> bool:
        return self.status != NOTHING_VALID


def _read_scores(config: Config, round_label: str) -> pd.DataFrame:
    path = OutputLayout(config.paths.output_root).round(round_label) / SCORES
    if not path.is_file():
        raise DataError(
            f"round {round_label} was not scored here ({path} not found): import lists into the "
            "output root whose `outreach score` wrote them"
        )
    columns = [
        "household_key",
        "sigungu_code",
        "emd_code",
        "tier",
        "selection_reason",
        "selection_probability",
    ]
    frame = pd.read_parquet(path, columns=columns)
    for column in ("household_key", "sigungu_code", "emd_code", "tier", "selection_reason"):
        frame[column] = frame[column].astype("string")
    return frame


def empty_register() -> pd.DataFrame:
    return pd.DataFrame({"household_key": pd.Series(dtype="string"),
                         "emd_code": pd.Series(dtype="string")})  # fmt: skip


def _register_part(config: Config, code: str, scores: pd.DataFrame) -> pd.DataFrame:
    """household_key, emd_code of every household of one 시군구 (its staged households; the
    round's scores when the staged partition is missing)."""
    layout = TableLayout(OutputLayout(config.paths.output_root).staged)
    path = layout.partition_file("households", code)
    if path.is_file():
        part = pd.read_parquet(path, columns=["household_key", "emd_code"])
    else:
        part = scores.loc[scores["sigungu_code"] == code, ["household_key", "emd_code"]]
    return part.astype({"household_key": "string", "emd_code": "string"})


class RoundInputs:
    """What the files of one import are checked against, read once per import however many
    files name it: each round's scores, each 시군구's households."""

    def __init__(self, config: Config, catalogue: OutcomeCatalogue) -> None:
        self.config = config
        self.catalogue = catalogue
        self.services = load_services(Path(config.paths.services))
        self._scores: dict[str, pd.DataFrame] = {}
        self._facts: dict[str, RoundFacts] = {}
        self._parts: dict[tuple[str, str], pd.DataFrame] = {}
        self._by_key: dict[tuple[str, frozenset[str]], tuple[pd.DataFrame, pd.Series]] = {}

    def scores(self, round_label: str) -> pd.DataFrame:
        """The round's scores; DataError when the round was not scored here (each time)."""
        if round_label not in self._scores:
            self._scores[round_label] = _read_scores(self.config, round_label)
        return self._scores[round_label]

    def facts(self, round_label: str) -> RoundFacts:
        """The round's :func:`list_facts`."""
        if round_label not in self._facts:
            interval = self.config.window.round_interval_months
            scores = self.scores(round_label)
            self._facts[round_label] = list_facts(
                scores, round_label, interval, self.catalogue, self.services
            )
        return self._facts[round_label]

    def register(self, round_label: str, sigungu_codes: set[str]) -> pd.DataFrame:
        """household_key, emd_code of every household of these 시군구."""
        parts = []
        for code in sorted(sigungu_codes):
            if (round_label, code) not in self._parts:
                part = _register_part(self.config, code, self.scores(round_label))
                self._parts[(round_label, code)] = part
            parts.append(self._parts[(round_label, code)])
        if not parts:
            return empty_register()
        return pd.concat(parts, ignore_index=True)

    def register_by_key(
        self, round_label: str, sigungu_codes: set[str]
    ) -> tuple[pd.DataFrame, pd.Series]:
        """:meth:`register` and its :func:`register_emd`, built once per round and 시군구 for
        every file that names them (an import of a country's lists has thousands)."""
        key = (round_label, frozenset(sigungu_codes))
        if key not in self._by_key:
            register = self.register(round_label, sigungu_codes)
            self._by_key[key] = (register, register_emd(register))
        return self._by_key[key]


def added_marks(catalogue: OutcomeCatalogue) -> frozenset[str]:
    """Selection texts that mark a row as added by the caseworker (Korean, English, code)."""
    reason = next(r for r in catalogue.selection_reasons if r.code == LOCAL_DISCRETION)
    return frozenset(fold(t) for t in (reason.name_ko, reason.name_en, reason.code))


def list_facts(
    scores: pd.DataFrame,
    round_label: str,
    interval_months: int,
    catalogue: OutcomeCatalogue,
    services: ServiceCatalogue | None = None,
) -> RoundFacts:
    """What every file of a round is checked against: the round's list and 읍면동 and the
    catalogue facts, with an empty register (:func:`round_facts` adds a file's); pure."""
    emd_sigungu = dict(
        zip(scores["emd_code"].astype(str), scores["sigungu_code"].astype(str), strict=True)
    )
    listed = scores[scores["tier"].isin([VISIT, PHONE])]
    offered = services.services if services is not None else ()
    return RoundFacts(
        round_label=round_label,
        interval_months=interval_months,
        listed=listed[
            ["household_key", "emd_code", "selection_reason", "selection_probability"]
        ].reset_index(drop=True),
        register=empty_register(),
        emd_sigungu=emd_sigungu,
        outcome_codes=tuple(catalogue.codes),
        resolved_codes=frozenset(o.code for o in catalogue.outcomes if o.resolved),
        outcome_names={fold(n): o.code for o in catalogue.outcomes for n in (o.name_ko, o.name_en)},
        added_marks=added_marks(catalogue),
        outcome_labels={o.code: o.name_ko for o in catalogue.outcomes},
        override_names={
            fold(t): r.code
            for r in catalogue.override_reasons
            for t in (r.code, r.name_ko, r.name_en)
        },
        override_actions={r.code: r.action for r in catalogue.override_reasons},
        override_labels={r.code: r.name_ko for r in catalogue.override_reasons},
        contacted_codes=frozenset(
            o.code for o in catalogue.outcomes if o.status in CONTACTED_STATUSES
        ),
        service_names={fold(t): v.code for v in offered for t in (v.code, v.name_ko, v.name_en)},
        service_outcomes={v.code: v.outcome for v in offered},
        service_labels={v.code: v.name_ko for v in offered},
    )


def round_facts(
    config: Config,
    round_label: str,
    emd_codes: set[str],
    catalogue: OutcomeCatalogue,
    inputs: RoundInputs | None = None,
) -> RoundFacts:
    """The round's list, the register of the 시군구 of ``emd_codes`` (a file's) and the
    catalogue facts, read through ``inputs`` (shared by the files of one import)."""
    inputs = inputs or RoundInputs(config, catalogue)
    facts = inputs.facts(round_label)
    sigungu = {facts.emd_sigungu[e] for e in emd_codes if e in facts.emd_sigungu}
    register, by_key = inputs.register_by_key(round_label, sigungu)
    return replace(facts, register=register, register_by_key=by_key)


def report_csv(rejections: pd.DataFrame) -> bytes:
    """The rejection report in English (row, field, household_key, reason) as CSV bytes (UTF-8
    with a BOM); the file written for the office is Korean: :func:`checks.rejection_table`."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(REPORT_COLUMNS)
    for row in rejections[list(REPORT_COLUMNS)].itertuples(index=False):
        writer.writerow(["" if pd.isna(v) else str(v) for v in row])
    return b"\xef\xbb\xbf" + buffer.getvalue().encode("utf-8")


def append_log(config: Config, record: dict) -> None:
    path = import_log_file(config)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as out:
        out.write(json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n")


@dataclass(frozen=True)
class ReadList:
    """A returned list read and normalised: what its checks and its merge start from."""

    returned: ReturnedList
    round_label: str
    facts: RoundFacts
    normalised: Normalised

    @property
    def checked(self) -> pd.DataFrame:
        return self.normalised.checked


def read_list(
    config: Config, path: Path, catalogue: OutcomeCatalogue, inputs: RoundInputs
) -> ReadList:
    """Read and normalise one returned list; DataError when the file as a whole cannot be
    imported (unreadable, no single round, a round not scored here)."""
    returned = read_returned_list(path)
    round_label = file_round(path, returned.rows)
    emds = set(returned.rows["emd_code"].dropna().str.strip())
    facts = round_facts(config, round_label, emds, catalogue, inputs)
    return ReadList(returned, round_label, facts, checked_rows(returned.rows, facts))


def check_by_round(
    items: Sequence[Any],
    validator: RowValidator,
    checks_of: Callable[[list[Any]], list[RowCheck]],
) -> list[pd.DataFrame]:
    """Each read file's rejections (``items``: each with ``round_label`` and ``checked``), with
    one Great Expectations run per round however many files answer for it; ``checks_of`` gives
    a round's checks from its files (the same for every file of the round)."""
    rejections: dict[int, pd.DataFrame] = {}
    for positions in rounds_of(items).values():
        group = [items[i] for i in positions]
        frames = [item.checked for item in group]
        found = validator.rejections_of_files(frames, checks_of(group))
        rejections.update(zip(positions, found, strict=True))
    return [rejections[i] for i in range(len(items))]


def rounds_of(items: Sequence[Any]) -> dict[str, list[int]]:
    """Round -> the positions of its files in ``items`` (each with a ``round_label``), in
    order; pure."""
    positions: dict[str, list[int]] = {}
    for i, item in enumerate(items):
        positions.setdefault(item.round_label, []).append(i)
    return positions


def import_in_phases(
    config: Config,
    command: str,
    paths: Sequence[Path],
    read: Callable[[Path], Any],
    check: Callable[[list[Any]], list[pd.DataFrame]],
    apply: Callable[[Any, pd.DataFrame], ImportResult],
) -> list[ImportResult | DataError]:
    """Import files in three phases: ``read`` each (a DataError stops that file alone),
    ``check`` all that were read (their rejections, in order), then ``apply`` each with its
    rejections in the order given, under the output root's lock held from the first file to
    the last (re-entered under ``outreach outcomes``: an import running at the same time waits,
    so that neither replaces the other's answers). The lineage ledger is verified once, under
    the lock, before the first file is applied: a ledger that does not verify stops every file
    (each ledger entry is still added only to a chain that verifies). Per file its result or
    its DataError."""
    read_files: list[Any] = []
    for path in paths:
        try:
            read_files.append(read(path))
        except DataError as exc:
            read_files.append(exc)
    items = [item for item in read_files if not isinstance(item, DataError)]
    if not items:
        return read_files
    rejections = iter(check(items))  # in the order of ``items``
    results: list[ImportResult | DataError] = []
    with hold(config.paths.output_root, command, wait_s=SHORT_WAIT_S):
        try:
            ledger.check_writable(config.paths.output_root)
        except DataError as exc:
            return [item if isinstance(item, DataError) else exc for item in read_files]
        for item in read_files:
            if isinstance(item, DataError):
                results.append(item)
                continue
            try:
                results.append(apply(item, next(rejections)))
            except DataError as exc:
                results.append(exc)
    return results


def import_files(
    config: Config,
    paths: Sequence[Path],
    validator: RowValidator,
    catalogue: OutcomeCatalogue | None = None,
) -> list[ImportResult | DataError]:
    """Import returned lists, each file on its own (its merge, rejection file, log line and
    ledger entry, in the order given) but the rows of all files of a round checked in one
    Great Expectations run; per file its :class:`ImportResult`, or the DataError that stopped
    it (the other files go on)."""
    catalogue = catalogue or load_catalogues(config).outcomes
    inputs = RoundInputs(config, catalogue)
    stored = Stored(config, read_round_outcomes, write_round_outcomes)  # read under the lock
    return import_in_phases(
        config,
        "outreach outcomes import",
        paths,
        read=lambda path: read_list(config, path, catalogue, inputs),
        check=lambda lists: check_by_round(
            lists, validator, lambda group: row_checks(group[0].facts)
        ),
        apply=lambda item, rejections: apply_list(config, item, rejections, catalogue, stored),
    )


def import_file(
    config: Config,
    path: Path,
    validator: RowValidator,
    catalogue: OutcomeCatalogue | None = None,
) -> ImportResult:
    """Import one returned list; DataError when the file as a whole cannot be imported."""
    (result,) = import_files(config, [path], validator, catalogue)
    if isinstance(result, DataError):
        raise result
    return result


class Stored:
    """A store's rows of the rounds an import writes (``read`` and ``write``: a round's
    outcomes or call results), each read once per import: the files are merged one after the
    other into what the one before left. Used under the output root's lock only."""

    def __init__(
        self,
        config: Config,
        read: Callable[[Config, str], pd.DataFrame | None],
        write: Callable[[Config, str, pd.DataFrame], Path],
    ) -> None:
        self.config = config
        self._read, self._write = read, write
        self._rows: dict[str, pd.DataFrame | None] = {}

    def rows(self, round_label: str) -> pd.DataFrame | None:
        if round_label not in self._rows:
            self._rows[round_label] = self._read(self.config, round_label)
        return self._rows[round_label]

    def write(self, round_label: str, rows: pd.DataFrame) -> None:
        self._write(self.config, round_label, rows)
        self._rows[round_label] = rows


def apply_list(
    config: Config,
    item: ReadList,
    rejections: pd.DataFrame,
    catalogue: OutcomeCatalogue,
    stored: Stored,
) -> ImportResult:
    """Merge one checked list's accepted rows into its round's outcomes and write its rejection
    file, import log line and ledger entry; under the output root's lock, the ledger verified
    (:func:`import_files`)."""
    returned, round_label, facts = item.returned, item.round_label, item.facts
    normalised = item.normalised
    checked = normalised.checked
    rejected_rows = set(rejections["row"].astype(int))
    accepted = checked[~checked[ROW].isin(rejected_rows)].reset_index(drop=True)
    incoming = accepted_outcomes(accepted, facts, returned.sha256)
    with hold(config.paths.output_root, "outreach outcomes import", wait_s=SHORT_WAIT_S):
        merge = merge_outcomes(stored.rows(round_label), incoming)
        target = round_outcomes_file(config, round_label)
        if len(accepted) == 0:
            status = NOTHING_VALID
        elif merge.changed:
            stored.write(round_label, merge.rows)
            status = IMPORTED
        else:
            status = NOTHING_NEW
        report = None
        if len(rejections):
            # In Korean, in the returned file's format: the office's own headers, 행 번호, 사유.
            report = rejection_file(config, returned.sha256, returned.kind)
            table = rejection_table(rejections, returned.rows, catalogue)
            write_bytes(rejection_bytes(table, returned.kind), report)
        counts = {
            "rows": len(returned.rows),
            "not_filled_in": normalised.blank_rows,
            "repeated": normalised.repeated_rows,
            "rejected": len(rejected_rows),
            "accepted": len(accepted),
            "added_by_caseworker": int(incoming["added_by_caseworker"].sum()),
            "new": merge.new if status != NOTHING_VALID else 0,
            "replaced": merge.replaced if status != NOTHING_VALID else 0,
            "unchanged": merge.unchanged if status != NOTHING_VALID else 0,
        }
        # Overrides accepted from this file: households skipped, and added with an add reason.
        overrides = {
            "skipped": int(skipped_mask(incoming).sum()),
            "added_with_reason": int(
                (incoming["added_by_caseworker"] & incoming["override_code"].notna()).sum()
            ),
        }
        append_log(
            config,
            {
                "imported_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "file": returned.path.name,
                "file_sha256": returned.sha256,
                "format": returned.kind,
                "round": round_label,
                "status": status,
                "counts": counts,
                "overrides": overrides,
                "rejected_report": None
                if report is None
                else report.relative_to(outcomes_root(config)).as_posix(),
                "outcomes_file": target.relative_to(outcomes_root(config)).as_posix(),
                "outcomes_file_sha256": sha256_file(target) if target.is_file() else None,
            },
        )
        if status == IMPORTED:
            events.outcomes_imported(
                config.paths.output_root,
                file=returned.path.name,
                file_sha256=returned.sha256,
                round_label=round_label,
                counts=counts,
                outcomes_file_sha256=sha256_file(target),
            )
    log.info("imported %s: %s %s", returned.path.name, status, counts)
    return ImportResult(
        file=returned.path,
        sha256=returned.sha256,
        round=round_label,
        status=status,
        counts=counts,
        rejections=rejections,
        report=report,
        outcomes_file=target,
        overrides=overrides,
    )


def rejection_lines(result: ImportResult, audience: str, shown: int) -> list[str]:
    """The terminal's lines about a file's rejected rows (English; the rejection file itself is
    Korean, for ``audience``): where the file is, and the first ``shown`` rejections, a household
    key only when it may be echoed."""
    if result.report is None:
        return []
    lines = [f"  rejected rows (in Korean, for {audience}) -> {result.report}"]
    first = result.rejections.head(shown)
    for r in first.itertuples(index=False):
        key = shown_or_withheld(r.household_key)  # never a name, phone or resident number
        lines.append(f"    row {r.row} {r.field}{f' {key}' if key else ''}: {r.reason}")
    if len(result.rejections) > len(first):
        lines.append(f"    ... {len(result.rejections) - len(first)} more in the report")
    return lines
