"""The retention stage: find household-level data older than the retention period, destroy it
without ever leaving a dataset half destroyed, and record the destruction in the ledger."""

from __future__ import annotations

import logging
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipeline.config import Config
from pipeline.lineage import events, ledger
from pipeline.months import format_month
from pipeline.retention import apply
from pipeline.retention.plan import Action, plan

log = logging.getLogger(__name__)


def rule_text(period_months: int) -> str:
    """The rule a destruction record names."""
    return (
        f"retention.period_months {period_months}: household-level data older than "
        f"{period_months} months is destroyed (social-security information: 5 years; PIPA §21)"
    )


@dataclass(frozen=True)
class Outcome:
    """What a retention run found (dry run) or destroyed, and its ledger record."""

    cut: int
    actions: list[Action]
    record: dict[str, Any] | None
    resumed: dict[str, Any] | None = None

    @property
    def rows(self) -> int:
        return sum(a.rows for a in self.actions)

    @property
    def files(self) -> int:
        return sum(a.file_count for a in self.actions if a.kind != "manifest")

    def per_dataset(self) -> list[tuple[str, int, int]]:
        """(dataset, files, rows) in the order found."""
        files: Counter[str] = Counter()
        rows: Counter[str] = Counter()
        for action in self.actions:
            if action.kind == "manifest":
                continue
            files[action.dataset] += action.file_count
            rows[action.dataset] += action.rows
        return [(name, files[name], rows[name]) for name in files]


def destruction_record(
    config: Config, root: Path, actions: list[Action], today: str, cut: int
) -> dict[str, Any]:
    """The ledger facts of one run (pure but for the time and the run id)."""
    kept = [a for a in actions if a.kind != "manifest"]
    return {
        "run": uuid.uuid4().hex,
        "destroyed_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "today": today,
        "cut": format_month(cut),
        "period_months": config.retention.period_months,
        "rule": rule_text(config.retention.period_months),
        "rows": sum(a.rows for a in kept),
        "files": sum(a.file_count for a in kept),
        "rounds": sorted(
            {a.dataset.split("/", 1)[1] for a in kept if a.dataset.startswith("rounds/")}
        ),
        "datasets": [a.described(root) for a in actions],
    }


def retain(config: Config, today: str, cut: int, dry_run: bool = False) -> Outcome:
    """Destroy (or, ``dry_run``, only find) what is older than ``cut`` under the output root, the
    raw and truth inputs and the scratch roots; one ledger record per run that destroyed
    anything. The caller holds the output root's lock."""
    root = Path(config.paths.output_root)
    resumed = None
    if not dry_run:
        ledger.check_writable(root)
        resumed = apply.resume(root, lambda record: events.data_destroyed(root, record))
        apply.sweep([root, Path(config.paths.raw_input), Path(config.paths.truth_input)])
    actions = plan(config, root, cut)
    if dry_run or not actions:
        return Outcome(cut, actions, None, resumed)
    apply.prepare(actions, cut)
    try:
        record = destruction_record(config, root, actions, today, cut)
        steps = apply.moves(actions)
        apply.write_journal(root, steps, record)
    except BaseException:
        apply.discard_prepared(actions)
        raise
    apply.commit(steps)
    events.data_destroyed(root, record)
    apply.journal_file(root).unlink()
    log.info(
        "retention: destroyed %d rows in %d files before %s",
        record["rows"],
        record["files"],
        record["cut"],
    )
    return Outcome(cut, actions, record, resumed)
