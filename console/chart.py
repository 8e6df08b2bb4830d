"""The freeze-window distribution as a small SVG bar chart, rendered on the server.

No script and no library: a bar per bucket with its count written on it, a `<title>`
and `<desc>` for screen readers (the page also shows the same figures as a table).
"""

from __future__ import annotations

from html import escape

WIDTH, BAR_HEIGHT, GAP, LABEL_WIDTH, COUNT_WIDTH = 520, 22, 6, 110, 40


def bar_chart_svg(title: str, rows: list[tuple[str, int]]) -> str:
    """Horizontal bars, one per (label, count); the longest bar spans the chart."""
    top = max((count for _, count in rows), default=0) or 1
    span = WIDTH - LABEL_WIDTH - COUNT_WIDTH
    height = len(rows) * (BAR_HEIGHT + GAP) + GAP
    summary = ", ".join(f"{label}: {count}" for label, count in rows)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" '
        f'viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" height="{height}" '
        f'aria-labelledby="chart-title chart-desc">',
        f'<title id="chart-title">{escape(title)}</title>',
        f'<desc id="chart-desc">{escape(summary)}</desc>',
    ]
    for index, (label, count) in enumerate(rows):
        y = GAP + index * (BAR_HEIGHT + GAP)
        width = round(span * count / top)
        middle = y + BAR_HEIGHT / 2
        parts += [
            f'<text x="{LABEL_WIDTH - 8}" y="{middle}" text-anchor="end" '
            f'dominant-baseline="middle">{escape(label)}</text>',
            f'<rect x="{LABEL_WIDTH}" y="{y}" width="{max(width, 1 if count else 0)}" '
            f'height="{BAR_HEIGHT}" class="bar"/>',
            f'<text x="{LABEL_WIDTH + width + 6}" y="{middle}" '
            f'dominant-baseline="middle">{count}</text>',
        ]
    parts.append("</svg>")
    return "".join(parts)
