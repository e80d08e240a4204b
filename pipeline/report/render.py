"""The report's pages: building the overview, the follow-up page and the 읍면동 pages as HTML.

Owns the Jinja2 environment of the package templates (:func:`environment`), the header and footer
every page shares (:func:`common_context`), the overview and the follow-up page
(:func:`render_report`, :func:`render_followup`: text only, no file access, from the
``inputs.ReportInputs`` that ``pipeline.report.inputs`` read), and the 읍면동 pages: which pages
there are (:func:`emd_pages`), one page's text (:func:`render_emd_page`) and the partition task
that writes the pages of one 시군구 from the listed rows of its 읍면동 only (:func:`pages_tasks`
makes a picklable :class:`PagesTask` per 시군구, :func:`write_emd_pages` runs one in a worker of
the partition engine). Figures come from ``pipeline.report.aggregates``, display rows (the "<5"
rule) from ``pipeline.report.pages``, charts from ``pipeline.report.charts``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.catalogue import IndicatorCatalogue, OutcomeCatalogue, ServiceCatalogue
from pipeline.config import Config
from pipeline.datasets.rounds import REPORT_EMD_DIR, REPORT_FOLLOWUP, REPORT_INDEX, read_rows
from pipeline.report import aggregates as agg
from pipeline.report import charts, monitoring, pages
from pipeline.report.aggregates import KEY, LISTED_TIERS
from pipeline.report.inputs import ReportInputs
from pipeline.report.objections import objections_context
from pipeline.vocabulary import RISK_BAND_LEGEND, SERVICES_TEXT

INDEX = REPORT_INDEX
FOLLOWUP = REPORT_FOLLOWUP
EMD_DIR = REPORT_EMD_DIR
# Columns of the listed households the 읍면동 pages need.
PAGE_COLUMNS = (
    KEY,
    "emd_code",
    "list_rank",
    "tier",
    "score",
    "model_rank",
    "selection_reason",
    "selection_probability",
    "case_history",
)


# --- rendering (no file access) --------------------------------------------------------------


def environment() -> Any:
    """The Jinja2 environment of the package templates (strict; every value autoescaped, in
    every template whatever its name: data values such as region names never become markup, and
    only the charts, built and escaped in ``pipeline.report.charts``, enter as ``Markup``)."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("pipeline.report", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
    env.filters["num"] = pages.number
    return env


def _model_text(manifest: dict[str, Any]) -> str:
    model = manifest.get("model", {})
    return f"{model.get('name', '?')} v{model.get('version', '?')}"


def _ledger_head_text(head: Any) -> str:
    """The ledger head the round recorded when it was scored: ``entry N, sha256 …``."""
    if not isinstance(head, dict):
        return "–"
    return f"{head.get('seq')}번 항목, sha256 {str(head.get('sha256', ''))[:16]}"


def common_context(inputs: ReportInputs, threshold: int) -> dict[str, Any]:
    """What every page shows in its header and footer."""
    return {
        "round": inputs.round,
        "model_text": _model_text(inputs.manifest),
        "manifest_sha256": inputs.manifest_sha256,
        "threshold": threshold,
        "risk_legend": RISK_BAND_LEGEND["ko"],  # what the risk and its band mean
    }


def _histogram(counts: agg.RoundCounts) -> pd.DataFrame:
    if counts.histogram is None:
        return pd.DataFrame(columns=agg.HISTOGRAM_COLUMNS)
    return counts.histogram


def render_report(
    inputs: ReportInputs,
    config: Config,
    catalogue: IndicatorCatalogue,
    outcome_catalogue: OutcomeCatalogue,
    simulation: Any = None,
    ai_file: Any = None,
    services: ServiceCatalogue | None = None,
) -> tuple[dict[str, str], dict[str, Any]]:
    """The overview and the follow-up page as text, keyed by their path inside ``report/``; and
    a summary. The 읍면동 pages are written apart (:func:`write_emd_pages`). With ``simulation``
    (``pipeline.report.simulation.SimulationResults``) also the simulation page, linked from the
    overview. With ``ai_file`` (``pipeline.report.ai_file.AiFileCopy``) the overview links the
    model's high-impact AI file. With ``services`` (the service catalogue) the overview counts
    the listed households by suggested service."""
    from markupsafe import Markup

    rc = config.report
    t = rc.small_count
    env = environment()
    counts = inputs.counts
    manifest = inputs.manifest
    common = common_context(inputs, t)
    districts = inputs.districts
    sigungu = agg.sigungu_table(districts)
    tiers = counts.tiers
    histogram = _histogram(counts)
    reasons = agg.reason_table_from_counts(counts.reasons)
    listed_total = counts.listed
    service_names = {v.code: v.name_ko for v in services.services} if services else {}
    suggested, suggested_emd = pages.service_rows(
        counts.services if counts.services is not None else agg.service_counts(agg.empty_scores()),
        service_names,
        inputs.names,
        listed_total,
        t,
    )
    emd_rows = pages.district_rows(districts, inputs.names, t)
    for row in emd_rows:
        row["page"] = f"{EMD_DIR}/{row['emd_code']}.html"
    manifest_counts = manifest.get("counts", {})
    totals = {
        "scored": pages.count(counts.scored, t),
        "listed": pages.count(listed_total, t),
        "visit": pages.count(int(districts["visit"].sum()), t),
        "phone": pages.count(int(districts["phone"].sum()), t),
        "capacity": pages.number(int(districts["capacity"].sum())),
        "ineligible": pages.count(manifest_counts.get("ineligible"), t),
    }
    top_reasons = reasons.head(12)
    chart_reasons = charts.hbars(
        [pages.unit_name(str(u), catalogue) for u in top_reasons["unit"]],
        [float(v) for v in top_reasons["any"]],
        title="사유에 포함된 목록 가구 수 (상위 12개)",
        threshold=t,
        pattern_id="hatch-reasons",
    )
    summary: dict[str, Any] = {"shifted": [], "previous": None}
    previous_context = None
    if inputs.previous is not None:
        prev = inputs.previous
        change = agg.listed_change_from_counts(counts.districts, prev.counts.districts)
        previous_context = {
            "round": prev.round,
            "model_text": _model_text(prev.manifest),
            "change_rows": pages.change_rows(change, inputs.names, t),
            "psi_rows": [],
            "shifted": 0,
            "chart_psi": "",
            "psi_missing": "",
            "psi_merged": False,
        }
        summary["previous"] = prev.round
        if not prev.features or not inputs.leading:
            previous_context["psi_missing"] = (
                f"이전 회차({prev.round})의 입력 자료가 없어 변수 분포 변화(PSI)를 계산하지 "
                "못했습니다."
                if not prev.features
                else "모형의 주요 변수를 찾지 못해 변수 분포 변화(PSI)를 계산하지 못했습니다."
            )
        else:
            table = agg.psi_table_from_counts(
                counts.values,
                prev.counts.values,
                inputs.leading,
                bins=rc.psi_bins,
                threshold=rc.psi_threshold,
            )
            rows = pages.psi_rows(table, inputs.descriptions)
            shifted = [str(f) for f in table.loc[table["shifted"], "feature"]]
            summary["shifted"] = shifted
            summary["psi"] = {
                str(r.feature): round(float(r.psi), 6) for r in table.itertuples(index=False)
            }
            merged = [str(f) for f in table.loc[table["merged"], "feature"]]
            if merged:
                summary["psi_merged"] = merged
            previous_context.update(
                psi_rows=rows,
                shifted=len(shifted),
                psi_merged=bool(merged),
                chart_psi=Markup(
                    charts.hbars(
                        [str(f) for f in table["feature"]],
                        [float(v) for v in table["psi"]],
                        title="주요 변수의 PSI (점선: 기준)",
                        marker=rc.psi_threshold,
                        marker_label=f"기준 {rc.psi_threshold}",
                        highlight=[bool(s) for s in table["shifted"]],
                        value_format="decimal",
                        pattern_id="hatch-psi",
                    )
                ),
            )
    fairness = agg.fairness_table_from_counts(counts.fairness)
    bounds = config.training.fairness.ratio_bounds
    check = precision_check_of(inputs, config, outcome_catalogue)
    summary["precision_check"] = monitoring.check_summary(check)
    followup_page = FOLLOWUP if inputs.outcomes is not None else None
    model = manifest.get("model", {})
    files: dict[str, str] = {}
    simulation_page = None
    if simulation is not None:
        from pipeline.report.simulation import SIMULATION, render_simulation

        files[SIMULATION], summary["simulation"] = render_simulation(
            env, common, simulation, config.simulate.interval
        )
        simulation_page = SIMULATION
    files[INDEX] = env.get_template("index.html").render(
        **common,
        created_at=str(manifest.get("created_at", ""))[:10],
        sigungu_count=pages.number(len(sigungu)),
        emd_count=pages.number(len(districts)),
        totals=totals,
        sigungu_rows=pages.sigungu_rows(sigungu, inputs.names, t),
        district_rows=emd_rows,
        tier_rows=pages.tier_rows(tiers, t),
        exploration_share=pages.percent(config.scoring.exploration_share, 0),
        chart_eligible=Markup(
            charts.histogram(
                list(histogram["low"]),
                list(histogram["high"]),
                [int(v) for v in histogram["eligible"]],
                title="평가 대상 가구 전체",
                threshold=t,
                color=charts.BAR_LIGHT,
                pattern_id="hatch-eligible",
            )
        ),
        chart_listed=Markup(
            charts.histogram(
                list(histogram["low"]),
                list(histogram["high"]),
                [int(v) for v in histogram["listed"]],
                title="목록 가구 (방문 + 전화 확인)",
                threshold=t,
                pattern_id="hatch-listed",
            )
        ),
        chart_reasons=Markup(chart_reasons),
        reason_rows=pages.reason_rows(reasons, catalogue, listed_total, t),
        service_rows=suggested,
        service_emd_rows=suggested_emd,
        previous=previous_context,
        previous_round=inputs.previous_round,
        psi_threshold=rc.psi_threshold,
        psi_bins=rc.psi_bins,
        psi_distinct=pages.number(agg.PARTITION_DISTINCT),
        psi_round_distinct=pages.number(agg.ROUND_DISTINCT),
        leading_source=inputs.leading_source,
        fairness_rows=pages.fairness_rows(fairness, bounds, t),
        bounds=bounds,
        followup_page=followup_page,
        simulation_page=simulation_page,
        model_as_of=model.get("training_as_of") or "–",
        model_chosen_by=model.get("chosen_by") or "–",
        features_folder=manifest.get("features", {}).get("folder", "–"),
        training_seal=model.get("training_seal_sha256") or "–",
        ai_file=ai_file,
        ledger_head=_ledger_head_text(manifest.get("ledger")),
        objections=objections_context(inputs.objections, t),
        **monitoring.overview_context(manifest, check, config.monitoring, t),
    )
    from pipeline.datasets.rounds import REPORT_MINISTRY
    from pipeline.report import ministry

    published = None  # the ministry's table, suppressed (pipeline.report.ministry)
    if inputs.cases is not None:
        published = ministry.publish(inputs.cases, outcome_catalogue, inputs.names, t)
        files[REPORT_MINISTRY] = ministry.ministry_csv(published, inputs.round)
    if inputs.outcomes is not None:
        files[FOLLOWUP], summary["followup"] = render_followup(
            inputs,
            env,
            common,
            outcome_catalogue,
            rc.calibration_bins,
            t,
            published,
            monitoring.followup_context(check, inputs.names, config.monitoring, t),
        )
    return files, summary


def render_followup(
    inputs: ReportInputs,
    env: Any,
    common: dict[str, Any],
    outcome_catalogue: OutcomeCatalogue,
    bins: int,
    t: int,
    published: Any = None,
    check: dict[str, Any] | None = None,
) -> tuple[str, dict[str, Any]]:
    """The follow-up page (realised precision and calibration, the ministry's table when
    ``published``: a ``pipeline.report.ministry.Suppressed``; the expected precision recorded
    at scoring against the observed: ``check``, ``monitoring.followup_context``) and its
    summary."""
    from markupsafe import Markup

    from pipeline.datasets.rounds import REPORT_MINISTRY
    from pipeline.report.ministry import page_rows, summary_facts
    from pipeline.report.overrides import override_context

    assert inputs.outcomes is not None and inputs.listed is not None
    follow = agg.followup_tables(
        inputs.listed,
        inputs.outcomes,
        outcome_catalogue.label_of(),
        bins=bins,
        scored=inputs.scored_outcomes,
    )
    summary_rows = pages.followup_summary_rows(follow, t)
    visit = follow.summary.set_index("part").loc[["visit_model", "visit_exploration"]]
    headline = _visit_headline(follow, t)
    calibration = pages.calibration_rows(follow, t)
    text = env.get_template("followup.html").render(
        **common,
        outcomes_sha256=inputs.outcomes_sha256 or "",
        headline=headline,
        ece=pages.decimal(follow.ece, 3),
        summary_rows=summary_rows,
        outcome_rows=pages.followup_outcome_rows(
            follow,
            pages.outcome_names(outcome_catalogue),
            outcome_catalogue.label_of(),
            t,
        ),
        sigungu_rows=pages.followup_sigungu_rows(follow, inputs.names, t),
        calibration_rows=calibration,
        chart_calibration=Markup(
            charts.reliability(
                [float(r.mean_score) for r in follow.calibration.itertuples(index=False)],
                [row["realised_value"] for row in calibration],
                [int(r.n) for r in follow.calibration.itertuples(index=False)],
                title="예측 위험도 대 실제 지원 연계율",
            )
        ),
        added={k: pages.count(v, t) for k, v in follow.added.items()},
        unmatched=pages.count(follow.unmatched, t) if follow.unmatched else "",
        bins=bins,
        ministry=None if published is None else page_rows(published, REPORT_MINISTRY),
        **override_context(inputs.districts, inputs.outcomes, inputs.names, outcome_catalogue, t),
        **(check or {"check": None}),
    )
    summary = {
        "visit_labelled": int(visit["labelled"].sum()),
        "visit_positives": int(visit["positives"].sum()),
        "ece": None if pd.isna(follow.ece) else round(float(follow.ece), 6),
    }
    if published is not None:
        summary["ministry"] = summary_facts(published)
    return text, summary


def precision_check_of(
    inputs: ReportInputs, config: Config, outcome_catalogue: OutcomeCatalogue
) -> pd.DataFrame | None:
    """The expected precision recorded at scoring against the observed one
    (``monitoring.precision_check``); None without outcomes or without a recorded estimate."""
    section = inputs.manifest.get("monitoring")
    if inputs.outcomes is None or inputs.listed is None or not isinstance(section, dict):
        return None
    return monitoring.precision_check(
        inputs.listed,
        inputs.outcomes,
        outcome_catalogue.label_of(),
        section.get("expected_precision"),
        level=config.monitoring.interval,
        min_answered=config.monitoring.calibration_min_answered,
    )


def _visit_headline(follow: agg.FollowUp, threshold: int) -> dict[str, str]:
    """Precision of the visit tier (model and exploration together), masked like the tables."""
    parts = follow.summary.set_index("part").loc[["visit_model", "visit_exploration"]]
    labelled = int(parts["labelled"].sum())
    positives = int(parts["positives"].sum())
    mean = (
        float((parts["mean_score"].fillna(0) * parts["labelled"]).sum() / labelled)
        if labelled
        else float("nan")
    )
    precision = positives / labelled if labelled else float("nan")
    return {
        "labelled": pages.count(labelled, threshold),
        "precision": pages.masked_percent(precision, labelled, positives, threshold=threshold),
        "mean_score": pages.masked_percent(mean, labelled, threshold=threshold),
    }


@dataclass(frozen=True)
class EmdPage:
    """One 읍면동 page: the district row it shows in its header."""

    emd_code: str
    sigungu_code: str
    capacity: int
    visit: int
    phone: int


def render_emd_page(
    template: Any,
    common: dict[str, Any],
    page: EmdPage,
    rows: pd.DataFrame,
    names: dict[str, str],
    selection: dict[str, str],
    reasons: int,
    cases: pages.CaseView | None = None,
) -> str:
    """The page of one 읍면동 with its listed households (``rows``: theirs only) and the state
    of their cases (``cases``: theirs only)."""
    households = pages.household_rows(rows, selection, reasons, cases)
    return template.render(
        **common,
        emd_code=page.emd_code,
        emd_name=pages.region_name(names, page.emd_code) or page.emd_code,
        sigungu_name=pages.region_name(names, page.sigungu_code),
        capacity=pages.number(page.capacity),
        visit=pages.number(page.visit),
        phone=pages.number(page.phone),
        rows=households,
        cases=cases,
        reasons=reasons,
        services=any(h.services for h in households),
        area_type=pages.area_type(pages.region_name(names, page.emd_code)),
    )


def emd_pages(districts: pd.DataFrame) -> list[list[EmdPage]]:
    """The 읍면동 pages to write, grouped by 시군구 (one task each), from the district table.

    A 읍면동 code is written once (its last row, should the table hold it twice).
    """
    rows = districts.drop_duplicates("emd_code", keep="last")
    groups: dict[str, list[EmdPage]] = {}
    for r in rows.itertuples(index=False):
        groups.setdefault(str(r.sigungu_code), []).append(
            EmdPage(
                str(r.emd_code), str(r.sigungu_code), int(r.capacity), int(r.visit), int(r.phone)
            )
        )
    return [groups[k] for k in sorted(groups)]


# --- the 읍면동 pages task (picklable, for the partition engine) -----------------------------

_NO_CASES = pd.DataFrame({"emd_code": pd.Series(dtype="string")})


@dataclass(frozen=True)
class PagesTask:
    """The 읍면동 pages of one 시군구, to be written into ``folder``."""

    scores_file: Path
    folder: Path
    pages: tuple[EmdPage, ...]
    common: dict[str, Any]
    names: dict[str, str]  # names of these 읍면동 and of their 시군구
    selection: dict[str, str]
    reasons: int
    cases: pd.DataFrame | None = None  # pipeline.cases.round_cases rows of these 읍면동
    outcomes: OutcomeCatalogue | None = None


def write_emd_pages(task: PagesTask) -> list[str]:
    """Read the listed households of the task's 읍면동 and write one page each; returns the
    file names written."""
    codes = [p.emd_code for p in task.pages]
    texts = [f"reason_{i}_text" for i in range(1, task.reasons + 1)]
    present = set(pq.read_schema(task.scores_file).names)
    listed = read_rows(
        task.scores_file,
        [c for c in (*PAGE_COLUMNS, *texts, SERVICES_TEXT) if c in present],
        {"emd_code": codes, "tier": LISTED_TIERS},
    )
    by_emd = {str(code): rows for code, rows in listed.groupby("emd_code", sort=True)}
    cases_by_emd = (
        {}
        if task.cases is None
        else {str(code): rows for code, rows in task.cases.groupby("emd_code", sort=True)}
    )
    template = environment().get_template("emd.html")
    written = []
    for page in task.pages:
        rows = by_emd.get(page.emd_code, listed.iloc[0:0])
        cases = None
        if task.outcomes is not None:
            cases = pages.case_view(cases_by_emd.get(page.emd_code), task.outcomes)
        text = render_emd_page(
            template, task.common, page, rows, task.names, task.selection, task.reasons, cases
        )
        name = f"{page.emd_code}.html"
        (task.folder / name).write_text(text, encoding="utf-8")
        written.append(name)
    pa.default_memory_pool().release_unused()
    return written


def pages_tasks(
    inputs: ReportInputs, config: Config, outcome_catalogue: OutcomeCatalogue, folder: Path
) -> list[PagesTask]:
    """One :class:`PagesTask` per 시군구 of the district table."""
    common = common_context(inputs, config.report.small_count)
    selection = pages.selection_names(outcome_catalogue)
    tasks = []
    cases_by_sigungu = (
        {}
        if inputs.cases is None
        else {str(c): rows for c, rows in inputs.cases.groupby("sigungu_code", sort=True)}
    )
    for group in emd_pages(inputs.districts):
        codes = {p.emd_code for p in group} | {p.sigungu_code for p in group}
        sigungu = group[0].sigungu_code
        tasks.append(
            PagesTask(
                scores_file=inputs.scores_file,
                folder=folder,
                pages=tuple(group),
                common=common,
                names={c: inputs.names[c] for c in sorted(codes) if c in inputs.names},
                selection=selection,
                reasons=inputs.reasons,
                cases=cases_by_sigungu.get(sigungu, _NO_CASES),
                outcomes=outcome_catalogue,
            )
        )
    return tasks
