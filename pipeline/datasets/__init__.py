"""Dataset names mapped to paths, in one place. Stage code asks for a dataset by name."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# Raw tables stored per 시군구 partition (folder ``sigungu=CODE``) and whole small tables.
PARTITIONED_RAW_TABLES: tuple[str, ...] = (
    "households",
    "household_members",
    "crisis_events",
    "outreach_outcomes",
)
SMALL_RAW_TABLES: tuple[str, ...] = ("regions", "district_capacity")
RAW_TABLES: tuple[str, ...] = SMALL_RAW_TABLES + PARTITIONED_RAW_TABLES
TRUTH_TABLES: tuple[str, ...] = ("household_month",)
# The month that dates each row of the raw tables that hold many months (``YYYY-MM``): a signal's
# reported (collected) month, a past visit's round. Retention destroys rows by it; validate
# refuses raw rows older than the retention period (docs/retention.md).
RAW_MONTH_COLUMNS: dict[str, str] = {
    "crisis_events": "reported_month",
    "outreach_outcomes": "round_month",
}

PARTITION_KEY = "sigungu"


@dataclass(frozen=True)
class TableLayout:
    """Where one table's files live under a root folder."""

    root: Path

    def table_dir(self, table: str) -> Path:
        return self.root / table

    def small_table_file(self, table: str) -> Path:
        return self.root / f"{table}.parquet"

    def partition_file(self, table: str, sigungu_code: str) -> Path:
        return self.root / table / f"{PARTITION_KEY}={sigungu_code}" / "part-0.parquet"

    def partitions(self, table: str) -> list[str]:
        """The 시군구 codes that have a partition of this table, sorted."""
        folder = self.table_dir(table)
        if not folder.is_dir():
            return []
        prefix = f"{PARTITION_KEY}="
        return sorted(
            p.name[len(prefix) :]
            for p in folder.iterdir()
            if p.is_dir() and p.name.startswith(prefix)
        )


@dataclass(frozen=True)
class OutputLayout:
    """The output root and its named folders (DESIGN.md, "Output root")."""

    root: Path

    @property
    def raw(self) -> Path:
        return self.root / "raw"

    @property
    def truth(self) -> Path:
        return self.root / "truth"

    @property
    def validation(self) -> Path:
        return self.root / "validation"

    @property
    def staged(self) -> Path:
        return self.root / "staged"

    @property
    def outcomes(self) -> Path:
        return self.root / "outcomes"

    @property
    def mlflow(self) -> Path:
        return self.root / "mlflow"

    @property
    def ledger(self) -> Path:
        """``ledger/lineage.jsonl``: the append-only lineage ledger (:mod:`pipeline.lineage`)."""
        return self.root / "ledger" / "lineage.jsonl"

    @property
    def bench(self) -> Path:
        return self.root / "bench"

    @property
    def bench_work(self) -> Path:
        """``bench/work/``: the scratch output root the benchmark runs its stages in."""
        return self.bench / "work"

    def bench_record(self, stage: str) -> Path:
        """``bench/<stage>.json``: the last measurement of a stage."""
        return self.bench / f"{stage}.json"

    @property
    def simulate(self) -> Path:
        """``simulate/``: the results of ``outreach simulate`` (tables, plots, its record)."""
        return self.root / "simulate"

    @property
    def simulate_work(self) -> Path:
        """``simulate/work/``: one output root per simulated policy (its world, stages, store)."""
        return self.simulate / "work"

    @property
    def describe_summary(self) -> Path:
        """``describe/summary.json``: the figures of ``outreach describe``."""
        return self.root / "describe" / "summary.json"

    def features(self, as_of: str) -> Path:
        return self.root / "features" / f"as_of={as_of}"

    @property
    def rounds(self) -> Path:
        return self.root / "rounds"

    def round(self, month: str) -> Path:
        return self.rounds / month
