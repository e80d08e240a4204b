"""The project's one-page validation summary: self-contained HTML that opens offline.

Everything is inline (styles, small SVG charts of each source's monthly signals against its
bounds); nothing is fetched from anywhere. Great Expectations' own Data Docs sit beside it, but
they pull their styles from public CDNs and so look unstyled offline.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import pandas as pd
from jinja2 import Environment
from markupsafe import Markup

from pipeline.validate.stage import ValidationRun

_TEMPLATE = """<!DOCTYPE html>
<html lang="ko">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Validation {{ r.run_id }}: {{ r.status }}</title>
<style>
body { font-family: system-ui, -apple-system, "Segoe UI", "Noto Sans KR", sans-serif;
       margin: 1.5rem auto; max-width: 72rem; padding: 0 1rem; color: #1d232a; }
h1 { font-size: 1.4rem; }
h2 { font-size: 1.15rem; margin-top: 2rem; border-bottom: 1px solid #d8dde3; }
.banner { padding: .8rem 1rem; border-radius: .4rem; font-weight: 600; }
.passed { background: #e3f4e6; color: #15532a; border: 1px solid #9fd3ac; }
.failed { background: #fbe4e4; color: #7a1c1c; border: 1px solid #e6a3a3; }
table { border-collapse: collapse; width: 100%; font-size: .88rem; margin: .5rem 0; }
th, td { border-bottom: 1px solid #e4e7eb; padding: .25rem .4rem; text-align: left;
         vertical-align: top; }
th { background: #f4f6f8; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
.stop { color: #7a1c1c; font-weight: 600; }
.quarantine { color: #8a5a00; font-weight: 600; }
.ok { color: #15532a; }
.muted { color: #68717b; font-size: .85rem; }
code { font-size: .85rem; }
.sources { display: grid; grid-template-columns: repeat(auto-fill, minmax(15rem, 1fr));
           gap: .6rem; }
.source { border: 1px solid #e4e7eb; border-radius: .3rem; padding: .3rem .4rem; }
.source.bad { border-color: #e6a3a3; background: #fff6f6; }
.source .t { font-size: .8rem; font-weight: 600; }
</style>
</head>
<body>
<h1>Raw data validation · run <code>{{ r.run_id }}</code></h1>
<div class="banner {{ r.status }}">
{% if r.status == "passed" %}
PASSED: every stopping check passed; ingest may use these raw files.
{% else %}
FAILED: {{ r.checks.stopping }} check(s) stop the run; ingest will refuse these raw files.
{% endif %}
</div>
<p class="muted">Raw input <code>{{ r.raw_dir }}</code> · {{ r.files_sha256|length }} files ·
{{ r.partitions|length }} 시군구 partitions · started {{ r.started }} ·
finished {{ r.finished }} · config {{ r.settings.config_source }}</p>
<p class="muted">Beside this page: <code>validation.json</code> (every result),
<code>volume.json</code> (volume bounds), <code>rejected_rows.parquet</code>
(rows set aside, by file and row number), <code>gx_results.json</code>
{% if r.outputs.data_docs %} and <a href="{{ r.outputs.data_docs }}">Great Expectations
Data Docs</a> (unstyled offline){% endif %}.</p>

{% if r.failures %}
<h2>What stopped the run</h2>
<table>
<tr><th>table</th><th>column</th><th>expectation</th><th>unexpected</th>
<th>examples</th><th>meaning</th></tr>
{% for f in r.failures %}
<tr>
<td>{{ f.table }}{% if f.partition %}<br>
<span class="muted">sigungu={{ f.partition }}</span>{% endif %}</td>
<td><code>{{ f.column }}</code></td>
<td><code>{{ f.expectation }}</code></td>
<td class="n">{{ "{:,}".format(f.unexpected_count) }}</td>
<td>{{ f.examples|join(", ") }}</td>
<td>{{ f.reason }}</td>
</tr>
{% endfor %}
</table>
{% endif %}

<h2>Tables</h2>
<table>
<tr><th>table</th><th>rows</th><th>checks evaluated</th><th>failed (stop)</th>
<th>failed (quarantine)</th><th>rows set aside</th></tr>
{% for t in tables %}
<tr>
<td>{{ t.table }}</td>
<td class="n">{{ t.rows }}</td>
<td class="n">{{ t.evaluated }}</td>
<td class="n{% if t.stop %} stop{% endif %}">{{ t.stop }}</td>
<td class="n{% if t.quarantine %} quarantine{% endif %}">{{ t.quarantine }}</td>
<td class="n">{{ t.rejected }}</td>
</tr>
{% endfor %}
</table>

<h2>Rows set aside (quarantine)</h2>
{% if quarantine %}
<p>These rows are excluded by ingest; the run stops only when more than
{{ "{:.2%}".format(r.settings.validation.max_rejected_share) }} of a table's rows in a
시군구 are set aside.</p>
<table>
<tr><th>table</th><th>column</th><th>expectation</th><th>rows</th><th>meaning</th>
<th>examples</th></tr>
{% for q in quarantine %}
<tr>
<td>{{ q.table }}</td>
<td><code>{{ q.column }}</code></td>
<td><code>{{ q.expectation }}</code></td>
<td class="n">{{ "{:,}".format(q.unexpected) }}</td>
<td>{{ q.reason }}</td>
<td>{{ q.examples|join(", ") }}</td>
</tr>
{% endfor %}
</table>
{% else %}
<p class="ok">None.</p>
{% endif %}

<h2>Volume per source and reported month</h2>
{% if volume_failures is none %}
<p class="muted">Not checked: crisis_events was not readable in every partition.</p>
{% else %}
{% set v = r.settings.validation.volume %}
<p class="muted">National counts (all partitions summed). Grey band: the bounds computed from
the source's previous months (median × {{ v.low_factor }} .. median × {{ v.high_factor }},
each ± {{ v.poisson_slack }} √median); red dots: months outside them. The first
{{ v.warmup_months }} months of a source are warm-up, and bounds need
{{ v.min_reference_months }} reference months.</p>
{% if volume_failures %}
<table>
<tr><th>source</th><th>month</th><th>signals</th><th>lower</th><th>upper</th>
<th>reference (median)</th></tr>
{% for f in volume_failures %}
<tr class="stop">
<td>{{ f.indicator_code }}</td>
<td>{{ f.reported_month }}</td>
<td class="n">{{ f.signals }}</td>
<td class="n">{{ f.lower }}</td>
<td class="n">{{ f.upper }}</td>
<td class="n">{{ f.reference }}</td>
</tr>
{% endfor %}
</table>
{% endif %}
<div class="sources">
{% for s in sources %}
<div class="source{% if s.bad %} bad{% endif %}">
<div class="t">{{ s.code }}</div>
{{ s.svg }}
<div class="muted">{{ s.first }}..{{ s.last }} · max {{ "{:,}".format(s.max) }}</div>
</div>
{% endfor %}
</div>
{% endif %}

<h2>Every check</h2>
<details><summary>{{ totals|length }} checks over {{ r.checks.evaluated }} evaluations
({{ r.checks.failed }} failed)</summary>
<table>
<tr><th>table</th><th>column</th><th>expectation</th><th>on failure</th><th>evaluated</th>
<th>failed</th><th>unexpected</th><th>meaning</th></tr>
{% for c in totals %}
<tr>
<td>{{ c.table }}</td>
<td><code>{{ c.column }}</code></td>
<td><code>{{ c.expectation }}</code></td>
<td class="{{ c.on_failure }}">{{ c.on_failure }}</td>
<td class="n">{{ c.evaluated }}</td>
<td class="n">{{ c.failed }}</td>
<td class="n">{{ c.unexpected }}</td>
<td>{{ c.reason }}</td>
</tr>
{% endfor %}
</table>
</details>

<h2>Files</h2>
<details><summary>sha256 of every raw file checked</summary>
<table>
<tr><th>file</th><th>sha256</th></tr>
{% for name, digest in r.files_sha256.items() %}
<tr><td><code>{{ name }}</code></td><td><code>{{ digest }}</code></td></tr>
{% endfor %}
</table>
</details>
</body>
</html>
"""


def sparkline(points: pd.DataFrame, width: int = 220, height: int = 54) -> Markup:
    """An inline SVG of one source's monthly signals, its bounds band and failing months."""
    n = len(points)
    top = max(float(points["signals"].max()), float(points["upper"].max(skipna=True) or 0), 1.0)
    if math.isnan(top):
        top = max(float(points["signals"].max()), 1.0)

    def x(i: int) -> float:
        return 2 + (width - 4) * (i / max(n - 1, 1))

    def y(v: float) -> float:
        return height - 2 - (height - 4) * (v / top)

    band_top = []
    band_bottom = []
    for i, row in enumerate(points.itertuples(index=False)):
        if not math.isnan(row.upper):
            band_top.append(f"{x(i):.1f},{y(row.upper):.1f}")
            band_bottom.append(f"{x(i):.1f},{y(row.lower):.1f}")
    parts = [f'<svg width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img">']
    if band_top:
        polygon = " ".join(band_top + band_bottom[::-1])
        parts.append(f'<polygon points="{polygon}" fill="#dfe3e8"/>')
    line = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(points["signals"]))
    parts.append(f'<polyline points="{line}" fill="none" stroke="#2c5d8a" stroke-width="1.4"/>')
    for i, row in enumerate(points.itertuples(index=False)):
        if not math.isnan(row.lower) and not (row.lower <= row.signals <= row.upper):
            parts.append(
                f'<circle cx="{x(i):.1f}" cy="{y(row.signals):.1f}" r="2.6" fill="#c0392b"/>'
            )
    parts.append("</svg>")
    return Markup("".join(parts))  # built here from numbers only


def _tables(record: Mapping[str, Any]) -> list[dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for result in record["results"]:
        entry = out.setdefault(
            result["table"],
            {"table": result["table"], "evaluated": 0, "stop": 0, "quarantine": 0},
        )
        entry["evaluated"] += 1
        if not result["success"]:
            entry[result["on_failure"]] += 1
    for name, entry in out.items():
        entry["rows"] = f"{record['rows'].get(name, 0):,}" if name in record["rows"] else ""
        entry["rejected"] = f"{record['rejected_rows'].get(name, 0):,}"
    return list(out.values())


def render_summary(
    record: Mapping[str, Any], run: ValidationRun, totals: list[dict[str, Any]]
) -> str:
    """The summary page of one run."""
    sources = []
    volume_failures = None
    if run.volume is not None:
        volume = run.volume
        bad = volume[
            (volume["status"] == "checked")
            & ((volume["signals"] < volume["lower"]) | (volume["signals"] > volume["upper"]))
        ]
        volume_failures = bad.to_dict(orient="records")
        for code, points in volume.groupby("indicator_code", sort=False):
            points = points.reset_index(drop=True)
            sources.append(
                {
                    "code": code,
                    "svg": sparkline(points),
                    "first": points["reported_month"].iloc[0],
                    "last": points["reported_month"].iloc[-1],
                    "max": int(points["signals"].max()),
                    "bad": bool((bad["indicator_code"] == code).any()),
                }
            )
    quarantine = [t for t in totals if t["on_failure"] == "quarantine" and t["failed"]]
    for q in quarantine:
        q["examples"] = [
            e
            for r in run.quarantined
            if (r.table, r.expectation, r.column) == (q["table"], q["expectation"], q["column"])
            for e in r.examples
        ][:5]
    environment = Environment(autoescape=True, trim_blocks=True, lstrip_blocks=True)
    template = environment.from_string(_TEMPLATE)
    return template.render(
        r=record,
        tables=_tables(record),
        quarantine=quarantine,
        totals=totals,
        sources=sources,
        volume_failures=volume_failures,
    )
