"""Keep a validation run's results: JSON, rejected rows, GX Data Docs and a one-page summary.

Each run gets its own folder ``<output_root>/validation/runs/<run_id>/``, built beside its final
place and swapped in whole, so no run is ever seen half-written. Two small pointers sit above
the runs: ``latest.json`` (the last run, passed or failed) and ``passed.json`` (the last run that
passed; a failed run never touches it). Ingest trusts only ``passed.json``. Old runs are pruned
to ``validation.keep_runs``, never the one ``passed.json`` names.

Great Expectations' Data Docs write the values they show (unexpected values, example rows, the
arguments of an expectation such as a value set taken from the regions table) into the pages
without escaping them, so a crisis code holding HTML would run when the page opens. The suites
and results handed to the Data Docs builder therefore carry those values HTML-escaped
(:func:`data_docs_result`, :func:`data_docs_check`): the page shows them as the text they are.
The JSON results beside it keep the values as they were.
"""

from __future__ import annotations

import dataclasses
import html
import json
import logging
import math
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline.config import Config
from pipeline.datasets import OutputLayout
from pipeline.datasets.validation import (
    DATA_DOCS,
    GX_RESULTS,
    LATEST,
    OUTPUTS_SHA256,
    PASSED_POINTER,
    REJECTED_ROWS,
    RUNS,
    SUMMARY_HTML,
    VALIDATION_JSON,
    VOLUME_JSON,
    read_pointer,
    runs_dir,
)
from pipeline.expectations import Check
from pipeline.io import sha256_tree, staging_dir, write_json, write_parquet
from pipeline.validate.partition import plain_rejected
from pipeline.validate.stage import PASSED, ValidationRun
from pipeline.validate.verdict import CheckResult

log = logging.getLogger(__name__)


def _iso(value: Any) -> str | None:
    return None if value is None else value.isoformat(timespec="seconds")


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def volume_records(volume: pd.DataFrame | None) -> list[dict[str, Any]]:
    if volume is None:
        return []
    return [
        {k: _jsonable(v) for k, v in record.items()} for record in volume.to_dict(orient="records")
    ]


def check_totals(results: Iterable[CheckResult]) -> list[dict[str, Any]]:
    """Results of each check summed over partitions (for the summary's table of checks)."""
    totals: dict[tuple[str, str, str], dict[str, Any]] = {}
    for r in results:
        key = (r.table, r.expectation, r.column)
        entry = totals.setdefault(
            key,
            {
                "table": r.table,
                "expectation": r.expectation,
                "column": r.column,
                "on_failure": r.on_failure,
                "reason": r.reason,
                "evaluated": 0,
                "failed": 0,
                "unexpected": 0,
            },
        )
        entry["evaluated"] += 1
        entry["failed"] += 0 if r.success else 1
        entry["unexpected"] += r.unexpected_count
    return list(totals.values())


def validation_record(run: ValidationRun, config: Config, data_docs: bool) -> dict[str, Any]:
    """The run's JSON record (``validation.json``)."""
    failures = run.failures
    rejected_by_table = (
        run.rejected["table"].astype("str").value_counts().sort_index().astype(int).to_dict()
        if len(run.rejected)
        else {}
    )
    volume = run.volume
    return {
        "run_id": run.run_id,
        "status": run.status,
        "started": _iso(run.started),
        "finished": _iso(run.finished),
        "raw_dir": str(run.raw_dir),
        "files_sha256": dict(sorted(run.files.items())),
        "contract_digest": run.contract_digest,
        "partitions": run.partitions,
        "rows": dict(sorted(run.rows.items())),
        "rejected_rows": rejected_by_table,
        "checks": {
            "evaluated": len(run.results),
            "passed": sum(r.success for r in run.results),
            "failed": sum(not r.success for r in run.results),
            "stopping": len(failures),
        },
        "failures": [f.to_json() for f in failures],
        "quarantine": [q.to_json() for q in run.quarantined],
        "volume": {
            "checked": volume is not None,
            "source_months_checked": 0
            if volume is None
            else int((volume["status"] == "checked").sum()),
            "file": VOLUME_JSON,
        },
        "settings": {
            "validation": config.validation.model_dump(mode="json"),
            "window": config.window.model_dump(mode="json"),
            "config_source": config.source,
        },
        "outputs": {
            "summary": SUMMARY_HTML,
            "rejected_rows": REJECTED_ROWS,
            "gx_results": GX_RESULTS,
            "data_docs": f"{DATA_DOCS}/index.html" if data_docs else None,
        },
        "results": [r.to_json() for r in run.results],
    }


def html_escaped(data: Any) -> Any:
    """``data`` with every string in it HTML-escaped (lists, tuples and dict values; keys and
    other objects kept as they are)."""
    if isinstance(data, str):
        return html.escape(data)
    if isinstance(data, dict):
        return {key: html_escaped(value) for key, value in data.items()}
    if isinstance(data, list | tuple):
        return type(data)(html_escaped(value) for value in data)
    return data


def data_docs_result(result: dict[str, Any]) -> dict[str, Any]:
    """A suite's validation result (GX JSON) for the Data Docs: what each expectation found
    (``result``), its exception and its arguments HTML-escaped."""
    items = []
    for item in result.get("results", []):
        config = dict(item.get("expectation_config") or {})
        if "kwargs" in config:
            config["kwargs"] = html_escaped(config["kwargs"])
        items.append(
            {
                **item,
                "expectation_config": config,
                "result": html_escaped(item.get("result")),
                "exception_info": html_escaped(item.get("exception_info")),
            }
        )
    return {**result, "results": items}


def data_docs_check(check: Check) -> Check:
    """A check whose arguments are HTML-escaped, for the suite pages of the Data Docs."""
    return dataclasses.replace(check, kwargs=html_escaped(dict(check.kwargs)))


def build_data_docs(run: ValidationRun, site_dir: Path) -> None:
    """Great Expectations Data Docs of this run's suites and results (static HTML), data values
    escaped."""
    from great_expectations.core.expectation_validation_result import (
        ExpectationSuiteValidationResultSchema,
    )
    from great_expectations.core.run_identifier import RunIdentifier
    from great_expectations.data_context.types.resource_identifiers import (
        ExpectationSuiteIdentifier,
        ValidationResultIdentifier,
    )

    from pipeline.expectations import build_suite, new_context

    context = new_context()
    context.add_data_docs_site(
        "validation",
        {
            "class_name": "SiteBuilder",
            "show_how_to_buttons": False,
            "store_backend": {
                "class_name": "TupleFilesystemStoreBackend",
                "base_directory": str(site_dir.resolve()),
            },
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        },
    )
    for name, checks in run.suites.items():
        context.suites.add(build_suite(name, [data_docs_check(c) for c in checks]))
    run_identifier = RunIdentifier(run_name=run.run_id, run_time=run.started)
    schema = ExpectationSuiteValidationResultSchema()
    store = context.validation_results_store
    for suite, batch, result in run.gx_results:
        key = ValidationResultIdentifier(
            ExpectationSuiteIdentifier(name=suite), run_identifier, batch
        )
        store.set(key, schema.load(data_docs_result(result)))
    context.build_data_docs(site_names=["validation"])


def write_run(run: ValidationRun, config: Config, layout: OutputLayout) -> Path:
    """Write the run's folder atomically, then update the pointers; returns the folder."""
    from pipeline.validate.summary import render_summary

    runs = runs_dir(layout)
    run_id = run.run_id
    final = runs / run_id
    suffix = 1
    while final.exists():
        suffix += 1
        final = runs / f"{run_id}-{suffix}"
    data_docs = config.validation.data_docs
    record = validation_record(run, config, data_docs)
    record["run_id"] = final.name
    with staging_dir(final) as folder:
        write_json(volume_records(run.volume), folder / VOLUME_JSON)
        write_parquet(plain_rejected(run.rejected).reset_index(drop=True), folder / REJECTED_ROWS)
        gx = [{"suite": s, "batch": b, "result": r} for s, b, r in run.gx_results]
        (folder / GX_RESULTS).write_text(
            json.dumps(gx, ensure_ascii=False, sort_keys=True, default=str), encoding="utf-8"
        )
        if data_docs:
            build_data_docs(run, folder / DATA_DOCS)
        (folder / SUMMARY_HTML).write_text(
            render_summary(record, run, check_totals(run.results)), encoding="utf-8"
        )
        # Written last, so that it can hold the sha256 of every other file of the run
        # (the GX results, the Data Docs pages, the summary): the audit checks them.
        record[OUTPUTS_SHA256] = sha256_tree(folder)
        write_json(record, folder / VALIDATION_JSON)
    pointer = {
        "run_id": final.name,
        "status": run.status,
        "finished": record["finished"],
        "path": f"{RUNS}/{final.name}",
    }
    write_json(pointer, layout.validation / LATEST)
    if run.status == PASSED:
        write_json(pointer, layout.validation / PASSED_POINTER)
    prune_runs(layout, config.validation.keep_runs)
    return final


def prune_runs(layout: OutputLayout, keep: int) -> None:
    """Remove the oldest run folders beyond ``keep`` (never the last passing one)."""
    runs = runs_dir(layout)
    if not runs.is_dir():
        return
    passed = (read_pointer(layout) or {}).get("run_id")
    folders = sorted(p for p in runs.iterdir() if p.is_dir() and not p.name.startswith("."))
    for folder in folders[:-keep] if len(folders) > keep else []:
        if folder.name != passed:
            shutil.rmtree(folder, ignore_errors=True)
