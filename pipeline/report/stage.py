"""The ``report`` stage: the administrators' review report of a scored round, as static HTML.

Writes ``<output_root>/rounds/YYYY-MM/report/`` (built aside and swapped in whole, so a reader
never sees half a report; an earlier report of the round is replaced, since it is derived):

- ``index.html``: the overview, aggregates only ("<5" rule, see ``pipeline.report.pages``);
- ``emd/<읍면동 코드>.html``: one page per 읍면동 with its listed households, to be handed to that
  office alone (sortable and filterable by an inline script);
- ``followup.html``: once the round's visit outcomes are imported (``pipeline.datasets.outcomes``),
  the realised precision and calibration of the round's list;
- ``simulation.html``: when the output root holds the results of ``outreach simulate``
  (``pipeline.datasets.simulation``), the comparison of the simulated policies
  (``pipeline.report.simulation``), linked from the overview;
- ``report.json``: the sha256 of the round manifest the report was built from, of the other
  inputs (previous round's manifest, outcomes file), the leading features and the sha256 of every
  file written.

Every page opens offline: styles and script are inline, charts are inline SVG, and a Content
Security Policy forbids any request for another resource. The round's manifest is not changed.
The hidden truth is never read: the follow-up page uses imported outcomes only.

This module owns the writing only: :func:`write_report` reads the inputs
(``pipeline.report.inputs``: the round's datasets, counted partition by partition, and the
leading features), renders the pages (``pipeline.report.render``; the 읍면동 pages are written
per 시군구 by the partition engine) and swaps the folder in with ``report.json``
(:class:`ReportResult` says what it did).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

from pipeline.catalogues import load_catalogues
from pipeline.config import Config
from pipeline.datasets import OutputLayout
from pipeline.datasets.rounds import REPORT, REPORT_RECORD
from pipeline.engine import map_partitions
from pipeline.io import sha256_file, sha256_tree, staging_dir, write_json
from pipeline.lineage.events import report_written
from pipeline.lineage.ledger import check_writable
from pipeline.lineage.ledger import head as ledger_head
from pipeline.report.ai_file import ai_file_html, read_ai_file
from pipeline.report.inputs import read_inputs
from pipeline.report.render import (
    EMD_DIR,
    common_context,
    pages_tasks,
    render_report,
    write_emd_pages,
)
from pipeline.report.simulation import read_simulation

log = logging.getLogger(__name__)

RECORD = REPORT_RECORD


@dataclass(frozen=True)
class ReportResult:
    """What ``outreach report`` did."""

    round: str
    folder: Path
    files: dict[str, str]
    previous: str | None
    followup: bool
    shifted: list[str]
    seconds: float


def write_report(config: Config, as_of: int) -> ReportResult:
    """``outreach report``: render the round's report and swap it into ``report/``."""
    started = time.perf_counter()
    catalogues = load_catalogues(config)
    catalogue, outcome_catalogue = catalogues.indicators, catalogues.outcomes
    inputs = read_inputs(config, as_of, outcome_catalogue)
    simulation = read_simulation(config)  # the simulation page, when there are results
    ai_file = read_ai_file(config, inputs.manifest)  # the model's AI file: linked and copied
    pages_text, summary = render_report(
        inputs,
        config,
        catalogue,
        outcome_catalogue,
        simulation,
        ai_file=ai_file,
        services=catalogues.services,
    )
    if ai_file is not None:
        pages_text[ai_file.page] = ai_file.text
        pages_text[ai_file.html_page] = ai_file_html(
            ai_file, common_context(inputs, config.report.small_count)
        )
    final = OutputLayout(config.paths.output_root).round(inputs.round) / REPORT
    check_writable(config.paths.output_root)
    replaced = final.exists()
    with staging_dir(final) as out:
        for relative, text in sorted(pages_text.items()):
            path = out / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        (out / EMD_DIR).mkdir(parents=True, exist_ok=True)
        map_partitions(
            write_emd_pages,
            pages_tasks(inputs, config, outcome_catalogue, out / EMD_DIR),
            runtime=config.runtime,
            description=f"report {inputs.round}: 읍면동 pages",
        )
        files = sha256_tree(out)
        record = {
            "round": inputs.round,
            "round_manifest_sha256": inputs.manifest_sha256,
            "training_seal_sha256": inputs.manifest.get("model", {}).get("training_seal_sha256"),
            "ledger": {
                "at_scoring": inputs.manifest.get("ledger"),
                "at_report": ledger_head(config.paths.output_root).as_dict(),
            },
            "previous_round": None
            if inputs.previous is None
            else {
                "round": inputs.previous.round,
                "manifest_sha256": inputs.previous.manifest_sha256,
            },
            "outcomes": None
            if inputs.outcomes_sha256 is None
            else {
                "sha256": inputs.outcomes_sha256,
                "rows": 0 if inputs.outcomes is None else len(inputs.outcomes),
            },
            **inputs.facts,
            "psi": summary.get("psi"),
            "shifted_features": summary["shifted"],
            "followup": summary.get("followup"),
            "precision_check": summary.get("precision_check"),  # docs/monitoring.md
            "settings": config.report.model_dump(mode="json"),
            "files_sha256": files,
        }
        if summary.get("simulation"):
            record["simulation"] = summary["simulation"]
        if summary.get("psi_merged"):
            record["psi_merged_values"] = summary["psi_merged"]
        write_json(record, out / RECORD)
    report_written(
        config.paths.output_root,
        round_label=inputs.round,
        report_sha256=sha256_file(final / RECORD),
        manifest_sha256=inputs.manifest_sha256,
    )
    if replaced:
        log.info("replaced the earlier report of round %s", inputs.round)
    seconds = time.perf_counter() - started
    return ReportResult(
        round=inputs.round,
        folder=final,
        files=files,
        previous=inputs.previous.round if inputs.previous is not None else None,
        followup=inputs.outcomes is not None,
        shifted=list(summary["shifted"]),
        seconds=seconds,
    )
