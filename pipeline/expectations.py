"""Great Expectations plumbing shared by every stage that checks data with it (GX 1.x API).

A :class:`Check` names one expectation with its arguments, what a failure means (``reason``)
and what it does to the run (``on_failure``: ``stop`` or ``quarantine``). :func:`new_context`
gives an ephemeral context with progress bars off, :func:`build_suite` an expectation suite.
The raw tables' suites and their engine live in the validate stage; returned lists' in outcomes.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

log = logging.getLogger(__name__)


OnFailure = Literal["stop", "quarantine"]
STOP: OnFailure = "stop"
QUARANTINE: OnFailure = "quarantine"


def snake_case(name: str) -> str:
    """``ExpectColumnValuesToBeInSet`` -> ``expect_column_values_to_be_in_set``."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


@dataclass(frozen=True)
class Check:
    """One expectation of one suite, with what its failure means and does."""

    suite: str
    expectation: str  # class name in great_expectations.expectations
    kwargs: Mapping[str, Any] = field(hash=False)
    on_failure: OnFailure
    reason: str

    @property
    def expectation_type(self) -> str:
        return snake_case(self.expectation)

    @property
    def column(self) -> str:
        """The column(s) the check is about, as shown in reports."""
        kwargs = self.kwargs
        if "column" in kwargs:
            return str(kwargs["column"])
        if "column_list" in kwargs:
            return ", ".join(kwargs["column_list"])
        if "column_A" in kwargs:
            return f"{kwargs['column_A']}, {kwargs['column_B']}"
        return "(table)"

    @property
    def key(self) -> tuple[str, str]:
        """How a result is matched back to its check: expectation type and column(s)."""
        return (self.expectation_type, self.column)


def result_key(expectation_type: str, kwargs: Mapping[str, Any]) -> tuple[str, str]:
    """The key of a Great Expectations result, the same way as :attr:`Check.key`."""
    if "column" in kwargs:
        column = str(kwargs["column"])
    elif "column_list" in kwargs:
        column = ", ".join(kwargs["column_list"])
    elif "column_A" in kwargs:
        column = f"{kwargs['column_A']}, {kwargs['column_B']}"
    else:
        column = "(table)"
    return (expectation_type, column)


def gx_module():
    # GX logs its set-up at INFO (registrations, temporary docs folders): keep the log readable.
    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    import great_expectations

    # One GX module sets its own logger to INFO at import.
    logging.getLogger("great_expectations.data_context.types.base").setLevel(logging.WARNING)

    return great_expectations


def new_context() -> Any:
    """An ephemeral GX context with progress bars switched off."""
    gx = gx_module()
    from great_expectations.data_context.types.base import ProgressBarsConfig

    # GX fingerprints every in-memory batch smaller than 1 GB with an md5 of all its values, a
    # batch marker only: about a quarter of the run time on large frames. The raw files' sha256
    # are recorded instead, so switch the fingerprint off for this process.
    from great_expectations.execution_engine import pandas_execution_engine

    pandas_execution_engine.HASH_THRESHOLD = 0
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    return context


def to_expectation(check: Check) -> Any:
    """The GX expectation object of a check (its reason and action travel in ``meta``)."""
    import great_expectations.expectations as gxe

    cls = getattr(gxe, check.expectation)
    return cls(
        **dict(check.kwargs),
        meta={"on_failure": check.on_failure, "reason": check.reason},
        severity="critical" if check.on_failure == "stop" else "warning",
    )


def build_suite(name: str, checks: list[Check]) -> Any:
    gx = gx_module()
    return gx.ExpectationSuite(name=name, expectations=[to_expectation(c) for c in checks])


def failing_rows(
    batch_definition: Any, suite: Any, frame: Any, row_column: str, what: str
) -> list[tuple[int, str]]:
    """(row, reason) of every row of ``frame`` an expectation of ``suite`` found unexpected,
    the row read from ``row_column``: a real GX run over a whole-dataframe batch. RuntimeError
    naming ``what`` when an expectation could not run (a bug, never bad data)."""
    batch = batch_definition.get_batch(batch_parameters={"dataframe": frame})
    result = batch.validate(
        suite,
        result_format={
            "result_format": "COMPLETE",
            "unexpected_index_column_names": [row_column],
            "return_unexpected_index_query": False,
        },
    )
    found = []
    for item in result.results:
        config = item.expectation_config
        exception = item.exception_info or {}
        if exception.get("raised_exception"):
            message = exception.get("exception_message")
            raise RuntimeError(f"{what} {config.type} failed to run: {message}")
        if item.success:
            continue
        reason = str((config.meta or {}).get("reason"))
        for entry in item.result.get("unexpected_index_list") or []:
            at = entry[row_column] if isinstance(entry, dict) else frame[row_column].iloc[entry]
            found.append((int(at), reason))
    return found
