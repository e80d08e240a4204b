"""The round's model's high-impact AI file in the report: a copy beside the overview, linked
from its "작성 정보" table (docs/training.md, "The high-impact AI file").

The file is the training run's artifact ``ai_file/ai_file.md`` (``pipeline.tracking.ai_file``),
read through MLflow (read only). The copy travels with the report and is covered by
``report.json`` like every page; the overview shows the sha256 the version's tag records, so a
reader can compare it with the store. A model trained before the file existed has none: the
overview then says so.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from typing import Any

from markdown_it import MarkdownIt
from markupsafe import Markup

from pipeline.config import Config
from pipeline.datasets.rounds import REPORT_AI_FILE, REPORT_AI_FILE_PAGE
from pipeline.report.render import environment
from pipeline.tracking import tracking_uri
from pipeline.tracking.names import AI_FILE
from pipeline.tracking.runs import download_run_artifact

log = logging.getLogger(__name__)

PAGE = REPORT_AI_FILE  # the copy's name inside report/
HTML_PAGE = REPORT_AI_FILE_PAGE  # the copy rendered as a page (what the overview links)


@dataclass(frozen=True)
class AiFileCopy:
    """The AI file of the round's model version, as copied into the report."""

    page: str
    html_page: str
    model: str
    version: str
    text: str
    sha256: str


def read_ai_file(config: Config, manifest: dict[str, Any]) -> AiFileCopy | None:
    """The AI file of the round's model (the training run the manifest names), or None when
    the run keeps none or the store cannot be read (logged)."""
    model = manifest.get("model") or {}
    run_id = model.get("training_run_id")
    if not run_id:
        return None
    data = download_run_artifact(str(run_id), AI_FILE, tracking_uri(config))
    if data is None:
        log.warning("no AI file for %s v%s: not linked", model.get("name"), model.get("version"))
        return None
    return AiFileCopy(
        page=PAGE,
        html_page=HTML_PAGE,
        model=str(model.get("name", "")),
        version=str(model.get("version", "")),
        text=data.decode("utf-8"),
        sha256=hashlib.sha256(data).hexdigest(),
    )


def ai_file_html(copy: AiFileCopy, base_context: dict[str, Any]) -> str:
    """The AI file as a page of the report: its Markdown rendered (CommonMark with tables; raw
    HTML in the text is shown as text, never run), in the report's frame. ``base_context``: the
    header and footer every page shows (``pipeline.report.render.common_context``)."""
    body = MarkdownIt("commonmark", {"html": False}).enable("table").render(copy.text)
    template = environment().get_template("ai_file.html")
    return template.render(ai_file=copy, body=Markup(body), **base_context)
