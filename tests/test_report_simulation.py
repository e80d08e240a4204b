"""The report's simulation page (``report/simulation.html``, ``pipeline.report.simulation``).

Simulation results are built in the test the way ``outreach simulate`` builds them: the real
measures of ``models.loop`` (``loop_measures``, ``policy_table``, ``broken_loop_signals``) and
plots of ``models.loop_plots`` on a small hand-made world, written under the names of
``pipeline.datasets.simulation``. The world: 4 읍면동 (E1-E4) × 10 households (local number
j = 0..9), 4 rounds (2025-01, -03, -05, -07), truth from 2024-11. In the ``none`` world j = 0, 1, 2
are in need every month, j = 3 from 2025-04 on.

- ``rule`` (the reference) lists j = 8, 9 (never in need) at every round and reaches no one;
- ``oracle`` lists and reaches j = 0, 1 at the first round and j = 2, 3 at the second; a reached
  household's need ends soon after: it finds more need and averts hardship in every 읍면동, so
  both its intervals against the rule lie above zero;
- ``champion_broken`` lists j = 0, 8 at every round (expected probability 0.7), never at
  random, and reaches no one: the same list round after round (a concentrating loop).

The end-to-end test runs the real ``outreach report`` on a private copy of the session's scored
sample, first without results (no page, no link), then with them; a real headless Chromium
(tests/_browser.py) opens the page and checks that the plots load.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from _browser import launched_chromium, screenshot
from conftest import copy_outputs

from models import loop
from models.loop import LoopWorld, PolicyRun
from models.loop_plots import fairness_lines, loop_panels
from pipeline.cli import main
from pipeline.datasets import simulation as dataset
from pipeline.io import sha256_tree, write_json
from pipeline.months import format_month
from pipeline.report import simulation as page
from pipeline.vocabulary import EMD, EXPLORATION, KEY, MODEL_SCORE, VISIT

pytestmark = pytest.mark.filterwarnings(
    "ignore::UserWarning", "ignore::FutureWarning", "ignore::DeprecationWarning"
)

FIRST = 2024 * 12 + 10  # 2024-11, truth column 0
ROUNDS = (2025 * 12 + 0, 2025 * 12 + 2, 2025 * 12 + 4, 2025 * 12 + 6)
WIDTH = 10
EMDS = ("E1", "E2", "E3", "E4")
POLICIES = ("rule", "oracle", "champion_broken")
NONE_SPANS = {0: list(range(10)), 1: list(range(10)), 2: list(range(10)), 3: list(range(5, 10))}
ORACLE_SPANS = {0: [0, 1, 2], 1: [0, 1, 2], 2: list(range(6)), 3: [5]}


# --- a small simulation, measured by the real measures ---------------------------------------


def _key(e: int, j: int) -> str:
    return f"h{e}{j}"


def _truth(spans: dict[int, list[int]]) -> pd.DataFrame:
    rows = [
        {KEY: _key(e, j), "month": FIRST + c, "in_need": c in spans.get(j, []), "hardship": 0.0}
        for e in range(len(EMDS))
        for j in range(10)
        for c in range(WIDTH)
    ]
    return pd.DataFrame(rows)


def _listed(entries: list[tuple[int, int, float, str]]) -> pd.DataFrame:
    """Rows (round index, j, expected probability, reason) for every 읍면동."""
    rows = [
        {
            "round": ROUNDS[i],
            KEY: _key(e, j),
            EMD: EMDS[e],
            "tier": VISIT,
            "score": p,
            "expected_probability": p,
            "selection_reason": reason,
        }
        for e in range(len(EMDS))
        for i, j, p, reason in entries
    ]
    return pd.DataFrame(rows)


def _contacts(entries: list[tuple[int, int, bool]]) -> pd.DataFrame:
    """Rows (month, j, reached) for every 읍면동."""
    rows = [
        {KEY: _key(e, j), "contact_month": month, "reached": reached}
        for e in range(len(EMDS))
        for month, j, reached in entries
    ]
    return pd.DataFrame(rows).astype({"contact_month": "int64", "reached": bool})


def _runs() -> list[PolicyRun]:
    rule = PolicyRun(
        "rule",
        _listed(
            [(i, 8, np.nan, MODEL_SCORE) for i in range(4)]
            + [(i, 9, np.nan, EXPLORATION) for i in range(4)]
        ),
        _contacts([(ROUNDS[i], j, False) for i in range(4) for j in (8, 9)]),
        _truth(NONE_SPANS),
    )
    oracle = PolicyRun(
        "oracle",
        _listed([(i, j, 0.8, MODEL_SCORE) for i, j in ((0, 0), (0, 1), (1, 2), (1, 3))]),
        _contacts(
            [(ROUNDS[0], 0, True), (ROUNDS[0], 1, True), (FIRST + 5, 2, True), (FIRST + 5, 3, True)]
        ),
        _truth(ORACLE_SPANS),
    )
    broken = PolicyRun(
        "champion_broken",
        _listed([(i, j, 0.7, MODEL_SCORE) for i in range(4) for j in (0, 8)]),
        _contacts([(ROUNDS[i], j, False) for i in range(4) for j in (0, 8)]),
        _truth(NONE_SPANS),
    )
    return [rule, oracle, broken]


def write_simulation_results(folder: Path) -> dict[str, pd.DataFrame]:
    """Measure the small simulation and write its results as ``outreach simulate`` does."""
    households = pd.DataFrame(
        {
            KEY: [_key(e, j) for e in range(len(EMDS)) for j in range(10)],
            EMD: [EMDS[e] for e in range(len(EMDS)) for j in range(10)],
            "tenure": [
                "own" if j % 2 == 0 else "rent" for e in range(len(EMDS)) for j in range(10)
            ],
        }
    )
    world = LoopWorld(
        rounds=ROUNDS,
        households=households,
        counterfactual=_truth(NONE_SPANS),
        attributes=("tenure",),
        min_group_size=1,
    )
    measures = loop.loop_measures(_runs(), world)
    table = loop.policy_table(measures, reference="rule", samples=200, seed=7, level=0.9)
    signals = loop.broken_loop_signals(measures.per_round)
    folder.mkdir(parents=True, exist_ok=True)

    def csv(frame: pd.DataFrame, name: str) -> None:
        (folder / name).write_text(frame.to_csv(index=False, float_format="%.6g"), "utf-8")

    csv(measures.per_round, dataset.PER_ROUND)
    csv(measures.cumulative, dataset.CUMULATIVE)
    csv(table, dataset.POLICIES)
    csv(measures.fairness, dataset.FAIRNESS)
    csv(measures.per_emd.reset_index(), dataset.PER_EMD)
    csv(signals, dataset.SIGNALS)
    write_json(
        {
            "config_sha256": "c" * 64,
            "seed": 4242,
            "households": 12345,
            "rounds": [format_month(m) for m in ROUNDS],
            "policies": ["none", *POLICIES],
            "reference": "rule",
            "retrain_every": 3,
            "trained_rounds": {"champion_broken": [format_month(ROUNDS[0])]},
            "champions": {"champion_broken": {format_month(ROUNDS[0]): "1"}},
            "offpolicy_in_simulated_rounds": {
                "estimates": 6,
                "mean_absolute_error": 0.0421,
                "coverage": 0.8333,
                "estimates_label_scale": 6,
                "mean_absolute_error_label_scale": 0.031,
                "coverage_label_scale": 1.0,
            },
        },
        folder / dataset.RECORD,
    )
    write_json(
        {
            "seconds": 3725.4,
            "seconds_per_policy": {p: {"total": 61.0 + i} for i, p in enumerate(POLICIES)},
            "peak_rss_mb": 1234.5,
            "peak_rss_mb_children": 321.0,
        },
        folder / dataset.TIMING,
    )
    loop_panels(
        measures.per_round, measures.cumulative, folder / dataset.PLOTS / dataset.PLOT_MEASURES
    )
    fairness_lines(measures.per_round, folder / dataset.PLOTS / dataset.PLOT_FAIRNESS)
    return {"policies": table, "signals": signals, "rounds": measures.per_round}


@pytest.fixture(scope="module")
def small_results(tmp_path_factory) -> tuple[Path, dict[str, pd.DataFrame]]:
    folder = tmp_path_factory.mktemp("simulation") / "results"
    return folder, write_simulation_results(folder)


def _results_of(folder: Path) -> page.SimulationResults:
    tables = {
        name.removesuffix(".csv"): pd.read_csv(folder / name)
        for name in (dataset.POLICIES, dataset.SIGNALS, dataset.PER_ROUND)
    }
    return page.SimulationResults(
        tables=tables,
        record=json.loads((folder / dataset.RECORD).read_text("utf-8")),
        timing=json.loads((folder / dataset.TIMING).read_text("utf-8")),
        plots={dataset.PLOT_MEASURES: b"\x89PNG"},
    )


# --- the page's parts, pure ------------------------------------------------------------------


def test_numbers_are_formatted_for_people():
    assert page.share(0.2747253) == "0.275" and page.share(float("nan")) == "–"
    assert page.whole(12345.0) == "12,345" and page.whole(None) == "–"
    assert page.signed_whole(27) == "+27" and page.signed_whole(-1234.4) == "−1,234"
    assert page.signed_whole(0.2) == "0"
    assert page.duration(3725.4) == "1시간 2분 5초" and page.duration(77.3) == "1분 17초"
    assert page.duration(6.66) == "6.7초"
    assert page.round_label(2025 * 12) == "2025-01" and page.round_label("2025-03") == "2025-03"


def test_differences_against_the_reference_mark_intervals_that_exclude_zero(small_results):
    folder, frames = small_results
    table = frames["policies"].set_index("policy")
    # the world as designed: the oracle finds more need and averts hardship in every 읍면동
    assert table.loc["oracle", "need_found_minus_reference_low"] > 0
    assert table.loc["oracle", "hardship_months_averted_minus_reference_low"] > 0
    context = page.simulation_context(_results_of(folder), level=0.8)
    rows = {r["code"]: r for r in context["policy_rows"]}
    assert list(rows) == list(POLICIES)
    assert rows["rule"]["reference"] and rows["rule"]["need_found_diff"]["estimate"] == "기준"
    oracle = rows["oracle"]
    found = table.loc["oracle"]
    assert oracle["need_found_diff"]["excludes_zero"]
    assert oracle["need_found_diff"]["direction"] == "up"
    assert oracle["need_found_diff"]["estimate"] == f"+{round(found.need_found_minus_reference)}"
    assert oracle["need_found_diff"]["interval"] == (
        f"[+{round(found.need_found_minus_reference_low)}, "
        f"+{round(found.need_found_minus_reference_high)}]"
    )
    assert oracle["averted_diff"]["excludes_zero"]
    assert oracle["precision"] == f"{found.precision:.3f}"
    assert oracle["need_found"] == f"{found.need_found:,.0f}"
    assert context["excluding_zero"] >= 1
    assert context["level"] == "80%"  # the record does not say the level: the config's
    assert [p["name"] for p in context["plots"]] == [dataset.PLOT_MEASURES]
    assert context["plots"][0]["uri"].startswith("data:image/png;base64,")


def test_signals_are_plain_words(small_results):
    folder, frames = small_results
    signals = frames["signals"].set_index("policy")
    assert signals.loc["champion_broken", "list_concentrating"]
    assert signals.loc["champion_broken", "no_exploration"]
    rows = {r["code"]: r for r in page.signal_rows(pd.read_csv(folder / dataset.SIGNALS))}
    broken = rows["champion_broken"]
    assert broken["degrading"]
    words = [f["en"] for f in broken["flags"]]
    assert "list concentrating" in words and "no exploration" in words
    assert "같은 가구에 목록 집중" in [f["ko"] for f in broken["flags"]]
    assert "no exploration" not in [f["en"] for f in rows["rule"]["flags"]]  # it explores


def test_per_round_tables_show_every_round_and_policy(small_results):
    folder, _ = small_results
    tables = page.round_tables(pd.read_csv(folder / dataset.PER_ROUND), list(POLICIES))
    assert [t["measure"] for t in tables] == [
        "precision",
        "need_found",
        "never_contacted_3_rounds",
    ]
    for t in tables:
        assert [p["code"] for p in t["policies"]] == list(POLICIES)
        assert [r["round"] for r in t["rows"]] == [format_month(m) for m in ROUNDS]
    never = tables[2]["rows"]
    assert never[0]["values"] == ["–", "–", "–"]  # needs two rounds before
    assert tables[0]["rows"][0]["values"][0] == "0.000"  # the rule lists no one in need


# --- the real report -------------------------------------------------------------------------


def _report(config_file: Path) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["--no-progress", "--config", str(config_file), "report"])
    return code, out.getvalue() + err.getvalue()


@pytest.fixture(scope="module")
def reported(scored_sample, small_results, tmp_path_factory):
    """The report of a private copy of the scored sample, without and then with results."""
    tmp = tmp_path_factory.mktemp("report-simulation")
    copy = copy_outputs(scored_sample, tmp)
    code, output = _report(copy.config_file)
    assert code == 0, output
    without = tmp / "without"
    shutil.copytree(copy.round_dir / "report", without)
    assert not dataset.has_results(copy.config)
    shutil.copytree(small_results[0], dataset.results_dir(copy.config))
    assert dataset.has_results(copy.config)
    code, output = _report(copy.config_file)
    assert code == 0, output
    return {"copy": copy, "without": without, "with": copy.round_dir / "report"}


def test_without_results_no_page_and_no_link(reported):
    folder = reported["without"]
    assert not (folder / page.SIMULATION).exists()
    index = (folder / "index.html").read_text("utf-8")
    assert "simulation.html" not in index and 'id="simulation-link"' not in index
    assert "simulation" not in json.loads((folder / "report.json").read_text("utf-8"))


def test_with_results_the_page_is_written_linked_and_recorded(reported, small_results):
    folder = reported["with"]
    text = (folder / page.SIMULATION).read_text("utf-8")
    index = (folder / "index.html").read_text("utf-8")
    assert 'href="simulation.html" id="simulation-link"' in index
    record = json.loads((folder / "report.json").read_text("utf-8"))
    assert record["files_sha256"] == {
        k: v for k, v in sha256_tree(folder).items() if k != "report.json"
    }
    assert page.SIMULATION in record["files_sha256"]
    assert record["simulation"]["seed"] == 4242 and record["simulation"]["rounds"] == 4
    assert record["simulation"]["policies"] == ["none", *POLICIES]
    # the header, the policies and the intervals
    assert "12,345" in text and "4242" in text and "2025-01 ~ 2025-07" in text
    assert "1시간 2분 5초" in text
    assert "추정 6건 · 평균 절대 오차 0.042 · 구간 포함률 0.833" in text
    assert "방문 기록 기준 평균 절대 오차 0.031 · 구간 포함률 1.000" in text
    for policy in POLICIES:
        assert f'data-policy="{policy}"' in text
    table = small_results[1]["policies"].set_index("policy").loc["oracle"]
    interval = (
        f"[+{round(table.need_found_minus_reference_low)}, "
        f"+{round(table.need_found_minus_reference_high)}]"
    )
    assert interval in text and "90% 구간" in text  # the sample config's simulate.interval
    assert text.count('class="num diff excludes-zero"') >= 2
    assert "list concentrating" in text and "no exploration" in text
    assert text.count("data:image/png;base64,") == 2
    # offline: no link or resource outside the report but the overview and inlined images
    outside = re.compile(r'(?:src|href|action)\s*=\s*"(?!#|index\.html"|data:image/png;base64,)')
    assert not outside.search(text)
    assert "<link" not in text and "url(http" not in text and "@import" not in text
    words = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", text)
    assert "household_key" not in words and "h00" not in words  # aggregates only


@pytest.fixture(scope="module")
def browser():
    yield from launched_chromium()


def test_simulation_page_renders_with_its_plots_in_headless_chromium(reported, browser, tmp_path):
    folder = reported["with"]
    view = browser.new_page(viewport={"width": 1300, "height": 900}, locale="ko-KR")
    requests: list[str] = []
    errors: list[str] = []
    view.on("request", lambda request: requests.append(request.url))
    view.on("pageerror", lambda error: errors.append(str(error)))
    view.goto((folder / "index.html").as_uri())
    view.click("#simulation-link")
    view.wait_for_load_state("load")
    shot = tmp_path / "simulation.png"
    screenshot(view, shot, full_page=True)
    why = f"(screenshot: {shot})"
    assert view.url.endswith("/simulation.html"), why
    widths = view.eval_on_selector_all(
        "figure.plot img", "images => images.map(i => i.naturalWidth)"
    )
    assert len(widths) == 2 and all(w > 0 for w in widths), (widths, why)
    assert view.locator("#policy-table tbody tr").count() == len(POLICIES), why
    assert view.locator("#policy-table td.excludes-zero").count() >= 2, why
    assert "같은 가구에 목록 집중" in view.inner_text("#signal-table"), why
    assert view.locator("#round-precision tbody tr").count() == len(ROUNDS), why
    assert not errors, errors
    assert all(u.startswith(("file:", "data:")) for u in requests), requests
    view.close()
