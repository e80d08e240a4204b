"""``outreach outcomes import``: returned lists in, checked answers merged into the outcomes store.

The thin I/O wrapper around the pure parts: it reads the returned file
(:mod:`pipeline.outcomes.returned`), the scored round and the household register, normalises
(:mod:`pipeline.outcomes.normalise`), validates with Great Expectations
(:mod:`pipeline.outcomes.checks`), merges (:func:`pipeline.datasets.outcomes.merge_outcomes`) and
writes the round's outcomes file atomically, the rejection report and the import log.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from pipeline.catalogue import OutcomeCatalogue
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
    RowValidator,
    rejection_bytes,
    rejection_table,
    row_checks,
)
from pipeline.outcomes.normalise import (
    RoundFacts,
    accepted_outcomes,
    checked_rows,
    file_round,
    fold,
)
from pipeline.outcomes.returned import ROW, read_returned_list
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


def _register(config: Config, sigungu_codes: set[str], scores: pd.DataFrame) -> pd.DataFrame:
    """household_key, emd_code of every household of these 시군구 (staged households; the
    round's scores where a staged partition is missing)."""
    layout = TableLayout(OutputLayout(config.paths.output_root).staged)
    parts = []
    for code in sorted(sigungu_codes):
        path = layout.partition_file("households", code)
        if path.is_file():
            part = pd.read_parquet(path, columns=["household_key", "emd_code"])
        else:
            part = scores.loc[scores["sigungu_code"] == code, ["household_key", "emd_code"]]
        parts.append(part.astype({"household_key": "string", "emd_code": "string"}))
    if not parts:
        return pd.DataFrame({"household_key": pd.Series(dtype="string"),
                             "emd_code": pd.Series(dtype="string")})  # fmt: skip
    return pd.concat(parts, ignore_index=True)


def added_marks(catalogue: OutcomeCatalogue) -> frozenset[str]:
    """Selection texts that mark a row as added by the caseworker (Korean, English, code)."""
    reason = next(r for r in catalogue.selection_reasons if r.code == LOCAL_DISCRETION)
    return frozenset(fold(t) for t in (reason.name_ko, reason.name_en, reason.code))


def round_facts(
    config: Config, round_label: str, emd_codes: set[str], catalogue: OutcomeCatalogue
) -> RoundFacts:
    """The round's list, the register of the 시군구 concerned and the catalogue facts."""
    scores = _read_scores(config, round_label)
    emd_sigungu = dict(
        zip(scores["emd_code"].astype(str), scores["sigungu_code"].astype(str), strict=True)
    )
    sigungu = {emd_sigungu[e] for e in emd_codes if e in emd_sigungu}
    listed = scores[scores["tier"].isin([VISIT, PHONE])]
    return RoundFacts(
        round_label=round_label,
        interval_months=config.window.round_interval_months,
        listed=listed[
            ["household_key", "emd_code", "selection_reason", "selection_probability"]
        ].reset_index(drop=True),
        register=_register(config, sigungu, scores),
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
    )


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


def import_file(
    config: Config,
    path: Path,
    validator: RowValidator,
    catalogue: OutcomeCatalogue | None = None,
) -> ImportResult:
    """Import one returned list; DataError when the file as a whole cannot be imported."""
    catalogue = catalogue or load_catalogues(config).outcomes
    returned = read_returned_list(path)
    try:
        round_label = file_round(returned.rows)
    except ValueError as exc:
        raise DataError(f"{path}: {exc}") from None
    emds = set(returned.rows["emd_code"].dropna().str.strip())
    facts = round_facts(config, round_label, emds, catalogue)
    normalised = checked_rows(returned.rows, facts)
    checked = normalised.checked
    rejections = validator.rejections(checked, row_checks(facts))
    rejected_rows = set(rejections["row"].astype(int))
    accepted = checked[~checked[ROW].isin(rejected_rows)].reset_index(drop=True)
    incoming = accepted_outcomes(accepted, facts, returned.sha256)
    # Read, merge and write under the output root's lock: an import running at the same time
    # waits, so that neither replaces the other's answers (re-entered under `outreach outcomes`).
    with hold(config.paths.output_root, "outreach outcomes import", wait_s=SHORT_WAIT_S):
        ledger.check_writable(config.paths.output_root)
        merge = merge_outcomes(read_round_outcomes(config, round_label), incoming)
        target = round_outcomes_file(config, round_label)
        if len(accepted) == 0:
            status = NOTHING_VALID
        elif merge.changed:
            write_round_outcomes(config, round_label, merge.rows)
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
