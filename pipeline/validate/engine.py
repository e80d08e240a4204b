"""Great Expectations as the engine of the raw tables' checks (GX 1.x API, ephemeral context).

One context per process holds a pandas data source with one dataframe asset per suite, the
expectation suites, a validation definition and a checkpoint per suite. Checkpoints return
results in SUMMARY format with example keys: through ``unexpected_index_column_names`` for small
frames, as row positions for the large ones (``POSITIONAL_SUITES``); the rows a quarantine check
sets aside are fetched again for that one expectation in COMPLETE format.
Progress bars are off. The context is built lazily (never at import) and reused by later
partitions in the same process; forked workers inherit it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from pipeline.expectations import Check, build_suite, gx_module, new_context, to_expectation
from pipeline.validate.checks import (
    POSITIONAL_SUITES,
    SuiteInputs,
    all_suites,
    example_columns,
)

log = logging.getLogger(__name__)

PARTIAL_UNEXPECTED_COUNT = 20
DATA_SOURCE = "raw_tables"
BATCH_DEFINITION = "whole_frame"


def _result_format(suite: str, fmt: str) -> dict[str, Any]:
    result_format: dict[str, Any] = {
        "result_format": fmt,
        "partial_unexpected_count": PARTIAL_UNEXPECTED_COUNT,
        "return_unexpected_index_query": False,
    }
    columns = example_columns(suite)
    if columns and suite not in POSITIONAL_SUITES:
        result_format["unexpected_index_column_names"] = list(columns)
    return result_format


def index_entries(
    entries: list[Any], frame: pd.DataFrame, columns: tuple[str, ...]
) -> list[dict[str, Any]]:
    """Example-column mappings of GX index entries (dicts already, or row positions)."""
    positions = [e for e in entries if not isinstance(e, dict)]
    if not positions:
        return list(entries)
    rows = frame.iloc[np.asarray(positions, dtype=np.int64)]
    found = rows[list(columns)].to_dict(orient="records")
    return found if len(positions) == len(entries) else [*entries, *found]


class GxEngine:
    """The project's suites in one GX context, ready to validate frames."""

    def __init__(self, inputs: SuiteInputs) -> None:
        gx = gx_module()
        self.inputs = inputs
        self.suites: dict[str, list[Check]] = all_suites(inputs)
        self.context = new_context()
        source = self.context.data_sources.add_pandas(DATA_SOURCE)
        self._batches: dict[str, Any] = {}
        self._checkpoints: dict[str, Any] = {}
        self.gx_suites: dict[str, Any] = {}
        # Schema results by (table, schema): a schema suite's result depends on nothing else.
        self.schema_cache: dict[tuple[str, ...], Any] = {}
        for name, checks in self.suites.items():
            batch_definition = source.add_dataframe_asset(
                name
            ).add_batch_definition_whole_dataframe(BATCH_DEFINITION)
            suite = self.context.suites.add(build_suite(name, checks))
            definition = self.context.validation_definitions.add(
                gx.ValidationDefinition(name=name, data=batch_definition, suite=suite)
            )
            self._checkpoints[name] = self.context.checkpoints.add(
                gx.Checkpoint(
                    name=name,
                    validation_definitions=[definition],
                    actions=[],
                    result_format=_result_format(name, "SUMMARY"),
                )
            )
            self._batches[name] = batch_definition
            self.gx_suites[name] = suite

    def run(
        self, suite: str, frame: pd.DataFrame, parameters: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """Run one suite's checkpoint on a frame; the suite validation result as JSON."""
        checkpoint = self._checkpoints[suite]
        outcome = checkpoint.run(
            batch_parameters={"dataframe": frame},
            expectation_parameters=dict(parameters or {}),
        )
        store = self.context.validation_results_store
        results = []
        for key, result in outcome.run_results.items():
            results.append(result.to_json_dict())
            try:  # results are kept by the caller, not in this long-lived context
                store.remove_key(key)
            except Exception:
                log.debug("could not drop a stored validation result")
        (result,) = results
        return result

    def unexpected_rows(
        self,
        suite: str,
        frame: pd.DataFrame,
        check: Check,
        parameters: Mapping[str, Any] | None = None,
    ) -> list[dict[str, Any]]:
        """Every failing row of one check (COMPLETE format), as example-column mappings."""
        batch = self._batches[suite].get_batch(batch_parameters={"dataframe": frame})
        result = batch.validate(
            to_expectation(check),
            result_format=_result_format(suite, "COMPLETE"),
            expectation_parameters=dict(parameters or {}),
        )
        entries = list(result.result.get("unexpected_index_list") or [])
        return index_entries(entries, frame, _entry_columns(suite, check))


def _entry_columns(suite: str, check: Check) -> tuple[str, ...]:
    """Example columns and the checked columns, as GX gives them for named-column entries."""
    checked = [check.kwargs.get(k) for k in ("column", "column_A", "column_B")]
    checked += list(check.kwargs.get("column_list") or ())
    extra = ["first_row", "combination"] if suite == "crisis_events_domain" else []
    columns = [*example_columns(suite), *extra, *(c for c in checked if c)]
    return tuple(dict.fromkeys(columns))


_ENGINES: dict[SuiteInputs, GxEngine] = {}


def engine_for(inputs: SuiteInputs) -> GxEngine:
    """This process's engine for these suite inputs (built on first use)."""
    engine = _ENGINES.get(inputs)
    if engine is None:
        _ENGINES.clear()
        engine = GxEngine(inputs)
        _ENGINES[inputs] = engine
    return engine
