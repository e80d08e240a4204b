"""Check results: read back from Great Expectations results, merged into one verdict.

GX returns results in no particular order, so each one is matched to its check by expectation
type and column(s). A result becomes a :class:`CheckResult` with the count of unexpected rows and
up to a few example keys (household keys, or row numbers for tables keyed by resident id).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import pandas as pd

from pipeline.expectations import STOP, Check, result_key
from pipeline.validate.contract import (
    FILE_ROWS_SUITE,
    KEY_HASHED,
    RAW_COLUMN_OF,
    UNIQUE_ACROSS_SUITE,
)

FILE_CHECK = "file_readable"


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one check on one table (and partition)."""

    suite: str
    table: str
    partition: str | None
    expectation: str
    column: str
    success: bool
    unexpected_count: int
    element_count: int | None
    on_failure: str
    reason: str
    examples: tuple[str, ...] = ()

    @property
    def where(self) -> str:
        return self.table if self.partition is None else f"{self.table} sigungu={self.partition}"

    def line(self) -> str:
        """One line: table, column, expectation, unexpected count, example keys, meaning."""
        if self.expectation == FILE_CHECK:
            return f"{self.where} | {self.column} | {self.expectation} | {self.reason}"
        examples = f"; e.g. {', '.join(self.examples)}" if self.examples else ""
        return (
            f"{self.where} | {self.column} | {self.expectation} | "
            f"{self.unexpected_count:,} unexpected{examples} | {self.reason}"
        )

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["examples"] = list(self.examples)
        return data


def file_failure(table: str, partition: str | None, path: str, problem: str) -> CheckResult:
    """A file that is missing, unreadable or not where it should be: always stops the run."""
    return CheckResult(
        suite="files",
        table=table,
        partition=partition,
        expectation=FILE_CHECK,
        column="(file)",
        success=False,
        unexpected_count=1,
        element_count=None,
        on_failure=STOP,
        reason=f"{path}: {problem}",
    )


def _format_value(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def format_example(entry: Mapping[str, Any], columns: Iterable[str]) -> str:
    """An example key from one ``partial_unexpected_index_list`` entry.

    Keys first (household key, round month...), then where the row is: ``sigungu=... row N``.
    """
    columns = [c for c in columns if c in entry]
    place = [c for c in columns if c in ("sigungu", "row", "first_row")]
    keys = [_format_value(entry[c]) for c in columns if c not in place]
    where = []
    if "sigungu" in place:
        where.append(f"sigungu={entry['sigungu']}")
    if "row" in place:
        where.append(f"row {_format_value(entry['row'])}")
    if "first_row" in place:
        where.append(f"first row {_format_value(entry['first_row'])}")
    location = " ".join(where)
    if keys and location:
        return f"{' '.join(keys)} ({location})"
    return " ".join(keys) or location


def _aggregate_details(check: Check, result: Mapping[str, Any]) -> tuple[int, list[str]]:
    """Unexpected count and examples of table-level and aggregate expectations."""
    observed = result.get("observed_value")
    if check.expectation == "ExpectTableColumnsToMatchSet":
        mismatched = (result.get("details") or {}).get("mismatched") or {}
        missing = list(mismatched.get("missing") or [])
        extra = list(mismatched.get("unexpected") or [])
        examples = [f"missing {c}" for c in missing] + [f"unexpected {c}" for c in extra]
        return max(len(examples), 1), examples
    if check.expectation == "ExpectColumnValuesToBeInTypeList":
        return 1, [f"found {observed}"]
    if check.expectation == "ExpectTableRowCountToBeBetween":
        return 1, [f"{observed} rows"]
    if check.expectation == "ExpectColumnDistinctValuesToContainSet":
        expected = check.kwargs.get("value_set") or []
        missing = sorted(set(expected) - set(observed or []))
        return len(missing), [f"no {value}" for value in missing]
    return 1, [f"observed {observed}"] if observed is not None else []


def read_results(
    gx_result: Mapping[str, Any],
    checks: list[Check],
    *,
    table: str,
    partition: str | None,
    example_columns: Iterable[str],
    example_keys: int,
    frame: pd.DataFrame | None = None,
) -> list[CheckResult]:
    """Match every expectation result of one suite run to its check.

    Example keys are read from the entries GX returns: dicts of the example columns, or row
    positions in ``frame`` (suites that run on large frames).
    """
    by_key = {c.key: c for c in checks}
    columns = list(example_columns)
    out: list[CheckResult] = []
    seen: set[tuple[str, str]] = set()
    for item in gx_result.get("results", []):
        config = item["expectation_config"]
        key = result_key(config["type"], config.get("kwargs") or {})
        check = by_key.get(key)
        if check is None:
            raise RuntimeError(f"GX returned a result for an unknown check {key}")
        seen.add(key)
        result = item.get("result") or {}
        exception = item.get("exception_info") or {}
        success = bool(item.get("success"))
        element_count = result.get("element_count")
        if exception.get("raised_exception"):
            message = str(exception.get("exception_message") or "error").splitlines()[0][:200]
            out.append(
                CheckResult(
                    check.suite, table, partition, check.expectation_type, check.column, False,
                    1, element_count, STOP, f"could not be evaluated: {message}",
                )
            )  # fmt: skip
            continue
        if "unexpected_count" in result:
            count = int(result["unexpected_count"] or 0)
            index_list = result.get("partial_unexpected_index_list") or []
            if index_list and frame is not None and not isinstance(index_list[0], dict):
                rows = frame.iloc[[int(p) for p in index_list]]
                index_list = rows[[c for c in columns if c in rows.columns]].to_dict("records")
            if index_list and columns and isinstance(index_list[0], dict):
                examples = [format_example(e, columns) for e in index_list]
            else:
                examples = [_format_value(v) for v in result.get("partial_unexpected_list") or []]
        elif success:
            count, examples = 0, []
        else:
            count, examples = _aggregate_details(check, result)
        unique_examples = list(dict.fromkeys(examples))[:example_keys]
        out.append(
            CheckResult(
                check.suite, table, partition, check.expectation_type, check.column, success,
                0 if success else count, element_count, check.on_failure, check.reason,
                () if success else tuple(unique_examples),
            )
        )  # fmt: skip
    missing = set(by_key) - seen
    if missing:
        raise RuntimeError(f"GX returned no result for checks {sorted(missing)}")
    return out


def stops(results: Iterable[CheckResult]) -> list[CheckResult]:
    """The failed results that stop the run."""
    return [r for r in results if not r.success and r.on_failure == STOP]


def summary_lines(failures: list[CheckResult], limit: int = 50) -> list[str]:
    """One line per failure (at most ``limit``, then a count of the rest)."""
    lines = [f.line() for f in failures[:limit]]
    if len(failures) > limit:
        lines.append(f"... and {len(failures) - limit} more (see the validation summary)")
    return lines


# Example keys name their table first where a suite spans tables: ``households (sigungu=...``.
_EXAMPLE_TABLE = re.compile(r"^([a-z_]+) \(")
_EXAMPLE_PARTITION = re.compile(r"sigungu=(\w+)")
# National suites whose failures belong to the tables named in their examples.
_SPANNING_SUITES = (UNIQUE_ACROSS_SUITE, FILE_ROWS_SUITE)


def _cause_rank(result: CheckResult) -> int:
    """Failures that explain others first: files, empty files, schemas, then the rest."""
    if result.expectation == FILE_CHECK:
        return 0
    if result.suite == FILE_ROWS_SUITE:
        return 1
    return 2 if result.suite.endswith("_schema") else 3


def raw_columns(tables: Iterable[str], column: str) -> str:
    """The raw column(s) a checked column stands for (``resident_ref`` -> ``resident_id``)."""
    names: list[str] = []
    for part in column.split(", "):
        if part == "key_hash":
            names += [KEY_HASHED[t] for t in tables if t in KEY_HASHED]
            continue
        raw = RAW_COLUMN_OF.get(part, part)
        if raw is not None:
            names += raw.split(", ")
    return ", ".join(dict.fromkeys(names)) or column


def headline(failures: list[CheckResult]) -> str:
    """The first line of a failed run: the failure that explains most, by table, partition(s),
    raw column, count and meaning (the column as the raw table names it, never a surrogate)."""
    first = min(enumerate(failures), key=lambda item: (_cause_rank(item[1]), item[0]))[1]
    if first.expectation == FILE_CHECK:
        return first.line()
    tables = [first.table]
    if first.suite in _SPANNING_SUITES:
        found = [m.group(1) for e in first.examples if (m := _EXAMPLE_TABLE.match(e))]
        tables = list(dict.fromkeys(found)) or tables
    partitions = [first.partition] if first.partition else []
    partitions += [m for e in first.examples for m in _EXAMPLE_PARTITION.findall(e)]
    partitions = list(dict.fromkeys(partitions))
    where = ", ".join(tables)
    if partitions:
        shown = ", ".join(partitions[:3]) + (" ..." if len(partitions) > 3 else "")
        where += f" sigungu={shown}"
    column = raw_columns(tables, first.column)
    if first.suite == FILE_ROWS_SUITE:
        return (
            f"{where} | (rows) | {first.unexpected_count:,} file(s) with no rows | {first.reason}"
        )
    examples = f"; e.g. {', '.join(first.examples[:3])}" if first.examples else ""
    return f"{where} | {column} | {first.unexpected_count:,} unexpected{examples} | {first.reason}"
