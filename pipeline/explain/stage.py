"""The ``explain`` stage: one household's explanation of a round, HTML and PDF.

Writes ``rounds/YYYY-MM/explanations/<key>.html`` and ``.pdf`` (each atomically; outside the
round's manifest). Nothing is written when the round does not know the household. Without a
browser the HTML is written and :class:`pipeline.explain.pdf.BrowserMissing` is raised (the
command says how to go on); ``pdf=False`` writes the HTML alone.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.catalogue import data_sources_path, load_data_sources
from pipeline.catalogues import load_catalogues
from pipeline.config import Config
from pipeline.datasets import PARTITIONED_RAW_TABLES
from pipeline.datasets.rounds import explanation_paths
from pipeline.explain.content import explanation_context
from pipeline.explain.facts import read_household
from pipeline.explain.pdf import CHROMIUM, DENSITIES, BrowserMissing, print_pdf
from pipeline.io import write_bytes

log = logging.getLogger(__name__)

TEMPLATE = "explanation.html"


@dataclass(frozen=True)
class Explanation:
    """What ``outreach explain`` wrote."""

    key: str
    round: str
    listed: bool
    html: Path
    pdf: Path | None
    density: str | None  # the print density that fitted one page (None: no PDF, or none fitted)


def environment() -> Any:
    """The Jinja2 environment of the package templates (strict; every value autoescaped)."""
    import jinja2

    return jinja2.Environment(
        loader=jinja2.PackageLoader("pipeline.explain", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )


def render_explanation(context: dict[str, Any]) -> str:
    """The explanation page's HTML (pure); ``density`` in the context sets its print density
    (default ``normal``)."""
    return environment().get_template(TEMPLATE).render(**{"density": DENSITIES[0], **context})


def explain_household(
    config: Config, as_of: int, key: str, *, pdf: bool = True, browser: Path = CHROMIUM
) -> Explanation:
    """Write the explanation of household ``key`` in round ``as_of`` (see the module)."""
    catalogues = load_catalogues(config)
    sources = load_data_sources(
        data_sources_path(config.paths.indicators), catalogues.indicators, PARTITIONED_RAW_TABLES
    ).resolved(catalogues.indicators)
    household = read_household(config, as_of, key, catalogues.features.months_since_cap)
    context = explanation_context(household, catalogues.indicators, catalogues.outcomes, sources)
    html = render_explanation(context)
    html_path, pdf_path = explanation_paths(household.folder, household.key)
    density = None
    if pdf:
        try:
            data, density = print_pdf(html, browser)
        except BrowserMissing:
            write_bytes(html.encode("utf-8"), html_path)
            raise
        # the HTML at the density its PDF was printed at: it prints as the PDF does
        html = render_explanation({**context, "density": density or DENSITIES[-1]})
    write_bytes(html.encode("utf-8"), html_path)
    log.info("explain: wrote %s", html_path)
    if pdf:
        write_bytes(data, pdf_path)
        log.info("explain: wrote %s (%s)", pdf_path, density or "longer than one page")
    return Explanation(
        key=household.key,
        round=household.round,
        listed=bool(context["listed"]),
        html=html_path,
        pdf=pdf_path if pdf else None,
        density=density,
    )
