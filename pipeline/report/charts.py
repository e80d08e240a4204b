"""Inline SVG charts, drawn in Python (no script, no library, no external font or image).

Every function returns the SVG markup as a string; text is escaped here. Counts below the
small-count threshold are drawn as a hatched bar of the threshold's height, labelled "<5", so a
chart never shows more than the tables do.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

BAR = "#3b6ea5"
BAR_LIGHT = "#9fb9d6"
ACCENT = "#c0392b"
GRID = "#d9dde3"
TEXT = "#333"

_HATCH = (
    '<defs><pattern id="{id}" width="6" height="6" patternUnits="userSpaceOnUse" '
    'patternTransform="rotate(45)"><rect width="6" height="6" fill="#eef1f5"/>'
    '<line x1="0" y1="0" x2="0" y2="6" stroke="#9aa5b1" stroke-width="2"/></pattern></defs>'
)


def _nice_max(value: float) -> float:
    """A round axis maximum at or above value."""
    if value <= 0:
        return 1.0
    exponent = math.floor(math.log10(value))
    base = 10**exponent
    for step in (1, 2, 2.5, 5, 10):
        if step * base >= value:
            return step * base
    return 10 * base  # pragma: no cover


def _fmt(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.2f}"


def _open(width: int, height: int, title: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" role="img" aria-label="{escape(title)}" '
        f'class="chart"><title>{escape(title)}</title>'
    )


def histogram(
    lows: Sequence[float],
    highs: Sequence[float],
    counts: Sequence[int],
    *,
    title: str,
    threshold: int,
    color: str = BAR,
    pattern_id: str = "hatch",
    x_label: str = "위험도(%)",
) -> str:
    """Vertical bars of counts per bin; bins below ``threshold`` (but not empty) are hatched."""
    width, height = 520, 240
    left, right, top, bottom = 56, 12, 24, 44
    plot_w, plot_h = width - left - right, height - top - bottom
    shown = [max(c, threshold) if 0 < c < threshold else c for c in counts]
    y_max = _nice_max(max(shown, default=0))
    n = max(1, len(counts))
    bar_w = plot_w / n
    parts = [_open(width, height, title), _HATCH.format(id=pattern_id)]
    parts.append(f'<text x="{left}" y="14" font-size="12" fill="{TEXT}">{escape(title)}</text>')
    for i in range(5):
        value = y_max * i / 4
        y = top + plot_h - plot_h * i / 4
        parts.append(
            f'<line x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" stroke="{GRID}"/>'
            f'<text x="{left - 6}" y="{y + 4:.1f}" font-size="10" text-anchor="end" '
            f'fill="{TEXT}">{_fmt(value)}</text>'
        )
    for i, (count, value) in enumerate(zip(counts, shown, strict=True)):
        if value <= 0:
            continue
        h = plot_h * value / y_max
        x = left + i * bar_w
        small = 0 < count < threshold
        fill = f"url(#{pattern_id})" if small else color
        label = f"<{threshold}" if small else f"{count:,}"
        rng = f"{100 * lows[i]:.0f}~{100 * highs[i]:.0f}%"
        parts.append(
            f'<rect x="{x + 1:.1f}" y="{top + plot_h - h:.1f}" width="{max(bar_w - 2, 1):.1f}" '
            f'height="{h:.1f}" fill="{fill}"><title>{escape(rng)}: {escape(label)}가구'
            "</title></rect>"
        )
    step = max(1, n // 5)
    for i in range(0, n + 1, step):
        x = left + i * bar_w
        edge = lows[i] if i < len(lows) else highs[-1]
        parts.append(
            f'<text x="{x:.1f}" y="{top + plot_h + 14}" font-size="10" text-anchor="middle" '
            f'fill="{TEXT}">{100 * edge:.0f}</text>'
        )
    parts.append(
        f'<text x="{left + plot_w / 2:.1f}" y="{height - 8}" font-size="11" '
        f'text-anchor="middle" fill="{TEXT}">{escape(x_label)}</text>'
    )
    parts.append("</svg>")
    return "".join(parts)


def hbars(
    labels: Sequence[str],
    values: Sequence[float],
    *,
    title: str,
    threshold: int | None = None,
    marker: float | None = None,
    marker_label: str = "",
    highlight: Sequence[bool] | None = None,
    value_format: str = "count",
    pattern_id: str = "hatch-h",
) -> str:
    """Horizontal bars, one per label; optional vertical marker line (e.g. a PSI threshold).

    With ``threshold``, values below it (counts) are hatched and labelled "<threshold".
    """
    row_h = 22
    left, right, top = 230, 70, 26
    width = 640
    height = top + row_h * max(1, len(labels)) + 16
    plot_w = width - left - right
    finite = [v for v in values if v is not None and math.isfinite(v)]
    shown = [
        (max(v, threshold) if threshold is not None and 0 < v < threshold else v) for v in finite
    ]
    x_max = _nice_max(max([*shown, marker or 0], default=0))
    parts = [_open(width, height, title), _HATCH.format(id=pattern_id)]
    parts.append(f'<text x="4" y="14" font-size="12" fill="{TEXT}">{escape(title)}</text>')
    for i, (label, value) in enumerate(zip(labels, values, strict=True)):
        y = top + i * row_h
        parts.append(
            f'<text x="{left - 6}" y="{y + 15}" font-size="11" text-anchor="end" '
            f'fill="{TEXT}">{escape(label)}</text>'
        )
        if value is None or not math.isfinite(value):
            continue
        small = threshold is not None and 0 < value < threshold
        drawn = max(value, threshold) if small and threshold is not None else value
        w = plot_w * drawn / x_max
        flagged = bool(highlight[i]) if highlight is not None else False
        fill = f"url(#{pattern_id})" if small else (ACCENT if flagged else BAR)
        if small:
            text = f"<{threshold}"
        elif value_format == "count":
            text = f"{value:,.0f}"
        else:
            text = f"{value:.3f}"
        parts.append(
            f'<rect x="{left}" y="{y + 4}" width="{max(w, 1):.1f}" height="{row_h - 8}" '
            f'fill="{fill}"><title>{escape(label)}: {escape(text)}</title></rect>'
            f'<text x="{left + w + 4:.1f}" y="{y + 15}" font-size="11" '
            f'fill="{TEXT}">{escape(text)}</text>'
        )
    if marker is not None:
        x = left + plot_w * marker / x_max
        parts.append(
            f'<line x1="{x:.1f}" y1="{top - 4}" x2="{x:.1f}" y2="{height - 10}" '
            f'stroke="{ACCENT}" stroke-dasharray="4 3"/>'
            f'<text x="{x + 3:.1f}" y="{top - 8}" font-size="10" fill="{ACCENT}">'
            f"{escape(marker_label)}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def reliability(
    mean_scores: Sequence[float],
    realised: Sequence[float | None],
    sizes: Sequence[int],
    *,
    title: str,
) -> str:
    """Mean predicted score (x) against the realised rate (y) per bin, with the diagonal.

    A bin whose rate is not shown (None: too few households) is left out.
    """
    width, height = 360, 320
    left, right, top, bottom = 48, 16, 28, 44
    plot_w, plot_h = width - left - right, height - top - bottom
    parts = [_open(width, height, title)]
    parts.append(f'<text x="4" y="14" font-size="12" fill="{TEXT}">{escape(title)}</text>')

    def px(x: float) -> float:
        return left + plot_w * x

    def py(y: float) -> float:
        return top + plot_h - plot_h * y

    for i in range(6):
        v = i / 5
        parts.append(
            f'<line x1="{px(0):.1f}" y1="{py(v):.1f}" x2="{px(1):.1f}" y2="{py(v):.1f}" '
            f'stroke="{GRID}"/><line x1="{px(v):.1f}" y1="{py(0):.1f}" x2="{px(v):.1f}" '
            f'y2="{py(1):.1f}" stroke="{GRID}"/>'
            f'<text x="{left - 6}" y="{py(v) + 4:.1f}" font-size="10" text-anchor="end" '
            f'fill="{TEXT}">{100 * v:.0f}</text>'
            f'<text x="{px(v):.1f}" y="{py(0) + 14:.1f}" font-size="10" text-anchor="middle" '
            f'fill="{TEXT}">{100 * v:.0f}</text>'
        )
    parts.append(
        f'<line x1="{px(0):.1f}" y1="{py(0):.1f}" x2="{px(1):.1f}" y2="{py(1):.1f}" '
        f'stroke="#888" stroke-dasharray="5 4"/>'
    )
    points = [
        (m, r, n)
        for m, r, n in zip(mean_scores, realised, sizes, strict=True)
        if r is not None and math.isfinite(r) and math.isfinite(m)
    ]
    if len(points) > 1:
        path = " ".join(f"{px(m):.1f},{py(r):.1f}" for m, r, _ in points)
        parts.append(f'<polyline points="{path}" fill="none" stroke="{BAR}" stroke-width="2"/>')
    for m, r, n in points:
        parts.append(
            f'<circle cx="{px(m):.1f}" cy="{py(r):.1f}" r="5" fill="{BAR}">'
            f"<title>예측 {100 * m:.1f}% / 실제 {100 * r:.1f}% ({n:,}가구)</title></circle>"
        )
    parts.append(
        f'<text x="{left + plot_w / 2:.1f}" y="{height - 8}" font-size="11" '
        f'text-anchor="middle" fill="{TEXT}">평균 예측 위험도(%)</text>'
        f'<text x="12" y="{top + plot_h / 2:.1f}" font-size="11" text-anchor="middle" '
        f'fill="{TEXT}" transform="rotate(-90 12 {top + plot_h / 2:.1f})">'
        "실제 지원 연계율(%)</text>"
    )
    parts.append("</svg>")
    return "".join(parts)
